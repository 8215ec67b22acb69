//! PID 1 of the guest image: prepares the VM (root on a tmpfs, /proc, /sys, /dev, cgroups,
//! the kernel modules, the static address slirp's network gives it), runs the launcher
//! in process, writes its exit code to the second serial port (which only this process
//! opens: the workload has no devices, so it cannot forge it on the console) and powers off.
//! No shell, no login: nothing else runs in the guest.

use std::ffi::CString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use nix::mount::{MsFlags, mount};

/// The guest's address in slirp's 169.254.169.0/24 (its first DHCP address, fixed here).
pub const GUEST_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 15);
/// Where the platform forwards the API (guestfwd); the guest reaches it at the public URL's
/// loopback port through `api_proxy`.
pub const API_FORWARD: (Ipv4Addr, u16) = (Ipv4Addr::new(169, 254, 169, 2), 80);
/// The platform's launch settings, passed through QEMU's fw_cfg (not the kernel command line,
/// which is measured: the image's measurement must not depend on one server's URL).
const SETTINGS: &str = "/sys/firmware/qemu_fw_cfg/by_name/opt/cloister/launch/raw";
use cloister_services::compute::vm::EXIT_MARKER;
/// The vTPM's resource manager device.
const VTPM: &str = "/dev/tpmrm0";

#[derive(serde::Deserialize)]
struct Settings {
    /// The server's public URL, as the launcher and workload name it.
    api_endpoint: String,
    /// Its host name, when it has one (the guest has no DNS: /etc/hosts names loopback).
    api_host: Option<String>,
    /// The evidence the launcher presents: vtpm, insecure, sev-snp, tdx.
    tee: String,
}

impl Settings {
    fn tee(&self) -> Result<cloister_launcher::TeeConfig> {
        use cloister_launcher::TeeConfig;
        let tsm = PathBuf::from(cloister_launcher::tsm::CONFIGFS_TSM);
        // The platform gives confidential guests a vTPM too, as Compute Engine does: its AK
        // certificate names the instance, which their reports then bind.
        let vtpm = Path::new(VTPM).exists().then(|| format!("device:{VTPM}"));
        Ok(match self.tee.as_str() {
            "vtpm" => TeeConfig::Vtpm {
                tcti: format!("device:{VTPM}"),
            },
            "insecure" => TeeConfig::Insecure,
            "sev-snp" => TeeConfig::SevSnp { tsm, vtpm },
            "tdx" => TeeConfig::Tdx {
                tsm,
                rtmr3: cloister_launcher::rtmr::RTMR3_SYSFS.into(),
                vtpm,
            },
            other => bail!("unknown TEE {other:?} in the launch settings"),
        })
    }
}

fn mount_fs(fstype: &str, target: &str, flags: MsFlags) -> Result<()> {
    // Mount points in sysfs exist (or not) by the kernel's say: never created there.
    if !Path::new(target).exists() {
        std::fs::create_dir_all(target).with_context(|| format!("creating {target}"))?;
    }
    mount(Some(fstype), target, Some(fstype), flags, None::<&str>)
        .with_context(|| format!("mounting {fstype} on {target}"))
}

/// Copies the initramfs into a tmpfs and makes that the root: runc's pivot_root refuses the
/// initramfs's rootfs (pivot_root(2): "the current root is on the rootfs").
fn root_on_tmpfs() -> Result<()> {
    let new = Path::new("/newroot");
    std::fs::create_dir_all(new).context("creating /newroot")?;
    mount(
        Some("tmpfs"),
        new,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0755"),
    )
    .context("mounting the new root")?;
    // /dev is already devtmpfs (the console): a mount of its own, not part of the copy.
    let files = walkdir::WalkDir::new("/")
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !e.path().starts_with(new) && !e.path().starts_with("/dev"));
    std::fs::create_dir_all(new.join("dev")).context("creating /newroot/dev")?;
    for entry in files {
        let entry = entry?;
        let path = entry.path();
        let target = new.join(path.strip_prefix("/")?);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target)
                .with_context(|| format!("creating {}", target.display()))?;
        } else {
            std::fs::copy(path, &target).with_context(|| format!("copying {}", path.display()))?;
            // Free the initramfs's copy as we go (the guest's memory is small).
            std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    std::env::set_current_dir(new).context("entering the new root")?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .context("moving the root")?;
    // SAFETY: chroot(2) on a NUL-terminated literal.
    if unsafe { libc::chroot(c".".as_ptr()) } != 0 {
        bail!("chroot: {}", std::io::Error::last_os_error());
    }
    std::env::set_current_dir("/").context("entering /")?;
    Ok(())
}

fn console() -> Result<()> {
    let fd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")?;
    for target in 0..3 {
        // SAFETY: dup2 on descriptors this process owns; no memory is touched.
        unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&fd), target) };
    }
    Ok(())
}

fn load_modules() -> Result<()> {
    for entry in walkdir::WalkDir::new("/lib/modules").sort_by_file_name() {
        let entry = entry.context("listing /lib/modules")?;
        if entry.path().extension().is_some_and(|e| e == "ko") {
            let file = std::fs::File::open(entry.path())
                .with_context(|| format!("opening {}", entry.path().display()))?;
            nix::kmod::finit_module(
                &file,
                &CString::default(),
                nix::kmod::ModuleInitFlags::empty(),
            )
            .with_context(|| format!("loading {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Sets an interface's IPv4 address and brings it up. By hand, with three ioctls: the
/// netlink crates are built for full async route management, far more than this needs; the
/// kernel adds the /24's route itself, and the guest needs no other.
fn interface_up(name: &str, address: Option<(Ipv4Addr, Ipv4Addr)>) -> Result<()> {
    // SAFETY: plain system calls on a socket this function owns and a zeroed ifreq whose
    // name is bounded by IFNAMSIZ below.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        if sock < 0 {
            bail!("socket: {}", std::io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        if name.len() >= libc::IFNAMSIZ {
            bail!("interface name {name} too long");
        }
        for (i, b) in name.bytes().enumerate() {
            req.ifr_name[i] = b as libc::c_char;
        }
        let set = |req: &mut libc::ifreq, op: libc::Ioctl, what: &str| -> Result<()> {
            if libc::ioctl(sock, op, req as *mut libc::ifreq) < 0 {
                bail!("{what} on {name}: {}", std::io::Error::last_os_error());
            }
            Ok(())
        };
        let sockaddr = |ip: Ipv4Addr| {
            let mut a: libc::sockaddr_in = std::mem::zeroed();
            a.sin_family = libc::AF_INET as libc::sa_family_t;
            a.sin_addr.s_addr = u32::from_ne_bytes(ip.octets());
            std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(a)
        };
        let result = (|| {
            if let Some((ip, mask)) = address {
                req.ifr_ifru.ifru_addr = sockaddr(ip);
                set(&mut req, libc::SIOCSIFADDR, "setting the address")?;
                req.ifr_ifru.ifru_netmask = sockaddr(mask);
                set(&mut req, libc::SIOCSIFNETMASK, "setting the netmask")?;
            }
            req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            set(&mut req, libc::SIOCSIFFLAGS, "bringing it up")
        })();
        libc::close(sock);
        result
    }
}

/// Serves the public URL's port on the guest's loopback by forwarding each connection to
/// the platform's API forward, so the launcher and the workload name the API (and the
/// registry in image references) exactly as on the host.
async fn api_proxy(endpoint: &str) -> Result<()> {
    let authority = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, r)| r)
        .split('/')
        .next()
        .unwrap_or_default();
    let port: u16 = match authority.rsplit_once(':') {
        Some((_, p)) => p.parse().context("the API endpoint's port")?,
        None if endpoint.starts_with("https://") => 443,
        None => 80,
    };
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .with_context(|| format!("listening on 127.0.0.1:{port}"))?;
    tokio::spawn(serve_api(
        listener,
        SocketAddr::from(API_FORWARD),
        API_CONNECTIONS,
    ));
    Ok(())
}

/// Connections the API proxy carries at once. The workload shares the guest's network: a
/// proxy that gave up (out of descriptors) would free the port for the workload to answer
/// the launcher's own API calls. So it never stops accepting, and holds at most this many.
const API_CONNECTIONS: usize = 256;

async fn serve_api(listener: tokio::net::TcpListener, upstream: SocketAddr, connections: usize) {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(connections));
    loop {
        let mut inbound = match listener.accept().await {
            Ok((inbound, _)) => inbound,
            Err(_) => {
                // Out of descriptors, most likely: the pending connection keeps the listener
                // readable, so back off instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = std::sync::Arc::clone(&permits).try_acquire_owned() else {
            continue; // dropped: closed at once
        };
        tokio::spawn(async move {
            let _permit = permit;
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

async fn prepare() -> Result<Settings> {
    mount_fs("devtmpfs", "/dev", MsFlags::empty())?;
    let _ = console();
    root_on_tmpfs()?;
    mount_fs("proc", "/proc", MsFlags::empty())?;
    mount_fs("sysfs", "/sys", MsFlags::empty())?;
    mount_fs("devtmpfs", "/dev", MsFlags::empty())?;
    let _ = console();
    mount_fs("tmpfs", "/run", MsFlags::MS_NOSUID | MsFlags::MS_NODEV)?;
    mount_fs("tmpfs", "/tmp", MsFlags::MS_NOSUID | MsFlags::MS_NODEV)?;
    mount_fs("cgroup2", "/sys/fs/cgroup", MsFlags::empty())?;
    // configfs-tsm, where SEV-SNP and TDX guests ask for reports.
    if Path::new("/sys/kernel/config").exists() {
        mount_fs("configfs", "/sys/kernel/config", MsFlags::empty())?;
    }
    load_modules()?;
    interface_up("lo", None)?;
    interface_up("eth0", Some((GUEST_IP, Ipv4Addr::new(255, 255, 255, 0))))?;
    let raw = std::fs::read(SETTINGS).with_context(|| format!("reading {SETTINGS}"))?;
    let settings: Settings =
        serde_json::from_slice(&raw).context("the platform's launch settings")?;
    if let Some(host) = &settings.api_host {
        std::fs::write("/etc/hosts", format!("127.0.0.1 localhost {host}\n"))
            .context("writing /etc/hosts")?;
    }
    api_proxy(&settings.api_endpoint)
        .await
        .context("serving the API on the guest's loopback")?;
    Ok(settings)
}

fn debug_image() -> bool {
    std::fs::read_to_string("/proc/cmdline")
        .is_ok_and(|c| c.split_whitespace().any(|a| a == "cloister.debug=1"))
}

/// How long the launcher has to end after the power button before the guest powers off
/// regardless (the platform kills it after 20 s): the launcher gives the workload 10 s.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

/// The power button's input device (`button.ko` makes it, `evdev.ko` gives it a node).
fn power_button_device() -> Option<PathBuf> {
    std::fs::read_dir("/sys/class/input")
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("event"))
        .find(|e| {
            std::fs::read_to_string(e.path().join("device/name"))
                .is_ok_and(|n| n.trim() == "Power Button")
        })
        .map(|e| Path::new("/dev/input").join(e.file_name()))
}

/// Compute Engine's stop presses the power button (ACPI), and so does Cloister's: the
/// launcher then gets SIGTERM, as systemd gives it on a Confidential Space VM, and stops the
/// workload with its grace. A launcher that has not started the workload yet has no handler
/// (PID 1 ignores what it does not handle), so the guest powers off after the grace anyway.
async fn stop_on_power_button() {
    use tokio::io::AsyncReadExt;
    /// `struct input_event` on x86-64: a timeval, then type, code, value.
    const EVENT: usize = 24;
    const EV_KEY: u16 = 1;
    const KEY_POWER: u16 = 116;
    let Some(device) = power_button_device() else {
        println!("[init] no power button: the guest stops only when the launcher ends");
        return;
    };
    let Ok(mut input) = tokio::fs::File::open(&device).await else {
        println!("[init] cannot read {}", device.display());
        return;
    };
    let mut event = [0u8; EVENT];
    loop {
        if input.read_exact(&mut event).await.is_err() {
            return;
        }
        let kind = u16::from_ne_bytes([event[16], event[17]]);
        let code = u16::from_ne_bytes([event[18], event[19]]);
        let pressed = i32::from_ne_bytes([event[20], event[21], event[22], event[23]]) == 1;
        if kind == EV_KEY && code == KEY_POWER && pressed {
            break;
        }
    }
    println!("[init] power button: stopping the launcher");
    // SAFETY: kill(2) on this process; no memory is touched.
    unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    tokio::time::sleep(STOP_GRACE).await;
    println!("[init] the launcher did not end in time: powering off");
    power_off();
}

/// Writes what was written to disk and powers the VM off; never returns.
fn power_off() -> ! {
    // SAFETY: sync(2) takes nothing and cannot fail.
    unsafe { libc::sync() };
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    // reboot(2) does not return on success; PID 1 must never exit.
    loop {
        std::thread::park();
    }
}

/// PID 1: never returns; the VM powers off when the launcher is done.
pub async fn run() -> ! {
    let prepared = prepare().await;
    if prepared.is_ok() {
        tokio::spawn(stop_on_power_button());
    }
    let code = match prepared.and_then(|s| s.tee().map(|tee| (s, tee))) {
        Ok((settings, tee)) => {
            cloister_launcher::run(cloister_launcher::Config {
                metadata_host: "169.254.169.254".into(),
                api_endpoint: settings.api_endpoint,
                runtime_dir: PathBuf::from("/run/cloister"),
                tee,
                runc: PathBuf::from("/usr/sbin/runc"),
                workload_netns: None,
                // Only the debug image (another measurement, `dbgstat: enabled`) runs
                // `debugonly` launch policies.
                debug: debug_image(),
            })
            .await
        }
        Err(e) => {
            println!("[init] ERROR: {e:#}");
            cloister_launcher::exit::FAILURE
        }
    };
    if let Ok(mut port) = std::fs::OpenOptions::new().write(true).open("/dev/ttyS1") {
        let _ = std::io::Write::write_all(&mut port, format!("{EXIT_MARKER} {code}\n").as_bytes());
    }
    power_off()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::*;

    /// An upstream that echoes each connection, and a proxy to it holding `connections`.
    async fn proxy(connections: usize) -> SocketAddr {
        let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut c, _)) = upstream.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                };
                tokio::spawn(async move {
                    let (mut r, mut w) = c.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        tokio::spawn(serve_api(listener, to, connections));
        at
    }

    /// Whether a new connection through the proxy reaches the upstream (blocking: the proxy
    /// runs on the runtime's other threads).
    fn carried(at: SocketAddr) -> bool {
        let Ok(mut c) = TcpStream::connect(at) else {
            return false;
        };
        let mut b = [0u8; 1];
        c.write_all(b"x").is_ok() && matches!(c.read(&mut b), Ok(1))
    }

    fn eventually(what: impl Fn() -> bool) -> bool {
        (0..100).any(|_| {
            what() || {
                std::thread::sleep(std::time::Duration::from_millis(50));
                false
            }
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_api_proxy_holds_its_bound_and_frees_what_closes() {
        let at = proxy(2).await;
        tokio::task::spawn_blocking(move || {
            let mut held: Vec<TcpStream> = (0..2)
                .map(|_| {
                    let mut c = TcpStream::connect(at).unwrap();
                    let mut b = [0u8; 1];
                    c.write_all(b"x").unwrap();
                    assert_eq!(c.read(&mut b).unwrap(), 1);
                    c
                })
                .collect();
            assert!(!carried(at), "a third connection is closed at once");
            held.pop();
            assert!(eventually(|| carried(at)), "a closed one frees its room");
        })
        .await
        .unwrap();
    }

    /// Out of descriptors, the proxy keeps its port (the workload shares the guest's network
    /// and could take it) and carries connections again once there are some. In a child
    /// process: the limit is the whole process's.
    #[test]
    fn the_api_proxy_outlives_running_out_of_descriptors() {
        const NAME: &str = "guest::init::tests::the_api_proxy_outlives_running_out_of_descriptors";
        if std::env::var_os("CLOISTER_TEST_CHILD").is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", NAME, "--test-threads=1", "--nocapture"])
                .env("CLOISTER_TEST_CHILD", "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let errors = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && text.contains("1 passed"),
                "{text}\n{errors}"
            );
            return;
        }
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let at = rt.block_on(proxy(1000));
        assert!(carried(at));
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        setrlimit(Resource::RLIMIT_NOFILE, 64, hard).unwrap();
        // Each carried connection costs this process four descriptors: connect until none
        // is left, for the proxy's accepts either.
        let mut held = Vec::new();
        let mut refused = false;
        for _ in 0..200 {
            match TcpStream::connect(at) {
                Ok(c) => held.push(c),
                Err(_) => {
                    refused = true;
                    break;
                }
            }
        }
        assert!(refused, "the descriptors never ran out");
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(held);
        setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
        assert!(eventually(|| carried(at)), "the proxy stopped accepting");
    }
}
