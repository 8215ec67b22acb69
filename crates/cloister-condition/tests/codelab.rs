//! The codelab's attribute condition, verbatim, against Confidential Space claims.

use cloister_condition::{ClauseOutcome, Condition, Input};
use serde_json::{Value, json};

const DIGEST: &str = "sha256:4b1f8ac8e3c7a2f1c9d1e0b5f7a6d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6";
const REFERENCE: &str = "us-docker.pkg.dev/primus-bank/primus-workloads/workload-container:latest";
const WORKLOAD_SA: &str = "workload-sa@secundus-bank.iam.gserviceaccount.com";

/// The condition as the codelab writes it (newlines and all), with its variables filled in.
fn codelab_condition() -> String {
    format!(
        "assertion.swname == 'CONFIDENTIAL_SPACE' &&
'STABLE' in assertion.submods.confidential_space.support_attributes &&
assertion.submods.container.image_digest == '{DIGEST}' &&
 assertion.submods.container.image_reference == '{REFERENCE}' &&
'{WORKLOAD_SA}' in assertion.google_service_accounts"
    )
}

fn claims() -> Value {
    json!({
        "iss": "http://127.0.0.1:8080",
        "aud": "https://sts.googleapis.com",
        "sub": "https://www.googleapis.com/compute/v1/projects/secundus-bank/zones/us-west1-b/instances/primus-workload-vm",
        "iat": 1764000000, "exp": 1764003600,
        "hwmodel": "VTPM", "swname": "CONFIDENTIAL_SPACE", "swversion": ["250101"],
        "dbgstat": "disabled-since-boot", "secboot": true,
        "google_service_accounts": [WORKLOAD_SA],
        "submods": {
            "confidential_space": {"support_attributes": ["LATEST", "STABLE", "USABLE"], "monitoring_enabled": {"memory": false}},
            "container": {
                "image_reference": REFERENCE, "image_digest": DIGEST,
                "restart_policy": "Never", "image_id": "sha256:0000",
                "args": ["/workload"], "env": {"PATH": "/bin"}
            },
            "gce": {"zone": "us-west1-b", "project_id": "secundus-bank", "project_number": "123456789012",
                    "instance_name": "primus-workload-vm", "instance_id": "4711"}
        }
    })
}

type Mutation = Box<dyn Fn(&mut Value)>;

fn input(assertion: Value) -> Input {
    Input {
        assertion,
        ..Default::default()
    }
}

#[test]
fn the_codelab_condition_accepts_the_authorized_workload() {
    let c = Condition::compile(&codelab_condition()).unwrap();
    assert_eq!(c.evaluate(&input(claims())), Ok(true));
    let report = c.explain(&input(claims()));
    assert_eq!(report.len(), 5);
    assert!(
        report.iter().all(|r| r.outcome == ClauseOutcome::Pass),
        "{report:?}"
    );
}

#[test]
fn each_single_claim_mutation_is_refused_and_the_failing_clause_is_named() {
    let c = Condition::compile(&codelab_condition()).unwrap();
    let mutations: Vec<(&str, Mutation, &str)> = vec![
        (
            "wrong digest",
            Box::new(|v: &mut Value| {
                v["submods"]["container"]["image_digest"] = json!("sha256:ffff")
            }),
            "image_digest",
        ),
        (
            "wrong reference",
            Box::new(|v: &mut Value| {
                v["submods"]["container"]["image_reference"] = json!("evil.example/x:latest")
            }),
            "image_reference",
        ),
        (
            "no STABLE",
            Box::new(|v: &mut Value| {
                v["submods"]["confidential_space"]["support_attributes"] = json!(["EXPERIMENTAL"])
            }),
            "'STABLE' in",
        ),
        (
            "other SA",
            Box::new(|v: &mut Value| {
                v["google_service_accounts"] = json!(["evil@x.iam.gserviceaccount.com"])
            }),
            "google_service_accounts",
        ),
        (
            "wrong swname",
            Box::new(|v: &mut Value| v["swname"] = json!("GCE")),
            "swname",
        ),
    ];
    for (name, mutate, clause) in mutations {
        let mut claims = claims();
        mutate(&mut claims);
        assert_eq!(c.evaluate(&input(claims.clone())), Ok(false), "{name}");
        let failing: Vec<_> = c
            .explain(&input(claims))
            .into_iter()
            .filter(|r| r.outcome != ClauseOutcome::Pass)
            .collect();
        assert_eq!(failing.len(), 1, "{name}: {failing:?}");
        assert!(failing[0].clause.contains(clause), "{name}: {failing:?}");
    }
}

#[test]
fn missing_submods_is_refused_not_accepted() {
    let c = Condition::compile(&codelab_condition()).unwrap();
    let mut claims = claims();
    claims.as_object_mut().unwrap().remove("submods");
    // A missing field is an evaluation error inside `&&`; it must never come out as true.
    assert_ne!(c.evaluate(&input(claims.clone())), Ok(true));
    let report = c.explain(&input(claims));
    assert!(
        report
            .iter()
            .any(|r| matches!(r.outcome, ClauseOutcome::Error(_))),
        "{report:?}"
    );
}

#[test]
fn explanations_show_the_values_compared() {
    let c = Condition::compile(&codelab_condition()).unwrap();
    let mut claims = claims();
    claims["submods"]["container"]["image_digest"] = json!("sha256:ffff");
    let report = c.explain(&input(claims));
    let digest = report
        .iter()
        .find(|r| r.clause.contains("image_digest"))
        .unwrap();
    assert_eq!(digest.compared[0].1, json!("sha256:ffff"));
    assert_eq!(digest.compared[1].1, json!(DIGEST));
}

#[test]
fn googles_semantics_numbers_are_doubles_and_macros_and_strings_work() {
    let holds = |cond: &str| Condition::compile(cond).unwrap().evaluate(&input(claims()));
    assert_eq!(holds("assertion.iat == 1764000000.0"), Ok(true));
    assert_eq!(holds("assertion.iat > 1.5"), Ok(true));
    assert_eq!(
        holds("has(assertion.submods.gce) && !has(assertion.nope)"),
        Ok(true)
    );
    assert_eq!(
        holds(
            "assertion.google_service_accounts.exists(s, s.endsWith('secundus-bank.iam.gserviceaccount.com'))"
        ),
        Ok(true)
    );
    assert_eq!(
        holds("assertion.submods.confidential_space.support_attributes.all(a, a.size() > 3)"),
        Ok(true)
    );
    assert_eq!(
        holds("assertion.swname.lowerAscii() == 'confidential_space'"),
        Ok(true)
    );
    assert_eq!(
        holds("assertion.sub.extract('/projects/{p}/') == 'secundus-bank'"),
        Ok(true)
    );
    assert_eq!(
        holds("assertion.submods.container.env['PATH'] == '/bin'"),
        Ok(true)
    );
    // swversion is a number in a string, as Google's: a minimum version is an int comparison.
    assert_eq!(holds("int(assertion.swversion[0]) >= 250101"), Ok(true));
    assert_eq!(holds("int(assertion.swversion[0]) >= 250102"), Ok(false));
    // An error on one side of && is absorbed by a false on the other, as the spec says.
    assert_eq!(holds("false && assertion.nope.deeper == 1"), Ok(false));
    assert!(
        holds("assertion.swname").is_err(),
        "a non-bool result is an error"
    );
}

#[test]
fn syntax_errors_are_refused_with_their_position() {
    let err = Condition::compile("assertion.swname == 'CONFIDENTIAL_SPACE' &&\n  assertion.x ==")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("attribute condition does not compile"),
        "{err}"
    );
    assert!(err.contains("line 2"), "{err}");
    let long = "true && ".repeat(600) + "true";
    assert!(
        Condition::compile(&long)
            .unwrap_err()
            .to_string()
            .contains("too long")
    );
}

/// Google's signed-image condition (the signed container image codelab's), verbatim.
fn signature_condition(fingerprint: &str) -> String {
    format!(
        "assertion.swname == 'CONFIDENTIAL_SPACE' && ['{fingerprint}'].exists(fingerprint, fingerprint in assertion.submods.container.image_signatures.map(sig, sig.signature_algorithm+':'+sig.key_id)) && '{WORKLOAD_SA}' in assertion.google_service_accounts"
    )
}

const PRIMUS_KEY: &str = "ECDSA_P256_SHA256:aa11";

fn signed_by(key_ids: &[&str]) -> Value {
    let mut claims = claims();
    claims["submods"]["container"]["image_signatures"] = key_ids
        .iter()
        .map(|id| json!({"key_id": id, "signature": "MEUC", "signature_algorithm": "ECDSA_P256_SHA256"}))
        .collect();
    claims
}

#[test]
fn the_signature_clause_is_explained_with_the_keys_it_looked_for_and_found() {
    let c = Condition::compile(&signature_condition(PRIMUS_KEY)).unwrap();
    let image_signatures = "assertion.submods.container.image_signatures.map(sig, sig.signature_algorithm+':'+sig.key_id)";
    // (case, claims, accepted, what the signature clause saw in the token)
    let cases = [
        (
            "signed by Primus's key, among others",
            signed_by(&["bb22", "aa11"]),
            true,
            json!(["ECDSA_P256_SHA256:bb22", "ECDSA_P256_SHA256:aa11"]),
        ),
        (
            "signed by another key only",
            signed_by(&["bb22"]),
            false,
            json!(["ECDSA_P256_SHA256:bb22"]),
        ),
        // An unsigned image's token has no image_signatures at all (as Google's).
        (
            "unsigned",
            claims(),
            false,
            json!("error: No such key: image_signatures"),
        ),
    ];
    for (case, claims, accepted, seen) in cases {
        assert_eq!(
            c.evaluate(&input(claims.clone())) == Ok(true),
            accepted,
            "{case}"
        );
        let report = c.explain(&input(claims));
        assert_eq!(report.len(), 3, "{case}: {report:?}");
        let clause = &report[1];
        assert!(
            clause
                .clause
                .starts_with(&format!("['{PRIMUS_KEY}'].exists("))
        );
        let expected = if accepted {
            ClauseOutcome::Pass
        } else if seen.is_string() {
            ClauseOutcome::Error("No such key: image_signatures".into())
        } else {
            ClauseOutcome::Fail
        };
        assert_eq!(clause.outcome, expected, "{case}");
        assert_eq!(
            clause.compared,
            [
                (format!("['{PRIMUS_KEY}']"), json!([PRIMUS_KEY])),
                (image_signatures.to_owned(), seen),
            ],
            "{case}"
        );
        assert!(
            report
                .iter()
                .filter(|r| r.clause != clause.clause)
                .all(|r| r.outcome == ClauseOutcome::Pass),
            "{case}: only the signature clause decides: {report:?}"
        );
    }
}
