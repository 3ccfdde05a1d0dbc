//! The fraud-detection tutorial's events (`../shared/reference/r2-sql.md`),
//! generated deterministically for the benchmarks of every crate, which
//! include this file with `#[path]`.

#![allow(dead_code)] // each benchmark uses part of it

/// The tutorial's stream schema.
pub const SCHEMA: &str = r#"{"fields":[
  {"name":"transaction_id","type":"string","required":true},
  {"name":"user_id","type":"int64","required":true},
  {"name":"amount","type":"float64","required":false},
  {"name":"transaction_timestamp","type":"string","required":false},
  {"name":"location","type":"string","required":false},
  {"name":"merchant_category","type":"string","required":false},
  {"name":"is_fraud","type":"bool","required":false}]}"#;

/// [`SCHEMA`] plus a `tags` list of strings, for pipelines that unnest.
pub fn schema_with_tags() -> String {
    SCHEMA.replace(
        "]}",
        r#",
  {"name":"tags","type":"list","items":{"type":"string"}}]}"#,
    )
}

/// [`SCHEMA`]'s columns as Arrow fields (the types `pipe` decodes them to).
pub fn arrow_fields() -> Vec<arrow::datatypes::Field> {
    use arrow::datatypes::{DataType, Field};
    vec![
        Field::new("transaction_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Int64, false),
        Field::new("amount", DataType::Float64, true),
        Field::new("transaction_timestamp", DataType::Utf8, true),
        Field::new("location", DataType::Utf8, true),
        Field::new("merchant_category", DataType::Utf8, true),
        Field::new("is_fraud", DataType::Boolean, true),
    ]
}

/// The `location` values events take.
pub const LOCATIONS: [&str; 6] = ["US", "UK", "CA", "DE", "NIGERIA", "RUSSIA"];
/// The `merchant_category` values events take.
pub const MERCHANTS: [&str; 6] = [
    "GROCERY",
    "GAS_STATION",
    "RESTAURANT",
    "RETAIL",
    "CRYPTO",
    "GIFT_CARDS",
];

/// Event `i` of [`SCHEMA`], as JSON (~214 bytes).
pub fn event(i: usize) -> String {
    let mut e = fields(i);
    e.push('}');
    e
}

/// Event `i` of [`schema_with_tags`], as JSON.
pub fn event_with_tags(i: usize) -> String {
    format!(
        r#"{},"tags":["web","promo-{}","t{}"]}}"#,
        fields(i),
        i % 7,
        i % 3
    )
}

/// The event's fields, without the closing brace.
fn fields(i: usize) -> String {
    format!(
        r#"{{"transaction_id":"{:08x}-4b2c-4d5e-9f01-{:012x}","user_id":{},"amount":{}.{:02},"transaction_timestamp":"2026-11-{:02}T{:02}:{:02}:{:02}.123456+00:00","location":"{}","merchant_category":"{}","is_fraud":{}"#,
        i.wrapping_mul(2_654_435_761) as u32,
        i,
        1000 + i % 9000,
        i % 5000,
        i % 100,
        1 + i % 28,
        i % 24,
        i % 60,
        (i * 7) % 60,
        LOCATIONS[i % LOCATIONS.len()],
        MERCHANTS[(i / 3) % MERCHANTS.len()],
        i % 17 == 0
    )
}

/// A JSON array body of `events` events made by `event`, the `seq`-th such
/// body (events `seq * events ..`).
pub fn body(events: usize, seq: usize, event: fn(usize) -> String) -> String {
    let all: Vec<String> = (0..events).map(|i| event(seq * events + i)).collect();
    format!("[{}]", all.join(","))
}
