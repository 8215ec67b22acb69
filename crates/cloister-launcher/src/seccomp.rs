//! The workload's system-call filter (seccomp, applied by runc just before the workload runs).
//!
//! The container's root is the host's root confined by namespaces and three capabilities (no
//! user namespace, see ARCHITECTURE.md's threat model), so the filter refuses, with EPERM,
//! the calls Docker's default profile refuses that widen a container's reach: new namespaces
//! (a new user namespace is the way to every capability inside it, and to much of the kernel's
//! attack surface), mounts, the kernel keyring, BPF and perf, io_uring (whose operations no
//! filter sees), loading modules or kernels, tracing other processes, the clocks, swap,
//! reboot. It is a deny list over an allowed
//! default, unlike Docker's allow list: a workload that runs under Docker runs here, and what
//! it must not do is named here, in one place.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

/// Refused outright.
const REFUSED: &[&str] = &[
    "unshare",
    "setns",
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "open_by_handle_at",
    "name_to_handle_at",
    "iopl",
    "ioperm",
    "swapon",
    "swapoff",
    "reboot",
    "settimeofday",
    "clock_settime",
    "clock_settime64",
    "clock_adjtime",
    "clock_adjtime64",
    "adjtimex",
    "acct",
    "quotactl",
    "quotactl_fd",
    // io_uring's operations run outside any system-call filter (Docker refuses it too).
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "lookup_dcookie",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "syslog",
    "vhangup",
];

/// `clone` flags that make a namespace: refused (threads and processes are fine).
const NAMESPACE_FLAGS: &[u64] = &[
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];

const EPERM: u32 = 1;
/// `clone3` passes its flags in memory a filter cannot read; ENOSYS makes the C library fall
/// back to `clone`, whose flags it can (Docker does the same).
const ENOSYS: u32 = 38;

fn syscall(names: &[&str], errno: u32, args: Option<Vec<LinuxSeccompArg>>) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(names.iter().map(|n| (*n).to_owned()).collect());
    s.set_action(LinuxSeccompAction::ScmpActErrno);
    s.set_errno_ret(Some(errno));
    s.set_args(args);
    s
}

/// The architectures a workload's calls may use; a call of any other is killed (libseccomp's
/// default for a foreign architecture), so a 32-bit call cannot step around the list.
fn architectures() -> Vec<Arch> {
    if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    }
}

pub fn filter() -> Result<LinuxSeccomp, oci_spec::OciSpecError> {
    let mut syscalls = vec![
        syscall(REFUSED, EPERM, None),
        syscall(&["clone3"], ENOSYS, None),
    ];
    for flag in NAMESPACE_FLAGS {
        // (flags & flag) == flag: the mask is `value`, the datum `valueTwo`.
        let arg = LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(*flag)
            .value_two(*flag)
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
            .build()?;
        syscalls.push(syscall(&["clone"], EPERM, Some(vec![arg])));
    }
    let mut seccomp = LinuxSeccomp::default();
    seccomp.set_default_action(LinuxSeccompAction::ScmpActAllow);
    seccomp.set_architectures(Some(architectures()));
    seccomp.set_syscalls(Some(syscalls));
    Ok(seccomp)
}
