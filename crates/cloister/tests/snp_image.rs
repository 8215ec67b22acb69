//! The guest image's SEV-SNP launch digest (issue 22), end to end, without SNP hardware:
//! `cloister image build` computes it for the image it builds, and it equals what the
//! independent `sev-snp-measure` computes for the same files and launch (one EPYC-v4 vCPU,
//! kernel hashes); a server with `--vm-snp-firmware` registers it as a STABLE reference
//! value; Debian's OVMF.fd, which would leave the kernel out of the digest, is refused.

mod support;

use std::path::Path;
use std::process::Command;

use support::{BIN, World};

/// Debian's OVMF.fd given what an AmdSev build has for `kernel-hashes=on` (Debian ships
/// none): a hashes table in the footer and a kernel-hashes section in the SEV metadata,
/// rewritten into the variable store area since no room follows the original.
fn amdsev_like(out: &Path) {
    let mut fw = std::fs::read("/usr/share/ovmf/OVMF.fd")
        .expect("/usr/share/ovmf/OVMF.fd: run scripts/install-deps.sh");
    let at = |fw: &[u8], guid_le: &str| {
        let g = hex::decode(guid_le).unwrap();
        fw.windows(16).rposition(|w| w == g).expect("footer entry") - 2
    };
    let u32_at = |fw: &[u8], i: usize| u32::from_le_bytes(fw[i..i + 4].try_into().unwrap());
    const PAGE: u32 = 0x0082_0000;
    let table = at(&fw, "1f3755723b3a044b927b1da6efa8d454") - 8;
    fw[table..table + 4].copy_from_slice(&PAGE.to_le_bytes());
    fw[table + 4..table + 8].copy_from_slice(&0x400u32.to_le_bytes());
    let entry = at(&fw, "666588dc4a989847a75e5585a7bf67cc") - 4;
    let old = fw.len() - u32_at(&fw, entry) as usize;
    let count = u32_at(&fw, old + 12);
    let mut meta = fw[old..old + 16 + 12 * count as usize].to_vec();
    meta[4..8].copy_from_slice(&(16 + 12 * (count + 1)).to_le_bytes());
    meta[12..16].copy_from_slice(&(count + 1).to_le_bytes());
    for v in [PAGE, 0x1000, 0x10] {
        meta.extend(v.to_le_bytes());
    }
    fw[0x1000..0x1000 + meta.len()].copy_from_slice(&meta);
    let from_end = u32::try_from(fw.len() - 0x1000).unwrap();
    fw[entry..entry + 4].copy_from_slice(&from_end.to_le_bytes());
    std::fs::write(out, fw).unwrap();
}

fn image_build(data: &Path, firmware: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(["image", "build", "--data-dir"])
        .arg(data)
        .arg("--snp-firmware")
        .arg(firmware)
        .output()
        .unwrap()
}

#[test]
fn the_images_snp_launch_digest_is_sev_snp_measures_and_is_registered() {
    let dir = tempfile::tempdir().unwrap();
    let firmware = dir.path().join("amdsev.fd");
    amdsev_like(&firmware);
    let data = dir.path().join("data");

    let out = image_build(&data, &firmware);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let image: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours = image["snp"]["measurement"].as_str().unwrap();
    let theirs = Command::new("python3")
        .args([
            "-c",
            "import sys; from sevsnpmeasure.cli import main; sys.exit(main())",
        ])
        .args(["--mode", "snp", "--vcpus", "1", "--vcpu-type", "EPYC-v4"])
        .arg("--ovmf")
        .arg(&firmware)
        .args(["--kernel", image["kernel"].as_str().unwrap()])
        .args(["--initrd", image["initrd"].as_str().unwrap()])
        .args(["--append", image["cmdline"].as_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        theirs.status.success(),
        "sev-snp-measure (scripts/install-deps.sh installs it): {}",
        String::from_utf8_lossy(&theirs.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&theirs.stdout).trim(), ours);

    // Debian's own OVMF.fd has SNP metadata but cannot measure the kernel: refused.
    let out = image_build(&data, Path::new("/usr/share/ovmf/OVMF.fd"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("AmdSev"), "{err}");

    // The server builds the same image (cached) and registers the digest as it does the
    // boot measurement.
    let w = World::with_users(&[
        "--compute-driver",
        "vm",
        "--vm-snp-firmware",
        firmware.to_str().unwrap(),
    ]);
    let value = w.cli.json(&[
        "--profile",
        "admin",
        "verifier",
        "reference-values",
        "describe",
        ours,
    ]);
    let stable = serde_json::json!("STABLE");
    assert!(
        value["supportAttributes"]
            .as_array()
            .is_some_and(|a| a.contains(&stable)),
        "{value}"
    );
    assert_eq!(value["dbgstat"], "disabled-since-boot");
}
