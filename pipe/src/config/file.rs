//! `pipe.toml` as written: the serde form of every table and key, with
//! their defaults. [`super::Config::resolve`] turns it into the
//! configuration in effect.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use pipe_schemas::UnknownFields;
use pipe_sink::{Codec, S3Options};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Folder for the buffer, and for the default warehouse and catalog.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Address the HTTP server listens on.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Seconds a client has to send a request body (default 30); then 408.
    /// Also how long a connection may take to send a request head, or stay
    /// idle between requests, before it is closed.
    #[serde(default)]
    pub body_timeout_secs: Option<u64>,
    /// Seconds one pipeline step against the warehouse or catalog (writing
    /// data files, closing them, one commit attempt) may take before it
    /// counts as failed and is retried (default 120).
    #[serde(default)]
    pub store_timeout_secs: Option<u64>,
    /// Folders (or `s3://bucket/prefix`es) outside the warehouse where file
    /// sinks may write; only this file can set them, not the admin API
    /// ([`crate::config::sink_paths`]).
    #[serde(default)]
    pub file_sink_roots: Vec<String>,
    /// Where table files are written.
    #[serde(default)]
    pub warehouse: Option<WarehouseFile>,
    /// The catalog that tracks tables.
    #[serde(default)]
    pub catalog: Option<CatalogFile>,
    /// The read-only SQL endpoint.
    #[serde(default)]
    pub query: Option<QueryFile>,
    /// The admin API (`/v1/streams`, `/v1/sinks`, `/v1/pipelines`).
    #[serde(default)]
    pub admin: Option<AdminFile>,
    /// `[iceberg]`: the Iceberg REST catalog `pipe serve` serves.
    #[serde(default)]
    pub iceberg: Option<super::IcebergFile>,
    /// Streams by name.
    #[serde(default)]
    pub streams: BTreeMap<String, StreamFile>,
    /// Sinks by name.
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkFile>,
    /// Pipelines by name.
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineFile>,
}

impl ConfigFile {
    /// Reads and parses the file at `path`; also returns its folder, which
    /// relative paths in it resolve against.
    pub fn read(path: &Path) -> Result<(ConfigFile, PathBuf)> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("reading `{}`: {e}", path.display())))?;
        let file: ConfigFile = toml::from_str(&text)
            .map_err(|e| Error::Config(format!("`{}`: {e}", path.display())))?;
        let base = path
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        Ok((file, base))
    }
}

/// `[warehouse]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarehouseFile {
    /// A folder (relative to the file), a `file://` URL, or `s3://bucket/prefix`.
    pub location: String,
    /// S3 connection settings for `s3://` locations.
    #[serde(default)]
    pub s3: S3Options,
}

/// `[catalog]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogFile {
    /// Catalog name (readers such as PyIceberg must use the same).
    #[serde(default)]
    pub name: Option<String>,
    /// `sql` (default) or `rest`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// SQL catalog URI: `sqlite:PATH` (relative paths allowed) or
    /// `postgres://…`; REST catalog base URI: `https://…`.
    #[serde(default)]
    pub uri: Option<String>,
    /// REST: the warehouse the catalog serves.
    #[serde(default)]
    pub warehouse: Option<String>,
    /// REST: a bearer token.
    #[serde(default)]
    pub token: Option<String>,
    /// REST: OAuth2 client credentials `client_id:client_secret`.
    #[serde(default)]
    pub credential: Option<String>,
    /// REST: where credentials are exchanged for a token.
    #[serde(default)]
    pub oauth2_server_uri: Option<String>,
    /// REST: OAuth2 scope.
    #[serde(default)]
    pub scope: Option<String>,
}

/// `[query]`: the server's read-only SQL endpoint, `POST /v1/query`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryFile {
    /// `false` turns the endpoint off (404).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// SHA-256 digests of accepted bearer tokens; empty: no auth on a
    /// loopback `listen`, the admin tokens on any other.
    #[serde(default)]
    pub auth_token_sha256: Vec<String>,
    /// Bytes of memory all running queries may hold together (default
    /// 1 GiB); past it they spill, or fail with 503.
    #[serde(default)]
    pub memory_limit_bytes: Option<usize>,
    /// Bytes of spill files under `<data_dir>/query-spill` (default 4 GiB);
    /// 0: queries never spill.
    #[serde(default)]
    pub max_spill_bytes: Option<u64>,
    /// The largest `timeout_secs` a request may ask for (default 300).
    #[serde(default)]
    pub max_timeout_secs: Option<u64>,
    /// Queries running at once (default 4); one more gets 503.
    #[serde(default)]
    pub max_concurrent: Option<usize>,
    /// The largest `max_rows` a request may ask for (default 100,000).
    #[serde(default)]
    pub max_result_rows: Option<usize>,
    /// Bytes one call of a function that makes large values (`repeat`,
    /// `lpad`, `rpad`, `replace`, `array_repeat`) may make for one batch
    /// (default 64 MiB); past it the query fails with 400.
    #[serde(default)]
    pub max_value_bytes: Option<usize>,
    /// Bytes of buffer records one table's fresh read may read (default
    /// 1 GiB): the events its pipeline acknowledged and has not
    /// committed. Past it the query fails with 503, naming the pipeline.
    #[serde(default)]
    pub max_unflushed_bytes: Option<u64>,
}

/// `[admin]`: who may call the admin API.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    /// SHA-256 digests of accepted bearer tokens (`pipe hash-token`);
    /// empty: no auth, which `pipe serve` allows on a loopback `listen` only.
    #[serde(default)]
    pub auth_token_sha256: Vec<String>,
}

/// `[streams.NAME]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StreamFile {
    /// Schema file in the Pipelines field format; none: unstructured stream.
    #[serde(default)]
    pub schema_file: Option<PathBuf>,
    /// A JSON Schema document instead: columns from it, every event checked
    /// against it (formats, enum, pattern, minimum, … enforced).
    #[serde(default)]
    pub json_schema_file: Option<PathBuf>,
    /// Whether the stream takes events over HTTP (default true).
    #[serde(default)]
    pub http: Option<bool>,
    /// SHA-256 (hex) of each accepted bearer token (`pipe hash-token`); none: no auth.
    #[serde(default)]
    pub auth_token_sha256: Vec<String>,
    /// Origins browsers may POST from, or `*`; none: no CORS headers.
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Largest request body in bytes (default 5 MiB).
    #[serde(default)]
    pub max_request_bytes: Option<usize>,
    /// Largest body after gzip decompression, in bytes (default 50 MiB).
    #[serde(default)]
    pub max_decompressed_bytes: Option<usize>,
    /// MiB of request bodies (as sent and inflated) the stream holds in
    /// memory at once (default 256); past it, requests get 503.
    #[serde(default)]
    pub max_inflight_mb: Option<usize>,
    /// Most events in one request (default 100,000).
    #[serde(default)]
    pub max_events_per_request: Option<usize>,
    /// Fields not in the schema: `reject` (default), `drop`, or `keep` (in `_extra`).
    #[serde(default)]
    pub unknown_fields: UnknownFields,
    /// How long an `Idempotency-Key` is remembered, in seconds (default 86400).
    #[serde(default)]
    pub idempotency_window_secs: Option<u64>,
    /// The most distinct `Idempotency-Key`s remembered within the window
    /// (default 1,000,000, about 190 MB); past it the oldest are forgotten.
    #[serde(default)]
    pub idempotency_max_keys: Option<usize>,
    /// Size of the buffer's segment files in MiB (default 64); space is
    /// released a whole segment at a time.
    #[serde(default)]
    pub buffer_segment_mb: Option<usize>,
    /// Disk quota of the buffer in MiB (default 8192); past it, requests get 503.
    #[serde(default)]
    pub max_buffer_mb: Option<usize>,
    /// MiB kept free on the filesystem holding the buffer: requests that
    /// would leave less get 503, so that commits (often to the same disk)
    /// can go on and free the buffer. Default: the smaller of 1024 and a
    /// fifth of the filesystem; 0 turns it off.
    #[serde(default)]
    pub min_free_disk_mb: Option<u64>,
    /// A request with bad events: `reject` it whole (default), or
    /// `quarantine`: keep its good events, put the bad ones with their
    /// errors in the quarantine table.
    #[serde(default)]
    pub invalid_events: InvalidEvents,
    /// The quarantine table, `namespace.table` (default `default.<stream>_quarantine`).
    #[serde(default)]
    pub quarantine_table: Option<String>,
}

/// What happens to a request with bad events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InvalidEvents {
    #[default]
    Reject,
    Quarantine,
}

/// `[sinks.NAME]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SinkFile {
    /// Sink type: `iceberg` (default), `parquet` or `json`.
    #[serde(default = "default_sink_type", rename = "type")]
    pub kind: String,
    /// Iceberg namespace.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Iceberg table name (Iceberg sinks).
    pub table: Option<String>,
    /// Where files go (file sinks): a folder relative to the warehouse, or
    /// an absolute folder, `file://…` or `s3://…` inside the warehouse or
    /// a `file_sink_roots` entry; default `<warehouse>/<sink name>`.
    pub path: Option<String>,
    /// Folder template of file sinks, strftime on each row's `__ingest_ts`
    /// in UTC (default `year=%Y/month=%m/day=%d`; empty for none).
    pub partitioning: Option<String>,
    /// Partition fields of an Iceberg table the sink creates, e.g.
    /// `["day(__ingest_ts)", "bucket(16, user_id)"]` (the default is
    /// `["day(__ingest_ts)"]`; `[]` for none).
    pub partition_by: Option<Vec<String>>,
    /// Expire snapshots older than this after commits (Iceberg sinks;
    /// default one day).
    pub snapshot_max_age_secs: Option<u64>,
    /// ... and any past this many of the newest (default 50) ...
    pub snapshot_max_count: Option<usize>,
    /// ... but keep at least this many of the newest (default 10).
    pub snapshot_retain_last: Option<usize>,
    /// `false`: never expire snapshots (keep the whole history).
    pub expire_snapshots: Option<bool>,
    /// `false`: never compact the table's small data files (Iceberg
    /// sinks; on by default).
    pub compaction: Option<bool>,
    /// How often the background compaction takes every small file, not
    /// only the tiered few (Iceberg sinks; default 3600).
    pub full_compaction_interval_secs: Option<u64>,
    /// Commit at least this often while data flows.
    #[serde(default = "default_roll_interval")]
    pub roll_interval_secs: u64,
    /// Commit once this many MB of events have been read.
    #[serde(default = "default_roll_size")]
    pub roll_size_mb: u64,
    /// Commit once this many rows have been written (no limit by default).
    pub roll_rows: Option<u64>,
    /// Parquet compression: zstd (default), snappy, gzip, lz4, none; JSON
    /// files: none (default) or gzip.
    pub compression: Option<Codec>,
    /// Largest Parquet row group, in rows (default 131072).
    pub row_group_rows: Option<usize>,
    /// The size data files and compaction aim for, in MB (Iceberg sinks;
    /// recorded as the table's `write.target-file-size-bytes`). Unset: the
    /// table's property, else 512.
    pub target_file_size_mb: Option<u64>,
    /// Columns that get a Parquet bloom filter in each row group (Iceberg
    /// sinks), for lookups by id.
    pub bloom_filter_columns: Option<Vec<String>>,
    /// The table's sort order (Iceberg sinks): compaction writes its files
    /// in it. Unset: the table keeps its own; `[]`: unsorted.
    pub sort_by: Option<Vec<String>>,
}

fn default_sink_type() -> String {
    "iceberg".into()
}
fn default_namespace() -> String {
    "default".into()
}
fn default_roll_interval() -> u64 {
    300
}
fn default_roll_size() -> u64 {
    128
}

/// `[pipelines.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// `INSERT INTO sink SELECT … FROM stream`.
    pub sql: String,
    /// Where rows the SQL fails on go, `namespace.table`
    /// (default `default.<pipeline>_failed`).
    pub quarantine_table: Option<String>,
    /// Where a pipeline with no position in its stream starts:
    /// `earliest` (default: every event the buffer holds), `end` (events
    /// accepted from now on), `offset:N`, or `time:RFC3339` (the first
    /// event accepted at or after it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
}

/// Settings from outside the file: environment and flags.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    /// A token the admin API accepts besides the file's
    /// (`--admin-token`, `PIPE_ADMIN_TOKEN`).
    pub admin_token: Option<String>,
}
