//! TLV: 1-byte type, 4-byte big-endian length, value.

use crate::EventLogError;

pub(crate) fn write(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value);
}

pub(crate) fn encode(kind: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + value.len());
    write(&mut out, kind, value);
    out
}

/// Reads one TLV at `*pos`, advancing past it.
pub(crate) fn read<'a>(
    bytes: &'a [u8],
    pos: &mut usize,
    what: &'static str,
) -> Result<(u8, &'a [u8]), EventLogError> {
    let start = *pos;
    let truncated = EventLogError::Truncated {
        offset: start,
        what,
    };
    let header = bytes.get(start..start + 5).ok_or(truncated.clone())?;
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let end = (start + 5).checked_add(len).ok_or(truncated.clone())?;
    let value = bytes.get(start + 5..end).ok_or(truncated)?;
    *pos = end;
    Ok((header[0], value))
}
