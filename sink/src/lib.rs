//! Sinks for `pipe`: Iceberg tables and plain Parquet / NDJSON files on a
//! local folder or an S3-compatible bucket, written with an exactly-once
//! commit protocol.
//!
//! - [`catalog`]: warehouse + catalog settings and [`open_catalog`].
//! - [`TableSink`]: creates the table from a pipeline's output schema,
//!   writes batches into zstd Parquet files partitioned by `day(__ingest_ts)`,
//!   and commits them with the offset range they cover.
//! - [`commit`]: the protocol (commit ids in the snapshot summary, ancestry
//!   walk, the fence against iceberg-rust's silent rebase, resolution of
//!   unknown outcomes), documented in that module.
//! - [`FileSink`]: Parquet or NDJSON files under a time-partitioned path,
//!   published by commit records, exactly once ([`files`] documents how).
//! - [`Sink`]: either kind, for the pipeline task.
//! - [`ledger`]: the write ledger that finds data files a crash left
//!   uncommitted, so they are deleted rather than left on storage.
//!
//! ```no_run
//! # async fn demo(output: arrow::datatypes::SchemaRef, batch: arrow::record_batch::RecordBatch) -> pipe_sink::Result<()> {
//! use pipe_sink::{open_catalog, CatalogKind, CatalogSettings, OffsetRange, TableSink, Warehouse, WriteOptions};
//! let catalog = open_catalog(&CatalogSettings {
//!     name: "pipe".into(),
//!     kind: CatalogKind::Sql { uri: "sqlite:/tmp/pipe/catalog.db?mode=rwc".into() },
//!     warehouse: Warehouse { location: "file:///tmp/pipe/warehouse".into(), s3: Default::default() },
//! }).await?;
//! let mut sink = TableSink::open(catalog, "default", "events", "my_pipeline", "my_sink", &output, WriteOptions::default()).await?;
//! sink.write(&batch).await?;
//! let files = sink.close_files().await?;
//! sink.commit(OffsetRange { first: 0, last: 0 }, &files).await?;
//! # Ok(()) }
//! ```

mod any;
pub mod catalog;
mod codec;
pub mod commit;
pub mod crash;
pub mod files;
pub mod ledger;
pub mod maintenance;
pub mod storage;
pub mod table;

pub use any::{Closed, FileStats, Sink};
pub use catalog::{open_catalog, CatalogKind, CatalogSettings, RestSettings, S3Options, Warehouse};
pub use commit::{CommitOutcome, Committed, OffsetRange, Run};
pub use files::{FileFormat, FileSink, FileSinkSettings, StagedFile};
pub use iceberg::spec::DataFile;
/// The catalog trait [`open_catalog`] returns.
pub use iceberg::Catalog;
/// A table's name in the catalog.
pub use iceberg::TableIdent;
pub use maintenance::SnapshotRetention;
pub use pipe_schemas::ErrorKind;
pub use table::{
    Codec, PartitionField, SortColumn, TableSink, WriteOptions, BLOOM_FILTER_FPP,
    BLOOM_FILTER_PROPERTY,
};

/// Errors of the sink crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A sink setting that cannot work.
    #[error("{0}")]
    Config(String),
    /// The pipeline's rows do not fit the table.
    #[error("{0}")]
    Schema(String),
    /// The catalog or the storage under it failed.
    #[error("{action}: {source}")]
    Catalog {
        action: String,
        #[source]
        source: Box<iceberg::Error>,
    },
    /// The storage under a file sink failed.
    #[error("{action}: {source}")]
    Store {
        action: String,
        #[source]
        source: Box<opendal::Error>,
    },
    /// This machine's own files or memory failed (the temporary files of
    /// a sort, for one).
    #[error("{action}: {source}")]
    Local {
        action: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The table holds something the protocol never writes.
    #[error("table state is inconsistent: {0}")]
    Corrupt(String),
    /// A call to the catalog or the store did not finish in time; its
    /// outcome is unknown.
    #[error("{0}")]
    TimedOut(String),
    /// The table refuses a commit stamped by a clock that is behind it.
    #[error("{0}")]
    ClockBehind(String),
    /// The table's partition spec changed (another writer evolved it)
    /// since the files were written: they are dropped, and the range is
    /// written again under the table's spec.
    #[error("{0}")]
    Respec(String),
    /// Another process appends to the same log (see [`commit::Run`]).
    #[error("{0}")]
    Forked(String),
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) | Error::Schema(_) => ErrorKind::InvalidInput,
            Error::Catalog { source, .. } => match source.kind() {
                iceberg::ErrorKind::TableNotFound | iceberg::ErrorKind::NamespaceNotFound => {
                    ErrorKind::NotFound
                }
                iceberg::ErrorKind::CatalogCommitConflicts => ErrorKind::Conflict,
                iceberg::ErrorKind::DataInvalid | iceberg::ErrorKind::FeatureUnsupported => {
                    ErrorKind::InvalidInput
                }
                _ => ErrorKind::Unavailable,
            },
            Error::Store { source, .. } => match source.kind() {
                opendal::ErrorKind::NotFound => ErrorKind::NotFound,
                opendal::ErrorKind::ConditionNotMatch => ErrorKind::Conflict,
                opendal::ErrorKind::ConfigInvalid | opendal::ErrorKind::Unsupported => {
                    ErrorKind::InvalidInput
                }
                _ => ErrorKind::Unavailable,
            },
            Error::Corrupt(_) | Error::Forked(_) => ErrorKind::Internal,
            Error::Respec(_) => ErrorKind::Conflict,
            Error::TimedOut(_) | Error::ClockBehind(_) | Error::Local { .. } => {
                ErrorKind::Unavailable
            }
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
