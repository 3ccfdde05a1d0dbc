//! What a body and its events are, as every stage sees them: how the
//! events are laid out, what happens to fields the schema lacks, and the
//! problems an event can have. (Decoding is `decode/` and `columns/`;
//! JSON Schema checks are `json_schema.rs`; all three use these.)

use std::fmt;

use serde::Serialize;

/// How the events in a body are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// A JSON array of events, or one JSON object.
    Json,
    /// One JSON event per line; blank lines are skipped.
    NdJson,
}

/// Why one event was refused. The names match the hosted service's user
/// error types, plus `unknown_field`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventErrorKind {
    MissingField,
    NullValue,
    TypeMismatch,
    ParseFailure,
    UnknownField,
    /// A JSON Schema constraint (`enum`, `pattern`, `minimum`, `format`, …).
    ConstraintViolation,
    /// A type a newer server names that this client does not know (never
    /// made here; clients read it so).
    #[serde(other)]
    Unknown,
}

impl EventErrorKind {
    /// The name answers and metrics give it (`type_mismatch`, …).
    pub fn name(self) -> &'static str {
        match self {
            EventErrorKind::MissingField => "missing_field",
            EventErrorKind::NullValue => "null_value",
            EventErrorKind::TypeMismatch => "type_mismatch",
            EventErrorKind::ParseFailure => "parse_failure",
            EventErrorKind::UnknownField => "unknown_field",
            EventErrorKind::ConstraintViolation => "constraint_violation",
            EventErrorKind::Unknown => "unknown",
        }
    }
}

/// One problem with one event of a request.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct EventError {
    /// Position of the event in the request, from 0.
    pub index: usize,
    /// Path of the offending field (`meta.tags[2]`); empty for the event itself.
    #[serde(default)]
    pub field: String,
    #[serde(rename = "type")]
    pub kind: EventErrorKind,
    pub message: String,
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event {}: {}", self.index, self.message)
    }
}

/// What happens to fields an event has but the schema does not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownFields {
    /// Refuse the request with an `unknown_field` error (the default).
    #[default]
    Reject,
    /// Remove them, and count them in the response.
    Drop,
    /// Keep them, as a JSON object keyed by field path, in the `_extra` column.
    Keep,
}

/// The column that holds unknown fields under [`UnknownFields::Keep`].
pub const EXTRA_COLUMN: &str = "_extra";
