//! The slow path's check: walks one parsed event against the schema's
//! fields and reports every problem (missing, null, unknown, mistyped or
//! unparsable fields) with its path, where the fast path in `columns` only
//! refuses.

use base64::Engine;
use serde_json::{Map, Value};

use crate::event::{EventError, EventErrorKind, UnknownFields};
use crate::schema::{FieldDef, FieldType, TimestampUnit};

pub(super) fn kind_of(v: &Value) -> &'static str {
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
pub(super) struct Check<'a> {
    pub(super) index: usize,
    pub(super) errors: &'a mut Vec<EventError>,
    pub(super) policy: UnknownFields,
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
    pub(super) fn object(&mut self, map: &Map<String, Value>, fields: &[FieldDef], prefix: &str) {
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
