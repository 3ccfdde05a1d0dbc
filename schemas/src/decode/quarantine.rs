//! What a split body sets aside: [`Split`] (the good events' batch and the
//! quarantined ones), [`QuarantinedEvent`] (an event's JSON text with its
//! errors), and the quarantine table's columns and batch
//! ([`quarantine_schema`], [`quarantine_batch`]).

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde::Serialize;

use crate::event::EventError;
use crate::{Error, Result};

/// A body split into its good events and its quarantined ones.
#[derive(Debug)]
pub struct Split {
    /// The good events, if any.
    pub batch: Option<RecordBatch>,
    /// Unknown fields removed under [`UnknownFields::Drop`].
    pub dropped_fields: usize,
    /// The bad events, in request order.
    pub quarantined: Vec<QuarantinedEvent>,
}

/// An event set aside, with why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuarantinedEvent {
    /// Position of the event in the request.
    pub index: usize,
    /// The event as sent (compact JSON).
    pub event: String,
    pub errors: Vec<EventError>,
}

/// The columns of a quarantine table, before `__ingest_ts`.
pub fn quarantine_schema() -> SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema};
    std::sync::Arc::new(Schema::new(vec![
        Field::new("event_index", DataType::Int64, false),
        Field::new("event", DataType::Utf8, false),
        Field::new("errors", DataType::Utf8, false),
    ]))
}

/// The quarantined events of one request as a batch of [`quarantine_schema`]:
/// the event's JSON, and its errors as a JSON array.
pub fn quarantine_batch(events: &[QuarantinedEvent]) -> Result<RecordBatch> {
    use arrow::array::{Int64Array, StringArray};
    let errors: Vec<String> = events
        .iter()
        .map(|e| serde_json::to_string(&e.errors).unwrap_or_default())
        .collect();
    RecordBatch::try_new(
        quarantine_schema(),
        vec![
            std::sync::Arc::new(Int64Array::from_iter_values(
                events.iter().map(|e| e.index as i64),
            )),
            std::sync::Arc::new(StringArray::from_iter_values(
                events.iter().map(|e| e.event.as_str()),
            )),
            std::sync::Arc::new(StringArray::from(errors)),
        ],
    )
    .map_err(|e| Error::Internal(format!("building the quarantine batch: {e}")))
}
