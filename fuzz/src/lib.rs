//! Helpers shared by the fuzz targets.

use pipe_schemas::{Decoded, EventDecoder, FieldDef, FieldType, TimestampUnit};
use serde_json::{json, Map, Value};

/// An event every stream with these fields must accept: each field set to
/// a valid value of its type, all the way down.
pub fn sample_event(fields: &[FieldDef]) -> Value {
    let map: Map<String, Value> = fields
        .iter()
        .map(|f| (f.name.clone(), sample_value(&f.ty)))
        .collect();
    Value::Object(map)
}

fn sample_value(ty: &FieldType) -> Value {
    match ty {
        FieldType::String => json!("s"),
        FieldType::Int32 | FieldType::Int64 => json!(7),
        FieldType::Float32 | FieldType::Float64 => json!(1.5),
        FieldType::Bool => json!(true),
        FieldType::Timestamp { unit } => match unit {
            TimestampUnit::S => json!(1_700_000_000),
            _ => json!("2025-01-01T00:00:00Z"),
        },
        FieldType::Json => json!({"a": [1, null]}),
        FieldType::Binary => json!("AAEC"),
        FieldType::List { items } => json!([sample_value(&items.ty), null]),
        FieldType::Struct { fields } => sample_event(fields),
    }
}

/// Decodes `body` both ways and checks they agree and that nothing is an
/// internal error; returns the rows `decode` accepted, if it did.
pub fn decode_both(decoder: &EventDecoder, body: &[u8]) -> Option<usize> {
    let format = pipe_schemas::BodyFormat::Json;
    let whole = decoder.decode(body, format);
    let split = decoder.decode_split(body, format);
    match (whole, split) {
        (Ok(Decoded::Batch { batch, .. }), Ok(split)) => {
            assert!(split.quarantined.is_empty());
            assert_eq!(split.batch.as_ref(), Some(&batch));
            Some(batch.num_rows())
        }
        (Ok(Decoded::Rejected(errors)), Ok(split)) => {
            assert!(!errors.is_empty());
            assert!(!split.quarantined.is_empty());
            None
        }
        (Err(a), Err(_)) => {
            assert_ne!(a.kind(), pipe_schemas::ErrorKind::Internal, "{a}");
            None
        }
        (a, b) => panic!("decode and decode_split disagree: {a:?} / {b:?}"),
    }
}
