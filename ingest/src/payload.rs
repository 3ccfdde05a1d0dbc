//! What one buffer record holds: the events of one accepted request as an
//! Arrow IPC stream, behind a small header that carries the request's
//! idempotency key and the answer it got.
//!
//! ```text
//!  ┌──── header ─────────────────────────────────────────────────────────┐
//!  │ magic 'P' (1) │ version 1 (1) │ key len u16 LE (2) │ key (UTF-8)     │
//!  │ accepted u32 LE (4) │ dropped fields u32 LE (4) │ at µs i64 LE (8)  │
//!  └─────────────────────────────────────────────────────────────────────┘
//!  Arrow IPC stream: schema message, one record batch, end marker
//! ```
//!
//! Keeping the key in the record makes it durable in the same fsync as the
//! events, so a retry after a crash is recognised whatever the timing.

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;

use crate::{Error, Result};

const MAGIC: u8 = b'P';
const VERSION: u8 = 1;
const FIXED: usize = 4 + 4 + 4 + 8;
/// The longest idempotency key.
pub const MAX_KEY_LEN: usize = 255;

/// The request a record came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestMeta {
    /// The client's `Idempotency-Key`, if it sent one.
    pub key: Option<String>,
    /// Events accepted.
    pub accepted: u32,
    /// Unknown fields dropped.
    pub dropped_fields: u32,
    /// When the request was accepted, µs since the epoch.
    pub at_micros: i64,
}

/// Encodes a record payload: header + the batch as Arrow IPC.
pub fn encode(meta: &RequestMeta, batch: &RecordBatch) -> Result<Vec<u8>> {
    let key = meta.key.as_deref().unwrap_or_default().as_bytes();
    if key.len() > MAX_KEY_LEN {
        return Err(Error::Internal(format!(
            "idempotency key of {} bytes (limit {MAX_KEY_LEN})",
            key.len()
        )));
    }
    let mut out = Vec::with_capacity(FIXED + key.len() + 1024);
    out.extend_from_slice(&[MAGIC, VERSION]);
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&meta.accepted.to_le_bytes());
    out.extend_from_slice(&meta.dropped_fields.to_le_bytes());
    out.extend_from_slice(&meta.at_micros.to_le_bytes());
    let mut w = StreamWriter::try_new(&mut out, &batch.schema())
        .map_err(|e| Error::Internal(format!("encoding a batch: {e}")))?;
    w.write(batch)
        .and_then(|_| w.finish())
        .map_err(|e| Error::Internal(format!("encoding a batch: {e}")))?;
    drop(w);
    Ok(out)
}

/// Decodes the header; returns it and the IPC bytes after it.
pub fn decode_meta(payload: &[u8]) -> Result<(RequestMeta, &[u8])> {
    let corrupt = |what: &str| Error::Corrupt(format!("a buffer record payload {what}"));
    if payload.len() < 4 || payload[0] != MAGIC {
        return Err(corrupt("does not start with the payload magic"));
    }
    if payload[1] != VERSION {
        return Err(corrupt(&format!(
            "has version {}, expected {VERSION}",
            payload[1]
        )));
    }
    let key_len = u16::from_le_bytes([payload[2], payload[3]]) as usize;
    let rest = &payload[4..];
    if rest.len() < key_len + FIXED - 4 {
        return Err(corrupt("is cut short"));
    }
    let key = std::str::from_utf8(&rest[..key_len])
        .map_err(|_| corrupt("has a key that is not UTF-8"))?;
    let rest = &rest[key_len..];
    let u32_at = |i: usize| u32::from_le_bytes(rest[i..i + 4].try_into().expect("4 bytes"));
    let meta = RequestMeta {
        key: (!key.is_empty()).then(|| key.to_string()),
        accepted: u32_at(0),
        dropped_fields: u32_at(4),
        at_micros: i64::from_le_bytes(rest[8..16].try_into().expect("8 bytes")),
    };
    Ok((meta, &rest[16..]))
}

/// Decodes a record payload back into its batches.
pub fn decode_batches(payload: &[u8]) -> Result<Vec<RecordBatch>> {
    let (_, ipc) = decode_meta(payload)?;
    let reader = StreamReader::try_new(ipc, None)
        .map_err(|e| Error::Corrupt(format!("a buffer record is not Arrow IPC: {e}")))?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Corrupt(format!("a buffer record is not Arrow IPC: {e}")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use proptest::prelude::*;

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("x"), None])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn garbage_is_refused() {
        assert!(decode_batches(b"garbage").is_err());
        assert!(decode_meta(&[b'P', 9, 0, 0])
            .unwrap_err()
            .to_string()
            .contains("version 9"));
        assert!(decode_meta(&[b'P', 1, 10, 0, b'k']).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(key in proptest::option::of("[ -~]{1,255}"), accepted: u32, dropped: u32, at: i64) {
            let meta = RequestMeta { key, accepted, dropped_fields: dropped, at_micros: at };
            let bytes = encode(&meta, &batch()).unwrap();
            let (back, _) = decode_meta(&bytes).unwrap();
            prop_assert_eq!(back, meta);
            prop_assert_eq!(decode_batches(&bytes).unwrap(), vec![batch()]);
        }
    }
}
