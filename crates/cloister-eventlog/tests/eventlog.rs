use cloister_eventlog::{COS_EVENT_PCR, Event, EventLog, EventLogError, EventType, HashAlg};

const BANKS: &[HashAlg] = &[HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha384];

fn launch() -> EventLog {
    let mut log = EventLog::default();
    for event in [
        Event::new(
            EventType::ImageRef,
            "us-docker.pkg.dev/primus/repo/workload:latest",
        ),
        Event::new(EventType::ImageDigest, "sha256:4b1f"),
        Event::new(EventType::RestartPolicy, "Never"),
        Event::new(EventType::ImageId, "sha256:0123"),
        Event::new(EventType::Arg, "/workload"),
        Event::new(EventType::Arg, "--model=gs://primus/model.onnx"),
        Event::new(EventType::EnvVar, "PATH=/usr/bin:/bin"),
        Event::new(EventType::EnvVar, "GCE_METADATA_HOST=127.0.0.1:9999"),
        Event::new(EventType::OverrideArg, "--model=gs://primus/model.onnx"),
        Event::new(EventType::MemoryMonitor, vec![1u8]),
        Event::new(EventType::LaunchSeparator, Vec::new()),
    ] {
        log.append(COS_EVENT_PCR, BANKS, &event);
    }
    log
}

/// What a TPM does: extend each digest into a zeroed register.
fn extend_all(log: &EventLog, alg: HashAlg) -> Vec<u8> {
    let mut pcr = vec![0u8; alg.size()];
    for r in &log.records {
        pcr = alg.hash(&[&pcr, &r.digests[&alg]]);
    }
    pcr
}

#[test]
fn a_log_round_trips_replays_and_yields_its_claims() {
    let log = launch();
    let bytes = log.encode();
    let decoded = EventLog::decode(&bytes).unwrap();
    assert_eq!(decoded, log);
    for alg in BANKS {
        assert_eq!(
            decoded.replay(*alg, COS_EVENT_PCR).unwrap(),
            extend_all(&log, *alg)
        );
    }
    let claims = decoded.container_claims(COS_EVENT_PCR).unwrap();
    assert_eq!(
        claims.image_reference,
        "us-docker.pkg.dev/primus/repo/workload:latest"
    );
    assert_eq!(claims.image_digest, "sha256:4b1f");
    assert_eq!(claims.restart_policy, "Never");
    assert_eq!(claims.args, ["/workload", "--model=gs://primus/model.onnx"]);
    assert_eq!(claims.env["GCE_METADATA_HOST"], "127.0.0.1:9999");
    assert_eq!(claims.cmd_override, ["--model=gs://primus/model.onnx"]);
    assert_eq!(claims.memory_monitoring, Some(true));
}

#[test]
fn the_encoding_is_the_cos_tlv_layout() {
    let mut log = EventLog::default();
    log.append(
        13,
        &[HashAlg::Sha256],
        &Event::new(EventType::RestartPolicy, "Never"),
    );
    let bytes = log.encode();
    // recnum TLV
    assert_eq!(&bytes[..13], &[0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
    // register TLV: PCR 13
    assert_eq!(&bytes[13..19], &[1, 0, 0, 0, 1, 13]);
    // digests TLV holding one SHA-256 (0x0B) digest
    assert_eq!(&bytes[19..29], &[3, 0, 0, 0, 37, 0x0B, 0, 0, 0, 32]);
    // content: type 80 wrapping (type 2, "Never")
    let content = &bytes[61..];
    assert_eq!(
        content,
        &[80, 0, 0, 0, 10, 2, 0, 0, 0, 5, b'N', b'e', b'v', b'e', b'r']
    );
    let expected = HashAlg::Sha256.hash(&[content]);
    assert_eq!(&bytes[29..61], &expected[..]);
}

#[test]
fn truncated_logs_are_refused_at_every_length() {
    let bytes = launch().encode();
    for len in 1..bytes.len() {
        let result = EventLog::decode(&bytes[..len]);
        // A cut exactly between records is a shorter, valid log; anything else is refused.
        if let Ok(shorter) = result {
            assert!(shorter.records.len() < launch().records.len());
            assert_eq!(shorter.encode(), bytes[..len]);
        }
    }
    assert!(matches!(
        EventLog::decode(&bytes[..bytes.len() - 1]),
        Err(EventLogError::Truncated { .. })
    ));
}

#[test]
fn altered_content_is_a_digest_mismatch() {
    let mut log = launch();
    log.records[1].content = {
        let mut c = log.records[1].content.clone();
        let last = c.len() - 1;
        c[last] ^= 1;
        c
    };
    let decoded = EventLog::decode(&log.encode()).unwrap();
    assert!(matches!(
        decoded.container_claims(COS_EVENT_PCR),
        Err(EventLogError::DigestMismatch { record: 1, .. })
    ));
}

#[test]
fn events_after_the_separator_and_logs_without_one_are_refused() {
    let mut log = launch();
    log.append(
        COS_EVENT_PCR,
        BANKS,
        &Event::new(EventType::EnvVar, "EVIL=1"),
    );
    let err = log.container_claims(COS_EVENT_PCR).unwrap_err();
    assert!(
        matches!(
            err,
            EventLogError::AfterSeparator {
                record: 11,
                kind: EventType::EnvVar
            }
        ),
        "{err}"
    );
    let mut unterminated = launch();
    unterminated.records.pop();
    assert_eq!(
        unterminated.container_claims(COS_EVENT_PCR),
        Err(EventLogError::NoSeparator)
    );
}

#[test]
fn unknown_event_types_foreign_content_and_bad_fields_are_refused() {
    let mut log = launch();
    log.records[0].content = vec![42, 0, 0, 0, 1, b'x'];
    let fixed = {
        let mut l = log.clone();
        let whole = l.records[0].content_tlv();
        for (alg, d) in l.records[0].digests.iter_mut() {
            *d = alg.hash(&[&whole]);
        }
        l
    };
    assert!(matches!(
        fixed.container_claims(COS_EVENT_PCR),
        Err(EventLogError::UnknownEventType { found: 42, .. })
    ));
    let mut foreign = launch();
    foreign.records[0].content_type = 7;
    assert!(matches!(
        foreign.container_claims(COS_EVENT_PCR),
        Err(EventLogError::NotContainerEvent { found: 7, .. })
    ));
    assert!(matches!(
        launch().container_claims(12),
        Err(EventLogError::WrongRegister { .. })
    ));
    let mut misnumbered = launch().encode();
    misnumbered[12] = 5;
    assert!(matches!(
        EventLog::decode(&misnumbered),
        Err(EventLogError::RecordNumber { .. })
    ));
    let mut bad_env = EventLog::default();
    bad_env.append(
        COS_EVENT_PCR,
        BANKS,
        &Event::new(EventType::EnvVar, "1BAD=x"),
    );
    bad_env.append(
        COS_EVENT_PCR,
        BANKS,
        &Event::new(EventType::LaunchSeparator, Vec::new()),
    );
    assert!(matches!(
        bad_env.container_claims(COS_EVENT_PCR),
        Err(EventLogError::BadContent { .. })
    ));
}

/// Found while writing the fuzz target's round-trip property (fuzz/fuzz_targets/event_log.rs):
/// a record carrying two digests of one bank decoded with the last one winning, a parser
/// differential. It is refused.
#[test]
fn two_digests_of_one_bank_are_refused() {
    let mut log = EventLog::default();
    log.append(
        COS_EVENT_PCR,
        &[HashAlg::Sha256],
        &Event::new(EventType::LaunchSeparator, Vec::new()),
    );
    let bytes = log.encode();
    // recnum TLV (13) + register TLV (6), then the digests TLV: type, length, one digest TLV.
    let at = 13 + 6;
    let digest_tlv = bytes[at + 5..at + 5 + 37].to_vec();
    let mut doubled = bytes[..at].to_vec();
    doubled.push(bytes[at]);
    doubled.extend_from_slice(&(2 * 37u32).to_be_bytes());
    doubled.extend_from_slice(&digest_tlv);
    doubled.extend_from_slice(&digest_tlv);
    doubled.extend_from_slice(&bytes[at + 5 + 37..]);
    assert_eq!(
        EventLog::decode(&doubled),
        Err(EventLogError::DuplicateDigest {
            record: 0,
            alg: HashAlg::Sha256
        })
    );
    assert_eq!(EventLog::decode(&bytes), Ok(log));
}

#[test]
fn a_bank_missing_from_a_record_cannot_be_replayed() {
    let mut log = EventLog::default();
    log.append(
        COS_EVENT_PCR,
        &[HashAlg::Sha256],
        &Event::new(EventType::LaunchSeparator, Vec::new()),
    );
    assert!(matches!(
        log.replay(HashAlg::Sha384, COS_EVENT_PCR),
        Err(EventLogError::MissingDigest { .. })
    ));
}
