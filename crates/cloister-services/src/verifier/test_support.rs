//! What the hardware evidence kinds' unit tests share: a container's event log, a trusted
//! launcher's reference value, and reading a refusal.

use cloister_eventlog::{Event, EventLog, EventType, HashAlg};
use cloister_store::ReferenceValueRecord;

use super::claims::Verified;
use super::hardware::BoundInstance;
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

pub fn identity() -> cloister_tpm::identity::InstanceIdentity {
    cloister_tpm::identity::InstanceIdentity {
        zone: "us-west1-b".into(),
        project_number: 123456789012,
        project_id: "secundus-bank".into(),
        instance_id: 7_001,
        instance_name: "confidential-vm".into(),
    }
}

/// An instance whose (already verified) AK certificate is `cert`.
pub fn bound(cert: &[u8]) -> BoundInstance {
    BoundInstance {
        cert: cert.to_vec(),
        identity: identity(),
    }
}

/// What a token says of a bound instance: Compute Engine's names, and its URL as the subject.
pub fn assert_names_the_instance(v: &Verified) {
    let gce = v.gce.as_ref().expect("submods.gce");
    assert_eq!(gce["instance_name"], "confidential-vm");
    assert_eq!(gce["project_id"], "secundus-bank");
    assert_eq!(gce["project_number"], "123456789012");
    assert_eq!(gce["instance_id"], "7001");
    assert_eq!(gce["zone"], "us-west1-b");
    assert_eq!(
        v.subject,
        "https://www.googleapis.com/compute/v1/projects/secundus-bank/zones/us-west1-b/instances/confidential-vm"
    );
}

/// A report or quote whose REPORT_DATA binds instance `a`'s certificate names that instance
/// (Compute Engine's names, its URL as the subject); with another instance's certificate, or
/// none, it is refused. `judge` judges a report carrying the given REPORT_DATA.
pub fn names_only_its_instance(
    kind: cloister_eventlog::ReportKind,
    log: &[u8],
    judge: impl Fn([u8; 64], Option<&BoundInstance>) -> Result<Verified, ApiError>,
) {
    let data = cloister_eventlog::report_data(kind, NONCE, log, Some(b"ak-a"));
    assert_names_the_instance(&judge(data, Some(&bound(b"ak-a"))).unwrap());
    for other in [Some(bound(b"ak-b")), None] {
        let e = refusal(judge(data, other.as_ref()));
        assert!(e.contains("REPORT_DATA does not bind"), "{e}");
    }
}
