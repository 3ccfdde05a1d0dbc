//! The events both query benchmarks write: the fraud-detection
//! tutorial's transactions with `__ingest_ts`, generated deterministically.

use std::sync::Arc;

use arrow::array::{
    BooleanArray, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::fraud_events::{self, LOCATIONS, MERCHANTS};

pub const DAYS: i64 = 30;
pub const USERS: u64 = 9000;
/// 2026-10-01T00:00:00Z.
pub const START_MICROS: i64 = 1_790_812_800_000_000;
pub const DAY_MICROS: i64 = 86_400_000_000;

pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

pub fn ingest_ts() -> Field {
    Field::new(
        "__ingest_ts",
        DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        false,
    )
}

/// The tutorial's columns and `__ingest_ts`, as the sink stores them.
pub fn events_schema() -> SchemaRef {
    let mut fields = fraud_events::arrow_fields();
    fields.push(ingest_ts());
    Arc::new(Schema::new(fields))
}

/// Events `from..to` of `total`, in ingest order.
pub fn events(schema: &SchemaRef, from: usize, to: usize, total: usize) -> RecordBatch {
    let step = (DAYS * DAY_MICROS) as f64 / total as f64;
    let r: Vec<u64> = (from..to).map(|i| splitmix(i as u64)).collect();
    let ts: Vec<i64> = (from..to)
        .map(|i| START_MICROS + (i as f64 * step) as i64)
        .collect();
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values((from..to).map(|i| {
                format!(
                    "{:08x}-4b2c-4d5e-9f01-{:012}",
                    (i as u64).wrapping_mul(2_654_435_761) as u32,
                    i
                )
            }))),
            Arc::new(Int64Array::from_iter_values(
                r.iter().map(|x| 1000 + (x % USERS) as i64),
            )),
            Arc::new(Float64Array::from_iter(r.iter().map(|x| {
                // Mostly small amounts, a long tail, a few missing.
                let cents = (x >> 20) % 100_000;
                ((x >> 40) % 50 != 0).then(|| (cents * cents / 100_000) as f64 / 100.0)
            }))),
            Arc::new(StringArray::from_iter_values(ts.iter().map(|t| {
                chrono::DateTime::from_timestamp_micros(*t - 1_500_000)
                    .unwrap()
                    .to_rfc3339()
            }))),
            Arc::new(StringArray::from_iter_values(
                r.iter().map(|x| LOCATIONS[((x >> 8) % 6) as usize]),
            )),
            Arc::new(StringArray::from_iter_values(
                r.iter().map(|x| MERCHANTS[((x >> 12) % 6) as usize]),
            )),
            Arc::new(BooleanArray::from_iter(
                r.iter().map(|x| Some((x >> 50) % 17 == 0)),
            )),
            Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("+00:00")),
        ],
    )
    .expect("an events batch")
}
