//! Turning a request body into a validated Arrow batch, or into the list of
//! every bad event with its reason.
//!
//! The body is a JSON array of events, a single JSON object, or NDJSON (one
//! event per line). Each event is checked against the [`StreamSchema`]; a body
//! with any bad event is rejected whole, with one [`EventError`] per problem,
//! so nothing of a rejected request is ever kept.
//!
//! Good bodies are decoded in one pass straight into Arrow builders
//! (`columns`): no intermediate `serde_json::Value`. Only when that fast
//! path meets a problem is the body parsed into values and walked by the
//! check in `check.rs`, to report every problem with its event index and
//! field path. What [`EventDecoder::decode_split`] sets aside, and its
//! batch, are in `quarantine.rs`.

mod check;
mod quarantine;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde_json::Value;

use self::check::{kind_of, Check};
use crate::columns::Columns;
use crate::schema::{ingest_ts_type, StreamSchema, INGEST_TS_COLUMN, VALUE_COLUMN};
use crate::{Error, Result};

pub use self::quarantine::{quarantine_batch, quarantine_schema, QuarantinedEvent, Split};
pub use crate::event::{BodyFormat, EventError, EventErrorKind, UnknownFields, EXTRA_COLUMN};

/// Validates and decodes bodies for one stream.
#[derive(Debug, Clone)]
pub struct EventDecoder {
    schema: Option<StreamSchema>,
    arrow_schema: SchemaRef,
    unknown_fields: UnknownFields,
    max_events: usize,
    /// A JSON Schema every event must also satisfy.
    json_schema: Option<crate::json_schema::JsonSchema>,
}

/// The outcome of decoding one body.
#[derive(Debug)]
pub enum Decoded {
    /// Every event was valid.
    Batch {
        batch: RecordBatch,
        /// Unknown fields removed under [`UnknownFields::Drop`].
        dropped_fields: usize,
    },
    /// At least one event was bad; nothing of the body may be kept.
    Rejected(Vec<EventError>),
}

impl EventDecoder {
    /// A decoder for a structured stream, or for an unstructured one (`None`).
    pub fn new(schema: Option<StreamSchema>) -> Self {
        let arrow_schema = match &schema {
            Some(s) => s.arrow_schema(),
            None => StreamSchema::unstructured_arrow_schema(),
        };
        Self {
            schema,
            arrow_schema,
            unknown_fields: UnknownFields::Reject,
            max_events: usize::MAX,
            json_schema: None,
        }
    }

    /// A decoder for a stream defined by a JSON Schema document: its columns
    /// come from the document, and every event must satisfy it.
    pub fn with_json_schema(self, json_schema: crate::json_schema::JsonSchema) -> Self {
        let mut d = EventDecoder::new(Some(json_schema.schema.clone()));
        d.unknown_fields = self.unknown_fields;
        d.max_events = self.max_events;
        d.json_schema = Some(json_schema);
        d
    }

    /// Sets what happens to unknown fields. Under [`UnknownFields::Keep`] the
    /// batches get an extra nullable `_extra` column; a schema that already
    /// has a field of that name is refused.
    pub fn with_unknown_fields(mut self, policy: UnknownFields) -> Result<Self> {
        if policy == UnknownFields::Keep {
            let Some(schema) = &self.schema else {
                return Err(Error::InvalidSchema(
                    "unknown fields can only be kept on a stream with a schema".into(),
                ));
            };
            if schema.fields.iter().any(|f| f.name == EXTRA_COLUMN) {
                return Err(Error::InvalidSchema(format!(
                    "field `{EXTRA_COLUMN}` is where unknown fields are kept; rename it or choose another policy"
                )));
            }
            let mut fields: Vec<_> = self.arrow_schema.fields().iter().cloned().collect();
            fields.push(std::sync::Arc::new(arrow::datatypes::Field::new(
                EXTRA_COLUMN,
                arrow::datatypes::DataType::Utf8,
                true,
            )));
            self.arrow_schema = std::sync::Arc::new(arrow::datatypes::Schema::new(fields));
        }
        self.unknown_fields = policy;
        Ok(self)
    }

    /// Refuses bodies with more than `max` events ([`Error::TooManyEvents`]).
    pub fn with_max_events(mut self, max: usize) -> Self {
        self.max_events = max;
        self
    }

    /// The schema of the batches this decoder produces.
    pub fn arrow_schema(&self) -> &SchemaRef {
        &self.arrow_schema
    }

    /// The schema of a quarantine table: [`quarantine_schema`] plus
    /// [`INGEST_TS_COLUMN`].
    pub fn quarantine_table_schema() -> SchemaRef {
        let mut fields: Vec<_> = quarantine_schema().fields().iter().cloned().collect();
        fields.push(std::sync::Arc::new(arrow::datatypes::Field::new(
            INGEST_TS_COLUMN,
            ingest_ts_type(),
            false,
        )));
        std::sync::Arc::new(arrow::datatypes::Schema::new(fields))
    }

    /// The schema of the stream as pipelines see it: the decoded columns
    /// plus [`INGEST_TS_COLUMN`], added by [`stamp_ingest_ts`].
    pub fn table_schema(&self) -> SchemaRef {
        let mut fields: Vec<_> = self.arrow_schema.fields().iter().cloned().collect();
        fields.push(std::sync::Arc::new(arrow::datatypes::Field::new(
            INGEST_TS_COLUMN,
            ingest_ts_type(),
            false,
        )));
        std::sync::Arc::new(arrow::datatypes::Schema::new(fields))
    }

    /// Parses, validates and decodes one body.
    ///
    /// Returns `Err` when the body itself is unusable (not JSON, not objects);
    /// per-event problems come back as [`Decoded::Rejected`].
    pub fn decode(&self, body: &[u8], format: BodyFormat) -> Result<Decoded> {
        if self.schema.is_none() {
            return self.decode_unstructured(self.split(body, format)?);
        }
        if let Some((batch, dropped_fields)) = self.fast(body, format)? {
            return Ok(Decoded::Batch {
                batch,
                dropped_fields,
            });
        }
        let events = self.split(body, format)?;
        let errors = self.check(&events);
        if !errors.is_empty() {
            return Ok(Decoded::Rejected(errors));
        }
        let (batch, dropped_fields) = self.to_batch(&events)?;
        Ok(Decoded::Batch {
            batch,
            dropped_fields,
        })
    }

    /// The fast path: the whole body decoded in one pass, or `None` when it
    /// has a problem (or the stream has a JSON Schema, which needs values).
    fn fast(&self, body: &[u8], format: BodyFormat) -> Result<Option<(RecordBatch, usize)>> {
        // JSON is UTF-8. The fast path skips the values of dropped fields
        // without reading their bytes, so it would let invalid UTF-8 there
        // through; the slow path says where it is.
        if self.json_schema.is_some() || std::str::from_utf8(body).is_err() {
            return Ok(None);
        }
        let mut columns = self.columns();
        if columns.body(body, format).is_err() || columns.rows() == 0 {
            return Ok(None);
        }
        columns.finish().map(Some)
    }

    fn columns(&self) -> Columns {
        let schema = self.schema.as_ref().expect("structured streams only");
        Columns::new(
            &schema.fields,
            self.arrow_schema.clone(),
            self.unknown_fields,
            self.max_events,
        )
    }

    /// Like [`decode`](Self::decode), but keeps the good events of a body and
    /// sets the bad ones aside, each as its original JSON text with its errors.
    pub fn decode_split(&self, body: &[u8], format: BodyFormat) -> Result<Split> {
        if self.schema.is_none() {
            let Decoded::Batch { batch, .. } =
                self.decode_unstructured(self.split(body, format)?)?
            else {
                unreachable!("unstructured streams accept every JSON value");
            };
            return Ok(Split {
                batch: Some(batch),
                dropped_fields: 0,
                quarantined: Vec::new(),
            });
        }
        if let Some((batch, dropped_fields)) = self.fast(body, format)? {
            return Ok(Split {
                batch: Some(batch),
                dropped_fields,
                quarantined: Vec::new(),
            });
        }
        let events = self.split(body, format)?;
        let errors = self.check(&events);
        let mut by_index: std::collections::BTreeMap<usize, Vec<EventError>> = Default::default();
        for e in errors {
            by_index.entry(e.index).or_default().push(e);
        }
        let good: Vec<Value> = events
            .iter()
            .enumerate()
            .filter(|(i, _)| !by_index.contains_key(i))
            .map(|(_, e)| e.clone())
            .collect();
        let (batch, dropped_fields) = if good.is_empty() {
            (None, 0)
        } else {
            let (batch, dropped) = self.to_batch(&good)?;
            (Some(batch), dropped)
        };
        let quarantined = by_index
            .into_iter()
            .map(|(index, errors)| QuarantinedEvent {
                index,
                event: events[index].to_string(),
                errors,
            })
            .collect();
        Ok(Split {
            batch,
            dropped_fields,
            quarantined,
        })
    }

    fn split(&self, body: &[u8], format: BodyFormat) -> Result<Vec<Value>> {
        let events = split_events(body, format)?;
        if events.is_empty() {
            return Err(Error::InvalidBody("the body holds no events".into()));
        }
        if events.len() > self.max_events {
            return Err(Error::TooManyEvents {
                events: events.len(),
                limit: self.max_events,
            });
        }
        Ok(events)
    }

    /// Checks every event; returns every problem found.
    fn check(&self, events: &[Value]) -> Vec<EventError> {
        let schema = self.schema.as_ref().expect("structured streams only");
        let mut errors = Vec::new();
        for (index, event) in events.iter().enumerate() {
            if let Some(js) = &self.json_schema {
                let violations = js.errors(index, event);
                if !violations.is_empty() {
                    errors.extend(violations);
                    continue;
                }
            }
            match event {
                Value::Object(map) => Check {
                    index,
                    errors: &mut errors,
                    policy: self.unknown_fields,
                }
                .object(map, &schema.fields, ""),
                other => errors.push(EventError {
                    index,
                    field: String::new(),
                    kind: EventErrorKind::TypeMismatch,
                    message: format!("expected a JSON object, got {}", kind_of(other)),
                }),
            }
        }
        errors
    }

    /// Decodes checked events into one batch.
    fn to_batch(&self, events: &[Value]) -> Result<(RecordBatch, usize)> {
        let mut columns = self.columns();
        for event in events {
            columns
                .value(event)
                .map_err(|e| Error::Internal(format!("decoding checked events: {e}")))?;
        }
        columns.finish()
    }

    fn decode_unstructured(&self, events: Vec<Value>) -> Result<Decoded> {
        let texts: Vec<String> = events.iter().map(Value::to_string).collect();
        let column = arrow::array::StringArray::from(texts);
        let batch =
            RecordBatch::try_new(self.arrow_schema.clone(), vec![std::sync::Arc::new(column)])
                .map_err(|e| {
                    Error::Internal(format!("building the `{VALUE_COLUMN}` column: {e}"))
                })?;
        Ok(Decoded::Batch {
            batch,
            dropped_fields: 0,
        })
    }
}

/// Now, in microseconds since the epoch (UTC): the unit of
/// [`INGEST_TS_COLUMN`] and of every timestamp `pipe` keeps.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Adds the [`INGEST_TS_COLUMN`] (`micros` since the epoch, UTC) to every
/// row of a decoded batch. Stamped once at ingest and kept in the buffer, so a
/// replay after a crash produces the very same rows.
pub fn stamp_ingest_ts(batch: &RecordBatch, micros: i64) -> Result<RecordBatch> {
    let column = arrow::array::TimestampMicrosecondArray::from(vec![micros; batch.num_rows()])
        .with_timezone(crate::schema::UTC);
    let mut fields: Vec<_> = batch.schema().fields().iter().cloned().collect();
    fields.push(std::sync::Arc::new(arrow::datatypes::Field::new(
        INGEST_TS_COLUMN,
        ingest_ts_type(),
        false,
    )));
    let mut columns = batch.columns().to_vec();
    columns.push(std::sync::Arc::new(column));
    RecordBatch::try_new(
        std::sync::Arc::new(arrow::datatypes::Schema::new(fields)),
        columns,
    )
    .map_err(|e| Error::Internal(format!("adding `{INGEST_TS_COLUMN}`: {e}")))
}

/// Splits a body into its events.
fn split_events(body: &[u8], format: BodyFormat) -> Result<Vec<Value>> {
    match format {
        BodyFormat::Json => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Array(events)) => Ok(events),
            Ok(event @ Value::Object(_)) => Ok(vec![event]),
            Ok(other) => Err(Error::InvalidBody(format!(
                "expected a JSON array of events or one JSON object, got {}",
                kind_of(&other)
            ))),
            Err(e) => Err(Error::InvalidBody(format!("invalid JSON: {e}"))),
        },
        BodyFormat::NdJson => {
            let mut events = Vec::new();
            for (n, line) in body.split(|b| *b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let event = serde_json::from_slice(line).map_err(|e| {
                    Error::InvalidBody(format!("invalid JSON on line {}: {e}", n + 1))
                })?;
                events.push(event);
            }
            Ok(events)
        }
    }
}

#[cfg(test)]
mod tests;
