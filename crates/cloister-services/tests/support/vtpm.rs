//! A Cloister instance's vTPM in process: a real software TPM (swtpm), the attester, the
//! platform's identity CA certifying its attestation key, and the launcher measured into
//! PCR 12 as the local driver does before the launcher runs.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cloister_eventlog::{COS_EVENT_PCR, Event, EventLog, EventType, HashAlg};
use cloister_tpm::LAUNCHER_PCR;
use cloister_tpm::attester::VtpmAttester;
use cloister_tpm::identity::InstanceIdentity;
use cloister_tpm::swtpm::Swtpm;
use serde_json::{Value, json};

use super::secundus::{DIGEST, REFERENCE, Secundus};

pub const LAUNCHER: &[u8] = b"the cloister launcher binary, as the platform read it";

/// An instance: its swtpm, the attester, its identity and AK certificate, and the launcher
/// measured into PCR 12 as the local driver does before the launcher runs.
pub struct Instance {
    pub _dir: tempfile::TempDir,
    pub _tpm: Swtpm,
    pub attester: VtpmAttester,
    pub banks: Vec<HashAlg>,
    pub identity: InstanceIdentity,
    pub ak_cert: Vec<u8>,
    pub log: EventLog,
}

impl Instance {
    pub async fn create(s: &Secundus) -> Instance {
        let dir = tempfile::tempdir().unwrap();
        let tpm = Swtpm::start(dir.path()).unwrap();
        let mut attester = VtpmAttester::open(&tpm.tcti()).unwrap();
        let banks = attester.active_banks().unwrap();
        let (_, project) = s
            .api
            .call(&s.owner, "GET", "/v1/projects/secundus-bank", None)
            .await;
        let identity = InstanceIdentity {
            zone: "us-west1-b".into(),
            project_number: project["projectNumber"].as_str().unwrap().parse().unwrap(),
            project_id: "secundus-bank".into(),
            instance_id: 4711,
            instance_name: "workload-vm".into(),
        };
        let body = json!({"attestationKey": STANDARD.encode(attester.ak_public_key().unwrap()), "instance": identity});
        let (st, b) = s
            .api
            .call(
                &s.api.admin,
                "POST",
                "/cloister/v1/identityCa:certifyAttestationKey",
                Some(body),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let ak_cert = STANDARD.decode(b["certificate"].as_str().unwrap()).unwrap();
        let launcher: BTreeMap<HashAlg, Vec<u8>> =
            banks.iter().map(|b| (*b, b.hash(&[LAUNCHER]))).collect();
        attester.extend(LAUNCHER_PCR, &launcher).unwrap();
        let mut instance = Instance {
            _dir: dir,
            _tpm: tpm,
            attester,
            banks,
            identity,
            ak_cert,
            log: EventLog::default(),
        };
        for e in [
            Event::new(EventType::ImageRef, REFERENCE),
            Event::new(EventType::ImageDigest, DIGEST),
            Event::new(EventType::RestartPolicy, "Never"),
            Event::new(EventType::Arg, "/workload"),
            Event::new(EventType::LaunchSeparator, Vec::new()),
        ] {
            instance.measure(&e);
        }
        instance
    }

    pub fn measure(&mut self, e: &Event) {
        let digests = self.log.append(COS_EVENT_PCR, &self.banks, e);
        self.attester.extend(COS_EVENT_PCR, &digests).unwrap();
    }

    /// The launcher's PCR 12 value in the SHA-256 bank: what reference values name.
    pub fn launcher_measurement() -> String {
        hex::encode(HashAlg::Sha256.hash(&[&[0u8; 32], &HashAlg::Sha256.hash(&[LAUNCHER])]))
    }

    pub fn evidence(&mut self, nonce: &[u8], log: &EventLog) -> Value {
        let q = self
            .attester
            .quote(nonce, HashAlg::Sha256, &[LAUNCHER_PCR, COS_EVENT_PCR])
            .unwrap();
        let pcrs: BTreeMap<String, String> = q
            .pcr_values
            .iter()
            .map(|(i, v)| (i.to_string(), STANDARD.encode(v)))
            .collect();
        json!({
            "quotes": [{"hashAlgo": 11, "pcrValues": pcrs, "rawQuote": STANDARD.encode(&q.attest), "rawSignature": STANDARD.encode(&q.signature)}],
            "canonicalEventLog": STANDARD.encode(log.encode()),
            "akCert": STANDARD.encode(&self.ak_cert),
        })
    }
}

pub fn request(s: &Secundus, tpm: Value) -> Value {
    json!({
        "gcpCredentials": {"serviceAccountIdTokens": [s.sa_id_token]},
        "tpmAttestation": tpm,
        "tokenOptions": {"audience": "https://sts.googleapis.com"},
    })
}

pub async fn trust_launcher(s: &Secundus) {
    let body = json!({"measurement": Instance::launcher_measurement(), "swversion": "250101", "supportAttributes": ["LATEST", "STABLE", "USABLE"]});
    let (st, b) = s
        .api
        .call(
            &s.api.admin,
            "POST",
            "/cloister/v1/verifier/referenceValues",
            Some(body),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
}

pub fn nonce(b64: &str) -> Vec<u8> {
    STANDARD.decode(b64).unwrap()
}
