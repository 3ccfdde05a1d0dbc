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
//! partition_by = ["day(__ingest_ts)", "bucket(16, user_id)"]   # when the table is created
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
//! the admin API live beside the data ([`crate::definitions`]).
//!
//! Relative paths resolve against the file's folder. Precedence, lowest
//! first: built-in defaults < this file < `PIPE_*` environment variables <
//! command-line flags ([`Overrides`], applied in [`Config::load`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use pipe_ingest::http::{
    StreamPolicy, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_DECOMPRESSED_BYTES, DEFAULT_MAX_EVENTS,
};
use pipe_schemas::{EventDecoder, JsonSchema, StreamSchema, UnknownFields};
use pipe_sink::{
    CatalogKind, CatalogSettings, Codec, FileFormat, FileSinkSettings, PartitionField,
    RestSettings, S3Options, SnapshotRetention, Warehouse,
};
use serde::{Deserialize, Serialize};

use crate::sink_paths::{check_partitioning, FileSinkRoots};
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
    /// ([`crate::sink_paths`]).
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
    pub start: crate::supervisor::StartAt,
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

impl Config {
    /// Reads, parses and validates the file at `path`, then applies overrides.
    /// (The definitions the admin API made are not read: `pipe serve` uses
    /// [`crate::definitions::Definitions::load`].)
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Config> {
        let (file, base) = ConfigFile::read(path)?;
        Config::resolve(file, &base, overrides)
    }

    /// Validates a parsed file; relative paths resolve against `base`.
    pub fn resolve(file: ConfigFile, base: &Path, overrides: &Overrides) -> Result<Config> {
        let err = |key: String, message: String| Error::Config(format!("`{key}`: {message}"));
        let data_dir = overrides
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("data"));
        let data_dir = absolute(base, &data_dir);
        let listen = overrides
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("a valid address"));

        let warehouse = match file.warehouse {
            None => Warehouse {
                location: file_url(&data_dir.join("warehouse")),
                s3: S3Options::default(),
            },
            Some(w) if w.location.starts_with("s3://") || w.location.starts_with("s3a://") => {
                let rest = w
                    .location
                    .split_once("://")
                    .map(|(_, r)| r)
                    .unwrap_or_default();
                if rest.split('/').next().unwrap_or_default().len() < 3 {
                    return Err(err(
                        "warehouse.location".into(),
                        format!("expected `s3://bucket/prefix`, got `{}`", w.location),
                    ));
                }
                Warehouse {
                    location: w.location.trim_end_matches('/').to_string(),
                    s3: w.s3,
                }
            }
            Some(w) if w.location.contains("://") && !w.location.starts_with("file://") => {
                return Err(err(
                    "warehouse.location".into(),
                    format!(
                        "expected a folder, `file://…` or `s3://…`, got `{}`",
                        w.location
                    ),
                ))
            }
            Some(w) => {
                let path = w.location.strip_prefix("file://").unwrap_or(&w.location);
                Warehouse {
                    location: file_url(&absolute(base, Path::new(path))),
                    s3: S3Options::default(),
                }
            }
        };
        let catalog_file = file.catalog.unwrap_or_default();
        let rest_only = [
            ("warehouse", catalog_file.warehouse.is_some()),
            ("token", catalog_file.token.is_some()),
            ("credential", catalog_file.credential.is_some()),
            (
                "oauth2_server_uri",
                catalog_file.oauth2_server_uri.is_some(),
            ),
            ("scope", catalog_file.scope.is_some()),
        ];
        let kind = match catalog_file.kind.as_deref() {
            None | Some("sql") => {
                if let Some((key, _)) = rest_only.iter().find(|(_, set)| *set) {
                    return Err(err(
                        format!("catalog.{key}"),
                        "only a REST catalog (`type = \"rest\"`) takes this".into(),
                    ));
                }
                CatalogKind::Sql {
                    uri: sql_catalog_uri(catalog_file.uri, base, &data_dir)?,
                }
            }
            Some("rest") => {
                let Some(uri) = catalog_file.uri.filter(|u| u.starts_with("http")) else {
                    return Err(err(
                        "catalog.uri".into(),
                        "a REST catalog needs its `http://…` or `https://…` URI".into(),
                    ));
                };
                CatalogKind::Rest(RestSettings {
                    uri,
                    warehouse: catalog_file.warehouse,
                    token: catalog_file.token,
                    credential: catalog_file.credential,
                    oauth2_server_uri: catalog_file.oauth2_server_uri,
                    scope: catalog_file.scope,
                })
            }
            Some(other) => {
                return Err(err(
                    "catalog.type".into(),
                    format!("expected `sql` or `rest`, got `{other}`"),
                ))
            }
        };
        let catalog = CatalogSettings {
            name: catalog_file.name.unwrap_or_else(|| "pipe".into()),
            kind,
            warehouse,
        };

        let mut streams = Vec::new();
        for (name, s) in file.streams {
            check_name(&format!("streams.{name}"), &name)?;
            let read = |k: &str, p: &Path| {
                let path = absolute(base, p);
                std::fs::read_to_string(&path).map_err(|e| {
                    err(
                        format!("streams.{name}.{k}"),
                        format!("reading `{}`: {e}", path.display()),
                    )
                })
            };
            let (schema, json_schema) = match (s.schema_file, s.json_schema_file) {
                (Some(_), Some(_)) => {
                    return Err(err(
                        format!("streams.{name}"),
                        "set `schema_file` or `json_schema_file`, not both".into(),
                    ))
                }
                (None, None) => (None, None),
                (Some(p), None) => {
                    let text = read("schema_file", &p)?;
                    let schema = StreamSchema::from_json(&text)
                        .map_err(|e| err(format!("streams.{name}.schema_file"), e.to_string()))?;
                    (Some(schema), None)
                }
                (None, Some(p)) => {
                    let text = read("json_schema_file", &p)?;
                    let js = JsonSchema::from_json(&text).map_err(|e| {
                        err(format!("streams.{name}.json_schema_file"), e.to_string())
                    })?;
                    (Some(js.schema.clone()), Some(js))
                }
            };
            let key = |k: &str| format!("streams.{name}.{k}");
            let token_digests = token_digests(&key("auth_token_sha256"), &s.auth_token_sha256)?;
            for origin in &s.cors_origins {
                let valid = origin == "*"
                    || ((origin.starts_with("http://") || origin.starts_with("https://"))
                        && !origin.ends_with('/'));
                if !valid {
                    return Err(err(
                        key("cors_origins"),
                        format!(
                            "expected `*` or an origin like `https://example.com`, got `{origin}`"
                        ),
                    ));
                }
            }
            let positive = |k: &str, v: Option<usize>, default: usize| match v {
                Some(0) => Err(err(key(k), "must be at least 1".into())),
                Some(v) => Ok(v),
                None => Ok(default),
            };
            let mut policy = StreamPolicy {
                quarantine: false,
                http_enabled: s.http.unwrap_or(true),
                token_digests,
                cors_origins: s.cors_origins,
                max_body_bytes: positive(
                    "max_request_bytes",
                    s.max_request_bytes,
                    DEFAULT_MAX_BODY_BYTES,
                )?,
                max_decompressed_bytes: positive(
                    "max_decompressed_bytes",
                    s.max_decompressed_bytes,
                    DEFAULT_MAX_DECOMPRESSED_BYTES,
                )?,
                max_inflight_bytes: 0,
            };
            let inflight_mb = positive(
                "max_inflight_mb",
                s.max_inflight_mb,
                pipe_ingest::http::DEFAULT_MAX_INFLIGHT_BYTES >> 20,
            )?;
            if inflight_mb > MAX_MB as usize {
                return Err(err(
                    key("max_inflight_mb"),
                    format!("must be at most {MAX_MB} (16 TiB)"),
                ));
            }
            policy.max_inflight_bytes = inflight_mb << 20;
            let one_request = policy.max_body_bytes + policy.max_decompressed_bytes;
            if policy.max_inflight_bytes < one_request {
                return Err(err(
                    key("max_inflight_mb"),
                    format!("must hold at least one request of the largest size: `max_request_bytes` + `max_decompressed_bytes` = {one_request} bytes"),
                ));
            }
            let max_events = positive(
                "max_events_per_request",
                s.max_events_per_request,
                DEFAULT_MAX_EVENTS,
            )?;
            let window = positive(
                "idempotency_window_secs",
                s.idempotency_window_secs.map(|w| w as usize),
                86_400,
            )?;
            let max_keys = positive(
                "idempotency_max_keys",
                s.idempotency_max_keys,
                pipe_ingest::idempotency::DEFAULT_MAX_KEYS,
            )?;
            let segment_mb = positive("buffer_segment_mb", s.buffer_segment_mb, 64)?;
            let quota_mb = positive("max_buffer_mb", s.max_buffer_mb, 8192)?;
            for (name, mb) in [
                ("buffer_segment_mb", segment_mb),
                ("max_buffer_mb", quota_mb),
            ] {
                if mb > MAX_MB as usize {
                    return Err(err(key(name), format!("must be at most {MAX_MB} (16 TiB)")));
                }
            }
            if s.min_free_disk_mb.is_some_and(|mb| mb > MAX_MB) {
                return Err(err(
                    key("min_free_disk_mb"),
                    format!("must be at most {MAX_MB} (16 TiB)"),
                ));
            }
            if quota_mb < 2 * segment_mb {
                return Err(err(
                    key("max_buffer_mb"),
                    format!("must be at least twice `buffer_segment_mb` ({segment_mb}), or nothing could ever be released"),
                ));
            }
            let quarantine = match (s.invalid_events, s.quarantine_table) {
                (InvalidEvents::Reject, Some(_)) => {
                    return Err(err(
                        key("quarantine_table"),
                        "set `invalid_events = \"quarantine\"` to use a quarantine table".into(),
                    ))
                }
                (InvalidEvents::Reject, None) => None,
                (InvalidEvents::Quarantine, table) => Some(table_name(
                    &key("quarantine_table"),
                    table.unwrap_or_else(|| format!("default.{name}_quarantine")),
                )?),
            };
            policy.quarantine = quarantine.is_some();
            let stream = StreamConfig {
                name,
                schema,
                json_schema,
                policy,
                max_events,
                unknown_fields: s.unknown_fields,
                idempotency_window: std::time::Duration::from_secs(window as u64),
                idempotency_max_keys: max_keys,
                segment_bytes: segment_mb as u64 * 1024 * 1024,
                max_buffer_bytes: quota_mb as u64 * 1024 * 1024,
                min_free_disk_bytes: s.min_free_disk_mb.map(|mb| mb * 1024 * 1024),
                quarantine,
            };
            stream.decoder()?;
            streams.push(stream);
        }
        let file_sink_roots =
            FileSinkRoots::new(&catalog.warehouse.location, &file.file_sink_roots, base)?;
        let mut sinks = Vec::new();
        for (name, s) in file.sinks {
            check_name(&format!("sinks.{name}"), &name)?;
            let row_group_rows = s
                .row_group_rows
                .unwrap_or(pipe_sink::WriteOptions::default().row_group_rows);
            let files_only = |key: &str, set: bool| {
                if set && s.kind == "iceberg" {
                    return Err(err(
                        format!("sinks.{name}.{key}"),
                        "only file sinks (`type = \"parquet\"` or `\"json\"`) take this".into(),
                    ));
                }
                Ok(())
            };
            files_only("path", s.path.is_some())?;
            files_only("partitioning", s.partitioning.is_some())?;
            if s.partition_by.is_some() && s.kind != "iceberg" {
                return Err(err(
                    format!("sinks.{name}.partition_by"),
                    "file sinks set their folders with `partitioning`".into(),
                ));
            }
            if s.bloom_filter_columns.is_some() && s.kind != "iceberg" {
                return Err(err(
                    format!("sinks.{name}.bloom_filter_columns"),
                    "bloom filters are written by Iceberg sinks only".into(),
                ));
            }
            let bloom_filter_columns = s.bloom_filter_columns.clone().unwrap_or_default();
            if let Some(bad) = bloom_filter_columns
                .iter()
                .find(|c| c.is_empty() || c.contains('.'))
            {
                return Err(err(
                    format!("sinks.{name}.bloom_filter_columns"),
                    format!("`{bad}` is not a top-level column name"),
                ));
            }
            if s.sort_by.is_some() && s.kind != "iceberg" {
                return Err(err(
                    format!("sinks.{name}.sort_by"),
                    "a sort order belongs to Iceberg tables; file sinks write rows as they come"
                        .into(),
                ));
            }
            let sort_by = match &s.sort_by {
                None => None,
                Some(columns) => Some(
                    columns
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            c.parse::<pipe_sink::SortColumn>().map_err(|e| {
                                err(format!("sinks.{name}.sort_by[{i}]"), e.to_string())
                            })
                        })
                        .collect::<Result<Vec<_>>>()?,
                ),
            };
            if s.target_file_size_mb.is_some() && s.kind != "iceberg" {
                return Err(err(
                    format!("sinks.{name}.target_file_size_mb"),
                    "file sinks write one file per folder and roll; use `roll_size_mb`".into(),
                ));
            }
            let target_file_bytes = match s.target_file_size_mb {
                None => None,
                Some(mb @ 1..=1_048_576) => Some(mb as usize * 1024 * 1024),
                Some(_) => {
                    return Err(err(
                        format!("sinks.{name}.target_file_size_mb"),
                        "must be 1 to 1048576 (1 TiB)".into(),
                    ))
                }
            };
            let retention_keys = s.snapshot_max_age_secs.is_some()
                || s.snapshot_retain_last.is_some()
                || s.snapshot_max_count.is_some()
                || s.expire_snapshots.is_some()
                || s.compaction.is_some()
                || s.full_compaction_interval_secs.is_some();
            if retention_keys && s.kind != "iceberg" {
                return Err(err(
                    format!("sinks.{name}"),
                    "snapshot expiry and compaction settings apply to Iceberg sinks only".into(),
                ));
            }
            if s.snapshot_retain_last == Some(0) {
                return Err(err(
                    format!("sinks.{name}.snapshot_retain_last"),
                    "must be at least 1 (the current snapshot is always kept)".into(),
                ));
            }
            let defaults = SnapshotRetention::default();
            let retain_last = s.snapshot_retain_last.unwrap_or(defaults.retain_last);
            let max_count = s
                .snapshot_max_count
                .unwrap_or(defaults.max_count.max(retain_last));
            if max_count < retain_last {
                return Err(err(
                    format!("sinks.{name}.snapshot_max_count"),
                    format!("{max_count} is below `snapshot_retain_last` ({retain_last}): the newest `snapshot_retain_last` snapshots are always kept"),
                ));
            }
            let retention = (s.expire_snapshots != Some(false)).then(|| SnapshotRetention {
                max_age: s
                    .snapshot_max_age_secs
                    .map_or(defaults.max_age, std::time::Duration::from_secs),
                retain_last,
                max_count,
            });
            let partition_by = match &s.partition_by {
                None => vec![PartitionField::ingest_day()],
                Some(specs) => specs
                    .iter()
                    .enumerate()
                    .map(|(i, spec)| {
                        spec.parse::<PartitionField>().map_err(|e| {
                            err(format!("sinks.{name}.partition_by[{i}]"), e.to_string())
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
            };
            let target = match s.kind.as_str() {
                "iceberg" => {
                    let Some(table) = s.table.clone() else {
                        return Err(err(
                            format!("sinks.{name}.table"),
                            "an Iceberg sink needs a table name".into(),
                        ));
                    };
                    check_name(&format!("sinks.{name}.table"), &table)?;
                    SinkTarget::Table {
                        namespace: s.namespace.clone(),
                        table,
                    }
                }
                kind @ ("parquet" | "json") => {
                    if s.table.is_some() {
                        return Err(err(
                            format!("sinks.{name}.table"),
                            format!("a `{kind}` sink writes files under `path`, not a table"),
                        ));
                    }
                    let format = match (kind, s.compression) {
                        ("parquet", codec) => FileFormat::Parquet {
                            codec: codec.unwrap_or_default(),
                            row_group_rows,
                        },
                        (_, None | Some(Codec::None)) => FileFormat::Json { gzip: false },
                        (_, Some(Codec::Gzip)) => FileFormat::Json { gzip: true },
                        (_, Some(other)) => {
                            return Err(err(
                                format!("sinks.{name}.compression"),
                                format!("JSON files take `gzip` or `none`, got `{other:?}`"),
                            ))
                        }
                    };
                    let location = file_sink_roots.resolve(&name, s.path.as_deref())?;
                    let s3 = if location.starts_with("s3://") {
                        catalog.warehouse.s3.clone()
                    } else {
                        S3Options::default()
                    };
                    let partitioning = s
                        .partitioning
                        .clone()
                        .unwrap_or_else(|| pipe_sink::files::DEFAULT_PARTITIONING.into());
                    check_partitioning(&name, &partitioning)?;
                    SinkTarget::Files(FileSinkSettings {
                        location,
                        s3,
                        format,
                        partitioning,
                    })
                }
                other => {
                    return Err(err(
                        format!("sinks.{name}.type"),
                        format!("expected `iceberg`, `parquet` or `json`, got `{other}`"),
                    ))
                }
            };
            if s.roll_interval_secs == 0 {
                return Err(err(
                    format!("sinks.{name}.roll_interval_secs"),
                    "must be at least 1".into(),
                ));
            }
            if s.roll_size_mb > MAX_MB {
                return Err(err(
                    format!("sinks.{name}.roll_size_mb"),
                    format!("must be at most {MAX_MB} (16 TiB)"),
                ));
            }
            if s.roll_size_mb == 0 {
                return Err(err(
                    format!("sinks.{name}.roll_size_mb"),
                    "must be at least 1".into(),
                ));
            }
            for (key, value) in [
                ("roll_rows", s.roll_rows),
                ("row_group_rows", s.row_group_rows.map(|n| n as u64)),
            ] {
                if value == Some(0) {
                    return Err(err(
                        format!("sinks.{name}.{key}"),
                        "must be at least 1".into(),
                    ));
                }
            }
            sinks.push(SinkConfig {
                name,
                target,
                partition_by,
                retention,
                compaction: s.compaction != Some(false),
                full_compaction_every: s.full_compaction_interval_secs.map_or(
                    pipe_sink::table::FULL_COMPACTION_EVERY,
                    std::time::Duration::from_secs,
                ),
                roll_interval: std::time::Duration::from_secs(s.roll_interval_secs),
                roll_bytes: s.roll_size_mb * 1024 * 1024,
                roll_rows: s.roll_rows,
                compression: s.compression.unwrap_or_default(),
                row_group_rows,
                target_file_bytes,
                bloom_filter_columns,
                sort_by,
            });
        }
        let mut pipelines = Vec::new();
        let mut tables = BTreeMap::new();
        for (name, p) in file.pipelines {
            check_name(&format!("pipelines.{name}"), &name)?;
            if name.contains("__") {
                return Err(err(
                    format!("pipelines.{name}"),
                    "names with `__` are reserved for pipelines pipe adds (such as `<stream>__quarantine`)".into(),
                ));
            }
            if p.sql.trim().is_empty() {
                return Err(err(
                    format!("pipelines.{name}.sql"),
                    "must not be empty".into(),
                ));
            }
            let quarantine = table_name(
                &format!("pipelines.{name}.quarantine_table"),
                p.quarantine_table
                    .unwrap_or_else(|| format!("default.{name}_failed")),
            )?;
            let start = match &p.start {
                Some(text) => text
                    .parse()
                    .map_err(|e| Error::Config(format!("`pipelines.{name}.start`: {e}")))?,
                None => crate::supervisor::StartAt::Earliest,
            };
            pipelines.push(PipelineConfig {
                name,
                sql: p.sql,
                quarantine,
                start,
            });
        }
        for s in &streams {
            if let Some((ns, t)) = &s.quarantine {
                tables.insert(
                    (ns.clone(), t.clone()),
                    format!("the quarantine of stream `{}`", s.name),
                );
            }
        }
        for p in &pipelines {
            let (ns, t) = &p.quarantine;
            if let Some(other) = tables.insert(
                (ns.clone(), t.clone()),
                format!("the failed rows of pipeline `{}`", p.name),
            ) {
                return Err(err(
                    format!("pipelines.{}.quarantine_table", p.name),
                    format!("`{ns}.{t}` is already the table of {other}"),
                ));
            }
        }
        let mut locations = BTreeMap::new();
        for s in &sinks {
            match &s.target {
                SinkTarget::Table { namespace, table } => {
                    if let Some(other) = tables.insert(
                        (namespace.clone(), table.clone()),
                        format!("sink `{}`", s.name),
                    ) {
                        return Err(err(
                            format!("sinks.{}.table", s.name),
                            format!("`{namespace}.{table}` is already the table of {other}"),
                        ));
                    }
                }
                SinkTarget::Files(f) => {
                    if let Some(other) = locations.insert(f.location.clone(), s.name.clone()) {
                        return Err(err(
                            format!("sinks.{}.path", s.name),
                            format!("`{}` is already the path of sink `{other}`: give each file sink a folder of its own", f.location),
                        ));
                    }
                }
            }
        }
        let body_timeout = match file.body_timeout_secs {
            Some(0) => return Err(err("body_timeout_secs".into(), "must be at least 1".into())),
            Some(secs) => std::time::Duration::from_secs(secs),
            None => pipe_ingest::http::DEFAULT_BODY_TIMEOUT,
        };
        let store_timeout = match file.store_timeout_secs {
            Some(0) => {
                return Err(err(
                    "store_timeout_secs".into(),
                    "must be at least 1".into(),
                ))
            }
            Some(secs) => std::time::Duration::from_secs(secs),
            None => DEFAULT_STORE_TIMEOUT,
        };
        let query = query_config(file.query.unwrap_or_default())?;
        let mut admin_token_digests = token_digests(
            "admin.auth_token_sha256",
            &file.admin.unwrap_or_default().auth_token_sha256,
        )?;
        // A token from the environment or a flag is accepted besides the
        // file's: the operator's own, next to the team's.
        if let Some(token) = &overrides.admin_token {
            if token.trim().is_empty() {
                return Err(err(
                    "--admin-token".into(),
                    "the token is empty (`PIPE_ADMIN_TOKEN` or the flag)".into(),
                ));
            }
            admin_token_digests.push(pipe_ingest::http::token_digest(token.trim()));
        }
        Ok(Config {
            query,
            admin_token_digests,
            data_dir,
            listen,
            body_timeout,
            store_timeout,
            catalog,
            streams,
            sinks,
            pipelines,
        })
    }

    /// The sink named `name`.
    pub fn sink(&self, name: &str) -> Option<&SinkConfig> {
        self.sinks.iter().find(|s| s.name == name)
    }
}

/// `[query]`, checked, with its defaults.
fn query_config(q: QueryFile) -> Result<QueryConfig> {
    let at_least = |key: &str, value: Option<u64>, min: u64, default: u64| match value {
        Some(v) if v < min => Err(Error::Config(format!(
            "`query.{key}`: must be at least {min}, got {v}"
        ))),
        Some(v) => Ok(v),
        None => Ok(default),
    };
    let memory = at_least(
        "memory_limit_bytes",
        q.memory_limit_bytes.map(|v| v as u64),
        1 << 20,
        1 << 30,
    )?;
    Ok(QueryConfig {
        enabled: q.enabled.unwrap_or(true),
        token_digests: token_digests("query.auth_token_sha256", &q.auth_token_sha256)?,
        memory_limit_bytes: usize::try_from(memory).unwrap_or(usize::MAX),
        max_spill_bytes: q.max_spill_bytes.unwrap_or(4 << 30),
        max_timeout: std::time::Duration::from_secs(at_least(
            "max_timeout_secs",
            q.max_timeout_secs,
            1,
            300,
        )?),
        max_concurrent: at_least("max_concurrent", q.max_concurrent.map(|v| v as u64), 1, 4)?
            as usize,
        max_result_rows: at_least(
            "max_result_rows",
            q.max_result_rows.map(|v| v as u64),
            1,
            100_000,
        )? as usize,
        max_value_bytes: usize::try_from(at_least(
            "max_value_bytes",
            q.max_value_bytes.map(|v| v as u64),
            1 << 10,
            64 << 20,
        )?)
        .unwrap_or(usize::MAX),
    })
}

/// The SQL catalog's URI: the default SQLite file under `data_dir`, a
/// `sqlite:` path relative to the file's folder, or `postgres://…`.
fn sql_catalog_uri(uri: Option<String>, base: &Path, data_dir: &Path) -> Result<String> {
    let err = |key: String, message: String| Error::Config(format!("`{key}`: {message}"));
    Ok(match uri {
        None => sqlite_uri(&data_dir.join("catalog.db")),
        Some(uri) => match uri.strip_prefix("sqlite:") {
            Some(path) => {
                let path = path.trim_start_matches("//");
                let (path, _) = path.split_once('?').unwrap_or((path, ""));
                sqlite_uri(&absolute(base, Path::new(path)))
            }
            None if uri.starts_with("postgres") => uri,
            None => {
                return Err(err(
                    "catalog.uri".into(),
                    format!("expected `sqlite:PATH` or `postgres://…`, got `{uri}`"),
                ))
            }
        },
    })
}

/// Parses `auth_token_sha256` digests (the output of `pipe hash-token`).
fn token_digests(key: &str, digests: &[String]) -> Result<Vec<[u8; 32]>> {
    digests
        .iter()
        .enumerate()
        .map(|(i, digest)| {
            hex::decode(digest.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    Error::Config(format!(
                        "`{key}[{i}]`: expected 64 hex digits, the output of `pipe hash-token`"
                    ))
                })
        })
        .collect()
}

/// Refuses names that are not letters, digits, `_` and `-`.
pub(crate) fn check_name(key: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "`{key}`: names use letters, digits, `_` and `-` (at most 128), got `{name}`"
        )))
    }
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

fn sqlite_uri(p: &Path) -> String {
    format!("sqlite:{}?mode=rwc", p.display())
}

/// Splits a `namespace.table` setting.
fn table_name(key: &str, table: String) -> Result<(String, String)> {
    let Some((ns, t)) = table.rsplit_once('.') else {
        return Err(Error::Config(format!(
            "`{key}`: expected `namespace.table`, got `{table}`"
        )));
    };
    check_name(key, t)?;
    Ok((ns.to_string(), t.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str) -> Result<Config> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        Config::resolve(file, Path::new("/etc/pipe"), &Overrides::default())
    }

    #[test]
    fn defaults_live_next_to_the_file() {
        let c = resolve(
            r#"
            [sinks.s]
            table = "t"
            [pipelines.p]
            sql = "INSERT INTO s SELECT * FROM x"
            "#,
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/etc/pipe/data"));
        assert_eq!(
            c.catalog.warehouse.location,
            "file:///etc/pipe/data/warehouse"
        );
        assert_eq!(
            c.catalog.kind,
            CatalogKind::Sql {
                uri: "sqlite:/etc/pipe/data/catalog.db?mode=rwc".into()
            }
        );
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        let q = &c.query;
        assert_eq!(
            (q.memory_limit_bytes, q.max_spill_bytes, q.max_concurrent),
            (1 << 30, 4 << 30, 4)
        );
        assert_eq!((q.max_timeout.as_secs(), q.max_result_rows), (300, 100_000));
        assert!(
            matches!(&c.sinks[0].target, SinkTarget::Table { namespace, .. } if namespace == "default")
        );
        assert_eq!(c.sinks[0].roll_interval.as_secs(), 300);
    }

    #[test]
    fn file_sinks_default_under_the_warehouse() {
        let c = resolve(
            r#"
            [warehouse]
            location = "s3://bucket/wh"
            s3 = { endpoint = "http://127.0.0.1:9000", path_style = true }
            [sinks.raw]
            type = "json"
            compression = "gzip"
            [sinks.local]
            type = "parquet"
            path = "out"
            partitioning = ""
            "#,
        )
        .unwrap();
        let SinkTarget::Files(raw) = &c.sinks[1].target else {
            panic!("{:?}", c.sinks[1]);
        };
        assert_eq!(raw.location, "s3://bucket/wh/raw");
        assert_eq!(raw.format, FileFormat::Json { gzip: true });
        assert_eq!(raw.partitioning, "year=%Y/month=%m/day=%d");
        assert!(raw.s3.path_style);
        // A relative path is a folder of the warehouse, here in the bucket.
        let SinkTarget::Files(local) = &c.sinks[0].target else {
            panic!("{:?}", c.sinks[0]);
        };
        assert_eq!(local.location, "s3://bucket/wh/out");
        assert!(local.s3.path_style);
        assert_eq!(local.partitioning, "");
        assert!(matches!(
            local.format,
            FileFormat::Parquet {
                codec: Codec::Zstd,
                ..
            }
        ));
    }

    #[test]
    fn overrides_win_over_the_file() {
        let file: ConfigFile =
            toml::from_str("listen = \"127.0.0.1:1\"\ndata_dir = \"d\"").unwrap();
        let c = Config::resolve(
            file,
            Path::new("/x"),
            &Overrides {
                listen: Some("127.0.0.1:2".parse().unwrap()),
                admin_token: Some("t0ken".into()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.data_dir, PathBuf::from("/x/d"));
        assert_eq!(
            c.admin_token_digests,
            [pipe_ingest::http::token_digest("t0ken")]
        );
    }

    #[test]
    fn errors_name_the_key() {
        for (text, want) in [
            (
                "[sinks.s]\ntable = \"t\"\nroll_interval_secs = 0",
                "`sinks.s.roll_interval_secs`: must be at least 1",
            ),
            (
                "[sinks.s]\ntable = \"t\"\ntype = \"kafka\"",
                "`sinks.s.type`: expected `iceberg`",
            ),
            (
                "[sinks.s]\ntable = \"t\"\nbogus = 1",
                "unknown field `bogus`",
            ),
            (
                "[streams.a]\nschema_file = \"/nonexistent.json\"",
                "`streams.a.schema_file`: reading",
            ),
            ("[warehouse]\nlocation = \"gs://b\"", "`warehouse.location`"),
            ("[catalog]\nuri = \"mysql://x\"", "`catalog.uri`"),
            ("[streams.\"a b\"]", "`streams.a b`"),
            (
                "[sinks.a]\ntable = \"t\"\n[sinks.b]\ntable = \"t\"",
                "already the table of sink `a`",
            ),
            (
                "[streams.a]\nauth_token_sha256 = [\"abc\"]",
                "`streams.a.auth_token_sha256[0]`: expected 64 hex digits",
            ),
            ("[streams.a]\ncors_origins = [\"example.com\"]", "`streams.a.cors_origins`"),
            ("[streams.a]\nmax_request_bytes = 0", "`streams.a.max_request_bytes`: must be at least 1"),
            (
                "[streams.a]\nunknown_fields = \"keep\"",
                "`streams.a.unknown_fields`: invalid stream schema: unknown fields can only be kept",
            ),
            ("[streams.a]\nunknown_fields = \"ignore\"", "unknown variant `ignore`"),
            (
                "[streams.a]\nbuffer_segment_mb = 64\nmax_buffer_mb = 100",
                "`streams.a.max_buffer_mb`: must be at least twice",
            ),
            (
                "[streams.a]\nquarantine_table = \"q.t\"",
                "set `invalid_events = \"quarantine\"`",
            ),
            ("[pipelines.a__quarantine]\nsql = \"x\"", "reserved for pipelines pipe adds"),
            (
                "[pipelines.p]\nsql = \"x\"\nquarantine_table = \"t\"",
                "`pipelines.p.quarantine_table`: expected `namespace.table`",
            ),
            (
                "[sinks.s]\ntable = \"p_failed\"\n[pipelines.p]\nsql = \"x\"",
                "`sinks.s.table`: `default.p_failed` is already the table of the failed rows of pipeline `p`",
            ),
            (
                "[streams.a]\nschema_file = \"a\"\njson_schema_file = \"b\"",
                "`streams.a`: set `schema_file` or `json_schema_file`, not both",
            ),
            ("body_timeout_secs = 0", "`body_timeout_secs`: must be at least 1"),
            (
                "[sinks.s]\ntable = \"t\"\nroll_size_mb = 9223372036854775807",
                "`sinks.s.roll_size_mb`: must be at most 16777216 (16 TiB)",
            ),
            ("[query]\nmax_concurrent = 0", "`query.max_concurrent`: must be at least 1, got 0"),
            (
                "[query]\nmemory_limit_bytes = 1000",
                "`query.memory_limit_bytes`: must be at least 1048576",
            ),
            ("[query]\nmax_timeout_secs = 0", "`query.max_timeout_secs`: must be at least 1"),
            ("[query]\nmax_result_rows = 0", "`query.max_result_rows`: must be at least 1"),
            (
                "[sinks.s]\ntable = \"t\"\nrow_group_rows = 0",
                "`sinks.s.row_group_rows`: must be at least 1",
            ),
            ("[sinks.s]\nroll_size_mb = 1", "`sinks.s.table`: an Iceberg sink needs a table name"),
            (
                "[sinks.s]\ntable = \"t\"\npath = \"x\"",
                "`sinks.s.path`: only file sinks",
            ),
            (
                "[sinks.s]\ntype = \"json\"\ncompression = \"zstd\"",
                "`sinks.s.compression`: JSON files take `gzip` or `none`",
            ),
            (
                "[sinks.s]\ntype = \"parquet\"\ntable = \"t\"",
                "`sinks.s.table`: a `parquet` sink writes files under `path`",
            ),
            (
                "[sinks.a]\ntype = \"json\"\npath = \"out\"\n[sinks.b]\ntype = \"parquet\"\npath = \"out\"",
                "`sinks.b.path`: `file:///etc/pipe/data/warehouse/out` is already the path of sink `a`: give each file sink a folder of its own",
            ),
            ("[sinks.s]\ntype = \"parquet\"\npath = \"gs://b\"", "`sinks.s.path`: expected a folder"),
            (
                "[sinks.s]\ntype = \"json\"\npath = \"/var/spool/cron\"",
                "`sinks.s.path`: `/var/spool/cron` is outside the warehouse (`file:///etc/pipe/data/warehouse`)",
            ),
            (
                "file_sink_roots = [\"/srv/out\"]\n[sinks.s]\ntype = \"json\"\npath = \"/srv/other\"",
                "and `file_sink_roots` (file:///srv/out)",
            ),
            ("[sinks.s]\ntype = \"json\"\npath = \"../x\"", "`sinks.s.path`: `..` is not allowed"),
            (
                "[sinks.s]\ntype = \"json\"\npartitioning = \"../%Y\"",
                "`sinks.s.partitioning`: folders stay inside",
            ),
            ("file_sink_roots = [\"gs://b\"]", "`file_sink_roots[0]`: expected a folder"),
            (
                "[sinks.s]\ntable = \"t\"\npartition_by = [\"day(ts)\", \"bucket(x)\"]",
                "`sinks.s.partition_by[1]`: partition field `bucket(x)`: this transform takes a number and a column",
            ),
            (
                "[sinks.s]\ntype = \"parquet\"\nbloom_filter_columns = [\"id\"]",
                "`sinks.s.bloom_filter_columns`: bloom filters are written by Iceberg sinks only",
            ),
            (
                "[sinks.s]\ntable = \"t\"\nbloom_filter_columns = [\"a.b\"]",
                "`sinks.s.bloom_filter_columns`: `a.b` is not a top-level column name",
            ),
            (
                "[sinks.s]\ntable = \"t\"\ntarget_file_size_mb = 0",
                "`sinks.s.target_file_size_mb`: must be 1 to 1048576",
            ),
            (
                "[sinks.s]\ntype = \"parquet\"\ntarget_file_size_mb = 64",
                "`sinks.s.target_file_size_mb`: file sinks write one file per folder",
            ),
            (
                "[sinks.s]\ntype = \"json\"\nsort_by = [\"id\"]",
                "`sinks.s.sort_by`: a sort order belongs to Iceberg tables",
            ),
            (
                "[sinks.s]\ntable = \"t\"\nsort_by = [\"id\", \"ts SIDEWAYS\"]",
                "`sinks.s.sort_by[1]`: sort column `ts SIDEWAYS`: after the column: ASC or DESC",
            ),
            (
                "[sinks.s]\ntype = \"json\"\npartition_by = [\"day(ts)\"]",
                "`sinks.s.partition_by`: file sinks set their folders with `partitioning`",
            ),
            ("[catalog]\ntype = \"rest\"", "`catalog.uri`: a REST catalog needs its `http://…`"),
            ("[catalog]\ntoken = \"x\"", "`catalog.token`: only a REST catalog"),
            ("[catalog]\ntype = \"glue\"", "`catalog.type`: expected `sql` or `rest`"),
            (
                "[sinks.s]\ntable = \"t\"\nsnapshot_retain_last = 20\nsnapshot_max_count = 5",
                "`sinks.s.snapshot_max_count`: 5 is below `snapshot_retain_last` (20)",
            ),
            (
                "[sinks.s]\ntable = \"t\"\nsnapshot_retain_last = 0",
                "`sinks.s.snapshot_retain_last`: must be at least 1",
            ),
        ] {
            let e = resolve(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}\n=> {e}");
        }
    }

    #[test]
    fn s3_warehouse() {
        let c = resolve(
            r#"
            [warehouse]
            location = "s3://bucket/prefix/"
            s3 = { endpoint = "http://127.0.0.1:4566", region = "us-east-1", path_style = true }
            "#,
        )
        .unwrap();
        assert_eq!(c.catalog.warehouse.location, "s3://bucket/prefix");
        let props = c.catalog.storage_props();
        assert_eq!(props["s3.endpoint"], "http://127.0.0.1:4566");
        assert_eq!(props["s3.path-style-access"], "true");
    }
}
