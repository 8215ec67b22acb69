//! `cloister attest verify-evidence`: recorded SEV-SNP evidence verified offline, with the exit
//! code saying verified (0), refused (1) or unusable (2).

mod support;

use std::path::PathBuf;
use std::process::Command;

fn fixture(path: &str) -> PathBuf {
    let found = support::crate_dir().join("../../testdata/tee").join(path);
    assert!(found.exists(), "{} not found", found.display());
    found
}

fn verify(args: &[&str], files: &[&str]) -> (i32, serde_json::Value) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cloister"));
    cmd.args(["attest", "verify-evidence"]).args(args);
    for f in files {
        cmd.arg(fixture(f));
    }
    let out = cmd.output().unwrap();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap_or(-1), json)
}

#[test]
fn recorded_snp_evidence_gets_its_verdict_and_exit_code() {
    let (code, v) = verify(
        &["--kind", "sev-snp"],
        &["snp/test-report.bin", "snp/test-vcek.der"],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["claims"]["hwmodel"], "GCP_AMD_SEV_SNP");
    assert_eq!(v["claims"]["dbgstat"], "disabled-since-boot");
    assert_eq!(v["claims"]["snp"]["product"], "MILAN");
    // Hex text reports are accepted too.
    let (code, _) = verify(
        &["--kind", "sev-snp"],
        &["sev-certs/report_milan.hex", "sev-certs/vcek_milan.der"],
    );
    assert_eq!(code, 0);

    let (code, v) = verify(
        &["--kind", "sev-snp", "--now", "2025-06-01T00:00:00Z"],
        &["snp/test-vlek-report.bin", "snp/test-vlek.der"],
    );
    assert_eq!((code, v["verdict"].as_str()), (1, Some("refused")));
    assert!(v["reason"].as_str().unwrap().contains("VMPL 1"), "{v}");
    let (code, v) = verify(
        &["--kind", "sev-snp", "--now", "2026-01-01T00:00:00Z"],
        &["snp/test-vlek-report.bin", "snp/test-vlek.der"],
    );
    assert_eq!(code, 1);
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("VLEK certificate is valid from"),
        "{v}"
    );
    let (code, _) = verify(
        &["--kind", "sev-snp"],
        &["snp/test-report.bin", "snp/test-vcek-invalid-new.der"],
    );
    assert_eq!(code, 1);

    let (code, v) = verify(&["--kind", "sev-snp"], &["snp/test-report.bin"]);
    assert_eq!((code, v["verdict"].as_str()), (2, Some("unusable")));
    let (code, _) = verify(
        &["--kind", "sev-snp", "--now", "yesterday"],
        &["snp/test-report.bin", "snp/test-vcek.der"],
    );
    assert_eq!(code, 2);
}

#[test]
fn recorded_dcap_quotes_get_their_verdict_with_collateral_and_time() {
    let collateral = fixture("tdx/dcap-qvl-tdx_quote_collateral.json");
    let col = collateral.to_str().unwrap();
    let at = ["--now", "2025-07-01T00:00:00Z"];
    let (code, v) = verify(
        &["--kind", "tdx", "--collateral", col, at[0], at[1]],
        &["tdx/dcap-qvl-tdx_quote"],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["claims"]["hwmodel"], "GCP_INTEL_TDX");
    assert_eq!(v["claims"]["dcap"]["tcb_status"], "UpToDate");
    // What an admin registers as the reference value of this boot.
    assert_eq!(
        v["claims"]["dcap"]["launch_measurement"]
            .as_str()
            .map(str::len),
        Some(96)
    );
    // A collateral cache directory: the quote's FMSPC names the file.
    let cache = tempfile::tempdir().unwrap();
    std::fs::copy(&collateral, cache.path().join("B0C06F000000.json")).unwrap();
    let dir = cache.path().to_str().unwrap();
    let (code, v) = verify(
        &["--kind", "tdx", "--collateral", dir, at[0], at[1]],
        &["tdx/dcap-qvl-tdx_quote"],
    );
    assert_eq!(code, 0, "{v}");
    let (code, v) = verify(
        &["--kind", "tdx", "--collateral", dir, at[0], at[1]],
        &["tdx/dcap-qvl-tdx_quote_outdated"],
    );
    assert_eq!(code, 2, "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("90C06F000000.json"),
        "{v}"
    );
    let sgx = fixture("tdx/dcap-qvl-sgx_quote_collateral.json");
    let (code, v) = verify(
        &[
            "--kind",
            "sgx",
            "--collateral",
            sgx.to_str().unwrap(),
            at[0],
            at[1],
        ],
        &["tdx/dcap-qvl-sgx_quote"],
    );
    assert_eq!(
        (code, v["claims"]["hwmodel"].as_str()),
        (0, Some("INTEL_SGX")),
        "{v}"
    );
    let outdated = fixture("tdx/dcap-qvl-tdx_quote_outdated_collateral.json");
    // Judged inside that collateral's own window (2026-02-18..2026-03-20).
    let (code, v) = verify(
        &[
            "--kind",
            "tdx",
            "--collateral",
            outdated.to_str().unwrap(),
            "--now",
            "2026-03-01T00:00:00Z",
        ],
        &["tdx/dcap-qvl-tdx_quote_outdated"],
    );
    assert_eq!(code, 1);
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("No matching TCB level"),
        "{v}"
    );
    let (code, v) = verify(
        &["--kind", "tdx", "--collateral", col, at[0], at[1]],
        &["tdx/trustee-tdx_quote_4.dat"],
    );
    assert_eq!(code, 1);
    assert!(v["reason"].as_str().unwrap().contains("debuggable"), "{v}");
    let (code, _) = verify(&["--kind", "tdx"], &["tdx/dcap-qvl-tdx_quote"]);
    assert_eq!(code, 2, "no collateral");
}

#[test]
fn a_vcek_can_come_from_a_local_cache_and_a_missing_one_is_a_clear_error() {
    let cache = tempfile::tempdir().unwrap();
    let cache_arg = cache.path().to_str().unwrap().to_owned();
    let (code, v) = verify(
        &["--kind", "sev-snp", "--vcek-cache", &cache_arg],
        &["snp/test-report.bin"],
    );
    assert_eq!(code, 2, "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.contains("no VCEK for this chip and TCB"), "{reason}");
    // The message names the file the cache should hold; put the VCEK there.
    let name = reason
        .split("put it there as ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    std::fs::copy(fixture("snp/test-vcek.der"), cache.path().join(name)).unwrap();
    let (code, v) = verify(
        &["--kind", "sev-snp", "--vcek-cache", &cache_arg],
        &["snp/test-report.bin"],
    );
    assert_eq!(code, 0, "{v}");
}
