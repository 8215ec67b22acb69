//! The guest image the VM driver boots: Debian's kernel (read from /boot, installed by
//! `scripts/install-deps.sh`) and an initramfs holding this binary as `/init` (PID 1 runs
//! `init.rs`, then the launcher), runc, their shared libraries, the TPM TCTI the launcher
//! loads at run time, and the kernel modules the guest needs that Debian builds as modules
//! (e1000 for slirp's NIC, qemu_fw_cfg for the platform's launch settings, button and evdev
//! for the power button the platform's stop presses).
//!
//! The initramfs is reproducible (sorted entries, mtime 0, owner root, fixed inode numbers),
//! so its SHA-256, which the EFI stub measures into PCR 9, depends on its inputs only; it is
//! cached under `DATA_DIR/guest/SHA256-OF-INPUTS/`. The expected PCR 4 and PCR 9 values are
//! computed here offline from the files (`boot_pcrs`), and the VM test checks them against a
//! real boot. With an AmdSev OVMF, the SEV-SNP launch digest of an SNP guest booting the image
//! is computed too (`cloister_snp::launch`; never checked against SNP hardware here).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use sha2::{Digest, Sha256};

/// The kernel command line. OVMF appends ` initrd=initrd` when it passes QEMU's `-initrd`,
/// and the EFI stub measures the result (UTF-16, NUL-terminated) into PCR 9.
const CMDLINE: &str = "console=ttyS0 quiet panic=-1 rdinit=/init";
/// The debug image's: the kernel logs to the console.
const DEBUG_CMDLINE: &str = "console=ttyS0 panic=-1 rdinit=/init cloister.debug=1";
/// Debian's kernel modules the guest loads, in load order (none has dependencies): the
/// network card, fw_cfg (the launch settings), and the ACPI power button with the input
/// events through which PID 1 learns it was pressed (the platform's stop).
const MODULES: &[&str] = &[
    "kernel/drivers/net/ethernet/intel/e1000/e1000.ko",
    "kernel/drivers/firmware/qemu_fw_cfg.ko",
    "kernel/drivers/input/evdev.ko",
    "kernel/drivers/acpi/button.ko",
];
/// Loaded at run time by tss-esapi's TCTI loader (dlopen), so no ELF dependency names it.
const TCTI: &str = "/usr/lib/x86_64-linux-gnu/libtss2-tcti-device.so.0";
/// The CA bundle the launcher's HTTP client loads (Debian's ca-certificates).
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Where distributions install OVMF's AmdSev build (the one with kernel hashes, which SNP's
/// `kernel-hashes=on` needs): Ubuntu's `ovmf`, Fedora's `edk2-ovmf`. Debian 12's `ovmf` has
/// none: its OVMF.fd has SNP metadata but no hashes table, so it would leave the kernel,
/// initrd and command line out of the launch digest.
const AMDSEV_OVMF: &[&str] = &[
    "/usr/share/ovmf/OVMF.amdsev.fd",
    "/usr/share/edk2/ovmf/OVMF.amdsev.fd",
];

/// A built image and its measurements.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GuestImage {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
    pub debug: bool,
    /// Expected PCR 4 and PCR 9 (SHA-256 bank) after an OVMF boot, hex.
    pub pcr4: String,
    pub pcr9: String,
    /// What reference values name: `cloister_tpm::boot_measurement`.
    pub measurement: String,
    /// The SEV-SNP launch of the image, where an AmdSev firmware was found or given.
    pub snp: Option<SnpImage>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SnpImage {
    pub firmware: PathBuf,
    /// The launch digest (hex): `cloister_services::compute::vm::snp_launch_measurement`.
    pub measurement: String,
}

/// The AmdSev firmware SNP guests boot: the one given, or the first a distribution installed.
pub fn snp_firmware(given: Option<PathBuf>) -> Option<PathBuf> {
    given.or_else(|| AMDSEV_OVMF.iter().map(PathBuf::from).find(|p| p.exists()))
}

/// The SNP launch digest of the image under `firmware`.
fn snp_image(firmware: &Path, kernel: &[u8], initrd: &Path, cmdline: &str) -> Result<SnpImage> {
    let bytes =
        std::fs::read(firmware).with_context(|| format!("reading {}", firmware.display()))?;
    let ovmf = cloister_snp::launch::Ovmf::parse(bytes)
        .with_context(|| format!("{} as SEV-SNP firmware", firmware.display()))?;
    if !ovmf.supports_kernel_hashes() {
        bail!(
            "{} cannot measure the kernel for SEV-SNP (no kernel-hashes section): give an AmdSev build of OVMF (OvmfPkg/AmdSev/AmdSevX64.dsc)",
            firmware.display()
        );
    }
    let initrd = std::fs::read(initrd)?;
    let measurement =
        cloister_services::compute::vm::snp_launch_measurement(&ovmf, kernel, &initrd, cmdline)?;
    Ok(SnpImage {
        firmware: firmware.to_owned(),
        measurement,
    })
}

/// The newest Debian kernel in /boot.
fn find_kernel() -> Result<(PathBuf, String)> {
    let mut found: Vec<(PathBuf, String)> = std::fs::read_dir("/boot")
        .context("reading /boot")?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let release = name.strip_prefix("vmlinuz-")?.to_owned();
            Some((e.path(), release))
        })
        .collect();
    found.sort_by(|a, b| a.1.cmp(&b.1));
    found.pop().context(
        "no kernel in /boot: install Debian's (apt-get install linux-image-amd64; scripts/install-deps.sh does)",
    )
}

/// `objcopy --strip-debug`: the debug build's DWARF would make the initramfs five times
/// larger, and every boot hashes and unpacks all of it.
fn stripped(binary: &Path, dir: &Path) -> Result<PathBuf> {
    let out = dir.join("cloister.stripped");
    let status = std::process::Command::new("objcopy")
        .arg("--strip-debug")
        .arg(binary)
        .arg(&out)
        .status()
        .context("running objcopy (binutils)")?;
    if !status.success() {
        bail!("objcopy --strip-debug {} failed", binary.display());
    }
    Ok(out)
}

/// Image path → host file: the binary, runc, the TCTI, their libraries, the modules.
fn contents(binary: &Path, release: &str) -> Result<BTreeMap<String, PathBuf>> {
    let runc = ["/usr/sbin/runc", "/usr/bin/runc", "/sbin/runc"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .context("runc is not installed (apt-get install runc)")?;
    let mut files = BTreeMap::new();
    files.insert("/init".to_owned(), binary.to_owned());
    files.insert("/usr/sbin/runc".to_owned(), runc.clone());
    files.insert(TCTI.to_owned(), PathBuf::from(TCTI));
    files.insert(CA_BUNDLE.to_owned(), PathBuf::from(CA_BUNDLE));
    for exe in [binary, runc.as_path(), Path::new(TCTI)] {
        files.extend(crate::cli::package::elf_closure(exe)?);
    }
    let modules = Path::new("/lib/modules").join(release);
    for m in MODULES {
        files.insert(format!("/lib/modules/{m}"), modules.join(m));
    }
    Ok(files)
}

/// Writes the newc archive: every parent directory, then every file, sorted by path, with
/// nothing of the host's (times, owners, inode numbers) in it.
fn write_cpio(files: &BTreeMap<String, PathBuf>, out: &Path) -> Result<()> {
    let mut dirs = std::collections::BTreeSet::new();
    for path in files.keys() {
        let mut p = Path::new(path).parent();
        while let Some(d) = p.filter(|d| *d != Path::new("/")) {
            dirs.insert(d.to_string_lossy().trim_start_matches('/').to_owned());
            p = d.parent();
        }
    }
    for d in ["proc", "sys", "dev", "run", "tmp", "etc"] {
        dirs.insert(d.to_owned());
    }
    let mut entries: Vec<(String, Option<&PathBuf>)> =
        dirs.into_iter().map(|d| (d, None)).collect();
    entries.extend(
        files
            .iter()
            .map(|(p, f)| (p.trim_start_matches('/').to_owned(), Some(f))),
    );
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    for (ino, (name, file)) in entries.iter().enumerate() {
        let builder = cpio::newc::Builder::new(name)
            .ino(u32::try_from(ino + 1)?)
            .uid(0)
            .gid(0)
            .mtime(0)
            .nlink(1);
        let (mode, bytes) = match file {
            None => (0o040755, Vec::new()),
            Some(f) => {
                let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
                // Libraries too: the ELF interpreter must be executable.
                let data = name.ends_with(".ko") || name.ends_with(".crt");
                let mode = if data { 0o100644 } else { 0o100755 };
                (mode, bytes)
            }
        };
        let mut entry = builder.mode(mode).write(w, u32::try_from(bytes.len())?);
        std::io::Write::write_all(&mut entry, &bytes)?;
        w = entry.finish()?;
    }
    let w = cpio::newc::trailer(w)?;
    w.into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()
        .context("writing the initramfs")?;
    Ok(())
}

fn sha256_file(path: &Path) -> Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    std::io::copy(&mut f, &mut h)?;
    Ok(h.finalize().into())
}

/// Builds (or finds in the cache) the image for `binary` (this `cloister`), with its SNP
/// launch digest under `snp_firmware` when one is given.
pub fn build(
    data_dir: &Path,
    binary: &Path,
    debug: bool,
    snp_firmware: Option<&Path>,
) -> Result<GuestImage> {
    let (kernel, release) = find_kernel()?;
    let cache = data_dir.join("guest");
    std::fs::create_dir_all(&cache)?;
    let work = tempfile::tempdir_in(&cache)?;
    let binary = stripped(binary, work.path())?;
    let files = contents(&binary, &release)?;
    let cmdline = if debug { DEBUG_CMDLINE } else { CMDLINE };
    // The cache key: every input's path and digest, the command line and the kernel.
    let mut key = Sha256::new();
    key.update(cmdline.as_bytes());
    key.update(sha256_file(&kernel)?);
    for (path, file) in &files {
        key.update(path.as_bytes());
        key.update(sha256_file(file)?);
    }
    let dir = cache.join(hex::encode(key.finalize()));
    let initrd = dir.join("initrd.cpio");
    if !initrd.exists() {
        let tmp = work.path().join("initrd.cpio");
        write_cpio(&files, &tmp)?;
        std::fs::create_dir_all(&dir)?;
        std::fs::rename(&tmp, &initrd)?;
    }
    let kernel_bytes = std::fs::read(&kernel)?;
    let initrd_size =
        u32::try_from(std::fs::metadata(&initrd)?.len()).context("the initramfs is over 4 GiB")?;
    let memory = cloister_services::compute::vm::MEMORY_MIB << 20;
    let (pcr4, pcr9) = boot_pcrs(
        &kernel_bytes,
        cmdline,
        &sha256_file(&initrd)?,
        initrd_size,
        memory,
    )?;
    let snp = snp_firmware
        .map(|f| snp_image(f, &kernel_bytes, &initrd, cmdline))
        .transpose()?;
    Ok(GuestImage {
        snp,
        kernel,
        initrd,
        cmdline: cmdline.to_owned(),
        debug,
        measurement: cloister_tpm::boot_measurement(&pcr4, &pcr9),
        pcr4: hex::encode(pcr4),
        pcr9: hex::encode(pcr9),
    })
}

fn extend(pcr: &mut [u8; 32], digest: &[u8]) {
    *pcr = Sha256::new()
        .chain_update(*pcr)
        .chain_update(digest)
        .finalize()
        .into();
}

/// The Authenticode digest of a PE image, as UEFI firmware measures an application it loads
/// (goblin yields the ranges Authenticode covers: all but the checksum, the certificate
/// table's directory entry and the table itself).
pub fn authenticode_sha256(pe_bytes: &[u8]) -> Result<[u8; 32]> {
    let pe = goblin::pe::PE::parse(pe_bytes).context("the kernel is not a PE (EFI stub) image")?;
    let mut h = Sha256::new();
    for range in pe.authenticode_ranges() {
        h.update(range);
    }
    Ok(h.finalize().into())
}

/// The kernel as OVMF receives it from QEMU's `-kernel`: QEMU fills in the setup header
/// before handing it over through fw_cfg (x86_load_linux, QEMU 7.2: loader type, heap,
/// command line address, and the initrd's address and size), and the firmware measures that.
/// So PCR 4 depends on the initrd's size and the guest's memory below 4 GiB, which are fixed
/// per image (the VM driver gives every guest `MEMORY_MIB`, all below q35's 2 GiB split).
pub fn as_qemu_loads_it(kernel: &[u8], initrd_size: u32, memory_bytes: u32) -> Result<Vec<u8>> {
    let mut k = kernel.to_vec();
    let u16_at = |k: &[u8], o: usize| k.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let protocol = u16_at(&k, 0x206).context("the kernel has no setup header")?;
    if protocol < 0x20c || k.get(0x202..0x206) != Some(b"HdrS") {
        bail!(
            "the kernel's boot protocol {protocol:#x} is older than 2.12 (Linux 3.8): not supported"
        );
    }
    // QEMU's addresses for a protocol ≥ 2.02 kernel.
    let (real_addr, cmdline_addr) = (0x10000u32, 0x20000u32);
    // ACPI tables at the top of low memory (pc/q35 machines since QEMU 2.x).
    const ACPI_DATA_SIZE: u32 = 0x20000 + 0x8000;
    let xlf = u16_at(&k, 0x236).unwrap_or(0);
    let mut initrd_max = if xlf & 0x2 != 0 {
        u32::MAX
    } else {
        u32::from_le_bytes(k[0x22c..0x230].try_into()?)
    };
    let limit = memory_bytes
        .checked_sub(ACPI_DATA_SIZE + 1)
        .context("guest memory too small")?;
    initrd_max = initrd_max.min(limit);
    let initrd_addr = initrd_max
        .checked_sub(initrd_size)
        .context("the initrd does not fit the guest's memory")?
        & !4095;
    k[0x228..0x22c].copy_from_slice(&cmdline_addr.to_le_bytes());
    k[0x210] = 0xb0;
    k[0x211] |= 0x80;
    let heap_end = u16::try_from(cmdline_addr - real_addr - 0x200)?;
    k[0x224..0x226].copy_from_slice(&heap_end.to_le_bytes());
    k[0x218..0x21c].copy_from_slice(&initrd_addr.to_le_bytes());
    k[0x21c..0x220].copy_from_slice(&initrd_size.to_le_bytes());
    Ok(k)
}

/// PCR 4 and PCR 9 after OVMF boots `kernel` with `cmdline` and an initrd of that digest and
/// size in `memory_bytes` of RAM (QEMU's `-kernel/-initrd/-append/-m`). The event sequence,
/// as OVMF's and Linux's event logs show it: PCR 4 = the Authenticode digest of the kernel
/// QEMU handed over, then "Calling EFI Application from Boot Option", then the separator;
/// PCR 9 = the load options (the command line OVMF passes, with ` initrd=initrd`, UTF-16LE
/// with its NUL), then the initrd's SHA-256.
pub fn boot_pcrs(
    kernel: &[u8],
    cmdline: &str,
    initrd_sha256: &[u8],
    initrd_size: u32,
    memory_bytes: u32,
) -> Result<([u8; 32], [u8; 32])> {
    let mut pcr4 = [0u8; 32];
    extend(
        &mut pcr4,
        &authenticode_sha256(&as_qemu_loads_it(kernel, initrd_size, memory_bytes)?)?,
    );
    extend(
        &mut pcr4,
        &Sha256::digest(b"Calling EFI Application from Boot Option"),
    );
    extend(&mut pcr4, &Sha256::digest([0u8; 4]));
    let mut pcr9 = [0u8; 32];
    let options: Vec<u8> = format!("{cmdline} initrd=initrd\0")
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    extend(&mut pcr9, &Sha256::digest(&options));
    extend(&mut pcr9, initrd_sha256);
    Ok((pcr4, pcr9))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian's OVMF.fd boots SNP guests but leaves the kernel out of the launch digest: the
    /// image build refuses it rather than register a digest that any initrd would match.
    #[test]
    fn firmware_without_kernel_hashes_gets_no_snp_launch() {
        let ovmf = Path::new("/usr/share/ovmf/OVMF.fd");
        let dir = tempfile::tempdir().unwrap();
        let initrd = dir.path().join("initrd");
        std::fs::write(&initrd, b"initrd").unwrap();
        let e = snp_image(ovmf, b"kernel", &initrd, CMDLINE).unwrap_err();
        assert!(format!("{e:#}").contains("AmdSev"), "{e:#}");
        let e = snp_image(&dir.path().join("none.fd"), b"kernel", &initrd, CMDLINE).unwrap_err();
        assert!(format!("{e:#}").contains("none.fd"), "{e:#}");
    }

    /// Recorded from a real boot of Debian's 6.1.0-57 kernel under OVMF (see the VM test,
    /// which checks every build against its own boot): the computation reproduces it.
    #[test]
    fn pcr4_of_a_recorded_boot() {
        let kernel = Path::new("/boot/vmlinuz-6.1.0-57-amd64");
        let Ok(bytes) = std::fs::read(kernel) else {
            eprintln!("skipped: {} is not installed", kernel.display());
            return;
        };
        // The file's own Authenticode digest (as osslsigncode computes it) ...
        assert_eq!(
            hex::encode(authenticode_sha256(&bytes).unwrap()),
            "61e79ca0acd7e9f18984bea7b44650801ed54fd95a8786c16c583b86acf9d538"
        );
        // ... and the one OVMF measured: of the kernel as QEMU patched it.
        let loaded = as_qemu_loads_it(&bytes, 1_983_356, 512 << 20).unwrap();
        assert_eq!(
            hex::encode(authenticode_sha256(&loaded).unwrap()),
            "a47c8c1ba8d804160f4f1d27b15ceb5231ec6fe8670022f43212e6dc8c48e330"
        );
        let initrd =
            hex::decode("42519fec97493beb3730eb63be8c71dbbc61378cfbbd2718a5d7569277350138")
                .unwrap();
        let (pcr4, pcr9) = boot_pcrs(
            &bytes,
            "console=ttyS0 panic=-1",
            &initrd,
            1_983_356,
            512 << 20,
        )
        .unwrap();
        assert_eq!(
            hex::encode(pcr4),
            "95dd7eb6756ed46adcc23b40d475a2188179f4b4f1e5b35bdc5a3c0541857032"
        );
        assert_eq!(
            hex::encode(pcr9),
            "1eb9580ba1365d49bbc1a97da652eb0d05440f031244c7cffd29835ad337bc22"
        );
    }
}
