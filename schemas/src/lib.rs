//! Stream schemas for `pipe`: what an event must look like, and how a request
//! body becomes an Arrow [`RecordBatch`](arrow::record_batch::RecordBatch).
//!
//! - [`StreamSchema`]: the Pipelines field format (`{"fields": [...]}`) and
//!   its one-way mapping to Arrow types (table in [`schema`]).
//! - [`EventDecoder`]: parses a body (JSON array, object or NDJSON), checks
//!   every event, and either decodes them all into one batch or returns every
//!   [`EventError`] with the event's index, field path and reason.
//!
//! This crate does no IO.
//!
//! ```
//! use pipe_schemas::{BodyFormat, Decoded, EventDecoder, StreamSchema};
//!
//! let schema = StreamSchema::from_json(
//!     r#"{"fields":[{"name":"user_id","type":"string","required":true}]}"#,
//! ).unwrap();
//! let decoder = EventDecoder::new(Some(schema));
//! match decoder.decode(br#"[{"user_id":"u1"},{}]"#, BodyFormat::Json).unwrap() {
//!     Decoded::Rejected(errors) => assert_eq!(errors[0].index, 1),
//!     Decoded::Batch { .. } => unreachable!("event 1 lacks `user_id`"),
//! }
//! ```

mod columns;
pub mod decode;
mod event;
pub mod evolution;
pub mod json_schema;
pub mod schema;

pub use decode::{
    now_micros, quarantine_batch, quarantine_schema, stamp_ingest_ts, BodyFormat, Decoded,
    EventDecoder, EventError, EventErrorKind, QuarantinedEvent, Split, UnknownFields, EXTRA_COLUMN,
};
pub use json_schema::JsonSchema;
pub use schema::{FieldDef, FieldType, StreamSchema, TimestampUnit, INGEST_TS_COLUMN};

/// What kind of failure an error is: decides HTTP statuses and exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller sent something wrong; retrying the same thing fails again.
    InvalidInput,
    /// The named thing does not exist.
    NotFound,
    /// The request conflicts with the current state.
    Conflict,
    /// Temporarily unable; retrying later may succeed.
    Unavailable,
    /// The caller may not do this (missing or wrong credentials).
    Unauthorized,
    /// The request is over a size or count limit.
    TooLarge,
    /// The request did not arrive in time.
    TimedOut,
    /// A bug or a broken invariant.
    Internal,
}

impl ErrorKind {
    /// Every kind.
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::InvalidInput,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::Unavailable,
        ErrorKind::Unauthorized,
        ErrorKind::TooLarge,
        ErrorKind::TimedOut,
        ErrorKind::Internal,
    ];

    /// Whether retrying the same request later may succeed.
    pub fn retryable(self) -> bool {
        matches!(self, ErrorKind::Unavailable | ErrorKind::Conflict)
    }

    /// The kind's name in error answers (`{"error": {"kind": …}}`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::TimedOut => "timed_out",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }

    /// The kind named `name` (see [`ErrorKind::name`]).
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The HTTP status of an answer of this kind. The only place that
    /// decides it.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidInput => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::TooLarge => 413,
            ErrorKind::TimedOut => 408,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }

    /// The kind of an answer with HTTP status `status` that names none
    /// (a proxy's, or another server's): the inverse of
    /// [`ErrorKind::http_status`], other 4xx being bad input and other
    /// 5xx (and 429) unavailable.
    pub fn from_http_status(status: u16) -> ErrorKind {
        match status {
            401 | 403 => ErrorKind::Unauthorized,
            404 => ErrorKind::NotFound,
            408 => ErrorKind::TimedOut,
            409 => ErrorKind::Conflict,
            413 => ErrorKind::TooLarge,
            429 => ErrorKind::Unavailable,
            500 => ErrorKind::Internal,
            400..=499 => ErrorKind::InvalidInput,
            _ => ErrorKind::Unavailable,
        }
    }
}

#[cfg(test)]
mod error_kind_tests {
    use super::ErrorKind;

    #[test]
    fn names_and_statuses_go_both_ways() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_name(kind.name()), Some(kind));
            assert_eq!(ErrorKind::from_http_status(kind.http_status()), kind);
        }
        assert_eq!(ErrorKind::from_http_status(403), ErrorKind::Unauthorized);
        assert_eq!(ErrorKind::from_http_status(422), ErrorKind::InvalidInput);
        assert_eq!(ErrorKind::from_http_status(502), ErrorKind::Unavailable);
    }
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A schema file that is not a valid Pipelines schema.
    #[error("invalid stream schema: {0}")]
    InvalidSchema(String),
    /// A request body that holds no usable events at all.
    #[error("{0}")]
    InvalidBody(String),
    /// A body with more events than a stream accepts per request.
    #[error("the request holds {events} events; the limit is {limit} per request")]
    TooManyEvents { events: usize, limit: usize },
    /// A bug: validated events that would not decode.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidSchema(_) | Error::InvalidBody(_) => ErrorKind::InvalidInput,
            Error::TooManyEvents { .. } => ErrorKind::TooLarge,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The message a caught panic carried (`panic!` with a literal or a
/// formatted string), for errors that report it.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
