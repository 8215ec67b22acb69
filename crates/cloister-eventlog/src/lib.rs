//! Confidential Space's canonical event log: the record of what the launcher measured
//! (image reference and digest, restart policy, arguments, environment, overrides, the
//! launch separator, memory monitoring), in the TCG Canonical Event Log's TLV encoding with
//! COS container events, as Google's launcher writes it, so existing tooling reads it.
//!
//! Encoding (all lengths 4-byte big-endian):
//! - a record is four TLVs: `0` record number (u64), `1` register index (u8), `3` digests
//!   (one TLV per bank, typed by the TPM algorithm id: `0x04` SHA-1, `0x0B` SHA-256,
//!   `0x0C` SHA-384), and the content;
//! - the content of a container event is a TLV of type `80` whose value is the inner TLV
//!   (event type, event bytes); each bank's digest is that bank's hash of the whole content
//!   TLV (type, length and value).
//!
//! Replay extends each record's digest into a zeroed register (`new = H(old || digest)`),
//! as a TPM PCR or a TDX RTMR does.
//!
//! Invariant: pure data and logic, no I/O; depends on no Cloister crate.

mod binding;
mod claims;
mod log;
mod tlv;

pub use binding::{ReportKind, report_data};
pub use claims::ContainerClaims;
pub use log::{EventLog, HashAlg, Record};

/// The register Confidential Space extends with container events: PCR 13 on a vTPM.
pub const COS_EVENT_PCR: u8 = 13;
/// The CCEL index of TDX's RTMR3, where Confidential Space extends container events.
pub const COS_EVENT_RTMR_CCEL_INDEX: u8 = 4;
/// The content type of a container (COS) event.
pub const COS_CONTENT_TYPE: u8 = 80;

/// Confidential Space's container event types, in its numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum EventType {
    ImageRef = 0,
    ImageDigest = 1,
    RestartPolicy = 2,
    ImageId = 3,
    Arg = 4,
    EnvVar = 5,
    OverrideArg = 6,
    OverrideEnv = 7,
    LaunchSeparator = 8,
    MemoryMonitor = 9,
}

impl EventType {
    pub fn from_u8(v: u8) -> Option<Self> {
        use EventType::*;
        [
            ImageRef,
            ImageDigest,
            RestartPolicy,
            ImageId,
            Arg,
            EnvVar,
            OverrideArg,
            OverrideEnv,
            LaunchSeparator,
            MemoryMonitor,
        ]
        .into_iter()
        .find(|t| *t as u8 == v)
    }
}

/// One measured container event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventType,
    pub content: Vec<u8>,
}

impl Event {
    pub fn new(kind: EventType, content: impl Into<Vec<u8>>) -> Self {
        Self {
            kind,
            content: content.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventLogError {
    #[error("the event log is truncated at byte {offset}: {what}")]
    Truncated { offset: usize, what: &'static str },
    #[error("record {record}: expected field type {expected}, found {found}")]
    UnexpectedField {
        record: usize,
        expected: u8,
        found: u8,
    },
    #[error("record {record}: field {field} has length {len}, expected {expected}")]
    FieldLength {
        record: usize,
        field: &'static str,
        len: usize,
        expected: usize,
    },
    #[error(
        "record {record} has number {found}, expected {expected} (records must be numbered 0, 1, 2, …)"
    )]
    RecordNumber {
        record: usize,
        found: u64,
        expected: u64,
    },
    #[error("record {record}: unknown hash algorithm id {alg:#04x} in its digests")]
    UnknownAlgorithm { record: usize, alg: u8 },
    #[error("record {record}: two {alg} digests; a record has one per bank")]
    DuplicateDigest { record: usize, alg: HashAlg },
    #[error("record {record}: the {alg} digest is {len} bytes, expected {expected}")]
    DigestLength {
        record: usize,
        alg: HashAlg,
        len: usize,
        expected: usize,
    },
    #[error("record {record}: content type {found} is not a container event (type 80)")]
    NotContainerEvent { record: usize, found: u8 },
    #[error("record {record}: unknown container event type {found}")]
    UnknownEventType { record: usize, found: u8 },
    #[error("record {record}: its {alg} digest does not match its content (the log was altered)")]
    DigestMismatch { record: usize, alg: HashAlg },
    #[error("record {record}: no {alg} digest, which the quoted register bank needs")]
    MissingDigest { record: usize, alg: HashAlg },
    #[error(
        "record {record} ({kind:?}) comes after the launch separator; nothing may be measured after it"
    )]
    AfterSeparator { record: usize, kind: EventType },
    #[error("the event log has no launch separator: the launch was not completed")]
    NoSeparator,
    #[error(
        "record {record}: a {kind:?} event is not valid UTF-8 or not of the form the launcher writes ({why})"
    )]
    BadContent {
        record: usize,
        kind: EventType,
        why: &'static str,
    },
    #[error("record {record} extends register {found}, expected register {expected}")]
    WrongRegister {
        record: usize,
        found: u8,
        expected: u8,
    },
}
