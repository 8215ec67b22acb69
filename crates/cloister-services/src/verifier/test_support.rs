//! What the hardware evidence kinds' unit tests share: a container's event log, a trusted
//! launcher's reference value, and reading a refusal.

use cloister_eventlog::{Event, EventLog, EventType, HashAlg};
use cloister_store::ReferenceValueRecord;

use super::claims::Verified;
use crate::error::ApiError;

pub const NONCE: &[u8] = b"challenge-nonce-0123456789";

/// A container's log in register `index` of bank `alg`; `after_separator` adds an event
/// after the launch separator, which must be refused.
pub fn log(index: u8, alg: HashAlg, after_separator: bool) -> Vec<u8> {
    let mut log = EventLog::default();
    let mut events = vec![
        Event::new(
            EventType::ImageRef,
            "registry.example/primus/workload:latest",
        ),
        Event::new(
            EventType::ImageDigest,
            format!("sha256:{}", "ab".repeat(32)),
        ),
        Event::new(EventType::RestartPolicy, "Never"),
        Event::new(EventType::ImageId, "sha256:1111"),
        Event::new(EventType::Arg, "/workload"),
        Event::new(EventType::LaunchSeparator, Vec::new()),
    ];
    if after_separator {
        events.push(Event::new(EventType::EnvVar, "SNEAKY=1"));
    }
    for e in &events {
        log.append(index, &[alg], e);
    }
    log.encode()
}

/// The reference-value lookup of a verifier that trusts exactly `trusted`.
pub fn trusting(
    trusted: String,
) -> impl FnOnce(&str) -> Result<Option<ReferenceValueRecord>, ApiError> {
    move |m| {
        Ok((m == trusted).then(|| ReferenceValueRecord {
            measurement: m.into(),
            swversion: "250301".into(),
            dbgstat: "disabled-since-boot".into(),
            support_attributes: vec!["STABLE".into(), "USABLE".into()],
            description: String::new(),
            create_time: time::OffsetDateTime::UNIX_EPOCH,
        }))
    }
}

pub fn refusal(r: Result<Verified, ApiError>) -> String {
    match r {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    }
}
