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

use arrow::buffer::Buffer;
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamDecoder;
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
    // Arrow's IPC decoding is not panic-free on malformed input (a null
    // buffer shorter than its array panics in `ArrayDataBuilder::build`).
    // Such a record is refused like any other damaged one rather than
    // taking down the pipeline that reads it; nothing outlives the decode.
    std::panic::catch_unwind(|| decode_ipc(ipc)).unwrap_or_else(|panic| {
        Err(Error::Corrupt(format!(
            "a buffer record is not Arrow IPC: decoding it panicked: {}",
            pipe_schemas::panic_message(panic.as_ref())
        )))
    })
}

fn decode_ipc(ipc: &[u8]) -> Result<Vec<RecordBatch>> {
    let not_ipc = |e: ArrowError| Error::Corrupt(format!("a buffer record is not Arrow IPC: {e}"));
    // The push decoder takes only the bytes that are there: `StreamReader`
    // allocates whatever length a message header claims before reading it
    // (gigabytes, or a panic for a negative one).
    let mut decoder = StreamDecoder::new();
    let mut buffer = Buffer::from(ipc);
    let mut out = Vec::new();
    while !buffer.is_empty() {
        if let Some(batch) = decoder.decode(&mut buffer).map_err(not_ipc)? {
            out.push(batch);
        }
    }
    decoder.finish().map_err(not_ipc)?;
    Ok(out)
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

    /// Found by the `payload` fuzz target: IPC lengths past the end of the
    /// record are refused without being allocated. (`StreamReader` took
    /// 1.3 GB for the first record, 38 bytes long, and panicked on the
    /// negative body length of the second.)
    #[test]
    fn lengths_past_the_record_are_refused() {
        let fuzzed =
            b"P\x02\0\0\x005\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0P\x01\x10\x0a\0\0d";
        assert!(decode_quarantine(fuzzed).is_err());

        let meta = RequestMeta {
            key: None,
            accepted: 2,
            dropped_fields: 0,
            quarantined: 0,
            at_micros: 0,
        };
        let mut bytes = encode(&meta, Some(&batch()), None).unwrap();
        let events_len = decode(&bytes).unwrap().events.len();
        // Header, then `0xFFFFFFFF <len> <message> <body>` per message: the
        // schema (no body), the batch, then the 8-byte end marker.
        let len_at = |at: usize| i32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let schema_at = 4 + FIXED;
        let batch_at = schema_at + 8 + len_at(schema_at + 4);
        let message = batch_at + 8..batch_at + 8 + len_at(batch_at + 4);
        let body_len = (schema_at + events_len - 8 - message.end) as i64;
        // Of the places that hold the same number, the one that is the
        // message's `bodyLength`.
        let field = (message.start..message.end - 8)
            .find(|&i| {
                let mut m = bytes[message.clone()].to_vec();
                let at = i - message.start;
                if m[at..at + 8] != body_len.to_le_bytes() {
                    return false;
                }
                m[at..at + 8].copy_from_slice(&(-8i64).to_le_bytes());
                arrow::ipc::root_as_message(&m).is_ok_and(|m| m.bodyLength() == -8)
            })
            .expect("the body length is in the message");
        bytes[field..field + 8].copy_from_slice(&(-8i64).to_le_bytes());
        assert!(decode_batches(&bytes).is_err());
    }

    /// Found by the `payload` fuzz target: a real quarantine record with
    /// one byte changed, which makes a null buffer shorter than its array.
    /// Arrow panics on it; the record is refused.
    #[test]
    fn a_panic_in_arrow_is_a_corrupt_record() {
        let record = include_bytes!("testdata/payload-short-null-buffer.bin");
        let err = decode_quarantine(record).unwrap_err();
        assert!(err.to_string().contains("panicked"), "{err}");
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
