//! The decoder end to end: array, object and NDJSON bodies, every bad event
//! reported with its path, the unknown-field policies, the split into good
//! and quarantined events, limits, ingest-ts stamping and unstructured
//! streams.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, TimestampMicrosecondType};

use super::*;

fn ecommerce() -> EventDecoder {
    EventDecoder::new(Some(
        StreamSchema::from_json(
            r#"{"fields":[
            {"name":"user_id","type":"string","required":true},
            {"name":"event_type","type":"string","required":true},
            {"name":"product_id","type":"string","required":false},
            {"name":"amount","type":"float64","required":false}]}"#,
        )
        .unwrap(),
    ))
}

fn batch(d: &EventDecoder, body: &str, format: BodyFormat) -> RecordBatch {
    match d.decode(body.as_bytes(), format).unwrap() {
        Decoded::Batch { batch, .. } => batch,
        Decoded::Rejected(e) => panic!("rejected: {e:?}"),
    }
}

fn rejected(d: &EventDecoder, body: &str) -> Vec<EventError> {
    match d.decode(body.as_bytes(), BodyFormat::Json).unwrap() {
        Decoded::Batch { .. } => panic!("accepted {body}"),
        Decoded::Rejected(e) => e,
    }
}

#[test]
fn decodes_array_object_and_ndjson() {
    let d = ecommerce();
    let b = batch(
        &d,
        r#"[{"user_id":"u1","event_type":"purchase","product_id":"w1","amount":29.99},
            {"user_id":"u2","event_type":"view_product","product_id":"w2"}]"#,
        BodyFormat::Json,
    );
    assert_eq!(b.num_rows(), 2);
    let amount = b.column(3).as_primitive::<Float64Type>();
    assert_eq!(amount.value(0), 29.99);
    assert!(amount.is_null(1));

    let b = batch(&d, r#"{"user_id":"u1","event_type":"x"}"#, BodyFormat::Json);
    assert_eq!(b.num_rows(), 1);

    let b = batch(
        &d,
        "{\"user_id\":\"a\",\"event_type\":\"x\"}\n\n{\"user_id\":\"b\",\"event_type\":\"y\"}\n",
        BodyFormat::NdJson,
    );
    assert_eq!(b.num_rows(), 2);
}

#[test]
fn reports_every_bad_event() {
    let errors = rejected(
        &ecommerce(),
        r#"[{"user_id":"u1","event_type":"ok"},
            {"event_type":"x"},
            {"user_id":"u3","event_type":"x","amount":"12"},
            {"user_id":null,"event_type":"x","color":"red"},
            7]"#,
    );
    let summary: Vec<(usize, &str, EventErrorKind)> = errors
        .iter()
        .map(|e| (e.index, e.field.as_str(), e.kind))
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, "user_id", EventErrorKind::MissingField),
            (2, "amount", EventErrorKind::TypeMismatch),
            (3, "color", EventErrorKind::UnknownField),
            (3, "user_id", EventErrorKind::NullValue),
            (4, "", EventErrorKind::TypeMismatch),
        ]
    );
    assert_eq!(
        errors[1].message,
        "field `amount`: expected float64, got a string"
    );
}

#[test]
fn body_level_errors() {
    let d = ecommerce();
    for (body, want) in [
        ("[{\"user_id\":", "invalid JSON"),
        ("42", "expected a JSON array"),
        ("[]", "no events"),
    ] {
        let err = d.decode(body.as_bytes(), BodyFormat::Json).unwrap_err();
        assert!(err.to_string().contains(want), "{body}: {err}");
    }
    let err = d
        .decode(b"{\"user_id\":\"a\"}\nnope\n", BodyFormat::NdJson)
        .unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
fn nested_and_special_types() {
    let d = EventDecoder::new(Some(
        StreamSchema::from_json(
            r#"{"fields":[
            {"name":"ts","type":"timestamp","required":true},
            {"name":"n","type":"int32"},
            {"name":"raw","type":"binary"},
            {"name":"doc","type":"json"},
            {"name":"tags","type":"list","items":{"type":"string"}},
            {"name":"meta","type":"struct","fields":[{"name":"prio","type":"int64"}]}]}"#,
        )
        .unwrap(),
    ));
    let b = batch(
        &d,
        r#"[{"ts":"2025-01-02T03:04:05.5Z","n":1,"raw":"aGk=","doc":{"a":[1]},"tags":["x","y"],"meta":{"prio":9}},
            {"ts":1700000000000}]"#,
        BodyFormat::Json,
    );
    let ts = b.column(0).as_primitive::<TimestampMicrosecondType>();
    assert_eq!(ts.value(0), 1_735_787_045_500_000);
    assert_eq!(ts.value(1), 1_700_000_000_000_000);
    assert_eq!(b.column(2).as_binary::<i32>().value(0), b"hi");
    assert_eq!(b.column(3).as_string::<i32>().value(0), r#"{"a":[1]}"#);
    assert_eq!(b.column(4).as_list::<i32>().value(0).len(), 2);

    let errors = rejected(
        &d,
        r#"[{"ts":"yesterday","n":3000000000,"raw":"!!","tags":["a",1],"meta":{"prio":"x","z":1}}]"#,
    );
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        vec!["ts", "n", "raw", "tags[1]", "meta.z", "meta.prio"]
    );
}

/// Found by fuzzing: invalid UTF-8 in the value of a field that is
/// dropped was accepted (the fast path skipped its bytes unread).
#[test]
fn invalid_utf8_is_refused_even_in_a_dropped_field() {
    let drop = ecommerce()
        .with_unknown_fields(UnknownFields::Drop)
        .unwrap();
    let body = b"[{\"user_id\":\"u\",\"event_type\":\"e\",\"other\":\"wide\xf2_6\"}]";
    for format in [BodyFormat::Json, BodyFormat::NdJson] {
        let body: &[u8] = match format {
            BodyFormat::Json => body,
            BodyFormat::NdJson => &body[1..body.len() - 1],
        };
        let err = drop.decode(body, format).unwrap_err().to_string();
        assert!(err.contains("invalid"), "{err}");
        assert!(drop.decode_split(body, format).is_err());
    }
}

#[test]
fn unknown_fields_policies() {
    let body = r#"[{"user_id":"u","event_type":"e","color":"red","size":{"w":1}}]"#;
    let errors = rejected(&ecommerce(), body);
    assert_eq!(errors.len(), 2);
    assert!(errors
        .iter()
        .all(|e| e.kind == EventErrorKind::UnknownField));

    let drop = ecommerce()
        .with_unknown_fields(UnknownFields::Drop)
        .unwrap();
    match drop.decode(body.as_bytes(), BodyFormat::Json).unwrap() {
        Decoded::Batch {
            batch,
            dropped_fields,
        } => {
            assert_eq!(
                (batch.num_rows(), batch.num_columns(), dropped_fields),
                (1, 4, 2)
            );
        }
        other => panic!("{other:?}"),
    }

    let keep = ecommerce()
        .with_unknown_fields(UnknownFields::Keep)
        .unwrap();
    let b = batch(&keep, body, BodyFormat::Json);
    assert_eq!(b.schema().field(4).name(), EXTRA_COLUMN);
    assert_eq!(
        b.column(4).as_string::<i32>().value(0),
        r#"{"color":"red","size":{"w":1}}"#
    );
    let b = batch(
        &keep,
        r#"{"user_id":"u","event_type":"e"}"#,
        BodyFormat::Json,
    );
    assert!(b.column(4).is_null(0));
    assert!(EventDecoder::new(None)
        .with_unknown_fields(UnknownFields::Keep)
        .is_err());
}

#[test]
fn split_keeps_good_events_and_sets_bad_ones_aside() {
    let d = ecommerce();
    let split = d
        .decode_split(
            br#"[{"user_id":"a","event_type":"x"},{"event_type":"y"},{"user_id":"c","event_type":"z","amount":"no"}]"#,
            BodyFormat::Json,
        )
        .unwrap();
    assert_eq!(split.batch.unwrap().num_rows(), 1);
    let indexes: Vec<usize> = split.quarantined.iter().map(|q| q.index).collect();
    assert_eq!(indexes, vec![1, 2]);
    assert_eq!(split.quarantined[0].event, r#"{"event_type":"y"}"#);
    assert_eq!(split.quarantined[1].errors[0].field, "amount");
    let q = quarantine_batch(&split.quarantined).unwrap();
    assert_eq!(q.num_rows(), 2);
    assert!(q
        .column(2)
        .as_string::<i32>()
        .value(0)
        .contains("missing_field"));

    let all_bad = d.decode_split(br#"[{}]"#, BodyFormat::Json).unwrap();
    assert!(all_bad.batch.is_none());
    assert_eq!(all_bad.quarantined.len(), 1);
}

#[test]
fn too_many_events() {
    let d = ecommerce().with_max_events(2);
    let err = d
        .decode(
            br#"[{"user_id":"a","event_type":"b"},{},{}]"#,
            BodyFormat::Json,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the request holds 3 events; the limit is 2 per request"
    );
    assert_eq!(err.kind(), crate::ErrorKind::TooLarge);
}

#[test]
fn stamps_ingest_time() {
    let d = ecommerce();
    let b = batch(&d, r#"{"user_id":"u","event_type":"e"}"#, BodyFormat::Json);
    let stamped = stamp_ingest_ts(&b, 1_700_000_000_000_000).unwrap();
    assert_eq!(stamped.schema(), d.table_schema());
    let ts = stamped.column(4).as_primitive::<TimestampMicrosecondType>();
    assert_eq!(ts.value(0), 1_700_000_000_000_000);
}

#[test]
fn unstructured_keeps_the_whole_event() {
    let d = EventDecoder::new(None);
    let b = batch(&d, r#"[{"a":1},{"b":[true]}]"#, BodyFormat::Json);
    assert_eq!(b.schema().field(0).name(), VALUE_COLUMN);
    assert_eq!(b.column(0).as_string::<i32>().value(1), r#"{"b":[true]}"#);
}
