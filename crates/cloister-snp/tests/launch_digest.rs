//! The SEV-SNP launch digest computed by `cloister_snp::launch` equals the one an independent
//! implementation computes for the same inputs: IBM's `sev-snp-measure` (PyPI, pinned in
//! scripts/install-deps.sh), run as a program. Inputs: Debian's OVMF.fd (SNP metadata, no
//! kernel-hashes support), and the same image given a kernel-hashes section and hashes
//! table (what an AmdSev build has, which Debian does not ship), over several vCPU counts and
//! models, with and without kernel hashes.

use std::path::Path;
use std::process::Command;

use cloister_snp::launch::{KernelHashes, Launch, LaunchError, Ovmf, cpu_signature, launch_digest};

/// Debian's `ovmf` package (scripts/install-deps.sh installs it).
const DEBIAN_OVMF: &str = "/usr/share/ovmf/OVMF.fd";
const CMDLINE: &str = "console=ttyS0 quiet panic=-1 rdinit=/init";

/// `sev-snp-measure --mode snp` with these arguments, its hex digest; Err(stderr) on refusal.
fn sev_snp_measure(args: &[&str]) -> Result<String, String> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys; from sevsnpmeasure.cli import main; sys.exit(main())",
        ])
        .args(["--mode", "snp", "--guest-features", "0x1"])
        .args(args)
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("No module named 'sevsnpmeasure'"),
        "sev-snp-measure is not installed: run scripts/install-deps.sh (pip install sev-snp-measure==0.0.12)"
    );
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(stderr)
    }
}

fn debian_ovmf() -> Vec<u8> {
    std::fs::read(DEBIAN_OVMF).unwrap_or_else(|e| {
        panic!("{DEBIAN_OVMF}: {e}: apt-get install ovmf (scripts/install-deps.sh)")
    })
}

fn le_guid(text: &str) -> [u8; 16] {
    uuid::Uuid::parse_str(text).unwrap().to_bytes_le()
}

fn rfind(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .rposition(|w| w == needle)
        .expect("the footer table entry is in the image")
}

/// Debian's OVMF.fd with what an AmdSev build adds for `kernel-hashes=on`: a hashes table in
/// the footer (400 bytes into a page, so the table's offset in its page matters) and a
/// sixth SEV metadata section, of kernel-hashes type, holding that page. The metadata is
/// rewritten into the image's variable store area (no room follows the original).
fn with_kernel_hashes_section(mut fw: Vec<u8>) -> Vec<u8> {
    const PAGE_GPA: u32 = 0x0082_0000;
    let table = rfind(&fw, &le_guid("7255371f-3a3b-4b04-927b-1da6efa8d454")) - 2 - 8;
    fw[table..table + 4].copy_from_slice(&(PAGE_GPA + 0x190).to_le_bytes());
    fw[table + 4..table + 8].copy_from_slice(&0x400u32.to_le_bytes());
    let entry = rfind(&fw, &le_guid("dc886566-984a-4798-a75e-5585a7bf67cc")) - 2 - 4;
    let len = fw.len();
    let old = len - u32::from_le_bytes(fw[entry..entry + 4].try_into().unwrap()) as usize;
    let count = u32::from_le_bytes(fw[old + 12..old + 16].try_into().unwrap()) as usize;
    let mut meta = fw[old..old + 16 + 12 * count].to_vec();
    meta[4..8].copy_from_slice(&(16 + 12 * (count as u32 + 1)).to_le_bytes());
    meta[12..16].copy_from_slice(&(count as u32 + 1).to_le_bytes());
    for v in [PAGE_GPA, 0x1000, 0x10] {
        meta.extend(v.to_le_bytes());
    }
    let new = 0x1000;
    fw[new..new + meta.len()].copy_from_slice(&meta);
    fw[entry..entry + 4].copy_from_slice(&((len - new) as u32).to_le_bytes());
    fw
}

struct Case {
    vcpus: u32,
    /// QEMU's model name as sev-snp-measure knows it, and its family/model/stepping.
    model: (&'static str, u32, u32, u32),
}

const EPYC_V4: (&str, u32, u32, u32) = ("EPYC-v4", 23, 1, 2);
const MILAN: (&str, u32, u32, u32) = ("EPYC-Milan", 25, 1, 1);
const GENOA: (&str, u32, u32, u32) = ("EPYC-Genoa", 25, 17, 0);

const CASES: [Case; 5] = [
    Case {
        vcpus: 1,
        model: EPYC_V4,
    },
    Case {
        vcpus: 2,
        model: EPYC_V4,
    },
    Case {
        vcpus: 4,
        model: MILAN,
    },
    Case {
        vcpus: 16,
        model: GENOA,
    },
    Case {
        vcpus: 64,
        model: MILAN,
    },
];

fn ours(ovmf: &Ovmf, case: &Case, kernel: Option<&KernelHashes>) -> Result<String, LaunchError> {
    let (_, family, model, stepping) = case.model;
    let launch = Launch {
        vcpus: case.vcpus,
        vcpu_signature: cpu_signature(family, model, stepping),
        sev_features: 1,
    };
    launch_digest(ovmf, &launch, kernel).map(hex::encode)
}

fn theirs(firmware: &Path, case: &Case, kernel: Option<(&Path, &Path)>) -> Result<String, String> {
    let vcpus = case.vcpus.to_string();
    let mut args = vec![
        "--ovmf",
        firmware.to_str().unwrap(),
        "--vcpus",
        &vcpus,
        "--vcpu-type",
        case.model.0,
    ];
    if let Some((k, i)) = kernel {
        args.extend([
            "--kernel",
            k.to_str().unwrap(),
            "--initrd",
            i.to_str().unwrap(),
        ]);
        args.extend(["--append", CMDLINE]);
    }
    sev_snp_measure(&args)
}

#[test]
fn debian_ovmf_without_kernel_hashes_matches_sev_snp_measure() {
    let bytes = debian_ovmf();
    let ovmf = Ovmf::parse(bytes).unwrap();
    assert!(
        !ovmf.supports_kernel_hashes(),
        "Debian 12's OVMF.fd has no hashes table"
    );
    let mut seen = std::collections::HashSet::new();
    for case in &CASES {
        let mine = ours(&ovmf, case, None).unwrap();
        assert_eq!(
            Ok(mine.clone()),
            theirs(Path::new(DEBIAN_OVMF), case, None),
            "{} vCPUs",
            case.vcpus
        );
        assert!(
            seen.insert(mine),
            "each vCPU count/model gives its own digest"
        );
    }
}

#[test]
fn kernel_hashes_match_sev_snp_measure() {
    let dir = tempfile::tempdir().unwrap();
    let firmware = dir.path().join("ovmf-with-hashes.fd");
    let fw = with_kernel_hashes_section(debian_ovmf());
    std::fs::write(&firmware, &fw).unwrap();
    let ovmf = Ovmf::parse(fw).unwrap();
    assert!(ovmf.supports_kernel_hashes());

    // Any bytes stand for the kernel and initrd: the digest covers their SHA-256 only.
    let (kernel, initrd) = (dir.path().join("vmlinuz"), dir.path().join("initrd"));
    let kernel_bytes: Vec<u8> = (0..3_000_001u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&kernel, &kernel_bytes).unwrap();
    std::fs::write(&initrd, b"070701 an initramfs").unwrap();
    let hashes = KernelHashes::new(&kernel_bytes, b"070701 an initramfs", CMDLINE);

    for case in &CASES[..3] {
        let with = ours(&ovmf, case, Some(&hashes)).unwrap();
        assert_eq!(
            Ok(with.clone()),
            theirs(&firmware, case, Some((&kernel, &initrd))),
            "{} vCPUs",
            case.vcpus
        );
        // Without kernel-hashes=on the section is launched as zero pages: another digest.
        let without = ours(&ovmf, case, None).unwrap();
        assert_eq!(Ok(without.clone()), theirs(&firmware, case, None));
        assert_ne!(with, without);
    }
    // One changed byte of the command line changes the digest.
    let edited = KernelHashes::new(
        &kernel_bytes,
        b"070701 an initramfs",
        "console=ttyS0 quiet panic=-1 rdinit=/inix",
    );
    assert_ne!(
        ours(&ovmf, &CASES[0], Some(&edited)),
        ours(&ovmf, &CASES[0], Some(&hashes))
    );
}

#[test]
fn kernel_hashes_on_firmware_without_the_section_are_refused_by_both() {
    let dir = tempfile::tempdir().unwrap();
    let (kernel, initrd) = (dir.path().join("vmlinuz"), dir.path().join("initrd"));
    std::fs::write(&kernel, b"kernel").unwrap();
    std::fs::write(&initrd, b"initrd").unwrap();
    let ovmf = Ovmf::parse(debian_ovmf()).unwrap();
    let hashes = KernelHashes::new(b"kernel", b"initrd", CMDLINE);
    let e = ours(&ovmf, &CASES[0], Some(&hashes)).unwrap_err();
    assert_eq!(e, LaunchError::NoKernelHashesSection);
    assert!(e.to_string().contains("AmdSev"), "{e}");
    let theirs = theirs(Path::new(DEBIAN_OVMF), &CASES[0], Some((&kernel, &initrd))).unwrap_err();
    assert!(theirs.contains("SNP_KERNEL_HASHES"), "{theirs}");
}
