//! The on-disk layout of one buffer segment, and the record codec.
//!
//! ```text
//!  segment file  <first offset, 20 digits>.seg
//!  ┌──────────────────────────── header, 24 bytes ─────────────────────────────┐
//!  │ magic "PIPEWB" (6) │ version u16 LE (2) │ first offset u64 LE (8) │ salt (8) │
//!  └───────────────────────────────────────────────────────────────────────────┘
//!  ┌──────────── record ─────────────────────────────────────────────┐
//!  │ len u32 LE │ crc32 u32 LE │ offset u64 LE │ payload (len bytes)  │  × n
//!  └─────────────────────────────────────────────────────────────────┘
//! ```
//!
//! `crc32` (IEEE, crc32fast) covers the segment's salt, the offset and the
//! payload. Offsets are consecutive inside a segment and across segments. A
//! record is valid only when its whole frame is present, its CRC matches and
//! its offset is the one expected next; the first invalid record of the last
//! segment marks a torn tail, which recovery cuts off.
//!
//! The salt is 8 random bytes made with the segment. Payloads hold what
//! clients sent, so a client can send bytes that form a valid frame; without
//! the salt, such a frame inside a record cut short by a crash would look
//! like a valid record following a damaged one, which recovery refuses
//! (damage to acknowledged events). A frame that is valid under a salt the
//! client never saw is chance (2⁻³²), not a choice.
//!
//! Version 1 segments (16-byte header, no salt, CRC over offset and payload)
//! are still read; a buffer whose last segment is one starts a version 2
//! segment when it opens.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

/// Magic bytes opening every segment.
pub const MAGIC: &[u8; 6] = b"PIPEWB";
/// The segment format version this code writes.
pub const VERSION: u16 = 2;
/// Bytes in a header of the version this code writes.
pub const HEADER_LEN: usize = 24;
/// Bytes in a version 1 header (no salt).
const HEADER_LEN_V1: usize = 16;
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

/// What every record checksum of a segment starts from: its salt (none in
/// version 1 segments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Salt(Option<[u8; 8]>);

impl Salt {
    /// A new random salt.
    pub fn random() -> Salt {
        let bytes = *uuid::Uuid::new_v4().as_bytes();
        Salt(Some(bytes[..8].try_into().expect("8 bytes")))
    }

    /// A given salt (tests and fuzzing, which need the same bytes each run).
    pub const fn from_bytes(bytes: [u8; 8]) -> Salt {
        Salt(Some(bytes))
    }

    /// The salt of version 1 segments: none.
    pub const NONE: Salt = Salt(None);

    fn checksum(&self, offset: u64, payload: &[u8]) -> u32 {
        let mut hasher = self.head(offset);
        hasher.update(payload);
        hasher.finalize()
    }

    /// The checksum's state before the payload: salt and offset.
    fn head(&self, offset: u64) -> crc32fast::Hasher {
        let mut hasher = crc32fast::Hasher::new();
        if let Some(salt) = &self.0 {
            hasher.update(salt);
        }
        hasher.update(&offset.to_le_bytes());
        hasher
    }
}

/// A decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub first: u64,
    pub salt: Salt,
}

impl Header {
    /// Bytes the header takes at the start of its segment.
    pub fn size(&self) -> usize {
        match self.salt.0 {
            Some(_) => HEADER_LEN,
            None => HEADER_LEN_V1,
        }
    }
}

/// Encodes a header of the current version.
pub fn encode_header(first_offset: u64, salt: Salt) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(&first_offset.to_le_bytes());
    h.extend_from_slice(&salt.0.expect("new segments have a salt"));
    h
}

/// Why a header cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderError {
    Short,
    BadMagic,
    Version(u16),
}

/// Decodes a header from the first bytes of a segment (`h` may hold more).
pub fn decode_header(h: &[u8]) -> Result<Header, HeaderError> {
    if h.len() < HEADER_LEN_V1 {
        return Err(HeaderError::Short);
    }
    if &h[..6] != MAGIC {
        return Err(HeaderError::BadMagic);
    }
    let first = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
    match u16::from_le_bytes([h[6], h[7]]) {
        1 => Ok(Header {
            first,
            salt: Salt::NONE,
        }),
        2 if h.len() < HEADER_LEN => Err(HeaderError::Short),
        2 => Ok(Header {
            first,
            salt: Salt(Some(h[16..24].try_into().expect("8 bytes"))),
        }),
        version => Err(HeaderError::Version(version)),
    }
}

/// Opens the segment at `path` and reads its header; the reader is left at
/// its first record. The inner error says why the header cannot be used.
pub fn open(path: &Path) -> io::Result<Result<(Header, BufReader<File>), HeaderError>> {
    let mut r = BufReader::new(File::open(path)?);
    let mut h = [0u8; HEADER_LEN];
    let n = read_full(&mut r, &mut h[..HEADER_LEN_V1])?;
    let header = match decode_header(&h[..n]) {
        Ok(header) => header,
        Err(HeaderError::Short) if n == HEADER_LEN_V1 => {
            let more = read_full(&mut r, &mut h[HEADER_LEN_V1..])?;
            match decode_header(&h[..n + more]) {
                Ok(header) => header,
                Err(e) => return Ok(Err(e)),
            }
        }
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok((header, r)))
}

/// Appends one framed record to `out`.
pub fn encode_record(out: &mut Vec<u8>, salt: Salt, offset: u64, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&salt.checksum(offset, payload).to_le_bytes());
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

/// Reads the next record from `r`, a segment with `salt`, expecting
/// `expected_offset`.
pub fn read_record(r: &mut impl Read, salt: Salt, expected_offset: u64) -> io::Result<Next> {
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
    if salt.checksum(offset, &payload) != crc {
        return Ok(Next::Invalid("record checksum mismatch"));
    }
    if offset != expected_offset {
        return Ok(Next::Invalid("record offset out of sequence"));
    }
    Ok(Next::Record { offset, payload })
}

/// Whether `bytes` hold, at their start, a whole valid record frame of a
/// segment with `salt`, with an offset of at least `min_offset`: used past a
/// bad record to tell a torn tail (nothing valid follows) from damage in
/// the middle of acknowledged records.
pub fn valid_frame_at(bytes: &[u8], salt: Salt, min_offset: u64) -> bool {
    let Some(len) = frame_candidate(bytes, min_offset, min_offset.saturating_add(1 << 32)) else {
        return false;
    };
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    let offset = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    salt.checksum(offset, &bytes[FRAME_LEN..FRAME_LEN + len]) == crc
}

/// Whether a valid frame of an offset in `min_offset..=max_offset` starts
/// at byte `at` of `spans`' bytes, its checksum found in constant time
/// (see [`super::crc_span`]).
pub fn valid_frame_in(
    spans: &super::crc_span::Spans,
    bytes: &[u8],
    at: usize,
    salt: Salt,
    min_offset: u64,
    max_offset: u64,
) -> bool {
    let Some(len) = frame_candidate(&bytes[at..], min_offset, max_offset) else {
        return false;
    };
    let frame = &bytes[at..];
    let crc = u32::from_le_bytes(frame[4..8].try_into().expect("4 bytes"));
    let offset = u64::from_le_bytes(frame[8..16].try_into().expect("8 bytes"));
    let payload = at + FRAME_LEN;
    spans.crc_after(salt.head(offset).finalize(), payload, payload + len) == crc
}

/// The payload length of a frame at the start of `bytes` that passes the
/// cheap checks (whole, offset within `min_offset..=max_offset`), before
/// its checksum is computed over that many bytes.
pub fn frame_candidate(bytes: &[u8], min_offset: u64, max_offset: u64) -> Option<usize> {
    if bytes.len() < FRAME_LEN {
        return None;
    }
    let len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
    let offset = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let plausible = (min_offset..=max_offset).contains(&offset) && len <= bytes.len() - FRAME_LEN;
    plausible.then_some(len)
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
        let salt = Salt::random();
        let h = encode_header(42, salt);
        assert_eq!(h.len(), HEADER_LEN);
        assert_eq!(decode_header(&h), Ok(Header { first: 42, salt }));
        assert_eq!(decode_header(&h[..10]), Err(HeaderError::Short));
        assert_eq!(decode_header(&h[..20]), Err(HeaderError::Short));
        let mut bad = h.clone();
        bad[0] = b'X';
        assert_eq!(decode_header(&bad), Err(HeaderError::BadMagic));
        let mut v3 = h.clone();
        v3[6] = 3;
        assert_eq!(decode_header(&v3), Err(HeaderError::Version(3)));
        // Version 1: 16 bytes, no salt.
        let mut v1 = h[..16].to_vec();
        v1[6] = 1;
        let old = decode_header(&v1).unwrap();
        assert_eq!((old.first, old.salt, old.size()), (42, Salt::NONE, 16));
        assert_eq!(parse_file_name(&file_name(7)), Some(7));
        assert_eq!(parse_file_name("7.seg"), None);
    }

    proptest! {
        #[test]
        fn records_round_trip(payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20), start in 0u64..1_000_000) {
            for salt in [Salt::random(), Salt::NONE] {
                let mut bytes = Vec::new();
                for (i, p) in payloads.iter().enumerate() {
                    encode_record(&mut bytes, salt, start + i as u64, p);
                }
                let mut r = bytes.as_slice();
                for (i, p) in payloads.iter().enumerate() {
                    let want = Next::Record { offset: start + i as u64, payload: p.clone() };
                    prop_assert_eq!(read_record(&mut r, salt, start + i as u64).unwrap(), want);
                }
                prop_assert_eq!(read_record(&mut r, salt, start + payloads.len() as u64).unwrap(), Next::End);
            }
        }

        #[test]
        fn any_cut_or_flip_is_detected(payload in prop::collection::vec(any::<u8>(), 1..200), cut in 1usize..216, flip in 0usize..216) {
            let salt = Salt::random();
            let mut bytes = Vec::new();
            encode_record(&mut bytes, salt, 9, &payload);
            let cut = cut.min(bytes.len() - 1);
            let torn = &bytes[..cut];
            prop_assert!(matches!(read_record(&mut &torn[..], salt, 9).unwrap(), Next::Invalid(_)));
            let mut flipped = bytes.clone();
            let at = flip % flipped.len();
            flipped[at] ^= 0x01;
            let is_record = matches!(read_record(&mut flipped.as_slice(), salt, 9).unwrap(), Next::Record { .. });
            prop_assert!(!is_record, "a flipped bit went unnoticed");
        }

        /// A frame a client put inside its payload is not a record of the
        /// segment: it was made without the segment's salt.
        #[test]
        fn a_frame_inside_a_payload_is_not_valid(inner in prop::collection::vec(any::<u8>(), 0..100), offset in 0u64..1000) {
            let mut forged = Vec::new();
            // The best a client can do: a frame with no salt, or a guessed one.
            encode_record(&mut forged, Salt::NONE, offset + 1, &inner);
            let salt = Salt::random();
            prop_assert!(!valid_frame_at(&forged, salt, offset));
            prop_assert!(valid_frame_at(&forged, Salt::NONE, offset));
        }
    }
}
