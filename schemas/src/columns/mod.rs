//! Decoding JSON events straight into Arrow column builders, in one pass.
//!
//! [`Columns`] mirrors a stream schema as a tree of builders. It is driven by
//! serde, so the same code decodes from a body's bytes (the fast path: no
//! intermediate `serde_json::Value`, keys matched and strings copied straight
//! from the body) and from already-parsed `Value`s (after JSON Schema
//! validation, or for the good events of a body that also had bad ones).
//! This module holds [`Columns`] and the seeds for a body and its events;
//! the builders are in `builders.rs`, the seeds that fill them from values
//! in `parse.rs`.
//!
//! It checks every value as it goes but does not explain: any problem (a
//! wrong type, a missing required field, an unknown field under `reject`, a
//! duplicate key, too many events) abandons the whole body with a terse
//! error, and the caller in `decode` falls back to parsing the events and
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

mod builders;
mod parse;

use std::fmt;
use std::sync::Arc;

use arrow::array::StringBuilder;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;
use serde_json::{Map, Value};

use self::builders::StructCol;
use self::parse::{refuse, Ctx};
use crate::event::{BodyFormat, UnknownFields};
use crate::schema::FieldDef;
use crate::{Error, Result};

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

#[cfg(test)]
mod tests;
