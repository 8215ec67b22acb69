//! A TDX or SGX DCAP quote as a verifier receives it: parsed, its FMSPC read from the PCK
//! certificate chain inside it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = cloister_tdx::parse(data) {
        let _ = v.measurement("rtmr3");
    }
    let _ = cloister_tdx::fmspc(data);
});
