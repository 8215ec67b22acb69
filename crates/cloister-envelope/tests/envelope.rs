use cloister_envelope::{CHUNK_SIZE, EnvelopeError, data_key, decrypt, encrypt, read_header};

fn seal(plain: &[u8], key: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::new();
    encrypt(
        key,
        "projects/p/locations/global/keyRings/r/cryptoKeys/k",
        b"wrapped",
        plain,
        &mut out,
    )
    .unwrap();
    out
}

fn unseal(file: &[u8], key: &[u8; 32]) -> Result<Vec<u8>, EnvelopeError> {
    let mut input = file;
    let (header, bytes) = read_header(&mut input)?;
    let mut out = Vec::new();
    decrypt(key, &header, &bytes, input, &mut out)?;
    Ok(out)
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 253) as u8).collect()
}

/// Offsets of each chunk's length field in a sealed file.
fn chunk_offsets(file: &[u8]) -> Vec<usize> {
    let header_len = u32::from_be_bytes(file[20..24].try_into().unwrap()) as usize;
    let mut pos = 24 + header_len;
    let mut out = Vec::new();
    while pos < file.len() {
        out.push(pos);
        pos += 4 + u32::from_be_bytes(file[pos..pos + 4].try_into().unwrap()) as usize;
    }
    out
}

#[test]
fn files_of_every_shape_round_trip() {
    let key = data_key();
    for n in [
        0,
        1,
        1000,
        CHUNK_SIZE - 1,
        CHUNK_SIZE,
        CHUNK_SIZE + 1,
        3 * CHUNK_SIZE + 5,
    ] {
        let plain = data(n);
        let file = seal(&plain, &key);
        assert_eq!(unseal(&file, &key).unwrap(), plain, "{n} bytes");
        let (header, _) = read_header(&mut file.as_slice()).unwrap();
        assert_eq!(
            header.kms_key,
            "projects/p/locations/global/keyRings/r/cryptoKeys/k"
        );
    }
}

#[test]
fn a_flipped_bit_anywhere_in_the_body_is_refused() {
    let key = data_key();
    let file = seal(&data(2 * CHUNK_SIZE + 10), &key);
    let header_end = chunk_offsets(&file)[0];
    for pos in [
        header_end + 4,
        header_end + 100,
        file.len() / 2,
        file.len() - 1,
    ] {
        let mut bad = file.clone();
        bad[pos] ^= 1;
        assert!(
            matches!(unseal(&bad, &key), Err(EnvelopeError::Tampered { .. })),
            "byte {pos}"
        );
    }
    // The header is every chunk's associated data: changing it is refused too.
    let mut bad = file.clone();
    let at = file.windows(4).position(|w| w == b"keyR").unwrap();
    bad[at] = b'K';
    assert!(matches!(
        unseal(&bad, &key),
        Err(EnvelopeError::Tampered { chunk: 0 })
    ));
}

#[test]
fn truncation_reordering_splicing_and_wrong_keys_are_refused() {
    let key = data_key();
    let file = seal(&data(3 * CHUNK_SIZE + 10), &key);
    let chunks = chunk_offsets(&file);
    assert_eq!(chunks.len(), 4);
    // Dropping the last chunk, or cutting inside one.
    assert!(matches!(
        unseal(&file[..chunks[3]], &key),
        Err(EnvelopeError::Tampered { chunk: 3 })
    ));
    assert!(matches!(
        unseal(&file[..chunks[2] + 100], &key),
        Err(EnvelopeError::Tampered { .. })
    ));
    // Swapping chunks 1 and 2.
    let mut swapped = file[..chunks[1]].to_vec();
    swapped.extend_from_slice(&file[chunks[2]..chunks[3]]);
    swapped.extend_from_slice(&file[chunks[1]..chunks[2]]);
    swapped.extend_from_slice(&file[chunks[3]..]);
    assert!(matches!(
        unseal(&swapped, &key),
        Err(EnvelopeError::Tampered { chunk: 1 })
    ));
    // A chunk spliced in from another file under the same key.
    let other = seal(&data(3 * CHUNK_SIZE + 10), &key);
    let other_chunks = chunk_offsets(&other);
    let mut spliced = file[..chunks[1]].to_vec();
    spliced.extend_from_slice(&other[other_chunks[1]..other_chunks[2]]);
    spliced.extend_from_slice(&file[chunks[2]..]);
    assert!(matches!(
        unseal(&spliced, &key),
        Err(EnvelopeError::Tampered { chunk: 1 })
    ));
    // Bytes after the last chunk, another key, and not an envelope at all.
    let mut extra = file.clone();
    extra.push(0);
    assert!(matches!(
        unseal(&extra, &key),
        Err(EnvelopeError::Tampered { .. })
    ));
    assert!(matches!(
        unseal(&file, &data_key()),
        Err(EnvelopeError::Tampered { chunk: 0 })
    ));
    assert!(matches!(
        unseal(b"PK\x03\x04 a zip file", &key),
        Err(EnvelopeError::NotEnvelope)
    ));
}
