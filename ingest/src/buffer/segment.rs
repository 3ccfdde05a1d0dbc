//! The on-disk layout of one buffer segment, and the record codec.
//!
//! ```text
//!  segment file  <first offset, 20 digits>.seg
//!  ┌──────────────────────── header, 16 bytes ────────────────────────┐
//!  │ magic "PIPEWB" (6) │ version u16 LE (2) │ first offset u64 LE (8) │
//!  └──────────────────────────────────────────────────────────────────┘
//!  ┌──────────── record ─────────────────────────────────────────────┐
//!  │ len u32 LE │ crc32 u32 LE │ offset u64 LE │ payload (len bytes)  │  × n
//!  └─────────────────────────────────────────────────────────────────┘
//! ```
//!
//! `crc32` (IEEE, crc32fast) covers the offset and the payload. Offsets are
//! consecutive inside a segment and across segments. A record is valid only
//! when its whole frame is present, its CRC matches and its offset is the one
//! expected next; the first invalid record of the last segment marks a torn
//! tail, which recovery cuts off.

use std::io::{self, Read};

/// Magic bytes opening every segment.
pub const MAGIC: &[u8; 6] = b"PIPEWB";
/// The segment format version this code writes and reads.
pub const VERSION: u16 = 1;
/// Bytes in a segment header.
pub const HEADER_LEN: usize = 16;
/// Bytes in a record frame before the payload.
pub const FRAME_LEN: usize = 16;
/// The largest payload a record may hold.
pub const MAX_PAYLOAD: usize = 1 << 30;

/// File name of the segment whose first record has `first_offset`.
pub fn file_name(first_offset: u64) -> String {
    format!("{first_offset:020}.seg")
}

/// The first offset a segment file name stands for, if it is one.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 20).then(|| digits.parse().ok()).flatten()
}

/// Encodes a segment header.
pub fn encode_header(first_offset: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..6].copy_from_slice(MAGIC);
    h[6..8].copy_from_slice(&VERSION.to_le_bytes());
    h[8..].copy_from_slice(&first_offset.to_le_bytes());
    h
}

/// Why a header cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderError {
    Short,
    BadMagic,
    Version(u16),
}

/// Decodes a header, returning the first offset it records.
pub fn decode_header(h: &[u8]) -> Result<u64, HeaderError> {
    if h.len() < HEADER_LEN {
        return Err(HeaderError::Short);
    }
    if &h[..6] != MAGIC {
        return Err(HeaderError::BadMagic);
    }
    let version = u16::from_le_bytes([h[6], h[7]]);
    if version != VERSION {
        return Err(HeaderError::Version(version));
    }
    Ok(u64::from_le_bytes(h[8..16].try_into().expect("8 bytes")))
}

/// Appends one framed record to `out`.
pub fn encode_record(out: &mut Vec<u8>, offset: u64, payload: &[u8]) {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&offset.to_le_bytes());
    hasher.update(payload);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(payload);
}

/// What reading the next record found.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A valid record.
    Record { offset: u64, payload: Vec<u8> },
    /// A clean end: no byte after the last record.
    End,
    /// Bytes that are not a valid record (torn or corrupt), at `reason`.
    Invalid(&'static str),
}

/// Reads the next record from `r`, expecting `expected_offset`.
pub fn read_record(r: &mut impl Read, expected_offset: u64) -> io::Result<Next> {
    let mut frame = [0u8; FRAME_LEN];
    match read_full(r, &mut frame)? {
        0 => return Ok(Next::End),
        n if n < FRAME_LEN => return Ok(Next::Invalid("truncated record frame")),
        _ => {}
    }
    let len = u32::from_le_bytes(frame[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(frame[4..8].try_into().expect("4 bytes"));
    let offset = u64::from_le_bytes(frame[8..16].try_into().expect("8 bytes"));
    if len > MAX_PAYLOAD {
        return Ok(Next::Invalid("record length out of range"));
    }
    // Read, not allocated up front: a damaged length must not make a
    // reader allocate a gigabyte for a file a few bytes long.
    let mut payload = Vec::with_capacity(len.min(1 << 20));
    r.take(len as u64).read_to_end(&mut payload)?;
    if payload.len() < len {
        return Ok(Next::Invalid("truncated record payload"));
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&offset.to_le_bytes());
    hasher.update(&payload);
    if hasher.finalize() != crc {
        return Ok(Next::Invalid("record checksum mismatch"));
    }
    if offset != expected_offset {
        return Ok(Next::Invalid("record offset out of sequence"));
    }
    Ok(Next::Record { offset, payload })
}

/// Whether `bytes` hold, at their start, a whole valid record frame with an
/// offset of at least `min_offset`: used past a bad record to tell a torn
/// tail (nothing valid follows) from damage in the middle of acknowledged
/// records.
pub fn valid_frame_at(bytes: &[u8], min_offset: u64) -> bool {
    if bytes.len() < FRAME_LEN {
        return false;
    }
    let len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    let offset = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    if offset < min_offset || offset - min_offset > 1 << 32 || len > bytes.len() - FRAME_LEN {
        return false;
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&offset.to_le_bytes());
    hasher.update(&bytes[FRAME_LEN..FRAME_LEN + len]);
    hasher.finalize() == crc
}

/// Reads until `buf` is full or the reader ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn header_round_trip_and_errors() {
        let h = encode_header(42);
        assert_eq!(decode_header(&h), Ok(42));
        assert_eq!(decode_header(&h[..10]), Err(HeaderError::Short));
        let mut bad = h;
        bad[0] = b'X';
        assert_eq!(decode_header(&bad), Err(HeaderError::BadMagic));
        let mut v2 = h;
        v2[6] = 2;
        assert_eq!(decode_header(&v2), Err(HeaderError::Version(2)));
        assert_eq!(parse_file_name(&file_name(7)), Some(7));
        assert_eq!(parse_file_name("7.seg"), None);
    }

    proptest! {
        #[test]
        fn records_round_trip(payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20), start in 0u64..1_000_000) {
            let mut bytes = Vec::new();
            for (i, p) in payloads.iter().enumerate() {
                encode_record(&mut bytes, start + i as u64, p);
            }
            let mut r = bytes.as_slice();
            for (i, p) in payloads.iter().enumerate() {
                let want = Next::Record { offset: start + i as u64, payload: p.clone() };
                prop_assert_eq!(read_record(&mut r, start + i as u64).unwrap(), want);
            }
            prop_assert_eq!(read_record(&mut r, start + payloads.len() as u64).unwrap(), Next::End);
        }

        #[test]
        fn any_cut_or_flip_is_detected(payload in prop::collection::vec(any::<u8>(), 1..200), cut in 1usize..216, flip in 0usize..216) {
            let mut bytes = Vec::new();
            encode_record(&mut bytes, 9, &payload);
            let cut = cut.min(bytes.len() - 1);
            let torn = &bytes[..cut];
            prop_assert!(matches!(read_record(&mut &torn[..], 9).unwrap(), Next::Invalid(_)));
            let mut flipped = bytes.clone();
            let at = flip % flipped.len();
            flipped[at] ^= 0x01;
            let is_record = matches!(read_record(&mut flipped.as_slice(), 9).unwrap(), Next::Record { .. });
            prop_assert!(!is_record, "a flipped bit went unnoticed");
        }
    }
}
