//! `tdCcel` evidence through verifyAttestation with real recorded TDX quotes
//! (testdata/tee/tdx). No recorded quote can bind a fresh challenge, so the best a
//! genuine quote gets is past every DCAP check to the binding refusal; everything else is
//! refused earlier, each with its reason. (The checks after the binding are tested on
//! constructed quotes in `verifier::tdx`.)

mod support;

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use support::message;
use support::secundus::{Secundus, event_log};

fn fixture(path: &str) -> Vec<u8> {
    support::tee_fixture(&format!("tdx/{path}"))
}

/// 2025-07-01: inside the recorded collateral's window (2025-06-19..2025-07-19).
fn in_window() -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(1_751_328_000).ok()
}

/// 2026-03-01: inside the outdated platform's collateral window (2026-02-18..2026-03-20).
fn in_outdated_window() -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(1_772_323_200).ok()
}

fn evidence(quote: &str, collateral: Option<&str>) -> Value {
    let mut e = json!({
        "tdQuote": STANDARD.encode(fixture(quote)),
        "canonicalEventLog": event_log(false),
    });
    if let Some(c) = collateral {
        e["collateral"] = json!(STANDARD.encode(fixture(c)));
    }
    e
}

async fn verify(s: &Secundus, td_ccel: Value) -> (StatusCode, String) {
    let (challenge, _) = s.challenge().await;
    let body = json!({
        "gcpCredentials": {"serviceAccountIdTokens": [s.sa_id_token]},
        "tdCcel": td_ccel,
        "tokenOptions": {"audience": "https://sts.googleapis.com"},
    });
    let (status, b) = s.verify(&s.sa_token, &challenge, body).await;
    (status, message(&b).to_owned())
}

#[tokio::test]
async fn a_genuine_quote_passes_dcap_and_is_refused_for_binding_another_attestation() {
    let s = Secundus::setup_at(in_window()).await;
    let genuine = (
        "dcap-qvl-tdx_quote",
        "dcap-qvl-tdx_quote_collateral.json",
        "REPORT_DATA does not bind",
    );
    assert_refusals(&s, &[genuine]).await;

    // Without collateral: a clear error naming the platform, then the operator's cache works.
    let (status, why) = verify(&s, evidence("dcap-qvl-tdx_quote", None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{why}");
    assert!(
        why.contains("no collateral for this platform (FMSPC B0C06F000000)"),
        "{why}"
    );
    let cache = s.api.dir.path().join("data/tee/tdx-collateral");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(
        cache.join("B0C06F000000.json"),
        fixture("dcap-qvl-tdx_quote_collateral.json"),
    )
    .unwrap();
    let (_, why) = verify(&s, evidence("dcap-qvl-tdx_quote", None)).await;
    assert!(why.contains("REPORT_DATA does not bind"), "{why}");
}

async fn assert_refusals(s: &Secundus, cases: &[(&str, &str, &str)]) {
    for (quote, collateral, reason) in cases {
        let (status, why) = verify(s, evidence(quote, Some(collateral))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{quote}: {why}");
        assert!(why.contains(reason), "{quote} with {collateral}: {why}");
    }
}

#[tokio::test]
async fn debug_tds_outdated_platforms_and_foreign_collateral_are_refused() {
    let s = Secundus::setup_at(in_window()).await;
    let cases = [
        (
            "trustee-tdx_quote_4.dat",
            "dcap-qvl-tdx_quote_collateral.json",
            "the TD is debuggable",
        ),
        // An SGX enclave's quote is not a TD's.
        (
            "dcap-qvl-sgx_quote",
            "dcap-qvl-sgx_quote_collateral.json",
            "not a TD quote",
        ),
    ];
    assert_refusals(&s, &cases).await;
    let s = Secundus::setup_at(in_outdated_window()).await;
    let cases = [
        (
            "dcap-qvl-tdx_quote_outdated",
            "dcap-qvl-tdx_quote_outdated_collateral.json",
            "No matching TCB level found",
        ),
        (
            "trustee-tdx_quote_5.dat",
            "dcap-qvl-tdx_quote_outdated_collateral.json",
            "No matching TCB level found",
        ),
        // Collateral of another FMSPC.
        (
            "dcap-qvl-tdx_quote",
            "dcap-qvl-tdx_quote_outdated_collateral.json",
            "Fmspc mismatch",
        ),
    ];
    assert_refusals(&s, &cases).await;
}

#[tokio::test]
async fn collateral_outside_its_window_is_refused() {
    // Judged at the clock: the recorded collateral expired in 2025.
    let s = Secundus::setup().await;
    let expired = (
        "dcap-qvl-tdx_quote",
        "dcap-qvl-tdx_quote_collateral.json",
        "CrlExpired",
    );
    assert_refusals(&s, &[expired]).await;
}

#[tokio::test]
async fn a_malformed_quote_is_a_clear_error() {
    let s = Secundus::setup_at(in_window()).await;
    let (status, why) = verify(
        &s,
        json!({"tdQuote": STANDARD.encode(b"not a quote"), "canonicalEventLog": event_log(false)}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{why}");
    assert!(why.contains("tdCcel.tdQuote"), "{why}");
    let (status, why) = verify(&s, json!({"tdQuote": "%%%", "canonicalEventLog": ""})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{why}");
    assert!(why.contains("not base64"), "{why}");
}
