//! The OCI runtime bundle runc runs: the image's process (entrypoint, cmd, env, workdir, user)
//! with the overrides the launch policy permitted, host networking, the launcher's directory
//! read-only at `/run/container_launcher`, and the operator's tmpfs mounts.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, MountBuilder, Spec, User};

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
/// the two variables Cloister adds (measured like any other).
pub fn process(
    image_config: &serde_json::Value,
    spec: &LaunchSpec,
    added_env: &[(String, String)],
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
    let (uid, gid) = user(c["User"].as_str().unwrap_or_default())?;
    Ok(Process {
        args,
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        cwd: c["WorkingDir"]
            .as_str()
            .filter(|w| !w.is_empty())
            .unwrap_or("/")
            .to_owned(),
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

/// Writes `config.json` for a bundle whose rootfs is `bundle/rootfs`.
pub fn write_config(
    bundle: &Path,
    process: &Process,
    launcher_dir: &Path,
    spec: &LaunchSpec,
    hostname: &str,
) -> Result<PathBuf, LaunchError> {
    let mut config = Spec::default();
    config.set_hostname(Some(hostname.to_owned()));
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
    // Host networking, as Confidential Space runs its workload.
    if let Some(linux) = config.linux_mut()
        && let Some(namespaces) = linux.namespaces().clone()
    {
        linux.set_namespaces(Some(
            namespaces
                .into_iter()
                .filter(|n| n.typ() != LinuxNamespaceType::Network)
                .collect(),
        ));
    }
    let mut mounts = config.mounts().clone().unwrap_or_default();
    mounts.push(
        MountBuilder::default()
            .destination("/run/container_launcher")
            .typ("bind")
            .source(launcher_dir)
            .options(vec!["rbind".to_owned(), "ro".to_owned()])
            .build()
            .map_err(spec_err)?,
    );
    if Path::new("/etc/resolv.conf").exists() {
        mounts.push(
            MountBuilder::default()
                .destination("/etc/resolv.conf")
                .typ("bind")
                .source("/etc/resolv.conf")
                .options(vec!["rbind".to_owned(), "ro".to_owned()])
                .build()
                .map_err(spec_err)?,
        );
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
        let p = process(&image, &spec(&[]), &added).unwrap();
        assert_eq!(p.args, ["/app", "--default"]);
        assert_eq!(
            p.env,
            ["PATH=/bin", "MODEL=a", "GCE_METADATA_HOST=127.0.0.1:9"]
        );
        assert_eq!(p.cwd, "/work");
        let p = process(
            &image,
            &spec(&[("tee-cmd", "[\"--x\"]"), ("tee-env-MODEL", "b")]),
            &added,
        )
        .unwrap();
        assert_eq!(p.args, ["/app", "--x"]);
        assert!(p.env.contains(&"MODEL=b".to_owned()));
        assert!(
            process(
                &serde_json::json!({"config": {"User": "nobody"}, }),
                &spec(&[("tee-cmd", "[\"x\"]")]),
                &[]
            )
            .is_err()
        );
    }

    #[test]
    fn the_config_uses_host_networking_and_mounts_the_launcher_dir_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = Process {
            args: vec!["/app".into()],
            env: vec![],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
        };
        let path = write_config(
            dir.path(),
            &p,
            Path::new("/run/x"),
            &spec(&[("tee-mount", "type=tmpfs,source=tmpfs,destination=/scratch")]),
            "i",
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert!(
            !v["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["type"] == "network")
        );
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
