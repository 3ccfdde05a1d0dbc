//! Ingest for `pipe`: the HTTP endpoint events arrive on, and the durable
//! write-ahead [`buffer`] they wait in until pipelines have committed them.
//!
//! - [`buffer::Buffer`]: one per stream; segments of CRC-framed records,
//!   group commit, torn-tail recovery, release after commit.
//! - [`http::StreamRoutes`]: `POST /v1/streams/{stream}` validates a body
//!   with the stream's [`EventDecoder`](pipe_schemas::EventDecoder), appends
//!   the batch to the buffer and answers `200 {"accepted": N}` only once it
//!   is on disk. Streams come and go while the server runs.
//! - [`ErrorKind`] and [`http::status_for`]: the one place error kinds become
//!   HTTP statuses; [`wire`]: the JSON of the answers, for server and
//!   clients alike.
//!
//! ```no_run
//! # async fn demo() -> pipe_ingest::Result<()> {
//! use pipe_ingest::buffer::{Buffer, BufferOptions};
//! let mut buffer = Buffer::open("data/buffer/events".as_ref(), BufferOptions::default(), 0)?;
//! let (appender, writer) = buffer.start_writer();
//! let offset = appender.append(b"payload".to_vec()).await?; // durable when this returns
//! drop(appender);
//! writer.await.expect("writer task")?;
//! # Ok(()) }
//! ```

pub mod buffer;
pub mod http;
pub mod idempotency;
pub mod log;
pub mod payload;
pub mod wire;

use std::path::Path;

pub use pipe_schemas::ErrorKind;

/// Errors of the ingest crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("buffer is corrupt: {0}")]
    Corrupt(String),
    #[error("the stream's buffer queue is full; retry shortly")]
    Busy,
    #[error("the stream's buffer is full ({used} of {limit} bytes on disk); retry when its pipelines have caught up")]
    Full { used: u64, limit: u64 },
    #[error("the disk holding the stream's buffer is nearly full ({free} bytes free, {reserve} kept free so that commits can go on); nothing of this request was kept: retry when pipelines have committed, or free space on that disk")]
    DiskLow { free: u64, reserve: u64 },
    #[error("the stream is shutting down")]
    Closed,
    #[error(
        "the buffer could not store this request ({0}); nothing of it was kept: retry shortly"
    )]
    WriteFailed(String),
    #[error("{0}")]
    Poisoned(String),
    /// Opening refused: what is on disk contradicts what the sinks
    /// recorded, and only the operator can say which is right.
    #[error("{0}")]
    Refused(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn io(path: &Path, action: &'static str, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.display().to_string(),
            source,
        }
    }

    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Busy
            | Error::Full { .. }
            | Error::DiskLow { .. }
            | Error::Closed
            | Error::WriteFailed(_)
            | Error::Poisoned(_)
            | Error::Io { .. } => ErrorKind::Unavailable,
            Error::Corrupt(_) | Error::Internal(_) => ErrorKind::Internal,
            Error::Refused(_) => ErrorKind::Conflict,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
