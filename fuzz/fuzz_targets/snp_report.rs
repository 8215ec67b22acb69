//! An SNP report and the certificate beside it, as a verifier receives them: the first 1184
//! bytes are the report (shorter inputs are padded, so every field gets exercised), the rest
//! the VCEK's DER. Also the host's certificate table (configfs-tsm auxblob).
#![no_main]

use libfuzzer_sys::fuzz_target;

const REPORT_LEN: usize = 1184;

fuzz_target!(|data: &[u8]| {
    let _ = cloister_snp::Report::parse(data);
    let _ = cloister_snp::cert_table::signing_certificate(data);
    let mut report = data[..data.len().min(REPORT_LEN)].to_vec();
    report.resize(REPORT_LEN, 0);
    let cert = data.get(REPORT_LEN..).unwrap_or_default();
    if let Ok(r) = cloister_snp::Report::parse(&report) {
        let _ = (r.debug(), r.signing_key(), r.product());
    }
    let _ = cloister_snp::verify(&report, cert, time::OffsetDateTime::UNIX_EPOCH);
});
