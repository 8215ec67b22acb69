//! The certificate table an SNP extended guest request returns beside the report (configfs-tsm
//! `auxblob`, `/dev/sev-guest` `certs_data`): entries of a 16-byte GUID, a little-endian u32
//! offset and u32 length (from the start of the table), ending with an all-zero entry. The host
//! fills it with the VCEK (or VLEK) and, optionally, the ASK and ARK.
//!
//! Hand-written: the format is three fields, and the crates that parse it (`sev`) bring the
//! whole guest/host ioctl stack with them.

use crate::SnpError;

/// The GUID of the VCEK entry, 63da758d-e664-4564-adc5-f4b93be8accd, in its table encoding
/// (the first three fields little-endian, as UEFI writes GUIDs).
pub const VCEK_GUID: [u8; 16] = guid(
    0x63da758d,
    0xe664,
    0x4564,
    [0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd],
);
/// The GUID of the VLEK entry, a8074bc2-a25a-483e-aae6-39c045a0b8a1.
pub const VLEK_GUID: [u8; 16] = guid(
    0xa8074bc2,
    0xa25a,
    0x483e,
    [0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8, 0xa1],
);

const fn guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

const ENTRY: usize = 24;

/// One entry: the certificate's GUID and its bytes.
pub type Entry<'a> = ([u8; 16], &'a [u8]);

/// The table's entries: (GUID, certificate bytes).
pub fn entries(table: &[u8]) -> Result<Vec<Entry<'_>>, SnpError> {
    let bad = |why: String| SnpError::Malformed(format!("the certificate table {why}"));
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let Some(entry) = table.get(at..at + ENTRY) else {
            return Err(bad("ends before its terminating all-zero entry".into()));
        };
        if entry.iter().all(|b| *b == 0) {
            return Ok(out);
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&entry[..16]);
        let word = |i: usize| {
            u32::from_le_bytes([entry[i], entry[i + 1], entry[i + 2], entry[i + 3]]) as usize
        };
        let (offset, length) = (word(16), word(20));
        let cert = offset
            .checked_add(length)
            .and_then(|end| table.get(offset..end))
            .ok_or_else(|| {
                bad(format!(
                    "entry {} points at bytes {offset}..+{length}, past its end ({} bytes)",
                    out.len(),
                    table.len()
                ))
            })?;
        out.push((id, cert));
        at += ENTRY;
    }
}

/// The certificate that signed the report: the VLEK if the host provisioned one, else the
/// VCEK. A table with neither is an error that says what the host must do.
pub fn signing_certificate(table: &[u8]) -> Result<Vec<u8>, SnpError> {
    let entries = entries(table)?;
    for wanted in [VLEK_GUID, VCEK_GUID] {
        if let Some((_, cert)) = entries.iter().find(|(id, _)| *id == wanted) {
            return Ok(cert.to_vec());
        }
    }
    Err(SnpError::Malformed(
        "the certificate table holds no VCEK or VLEK: the host must provide them (for example `snphost import` of the VCEK), or the relying party must cache the VCEK".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[Entry]) -> Vec<u8> {
        let header = (entries.len() + 1) * ENTRY;
        let mut head = Vec::new();
        let mut body = Vec::new();
        for (id, cert) in entries {
            head.extend_from_slice(id);
            head.extend_from_slice(&((header + body.len()) as u32).to_le_bytes());
            head.extend_from_slice(&(cert.len() as u32).to_le_bytes());
            body.extend_from_slice(cert);
        }
        head.extend_from_slice(&[0; ENTRY]);
        head.extend(body);
        head
    }

    #[test]
    fn the_vcek_is_found_among_the_hosts_certificates() {
        let ask = [0x11u8; 16];
        let t = table(&[(ask, b"ask-der"), (VCEK_GUID, b"vcek-der")]);
        assert_eq!(signing_certificate(&t).unwrap(), b"vcek-der");
        // The table encoding of the GUID's first field is little-endian.
        assert_eq!(&VCEK_GUID[..4], &[0x8d, 0x75, 0xda, 0x63]);
        let t = table(&[(VCEK_GUID, b"vcek-der"), (VLEK_GUID, b"vlek-der")]);
        assert_eq!(signing_certificate(&t).unwrap(), b"vlek-der");
    }

    #[test]
    fn truncated_tables_and_missing_certificates_are_errors() {
        let t = table(&[(VCEK_GUID, b"vcek-der")]);
        for cut in [0, 10, ENTRY, t.len() - 3] {
            assert!(entries(&t[..cut]).is_err(), "cut at {cut}");
        }
        let mut far = t.clone();
        far[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(entries(&far).is_err());
        let err = signing_certificate(&table(&[([7; 16], b"x")])).unwrap_err();
        assert!(err.to_string().contains("no VCEK or VLEK"), "{err}");
    }
}
