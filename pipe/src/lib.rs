//! `pipe`: self-hosted streaming ingestion. HTTP streams → durable buffer →
//! SQL pipelines → exactly-once Iceberg tables on a folder or any
//! S3-compatible bucket, and SQL over those tables.
//!
//! This crate is the `pipe` binary and a facade over the stage crates, which
//! it re-exports for batch jobs and embedding:
//!
//! | module | crate | what |
//! |---|---|---|
//! | [`schemas`] | `pipe-schemas` | stream schemas, event validation and decoding |
//! | [`ingest`] | `pipe-ingest` | HTTP ingest and the write-ahead buffer |
//! | [`transform`] | `pipe-transform` | pipeline SQL |
//! | [`sink`] | `pipe-sink` | Iceberg tables and the commit protocol |
//! | [`query`] | `pipe-query` | SQL over the tables |
//!
//! [`config`] reads `pipe.toml`; [`server::serve`] runs everything;
//! [`control`] changes definitions on a running server ([`running`] holds
//! the running parts);
//! [`cli`] is the command line; [`wire`] types the JSON the server answers
//! and its clients read. [`batch`] runs a pipeline in a batch job
//! (same validation, SQL and exactly-once commits, keyed by a batch id) and
//! queries the tables; [`Client`] sends events to a running server. Errors map to HTTP statuses in
//! [`ingest::http::status_for`] and to exit codes in [`exit_code`].

pub mod batch;
pub mod cli;
mod client;
pub use client::{Client, Sent};
pub mod config;
pub mod control;
pub use pipe_sink::crash;
pub mod running;
pub mod server;
pub mod wire;

pub use pipe_ingest as ingest;
pub use pipe_query as query;
pub use pipe_schemas as schemas;
pub use pipe_schemas::ErrorKind;
pub use pipe_sink as sink;
pub use pipe_transform as transform;

/// Errors of the `pipe` crate: its own, and every stage's.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The definitions file or a flag is wrong.
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Schema(#[from] pipe_schemas::Error),
    #[error(transparent)]
    Ingest(#[from] pipe_ingest::Error),
    #[error(transparent)]
    Transform(#[from] pipe_transform::Error),
    #[error(transparent)]
    Sink(#[from] pipe_sink::Error),
    #[error(transparent)]
    Query(#[from] pipe_query::Error),
    /// A call to a running server failed.
    #[error("{0}")]
    Remote(String, ErrorKind),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) => ErrorKind::InvalidInput,
            Error::Schema(e) => e.kind(),
            Error::Ingest(e) => e.kind(),
            Error::Transform(e) => e.kind(),
            Error::Sink(e) => e.kind(),
            Error::Query(e) => e.kind(),
            Error::Remote(_, kind) => *kind,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// `work`, unless the catalog or the store keeps it waiting past `limit`
/// (`store_timeout_secs`): then an `unavailable` error that says so, never
/// a start, admin change or pipeline step that hangs.
pub(crate) async fn within<T>(
    limit: std::time::Duration,
    what: &str,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err(Error::Remote(
            format!(
                "{what} did not finish within {} s (`store_timeout_secs`): the catalog or the store is not answering",
                limit.as_secs()
            ),
            ErrorKind::Unavailable,
        ))
    })
}

/// The process exit code for an error kind. The only place that decides it.
pub fn exit_code(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::InvalidInput => 2,
        ErrorKind::NotFound => 3,
        ErrorKind::Conflict => 4,
        ErrorKind::Unavailable => 5,
        ErrorKind::Unauthorized => 6,
        ErrorKind::TooLarge => 7,
        ErrorKind::TimedOut => 8,
        ErrorKind::Internal => 70,
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
