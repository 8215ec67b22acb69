//! The claims of an attestation token, with Confidential Space's names and shapes. Every
//! value comes from verified evidence, the verified ID token, or the reference values.

use cloister_eventlog::ContainerClaims;
use serde::Serialize;
use serde_json::{Value, json};

/// What the verifier established, and where each part came from.
pub struct Verified {
    /// `hwmodel`: the truth about the hardware (`INSECURE` for unverified evidence).
    pub hwmodel: &'static str,
    pub secboot: bool,
    pub dbgstat: String,
    pub swversion: Vec<String>,
    pub support_attributes: Vec<String>,
    pub container: ContainerClaims,
    /// `submods.gce`, when the evidence proves the instance identity.
    pub gce: Option<Value>,
    /// A submodule about the TEE itself (`tdx`: TCB status, advisories), when it has one.
    pub tee: Option<(&'static str, Value)>,
    pub subject: String,
    pub service_accounts: Vec<String>,
    /// The container image signatures that verified (`signatures.rs`).
    pub image_signatures: Vec<super::signatures::ImageSignature>,
    /// Whether a root of trust (a vTPM quote, an SEV-SNP report, a TDX quote) bound the
    /// container claims, so they are a launcher's word and not the caller's.
    pub measured: bool,
}

impl Verified {
    /// `swname`: Confidential Space's name only for a measured launch. INSECURE evidence is
    /// the caller's own word about its image, so it must never pass a condition written for
    /// Confidential Space (Google's documented ones check `swname`, some nothing more).
    fn swname(&self) -> &'static str {
        if self.measured {
            "CONFIDENTIAL_SPACE"
        } else {
            "INSECURE"
        }
    }
}

#[derive(Serialize)]
struct Container<'a> {
    image_reference: &'a str,
    image_digest: &'a str,
    restart_policy: &'a str,
    image_id: &'a str,
    args: &'a [String],
    env: &'a std::collections::BTreeMap<String, String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    cmd_override: &'a [String],
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    env_override: &'a std::collections::BTreeMap<String, String>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    image_signatures: &'a [super::signatures::ImageSignature],
}

/// `attester_tcb`, where the evidence's root of trust comes from. Google documents one value,
/// `["INTEL"]` for `GCP_INTEL_TDX`; no claim is made where Google documents none (SNP, and
/// Cloister's own VTPM and INSECURE).
fn attester_tcb(hwmodel: &str) -> Option<[&'static str; 1]> {
    match hwmodel {
        "GCP_INTEL_TDX" => Some(["INTEL"]),
        _ => None,
    }
}

/// The token's claims for `issuer`, `audience`, the caller's `nonces`, at `now`.
pub fn token_claims(
    v: &Verified,
    issuer: &str,
    audience: &str,
    nonces: &[String],
    now: i64,
    lifetime: i64,
) -> Value {
    let c = &v.container;
    let container = Container {
        image_reference: &c.image_reference,
        image_digest: &c.image_digest,
        restart_policy: &c.restart_policy,
        image_id: &c.image_id,
        args: &c.args,
        env: &c.env,
        cmd_override: &c.cmd_override,
        env_override: &c.env_override,
        image_signatures: &v.image_signatures,
    };
    let mut submods = json!({
        "container": container,
        "confidential_space": {
            "support_attributes": v.support_attributes,
            "monitoring_enabled": {"memory": c.memory_monitoring.unwrap_or(false)},
        },
    });
    if let Some(gce) = &v.gce {
        submods["gce"] = gce.clone();
    }
    if let Some((name, tee)) = &v.tee {
        submods[*name] = tee.clone();
    }
    let mut claims = json!({
        "iss": issuer,
        "aud": audience,
        "sub": v.subject,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "eat_profile": "https://cloud.google.com/confidential-computing/confidential-space/docs/reference/token-claims",
        "secboot": v.secboot,
        "oemid": 11129,
        "hwmodel": v.hwmodel,
        "swname": v.swname(),
        "swversion": v.swversion,
        "dbgstat": v.dbgstat,
        "google_service_accounts": v.service_accounts,
        "submods": submods,
    });
    if let Some(tcb) = attester_tcb(v.hwmodel) {
        claims["attester_tcb"] = json!(tcb);
    }
    match nonces {
        [] => {}
        [one] => claims["eat_nonce"] = json!(one),
        many => claims["eat_nonce"] = json!(many),
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attester_tcb_is_stated_only_where_google_documents_it() {
        let cases = [
            ("GCP_INTEL_TDX", json!(["INTEL"])),
            ("GCP_AMD_SEV_SNP", Value::Null),
            ("VTPM", Value::Null),
            ("INSECURE", Value::Null),
        ];
        for (hwmodel, expected) in cases {
            let v = Verified {
                hwmodel,
                secboot: false,
                dbgstat: "disabled-since-boot".into(),
                swversion: vec![],
                support_attributes: vec![],
                container: Default::default(),
                gce: None,
                tee: None,
                subject: "s".into(),
                service_accounts: vec![],
                image_signatures: vec![],
                measured: hwmodel != "INSECURE",
            };
            let claims = token_claims(&v, "https://i", "https://a", &[], 0, 60);
            assert_eq!(claims["attester_tcb"], expected, "{hwmodel}");
            assert_eq!(claims["hwmodel"], hwmodel);
        }
    }
}
