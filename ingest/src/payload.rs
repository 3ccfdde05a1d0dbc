//! What one buffer record holds: the events of one accepted request as an
//! Arrow IPC stream, and the events it quarantined as a second one, behind a
//! small header that carries the request's idempotency key and the answer it
//! got.
//!
//! ```text
//!  ┌──── header ───────────────────────────────────────────────────────────┐
//!  │ magic 'P' (1) │ version 2 (1) │ key len u16 LE (2) │ key (UTF-8)       │
//!  │ accepted u32 (4) │ dropped fields u32 (4) │ quarantined u32 (4)         │
//!  │ at µs i64 (8) │ events IPC length u32 (4)                               │
//!  └───────────────────────────────────────────────────────────────────────┘
//!  events: Arrow IPC stream (empty when every event was quarantined)
//!  quarantine: Arrow IPC stream of quarantine rows (empty when none)
//! ```
//!
//! Both parts are in one record, so one fsync makes the good events and the
//! quarantined ones durable together.
//!
//! Keeping the key in the record makes it durable in the same fsync as the
//! events, so a retry after a crash is recognised whatever the timing.

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;

use crate::{Error, Result};

const MAGIC: u8 = b'P';
const VERSION: u8 = 2;
/// Bytes after the key: accepted, dropped, quarantined, at, events length.
const FIXED: usize = 4 + 4 + 4 + 8 + 4;
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
    /// Events set aside in the quarantine part.
    pub quarantined: u32,
    /// When the request was accepted, µs since the epoch.
    pub at_micros: i64,
}

fn ipc(batch: Option<&RecordBatch>, out: &mut Vec<u8>) -> Result<()> {
    let Some(batch) = batch else {
        return Ok(());
    };
    let mut w = StreamWriter::try_new(out, &batch.schema())
        .map_err(|e| Error::Internal(format!("encoding a batch: {e}")))?;
    w.write(batch)
        .and_then(|_| w.finish())
        .map_err(|e| Error::Internal(format!("encoding a batch: {e}")))
}

/// Encodes a record payload: header, the good events, the quarantined ones.
pub fn encode(
    meta: &RequestMeta,
    events: Option<&RecordBatch>,
    quarantine: Option<&RecordBatch>,
) -> Result<Vec<u8>> {
    let key = meta.key.as_deref().unwrap_or_default().as_bytes();
    if key.len() > MAX_KEY_LEN {
        return Err(Error::Internal(format!(
            "idempotency key of {} bytes (limit {MAX_KEY_LEN})",
            key.len()
        )));
    }
    let mut body = Vec::new();
    ipc(events, &mut body)?;
    let events_len = body.len() as u32;
    ipc(quarantine, &mut body)?;
    let mut out = Vec::with_capacity(4 + key.len() + FIXED + body.len());
    out.extend_from_slice(&[MAGIC, VERSION]);
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&meta.accepted.to_le_bytes());
    out.extend_from_slice(&meta.dropped_fields.to_le_bytes());
    out.extend_from_slice(&meta.quarantined.to_le_bytes());
    out.extend_from_slice(&meta.at_micros.to_le_bytes());
    out.extend_from_slice(&events_len.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// A decoded payload: its header and its two IPC parts.
#[derive(Debug)]
pub struct Parts<'a> {
    pub meta: RequestMeta,
    pub events: &'a [u8],
    pub quarantine: &'a [u8],
}

/// Decodes the header and locates the two parts.
pub fn decode(payload: &[u8]) -> Result<Parts<'_>> {
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
    if rest.len() < key_len + FIXED {
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
        quarantined: u32_at(8),
        at_micros: i64::from_le_bytes(rest[12..20].try_into().expect("8 bytes")),
    };
    let events_len = u32_at(20) as usize;
    let body = &rest[FIXED..];
    if body.len() < events_len {
        return Err(corrupt("is cut short"));
    }
    Ok(Parts {
        meta,
        events: &body[..events_len],
        quarantine: &body[events_len..],
    })
}

/// Decodes the header alone.
pub fn decode_meta(payload: &[u8]) -> Result<RequestMeta> {
    decode(payload).map(|p| p.meta)
}

fn batches(ipc: &[u8]) -> Result<Vec<RecordBatch>> {
    if ipc.is_empty() {
        return Ok(Vec::new());
    }
    let reader = StreamReader::try_new(ipc, None)
        .map_err(|e| Error::Corrupt(format!("a buffer record is not Arrow IPC: {e}")))?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Corrupt(format!("a buffer record is not Arrow IPC: {e}")))
}

/// The good events of a record.
pub fn decode_batches(payload: &[u8]) -> Result<Vec<RecordBatch>> {
    batches(decode(payload)?.events)
}

/// The quarantined events of a record.
pub fn decode_quarantine(payload: &[u8]) -> Result<Vec<RecordBatch>> {
    batches(decode(payload)?.quarantine)
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
        fn round_trip(key in proptest::option::of("[ -~]{1,255}"), accepted: u32, dropped: u32, quarantined: u32, at: i64, parts in 0u8..4) {
            let meta = RequestMeta { key, accepted, dropped_fields: dropped, quarantined, at_micros: at };
            let (events, quarantine) = (parts & 1 == 1, parts & 2 == 2);
            let b = batch();
            let bytes = encode(&meta, events.then_some(&b), quarantine.then_some(&b)).unwrap();
            prop_assert_eq!(decode_meta(&bytes).unwrap(), meta);
            prop_assert_eq!(decode_batches(&bytes).unwrap().len(), events as usize);
            prop_assert_eq!(decode_quarantine(&bytes).unwrap().len(), quarantine as usize);
        }
    }
}
