//! The serde side of decoding: seeds that take one JSON value (or one
//! object's entries) straight into the builders of `builders.rs`, checking
//! types, required fields and unknown fields as they go, and the [`Ctx`]
//! they share over the walk of one body. Any problem is a terse [`refuse`]:
//! the slow path in `decode` explains.

use std::fmt;

use base64::Engine;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::builders::{Child, Col, StructCol};
use crate::event::UnknownFields;

/// State shared by the whole walk of one body.
pub(super) struct Ctx {
    pub(super) policy: UnknownFields,
    /// Unknown fields removed under [`UnknownFields::Drop`].
    pub(super) dropped: usize,
    /// Unknown fields of the current event under [`UnknownFields::Keep`].
    pub(super) extra: Map<String, Value>,
    /// Path of the value being decoded; kept only under `Keep`.
    pub(super) path: String,
    /// Reused for base64 decoding.
    pub(super) scratch: Vec<u8>,
}

impl Ctx {
    fn keep(&self) -> bool {
        self.policy == UnknownFields::Keep
    }
}

/// Why a body left the fast path. Never shown to users: the slow path
/// explains.
pub(super) fn refuse<E: de::Error>(what: &str) -> E {
    E::custom(what)
}

impl StructCol {
    /// Decodes one object's entries into the children; the caller records
    /// the object's own validity.
    pub(super) fn object<'de, A: MapAccess<'de>>(
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
