//! The SEV-SNP launch digest of a QEMU guest, computed offline: what the hardware will put in
//! the report's MEASUREMENT when QEMU launches this firmware with this many vCPUs (and, with
//! `kernel-hashes=on`, this kernel, initrd and command line).
//!
//! Written from AMD's SEV-SNP firmware ABI (SNP_LAUNCH_UPDATE: each page extends the digest
//! with SHA-384 of a PAGE_INFO structure), OVMF's footer table and SEV metadata
//! (`OvmfPkg/ResetVector`), the VMSA layout of AMD's APM vol. 2 (appendix B), and QEMU's
//! order of launch updates (`target/i386/sev.c`): the firmware's pages, then the metadata's
//! sections in their order, then one VMSA per vCPU. No crate computes this; `sev-snp-measure`
//! (Python) is the independent implementation `tests/launch_digest.rs` compares against.

use sha2::{Digest, Sha256, Sha384};

const PAGE: usize = 4096;
const FOUR_GIB: u64 = 1 << 32;

/// The footer table ends 32 bytes before the end of the image (the reset vector follows).
const FOOTER_TABLE_GUID: uuid::Uuid = uuid::uuid!("96b582de-1fb2-45f7-baea-a366c55a082d");
/// Where the APs start: the first dword of this entry is their reset EIP.
const SEV_ES_RESET_BLOCK_GUID: uuid::Uuid = uuid::uuid!("00f771de-1a7e-4fcb-890e-68c77e2fb44e");
/// Offset from the end of the image of the "ASEV" metadata.
const SEV_METADATA_GUID: uuid::Uuid = uuid::uuid!("dc886566-984a-4798-a75e-5585a7bf67cc");
/// Where QEMU writes the kernel hashes table (base, size).
const SEV_HASH_TABLE_RV_GUID: uuid::Uuid = uuid::uuid!("7255371f-3a3b-4b04-927b-1da6efa8d454");
/// QEMU's hashes table and its three entries (`target/i386/sev.c`).
const HASH_TABLE_HEADER_GUID: uuid::Uuid = uuid::uuid!("9438d606-4f22-4cc9-b479-a793d411fd21");
const CMDLINE_ENTRY_GUID: uuid::Uuid = uuid::uuid!("97d02dd8-bd20-4c94-aa78-e7714d36ab2a");
const INITRD_ENTRY_GUID: uuid::Uuid = uuid::uuid!("44baf731-3a2f-4bd7-9af1-41e29169781d");
const KERNEL_ENTRY_GUID: uuid::Uuid = uuid::uuid!("4de79437-abd2-427f-b835-d5b172d2045b");

/// The VMSA's page is measured at this "GPA": -1, page-aligned, bits above 51 cleared.
const VMSA_GPA: u64 = 0xFFFF_FFFF_F000;
/// The bootstrap processor starts at the reset vector.
const BSP_EIP: u32 = 0xFFFF_FFF0;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LaunchError {
    #[error("the firmware {0}")]
    Firmware(String),
    #[error(
        "kernel hashes were asked for, but the firmware has no SNP kernel-hashes section: use an AmdSev build of OVMF (OvmfPkg/AmdSev/AmdSevX64.dsc), as QEMU's kernel-hashes=on needs"
    )]
    NoKernelHashesSection,
    #[error("a guest has 1 to {max} vCPUs, not {0}", max = MAX_VCPUS)]
    Vcpus(u32),
}

/// KVM's limit; also keeps the computation bounded.
pub const MAX_VCPUS: u32 = 4096;

fn bad(m: impl Into<String>) -> LaunchError {
    LaunchError::Firmware(m.into())
}

/// A section of OVMF's SEV metadata: guest memory QEMU must add to the launch, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    /// Memory the firmware's SEC phase uses: launched as zero pages.
    SecMemory,
    /// The SNP secrets page (the PSP fills it).
    Secrets,
    /// The CPUID page (the PSP checks QEMU's values).
    Cpuid,
    /// An SVSM's calling area: zero pages.
    SvsmCallingArea,
    /// The kernel hashes page (AmdSev builds only).
    KernelHashes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    pub gpa: u32,
    pub size: u32,
    pub kind: SectionKind,
}

/// An OVMF image and what its footer table and SEV metadata say.
#[derive(Debug, Clone)]
pub struct Ovmf {
    bytes: Vec<u8>,
    /// Where QEMU maps it: ending at 4 GiB.
    gpa: u64,
    ap_reset_eip: Option<u32>,
    hashes_table: Option<(u32, u32)>,
    sections: Vec<Section>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

impl Ovmf {
    pub fn parse(bytes: Vec<u8>) -> Result<Ovmf, LaunchError> {
        let len = bytes.len();
        if len == 0 || !len.is_multiple_of(PAGE) || len as u64 > FOUR_GIB {
            return Err(bad(format!(
                "image is {len} bytes: not a whole number of pages below 4 GiB"
            )));
        }
        // The footer table, read backwards from its last entry: each entry is its data, then
        // a u16 size (data + 18), then its GUID.
        let end = len - 32;
        let footer = end
            .checked_sub(18)
            .filter(|&at| bytes.get(at + 2..end) == Some(&FOOTER_TABLE_GUID.to_bytes_le()[..]))
            .ok_or_else(|| bad("has no OVMF footer table (not an OVMF image with SEV support)"))?;
        let table_len = u16_at(&bytes, footer).map_or(0, usize::from);
        let start = end
            .checked_sub(table_len)
            .filter(|_| table_len >= 18)
            .ok_or_else(|| bad("footer table's size is out of range"))?;
        let mut entries = Vec::new();
        let mut at = footer; // the end of the entries (the footer entry's own header)
        while at > start {
            let guid_at = at
                .checked_sub(16)
                .filter(|g| *g >= start + 2)
                .ok_or_else(|| bad("footer table entry is truncated"))?;
            let size = u16_at(&bytes, guid_at - 2).map_or(0, usize::from);
            let data_at = at
                .checked_sub(size)
                .filter(|d| size >= 18 && *d >= start)
                .ok_or_else(|| bad("footer table entry has a bad size"))?;
            let guid = uuid::Uuid::from_slice_le(&bytes[guid_at..at])
                .map_err(|_| bad("footer table entry has no GUID"))?;
            entries.push((guid, &bytes[data_at..guid_at - 2]));
            at = data_at;
        }
        let entry = |g: uuid::Uuid| entries.iter().find(|(guid, _)| *guid == g).map(|e| e.1);

        let ap_reset_eip = entry(SEV_ES_RESET_BLOCK_GUID).and_then(|d| u32_at(d, 0));
        let hashes_table = entry(SEV_HASH_TABLE_RV_GUID)
            .and_then(|d| Some((u32_at(d, 0)?, u32_at(d, 4)?)))
            .filter(|(base, _)| *base != 0);
        let metadata_from_end = entry(SEV_METADATA_GUID)
            .and_then(|d| u32_at(d, 0))
            .ok_or_else(|| {
                bad("has no SEV metadata (no SNP support): use an SNP-capable OVMF such as Debian's /usr/share/ovmf/OVMF.fd or an AmdSev build")
            })?;
        let meta = len
            .checked_sub(metadata_from_end as usize)
            .ok_or_else(|| bad("SEV metadata offset is outside the image"))?;
        if bytes.get(meta..meta + 4) != Some(b"ASEV") || u32_at(&bytes, meta + 8) != Some(1) {
            return Err(bad("SEV metadata is not version 1 \"ASEV\""));
        }
        let count = u32_at(&bytes, meta + 12).map_or(0, |n| n as usize);
        let mut sections = Vec::new();
        for i in 0..count {
            let at = meta + 16 + 12 * i;
            let (Some(gpa), Some(size), Some(kind)) = (
                u32_at(&bytes, at),
                u32_at(&bytes, at + 4),
                u32_at(&bytes, at + 8),
            ) else {
                return Err(bad("SEV metadata is truncated"));
            };
            let kind = match kind {
                1 => SectionKind::SecMemory,
                2 => SectionKind::Secrets,
                3 => SectionKind::Cpuid,
                4 => SectionKind::SvsmCallingArea,
                0x10 => SectionKind::KernelHashes,
                other => {
                    return Err(bad(format!(
                        "SEV metadata has a section of unknown type {other}"
                    )));
                }
            };
            if size == 0 || !size.is_multiple_of(PAGE as u32) || !gpa.is_multiple_of(PAGE as u32) {
                return Err(bad(format!(
                    "SEV metadata section at {gpa:#x} is not page-aligned"
                )));
            }
            // The hashes section is built in memory: QEMU's is one page.
            if kind == SectionKind::KernelHashes && size > 1 << 20 {
                return Err(bad(format!(
                    "kernel-hashes section of {size} bytes is over 1 MiB"
                )));
            }
            sections.push(Section { gpa, size, kind });
        }
        Ok(Ovmf {
            gpa: FOUR_GIB - len as u64,
            bytes,
            ap_reset_eip,
            hashes_table,
            sections,
        })
    }

    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// Whether QEMU's `kernel-hashes=on` can be used with this firmware.
    pub fn supports_kernel_hashes(&self) -> bool {
        self.hashes_table.is_some()
            && self
                .sections
                .iter()
                .any(|s| s.kind == SectionKind::KernelHashes)
    }
}

/// The three SHA-256 digests QEMU puts in the hashes table for `kernel-hashes=on`: of the
/// kernel file as given to `-kernel`, the initrd file (or nothing), and the command line
/// with its terminating NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelHashes {
    pub kernel: [u8; 32],
    pub initrd: [u8; 32],
    pub cmdline: [u8; 32],
}

impl KernelHashes {
    pub fn new(kernel: &[u8], initrd: &[u8], cmdline: &str) -> Self {
        let mut c = cmdline.as_bytes().to_vec();
        c.push(0);
        KernelHashes {
            kernel: Sha256::digest(kernel).into(),
            initrd: Sha256::digest(initrd).into(),
            cmdline: Sha256::digest(&c).into(),
        }
    }

    /// The table as QEMU lays it out: a header (GUID, u16 length), three entries (GUID, u16
    /// length, SHA-256) for the command line, initrd and kernel, padded to 16 bytes.
    fn table(&self) -> Vec<u8> {
        const ENTRY: u16 = 16 + 2 + 32;
        const TABLE: u16 = 16 + 2 + 3 * ENTRY;
        let mut t = Vec::with_capacity(176);
        t.extend(HASH_TABLE_HEADER_GUID.to_bytes_le());
        t.extend(TABLE.to_le_bytes());
        for (guid, hash) in [
            (CMDLINE_ENTRY_GUID, &self.cmdline),
            (INITRD_ENTRY_GUID, &self.initrd),
            (KERNEL_ENTRY_GUID, &self.kernel),
        ] {
            t.extend(guid.to_bytes_le());
            t.extend(ENTRY.to_le_bytes());
            t.extend(hash);
        }
        t.resize(t.len().next_multiple_of(16), 0);
        t
    }
}

/// The CPUID Fn0000_0001 EAX signature of a vCPU model (AMD's CPUID specification): what the
/// VMSA's RDX holds at reset.
pub const fn cpu_signature(family: u32, model: u32, stepping: u32) -> u32 {
    let (family_low, family_high) = if family > 0xf {
        (0xf, (family - 0xf) & 0xff)
    } else {
        (family, 0)
    };
    (family_high << 20)
        | (((model >> 4) & 0xf) << 16)
        | (family_low << 8)
        | ((model & 0xf) << 4)
        | (stepping & 0xf)
}

/// How QEMU launches the guest, as far as the digest sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    pub vcpus: u32,
    /// The vCPU model's CPUID signature (`cpu_signature`): QEMU's `-cpu` decides it.
    pub vcpu_signature: u32,
    /// The VMSA's SEV_FEATURES: QEMU's default for SNP is 1 (SNPActive).
    pub sev_features: u64,
}

/// The SHA-384 chain of SNP_LAUNCH_UPDATE: each page replaces the digest with SHA-384 of
/// PAGE_INFO (the digest so far, the page's contents digest, the structure's length, page
/// type, IMI flag, VMPL permissions, GPA).
struct Digest384([u8; 48]);

#[derive(Clone, Copy)]
enum PageType {
    Normal = 1,
    Vmsa = 2,
    Zero = 3,
    Secrets = 5,
    Cpuid = 6,
}

impl Digest384 {
    fn update(&mut self, kind: PageType, gpa: u64, contents: &[u8; 48]) {
        let mut info = [0u8; 0x70];
        info[..48].copy_from_slice(&self.0);
        info[48..96].copy_from_slice(contents);
        info[96..98].copy_from_slice(&0x70u16.to_le_bytes());
        info[98] = kind as u8;
        // IMI page 0, VMPL 3/2/1 permissions 0, reserved 0.
        info[104..112].copy_from_slice(&gpa.to_le_bytes());
        self.0 = Sha384::digest(info).into();
    }

    fn data(&mut self, gpa: u64, bytes: &[u8]) {
        for (i, page) in bytes.chunks(PAGE).enumerate() {
            self.update(
                PageType::Normal,
                gpa + (i * PAGE) as u64,
                &Sha384::digest(page).into(),
            );
        }
    }

    fn empty(&mut self, kind: PageType, gpa: u32, size: u32) {
        for at in (u64::from(gpa)..u64::from(gpa) + u64::from(size)).step_by(PAGE) {
            self.update(kind, at, &[0; 48]);
        }
    }
}

/// A vCPU's VMSA at launch, as KVM fills it from QEMU's reset state (APM vol. 2, "processor
/// initialization state"; offsets from its VMSA layout table): real mode, CS based so that
/// `eip` is its first instruction.
fn vmsa(eip: u32, launch: &Launch) -> [u8; PAGE] {
    let mut v = [0u8; PAGE];
    let mut put = |at: usize, bytes: &[u8]| v[at..at + bytes.len()].copy_from_slice(bytes);
    // Segment registers: selector u16, attributes u16, limit u32, base u64.
    let seg = |put: &mut dyn FnMut(usize, &[u8]), at: usize, sel: u16, attr: u16, base: u64| {
        put(at, &sel.to_le_bytes());
        put(at + 2, &attr.to_le_bytes());
        put(at + 4, &0xffffu32.to_le_bytes());
        put(at + 8, &base.to_le_bytes());
    };
    for at in [0x00, 0x20, 0x30, 0x40, 0x50] {
        seg(&mut put, at, 0, 0x93, 0); // es, ss, ds, fs, gs
    }
    seg(&mut put, 0x10, 0xf000, 0x9b, u64::from(eip & 0xffff_0000)); // cs
    seg(&mut put, 0x60, 0, 0, 0); // gdtr
    seg(&mut put, 0x70, 0, 0x82, 0); // ldtr
    seg(&mut put, 0x80, 0, 0, 0); // idtr
    seg(&mut put, 0x90, 0, 0x8b, 0); // tr
    put(0xd0, &0x1000u64.to_le_bytes()); // EFER: KVM sets SVME
    put(0x148, &0x40u64.to_le_bytes()); // CR4: KVM sets MCE
    put(0x158, &0x10u64.to_le_bytes()); // CR0: ET
    put(0x160, &0x400u64.to_le_bytes()); // DR7
    put(0x168, &0xffff_0ff0u64.to_le_bytes()); // DR6
    put(0x170, &0x2u64.to_le_bytes()); // RFLAGS
    put(0x178, &u64::from(eip & 0xffff).to_le_bytes()); // RIP
    put(0x268, &0x0007_0406_0007_0406u64.to_le_bytes()); // G_PAT: the PAT MSR's reset value
    put(0x310, &u64::from(launch.vcpu_signature).to_le_bytes()); // RDX: the CPUID signature
    put(0x3b0, &launch.sev_features.to_le_bytes()); // SEV_FEATURES
    put(0x3e8, &0x1u64.to_le_bytes()); // XCR0: x87
    put(0x408, &0x1f80u32.to_le_bytes()); // MXCSR
    put(0x410, &0x37fu16.to_le_bytes()); // x87 FCW
    v
}

/// The launch digest (the report's MEASUREMENT) of `ovmf` launched as `launch` says, with
/// `kernel` when QEMU runs with `kernel-hashes=on` (None: without it, the hashes section, if
/// any, is launched as zero pages).
pub fn launch_digest(
    ovmf: &Ovmf,
    launch: &Launch,
    kernel: Option<&KernelHashes>,
) -> Result<[u8; 48], LaunchError> {
    if !(1..=MAX_VCPUS).contains(&launch.vcpus) {
        return Err(LaunchError::Vcpus(launch.vcpus));
    }
    let mut ld = Digest384([0; 48]);
    ld.data(ovmf.gpa, &ovmf.bytes);
    for s in &ovmf.sections {
        match s.kind {
            SectionKind::SecMemory | SectionKind::SvsmCallingArea => {
                ld.empty(PageType::Zero, s.gpa, s.size)
            }
            SectionKind::Secrets => ld.empty(PageType::Secrets, s.gpa, s.size),
            SectionKind::Cpuid => ld.empty(PageType::Cpuid, s.gpa, s.size),
            SectionKind::KernelHashes => match kernel {
                None => ld.empty(PageType::Zero, s.gpa, s.size),
                Some(hashes) => {
                    // QEMU writes the table at the footer's hashes-table base, inside this
                    // section, and launches the section's pages as data.
                    let (base, _) = ovmf
                        .hashes_table
                        .ok_or(LaunchError::NoKernelHashesSection)?;
                    let table = hashes.table();
                    let offset = base
                        .checked_sub(s.gpa)
                        .map(|o| o as usize)
                        .filter(|o| o + table.len() <= s.size as usize)
                        .ok_or_else(|| {
                            bad(format!(
                                "hashes table at {base:#x} is not inside its section at {:#x}",
                                s.gpa
                            ))
                        })?;
                    let mut pages = vec![0u8; s.size as usize];
                    pages[offset..offset + table.len()].copy_from_slice(&table);
                    ld.data(u64::from(s.gpa), &pages);
                }
            },
        }
    }
    if kernel.is_some() && !ovmf.supports_kernel_hashes() {
        return Err(LaunchError::NoKernelHashesSection);
    }
    let bsp = vmsa(BSP_EIP, launch);
    ld.update(PageType::Vmsa, VMSA_GPA, &Sha384::digest(bsp).into());
    if launch.vcpus > 1 {
        let eip = ovmf
            .ap_reset_eip
            .ok_or_else(|| bad("has no SEV-ES reset block: it cannot start more than one vCPU"))?;
        let ap: [u8; 48] = Sha384::digest(vmsa(eip, launch)).into();
        for _ in 1..launch.vcpus {
            ld.update(PageType::Vmsa, VMSA_GPA, &ap);
        }
    }
    Ok(ld.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_signatures_of_qemus_epyc_models() {
        // EPYC (family 23 model 1 stepping 2), EPYC-Milan, EPYC-Genoa, as CPUID reports them.
        assert_eq!(cpu_signature(23, 1, 2), 0x0080_0f12);
        assert_eq!(cpu_signature(25, 1, 1), 0x00a0_0f11);
        assert_eq!(cpu_signature(25, 17, 0), 0x00a1_0f10);
    }

    #[test]
    fn the_hashes_table_is_qemus_layout() {
        let t = KernelHashes::new(b"k", b"", "").table();
        assert_eq!(t.len(), 176);
        assert_eq!(u16_at(&t, 16), Some(168));
        assert_eq!(u16_at(&t, 18 + 16), Some(50));
        // The command line is hashed with its NUL; an absent initrd is the empty string's.
        assert_eq!(&t[18 + 18..18 + 50], &Sha256::digest([0u8])[..]);
        assert_eq!(&t[68 + 18..68 + 50], &Sha256::digest(b"")[..]);
        assert_eq!(&t[118 + 18..118 + 50], &Sha256::digest(b"k")[..]);
    }

    #[test]
    fn images_that_are_not_snp_ovmf_are_refused() {
        let cases: [(Vec<u8>, &str); 3] = [
            (vec![], "not a whole number of pages"),
            (vec![0; 100], "not a whole number of pages"),
            (vec![0; 2 * PAGE], "no OVMF footer table"),
        ];
        for (bytes, words) in cases {
            let e = Ovmf::parse(bytes).unwrap_err().to_string();
            assert!(e.contains(words), "{e}");
        }
    }

    #[test]
    fn vcpu_counts_out_of_range_are_refused() {
        // The smallest image with a footer table and one metadata section.
        let mut b = vec![0u8; PAGE];
        let end = PAGE - 32;
        let meta = 0x100;
        b[meta..meta + 4].copy_from_slice(b"ASEV");
        b[meta + 8] = 1;
        b[meta + 12] = 1;
        b[meta + 16..meta + 28].copy_from_slice(&[0, 0, 0x80, 0, 0, 0x10, 0, 0, 1, 0, 0, 0]);
        // Entries: metadata (4 + 18 bytes), then the footer (18 bytes, size covers both).
        let e = end - 18 - 22;
        b[e..e + 4].copy_from_slice(&((PAGE - meta) as u32).to_le_bytes());
        b[e + 4..e + 6].copy_from_slice(&22u16.to_le_bytes());
        b[e + 6..e + 22].copy_from_slice(&SEV_METADATA_GUID.to_bytes_le());
        b[end - 18..end - 16].copy_from_slice(&(18u16 + 22).to_le_bytes());
        b[end - 16..end].copy_from_slice(&FOOTER_TABLE_GUID.to_bytes_le());
        let ovmf = Ovmf::parse(b).unwrap();
        assert_eq!(ovmf.sections().len(), 1);
        assert!(!ovmf.supports_kernel_hashes());
        let launch = |vcpus| Launch {
            vcpus,
            vcpu_signature: 0,
            sev_features: 1,
        };
        assert_eq!(
            launch_digest(&ovmf, &launch(0), None),
            Err(LaunchError::Vcpus(0))
        );
        assert!(launch_digest(&ovmf, &launch(1), None).is_ok());
        // No reset block: one vCPU only.
        assert!(
            launch_digest(&ovmf, &launch(2), None)
                .unwrap_err()
                .to_string()
                .contains("reset block")
        );
        let hashes = KernelHashes::new(b"k", b"i", "c");
        assert_eq!(
            launch_digest(&ovmf, &launch(1), Some(&hashes)),
            Err(LaunchError::NoKernelHashesSection)
        );
    }
}
