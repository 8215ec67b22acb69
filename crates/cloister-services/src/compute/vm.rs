//! The VM driver's host side (`--compute-driver vm`): one QEMU per instance booting the guest
//! image (Debian's kernel + the initramfs `cloister image build` makes) under OVMF, which
//! measures the kernel into PCR 4 while Linux's EFI stub measures the initrd into PCR 9 of a
//! vTPM from swtpm, reached over a unix control socket in the instance's runtime directory.
//! The guest's only network is QEMU's user-mode stack with `restrict=on`: it reaches the
//! metadata server (169.254.169.254:80) and the API (169.254.169.2:80) through `guestfwd`,
//! each connection a `cloister forward` process, and nothing else. The launcher's exit code
//! comes back on the second serial port, which only the guest's PID 1 writes.
//!
//! A SEV-SNP guest boots the same kernel, initrd and command line with QEMU's
//! `kernel-hashes=on` under an AmdSev build of OVMF, one vCPU of the fixed model `SNP_CPU`:
//! the launch digest then covers firmware, vCPU state and the three files' hashes, and
//! `snp_launch_measurement` computes it offline (the reference value the server registers).

use std::path::{Path, PathBuf};

use cloister_store::ConfidentialType;

/// The launcher's exit code on the exit port (`cloister init` writes it).
pub const EXIT_MARKER: &str = "cloister-launcher-exit:";
/// Guest memory (MiB): the image is unpacked into a tmpfs, and the workload's layers too.
/// Below q35's 2 GiB split, so all of it is below 4 GiB (the PCR 4 computation relies on it).
pub const MEMORY_MIB: u32 = 1536;
/// Every guest has one vCPU (`-smp 1`): the SNP launch digest measures one VMSA per vCPU.
pub const VCPUS: u32 = 1;
/// The vCPU model of SNP guests: a named model, not `-cpu host`, because the VMSA's RDX
/// holds the model's CPUID signature, so the launch digest must not depend on the host's
/// CPU. EPYC-v4 (family 23, model 1, stepping 2) runs on every SNP-capable EPYC.
pub const SNP_CPU: &str = "EPYC-v4";
pub const SNP_CPU_SIGNATURE: u32 = cloister_snp::launch::cpu_signature(23, 1, 2);

/// The guest image the server boots, and its measurement (registered as a reference value).
#[derive(Debug, Clone)]
pub struct GuestImage {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
    /// Firmware for VTPM instances (OVMF, which measures into the vTPM).
    pub firmware: PathBuf,
    /// `cloister_tpm::boot_measurement` of the image's expected PCR 4 and PCR 9.
    pub measurement: String,
    pub debug: bool,
    /// How SEV-SNP guests boot it; None where no firmware can measure the kernel (SNP
    /// instances are then refused).
    pub snp: Option<SnpLaunch>,
}

/// The firmware a SEV-SNP guest boots and the launch digest it will report.
#[derive(Debug, Clone)]
pub struct SnpLaunch {
    /// An AmdSev OVMF (a kernel-hashes section and hashes table in its metadata).
    pub firmware: PathBuf,
    /// `snp_launch_measurement`, hex: the report's MEASUREMENT, and its reference value.
    pub measurement: String,
}

/// The SNP launch digest of this image booted as `qemu_args` boots it: `ovmf`, `VCPUS` of
/// `SNP_CPU`, SEV features SNPActive only (QEMU's default), and the hashes of the kernel and
/// initrd files and the command line (QEMU leaves the kernel's setup header unmodified when
/// SEV hashes it, so the file's hash is what it puts in the table).
pub fn snp_launch_measurement(
    ovmf: &cloister_snp::launch::Ovmf,
    kernel: &[u8],
    initrd: &[u8],
    cmdline: &str,
) -> Result<String, cloister_snp::launch::LaunchError> {
    use cloister_snp::launch::{KernelHashes, Launch, launch_digest};
    let launch = Launch {
        vcpus: VCPUS,
        vcpu_signature: SNP_CPU_SIGNATURE,
        sev_features: 1,
    };
    let hashes = KernelHashes::new(kernel, initrd, cmdline);
    launch_digest(ovmf, &launch, Some(&hashes)).map(hex::encode)
}

/// How QEMU runs guests on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accelerator {
    Kvm,
    Tcg,
}

impl Accelerator {
    /// KVM when /dev/kvm is the hardware's (kvm_intel or kvm_amd loaded); otherwise TCG. A
    /// /dev/kvm of another provider (PVM, a software nested hypervisor) does not boot stock
    /// kernels, so it is not used.
    pub fn detect() -> Self {
        let hardware = ["/sys/module/kvm_intel", "/sys/module/kvm_amd"]
            .iter()
            .any(|m| Path::new(m).exists());
        let accel = if hardware && Path::new("/dev/kvm").exists() {
            Accelerator::Kvm
        } else {
            Accelerator::Tcg
        };
        match accel {
            Accelerator::Kvm => {
                tracing::info!("VM driver: QEMU uses KVM (hardware virtualization)")
            }
            Accelerator::Tcg => tracing::warn!(
                "VM driver: no hardware KVM here (/dev/kvm missing, or not kvm_intel/kvm_amd); QEMU uses TCG, a software emulator: guests boot in tens of seconds"
            ),
        }
        accel
    }
}

/// Where an instance's VM keeps its host-side files.
pub struct VmPaths {
    pub dir: PathBuf,
    pub console: PathBuf,
    pub exit_port: PathBuf,
    pub tpm_ctrl: PathBuf,
    pub metadata_socket: PathBuf,
    pub settings: PathBuf,
    /// The lock files that bound an instance's concurrent forwards ([`FORWARD_SLOTS`]).
    pub forward_slots: PathBuf,
    /// QEMU's monitor (QMP), through which the platform powers the guest down.
    pub qmp: PathBuf,
}

/// The most connections a guest has open through its forwards at once (as the local driver's
/// metadata server allows): QEMU starts a process for each, so a guest opening connections
/// without end must not fill the host with them.
pub const FORWARD_SLOTS: usize = 64;

impl VmPaths {
    pub fn new(dir: &Path) -> Self {
        VmPaths {
            dir: dir.to_owned(),
            console: dir.join("serial.log"),
            exit_port: dir.join("exit.log"),
            tpm_ctrl: dir.join("tpm.ctrl"),
            metadata_socket: dir.join("metadata.sock"),
            settings: dir.join("launch.json"),
            forward_slots: dir.join("forward-slots"),
            qmp: dir.join("qmp.sock"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error(
        "this host cannot provide {kind}: {reason}; Cloister never downgrades an instance to another type"
    )]
    Unsupported {
        kind: ConfidentialType,
        reason: String,
    },
    #[error(
        "the path {0:?} holds a space or comma, which QEMU's option syntax cannot carry: use a data directory without them"
    )]
    Path(String),
}

/// What the host offers a confidential guest, read from the kernel's module parameters.
pub struct HostCapabilities {
    pub sev_snp: bool,
    pub tdx: bool,
    /// Whether the guest image has an SNP launch (an AmdSev firmware measuring its kernel).
    pub snp_image: bool,
}

impl HostCapabilities {
    pub fn detect() -> Self {
        let param =
            |p: &str| std::fs::read_to_string(p).is_ok_and(|v| matches!(v.trim(), "Y" | "y" | "1"));
        HostCapabilities {
            sev_snp: Path::new("/dev/sev").exists()
                && param("/sys/module/kvm_amd/parameters/sev_snp"),
            tdx: param("/sys/module/kvm_intel/parameters/tdx"),
            snp_image: false,
        }
    }

    /// What this host offers for `image`.
    pub fn for_image(self, image: &GuestImage) -> Self {
        HostCapabilities {
            snp_image: image.snp.is_some(),
            ..self
        }
    }

    /// Whether an instance of `kind` can run here (`SEV` is SEV-SNP: the only AMD guest
    /// Cloister launches, and attests, is an SNP one).
    pub fn check(&self, kind: ConfidentialType, accel: Accelerator) -> Result<(), VmError> {
        let refuse = |reason: &str| {
            Err(VmError::Unsupported {
                kind,
                reason: reason.into(),
            })
        };
        match kind {
            ConfidentialType::Insecure | ConfidentialType::Vtpm => Ok(()),
            ConfidentialType::SevSnp if accel != Accelerator::Kvm => {
                refuse("SEV-SNP needs KVM on an AMD host, and QEMU here runs without hardware KVM")
            }
            ConfidentialType::SevSnp if !self.sev_snp => refuse(
                "the host has no SEV-SNP (/dev/sev with kvm_amd's sev_snp=Y, on an EPYC with SNP enabled in firmware)",
            ),
            ConfidentialType::SevSnp if !self.snp_image => refuse(
                "no firmware can measure the guest's kernel for SEV-SNP: install an AmdSev build of OVMF (kernel hashes; Debian 12 ships none) and start the server with --vm-snp-firmware PATH",
            ),
            ConfidentialType::Tdx if accel != Accelerator::Kvm => {
                refuse("TDX needs KVM on an Intel host, and QEMU here runs without hardware KVM")
            }
            ConfidentialType::Tdx if !self.tdx => {
                refuse("the host has no TDX (kvm_intel's tdx=Y, on a Xeon with TDX enabled)")
            }
            ConfidentialType::SevSnp | ConfidentialType::Tdx => Ok(()),
        }
    }
}

fn quoted(p: &Path) -> Result<String, VmError> {
    let s = p.display().to_string();
    if s.contains([' ', ',']) {
        return Err(VmError::Path(s));
    }
    Ok(s)
}

/// QEMU's command line for one instance (without the program name). `forwarder` is this
/// `cloister` binary; `api` the host address the API listens on.
pub fn qemu_args(
    image: &GuestImage,
    kind: ConfidentialType,
    accel: Accelerator,
    paths: &VmPaths,
    forwarder: &Path,
    api: std::net::SocketAddr,
) -> Result<Vec<String>, VmError> {
    let fw = quoted(forwarder)?;
    let mut machine = "q35".to_owned();
    let mut args: Vec<String> = vec![];
    let mut firmware = &image.firmware;
    let mut cpu = (accel == Accelerator::Kvm).then_some("host");
    match kind {
        ConfidentialType::SevSnp => {
            let snp = image.snp.as_ref().ok_or(VmError::Unsupported {
                kind,
                reason: "the guest image has no SNP launch (no AmdSev firmware)".into(),
            })?;
            firmware = &snp.firmware;
            cpu = Some(SNP_CPU);
            // Guest memory must be private to the guest (memfd) for SNP; kernel-hashes puts
            // the kernel, initrd and command line's hashes in the launch digest, so the
            // measurement covers them without a vTPM.
            machine.push_str(",confidential-guest-support=sev0,memory-backend=ram0");
            args.extend([
                "-object".into(),
                format!("memory-backend-memfd,id=ram0,size={MEMORY_MIB}M,share=true"),
                "-object".into(),
                "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,kernel-hashes=on".into(),
            ]);
        }
        ConfidentialType::Tdx => {
            machine.push_str(",kernel-irqchip=split,confidential-guest-support=tdx0");
            args.extend(["-object".into(), "tdx-guest,id=tdx0".into()]);
        }
        ConfidentialType::Vtpm | ConfidentialType::Insecure => {}
    }
    let mut all: Vec<String> = vec![
        "-machine".into(),
        machine,
        "-accel".into(),
        match accel {
            Accelerator::Kvm => "kvm",
            Accelerator::Tcg => "tcg",
        }
        .into(),
    ];
    if let Some(cpu) = cpu {
        all.extend(["-cpu".into(), cpu.into()]);
    }
    all.extend(args);
    all.extend(
        [
            "-m",
            &MEMORY_MIB.to_string(),
            "-smp",
            &VCPUS.to_string(),
            "-nodefaults",
            "-no-user-config",
            "-nographic",
            "-no-reboot",
            "-bios",
            &quoted(firmware)?,
            "-kernel",
            &quoted(&image.kernel)?,
            "-initrd",
            &quoted(&image.initrd)?,
            "-append",
            &image.cmdline,
            // The guest's console is QEMU's standard output, which the driver copies into
            // `paths.console` bounded; no monitor shares it. The platform's monitor is a
            // socket in the instance's directory (`powerdown`).
            "-monitor",
            "none",
            "-qmp",
            &format!("unix:{},server=on,wait=off", quoted(&paths.qmp)?),
            "-chardev",
            "stdio,id=console,signal=off",
            "-serial",
            "chardev:console",
            "-chardev",
            &format!("file,id=exit,path={}", quoted(&paths.exit_port)?),
            "-serial",
            "chardev:exit",
            "-fw_cfg",
            &format!("name=opt/cloister/launch,file={}", quoted(&paths.settings)?),
            "-netdev",
            &format!(
                "user,id=n0,restrict=on,net=169.254.169.0/24,host=169.254.169.1,\
                 guestfwd=tcp:169.254.169.254:80-cmd:{fw} forward --slots {slots} --unix {},\
                 guestfwd=tcp:169.254.169.2:80-cmd:{fw} forward --slots {slots} --tcp {api}",
                quoted(&paths.metadata_socket)?,
                slots = quoted(&paths.forward_slots)?,
            ),
            // No option ROM: the guest never network-boots.
            "-device",
            "e1000,netdev=n0,romfile=",
        ]
        .map(String::from),
    );
    if has_vtpm(kind) {
        all.extend(
            [
                "-chardev",
                &format!("socket,id=chrtpm,path={}", quoted(&paths.tpm_ctrl)?),
                "-tpmdev",
                "emulator,id=tpm0,chardev=chrtpm",
                "-device",
                "tpm-crb,tpmdev=tpm0",
            ]
            .map(String::from),
        );
    }
    Ok(all)
}

/// Presses the guest's power button (ACPI), as Compute Engine's stop does: its PID 1 then
/// stops the launcher with SIGTERM, which gives the workload its grace period. Through QMP,
/// QEMU's JSON monitor: the greeting, `qmp_capabilities`, then `system_powerdown`, each
/// answered on a line. Written here because it is three lines of JSON; the QMP crates
/// generate QEMU's whole schema.
pub async fn powerdown(qmp: &Path) -> std::io::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let stream = tokio::net::UnixStream::connect(qmp).await?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let refused = |what: &str, line: Option<String>| {
        std::io::Error::other(format!("QMP {what}: {}", line.unwrap_or_default()))
    };
    // Each message is a JSON object on a line, told apart by its top-level key.
    let mut next = async || -> std::io::Result<(Option<String>, serde_json::Value)> {
        let line = lines.next_line().await?;
        let value = line
            .as_deref()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or_default();
        Ok((line, value))
    };
    let (line, greeting) = next().await?;
    if greeting.get("QMP").is_none() {
        return Err(refused("greeting", line));
    }
    for command in ["qmp_capabilities", "system_powerdown"] {
        let request = serde_json::json!({ "execute": command }).to_string() + "\n";
        write.write_all(request.as_bytes()).await?;
        // Events may come first; the answer is the message with `return` (or `error`).
        loop {
            let (line, message) = next().await?;
            if message.get("return").is_some() {
                break;
            }
            if message.get("event").is_none() {
                return Err(refused(command, line));
            }
        }
    }
    Ok(())
}

/// Whether a guest of this kind gets the platform's vTPM: every kind that attests. On SEV-SNP
/// and TDX it is the host's, outside the guest's protection, so it proves no measurement
/// there (the hardware's report does); the report binds its AK certificate to name the
/// instance, which the platform alone vouches for on every kind.
pub fn has_vtpm(kind: ConfidentialType) -> bool {
    kind != ConfidentialType::Insecure
}

/// The launcher's exit code from the exit port; none when the guest died before writing
/// it (a crash, or QEMU killed).
pub fn exit_code(exit_port: &Path) -> Option<u8> {
    let text = std::fs::read_to_string(exit_port).ok()?;
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix(EXIT_MARKER)?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> GuestImage {
        GuestImage {
            kernel: "/boot/vmlinuz".into(),
            initrd: "/data/guest/abc/initrd.cpio".into(),
            cmdline: "console=ttyS0".into(),
            firmware: "/usr/share/ovmf/OVMF.fd".into(),
            measurement: String::new(),
            debug: false,
            snp: Some(SnpLaunch {
                firmware: "/usr/share/ovmf/OVMF.amdsev.fd".into(),
                measurement: String::new(),
            }),
        }
    }

    fn args(kind: ConfidentialType, accel: Accelerator) -> Vec<String> {
        qemu_args(
            &image(),
            kind,
            accel,
            &VmPaths::new(Path::new("/data/instances/1")),
            Path::new("/usr/bin/cloister"),
            "127.0.0.1:8080".parse().unwrap(),
        )
        .unwrap()
    }

    fn after<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn launch_arguments_per_type() {
        struct Case {
            kind: ConfidentialType,
            accel: Accelerator,
            machine: &'static str,
            objects: &'static [&'static str],
            tpm: bool,
            cpu: &'static [&'static str],
            firmware: &'static str,
        }
        let cases = [
            Case {
                kind: ConfidentialType::Vtpm,
                accel: Accelerator::Tcg,
                machine: "q35",
                objects: &[],
                tpm: true,
                cpu: &[],
                firmware: "/usr/share/ovmf/OVMF.fd",
            },
            // Nothing attests: no vTPM to name the instance with.
            Case {
                kind: ConfidentialType::Insecure,
                accel: Accelerator::Tcg,
                machine: "q35",
                objects: &[],
                tpm: false,
                cpu: &[],
                firmware: "/usr/share/ovmf/OVMF.fd",
            },
            Case {
                kind: ConfidentialType::SevSnp,
                accel: Accelerator::Kvm,
                machine: "q35,confidential-guest-support=sev0,memory-backend=ram0",
                objects: &[
                    "memory-backend-memfd,id=ram0,size=1536M,share=true",
                    "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,kernel-hashes=on",
                ],
                // The host's vTPM: its AK certificate names the instance in the reports.
                tpm: true,
                // The model the launch digest was computed for, and the AmdSev firmware.
                cpu: &["EPYC-v4"],
                firmware: "/usr/share/ovmf/OVMF.amdsev.fd",
            },
            Case {
                kind: ConfidentialType::Tdx,
                accel: Accelerator::Kvm,
                machine: "q35,kernel-irqchip=split,confidential-guest-support=tdx0",
                objects: &["tdx-guest,id=tdx0"],
                tpm: true,
                cpu: &["host"],
                firmware: "/usr/share/ovmf/OVMF.fd",
            },
        ];
        for c in cases {
            let a = args(c.kind, c.accel);
            assert_eq!(after(&a, "-machine"), [c.machine], "{:?}", c.kind);
            assert_eq!(after(&a, "-object"), c.objects, "{:?}", c.kind);
            assert_eq!(after(&a, "-cpu"), c.cpu, "{:?}", c.kind);
            assert_eq!(after(&a, "-bios"), [c.firmware], "{:?}", c.kind);
            assert_eq!(after(&a, "-smp"), ["1"], "one VMSA in the launch digest");
            assert_eq!(
                after(&a, "-tpmdev") == ["emulator,id=tpm0,chardev=chrtpm"],
                c.tpm,
                "{:?}",
                c.kind
            );
            let accel = if c.accel == Accelerator::Kvm {
                "kvm"
            } else {
                "tcg"
            };
            assert_eq!(after(&a, "-accel"), [accel]);
            // The guest's network: restricted, and only the two forwards.
            let [net] = after(&a, "-netdev")[..] else {
                panic!("one -netdev")
            };
            assert!(net.contains("restrict=on"), "{net}");
            assert_eq!(net.matches("guestfwd=").count(), 2, "{net}");
            let slots = "--slots /data/instances/1/forward-slots";
            assert!(net.contains(&format!("tcp:169.254.169.254:80-cmd:/usr/bin/cloister forward {slots} --unix /data/instances/1/metadata.sock")), "{net}");
            assert!(net.contains(&format!(
                "tcp:169.254.169.2:80-cmd:/usr/bin/cloister forward {slots} --tcp 127.0.0.1:8080"
            )), "{net}");
        }
    }

    #[test]
    fn paths_qemu_cannot_carry_are_refused() {
        let mut bad = image();
        bad.initrd = "/data dir/initrd".into();
        let e = qemu_args(
            &bad,
            ConfidentialType::Vtpm,
            Accelerator::Tcg,
            &VmPaths::new(Path::new("/d")),
            Path::new("/c"),
            "127.0.0.1:1".parse().unwrap(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("space or comma"), "{e}");
    }

    #[test]
    fn an_snp_guest_without_an_snp_launch_is_refused() {
        let mut plain = image();
        plain.snp = None;
        let e = qemu_args(
            &plain,
            ConfidentialType::SevSnp,
            Accelerator::Kvm,
            &VmPaths::new(Path::new("/d")),
            Path::new("/c"),
            "127.0.0.1:1".parse().unwrap(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("AmdSev"), "{e}");
        let host = HostCapabilities {
            sev_snp: true,
            tdx: true,
            snp_image: true,
        };
        assert!(
            host.check(ConfidentialType::SevSnp, Accelerator::Kvm)
                .is_ok()
        );
        let e = host
            .for_image(&plain)
            .check(ConfidentialType::SevSnp, Accelerator::Kvm)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--vm-snp-firmware") && e.contains("never downgrades"),
            "{e}"
        );
    }

    #[test]
    fn confidential_types_are_refused_without_the_hardware() {
        let none = HostCapabilities {
            sev_snp: false,
            tdx: false,
            snp_image: true,
        };
        let both = HostCapabilities {
            sev_snp: true,
            tdx: true,
            snp_image: true,
        };
        use Accelerator::{Kvm, Tcg};
        use ConfidentialType::{SevSnp, Tdx, Vtpm};
        let cases: [(
            &HostCapabilities,
            ConfidentialType,
            Accelerator,
            Option<&str>,
        ); 7] = [
            (&none, SevSnp, Kvm, Some("no SEV-SNP")),
            (&none, Tdx, Kvm, Some("no TDX")),
            (&both, SevSnp, Tcg, Some("without hardware KVM")),
            (&both, Tdx, Tcg, Some("without hardware KVM")),
            (&both, SevSnp, Kvm, None),
            (&both, Tdx, Kvm, None),
            (&none, Vtpm, Tcg, None),
        ];
        for (host, kind, accel, refusal) in cases {
            match (host.check(kind, accel), refusal) {
                (Ok(()), None) => {}
                (Err(e), Some(words)) => {
                    let e = e.to_string();
                    assert!(e.contains(words) && e.contains("never downgrades"), "{e}");
                }
                (got, want) => panic!("{kind:?} {accel:?}: {got:?}, wanted {want:?}"),
            }
        }
    }

    /// QMP as QEMU speaks it (the VM test presses a real guest's button): the greeting, an
    /// answer per command, events between them; an error answer is a failure.
    #[tokio::test]
    async fn the_power_button_is_pressed_through_qmp() {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        async fn monitor(
            path: std::path::PathBuf,
            answers: &'static [&'static str],
        ) -> Vec<String> {
            let listener = tokio::net::UnixListener::bind(&path).unwrap();
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            write
                .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
                .await
                .unwrap();
            let mut asked = vec![];
            for answer in answers {
                asked.push(lines.next_line().await.unwrap().unwrap_or_default());
                write.write_all(answer.as_bytes()).await.unwrap();
            }
            asked
        }
        let dir = tempfile::tempdir().unwrap();
        let ok: &[&str] = &[
            "{\"return\": {}}\n",
            "{\"event\": \"POWERDOWN\", \"timestamp\": {}}\n{\"return\": {}}\n",
        ];
        let failing: &[&str] = &[
            "{\"return\": {}}\n",
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}}\n",
        ];
        for (answers, pressed) in [(ok, true), (failing, false)] {
            let path = dir.path().join(format!("qmp-{pressed}.sock"));
            let server = tokio::spawn(monitor(path.clone(), answers));
            while !path.exists() {
                tokio::task::yield_now().await;
            }
            assert_eq!(powerdown(&path).await.is_ok(), pressed);
            let asked = server.await.unwrap();
            assert!(asked[0].contains("qmp_capabilities"), "{asked:?}");
            assert!(asked[1].contains("system_powerdown"), "{asked:?}");
        }
    }

    #[test]
    fn exit_code_is_the_last_marker() {
        let dir = tempfile::tempdir().unwrap();
        let port = dir.path().join("exit");
        assert_eq!(exit_code(&port), None);
        std::fs::write(
            &port,
            "cloister-launcher-exit: 3\ncloister-launcher-exit: 0\n",
        )
        .unwrap();
        assert_eq!(exit_code(&port), Some(0));
        std::fs::write(&port, "garbage\n").unwrap();
        assert_eq!(exit_code(&port), None);
    }
}
