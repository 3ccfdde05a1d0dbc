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
    /// Whether retrying the same request later may succeed.
    pub fn retryable(self) -> bool {
        matches!(self, ErrorKind::Unavailable | ErrorKind::Conflict)
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
