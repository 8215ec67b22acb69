//! A canonical event log as a verifier receives it: decoded, replayed into every register it
//! names in every bank, and read for container claims.
#![no_main]

use cloister_eventlog::{COS_EVENT_PCR, COS_EVENT_RTMR_CCEL_INDEX, EventLog, HashAlg};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(log) = EventLog::decode(data) else {
        return;
    };
    // What decodes re-encodes to a log that decodes the same: nothing is lost or invented.
    // (Not byte-equal: banks may arrive in any order and are written in algorithm order.)
    assert_eq!(EventLog::decode(&log.encode()).as_ref(), Ok(&log));
    for alg in [HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha384] {
        for index in [COS_EVENT_PCR, COS_EVENT_RTMR_CCEL_INDEX] {
            let _ = log.replay(alg, index);
        }
    }
    for index in [COS_EVENT_PCR, COS_EVENT_RTMR_CCEL_INDEX] {
        let _ = log.container_claims(index);
    }
});
