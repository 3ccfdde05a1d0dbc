//! The definitions file (`pipe.toml`): streams, sinks, pipelines, and where
//! data lives.
//!
//! ```toml
//! data_dir = "data"                  # buffer, and the default warehouse + catalog
//! listen = "127.0.0.1:8080"
//!
//! [warehouse]                        # default: a folder `warehouse` in data_dir
//! location = "s3://bucket/prefix"    # or a folder path / file:// URL
//! s3 = { endpoint = "http://127.0.0.1:4566", region = "us-east-1",
//!        access_key_id = "…", secret_access_key = "…", path_style = true }
//!
//! [catalog]                          # default: SQLite file `catalog.db` in data_dir
//! name = "pipe"
//! uri = "sqlite:/var/lib/pipe/catalog.db"
//! # or a REST catalog, e.g. R2 Data Catalog:
//! # type = "rest", uri = "https://…", warehouse = "…", token = "…"
//! #   (or credential = "client_id:secret", oauth2_server_uri, scope)
//!
//! [query]                            # POST /v1/query, all queries together:
//! memory_limit_bytes = 1073741824    # memory pool; past it spill (max_spill_bytes) or 503
//! max_concurrent = 4                 # one more: 503 + Retry-After
//! max_timeout_secs = 300             # and max_result_rows = 100000: the most a request may ask
//! max_unflushed_bytes = 1073741824   # uncommitted events one table's fresh read may read
//!
//! [iceberg]                          # the Iceberg REST catalog at /iceberg (config/iceberg.rs)
//! write_token_sha256 = ["…"]         # read_token_sha256, clients = [{id, secret_sha256, write}]
//!
//! [admin]                            # the admin API (pipe streams|sinks|pipelines …)
//! auth_token_sha256 = ["9f86d0…"]    # bearer tokens as `pipe hash-token` digests; none: no auth
//!
//! [streams.ecommerce_stream]
//! schema_file = "schema.json"        # Pipelines field format; omit for unstructured
//!
//! [sinks.ecommerce_sink]
//! namespace = "default"
//! table = "ecommerce"
//! roll_interval_secs = 10
//! roll_size_mb = 64
//! roll_rows = 1000000                # also commit once this many rows were written
//! compression = "zstd"
//! row_group_rows = 131072            # largest Parquet row group
//! target_file_size_mb = 512          # data files and compaction aim for this size
//! partition_by = ["day(__ingest_ts)", "bucket(16, user_id)"]   # a change evolves the spec for new data
//! bloom_filter_columns = ["order_id"]  # bloom filters for lookups by these columns
//! sort_by = ["order_id"]             # the table's sort order: compaction rewrites in it
//! snapshot_max_age_secs = 86400      # expire older snapshots after commits…
//! snapshot_max_count = 50            # …and any past the newest 50…
//! snapshot_retain_last = 10          # …but keep the newest 10 (expire_snapshots = false: keep all)
//! compaction = true                  # rewrite small data files in the background,
//! full_compaction_interval_secs = 3600  # …every small one this often
//!
//! [sinks.raw_files]                  # plain files instead of a table
//! type = "parquet"                   # or "json" (NDJSON; compression "gzip" or "none")
//! path = "raw"                       # inside the warehouse; default: `<warehouse>/<sink name>`
//!                                    # elsewhere only under a top-level
//!                                    # `file_sink_roots = ["/srv/exports", "s3://b/out"]`
//! partitioning = "year=%Y/month=%m/day=%d"   # strftime on __ingest_ts (UTC)
//!
//! [pipelines.ecommerce]
//! sql = "INSERT INTO ecommerce_sink SELECT * FROM ecommerce_stream"
//! ```
//!
//! The full reference is `docs/configuration.md`. Definitions made through
//! the admin API live beside the data ([`crate::config::definitions`]).
//!
//! Relative paths resolve against the file's folder. Precedence, lowest
//! first: built-in defaults < this file < `PIPE_*` environment variables <
//! command-line flags ([`Overrides`], applied in [`Config::load`]).

pub mod changes;
pub mod definitions;
mod file;
mod iceberg;
mod resolve;
pub mod shared;
pub mod sink_paths;
mod start;
mod tokens;

pub use file::*;
pub use iceberg::{IcebergClient, IcebergConfig, IcebergFile};
pub(crate) use resolve::check_name;
pub use start::StartAt;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use pipe_ingest::http::StreamPolicy;
use pipe_schemas::{EventDecoder, JsonSchema, StreamSchema, UnknownFields};
use pipe_sink::{CatalogSettings, Codec, FileSinkSettings, PartitionField, SnapshotRetention};

use crate::{Error, Result};

/// A stream, resolved.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub name: String,
    pub schema: Option<StreamSchema>,
    /// Set when the stream is defined by a JSON Schema document.
    pub json_schema: Option<JsonSchema>,
    pub policy: StreamPolicy,
    pub max_events: usize,
    pub unknown_fields: UnknownFields,
    pub idempotency_window: std::time::Duration,
    /// See [`StreamFile::idempotency_max_keys`].
    pub idempotency_max_keys: usize,
    pub segment_bytes: u64,
    pub max_buffer_bytes: u64,
    /// See [`StreamFile::min_free_disk_mb`]; `None`: the default.
    pub min_free_disk_bytes: Option<u64>,
    /// `(namespace, table)` of the quarantine table, in quarantine mode.
    pub quarantine: Option<(String, String)>,
}

impl StreamConfig {
    /// The name of the pipeline that commits this stream's quarantined events.
    pub fn quarantine_pipeline(&self) -> String {
        format!("{}__quarantine", self.name)
    }
}

impl StreamConfig {
    /// The decoder for this stream's bodies.
    pub fn decoder(&self) -> Result<EventDecoder> {
        let decoder = match &self.json_schema {
            Some(js) => EventDecoder::new(None).with_json_schema(js.clone()),
            None => EventDecoder::new(self.schema.clone()),
        };
        decoder
            .with_unknown_fields(self.unknown_fields)
            .map(|d| d.with_max_events(self.max_events))
            .map_err(|e| Error::Config(format!("`streams.{}.unknown_fields`: {e}", self.name)))
    }
}

/// What a sink writes into.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkTarget {
    /// An Iceberg table.
    Table { namespace: String, table: String },
    /// Plain files under a location.
    Files(FileSinkSettings),
}

/// A sink, resolved.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub name: String,
    pub target: SinkTarget,
    /// Partition fields of the table, when the sink creates it.
    pub partition_by: Vec<PartitionField>,
    /// How much table history to keep; `None`: all of it.
    pub retention: Option<SnapshotRetention>,
    /// Compact the table's small files in the background.
    pub compaction: bool,
    /// How often that compaction takes every small file.
    pub full_compaction_every: std::time::Duration,
    pub roll_interval: std::time::Duration,
    pub roll_bytes: u64,
    pub roll_rows: Option<u64>,
    pub compression: Codec,
    pub row_group_rows: usize,
    /// The size data files aim for (Iceberg sinks); `None`: the table's.
    pub target_file_bytes: Option<usize>,
    /// Columns with bloom filters (Iceberg sinks).
    pub bloom_filter_columns: Vec<String>,
    /// The table's sort order (Iceberg sinks); `None`: the table's own.
    pub sort_by: Option<Vec<pipe_sink::SortColumn>>,
}

/// A pipeline, resolved.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub name: String,
    pub sql: String,
    /// `(namespace, table)` of the table for rows the SQL fails on.
    pub quarantine: (String, String),
    /// Where it starts reading when it has no position in its stream's log.
    pub start: StartAt,
}

impl PipelineConfig {
    /// The digest of the SQL (16 hex digits of its SHA-256) each commit
    /// records as `pipe.definition`: which definition made which range.
    pub fn definition(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.sql.as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The name under which the quarantine table's commits are recorded.
    pub fn failed_rows_writer(&self) -> String {
        format!("{}__failed", self.name)
    }
}

/// The read-only SQL endpoint, resolved.
#[derive(Debug, Clone)]
pub struct QueryConfig {
    pub enabled: bool,
    pub token_digests: Vec<[u8; 32]>,
    /// The memory pool all queries share.
    pub memory_limit_bytes: usize,
    /// Spill files at most; 0: no spilling.
    pub max_spill_bytes: u64,
    pub max_timeout: std::time::Duration,
    pub max_concurrent: usize,
    pub max_result_rows: usize,
    /// See [`QueryFile::max_value_bytes`].
    pub max_value_bytes: usize,
    /// See [`QueryFile::max_unflushed_bytes`].
    pub max_unflushed_bytes: u64,
}

impl QueryConfig {
    /// Where queries spill, under `data_dir`.
    pub fn spill_dir(data_dir: &Path) -> PathBuf {
        data_dir.join("query-spill")
    }
}

/// The whole configuration, validated, with absolute paths.
#[derive(Debug, Clone)]
pub struct Config {
    pub query: QueryConfig,
    /// The Iceberg REST catalog `pipe serve` serves.
    pub iceberg: IcebergConfig,
    /// Digests of the bearer tokens the admin API accepts; empty: any caller.
    pub admin_token_digests: Vec<[u8; 32]>,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub body_timeout: std::time::Duration,
    /// See [`ConfigFile::store_timeout_secs`].
    pub store_timeout: std::time::Duration,
    pub catalog: CatalogSettings,
    pub streams: Vec<StreamConfig>,
    pub sinks: Vec<SinkConfig>,
    pub pipelines: Vec<PipelineConfig>,
}

/// The largest size in MiB a setting takes (16 TiB): larger ones would
/// overflow once turned into bytes.
const MAX_MB: u64 = 1 << 24;

/// The default [`Config::store_timeout`].
pub const DEFAULT_STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

#[cfg(test)]
mod tests;
