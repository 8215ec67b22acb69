use std::collections::BTreeMap;

use cloister_condition::AttributeMapping;
use serde_json::json;

fn mapping(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn mappings_produce_subject_groups_and_attributes() {
    let m = AttributeMapping::compile(&mapping(&[
        ("google.subject", "assertion.sub"),
        ("google.groups", "assertion.groups"),
        (
            "attribute.image_digest",
            "assertion.submods.container.image_digest",
        ),
        ("attribute.zone", "assertion.sub.extract('/zones/{z}/')"),
    ]))
    .unwrap();
    let claims = json!({"sub": "projects/p/zones/us-a/instances/i", "groups": ["ml"], "submods": {"container": {"image_digest": "sha256:1"}}});
    let out = m.apply(&claims).unwrap();
    assert_eq!(out.subject, "projects/p/zones/us-a/instances/i");
    assert_eq!(out.groups, ["ml"]);
    assert_eq!(out.attributes["image_digest"], "sha256:1");
    assert_eq!(out.attributes["zone"], "us-a");
}

#[test]
fn the_codelabs_quoted_subject_mapping_is_a_constant() {
    // The codelab writes google.subject='assertion.sub': a CEL string literal.
    let m = AttributeMapping::compile(&mapping(&[("google.subject", "'assertion.sub'")])).unwrap();
    assert_eq!(
        m.apply(&json!({"sub": "x"})).unwrap().subject,
        "assertion.sub"
    );
}

#[test]
fn bad_mappings_are_refused() {
    let err = |pairs: &[(&str, &str)]| {
        AttributeMapping::compile(&mapping(pairs))
            .unwrap_err()
            .to_string()
    };
    assert!(err(&[("attribute.x", "assertion.x")]).contains("must map google.subject"));
    assert!(
        err(&[("google.subject", "assertion.sub"), ("google.bogus", "1")]).contains("cannot map")
    );
    assert!(
        err(&[("google.subject", "assertion.sub"), ("attribute.Bad", "1")]).contains("cannot map")
    );
    assert!(
        err(&[("google.subject", "assertion.sub ==")]).contains("google.subject does not compile")
    );
    let m = AttributeMapping::compile(&mapping(&[("google.subject", "assertion.sub")])).unwrap();
    assert!(
        m.apply(&json!({"sub": "x".repeat(128)}))
            .unwrap_err()
            .to_string()
            .contains("127")
    );
    assert!(m.apply(&json!({"nosub": 1})).is_err());
    assert!(
        m.apply(&json!({"sub": 5}))
            .unwrap_err()
            .to_string()
            .contains("not a string")
    );
}
