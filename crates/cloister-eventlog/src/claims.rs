//! The container claims an event log proves, after checking every record.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{COS_CONTENT_TYPE, EventLog, EventLogError, EventType, tlv};

/// `submods.container` of a Confidential Space token, plus memory monitoring.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContainerClaims {
    pub image_reference: String,
    pub image_digest: String,
    pub restart_policy: String,
    pub image_id: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cmd_override: Vec<String>,
    pub env_override: BTreeMap<String, String>,
    /// From the MemoryMonitor event; `None` when the log has none.
    #[serde(skip)]
    pub memory_monitoring: Option<bool>,
}

fn text(record: usize, kind: EventType, bytes: &[u8]) -> Result<String, EventLogError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| EventLogError::BadContent {
        record,
        kind,
        why: "not UTF-8",
    })
}

/// `NAME=VALUE` with a name of `[A-Za-z_][A-Za-z0-9_]*`, as the launcher formats variables.
fn env_var(
    record: usize,
    kind: EventType,
    bytes: &[u8],
) -> Result<(String, String), EventLogError> {
    let s = text(record, kind, bytes)?;
    let bad = EventLogError::BadContent {
        record,
        kind,
        why: "expected NAME=VALUE",
    };
    let (name, value) = s.split_once('=').ok_or(bad.clone())?;
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(bad);
    }
    Ok((name.to_owned(), value.to_owned()))
}

impl EventLog {
    /// Checks every record (container event of a known type, on register `index`, every
    /// digest matching its content, nothing after the launch separator, a separator
    /// present) and returns the claims the events make.
    pub fn container_claims(&self, index: u8) -> Result<ContainerClaims, EventLogError> {
        let mut claims = ContainerClaims::default();
        let mut separated = false;
        for (i, r) in self.records.iter().enumerate() {
            if r.index != index {
                return Err(EventLogError::WrongRegister {
                    record: i,
                    found: r.index,
                    expected: index,
                });
            }
            if r.content_type != COS_CONTENT_TYPE {
                return Err(EventLogError::NotContainerEvent {
                    record: i,
                    found: r.content_type,
                });
            }
            let whole = r.content_tlv();
            for (alg, digest) in &r.digests {
                if alg.hash(&[&whole]) != *digest {
                    return Err(EventLogError::DigestMismatch {
                        record: i,
                        alg: *alg,
                    });
                }
            }
            let mut pos = 0;
            let (kind, value) = tlv::read(&r.content, &mut pos, "container event")?;
            if pos != r.content.len() {
                return Err(EventLogError::BadContent {
                    record: i,
                    kind: EventType::from_u8(kind).unwrap_or(EventType::ImageRef),
                    why: "bytes after the event",
                });
            }
            let kind = EventType::from_u8(kind).ok_or(EventLogError::UnknownEventType {
                record: i,
                found: kind,
            })?;
            if separated {
                return Err(EventLogError::AfterSeparator { record: i, kind });
            }
            match kind {
                EventType::ImageRef => claims.image_reference = text(i, kind, value)?,
                EventType::ImageDigest => claims.image_digest = text(i, kind, value)?,
                EventType::RestartPolicy => claims.restart_policy = text(i, kind, value)?,
                EventType::ImageId => claims.image_id = text(i, kind, value)?,
                EventType::Arg => claims.args.push(text(i, kind, value)?),
                EventType::EnvVar => {
                    let (k, v) = env_var(i, kind, value)?;
                    claims.env.insert(k, v);
                }
                EventType::OverrideArg => claims.cmd_override.push(text(i, kind, value)?),
                EventType::OverrideEnv => {
                    let (k, v) = env_var(i, kind, value)?;
                    claims.env_override.insert(k, v);
                }
                EventType::LaunchSeparator => separated = true,
                EventType::MemoryMonitor => {
                    claims.memory_monitoring = Some(match value {
                        [0] => false,
                        [1] => true,
                        _ => {
                            return Err(EventLogError::BadContent {
                                record: i,
                                kind,
                                why: "expected one byte, 0 or 1",
                            });
                        }
                    })
                }
            }
        }
        if !separated {
            return Err(EventLogError::NoSeparator);
        }
        Ok(claims)
    }
}
