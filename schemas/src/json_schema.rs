//! Streams defined by a JSON Schema document instead of the Pipelines field
//! format.
//!
//! The document is mapped to a [`StreamSchema`] (so the columns and their
//! Arrow / Iceberg types are the same as for a Pipelines schema), and every
//! event is also checked by the `jsonschema` crate (formats on), so the
//! constraints the Pipelines format cannot say (`enum`, `pattern`,
//! `minimum`, `maxLength`, …) are enforced too.
//!
//! | JSON Schema                                   | column type |
//! |-----------------------------------------------|-------------|
//! | `"type": "string"`                            | `string`    |
//! | `"type": "string", "format": "date-time"`     | `timestamp` |
//! | `"type": "string", "contentEncoding": "base64"` | `binary`  |
//! | `"type": "integer"`                           | `int64`     |
//! | `"type": "number"`                            | `float64`   |
//! | `"type": "boolean"`                           | `bool`      |
//! | `"type": "array"` with `items`                | `list`      |
//! | `"type": "object"` with `properties`          | `struct`    |
//! | an object without `properties`, or anything else | `json`   |
//!
//! `required` makes a property required unless its type also allows
//! `"null"` (`"type": ["string", "null"]`). Columns keep the order of
//! `properties`.

use std::sync::Arc;

use serde_json::Value;

use crate::event::{EventError, EventErrorKind};
use crate::schema::{FieldDef, FieldType, ItemType, StreamSchema, TimestampUnit};
use crate::{Error, Result};

/// A compiled JSON Schema and the stream schema it maps to.
#[derive(Debug, Clone)]
pub struct JsonSchema {
    pub(crate) validator: Arc<jsonschema::Validator>,
    /// The columns the document maps to.
    pub schema: StreamSchema,
}

impl JsonSchema {
    /// Parses, compiles and maps a JSON Schema document.
    pub fn from_json(text: &str) -> Result<JsonSchema> {
        let doc: Value = serde_json::from_str(text)
            .map_err(|e| Error::InvalidSchema(format!("not JSON: {e}")))?;
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&doc)
            .map_err(|e| Error::InvalidSchema(format!("not a valid JSON Schema: {e}")))?;
        let fields = object_fields(&doc, "")?.ok_or_else(|| {
            Error::InvalidSchema(
                "the top level must be `\"type\": \"object\"` with `properties`".into(),
            )
        })?;
        let schema = StreamSchema { fields };
        schema.check()?;
        Ok(JsonSchema {
            validator: Arc::new(validator),
            schema,
        })
    }

    /// Every violation of the document by one event.
    pub(crate) fn errors(&self, index: usize, event: &Value) -> Vec<EventError> {
        self.validator
            .iter_errors(event)
            .map(|e| {
                let at = pointer_to_path(e.instance_path().as_str());
                let (kind, field) = match e.kind() {
                    jsonschema::error::ValidationErrorKind::Required { property } => (
                        EventErrorKind::MissingField,
                        join(&at, property.as_str().unwrap_or_default()),
                    ),
                    jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                        (
                            EventErrorKind::UnknownField,
                            join(
                                &at,
                                unexpected.first().map(String::as_str).unwrap_or_default(),
                            ),
                        )
                    }
                    jsonschema::error::ValidationErrorKind::Type { .. } => {
                        (EventErrorKind::TypeMismatch, at)
                    }
                    _ => (EventErrorKind::ConstraintViolation, at),
                };
                let message = if field.is_empty() {
                    e.to_string()
                } else {
                    format!("field `{field}`: {e}")
                };
                EventError {
                    index,
                    field,
                    kind,
                    message,
                }
            })
            .collect()
    }
}

fn join(prefix: &str, name: &str) -> String {
    match (prefix.is_empty(), name.is_empty()) {
        (true, _) => name.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}.{name}"),
    }
}

/// `/meta/tags/2` → `meta.tags[2]`.
fn pointer_to_path(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.parse::<usize>().is_ok() {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&segment);
        }
    }
    out
}

/// The fields of an object schema with `properties`, or `None`.
fn object_fields(schema: &Value, path: &str) -> Result<Option<Vec<FieldDef>>> {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return Ok(None);
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut fields = Vec::new();
    for (name, property) in properties {
        let here = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        let (ty, nullable) = field_type(property, &here)?;
        fields.push(FieldDef {
            name: name.clone(),
            ty,
            required: required.contains(&name.as_str()) && !nullable,
        });
    }
    Ok(Some(fields))
}

/// The column type of a property, and whether its type allows `null`.
fn field_type(schema: &Value, path: &str) -> Result<(FieldType, bool)> {
    let (ty, nullable) = match schema.get("type") {
        Some(Value::String(t)) => (Some(t.as_str()), false),
        Some(Value::Array(types)) => {
            let non_null: Vec<&str> = types
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .collect();
            let nullable = non_null.len() < types.len();
            match non_null.as_slice() {
                [one] => (Some(*one), nullable),
                // A union of several types is kept as JSON.
                _ => (None, nullable),
            }
        }
        _ if schema.get("properties").is_some() => (Some("object"), false),
        _ if schema.get("items").is_some() => (Some("array"), false),
        _ => (None, false),
    };
    let ty = match ty {
        Some("string") => match (
            schema.get("format").and_then(Value::as_str),
            schema.get("contentEncoding").and_then(Value::as_str),
        ) {
            (Some("date-time"), _) => FieldType::Timestamp {
                unit: TimestampUnit::default(),
            },
            (_, Some("base64")) => FieldType::Binary,
            _ => FieldType::String,
        },
        Some("integer") => FieldType::Int64,
        Some("number") => FieldType::Float64,
        Some("boolean") => FieldType::Bool,
        Some("array") => {
            let items = match schema.get("items") {
                Some(items) if items.is_object() => field_type(items, &format!("{path}[]"))?.0,
                _ => FieldType::Json,
            };
            FieldType::List {
                items: Box::new(ItemType { ty: items }),
            }
        }
        Some("object") => match object_fields(schema, path)? {
            Some(fields) if !fields.is_empty() => FieldType::Struct { fields },
            _ => FieldType::Json,
        },
        _ => FieldType::Json,
    };
    Ok((ty, nullable))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BodyFormat, Decoded, EventDecoder};

    const DOC: &str = r#"{
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

    #[test]
    fn maps_types_in_declared_order() {
        let js = JsonSchema::from_json(DOC).unwrap();
        let summary: Vec<(String, &str, bool)> = js
            .schema
            .fields
            .iter()
            .map(|f| (f.name.clone(), f.ty.name(), f.required))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("user_id".into(), "string", true),
                ("plan".into(), "json", false),
                ("seats".into(), "int64", true),
                ("price".into(), "float64", false),
                ("at".into(), "timestamp", false),
                ("tags".into(), "list", false),
                ("meta".into(), "struct", false),
            ]
        );
    }

    #[test]
    fn constraints_are_enforced_with_paths() {
        let d = EventDecoder::new(None).with_json_schema(JsonSchema::from_json(DOC).unwrap());
        let ok = br#"[{"user_id":"u1","seats":2,"price":null,"at":"2025-01-01T00:00:00Z","tags":["a"],"meta":{"source":"x"},"plan":"pro"}]"#;
        match d.decode(ok, BodyFormat::Json).unwrap() {
            Decoded::Batch { batch, .. } => assert_eq!(batch.num_rows(), 1),
            Decoded::Rejected(e) => panic!("{e:?}"),
        }
        let bad = br#"[{"user_id":"x1","seats":0,"price":1,"plan":"gold","at":"soon","meta":{},"extra":1}]"#;
        let Decoded::Rejected(errors) = d.decode(bad, BodyFormat::Json).unwrap() else {
            panic!("accepted");
        };
        let mut got: Vec<(String, EventErrorKind)> =
            errors.iter().map(|e| (e.field.clone(), e.kind)).collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            vec![
                ("at".into(), EventErrorKind::ConstraintViolation),
                ("extra".into(), EventErrorKind::UnknownField),
                ("meta.source".into(), EventErrorKind::MissingField),
                ("plan".into(), EventErrorKind::ConstraintViolation),
                ("seats".into(), EventErrorKind::ConstraintViolation),
                ("user_id".into(), EventErrorKind::ConstraintViolation),
            ]
        );
    }

    #[test]
    fn bad_documents() {
        for (doc, want) in [
            ("nope", "not JSON"),
            (r#"{"type":"string"}"#, "top level"),
            (
                r#"{"type":"object","properties":{"a":{"type":"string","pattern":"("}}}"#,
                "not a valid JSON Schema",
            ),
        ] {
            let err = JsonSchema::from_json(doc).unwrap_err().to_string();
            assert!(err.contains(want), "{doc}: {err}");
        }
        assert_eq!(pointer_to_path("/meta/tags/2"), "meta.tags[2]");
    }
}
