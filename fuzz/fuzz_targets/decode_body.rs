//! `EventDecoder::decode` and `decode_split` on any request body.
//!
//! Input: one control byte, then the body. The control byte picks the
//! stream (unstructured, flat, nested with every type, two JSON Schema
//! documents), the unknown-fields policy, the body format, and a small
//! per-request event limit.
//!
//! Beyond "no panic", it checks what the HTTP layer relies on:
//! - no `Internal` error: an event the checks let through always decodes;
//! - an accepted body yields one row per event, a rejected one at least one
//!   error, every error naming an event of the body;
//! - `decode` and `decode_split` agree on which events are bad;
//! - the fast path and the slow path make the same batch: an accepted
//!   NDJSON body with one more, bad, line is split into the same batch
//!   (the bad line forces the slow path) and that line alone quarantined.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pipe_schemas::{BodyFormat, Decoded, EventDecoder, JsonSchema, StreamSchema, UnknownFields};
use serde_json::Value;

const FLAT: &str = r#"{"fields":[
    {"name":"user_id","type":"string","required":true},
    {"name":"event_type","type":"string","required":true},
    {"name":"product_id","type":"string"},
    {"name":"amount","type":"float64"}]}"#;

const NESTED: &str = r#"{"fields":[
    {"name":"id","type":"string","required":true},
    {"name":"i32","type":"int32"},
    {"name":"i64","type":"int64"},
    {"name":"f32","type":"float32"},
    {"name":"flag","type":"bool"},
    {"name":"ts_ms","type":"timestamp"},
    {"name":"ts_s","type":"timestamp","unit":"s"},
    {"name":"ts_us","type":"timestamp","unit":"us","required":true},
    {"name":"doc","type":"json"},
    {"name":"raw","type":"binary"},
    {"name":"tags","type":"list","items":{"type":"string"}},
    {"name":"grid","type":"list","items":{"type":"list","items":{"type":"int64"}}},
    {"name":"items","type":"list","items":{"type":"struct","fields":[
        {"name":"sku","type":"string","required":true},
        {"name":"qty","type":"int32"}]}},
    {"name":"meta","type":"struct","fields":[
        {"name":"source","type":"string","required":true},
        {"name":"geo","type":"struct","fields":[{"name":"lat","type":"float64","required":true}]}]}
]}"#;

const JSON_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "user_id": {"type": "string", "pattern": "^u[0-9]+$"},
    "plan": {"enum": ["free", "pro"]},
    "seats": {"type": "integer", "minimum": 1},
    "price": {"type": ["number", "null"]},
    "at": {"type": "string", "format": "date-time"},
    "tags": {"type": "array", "items": {"type": "string"}},
    "meta": {"type": "object", "properties": {"source": {"type": "string"}}, "required": ["source"]}
  },
  "required": ["user_id", "seats", "price"],
  "additionalProperties": false
}"#;

/// Types JSON Schema and the column mapping may see differently: integers
/// written as `1.0`, base64, nested arrays of objects, unions.
const JSON_SCHEMA_LOOSE: &str = r#"{
  "type": "object",
  "properties": {
    "n": {"type": "integer"},
    "x": {"type": "number"},
    "blob": {"type": "string", "contentEncoding": "base64"},
    "when": {"type": ["string", "null"], "format": "date-time"},
    "rows": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "integer"}}, "required": ["k"]}},
    "any": {"type": ["string", "integer"]},
    "free": {"type": "object"}
  },
  "required": ["n"]
}"#;

const POLICIES: [UnknownFields; 3] = [
    UnknownFields::Reject,
    UnknownFields::Drop,
    UnknownFields::Keep,
];

/// One stream's decoder under one policy and event limit.
struct Case {
    decoder: EventDecoder,
    unstructured: bool,
    max_events: usize,
}

/// Every case, by (stream, policy, limit); `None` where the policy does
/// not apply (keeping unknown fields of an unstructured stream).
fn cases() -> &'static Vec<Option<Case>> {
    static CASES: OnceLock<Vec<Option<Case>>> = OnceLock::new();
    CASES.get_or_init(|| {
        let streams: Vec<EventDecoder> = vec![
            EventDecoder::new(None),
            EventDecoder::new(Some(StreamSchema::from_json(FLAT).unwrap())),
            EventDecoder::new(Some(StreamSchema::from_json(NESTED).unwrap())),
            EventDecoder::new(None).with_json_schema(JsonSchema::from_json(JSON_SCHEMA).unwrap()),
            EventDecoder::new(None)
                .with_json_schema(JsonSchema::from_json(JSON_SCHEMA_LOOSE).unwrap()),
        ];
        let mut out = Vec::new();
        for (i, stream) in streams.into_iter().enumerate() {
            for policy in POLICIES {
                for max_events in [usize::MAX, 2] {
                    out.push(
                        stream
                            .clone()
                            .with_unknown_fields(policy)
                            .ok()
                            .map(|d| Case {
                                decoder: d.with_max_events(max_events),
                                unstructured: i == 0,
                                max_events,
                            }),
                    );
                }
            }
        }
        out
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, body)) = data.split_first() else {
        return;
    };
    let cases = cases();
    let Some(case) = &cases[control as usize % cases.len()] else {
        return;
    };
    let format = if control & 0x80 == 0 {
        BodyFormat::Json
    } else {
        BodyFormat::NdJson
    };
    check(case, body, format);
});

/// The events of a body as the decoder counts them, if it is a body at all.
fn events(body: &[u8], format: BodyFormat) -> Option<Vec<Value>> {
    match format {
        BodyFormat::Json => match serde_json::from_slice::<Value>(body).ok()? {
            Value::Array(events) => Some(events),
            event @ Value::Object(_) => Some(vec![event]),
            _ => None,
        },
        BodyFormat::NdJson => body
            .split(|b| *b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .map(|line| serde_json::from_slice(line).ok())
            .collect(),
    }
}

fn check(case: &Case, body: &[u8], format: BodyFormat) {
    let decoder = &case.decoder;
    let whole = decoder.decode(body, format);
    let split = decoder.decode_split(body, format);
    let (whole, split) = match (whole, split) {
        (Ok(whole), Ok(split)) => (whole, split),
        (Err(a), Err(b)) => {
            assert_ne!(a.kind(), pipe_schemas::ErrorKind::Internal, "{a}");
            assert_eq!(a.to_string(), b.to_string());
            return;
        }
        (a, b) => panic!("decode and decode_split disagree: {a:?} / {b:?}"),
    };
    let events = events(body, format).expect("a decoded body holds events");
    let n = events.len();
    match &whole {
        Decoded::Batch { batch, .. } => {
            assert_eq!(batch.num_rows(), n, "one row per event");
            assert_eq!(batch.schema(), *decoder.arrow_schema());
            assert!(split.quarantined.is_empty());
            assert_eq!(split.batch.as_ref(), Some(batch));
        }
        Decoded::Rejected(errors) => {
            assert!(!errors.is_empty());
            let mut bad: Vec<usize> = errors.iter().map(|e| e.index).collect();
            bad.dedup();
            assert!(bad.iter().all(|i| *i < n), "errors name events of the body");
            let quarantined: Vec<usize> = split.quarantined.iter().map(|q| q.index).collect();
            let mut bad_sorted = bad.clone();
            bad_sorted.sort_unstable();
            bad_sorted.dedup();
            assert_eq!(
                quarantined, bad_sorted,
                "both paths find the same bad events"
            );
            let kept = split.batch.as_ref().map_or(0, |b| b.num_rows());
            assert_eq!(kept + quarantined.len(), n);
            for q in &split.quarantined {
                assert!(!q.errors.is_empty());
                assert!(q.errors.iter().all(|e| e.index == q.index));
            }
        }
    }
    // The same events and one bad one: the good ones take the slow path
    // and must come out as the very batch the fast path made. (The body is
    // extended as bytes, not parsed and written again: serde_json's float
    // parsing does not promise to round-trip its own output.)
    if let (
        Decoded::Batch {
            batch,
            dropped_fields,
        },
        false,
    ) = (&whole, case.unstructured)
    {
        let extended: Vec<u8> = match format {
            BodyFormat::NdJson => [body, b"\n1\n"].concat(),
            BodyFormat::Json => {
                let end = body
                    .iter()
                    .rposition(|b| !b.is_ascii_whitespace())
                    .expect("a decoded body is not blank");
                if body[end] == b']' {
                    [&body[..end], b",1", &body[end..]].concat()
                } else {
                    [b"[", body, b",1]"].concat()
                }
            }
        };
        let Ok(split) = decoder.decode_split(&extended, format) else {
            // Only the event limit may refuse one more event.
            assert!(
                n + 1 > case.max_events,
                "one more event refused below the limit"
            );
            return;
        };
        assert_eq!(split.quarantined.len(), 1, "{:?}", split.quarantined);
        assert_eq!(split.quarantined[0].index, n);
        assert_eq!(
            split.batch.as_ref(),
            Some(batch),
            "fast and slow paths differ"
        );
        assert_eq!(split.dropped_fields, *dropped_fields);
    }
}
