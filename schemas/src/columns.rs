//! Decoding JSON events straight into Arrow column builders, in one pass.
//!
//! [`Columns`] mirrors a stream schema as a tree of builders. It is driven by
//! serde, so the same code decodes from a body's bytes (the fast path: no
//! intermediate `serde_json::Value`, keys matched and strings copied straight
//! from the body) and from already-parsed `Value`s (after JSON Schema
//! validation, or for the good events of a body that also had bad ones).
//!
//! It checks every value as it goes but does not explain: any problem (a
//! wrong type, a missing required field, an unknown field under `reject`, a
//! duplicate key, too many events) abandons the whole body with a terse
//! error, and the caller in `decode.rs` falls back to parsing the events and
//! walking them, which reports every problem with its event index and path.
//! Valid bodies, the common case, never pay for explanations; the fallback
//! also decodes through this module, so both paths produce the same columns.
//!
//! ```text
//!   body bytes ──serde_json──▶ Columns (builders) ──finish──▶ RecordBatch
//!        │ any problem
//!        ▼
//!   Vec<Value> ──check (every error, with paths)──▶ 400 / quarantine
//!        │ good events
//!        ▼
//!   Columns ──finish──▶ RecordBatch
//! ```
//!
//! A null struct's children are null too, required ones included: the
//! struct's own null masks them, as Arrow allows.

use std::fmt;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Float32Builder, Float64Builder, Int32Builder,
    Int64Builder, ListArray, NullBufferBuilder, StringBuilder, StructArray,
    TimestampMicrosecondBuilder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{FieldRef, Fields, SchemaRef};
use arrow::record_batch::RecordBatch;
use base64::Engine;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::event::{BodyFormat, UnknownFields};
use crate::schema::{arrow_fields, list_element, FieldDef, FieldType, TimestampUnit, UTC};
use crate::{Error, Result};

/// Why a body left the fast path. Never shown to users: the slow path
/// explains.
fn refuse<E: de::Error>(what: &str) -> E {
    E::custom(what)
}

/// Builders for the columns of one batch.
pub(crate) struct Columns {
    root: StructCol,
    /// The `_extra` column, under [`UnknownFields::Keep`].
    extra: Option<StringBuilder>,
    schema: SchemaRef,
    ctx: Ctx,
    rows: usize,
    max_events: usize,
}

/// State shared by the whole walk of one body.
struct Ctx {
    policy: UnknownFields,
    /// Unknown fields removed under [`UnknownFields::Drop`].
    dropped: usize,
    /// Unknown fields of the current event under [`UnknownFields::Keep`].
    extra: Map<String, Value>,
    /// Path of the value being decoded; kept only under `Keep`.
    path: String,
    /// Reused for base64 decoding.
    scratch: Vec<u8>,
}

impl Ctx {
    fn keep(&self) -> bool {
        self.policy == UnknownFields::Keep
    }
}

enum Col {
    Utf8(StringBuilder),
    Json(StringBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Bool(BooleanBuilder),
    Timestamp(TimestampMicrosecondBuilder, TimestampUnit),
    Binary(BinaryBuilder),
    List(Box<ListCol>),
    Struct(Box<StructCol>),
}

struct ListCol {
    element: FieldRef,
    item: Col,
    offsets: Vec<i32>,
    nulls: NullBufferBuilder,
}

struct StructCol {
    fields: Fields,
    children: Vec<Child>,
    nulls: NullBufferBuilder,
    /// `seen[i] == generation` when child `i` was set in the current object.
    seen: Vec<u32>,
    generation: u32,
}

struct Child {
    name: String,
    required: bool,
    col: Col,
}

impl Col {
    fn new(ty: &FieldType) -> Self {
        match ty {
            FieldType::String => Col::Utf8(StringBuilder::new()),
            FieldType::Json => Col::Json(StringBuilder::new()),
            FieldType::Int32 => Col::Int32(Int32Builder::new()),
            FieldType::Int64 => Col::Int64(Int64Builder::new()),
            FieldType::Float32 => Col::Float32(Float32Builder::new()),
            FieldType::Float64 => Col::Float64(Float64Builder::new()),
            FieldType::Bool => Col::Bool(BooleanBuilder::new()),
            FieldType::Timestamp { unit } => {
                Col::Timestamp(TimestampMicrosecondBuilder::new().with_timezone(UTC), *unit)
            }
            FieldType::Binary => Col::Binary(BinaryBuilder::new()),
            FieldType::List { items } => Col::List(Box::new(ListCol {
                element: list_element(items),
                item: Col::new(&items.ty),
                offsets: vec![0],
                nulls: NullBufferBuilder::new(0),
            })),
            FieldType::Struct { fields } => Col::Struct(Box::new(StructCol::new(fields))),
        }
    }

    fn append_null(&mut self) {
        match self {
            Col::Utf8(b) | Col::Json(b) => b.append_null(),
            Col::Int32(b) => b.append_null(),
            Col::Int64(b) => b.append_null(),
            Col::Float32(b) => b.append_null(),
            Col::Float64(b) => b.append_null(),
            Col::Bool(b) => b.append_null(),
            Col::Timestamp(b, _) => b.append_null(),
            Col::Binary(b) => b.append_null(),
            Col::List(l) => {
                let end = *l.offsets.last().expect("offsets start with 0");
                l.offsets.push(end);
                l.nulls.append_null();
            }
            Col::Struct(s) => {
                for child in &mut s.children {
                    child.col.append_null();
                }
                s.nulls.append_null();
            }
        }
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        Ok(match self {
            Col::Utf8(b) | Col::Json(b) => Arc::new(b.finish()),
            Col::Int32(b) => Arc::new(b.finish()),
            Col::Int64(b) => Arc::new(b.finish()),
            Col::Float32(b) => Arc::new(b.finish()),
            Col::Float64(b) => Arc::new(b.finish()),
            Col::Bool(b) => Arc::new(b.finish()),
            Col::Timestamp(b, _) => Arc::new(b.finish()),
            Col::Binary(b) => Arc::new(b.finish()),
            Col::List(l) => {
                let offsets = OffsetBuffer::new(std::mem::replace(&mut l.offsets, vec![0]).into());
                let values = l.item.finish()?;
                Arc::new(
                    ListArray::try_new(l.element.clone(), offsets, values, l.nulls.finish())
                        .map_err(|e| Error::Internal(format!("building a list column: {e}")))?,
                )
            }
            Col::Struct(s) => Arc::new(s.finish()?),
        })
    }
}

impl StructCol {
    fn new(fields: &[FieldDef]) -> Self {
        StructCol {
            fields: arrow_fields(fields),
            children: fields
                .iter()
                .map(|f| Child {
                    name: f.name.clone(),
                    required: f.required,
                    col: Col::new(&f.ty),
                })
                .collect(),
            nulls: NullBufferBuilder::new(0),
            seen: vec![0; fields.len()],
            generation: 0,
        }
    }

    fn columns(&mut self) -> Result<Vec<ArrayRef>> {
        self.children.iter_mut().map(|c| c.col.finish()).collect()
    }

    fn finish(&mut self) -> Result<StructArray> {
        let columns = self.columns()?;
        StructArray::try_new(self.fields.clone(), columns, self.nulls.finish())
            .map_err(|e| Error::Internal(format!("building a struct column: {e}")))
    }

    /// Decodes one object's entries into the children; the caller records
    /// the object's own validity.
    fn object<'de, A: MapAccess<'de>>(
        &mut self,
        map: &mut A,
        ctx: &mut Ctx,
    ) -> std::result::Result<(), A::Error> {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.seen.fill(0);
            self.generation = 1;
        }
        let keep = ctx.keep();
        // Unknown names dropped from this object: a key repeated in one
        // object is one field, as parsed JSON (the slow path) has it.
        let mut dropped_here: Vec<String> = Vec::new();
        while let Some(key) = map.next_key_seed(KeySeed {
            children: &self.children,
            names: ctx.policy != UnknownFields::Reject,
        })? {
            match key {
                Key::Known(i) => {
                    if self.seen[i] == self.generation {
                        return Err(refuse("a key appears twice"));
                    }
                    self.seen[i] = self.generation;
                    let child = &mut self.children[i];
                    let len = ctx.path.len();
                    if keep {
                        push_name(&mut ctx.path, &child.name);
                    }
                    map.next_value_seed(ValueSeed {
                        col: &mut child.col,
                        nullable: !child.required,
                        ctx: &mut *ctx,
                    })?;
                    ctx.path.truncate(len);
                }
                Key::Unknown(name) => match ctx.policy {
                    UnknownFields::Reject => return Err(refuse("an unknown field")),
                    UnknownFields::Drop => {
                        map.next_value::<IgnoredAny>()?;
                        if !dropped_here.contains(&name) {
                            ctx.dropped += 1;
                            dropped_here.push(name);
                        }
                    }
                    UnknownFields::Keep => {
                        let value: Value = map.next_value()?;
                        let mut path = ctx.path.clone();
                        push_name(&mut path, &name);
                        ctx.extra.insert(path, value);
                    }
                },
            }
        }
        for (i, child) in self.children.iter_mut().enumerate() {
            if self.seen[i] != self.generation {
                if child.required {
                    return Err(refuse("a required field is missing"));
                }
                child.col.append_null();
            }
        }
        Ok(())
    }
}

fn push_name(path: &mut String, name: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(name);
}

impl Columns {
    /// Builders for `fields`, producing batches of `schema` (the fields, plus
    /// `_extra` under [`UnknownFields::Keep`]).
    pub(crate) fn new(
        fields: &[FieldDef],
        schema: SchemaRef,
        policy: UnknownFields,
        max_events: usize,
    ) -> Self {
        Columns {
            root: StructCol::new(fields),
            extra: (policy == UnknownFields::Keep).then(StringBuilder::new),
            schema,
            ctx: Ctx {
                policy,
                dropped: 0,
                extra: Map::new(),
                path: String::new(),
                scratch: Vec::new(),
            },
            rows: 0,
            max_events,
        }
    }

    /// Decodes a whole body. `Err` means "not a valid body": fall back to the
    /// slow path for the reasons.
    pub(crate) fn body(&mut self, body: &[u8], format: BodyFormat) -> serde_json::Result<()> {
        match format {
            BodyFormat::Json => {
                let mut de = serde_json::Deserializer::from_slice(body);
                de.deserialize_any(BodySeed { cols: self })?;
                de.end()
            }
            BodyFormat::NdJson => {
                for line in body.split(|b| *b == b'\n') {
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let mut de = serde_json::Deserializer::from_slice(line);
                    self.event(&mut de)?;
                    de.end()?;
                }
                Ok(())
            }
        }
    }

    /// Decodes one parsed event.
    pub(crate) fn value(&mut self, event: &Value) -> serde_json::Result<()> {
        self.event(event)
    }

    fn event<'de, D: Deserializer<'de>>(&mut self, de: D) -> std::result::Result<(), D::Error> {
        de.deserialize_map(EventSeed { cols: self })
    }

    fn event_entries<'de, A: MapAccess<'de>>(
        &mut self,
        mut map: A,
    ) -> std::result::Result<(), A::Error> {
        self.rows += 1;
        if self.rows > self.max_events {
            return Err(refuse("too many events"));
        }
        self.root.object(&mut map, &mut self.ctx)?;
        if let Some(extra) = &mut self.extra {
            if self.ctx.extra.is_empty() {
                extra.append_null();
            } else {
                let fields = std::mem::take(&mut self.ctx.extra);
                extra.append_value(Value::Object(fields).to_string());
            }
        }
        Ok(())
    }

    /// The events decoded so far.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// The batch of every event decoded, and how many unknown fields were
    /// dropped.
    pub(crate) fn finish(mut self) -> Result<(RecordBatch, usize)> {
        let mut columns = self.root.columns()?;
        if let Some(extra) = &mut self.extra {
            columns.push(Arc::new(extra.finish()));
        }
        let batch = RecordBatch::try_new(self.schema, columns)
            .map_err(|e| Error::Internal(format!("building the batch: {e}")))?;
        Ok((batch, self.ctx.dropped))
    }
}

/// A body: an array of events or one event.
struct BodySeed<'a> {
    cols: &'a mut Columns,
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of events or one event")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while seq
            .next_element_seed(EventSeed {
                cols: &mut *self.cols,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<(), A::Error> {
        self.cols.event_entries(map)
    }
}

/// One event: an object.
struct EventSeed<'a> {
    cols: &'a mut Columns,
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> std::result::Result<(), D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EventSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<(), A::Error> {
        self.cols.event_entries(map)
    }
}

enum Key {
    Known(usize),
    /// The name is kept only when `KeySeed::names` (not under
    /// [`UnknownFields::Reject`], which refuses it anyway).
    Unknown(String),
}

struct KeySeed<'a> {
    children: &'a [Child],
    names: bool,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> std::result::Result<Key, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> std::result::Result<Key, E> {
        Ok(match self.children.iter().position(|c| c.name == key) {
            Some(i) => Key::Known(i),
            None if self.names => Key::Unknown(key.to_string()),
            None => Key::Unknown(String::new()),
        })
    }
}

/// One value into one column.
struct ValueSeed<'a> {
    col: &'a mut Col,
    nullable: bool,
    ctx: &'a mut Ctx,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> std::result::Result<(), D::Error> {
        if let Col::Json(b) = self.col {
            // The value's compact text, exactly as `Value::to_string` writes it.
            return match Value::deserialize(de)? {
                Value::Null if self.nullable => {
                    b.append_null();
                    Ok(())
                }
                Value::Null => Err(refuse("a required field is null")),
                v => {
                    b.append_value(v.to_string());
                    Ok(())
                }
            };
        }
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value of the field's type")
    }

    fn visit_unit<E: de::Error>(self) -> std::result::Result<(), E> {
        if !self.nullable {
            return Err(refuse("a required field is null"));
        }
        self.col.append_null();
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> std::result::Result<(), E> {
        self.visit_unit()
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<(), E> {
        match self.col {
            Col::Bool(b) => b.append_value(v),
            _ => return Err(refuse("type mismatch")),
        }
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<(), E> {
        match self.col {
            Col::Int32(b) => b.append_value(i32::try_from(v).map_err(|_| refuse("out of range"))?),
            Col::Int64(b) => b.append_value(v),
            Col::Float32(b) => b.append_value(v as f32),
            Col::Float64(b) => b.append_value(v as f64),
            Col::Timestamp(b, unit) => b.append_value(
                v.checked_mul(unit.micros())
                    .ok_or_else(|| refuse("out of range"))?,
            ),
            _ => return Err(refuse("type mismatch")),
        }
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<(), E> {
        match self.col {
            Col::Float32(b) => b.append_value(v as f32),
            Col::Float64(b) => b.append_value(v as f64),
            _ => self.visit_i64(i64::try_from(v).map_err(|_| refuse("out of range"))?)?,
        }
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<(), E> {
        match self.col {
            Col::Float32(b) => b.append_value(v as f32),
            Col::Float64(b) => b.append_value(v),
            Col::Timestamp(b, unit) => {
                let micros = v * unit.micros() as f64;
                if !(micros.is_finite() && micros.abs() < i64::MAX as f64) {
                    return Err(refuse("out of range"));
                }
                b.append_value(micros as i64)
            }
            _ => return Err(refuse("type mismatch")),
        }
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<(), E> {
        match self.col {
            Col::Utf8(b) => b.append_value(v),
            Col::Timestamp(b, _) => b.append_value(
                chrono::DateTime::parse_from_rfc3339(v)
                    .map_err(|_| refuse("not RFC 3339"))?
                    .timestamp_micros(),
            ),
            Col::Binary(b) => {
                self.ctx.scratch.clear();
                base64::engine::general_purpose::STANDARD
                    .decode_vec(v.as_bytes(), &mut self.ctx.scratch)
                    .map_err(|_| refuse("not base64"))?;
                b.append_value(&self.ctx.scratch)
            }
            _ => return Err(refuse("type mismatch")),
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        let Col::List(list) = self.col else {
            return Err(refuse("type mismatch"));
        };
        let keep = self.ctx.keep();
        let len = self.ctx.path.len();
        let mut end = *list.offsets.last().expect("offsets start with 0");
        loop {
            if keep {
                use std::fmt::Write;
                let _ = write!(self.ctx.path, "[{}]", end - list.offsets.last().unwrap());
            }
            let more = seq
                .next_element_seed(ValueSeed {
                    col: &mut list.item,
                    nullable: true,
                    ctx: &mut *self.ctx,
                })?
                .is_some();
            self.ctx.path.truncate(len);
            if !more {
                break;
            }
            end = end
                .checked_add(1)
                .ok_or_else(|| refuse("a list column over 2^31 elements"))?;
        }
        list.offsets.push(end);
        list.nulls.append_non_null();
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let Col::Struct(s) = self.col else {
            return Err(refuse("type mismatch"));
        };
        s.object(&mut map, self.ctx)?;
        s.nulls.append_non_null();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::StreamSchema;
    use arrow::array::{Array, AsArray};
    use proptest::prelude::*;

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

    /// What the decoder did before `columns.rs`, kept as an independent
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
        let body =
            r#"[{"id":"a","zz":{"q":0},"zz":{"q":0},"meta":{"source":"s","y":1,"y":2},"w":1}]"#;
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
}
