//! Real recorded DCAP quotes with their collateral (testdata/tee/tdx): each gives the
//! outcome its README states; flipped bits are refused.

use std::path::PathBuf;

use cloister_tdx::{TdxError, parse, verify};

fn fixture(path: &str) -> Vec<u8> {
    let found = PathBuf::from(
        // At run time, not compile time: a binary built in another checkout reads this one.
        std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR: run with `cargo test`"),
    )
    .join("../../testdata/tee/tdx")
    .join(path);
    std::fs::read(&found).unwrap_or_else(|e| panic!("{}: {e}", found.display()))
}

/// 2025-07-01, inside the collateral's validity window (2025-06-19..2025-07-19).
const IN_WINDOW: u64 = 1_751_328_000;
/// 2026-03-01, inside the outdated-platform collateral's window (2026-02-18..2026-03-20).
const OUTDATED_WINDOW: u64 = 1_772_323_200;

#[test]
fn a_tdx_v4_quote_verifies_up_to_date() {
    let v = verify(
        &fixture("dcap-qvl-tdx_quote"),
        &fixture("dcap-qvl-tdx_quote_collateral.json"),
        IN_WINDOW,
    )
    .unwrap();
    assert_eq!(
        (v.tee, v.tcb_status.as_deref(), v.debug),
        ("TDX", Some("UpToDate"), false)
    );
    assert_eq!(v.measurements.len(), 5, "MRTD and RTMR0–3");
}

#[test]
fn an_sgx_quote_verifies_with_its_advisories() {
    let v = verify(
        &fixture("dcap-qvl-sgx_quote"),
        &fixture("dcap-qvl-sgx_quote_collateral.json"),
        IN_WINDOW,
    )
    .unwrap();
    assert_eq!(v.tee, "SGX");
    assert_eq!(
        v.tcb_status.as_deref(),
        Some("ConfigurationAndSWHardeningNeeded")
    );
    for a in ["INTEL-SA-00289", "INTEL-SA-00615"] {
        assert!(
            v.advisory_ids.iter().any(|x| x == a),
            "{:?}",
            v.advisory_ids
        );
    }
}

#[test]
fn quotes_whose_tcb_matches_no_level_are_refused() {
    let collateral = fixture("dcap-qvl-tdx_quote_outdated_collateral.json");
    for quote in ["dcap-qvl-tdx_quote_outdated", "trustee-tdx_quote_5.dat"] {
        // Inside the collateral's window every signature and CRL passes; the TCB does not.
        let err = verify(&fixture(quote), &collateral, OUTDATED_WINDOW).unwrap_err();
        assert_eq!(
            err,
            TdxError::Refused("No matching TCB level found".into()),
            "{quote}"
        );
    }
}

#[test]
fn collateral_of_another_platform_is_refused() {
    let err = verify(
        &fixture("dcap-qvl-tdx_quote"),
        &fixture("dcap-qvl-tdx_quote_outdated_collateral.json"),
        OUTDATED_WINDOW,
    )
    .unwrap_err();
    assert_eq!(err, TdxError::Refused("Fmspc mismatch".into()));
}

#[test]
fn a_debug_td_is_refused_and_collateral_time_matters() {
    let debug = parse(&fixture("trustee-tdx_quote_4.dat")).unwrap();
    assert!(debug.debug, "the TD DEBUG attribute is set in this quote");
    let err = verify(
        &fixture("trustee-tdx_quote_4.dat"),
        &fixture("dcap-qvl-tdx_quote_collateral.json"),
        IN_WINDOW,
    )
    .unwrap_err();
    assert!(err.to_string().contains("debuggable"), "{err}");
    parse(&fixture("trustee-tdx_quote_6.dat")).unwrap();
    // Outside the collateral's window the same good quote is refused: before it, the TCB
    // info is not yet issued; after it, the CRLs have expired.
    let judged_at = |t| {
        verify(
            &fixture("dcap-qvl-tdx_quote"),
            &fixture("dcap-qvl-tdx_quote_collateral.json"),
            t,
        )
        .unwrap_err()
        .to_string()
    };
    let early = judged_at(IN_WINDOW - 365 * 24 * 3600);
    assert!(early.contains("issue date is in the future"), "{early}");
    let late = judged_at(IN_WINDOW + 365 * 24 * 3600);
    assert!(late.contains("CrlExpired"), "{late}");
}

#[test]
fn flipped_bits_in_the_quote_are_refused() {
    let quote = fixture("dcap-qvl-tdx_quote");
    let collateral = fixture("dcap-qvl-tdx_quote_collateral.json");
    // Header and TD report (0..632, signed by the attestation key), the signature and that
    // key (632..764, bound by the QE report), the QE report and its PCK signature (..1212).
    // (Later bytes hold the PEM chain, whose root Intel's pinned root replaces.)
    for i in (0..1212).step_by(7) {
        let mut bad = quote.clone();
        bad[i] ^= 0x01;
        assert!(
            verify(&bad, &collateral, IN_WINDOW).is_err(),
            "byte {i} flipped was accepted"
        );
    }
    assert!(matches!(
        verify(&quote, b"{}", IN_WINDOW),
        Err(TdxError::Malformed(_))
    ));
    assert!(matches!(parse(&quote[..100]), Err(TdxError::Malformed(_))));
}

/// A local collateral cache is keyed by the FMSPC the quote's PCK certificate names, which is
/// the one the right collateral's TCB info carries.
#[test]
fn the_fmspc_names_the_collateral_a_quote_needs() {
    let cases = [
        ("dcap-qvl-tdx_quote", "dcap-qvl-tdx_quote_collateral.json"),
        ("dcap-qvl-sgx_quote", "dcap-qvl-sgx_quote_collateral.json"),
        (
            "dcap-qvl-tdx_quote_outdated",
            "dcap-qvl-tdx_quote_outdated_collateral.json",
        ),
    ];
    for (quote, collateral) in cases {
        let fmspc = cloister_tdx::fmspc(&fixture(quote)).unwrap();
        let c: serde_json::Value = serde_json::from_slice(&fixture(collateral)).unwrap();
        let tcb: serde_json::Value = serde_json::from_str(c["tcb_info"].as_str().unwrap()).unwrap();
        assert_eq!(fmspc, tcb["fmspc"].as_str().unwrap(), "{quote}");
        assert_eq!(
            cloister_tdx::collateral_cache_name(&fmspc),
            format!("{fmspc}.json")
        );
    }
    assert!(matches!(
        cloister_tdx::fmspc(b"not a quote"),
        Err(TdxError::Malformed(_))
    ));
}

/// The launch measurement covers MRTD and RTMR0–2, never RTMR3 (the container events).
#[test]
fn the_launch_measurement_is_mrtd_and_rtmr0_to_2() {
    let v = parse(&fixture("dcap-qvl-tdx_quote")).unwrap();
    let part = |n: &str| hex::decode(v.measurement(n).unwrap()).unwrap();
    let expected = cloister_tdx::launch_measurement(
        &part("mr_td"),
        &part("rtmr0"),
        &part("rtmr1"),
        &part("rtmr2"),
    );
    assert_eq!(v.launch_measurement.as_deref(), Some(expected.as_str()));
    assert_eq!(expected.len(), 96);
    let mut other = part("rtmr2");
    other[0] ^= 1;
    assert_ne!(
        cloister_tdx::launch_measurement(&part("mr_td"), &part("rtmr0"), &part("rtmr1"), &other),
        expected
    );
    assert_eq!(
        parse(&fixture("dcap-qvl-sgx_quote"))
            .unwrap()
            .launch_measurement,
        None
    );
}
