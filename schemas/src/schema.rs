//! The stream schema: the Pipelines field format and its Arrow mapping.
//!
//! A schema file is the JSON document the hosted service takes:
//!
//! ```json
//! {"fields": [
//!   {"name": "user_id", "type": "string", "required": true},
//!   {"name": "tags", "type": "list", "items": {"type": "string"}},
//!   {"name": "meta", "type": "struct", "fields": [{"name": "source", "type": "string"}]},
//!   {"name": "ts", "type": "timestamp", "unit": "ms"}
//! ]}
//! ```
//!
//! | Pipelines type | Arrow type                         | Iceberg type  | JSON accepted                                  |
//! |----------------|------------------------------------|---------------|------------------------------------------------|
//! | `string`       | `Utf8`                             | `string`      | string                                         |
//! | `int32`        | `Int32`                            | `int`         | integer in range                               |
//! | `int64`        | `Int64`                            | `long`        | integer in range                               |
//! | `float32`      | `Float32`                          | `float`       | number                                         |
//! | `float64`      | `Float64`                          | `double`      | number                                         |
//! | `bool`         | `Boolean`                          | `boolean`     | `true` / `false`                               |
//! | `timestamp`    | `Timestamp(Microsecond, "+00:00")` | `timestamptz` | RFC 3339 string, or a number in the field's `unit` (`s`, `ms` default, `us`) |
//! | `json`         | `Utf8` (the JSON text)             | `string`      | any JSON value                                 |
//! | `binary`       | `Binary`                           | `binary`      | base64 string                                  |
//! | `list`         | `List(items)`                      | `list`        | array                                          |
//! | `struct`       | `Struct(fields)`                   | `struct`      | object                                         |
//!
//! `required` maps to non-nullable / Iceberg `required`. The snapshot tests
//! `arrow_mapping_snapshot` (here) and `iceberg_mapping_snapshot` (sink) pin
//! this table.
//!
//! A stream without a schema is *unstructured*: every event is kept whole in
//! one `value` column holding its JSON text.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The time zone every timestamp column carries: instants, stored as UTC.
pub const UTC: &str = "+00:00";

/// The column of an unstructured stream.
pub const VALUE_COLUMN: &str = "value";

/// The column every accepted event carries: when `pipe` accepted it.
pub const INGEST_TS_COLUMN: &str = "__ingest_ts";

/// The Arrow type of [`INGEST_TS_COLUMN`].
pub fn ingest_ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
}

/// A stream schema in the Pipelines field format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSchema {
    /// The top-level fields of every event.
    pub fields: Vec<FieldDef>,
}

/// One named field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldDef {
    /// Field name, unique among its siblings.
    pub name: String,
    /// The field's type, with the keys that type needs (`items`, `fields`, `unit`).
    #[serde(flatten)]
    pub ty: FieldType,
    /// Whether every event must carry a non-null value.
    #[serde(default)]
    pub required: bool,
}

/// A type in the Pipelines field format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum FieldType {
    String,
    Int32,
    Int64,
    Float32,
    Float64,
    Bool,
    Timestamp {
        /// Unit of numeric timestamps; strings are always RFC 3339.
        #[serde(default)]
        unit: TimestampUnit,
    },
    Json,
    Binary,
    List {
        /// The element type.
        items: Box<ItemType>,
    },
    Struct {
        /// The nested fields.
        fields: Vec<FieldDef>,
    },
}

/// The element of a list: a type without a name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemType {
    #[serde(flatten)]
    pub ty: FieldType,
}

/// Unit of a numeric timestamp.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimestampUnit {
    S,
    #[default]
    Ms,
    Us,
}

impl TimestampUnit {
    /// Microseconds in one unit.
    pub fn micros(self) -> i64 {
        match self {
            TimestampUnit::S => 1_000_000,
            TimestampUnit::Ms => 1_000,
            TimestampUnit::Us => 1,
        }
    }
}

impl FieldType {
    /// The type's name as written in a schema file.
    pub fn name(&self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Int32 => "int32",
            FieldType::Int64 => "int64",
            FieldType::Float32 => "float32",
            FieldType::Float64 => "float64",
            FieldType::Bool => "bool",
            FieldType::Timestamp { .. } => "timestamp",
            FieldType::Json => "json",
            FieldType::Binary => "binary",
            FieldType::List { .. } => "list",
            FieldType::Struct { .. } => "struct",
        }
    }

    /// The Arrow type values of this type decode into.
    pub fn arrow_type(&self) -> DataType {
        match self {
            FieldType::String | FieldType::Json => DataType::Utf8,
            FieldType::Int32 => DataType::Int32,
            FieldType::Int64 => DataType::Int64,
            FieldType::Float32 => DataType::Float32,
            FieldType::Float64 => DataType::Float64,
            FieldType::Bool => DataType::Boolean,
            FieldType::Timestamp { .. } => {
                DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
            }
            FieldType::Binary => DataType::Binary,
            FieldType::List { items } => DataType::List(list_element(items)),
            FieldType::Struct { fields } => DataType::Struct(arrow_fields(fields)),
        }
    }
}

/// The element field of a list's Arrow type: `element`, nullable.
pub(crate) fn list_element(items: &ItemType) -> Arc<Field> {
    Arc::new(Field::new("element", items.ty.arrow_type(), true))
}

/// The Arrow fields of a struct (or of a whole event).
pub(crate) fn arrow_fields(fields: &[FieldDef]) -> Fields {
    fields
        .iter()
        .map(|f| Field::new(&f.name, f.ty.arrow_type(), !f.required))
        .collect()
}

impl StreamSchema {
    /// Parses and checks a schema file's text.
    pub fn from_json(text: &str) -> Result<Self> {
        let schema: StreamSchema =
            serde_json::from_str(text).map_err(|e| Error::InvalidSchema(e.to_string()))?;
        schema.check()?;
        Ok(schema)
    }

    /// Checks names: present and unique among siblings, at every depth.
    pub fn check(&self) -> Result<()> {
        if self.fields.is_empty() {
            return Err(Error::InvalidSchema("`fields` must not be empty".into()));
        }
        if let Some(f) = self.fields.iter().find(|f| f.name.starts_with("__")) {
            return Err(Error::InvalidSchema(format!(
                "field `{}`: names starting with `__` are reserved for columns pipe adds",
                f.name
            )));
        }
        check_fields(&self.fields, "")
    }

    /// The Arrow schema of decoded batches.
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(arrow_fields(&self.fields)))
    }

    /// The Arrow schema of an unstructured stream: one `value` column.
    pub fn unstructured_arrow_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new(
            VALUE_COLUMN,
            DataType::Utf8,
            false,
        )]))
    }
}

fn check_fields(fields: &[FieldDef], prefix: &str) -> Result<()> {
    let mut seen = HashSet::new();
    for f in fields {
        let path = format!("{prefix}{}", f.name);
        if f.name.is_empty() {
            return Err(Error::InvalidSchema(format!(
                "a field under `{prefix}` has an empty name"
            )));
        }
        if !seen.insert(f.name.as_str()) {
            return Err(Error::InvalidSchema(format!(
                "field `{path}` is defined twice"
            )));
        }
        check_type(&f.ty, &path)?;
    }
    Ok(())
}

fn check_type(ty: &FieldType, path: &str) -> Result<()> {
    match ty {
        FieldType::Struct { fields } if fields.is_empty() => Err(Error::InvalidSchema(format!(
            "struct field `{path}` has no fields"
        ))),
        FieldType::Struct { fields } => check_fields(fields, &format!("{path}.")),
        FieldType::List { items } => check_type(&items.ty, &format!("{path}[]")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECOMMERCE: &str = r#"{"fields":[
        {"name":"user_id","type":"string","required":true},
        {"name":"event_type","type":"string","required":true},
        {"name":"product_id","type":"string","required":false},
        {"name":"amount","type":"float64","required":false}]}"#;

    #[test]
    fn parses_getting_started_schema() {
        let s = StreamSchema::from_json(ECOMMERCE).unwrap();
        let arrow = s.arrow_schema();
        assert_eq!(arrow.fields().len(), 4);
        assert!(!arrow.field(0).is_nullable());
        assert_eq!(arrow.field(3).data_type(), &DataType::Float64);
        assert!(arrow.field(3).is_nullable());
    }

    #[test]
    fn parses_nested_types() {
        let s = StreamSchema::from_json(
            r#"{"fields":[
            {"name":"tags","type":"list","items":{"type":"string"}},
            {"name":"meta","type":"struct","fields":[{"name":"p","type":"int32","required":true}]},
            {"name":"ts","type":"timestamp","unit":"s"}]}"#,
        )
        .unwrap();
        assert_eq!(
            s.fields[2].ty,
            FieldType::Timestamp {
                unit: TimestampUnit::S
            }
        );
        let arrow = s.arrow_schema();
        assert!(matches!(arrow.field(0).data_type(), DataType::List(_)));
        assert!(matches!(arrow.field(1).data_type(), DataType::Struct(f) if !f[0].is_nullable()));
    }

    /// The one-way mapping of every Pipelines type to Arrow.
    #[test]
    fn arrow_mapping_snapshot() {
        let s = StreamSchema::from_json(
            r#"{"fields":[
            {"name":"s","type":"string","required":true},
            {"name":"i32","type":"int32"},{"name":"i64","type":"int64"},
            {"name":"f32","type":"float32"},{"name":"f64","type":"float64"},
            {"name":"b","type":"bool"},{"name":"ts","type":"timestamp","unit":"s"},
            {"name":"doc","type":"json"},{"name":"raw","type":"binary"},
            {"name":"tags","type":"list","items":{"type":"int32"}},
            {"name":"meta","type":"struct","fields":[{"name":"k","type":"string","required":true}]}]}"#,
        )
        .unwrap();
        let mapping: Vec<String> = s
            .arrow_schema()
            .fields()
            .iter()
            .map(|f| {
                format!(
                    "{}: {} {}",
                    f.name(),
                    f.data_type(),
                    if f.is_nullable() { "null" } else { "not null" }
                )
            })
            .collect();
        insta::assert_snapshot!(mapping.join("\n"), @r#"
        s: Utf8 not null
        i32: Int32 null
        i64: Int64 null
        f32: Float32 null
        f64: Float64 null
        b: Boolean null
        ts: Timestamp(µs, "+00:00") null
        doc: Utf8 null
        raw: Binary null
        tags: List(Int32, field: 'element') null
        meta: Struct("k": non-null Utf8) null
        "#);
    }

    #[test]
    fn rejects_bad_schemas() {
        for (text, want) in [
            (r#"{"fields":[]}"#, "must not be empty"),
            (
                r#"{"fields":[{"name":"a","type":"string"},{"name":"a","type":"int32"}]}"#,
                "defined twice",
            ),
            (
                r#"{"fields":[{"name":"a","type":"varchar"}]}"#,
                "unknown variant",
            ),
            (
                r#"{"fields":[{"name":"a","type":"list"}]}"#,
                "missing field `items`",
            ),
            (
                r#"{"fields":[{"name":"a","type":"struct","fields":[]}]}"#,
                "no fields",
            ),
        ] {
            let err = StreamSchema::from_json(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
