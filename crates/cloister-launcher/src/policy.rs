//! The image's launch policy (its `tee.launch_policy.*` labels), enforced against the launch
//! spec before anything runs, with Confidential Space's refusal texts.

use std::collections::BTreeMap;

use crate::LaunchError;
use crate::spec::{LaunchSpec, LogRedirect};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    Always,
    Never,
    DebugOnly,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchPolicy {
    pub allow_cmd_override: bool,
    pub allowed_env_override: Vec<String>,
    pub log_redirect: Allowance,
    pub allowed_mount_destinations: Vec<String>,
    pub memory_monitoring: Allowance,
}

const CMD_OVERRIDE: &str = "tee.launch_policy.allow_cmd_override";
const ENV_OVERRIDE: &str = "tee.launch_policy.allow_env_override";
const LOG_REDIRECT: &str = "tee.launch_policy.log_redirect";
const MOUNT_DESTINATIONS: &str = "tee.launch_policy.allow_mount_destinations";
const MEMORY_MONITORING: &str = "tee.launch_policy.monitoring_memory_allow";

fn allowance(label: &str, value: &str) -> Result<Allowance, LaunchError> {
    match value {
        "always" => Ok(Allowance::Always),
        "never" => Ok(Allowance::Never),
        "debugonly" => Ok(Allowance::DebugOnly),
        other => Err(LaunchError::Policy(format!(
            "not a valid {label} {other} (must be one of [always, never, debugonly])"
        ))),
    }
}

fn list(value: Option<&String>) -> Vec<String> {
    value
        .map(|v| {
            v.split([',', ':'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

impl LaunchPolicy {
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Result<Self, LaunchError> {
        let allow_cmd_override = match labels.get(CMD_OVERRIDE).map(String::as_str) {
            None => false,
            Some(v) => v.parse::<bool>().map_err(|_| {
                LaunchError::Policy(format!(
                    "invalid image LABEL '{CMD_OVERRIDE}' (not a boolean)"
                ))
            })?,
        };
        Ok(LaunchPolicy {
            allow_cmd_override,
            allowed_env_override: list(labels.get(ENV_OVERRIDE)),
            // Google's default: output is redirected only from debug images.
            log_redirect: match labels.get(LOG_REDIRECT) {
                Some(v) => allowance(LOG_REDIRECT, v)?,
                None => Allowance::DebugOnly,
            },
            allowed_mount_destinations: list(labels.get(MOUNT_DESTINATIONS)),
            memory_monitoring: match labels.get(MEMORY_MONITORING) {
                Some(v) => allowance(MEMORY_MONITORING, v)?,
                None => Allowance::Never,
            },
        })
    }

    /// Refuses the spec when it asks for what the image does not allow. `debug` is whether the
    /// launcher runs as a debug build (never on a production image).
    pub fn check(&self, spec: &LaunchSpec, debug: bool) -> Result<(), LaunchError> {
        let refuse = |m: String| Err(LaunchError::Policy(m));
        for (name, _) in &spec.env {
            if !self.allowed_env_override.contains(name) {
                return refuse(format!(
                    "env var {name} is not allowed to be overridden on this image; allowed envs to be overridden: {:?}",
                    self.allowed_env_override
                ));
            }
        }
        if spec.cmd.is_some() && !self.allow_cmd_override {
            return refuse("CMD is not allowed to be overridden on this image".into());
        }
        if spec.log_redirect != LogRedirect::Nowhere {
            match self.log_redirect {
                Allowance::Never => {
                    return refuse("logging redirection not allowed by image".into());
                }
                Allowance::DebugOnly if !debug => {
                    return refuse(
                        "logging redirection only allowed on debug environment by image".into(),
                    );
                }
                _ => {}
            }
        }
        if spec.memory_monitoring {
            match self.memory_monitoring {
                Allowance::Never => return refuse("memory monitoring not allowed by image".into()),
                Allowance::DebugOnly if !debug => {
                    return refuse(
                        "memory monitoring only allowed on debug environment by image".into(),
                    );
                }
                _ => {}
            }
        }
        for mount in &spec.mounts {
            // Component by component (the destination is already clean: absolute, no `..`),
            // so `/run/tmpfoo` is not inside `/run/tmp`.
            let inside = self.allowed_mount_destinations.iter().any(|allowed| {
                let allowed = std::path::Path::new(allowed);
                allowed.is_absolute()
                    && !allowed
                        .components()
                        .any(|c| c == std::path::Component::ParentDir)
                    && std::path::Path::new(&mount.destination).starts_with(allowed)
            });
            if !inside {
                return refuse(format!(
                    "destination mount points are not allowed: destination mount point \"{}\" is invalid: policy only allows mounts in the following paths: {:?}",
                    mount.destination, self.allowed_mount_destinations
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::spec::test_spec as spec;

    fn policy(pairs: &[(&str, &str)]) -> LaunchPolicy {
        LaunchPolicy::from_labels(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn overrides_need_the_images_permission() {
        let none = policy(&[]);
        let err = none
            .check(&spec(&[("tee-cmd", "[\"x\"]")]), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CMD is not allowed to be overridden on this image"),
            "{err}"
        );
        let err = none
            .check(&spec(&[("tee-env-MODEL", "m")]), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("env var MODEL is not allowed to be overridden on this image"),
            "{err}"
        );
        let open = policy(&[(CMD_OVERRIDE, "true"), (ENV_OVERRIDE, "MODEL,OTHER")]);
        open.check(
            &spec(&[("tee-cmd", "[\"x\"]"), ("tee-env-MODEL", "m")]),
            false,
        )
        .unwrap();
        assert!(
            LaunchPolicy::from_labels(&[(CMD_OVERRIDE.to_string(), "yes".to_string())].into())
                .is_err()
        );
    }

    #[test]
    fn log_redirect_and_mounts_follow_the_labels() {
        let redirect = spec(&[("tee-container-log-redirect", "true")]);
        let err = policy(&[]).check(&redirect, false).unwrap_err().to_string();
        assert!(err.contains("only allowed on debug environment"), "{err}");
        policy(&[]).check(&redirect, true).unwrap();
        let err = policy(&[(LOG_REDIRECT, "never")])
            .check(&redirect, true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("logging redirection not allowed by image"),
            "{err}"
        );
        policy(&[(LOG_REDIRECT, "always")])
            .check(&redirect, false)
            .unwrap();

        let mount = spec(&[(
            "tee-mount",
            "type=tmpfs,source=tmpfs,destination=/run/tmp/x",
        )]);
        assert!(policy(&[]).check(&mount, false).is_err());
        policy(&[(MOUNT_DESTINATIONS, "/run/tmp:/var/tmp")])
            .check(&mount, false)
            .unwrap();
        let sneaky = spec(&[(
            "tee-mount",
            "type=tmpfs,source=tmpfs,destination=/run/tmpfoo",
        )]);
        assert!(
            policy(&[(MOUNT_DESTINATIONS, "/run/tmp")])
                .check(&sneaky, false)
                .is_err()
        );
    }

    #[test]
    fn mount_destinations_are_compared_as_clean_paths() {
        let allowed = policy(&[(MOUNT_DESTINATIONS, "/run/tmp:/var/tmp/")]);
        let tmpfs = |d: &str| format!("type=tmpfs,source=tmpfs,destination={d}");
        for (destination, verdict) in [
            ("/run/tmp", Ok("/run/tmp")),
            ("/run/tmp/x", Ok("/run/tmp/x")),
            ("/run//tmp/./x/", Ok("/run/tmp/x")),
            ("/var/tmp/y", Ok("/var/tmp/y")),
            ("/run/tmpfoo", Err("policy only allows mounts")),
            ("/run", Err("policy only allows mounts")),
            ("/etc", Err("policy only allows mounts")),
            ("/run/tmp/../../etc", Err("without `..`")),
            ("/run/tmp/..", Err("without `..`")),
            ("run/tmp", Err("absolute destination")),
        ] {
            let attrs = [("tee-mount", tmpfs(destination))];
            let mut all: BTreeMap<String, String> = attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            all.insert("tee-image-reference".into(), "h/p/r/i".into());
            let outcome = LaunchSpec::from_attributes(&all).and_then(|spec| {
                allowed.check(&spec, false)?;
                Ok(spec.mounts[0].destination.clone())
            });
            match (outcome, verdict) {
                (Ok(clean), Ok(expected)) => assert_eq!(clean, expected, "{destination}"),
                (Err(e), Err(why)) => {
                    assert!(e.to_string().contains(why), "{destination}: {e}")
                }
                (got, want) => panic!("{destination}: got {got:?}, want {want:?}"),
            }
        }
    }
}
