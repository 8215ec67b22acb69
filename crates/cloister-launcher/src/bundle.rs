//! The OCI runtime bundle runc runs: the image's process (entrypoint, cmd, env, workdir, user)
//! with the overrides the launch policy permitted, the instance's network (the launcher's, as
//! Confidential Space gives its workload the VM's, or the namespace the local driver made for
//! the workload), the host's `/etc/hosts` and `/etc/resolv.conf`, the launcher's directory
//! read-only at `/run/container_launcher`, and the operator's tmpfs mounts. The process keeps
//! runc's default confinement: its own PID, IPC, UTS and mount namespaces, the capabilities
//! AUDIT_WRITE, KILL and NET_BIND_SERVICE only (a subset of Docker's default set),
//! no_new_privileges, and /proc's sensitive files masked or read-only; and Cloister's
//! system-call filter (`seccomp.rs`).

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, MountBuilder, Spec, User,
};

use crate::LaunchError;
use crate::spec::LaunchSpec;

/// What the container runs, decided once and measured exactly as run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub args: Vec<String>,
    /// `NAME=VALUE`, in order.
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The final argv and environment: the image's, then the spec's permitted overrides, then
/// `added_env` (what the launcher must decide: where the metadata server is), then
/// `default_env` for names neither the image nor the spec set (where Google's clients find
/// Cloister's APIs: a workload may aim them elsewhere). All are measured like any other.
pub fn process(
    image_config: &serde_json::Value,
    spec: &LaunchSpec,
    added_env: &[(String, String)],
    default_env: &[(String, String)],
) -> Result<Process, LaunchError> {
    let c = &image_config["config"];
    let mut args = strings(&c["Entrypoint"]);
    args.extend(spec.cmd.clone().unwrap_or_else(|| strings(&c["Cmd"])));
    if args.is_empty() {
        return Err(LaunchError::Spec(
            "the image has neither an entrypoint nor a command, and tee-cmd gives none".into(),
        ));
    }
    let mut env: Vec<(String, String)> = strings(&c["Env"])
        .iter()
        .filter_map(|e| e.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    for (k, v) in spec.env.iter().chain(added_env) {
        match env.iter_mut().find(|(name, _)| name == k) {
            Some(slot) => slot.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    for (k, v) in default_env {
        if !env.iter().any(|(name, _)| name == k) {
            env.push((k.clone(), v.clone()));
        }
    }
    let (uid, gid) = user(c["User"].as_str().unwrap_or_default())?;
    let cwd = c["WorkingDir"]
        .as_str()
        .filter(|w| !w.is_empty())
        .unwrap_or("/");
    // A working directory under /proc is how an image reached the host through runc's
    // leaked descriptors (CVE-2024-21626); no workload needs one.
    let path = Path::new(cwd);
    if !path.is_absolute() || path.starts_with("/proc") {
        return Err(LaunchError::Spec(format!(
            "the image's WorkingDir {cwd:?} is not allowed: it must be an absolute path outside /proc"
        )));
    }
    Ok(Process {
        args,
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        cwd: cwd.to_owned(),
        uid,
        gid,
    })
}

/// The image's `User`: numeric `UID[:GID]` or root (names would need the image's /etc/passwd,
/// which a FROM-scratch workload does not have).
fn user(u: &str) -> Result<(u32, u32), LaunchError> {
    if u.is_empty() || u == "root" {
        return Ok((0, 0));
    }
    let (uid, gid) = u.split_once(':').unwrap_or((u, u));
    match (uid.parse(), gid.parse()) {
        (Ok(uid), Ok(gid)) => Ok((uid, gid)),
        _ => Err(LaunchError::Spec(format!(
            "the image's User {u:?} is not numeric (UID or UID:GID); Cloister does not read the image's /etc/passwd"
        ))),
    }
}

fn spec_err(e: oci_spec::OciSpecError) -> LaunchError {
    LaunchError::Spec(format!("building the runtime config: {e}"))
}

/// The most processes and threads a workload may have at once (its cgroup's pids limit):
/// far above what a workload needs, far below what would starve the host.
pub const MAX_PROCESSES: i64 = 4096;

/// The most memory a workload may use (its cgroup's limit, swap included): 8 GiB, the memory
/// of Compute Engine's n2d-standard-2, the codelab's machine type. A workload that allocates
/// without end is stopped by the kernel's OOM killer in its own cgroup, not the host's.
pub const MAX_MEMORY_BYTES: i64 = 8 << 30;

/// What runs in the container, and where.
pub struct Container<'a> {
    pub process: &'a Process,
    pub launcher_dir: &'a Path,
    pub spec: &'a LaunchSpec,
    pub hostname: &'a str,
    /// The network namespace to join; None: the launcher's own.
    pub netns: Option<&'a Path>,
    /// The container's cgroup, unique to the instance (its numeric id): runc would otherwise
    /// derive it from the container's name, which two tenants' instances may share.
    pub cgroup: String,
}

/// Writes `config.json` for a bundle whose rootfs is `bundle/rootfs`.
pub fn write_config(bundle: &Path, c: &Container) -> Result<PathBuf, LaunchError> {
    let (process, spec) = (c.process, c.spec);
    let mut config = Spec::default();
    config.set_hostname(Some(c.hostname.to_owned()));
    if let Some(root) = config.root_mut() {
        root.set_path(PathBuf::from("rootfs"));
        root.set_readonly(Some(false));
    }
    if let Some(p) = config.process_mut() {
        p.set_args(Some(process.args.clone()));
        p.set_env(Some(process.env.clone()));
        p.set_cwd(PathBuf::from(&process.cwd));
        let mut user = User::default();
        user.set_uid(process.uid);
        user.set_gid(process.gid);
        p.set_user(user);
        p.set_terminal(Some(false));
    }
    if let Some(linux) = config.linux_mut()
        && let Some(namespaces) = linux.namespaces().clone()
    {
        let mut namespaces: Vec<LinuxNamespace> = namespaces
            .into_iter()
            .filter(|n| n.typ() != LinuxNamespaceType::Network)
            .collect();
        if let Some(path) = c.netns {
            let mut network = LinuxNamespace::default();
            network.set_typ(LinuxNamespaceType::Network);
            network.set_path(Some(path.to_owned()));
            namespaces.push(network);
        }
        linux.set_namespaces(Some(namespaces));
    }
    if let Some(linux) = config.linux_mut() {
        linux.set_cgroups_path(Some(PathBuf::from(&c.cgroup)));
        // A fork bomb stops at the instance's own limit, not at the host's.
        let pids = LinuxPidsBuilder::default()
            .limit(MAX_PROCESSES)
            .build()
            .map_err(spec_err)?;
        let memory = LinuxMemoryBuilder::default()
            .limit(MAX_MEMORY_BYTES)
            .swap(MAX_MEMORY_BYTES)
            .build()
            .map_err(spec_err)?;
        linux.set_resources(Some(
            LinuxResourcesBuilder::default()
                .pids(pids)
                .memory(memory)
                .build()
                .map_err(spec_err)?,
        ));
        linux.set_seccomp(Some(crate::seccomp::filter().map_err(spec_err)?));
    }
    let mut mounts = config.mounts().clone().unwrap_or_default();
    mounts.push(
        MountBuilder::default()
            .destination("/run/container_launcher")
            .typ("bind")
            .source(c.launcher_dir)
            .options(vec!["rbind".to_owned(), "ro".to_owned()])
            .build()
            .map_err(spec_err)?,
    );
    // As Google's launcher does (the host's hosts file and resolver): in the local driver's
    // sandbox the hosts file names the metadata server and the API.
    for file in ["/etc/hosts", "/etc/resolv.conf"] {
        if Path::new(file).exists() {
            mounts.push(
                MountBuilder::default()
                    .destination(file)
                    .typ("bind")
                    .source(file)
                    .options(vec!["rbind".to_owned(), "ro".to_owned()])
                    .build()
                    .map_err(spec_err)?,
            );
        }
    }
    for m in &spec.mounts {
        let mut options = vec!["nosuid".to_owned(), "nodev".to_owned()];
        if let Some(size) = m.size_bytes {
            options.push(format!("size={size}"));
        }
        mounts.push(
            MountBuilder::default()
                .destination(&m.destination)
                .typ("tmpfs")
                .source("tmpfs")
                .options(options)
                .build()
                .map_err(spec_err)?,
        );
    }
    config.set_mounts(Some(mounts));
    let path = bundle.join("config.json");
    config
        .save(&path)
        .map_err(|e| LaunchError::Io(format!("writing {}: {e}", path.display())))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::test_spec as spec;

    #[test]
    fn overrides_replace_the_images_cmd_and_env() {
        let image = serde_json::json!({"config": {"Entrypoint": ["/app"], "Cmd": ["--default"], "Env": ["PATH=/bin", "MODEL=a"], "WorkingDir": "/work"}});
        let added = [("GCE_METADATA_HOST".to_owned(), "127.0.0.1:9".to_owned())];
        let defaults = [
            (
                "API_ENDPOINT_OVERRIDE".to_owned(),
                "http://api.test".to_owned(),
            ),
            ("MODEL".to_owned(), "not-the-images".to_owned()),
        ];
        let p = process(&image, &spec(&[]), &added, &defaults).unwrap();
        assert_eq!(p.args, ["/app", "--default"]);
        // A default fills only a name the image (or the spec) left unset.
        assert_eq!(
            p.env,
            [
                "PATH=/bin",
                "MODEL=a",
                "GCE_METADATA_HOST=127.0.0.1:9",
                "API_ENDPOINT_OVERRIDE=http://api.test"
            ]
        );
        assert_eq!(p.cwd, "/work");
        let p = process(
            &image,
            &spec(&[("tee-cmd", "[\"--x\"]"), ("tee-env-MODEL", "b")]),
            &added,
            &defaults,
        )
        .unwrap();
        assert_eq!(p.args, ["/app", "--x"]);
        assert!(p.env.contains(&"MODEL=b".to_owned()));
        for refused in [
            serde_json::json!({"config": {"User": "nobody"}}),
            serde_json::json!({"config": {"WorkingDir": "/proc/self/fd/7"}}),
            serde_json::json!({"config": {"WorkingDir": "/proc"}}),
            serde_json::json!({"config": {"WorkingDir": "work"}}),
        ] {
            assert!(
                process(&refused, &spec(&[("tee-cmd", "[\"x\"]")]), &[], &[]).is_err(),
                "{refused}"
            );
        }
    }

    fn config(netns: Option<&Path>) -> serde_json::Value {
        let dir = tempfile::tempdir().unwrap();
        let p = Process {
            args: vec!["/app".into()],
            env: vec![],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
        };
        let spec = spec(&[("tee-mount", "type=tmpfs,source=tmpfs,destination=/scratch")]);
        let path = write_config(
            dir.path(),
            &Container {
                process: &p,
                launcher_dir: Path::new("/run/x"),
                spec: &spec,
                hostname: "i",
                netns,
                cgroup: "/cloister/1".into(),
            },
        )
        .unwrap();
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn the_workload_joins_the_namespace_it_is_given_or_the_launchers_network() {
        let networks = |v: &serde_json::Value| -> Vec<serde_json::Value> {
            v["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|n| n["type"] == "network")
                .cloned()
                .collect()
        };
        // In a VM: the VM's network, as Confidential Space.
        assert_eq!(networks(&config(None)), Vec::<serde_json::Value>::new());
        // In the local driver's sandbox: exactly the namespace it made.
        assert_eq!(
            networks(&config(Some(Path::new("/data/instances/1/net/workload")))),
            [serde_json::json!({"type": "network", "path": "/data/instances/1/net/workload"})]
        );
    }

    #[test]
    fn the_workload_is_confined_no_more_than_dockers_defaults_allow() {
        let v = config(None);
        const DOCKER_DEFAULT: [&str; 14] = [
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FSETID",
            "CAP_FOWNER",
            "CAP_MKNOD",
            "CAP_NET_RAW",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SETFCAP",
            "CAP_SETPCAP",
            "CAP_NET_BIND_SERVICE",
            "CAP_SYS_CHROOT",
            "CAP_KILL",
            "CAP_AUDIT_WRITE",
        ];
        let caps = &v["process"]["capabilities"];
        for set in [
            "bounding",
            "effective",
            "permitted",
            "inheritable",
            "ambient",
        ] {
            for cap in caps[set].as_array().into_iter().flatten() {
                assert!(
                    DOCKER_DEFAULT.contains(&cap.as_str().unwrap()),
                    "{cap} in {set}"
                );
            }
        }
        assert_eq!(v["process"]["noNewPrivileges"], true);
        assert_eq!(v["linux"]["resources"]["pids"]["limit"], MAX_PROCESSES);
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], MAX_MEMORY_BYTES);
        assert_eq!(v["linux"]["cgroupsPath"], "/cloister/1");
        let namespaces: Vec<&str> = v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        for own in ["pid", "ipc", "uts", "mount"] {
            assert!(namespaces.contains(&own), "{own} in {namespaces:?}");
        }
        assert!(
            v["linux"]["maskedPaths"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("/proc/kcore"))
        );
        let seccomp = &v["linux"]["seccomp"];
        assert_eq!(seccomp["defaultAction"], "SCMP_ACT_ALLOW");
        let refused: Vec<&str> = seccomp["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["action"] == "SCMP_ACT_ERRNO" && s.get("args").is_none())
            .flat_map(|s| s["names"].as_array().unwrap())
            .map(|n| n.as_str().unwrap())
            .collect();
        for call in [
            "unshare", "setns", "mount", "keyctl", "bpf", "ptrace", "clone3",
        ] {
            assert!(refused.contains(&call), "{call} is refused");
        }
        // clone only with a namespace flag (CLONE_NEWUSER here).
        assert!(seccomp["syscalls"].as_array().unwrap().iter().any(|s| {
            s["names"] == serde_json::json!(["clone"])
                && s["args"] == serde_json::json!([{"index": 0, "value": 0x1000_0000u64, "valueTwo": 0x1000_0000u64, "op": "SCMP_CMP_MASKED_EQ"}])
        }), "{seccomp:#}");
        // No device beyond runc's defaults: in particular no TPM.
        assert!(
            v["linux"]["devices"]
                .as_array()
                .is_none_or(|d| d.is_empty())
        );
    }

    #[test]
    fn the_launcher_dir_is_read_only_and_tmpfs_mounts_are_added() {
        let v = config(None);
        let mounts = v["mounts"].as_array().unwrap();
        let launcher = mounts
            .iter()
            .find(|m| m["destination"] == "/run/container_launcher")
            .unwrap();
        assert!(
            launcher["options"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("ro"))
        );
        assert!(
            mounts
                .iter()
                .any(|m| m["destination"] == "/scratch" && m["type"] == "tmpfs")
        );
    }
}
