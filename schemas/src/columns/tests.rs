//! The column builders against values and against arrow-json: a proptest
//! that the fast path, the values path and arrow-json build the same batch,
//! and the problems that must leave the fast path.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::record_batch::RecordBatch;
use base64::Engine;
use proptest::prelude::*;
use serde_json::Value;

use super::Columns;
use crate::event::{BodyFormat, UnknownFields};
use crate::schema::{FieldDef, FieldType, StreamSchema};

const SCHEMA: &str = r#"{"fields":[
    {"name":"id","type":"string","required":true},
    {"name":"i32","type":"int32"},
    {"name":"i64","type":"int64"},
    {"name":"f32","type":"float32"},
    {"name":"f64","type":"float64"},
    {"name":"flag","type":"bool"},
    {"name":"ts_ms","type":"timestamp"},
    {"name":"ts_s","type":"timestamp","unit":"s"},
    {"name":"doc","type":"json"},
    {"name":"raw","type":"binary"},
    {"name":"tags","type":"list","items":{"type":"string"}},
    {"name":"grid","type":"list","items":{"type":"list","items":{"type":"int64"}}},
    {"name":"items","type":"list","items":{"type":"struct","fields":[
        {"name":"sku","type":"string","required":true},
        {"name":"qty","type":"int32"}]}},
    {"name":"meta","type":"struct","fields":[
        {"name":"source","type":"string","required":true},
        {"name":"geo","type":"struct","fields":[{"name":"lat","type":"float64"}]}]}
]}"#;

fn schema() -> StreamSchema {
    StreamSchema::from_json(SCHEMA).unwrap()
}

fn columns(schema: &StreamSchema, policy: UnknownFields) -> Columns {
    let mut arrow = schema.arrow_schema();
    if policy == UnknownFields::Keep {
        let mut fields: Vec<_> = arrow.fields().iter().cloned().collect();
        fields.push(Arc::new(arrow::datatypes::Field::new(
            crate::event::EXTRA_COLUMN,
            arrow::datatypes::DataType::Utf8,
            true,
        )));
        arrow = Arc::new(arrow::datatypes::Schema::new(fields));
    }
    Columns::new(&schema.fields, arrow, policy, usize::MAX)
}

fn fast(body: &str, format: BodyFormat) -> serde_json::Result<RecordBatch> {
    let mut c = columns(&schema(), UnknownFields::Reject);
    c.body(body.as_bytes(), format)?;
    Ok(c.finish().unwrap().0)
}

fn from_values(events: &[Value]) -> RecordBatch {
    let mut c = columns(&schema(), UnknownFields::Reject);
    for e in events {
        c.value(e).unwrap();
    }
    c.finish().unwrap().0
}

/// What the decoder did before this module, kept as an independent
/// oracle: values normalised by hand, then arrow-json's typed decoder.
fn oracle(events: &[Value]) -> RecordBatch {
    fn normalise(v: &mut Value, ty: &FieldType) {
        match (ty, &mut *v) {
            (_, Value::Null) => {}
            (FieldType::Timestamp { .. }, Value::String(s)) => {
                *v = chrono::DateTime::parse_from_rfc3339(s)
                    .unwrap()
                    .timestamp_micros()
                    .into()
            }
            (FieldType::Timestamp { unit }, Value::Number(n)) => {
                *v = (n.as_i64().unwrap() * unit.micros()).into()
            }
            (FieldType::Json, _) => *v = Value::String(v.to_string()),
            (FieldType::Binary, Value::String(s)) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(s.as_bytes())
                    .unwrap();
                *v = Value::String(bytes.iter().map(|b| format!("{b:02x}")).collect())
            }
            (FieldType::List { items }, Value::Array(xs)) => {
                xs.iter_mut().for_each(|x| normalise(x, &items.ty))
            }
            (FieldType::Struct { fields }, Value::Object(m)) => {
                for f in fields {
                    if let Some(x) = m.get_mut(&f.name) {
                        normalise(x, &f.ty)
                    }
                }
            }
            _ => {}
        }
    }
    let schema = schema();
    let ty = FieldType::Struct {
        fields: schema.fields.clone(),
    };
    let mut events = events.to_vec();
    events.iter_mut().for_each(|e| normalise(e, &ty));
    let mut decoder = arrow::json::ReaderBuilder::new(schema.arrow_schema())
        .with_batch_size(events.len())
        .with_strict_mode(true)
        .build_decoder()
        .unwrap();
    decoder.serialize(&events).unwrap();
    decoder.flush().unwrap().unwrap()
}

fn value_of(ty: &FieldType) -> BoxedStrategy<Value> {
    match ty {
        FieldType::String => any::<String>().prop_map(Value::from).boxed(),
        FieldType::Int32 => any::<i32>().prop_map(Value::from).boxed(),
        FieldType::Int64 => any::<i64>().prop_map(Value::from).boxed(),
        FieldType::Float32 => any::<f32>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| Value::from(f as f64))
            .boxed(),
        FieldType::Float64 => any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from)
            .boxed(),
        FieldType::Bool => any::<bool>().prop_map(Value::from).boxed(),
        FieldType::Timestamp { unit } => {
            let max = 253_402_300_799_000_000 / unit.micros();
            prop_oneof![
                (-max..max).prop_map(Value::from),
                (-62_135_596_800_000_000i64..253_402_300_799_000_000).prop_map(|us| {
                    Value::from(
                        chrono::DateTime::from_timestamp_micros(us)
                            .unwrap()
                            .to_rfc3339(),
                    )
                }),
            ]
            .boxed()
        }
        FieldType::Json => prop_oneof![
            any::<i64>().prop_map(Value::from),
            "[a-z\"\\\\]{0,8}".prop_map(Value::from),
            Just(serde_json::json!({"b": [1, {"c": null}], "a": "x"})),
        ]
        .boxed(),
        FieldType::Binary => proptest::collection::vec(any::<u8>(), 0..20)
            .prop_map(|b| Value::from(base64::engine::general_purpose::STANDARD.encode(b)))
            .boxed(),
        FieldType::List { items } => {
            proptest::collection::vec(proptest::option::of(value_of(&items.ty)), 0..4)
                .prop_map(|xs| {
                    Value::Array(xs.into_iter().map(Option::unwrap_or_default).collect())
                })
                .boxed()
        }
        FieldType::Struct { fields } => object_of(fields),
    }
}

/// An object of `fields`: required ones always set, others set, null or
/// absent.
fn object_of(fields: &[FieldDef]) -> BoxedStrategy<Value> {
    let parts: Vec<BoxedStrategy<Option<(String, Value)>>> = fields
        .iter()
        .map(|f| {
            let name = f.name.clone();
            let value = value_of(&f.ty);
            if f.required {
                value.prop_map(move |v| Some((name.clone(), v))).boxed()
            } else {
                prop_oneof![
                    Just(None),
                    Just(Some((name.clone(), Value::Null))),
                    value.prop_map(move |v| Some((name.clone(), v))),
                ]
                .boxed()
            }
        })
        .collect();
    parts
        .prop_map(|entries| Value::Object(entries.into_iter().flatten().collect()))
        .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Bytes and values decode to the same batch, and both agree with
    /// arrow-json on the normalised values.
    #[test]
    fn fast_path_matches_values_and_arrow_json(
        events in proptest::collection::vec(object_of(&schema().fields), 1..12),
        ndjson: bool,
    ) {
        let body = if ndjson {
            events.iter().map(|e| e.to_string() + "\n").collect::<String>()
        } else {
            Value::Array(events.clone()).to_string()
        };
        let format = if ndjson { BodyFormat::NdJson } else { BodyFormat::Json };
        let fast = fast(&body, format).unwrap();
        let slow = from_values(&events);
        prop_assert_eq!(&fast, &slow);
        prop_assert_eq!(&fast, &oracle(&events));
    }
}

#[test]
fn every_problem_leaves_the_fast_path() {
    for body in [
        r#"{"i32":1}"#,                              // required field missing
        r#"{"id":null}"#,                            // required field null
        r#"{"id":"a","i32":2147483648}"#,            // out of range
        r#"{"id":"a","i32":1.5}"#,                   // not an integer
        r#"{"id":"a","i64":"7"}"#,                   // string for a number
        r#"{"id":"a","ts_ms":"yesterday"}"#,         // not RFC 3339
        r#"{"id":"a","ts_s":9223372036854775}"#,     // overflows micros
        r#"{"id":"a","raw":"*"}"#,                   // not base64
        r#"{"id":"a","tags":"x"}"#,                  // not a list
        r#"{"id":"a","tags":[1]}"#,                  // wrong element
        r#"{"id":"a","items":[{"qty":1}]}"#,         // nested required
        r#"{"id":"a","meta":{"source":"s","x":1}}"#, // nested unknown
        r#"{"id":"a","id":"b"}"#,                    // duplicate key
        r#"{"id":"a","color":"red"}"#,               // unknown
        r#"[{"id":"a"},7]"#,                         // not an object
        r#"{"id":"a"} trailing"#,
    ] {
        assert!(fast(body, BodyFormat::Json).is_err(), "{body}");
    }
}

#[test]
fn null_struct_children_are_null() {
    let b = fast(
        r#"[{"id":"a","meta":null},{"id":"b","meta":{"source":"s"}}]"#,
        BodyFormat::Json,
    )
    .unwrap();
    let meta = b.column_by_name("meta").unwrap().as_struct();
    assert!(meta.is_null(0));
    let source = meta.column_by_name("source").unwrap().as_string::<i32>();
    assert!(source.is_null(0), "masked by the struct, and NULL itself");
    assert_eq!(source.value(1), "s");
    let geo = meta.column_by_name("geo").unwrap().as_struct();
    assert!(geo.is_null(0) && geo.is_null(1));
}

#[test]
fn unknown_fields_dropped_or_kept_by_path() {
    let body = r#"[{"id":"a","x":1,"meta":{"source":"s","y":[2]},"items":[{"sku":"k","z":true}]},{"id":"b"}]"#;
    let mut c = columns(&schema(), UnknownFields::Drop);
    c.body(body.as_bytes(), BodyFormat::Json).unwrap();
    let (batch, dropped) = c.finish().unwrap();
    assert_eq!((batch.num_rows(), dropped), (2, 3));

    let mut c = columns(&schema(), UnknownFields::Keep);
    c.body(body.as_bytes(), BodyFormat::Json).unwrap();
    let (batch, dropped) = c.finish().unwrap();
    assert_eq!(dropped, 0);
    let extra = batch.column_by_name("_extra").unwrap().as_string::<i32>();
    assert_eq!(extra.value(0), r#"{"x":1,"meta.y":[2],"items[0].z":true}"#);
    assert!(extra.is_null(1));
}

/// Found by fuzzing: a dropped key repeated in one object counted
/// twice here and once on the slow path (parsed JSON keeps one), so a
/// request's `dropped_fields` depended on the path it took.
#[test]
fn a_repeated_unknown_key_is_one_dropped_field() {
    let body = r#"[{"id":"a","zz":{"q":0},"zz":{"q":0},"meta":{"source":"s","y":1,"y":2},"w":1}]"#;
    let mut c = columns(&schema(), UnknownFields::Drop);
    c.body(body.as_bytes(), BodyFormat::Json).unwrap();
    let (_, dropped) = c.finish().unwrap();
    assert_eq!(dropped, 3, "zz, meta.y, w");
}

#[test]
fn too_many_events_leave_the_fast_path() {
    let s = schema();
    let mut c = Columns::new(&s.fields, s.arrow_schema(), UnknownFields::Reject, 2);
    assert!(c
        .body(br#"[{"id":"a"},{"id":"b"},{"id":"c"}]"#, BodyFormat::Json)
        .is_err());
}
