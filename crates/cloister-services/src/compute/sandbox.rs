//! An instance's sandbox on the local driver: the boundary a VM gives a Confidential Space
//! workload. Each instance gets two network namespaces with nothing but loopback:
//! - the **platform** namespace, where the instance's swtpm listens and its launcher runs;
//! - the **workload** namespace, which runc puts the container in.
//!
//! In both, this server answers at two addresses only: the instance's own metadata server at
//! GCE's `169.254.169.254:80` (`metadata.google.internal` in the hosts file), and Cloister's
//! API at the address its public URL names. Both are sockets the server opened inside the
//! namespace and forwards from the host, so nothing else on the host is reachable (other
//! instances, their vTPMs and metadata servers, databases, arbitrary loopback ports), and the
//! workload cannot reach its own vTPM either. Dropping the sandbox closes every listener and
//! every forwarded connection, and removes the namespaces.
//!
//! Creating namespaces needs root (CAP_SYS_ADMIN), as runc does; without it an instance is
//! refused, never run on the host's network.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

/// GCE's metadata server address, as every Google client library knows it.
pub const METADATA_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// The swtpm's data port in the platform namespace (its control channel is the next one).
pub const SWTPM_PORT: u16 = 2321;
/// Connections one instance's forwarders carry at once (all addresses, both namespaces
/// together); more are closed at accept, so one instance cannot use up the server's file
/// descriptors.
const MAX_CONNECTIONS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "cannot create the instance's network namespace ({0}); the local driver isolates each instance in its own namespaces, which needs root (CAP_SYS_ADMIN), as runc does"
    )]
    Namespace(#[source] nix::Error),
    #[error("configuring the instance's loopback: `{command}` failed: {detail}")]
    Loopback { command: String, detail: String },
    #[error("cannot run `ip` to configure the instance's loopback ({0}); install iproute2")]
    NoIp(#[source] io::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("the namespace thread panicked")]
    Panicked,
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> SandboxError {
    let what = what.into();
    move |source| SandboxError::Io { what, source }
}

/// A network namespace held by a bind mount at `path` (as `ip netns` holds one), removed on
/// drop. The namespace itself lives on while a socket or process still uses it.
pub struct NetNs {
    path: PathBuf,
    handle: File,
}

/// Runs `f` on a thread of its own that first joins the namespace `ns`: sockets it creates,
/// and processes it spawns, belong to that namespace. (A namespace is per thread; a fresh
/// thread leaves every other thread, and the async runtime's, where they were.)
pub fn in_netns<T: Send>(ns: &File, f: impl FnOnce() -> T + Send) -> Result<T, SandboxError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(ns, CloneFlags::CLONE_NEWNET).map_err(SandboxError::Namespace)?;
            Ok(f())
        })
        .join()
        .unwrap_or(Err(SandboxError::Panicked))
    })
}

fn ip(args: &[&str]) -> Result<(), SandboxError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(SandboxError::NoIp)?;
    if out.status.success() {
        return Ok(());
    }
    Err(SandboxError::Loopback {
        command: format!("ip {}", args.join(" ")),
        detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

impl NetNs {
    /// A new namespace whose loopback is up and also carries `addresses`.
    pub fn create(path: &Path, addresses: &[IpAddr]) -> Result<NetNs, SandboxError> {
        File::create(path).map_err(io_err(format!("creating {}", path.display())))?;
        std::thread::scope(|s| {
            s.spawn(|| {
                unshare(CloneFlags::CLONE_NEWNET).map_err(SandboxError::Namespace)?;
                mount(
                    Some("/proc/thread-self/ns/net"),
                    path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(SandboxError::Namespace)?;
                // `ip` runs in this thread's new namespace: a child inherits its parent
                // thread's namespaces.
                ip(&["link", "set", "lo", "up"])?;
                for a in addresses {
                    let prefix = if a.is_ipv4() { 32 } else { 128 };
                    ip(&["addr", "add", &format!("{a}/{prefix}"), "dev", "lo"])?;
                }
                Ok(())
            })
            .join()
            .unwrap_or(Err(SandboxError::Panicked))
        })
        .inspect_err(|_| release(path))?;
        let handle = File::open(path).map_err(io_err(format!("opening {}", path.display())))?;
        Ok(NetNs {
            path: path.to_owned(),
            handle,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A handle to join the namespace with (for [`in_netns`] off this thread).
    pub fn handle(&self) -> Result<File, SandboxError> {
        self.handle
            .try_clone()
            .map_err(io_err("duplicating a namespace handle"))
    }

    /// The raw descriptor a child joins in `pre_exec` (see [`enter_in_child`]).
    pub fn raw_fd(&self) -> i32 {
        self.handle.as_raw_fd()
    }

    /// A listening socket on `addr` inside the namespace.
    fn listen(&self, addr: SocketAddr) -> Result<tokio::net::TcpListener, SandboxError> {
        let listener = in_netns(&self.handle, || {
            let l = std::net::TcpListener::bind(addr)?;
            l.set_nonblocking(true)?;
            Ok::<_, io::Error>(l)
        })?
        .map_err(io_err(format!(
            "listening on {addr} in the instance's namespace"
        )))?;
        tokio::net::TcpListener::from_std(listener).map_err(io_err(format!(
            "listening on {addr} in the instance's namespace"
        )))
    }
}

/// Unmounts and removes a namespace's mount point (also one a crashed server left behind).
pub fn release(path: &Path) {
    let _ = umount2(path, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(path);
}

impl Drop for NetNs {
    fn drop(&mut self) {
        release(&self.path);
    }
}

/// Where a forwarded address leads, on the host.
#[derive(Clone, Debug)]
pub enum Upstream {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// Cloister's API as an instance reaches it: the public URL's host name (for the hosts file,
/// when it is a name) and the address it resolves to on the host.
#[derive(Clone, Debug)]
pub struct ApiAddress {
    pub name: Option<String>,
    pub addr: SocketAddr,
}

impl ApiAddress {
    /// Resolves the public URL's host on the host (an instance has no DNS).
    pub async fn resolve(public_url: &str) -> Result<ApiAddress, String> {
        let url = url::Url::parse(public_url)
            .map_err(|e| format!("the public URL {public_url:?} does not parse: {e}"))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("the public URL {public_url:?} has no port"))?;
        let (name, addr): (Option<String>, SocketAddr) = match url.host() {
            Some(url::Host::Ipv4(ip)) => (None, SocketAddr::new(ip.into(), port)),
            Some(url::Host::Ipv6(ip)) => (None, SocketAddr::new(ip.into(), port)),
            Some(url::Host::Domain(d)) => {
                let addr = tokio::net::lookup_host((d, port))
                    .await
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| {
                        format!("the public URL's host {d:?} does not resolve on this machine")
                    })?;
                (Some(d.to_owned()), addr)
            }
            None => return Err(format!("the public URL {public_url:?} has no host")),
        };
        if addr.ip().is_loopback() && [SWTPM_PORT, SWTPM_PORT + 1].contains(&addr.port()) {
            return Err(format!(
                "the public URL {public_url:?} uses port {}, which an instance's vTPM holds on its loopback: serve Cloister on another port",
                addr.port()
            ));
        }
        if addr.ip().is_unspecified() {
            return Err(format!(
                "the public URL {public_url:?} names no address an instance can reach ({}): set --public-url to the address clients use",
                addr.ip()
            ));
        }
        Ok(ApiAddress { name, addr })
    }
}

/// An instance's two namespaces and the server's forwarders into them.
pub struct Sandbox {
    pub platform: NetNs,
    pub workload: NetNs,
    /// The hosts file the launcher and the workload see as `/etc/hosts`.
    pub hosts: PathBuf,
    forwarders: Vec<JoinHandle<()>>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Aborting a forwarder drops its listener and every connection it carries.
        for f in &self.forwarders {
            f.abort();
        }
    }
}

impl Sandbox {
    /// Creates both namespaces under `dir` and forwards, in each, GCE's metadata address to
    /// `metadata` and the API's address to the API.
    pub async fn create(
        dir: &Path,
        api: &ApiAddress,
        metadata: &Path,
    ) -> Result<Sandbox, SandboxError> {
        let net = dir.join("net");
        std::fs::create_dir_all(&net).map_err(io_err(format!("creating {}", net.display())))?;
        let mut addresses = vec![IpAddr::V4(METADATA_IP)];
        if !api.addr.ip().is_loopback() {
            addresses.push(api.addr.ip());
        }
        let (platform, workload) = {
            let (net, addresses) = (net.clone(), addresses.clone());
            tokio::task::spawn_blocking(move || {
                let platform = NetNs::create(&net.join("platform"), &addresses)?;
                let workload = NetNs::create(&net.join("workload"), &addresses)?;
                Ok::<_, SandboxError>((platform, workload))
            })
            .await
            .map_err(|_| SandboxError::Panicked)??
        };
        let hosts = dir.join("hosts");
        let mut text = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost\n{METADATA_IP}\tmetadata.google.internal metadata\n"
        );
        if let Some(name) = &api.name {
            text.push_str(&format!("{}\t{name}\n", api.addr.ip()));
        }
        std::fs::write(&hosts, text).map_err(io_err(format!("writing {}", hosts.display())))?;
        let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut sandbox = Sandbox {
            platform,
            workload,
            hosts,
            forwarders: Vec::new(),
        };
        let routes = [
            (
                SocketAddr::new(METADATA_IP.into(), 80),
                Upstream::Unix(metadata.to_owned()),
            ),
            (api.addr, Upstream::Tcp(api.addr)),
        ];
        for (at, to) in routes {
            for ns in [&sandbox.platform, &sandbox.workload] {
                let listener = ns.listen(at)?;
                sandbox.forwarders.push(tokio::spawn(forward(
                    listener,
                    to.clone(),
                    Arc::clone(&connections),
                )));
            }
        }
        Ok(sandbox)
    }
}

/// Accepts connections inside a namespace and joins each to `to` on the host. The
/// connections live in this task's set, so aborting the task ends them all.
async fn forward(listener: tokio::net::TcpListener, to: Upstream, permits: Arc<Semaphore>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let inbound = match accepted {
                    Ok((inbound, _)) => inbound,
                    Err(e) => {
                        // Out of descriptors, most likely: the pending connection keeps the
                        // listener readable, so back off instead of spinning.
                        tracing::warn!(error = %e, "an instance's forwarder could not accept");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    continue; // dropped: closed at once
                };
                let to = to.clone();
                connections.spawn(async move {
                    let _permit = permit;
                    let _ = match &to {
                        Upstream::Tcp(addr) => match TcpStream::connect(addr).await {
                            Ok(out) => join(inbound, out).await,
                            Err(_) => Ok(()),
                        },
                        Upstream::Unix(path) => match UnixStream::connect(path).await {
                            Ok(out) => join(inbound, out).await,
                            Err(_) => Ok(()),
                        },
                    };
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn join(mut a: TcpStream, mut b: impl AsyncRead + AsyncWrite + Unpin) -> io::Result<()> {
    tokio::io::copy_bidirectional(&mut a, &mut b)
        .await
        .map(|_| ())
}

/// What a child process (the launcher) does between fork and exec to enter its instance: join
/// the platform network namespace, and see the instance's hosts file as `/etc/hosts` in a
/// mount namespace of its own (so the API's name resolves without DNS). The mounts are the
/// host's as slaves: an unmount on the host (a stopped instance's namespaces) reaches it too.
#[derive(Clone)]
pub struct ChildEntry {
    netns: i32,
    hosts: std::ffi::CString,
}

impl ChildEntry {
    pub fn new(sandbox: &Sandbox) -> Result<ChildEntry, SandboxError> {
        let hosts =
            std::ffi::CString::new(sandbox.hosts.as_os_str().as_encoded_bytes()).map_err(|e| {
                SandboxError::Io {
                    what: "the hosts file's path".into(),
                    source: io::Error::new(io::ErrorKind::InvalidInput, e),
                }
            })?;
        Ok(ChildEntry {
            netns: sandbox.platform.raw_fd(),
            hosts,
        })
    }

    /// Only async-signal-safe calls on memory prepared before the fork: this runs in the
    /// child of a multi-threaded process.
    pub fn enter(&self) -> io::Result<()> {
        fn check(r: i32) -> io::Result<()> {
            if r == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        }
        // SAFETY: plain system calls on a descriptor and C strings owned by `self`, which
        // outlives the call; no allocation, no locks.
        unsafe {
            check(libc::setns(self.netns, libc::CLONE_NEWNET))?;
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_SLAVE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                self.hosts.as_ptr(),
                c"/etc/hosts".as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ))?;
        }
        Ok(())
    }
}
