//! Turning a request body into a validated Arrow batch, or into the list of
//! every bad event with its reason.
//!
//! The body is a JSON array of events, a single JSON object, or NDJSON (one
//! event per line). Each event is checked against the [`StreamSchema`]; a body
//! with any bad event is rejected whole, with one [`EventError`] per problem,
//! so nothing of a rejected request is ever kept.
//!
//! Good bodies are decoded in one pass straight into Arrow builders
//! (`columns.rs`): no intermediate `serde_json::Value`. Only when that fast
//! path meets a problem is the body parsed into values and walked here, to
//! report every problem with its event index and field path.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use base64::Engine;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::columns::Columns;
use crate::schema::{
    ingest_ts_type, FieldDef, FieldType, StreamSchema, TimestampUnit, INGEST_TS_COLUMN,
    VALUE_COLUMN,
};
use crate::{Error, Result};

pub use crate::event::{BodyFormat, EventError, EventErrorKind, UnknownFields, EXTRA_COLUMN};

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

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// The check of one event, collecting its errors.
struct Check<'a> {
    index: usize,
    errors: &'a mut Vec<EventError>,
    policy: UnknownFields,
}

impl Check<'_> {
    fn push(&mut self, field: &str, kind: EventErrorKind, message: String) {
        self.errors.push(EventError {
            index: self.index,
            field: field.to_string(),
            kind,
            message,
        });
    }

    /// Checks one object against its fields.
    fn object(&mut self, map: &Map<String, Value>, fields: &[FieldDef], prefix: &str) {
        if self.policy == UnknownFields::Reject {
            for key in map.keys().filter(|k| !fields.iter().any(|f| &f.name == *k)) {
                let path = join(prefix, key);
                self.push(
                    &path,
                    EventErrorKind::UnknownField,
                    format!("field `{path}` is not in the stream schema"),
                );
            }
        }
        for field in fields {
            let path = join(prefix, &field.name);
            match map.get(&field.name) {
                None if field.required => self.push(
                    &path,
                    EventErrorKind::MissingField,
                    format!("required field `{path}` is missing"),
                ),
                Some(Value::Null) if field.required => self.push(
                    &path,
                    EventErrorKind::NullValue,
                    format!("required field `{path}` is null"),
                ),
                None | Some(Value::Null) => {}
                Some(value) => self.value(value, &field.ty, &path),
            }
        }
    }

    fn value(&mut self, value: &Value, ty: &FieldType, path: &str) {
        let parse_failure = |this: &mut Self, message: String| {
            this.push(
                path,
                EventErrorKind::ParseFailure,
                format!("field `{path}`: {message}"),
            )
        };
        match (ty, value) {
            (FieldType::String, Value::String(_)) => {}
            (FieldType::Bool, Value::Bool(_)) => {}
            (FieldType::Float32 | FieldType::Float64, Value::Number(_)) => {}
            (FieldType::Int32, Value::Number(n)) => match n.as_i64() {
                Some(i) if i32::try_from(i).is_ok() => {}
                _ => parse_failure(self, format!("expected an int32, got `{n}`")),
            },
            (FieldType::Int64, Value::Number(n)) => {
                if n.as_i64().is_none() {
                    parse_failure(self, format!("expected an int64, got `{n}`"));
                }
            }
            (FieldType::Timestamp { .. }, Value::String(s)) => {
                if let Err(e) = chrono::DateTime::parse_from_rfc3339(s) {
                    parse_failure(
                        self,
                        format!("expected an RFC 3339 timestamp, got `{s}` ({e})"),
                    )
                }
            }
            (FieldType::Timestamp { unit }, Value::Number(n)) => {
                if timestamp_micros(n, *unit).is_none() {
                    parse_failure(self, format!("timestamp `{n}` is out of range"))
                }
            }
            (FieldType::Json, _) => {}
            (FieldType::Binary, Value::String(s)) => {
                if let Err(e) = base64::engine::general_purpose::STANDARD.decode(s.as_bytes()) {
                    parse_failure(self, format!("expected base64, got `{s}` ({e})"))
                }
            }
            (FieldType::List { items }, Value::Array(elements)) => {
                for (i, element) in elements.iter().enumerate() {
                    if !element.is_null() {
                        self.value(element, &items.ty, &format!("{path}[{i}]"));
                    }
                }
            }
            (FieldType::Struct { fields }, Value::Object(map)) => self.object(map, fields, path),
            (_, v) => {
                let message = format!("field `{path}`: expected {}, got {}", ty.name(), kind_of(v));
                self.push(path, EventErrorKind::TypeMismatch, message)
            }
        }
    }
}

fn timestamp_micros(n: &serde_json::Number, unit: TimestampUnit) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return i.checked_mul(unit.micros());
    }
    let f = n.as_f64()? * unit.micros() as f64;
    (f.is_finite() && f.abs() < i64::MAX as f64).then_some(f as i64)
}

#[cfg(test)]
mod tests {
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
}
