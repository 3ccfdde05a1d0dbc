//! The JSON the server answers and its clients read (`pipe send`,
//! [`crate::Client`], the management commands): one definition per shape,
//! which the server serializes and the clients deserialize, so the two
//! cannot drift. The stream endpoint's answers and the error answer are
//! [`pipe_ingest::wire`]'s, re-exported here; shapes that already were
//! serde types where they are made ([`FlushReport`], [`PipelineChange`],
//! [`Reloaded`], …) are re-exported too.
//!
//! | call | answer |
//! |---|---|
//! | `POST /v1/streams/{name}` (events) | [`Accepted`], [`Refused`] |
//! | any error | [`ErrorAnswer`] |
//! | `GET /v1/streams`, `/v1/sinks`, `/v1/pipelines` | [`StreamList`], [`SinkList`], [`PipelineList`] |
//! | `GET`, `POST` (201) a stream, sink, pipeline | [`StreamView`], [`SinkView`], [`PipelineView`] |
//! | `PATCH` a stream, sink, pipeline | [`StreamUpdated`], [`SinkUpdated`], [`PipelineUpdated`] |
//! | `DELETE` a stream, sink, pipeline | [`StreamDeleted`], [`SinkDeleted`], [`PipelineDeleted`] |
//! | `POST /v1/pipelines/{name}/flush` | [`FlushReport`] |
//! | `POST /v1/reload` | [`Reloaded`] |
//! | `POST /v1/tables/{table}/maintain` | [`RunRecord`] |
//! | `GET /v1/tables/{table}/maintenance` | [`MaintenanceRuns`] |
//! | `POST /v1/query` ([`QueryRequest`]) | [`QueryAnswer`] |
//!
//! A value that may be unknown is `null`, never left out: clients read
//! every key of a view.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

pub use crate::config::definitions::Origin;
pub use crate::control::Reloaded;
pub use crate::running::pipeline::{FlushReport, Health, RecentError, State};
pub use crate::running::supervisor::{PipelineChange, StreamChange};
pub use pipe_ingest::wire::{Accepted, ErrorAnswer, ErrorDetail, IngestAnswer, Refused};
pub use pipe_sink::maintenance::run::RunRecord;

// ---- streams ----

/// A stream as it runs: `GET /v1/streams/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamView {
    pub stream: String,
    pub origin: Option<Origin>,
    /// Where its events go: `http://{listen}/v1/streams/{name}`.
    pub endpoint: String,
    pub http: HttpView,
    /// The schema events are checked against; `None`: unstructured.
    pub schema: Option<pipe_schemas::StreamSchema>,
    /// Whether `schema` came from a JSON Schema document.
    pub json_schema: bool,
    pub unknown_fields: pipe_schemas::UnknownFields,
    /// `reject` or `quarantine`.
    pub invalid_events: String,
    /// `namespace.table` of the quarantine table (`quarantine` only).
    pub quarantine_table: Option<String>,
    pub max_request_bytes: u64,
    pub max_events_per_request: u64,
    /// `None` when its buffer is not open.
    pub buffer: Option<BufferView>,
    /// The pipelines reading it.
    pub pipelines: Vec<String>,
    /// Since the server started; `None` when it does not run.
    pub stats: Option<StreamStats>,
    /// Why it takes no events (its buffer's writer failed, its log was
    /// forked): requests get 503 until a restart. Absent while it takes
    /// events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// How a stream takes events over HTTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpView {
    pub enabled: bool,
    /// Whether a bearer token is required.
    pub auth: bool,
    pub cors_origins: Vec<String>,
}

/// A stream's buffer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BufferView {
    pub bytes: u64,
    /// Its disk quota (`max_buffer_mb`): past it, requests get 503.
    pub quota_bytes: u64,
    /// Accepted requests not committed by every pipeline reading it.
    pub unprocessed_records: u64,
}

/// A stream's figures since the server started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamStats {
    pub requests: u64,
    pub records_in: u64,
    pub bytes_in: u64,
    pub decode_errors: u64,
    /// Problems by error type (`missing_field`, `type_mismatch`, …).
    pub errors_by_type: std::collections::BTreeMap<String, u64>,
    /// The last problems (at most 20), oldest first: in one stream's view
    /// (`GET /v1/streams/{name}`), not in the list, which stays small.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent_rejections: Option<Vec<pipe_ingest::http::Rejection>>,
}

/// `GET /v1/streams`, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamList {
    pub streams: Vec<StreamView>,
}

/// `DELETE /v1/streams/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamDeleted {
    pub deleted: String,
    /// Pipelines deleted with it (`?force=true`).
    pub pipelines_deleted: Vec<String>,
    /// Accepted requests no pipeline had committed, gone with its buffer.
    pub unprocessed_records_dropped: u64,
}

// ---- sinks ----

/// A sink's definition, and the pipeline writing it: `GET /v1/sinks/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkView {
    pub sink: String,
    pub origin: Option<Origin>,
    /// `iceberg`, `parquet` or `json`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `namespace.table` (Iceberg sinks).
    pub table: Option<String>,
    /// Where files go (file sinks).
    pub path: Option<String>,
    /// `parquet` or `ndjson`.
    pub format: String,
    pub compression: pipe_sink::Codec,
    pub roll_interval_secs: u64,
    pub roll_size_mb: u64,
    pub roll_rows: Option<u64>,
    pub row_group_rows: u64,
    /// Iceberg sinks: the table's partition fields; `None` for file sinks.
    pub partition_by: Option<Vec<String>>,
    /// Iceberg sinks; `None` for file sinks.
    pub bloom_filter_columns: Option<Vec<String>>,
    /// `None`: the table's own, else 512 MB.
    pub target_file_size_mb: Option<u64>,
    /// `None`: the table's own order; empty: unsorted.
    pub sort_by: Option<Vec<String>>,
    /// File sinks: the folder template; `None` for Iceberg sinks.
    pub partitioning: Option<String>,
    /// The pipeline writing it, if one runs.
    pub pipeline: Option<String>,
}

/// `GET /v1/sinks`, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkList {
    pub sinks: Vec<SinkView>,
}

/// `DELETE /v1/sinks/{name}` (its table or files stay).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkDeleted {
    pub deleted: String,
}

// ---- pipelines ----

/// A running pipeline, its definition and its figures since the server
/// started: `GET /v1/pipelines/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineView {
    pub pipeline: String,
    /// `state`, `state_reason`, `state_since`, `retry_attempts`.
    #[serde(flatten)]
    pub health: Health,
    pub stream: String,
    /// `namespace.table`, or the location of a file sink.
    pub sink: String,
    pub sink_kind: String,
    pub quarantine_table: Option<String>,
    /// The last buffer offset committed, if any.
    pub committed_through: Option<u64>,
    pub rows_committed: u64,
    pub failed_rows_committed: u64,
    pub files_committed: u64,
    pub bytes_committed: u64,
    pub uncompressed_bytes_committed: u64,
    pub row_groups_committed: u64,
    pub commits: u64,
    /// 0: never.
    pub last_commit_unix_ms: u64,
    /// Mean time of a commit (closing files to a known outcome), ms; 0
    /// before the first.
    pub commit_ms_mean: f64,
    /// Durable records (accepted requests) not committed yet: queries
    /// through the server read them, other engines do not.
    pub uncommitted_records: u64,
    /// Age in seconds of the oldest of them (0 when none): how much older
    /// than a fresh read the table is for other engines.
    pub commit_lag_secs: f64,
    /// Age in seconds of the newest event committed since the server
    /// started; `null` before its first commit.
    pub newest_committed_age_secs: Option<f64>,
    pub sink_metrics: SinkMetrics,
    pub recent_errors: Vec<RecentError>,
    pub sql: Option<String>,
    /// The digest of its SQL (`pipe.definition`).
    pub definition: Option<String>,
    pub origin: PipelineOrigin,
}

/// A pipeline's figures under the names the hosted service's sink
/// metrics use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SinkMetrics {
    pub records_written: u64,
    pub files_written: u64,
    pub bytes_written: u64,
    pub uncompressed_bytes_written: u64,
    pub row_groups_written: u64,
}

/// Where a pipeline's definition comes from: a definition's [`Origin`],
/// or `stream` for a stream's quarantine pipeline, which comes with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PipelineOrigin {
    File,
    Api,
    Stream,
}

impl From<Option<Origin>> for PipelineOrigin {
    fn from(origin: Option<Origin>) -> Self {
        match origin {
            Some(Origin::File) => PipelineOrigin::File,
            Some(Origin::Api) => PipelineOrigin::Api,
            None => PipelineOrigin::Stream,
        }
    }
}

/// `GET /v1/pipelines`, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineList {
    pub pipelines: Vec<PipelineView>,
}

/// `DELETE /v1/pipelines/{name}`: deleted after its last commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineDeleted {
    pub deleted: String,
    pub committed_through: Option<u64>,
}

// ---- changes in place ----

/// A view that names its definition under the key [`View::KEY`]
/// (`"stream": name`), as the answers to a change do.
pub trait View {
    const KEY: &'static str;
}

impl View for StreamView {
    const KEY: &'static str = "stream";
}
impl View for SinkView {
    const KEY: &'static str = "sink";
}
impl View for PipelineView {
    const KEY: &'static str = "pipeline";
}

/// The answer to a change in place (`PATCH`) of a definition, whose view
/// is `V` and whose change says `C`:
///
/// | outcome | JSON |
/// |---|---|
/// | nothing to change | `{"<kind>": name, "changed": false}` |
/// | `?dry_run=true` | `{"<kind>": name, "dry_run": true, "change": C}` |
/// | applied | the view as it runs now, and `"change": C` |
#[derive(Debug, Clone, PartialEq)]
pub enum Updated<V, C> {
    Unchanged { name: String },
    DryRun { name: String, change: C },
    Applied { view: V, change: C },
}

/// `PATCH /v1/streams/{name}`.
pub type StreamUpdated = Updated<StreamView, StreamChange>;
/// `PATCH /v1/sinks/{name}`: the change of the pipeline writing it, if one does.
pub type SinkUpdated = Updated<SinkView, Option<PipelineChange>>;
/// `PATCH /v1/pipelines/{name}`.
pub type PipelineUpdated = Updated<PipelineView, PipelineChange>;

impl<V, C> Updated<V, C> {
    /// What changed (or would), unless nothing does.
    pub fn change(&self) -> Option<&C> {
        match self {
            Updated::Unchanged { .. } => None,
            Updated::DryRun { change, .. } | Updated::Applied { change, .. } => Some(change),
        }
    }

    pub fn is_dry_run(&self) -> bool {
        matches!(self, Updated::DryRun { .. })
    }
}

#[derive(Serialize)]
struct WithChange<'a, V, C> {
    #[serde(flatten)]
    view: &'a V,
    change: &'a C,
}

impl<V: Serialize + View, C: Serialize> Serialize for Updated<V, C> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Updated::Unchanged { name } => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry(V::KEY, name)?;
                map.serialize_entry("changed", &false)?;
                map.end()
            }
            Updated::DryRun { name, change } => {
                let mut map = serializer.serialize_map(Some(3))?;
                map.serialize_entry(V::KEY, name)?;
                map.serialize_entry("dry_run", &true)?;
                map.serialize_entry("change", change)?;
                map.end()
            }
            Updated::Applied { view, change } => WithChange { view, change }.serialize(serializer),
        }
    }
}

impl<'de, V: DeserializeOwned + View, C: DeserializeOwned> Deserialize<'de> for Updated<V, C> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut map = Map::<String, Value>::deserialize(deserializer)?;
        let name = |map: &Map<String, Value>| match map.get(V::KEY) {
            Some(Value::String(name)) => Ok(name.clone()),
            _ => Err(D::Error::custom(format!(
                "expected `{}`, the name of the definition",
                V::KEY
            ))),
        };
        let Some(change) = map.remove("change") else {
            return match map.get("changed") {
                Some(Value::Bool(false)) => Ok(Updated::Unchanged { name: name(&map)? }),
                _ => Err(D::Error::custom(
                    "expected `change`, or `\"changed\": false`",
                )),
            };
        };
        let change = C::deserialize(change).map_err(D::Error::custom)?;
        if map.get("dry_run") == Some(&Value::Bool(true)) {
            return Ok(Updated::DryRun {
                name: name(&map)?,
                change,
            });
        }
        let view = V::deserialize(Value::Object(map)).map_err(D::Error::custom)?;
        Ok(Updated::Applied { view, change })
    }
}

// ---- tables ----

/// `GET /v1/tables/{table}/maintenance`: its last runs, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceRuns {
    pub table: String,
    pub runs: Vec<RunRecord>,
}

// ---- queries ----

/// The body of `POST /v1/query`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    pub sql: String,
    /// Rows returned at most (default 10,000, at most `max_result_rows`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<usize>,
    /// Seconds the query may take (default 30, at most `max_timeout_secs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// Read committed snapshots only: leave out the events pipelines have
    /// acknowledged and not committed yet.
    #[serde(default)]
    pub committed_only: bool,
}

impl QueryRequest {
    /// `sql` with the server's defaults, reading fresh.
    pub fn new(sql: impl Into<String>) -> QueryRequest {
        QueryRequest {
            sql: sql.into(),
            max_rows: None,
            timeout_secs: None,
            committed_only: false,
        }
    }
}

/// `POST /v1/query`: the rows and what reading them took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryAnswer {
    pub columns: Vec<String>,
    /// One JSON object per row, keyed by column name.
    pub rows: Vec<Value>,
    pub row_count: usize,
    /// More rows were there than `max_rows`.
    pub truncated: bool,
    pub elapsed_ms: f64,
    /// Data files in the snapshots read, left after pruning, pruned.
    pub files_total: usize,
    pub files_scanned: usize,
    pub files_skipped: usize,
    /// Bytes fetched from storage.
    pub bytes_read: usize,
    /// Only committed snapshots were read.
    pub committed_only: bool,
    /// Rows read from the buffer: acknowledged, not committed yet.
    pub buffer_rows: usize,
    /// Buffered requests those rows came from.
    pub buffer_records: usize,
}

impl QueryAnswer {
    /// What the scans read, as [`pipe_query::ScanStats`].
    pub fn scan(&self) -> pipe_query::ScanStats {
        pipe_query::ScanStats {
            files_total: self.files_total,
            files_planned: self.files_scanned,
            bytes_read: self.bytes_read,
            buffer_rows: self.buffer_rows,
            buffer_records: self.buffer_records,
        }
    }
}

#[cfg(test)]
mod tests;
