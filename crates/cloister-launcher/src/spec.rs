//! The launch spec: what the operator asked for, from the instance metadata's `tee-*` keys
//! (Confidential Space's names and value syntax).

use std::collections::BTreeMap;

use crate::LaunchError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Never,
    OnFailure,
    Always,
}

impl RestartPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Never => "Never",
            RestartPolicy::OnFailure => "OnFailure",
            RestartPolicy::Always => "Always",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogRedirect {
    Nowhere,
    CloudLogging,
    Serial,
    Everywhere,
}

/// A tmpfs mount the operator asked for (`tee-mount=type=tmpfs,source=tmpfs,destination=/d`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmpfsMount {
    pub destination: String,
    pub size_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    pub image_reference: String,
    /// `tee-cmd`: replaces the image's CMD.
    pub cmd: Option<Vec<String>>,
    /// `tee-env-NAME=VALUE`, in name order.
    pub env: Vec<(String, String)>,
    pub restart_policy: RestartPolicy,
    pub log_redirect: LogRedirect,
    pub impersonate_service_accounts: Vec<String>,
    /// `tee-signed-image-repos`: where to look for the image's cosign signatures.
    pub signed_image_repos: Vec<String>,
    pub mounts: Vec<TmpfsMount>,
    pub memory_monitoring: bool,
}

const IMAGE_REFERENCE: &str = "tee-image-reference";

impl LaunchSpec {
    pub fn from_attributes(attributes: &BTreeMap<String, String>) -> Result<Self, LaunchError> {
        let bad = |m: String| LaunchError::Spec(m);
        let image_reference = attributes
            .get(IMAGE_REFERENCE)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                bad(format!(
                    "{IMAGE_REFERENCE} is not specified in the custom metadata"
                ))
            })?
            .trim()
            .to_owned();
        let cmd = match attributes.get("tee-cmd") {
            None => None,
            Some(v) => Some(serde_json::from_str::<Vec<String>>(v).map_err(|e| {
                bad(format!(
                    "tee-cmd must be a JSON array of strings, e.g. [\"--flag\",\"value\"]: {e}"
                ))
            })?),
        };
        let env = attributes
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("tee-env-")
                    .map(|n| (n.to_owned(), v.clone()))
            })
            .collect::<Vec<_>>();
        if let Some((name, _)) = env.iter().find(|(n, _)| n.is_empty() || n.contains('=')) {
            return Err(bad(format!(
                "invalid environment variable name {name:?} in tee-env-"
            )));
        }
        let restart_policy = match attributes.get("tee-restart-policy").map(String::as_str) {
            None | Some("Never") => RestartPolicy::Never,
            Some("OnFailure") => RestartPolicy::OnFailure,
            Some("Always") => RestartPolicy::Always,
            Some(other) => return Err(bad(format!("invalid restart policy: {other}"))),
        };
        let log_redirect = match attributes
            .get("tee-container-log-redirect")
            .map(String::as_str)
        {
            None | Some("false") => LogRedirect::Nowhere,
            Some("true") => LogRedirect::Everywhere,
            Some("cloud_logging") => LogRedirect::CloudLogging,
            Some("serial") => LogRedirect::Serial,
            Some(other) => {
                return Err(bad(format!(
                    "invalid logging redirect location {other}, expect one of [true false cloud_logging serial]"
                )));
            }
        };
        let list = |key: &str| -> Vec<String> {
            attributes
                .get(key)
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let impersonate_service_accounts = list("tee-impersonate-service-accounts");
        let signed_image_repos = list("tee-signed-image-repos");
        let mounts = match attributes.get("tee-mount") {
            None => vec![],
            Some(v) => v
                .split(';')
                .filter(|m| !m.trim().is_empty())
                .map(parse_mount)
                .collect::<Result<_, _>>()?,
        };
        let memory_monitoring = match attributes
            .get("tee-monitoring-memory-enable")
            .map(String::as_str)
        {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(bad(format!(
                    "invalid value for tee-monitoring-memory-enable (not a boolean): {other}"
                )));
            }
        };
        Ok(LaunchSpec {
            image_reference,
            cmd,
            env,
            restart_policy,
            log_redirect,
            impersonate_service_accounts,
            signed_image_repos,
            mounts,
            memory_monitoring,
        })
    }
}

fn parse_mount(spec: &str) -> Result<TmpfsMount, LaunchError> {
    let mut kind = None;
    let mut destination = None;
    let mut size_bytes = None;
    for opt in spec.split(',') {
        let (k, v) = opt
            .split_once('=')
            .ok_or_else(|| LaunchError::Spec(format!("failed to parse mount option: {opt:?}")))?;
        match k.trim() {
            "type" => kind = Some(v.trim().to_owned()),
            "source" => {}
            "destination" => destination = Some(v.trim().to_owned()),
            "size" => {
                size_bytes = Some(v.trim().parse::<u64>().map_err(|_| {
                    LaunchError::Spec(format!("invalid tmpfs size {v:?}: a number of bytes"))
                })?)
            }
            other => {
                return Err(LaunchError::Spec(format!(
                    "found unknown mount option: {other}, expect keys of [type source destination size]"
                )));
            }
        }
    }
    if kind.as_deref() != Some("tmpfs") {
        return Err(LaunchError::Spec(format!(
            "found unknown or unspecified mount type: {spec}, expect one of types [tmpfs]"
        )));
    }
    let destination = destination
        .as_deref()
        .and_then(clean_destination)
        .ok_or_else(|| {
            LaunchError::Spec(format!(
                "the mount {spec:?} needs an absolute destination without `..` (a path inside the container, such as /run/tmp)"
            ))
        })?;
    Ok(TmpfsMount {
        destination,
        size_bytes,
    })
}

/// An absolute destination with `.` and repeated slashes removed, or None: not absolute, or
/// it has a `..` (runc would resolve `/run/tmp/../../etc` to `/etc`, outside what a policy
/// allowed).
fn clean_destination(d: &str) -> Option<String> {
    use std::path::Component;
    let path = std::path::Path::new(d);
    if !path.is_absolute() {
        return None;
    }
    let mut clean = std::path::PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => clean.push(part),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    clean.to_str().map(str::to_owned)
}

/// A launch spec of an image `h/p/r/i` with the metadata `pairs`, for tests.
#[cfg(test)]
pub(crate) fn test_spec(pairs: &[(&str, &str)]) -> LaunchSpec {
    let mut attrs: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    attrs.insert("tee-image-reference".into(), "h/p/r/i".into());
    LaunchSpec::from_attributes(&attrs).expect("a valid test spec")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_codelab_metadata_parses() {
        let s = LaunchSpec::from_attributes(&attrs(&[
            ("tee-image-reference", "host/p/r/i:latest"),
            ("tee-restart-policy", "Never"),
            ("tee-cmd", "[\"--model\",\"gs://m/model.onnx\"]"),
            ("tee-env-B", "2"),
            ("tee-env-A", "1"),
            (
                "tee-mount",
                "type=tmpfs,source=tmpfs,destination=/scratch,size=1048576",
            ),
            (
                "tee-signed-image-repos",
                "h/primus/sigs/workload, h/other/sigs/workload,",
            ),
        ]))
        .unwrap();
        assert_eq!(
            s.signed_image_repos,
            ["h/primus/sigs/workload", "h/other/sigs/workload"]
        );
        assert_eq!(s.cmd.unwrap(), ["--model", "gs://m/model.onnx"]);
        assert_eq!(s.env, [("A".into(), "1".into()), ("B".into(), "2".into())]);
        assert_eq!(s.mounts[0].destination, "/scratch");
    }

    #[test]
    fn bad_metadata_is_refused_with_googles_words() {
        let err = LaunchSpec::from_attributes(&attrs(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tee-image-reference is not specified in the custom metadata"),
            "{err}"
        );
        for (k, v, want) in [
            (
                "tee-restart-policy",
                "Sometimes",
                "invalid restart policy: Sometimes",
            ),
            ("tee-cmd", "--model", "JSON array"),
            (
                "tee-container-log-redirect",
                "maybe",
                "invalid logging redirect location",
            ),
            (
                "tee-mount",
                "type=bind,source=/,destination=/host",
                "unknown or unspecified mount type",
            ),
        ] {
            let err =
                LaunchSpec::from_attributes(&attrs(&[("tee-image-reference", "h/p/r/i"), (k, v)]))
                    .unwrap_err()
                    .to_string();
            assert!(err.contains(want), "{k}: {err}");
        }
    }
}
