//! The admin API: streams, sinks and pipelines created, listed, read and
//! deleted while the server runs. `pipe streams|sinks|pipelines …` is its
//! client ([`crate::cli::manage`]).
//!
//! | call | answer |
//! |---|---|
//! | `GET /v1/streams`, `/v1/sinks`, `/v1/pipelines` | `{"streams": [view…]}` (and so on), by name |
//! | `GET /v1/streams/{name}` (and sinks, pipelines) | the view, 404 for an unknown name |
//! | `POST /v1/streams` `{"name", "schema"?, "json_schema"?, …}` | 201 and the view |
//! | `POST /v1/sinks` `{"name", "type"?, "table"?, …}` | 201 and the view |
//! | `POST /v1/pipelines` `{"name", "sql", "quarantine_table"?}` | 201 and the view |
//! | `DELETE /v1/{streams,sinks,pipelines}/{name}` | 200 `{"deleted": name, …}` |
//! | `POST /v1/pipelines/{name}/flush` | what the flush committed |
//!
//! Every answer is a [`crate::wire`] type, which the CLI reads back.
//!
//! A create body takes the keys of the definition in `pipe.toml`
//! ([`crate::config`]), except that a stream's schema comes inline
//! (`schema`, in the Pipelines field format, or `json_schema`, a JSON
//! Schema document) instead of as a file. The new definition is checked
//! with all the others exactly as the file is; a bad one is a 400 naming
//! the key, an existing name a 409. What happens on create and delete:
//!
//! - **Stream:** its buffer opens and `POST /v1/streams/{name}` takes
//!   events at once. Delete refuses (409) while pipelines read it or its
//!   buffer holds events no pipeline has committed; `?force=true` deletes
//!   the pipelines too (each commits what it has first) and then the
//!   buffer, with whatever it still held.
//! - **Sink:** a definition only; the table or folder is created by the
//!   first pipeline that writes to it. Delete refuses (409) while a
//!   pipeline writes to it, and never deletes the table or files.
//! - **Pipeline:** its SQL is planned and its table opened (created if
//!   need be) before the 201; it reads its stream from where a pipeline of
//!   that name last committed into that table, else from the oldest event
//!   the buffer holds. Delete stops it after it commits what it has read.
//!
//! Every change is written to `definitions.toml` before it is answered
//! ([`crate::config::definitions`]), so it holds across restarts. Definitions from
//! the file cannot be changed here (409).

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pipe_ingest::http::error_response;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::definitions::{Definitions, Kind};
use crate::config::{Config, PipelineFile, SinkFile, SinkTarget, StreamFile};
use crate::server::state::AdminState;
use crate::wire::{
    BufferView, HttpView, PipelineDeleted, PipelineList, PipelineView, SinkDeleted, SinkList,
    SinkMetrics, SinkView, StreamDeleted, StreamList, StreamStats, StreamView,
};
use crate::{Error, ErrorKind, Result};

mod update;
use crate::control::{self, SchemaDoc};
pub(super) use crate::control::{invalid, not_found};
pub(crate) use update::update_stream;

/// Answers 401 unless the caller sends one of `[admin] auth_token_sha256`
/// as a bearer token (when any is configured); without tokens, 403 to a
/// `Host` that is not localhost or an IP address (see [`crate::server::access`]).
pub(crate) async fn authorize(
    State(state): State<AdminState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let digests = &state.supervisor.config().admin_token_digests;
    if !pipe_ingest::http::bearer_authorized(digests, request.headers()) {
        return error_response(ErrorKind::Unauthorized, "unauthorized");
    }
    if digests.is_empty() {
        if let Some(refusal) = crate::server::access::refuse_foreign_host(request.headers()) {
            return refusal;
        }
    }
    next.run(request).await
}

/// A client that hangs up drops its request's handler, and a change to the
/// definitions must not stop half-way (a pipeline stopped but still
/// defined; a delete whose old task still commits while a new pipeline of
/// the same name starts): every admin request that changes something runs
/// to its end on a task of its own, whatever the client does.
pub(crate) async fn run_to_end(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if request.method() == axum::http::Method::GET {
        return next.run(request).await;
    }
    match tokio::spawn(next.run(request)).await {
        Ok(response) => response,
        Err(e) => error_response(ErrorKind::Internal, format!("the request failed: {e}")),
    }
}

/// The admin routes (behind [`authorize`], which the caller layers on).
pub(crate) fn router() -> Router<AdminState> {
    Router::new()
        .route("/v1/streams", get(list_streams).post(create_stream))
        .route("/v1/sinks", get(list_sinks).post(create_sink))
        .route(
            "/v1/sinks/{name}",
            get(get_sink).delete(delete_sink).patch(update::update_sink),
        )
        .route("/v1/pipelines", get(list_pipelines).post(create_pipeline))
        .route(
            "/v1/pipelines/{name}",
            get(get_pipeline)
                .delete(delete_pipeline)
                .patch(update::update_pipeline),
        )
        .route("/v1/pipelines/{name}/flush", post(flush))
        .route("/v1/changes", get(changes))
        .route("/v1/reload", post(update::reload))
}

pub(super) fn answer(result: Result<impl Serialize>, created: bool) -> Response {
    match result {
        Ok(body) if created => (axum::http::StatusCode::CREATED, Json(body)).into_response(),
        Ok(body) => Json(body).into_response(),
        Err(e) => error_response(e.kind(), e.to_string()),
    }
}

/// Splits a create body into its name and the rest.
fn take_name(body: &[u8], kind: Kind) -> Result<(String, serde_json::Map<String, Value>)> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("expected a JSON object: {e}")))?;
    let Value::Object(mut map) = value else {
        return Err(invalid("expected a JSON object".into()));
    };
    match map.remove("name") {
        Some(Value::String(name)) => Ok((name, map)),
        _ => Err(invalid(format!(
            "a {} needs a `name` (a string)",
            kind.noun()
        ))),
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    kind: Kind,
    name: &str,
    map: serde_json::Map<String, Value>,
) -> Result<T> {
    serde_json::from_value(Value::Object(map))
        .map_err(|e| invalid(format!("`{}s.{name}`: {e}", kind.noun())))
}

// ---- streams ----

async fn list_streams(State(state): State<AdminState>) -> Response {
    let definitions = state.supervisor.definitions.read();
    let config = state.supervisor.config();
    let streams = config
        .streams
        .iter()
        .filter_map(|s| stream_view(&state, &definitions, &config, &s.name))
        .map(|mut view| {
            // A list stays small: the problems are in each stream's view.
            if let Some(stats) = &mut view.stats {
                stats.recent_rejections = None;
            }
            view
        })
        .collect();
    Json(StreamList { streams }).into_response()
}

pub(crate) async fn get_stream(
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Response {
    let definitions = state.supervisor.definitions.read();
    let config = state.supervisor.config();
    answer(
        stream_view(&state, &definitions, &config, &name)
            .ok_or_else(|| not_found(Kind::Stream, &name)),
        false,
    )
}

pub(super) fn stream_view(
    state: &AdminState,
    definitions: &Definitions,
    config: &Config,
    name: &str,
) -> Option<StreamView> {
    let s = config.streams.iter().find(|s| s.name == name)?;
    let running = state.supervisor.stream(name);
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let buffer = running.as_ref().map(|r| BufferView {
        bytes: r.log.disk_bytes(),
        quota_bytes: s.max_buffer_bytes,
        unprocessed_records: r.log.unprocessed(),
    });
    let stats = running.as_ref().map(|r| StreamStats {
        requests: load(&r.stats.requests),
        records_in: load(&r.stats.records_in),
        bytes_in: load(&r.stats.bytes_in),
        decode_errors: load(&r.stats.decode_errors),
        errors_by_type: r.stats.user_errors().into_iter().collect(),
        recent_rejections: Some(r.stats.recent_rejections()),
    });
    let failure = running.as_ref().and_then(|r| r.log.failure());
    Some(StreamView {
        failure,
        stream: name.to_string(),
        origin: definitions.origin(Kind::Stream, name),
        endpoint: format!("http://{}/v1/streams/{name}", state.addr),
        http: HttpView {
            enabled: s.policy.http_enabled,
            auth: !s.policy.token_digests.is_empty(),
            cors_origins: s.policy.cors_origins.clone(),
        },
        schema: s.schema.clone(),
        json_schema: s.json_schema.is_some(),
        unknown_fields: s.unknown_fields,
        invalid_events: match s.quarantine {
            Some(_) => "quarantine",
            None => "reject",
        }
        .into(),
        quarantine_table: s.quarantine.as_ref().map(|(ns, t)| format!("{ns}.{t}")),
        max_request_bytes: s.policy.max_body_bytes as u64,
        max_events_per_request: s.max_events as u64,
        buffer,
        pipelines: control::readers(&state.supervisor, name),
        stats,
    })
}

async fn create_stream(State(state): State<AdminState>, body: axum::body::Bytes) -> Response {
    let result = async {
        let (name, mut map) = take_name(&body, Kind::Stream)?;
        for key in ["schema_file", "json_schema_file"] {
            if map.contains_key(key) {
                return Err(invalid(format!(
                    "`{key}`: send the schema itself as `schema` (Pipelines field format) or `json_schema`"
                )));
            }
        }
        let schema = map.remove("schema").filter(|v| !v.is_null());
        let json_schema = map.remove("json_schema").filter(|v| !v.is_null());
        let stream: StreamFile = parse(Kind::Stream, &name, map)?;
        let schema = match (schema, json_schema) {
            (Some(_), Some(_)) => {
                return Err(invalid("send `schema` or `json_schema`, not both".into()))
            }
            (None, None) => None,
            (Some(doc), None) => Some(SchemaDoc::Fields(doc)),
            (None, Some(doc)) => Some(SchemaDoc::JsonSchema(doc)),
        };
        control::create_stream(&state.supervisor, &name, stream, schema).await?;
        let definitions = state.supervisor.definitions.read();
        stream_view(&state, &definitions, &state.supervisor.config(), &name)
            .ok_or_else(|| Error::Internal("the new stream is missing".into()))
    }
    .await;
    answer(result, true)
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct DeleteParams {
    #[serde(default)]
    force: bool,
}

pub(crate) async fn delete_stream(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Query(params): Query<DeleteParams>,
) -> Response {
    let result = async {
        let deleted = control::delete_stream(&state.supervisor, &name, params.force).await?;
        Ok(StreamDeleted {
            deleted: name,
            pipelines_deleted: deleted.pipelines,
            unprocessed_records_dropped: deleted.unprocessed,
        })
    }
    .await;
    answer(result, false)
}

// ---- sinks ----

async fn list_sinks(State(state): State<AdminState>) -> Response {
    let definitions = state.supervisor.definitions.read();
    let config = state.supervisor.config();
    let sinks = config
        .sinks
        .iter()
        .filter_map(|s| sink_view(&state, &definitions, &config, &s.name))
        .collect();
    Json(SinkList { sinks }).into_response()
}

async fn get_sink(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    let definitions = state.supervisor.definitions.read();
    let config = state.supervisor.config();
    answer(
        sink_view(&state, &definitions, &config, &name).ok_or_else(|| not_found(Kind::Sink, &name)),
        false,
    )
}

/// Each item as text: partition fields, sort columns.
fn names(items: &[impl ToString]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

/// The pipeline that writes to sink `name`, if one runs.
pub(super) fn sink_writer(state: &AdminState, name: &str) -> Option<String> {
    state
        .supervisor
        .pipelines()
        .iter()
        .find(|p| p.sink_name == name)
        .map(|p| p.name.clone())
}

pub(super) fn sink_view(
    state: &AdminState,
    definitions: &Definitions,
    config: &Config,
    name: &str,
) -> Option<SinkView> {
    let s = config.sink(name)?;
    let (kind, table, path, format) = match &s.target {
        SinkTarget::Table { namespace, table } => (
            "iceberg",
            Some(format!("{namespace}.{table}")),
            None,
            "parquet",
        ),
        SinkTarget::Files(f) => match f.format {
            pipe_sink::FileFormat::Parquet { .. } => {
                ("parquet", None, Some(f.location.clone()), "parquet")
            }
            pipe_sink::FileFormat::Json { .. } => {
                ("json", None, Some(f.location.clone()), "ndjson")
            }
        },
    };
    let partitioning = match &s.target {
        SinkTarget::Files(f) => Some(f.partitioning.clone()),
        SinkTarget::Table { .. } => None,
    };
    let iceberg = kind == "iceberg";
    Some(SinkView {
        sink: name.to_string(),
        origin: definitions.origin(Kind::Sink, name),
        kind: kind.into(),
        table,
        path,
        format: format.into(),
        compression: s.compression,
        roll_interval_secs: s.roll_interval.as_secs(),
        roll_size_mb: s.roll_bytes / (1024 * 1024),
        roll_rows: s.roll_rows,
        row_group_rows: s.row_group_rows as u64,
        partition_by: iceberg.then(|| names(&s.partition_by)),
        bloom_filter_columns: iceberg.then(|| s.bloom_filter_columns.clone()),
        target_file_size_mb: s.target_file_bytes.map(|b| (b / (1024 * 1024)) as u64),
        sort_by: s.sort_by.as_deref().map(names),
        partitioning,
        pipeline: sink_writer(state, name),
    })
}

async fn create_sink(State(state): State<AdminState>, body: axum::body::Bytes) -> Response {
    let result = async {
        let (name, map) = take_name(&body, Kind::Sink)?;
        let sink: SinkFile = parse(Kind::Sink, &name, map)?;
        control::create_sink(&state.supervisor, &name, sink).await?;
        let definitions = state.supervisor.definitions.read();
        sink_view(&state, &definitions, &state.supervisor.config(), &name)
            .ok_or_else(|| Error::Internal("the new sink is missing".into()))
    }
    .await;
    answer(result, true)
}

async fn delete_sink(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    let result = async {
        control::delete_sink(&state.supervisor, &name).await?;
        Ok(SinkDeleted { deleted: name })
    }
    .await;
    answer(result, false)
}

// ---- pipelines ----

async fn list_pipelines(State(state): State<AdminState>) -> Response {
    let definitions = state.supervisor.definitions.read();
    let config = state.supervisor.config();
    let pipelines = state
        .supervisor
        .pipelines()
        .iter()
        .map(|p| pipeline_view(&definitions, &config, p))
        .collect();
    Json(PipelineList { pipelines }).into_response()
}

async fn get_pipeline(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    let definitions = state.supervisor.definitions.read();
    let config = state.supervisor.config();
    answer(
        state
            .supervisor
            .pipeline(&name)
            .map(|p| pipeline_view(&definitions, &config, &p))
            .ok_or_else(|| not_found(Kind::Pipeline, &name)),
        false,
    )
}

pub(super) fn pipeline_view(
    definitions: &Definitions,
    config: &Config,
    p: &crate::running::supervisor::RunningPipeline,
) -> PipelineView {
    let load =
        |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
    let stats = &p.stats;
    let defined = config.pipelines.iter().find(|c| c.name == p.name);
    let lag = stats.lag(&p.log);
    PipelineView {
        pipeline: p.name.clone(),
        health: stats.health(),
        stream: p.stream.clone(),
        sink: p.sink.clone(),
        sink_kind: p.kind.into(),
        quarantine_table: p.quarantine_table.clone(),
        committed_through: stats.committed_through(),
        rows_committed: load(&stats.rows_committed),
        failed_rows_committed: load(&stats.failed_rows_committed),
        files_committed: load(&stats.files_committed),
        bytes_committed: load(&stats.bytes_committed),
        uncompressed_bytes_committed: load(&stats.uncompressed_bytes_committed),
        row_groups_committed: load(&stats.row_groups_committed),
        commits: load(&stats.commits),
        last_commit_unix_ms: load(&stats.last_commit_unix_ms),
        commit_ms_mean: match load(&stats.commits) {
            0 => 0.0,
            n => load(&stats.commit_micros) as f64 / n as f64 / 1e3,
        },
        uncommitted_records: lag.records,
        commit_lag_secs: lag.oldest_age_secs,
        newest_committed_age_secs: lag.newest_committed_age_secs,
        sink_metrics: SinkMetrics {
            records_written: load(&stats.rows_committed),
            files_written: load(&stats.files_committed),
            bytes_written: load(&stats.bytes_committed),
            uncompressed_bytes_written: load(&stats.uncompressed_bytes_committed),
            row_groups_written: load(&stats.row_groups_committed),
        },
        recent_errors: stats.recent_errors(),
        sql: defined.map(|c| c.sql.clone()),
        definition: defined.map(|c| c.definition()),
        // A stream's quarantine pipeline is pipe's own: it comes with the stream.
        origin: definitions.origin(Kind::Pipeline, &p.name).into(),
    }
}

async fn create_pipeline(State(state): State<AdminState>, body: axum::body::Bytes) -> Response {
    let result = async {
        let (name, map) = take_name(&body, Kind::Pipeline)?;
        let pipeline: PipelineFile = parse(Kind::Pipeline, &name, map)?;
        control::create_pipeline(&state.supervisor, &name, pipeline).await?;
        let running = state
            .supervisor
            .pipeline(&name)
            .ok_or_else(|| Error::Internal("the new pipeline is missing".into()))?;
        let definitions = state.supervisor.definitions.read();
        Ok(pipeline_view(
            &definitions,
            &state.supervisor.config(),
            &running,
        ))
    }
    .await;
    answer(result, true)
}

async fn delete_pipeline(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Query(params): Query<DeleteParams>,
) -> Response {
    let result = async {
        let committed = control::delete_pipeline(&state.supervisor, &name, params.force).await?;
        Ok(PipelineDeleted {
            deleted: name,
            committed_through: committed,
        })
    }
    .await;
    answer(result, false)
}

/// `GET /v1/changes`: the newest changes of the API's definitions (what
/// was created, updated, deleted, and when), newest first.
async fn changes(State(state): State<AdminState>) -> Response {
    let data_dir = state.supervisor.config().data_dir.clone();
    let log = crate::config::changes::ChangeLog::new(&data_dir);
    Json(json!({ "changes": log.newest(100) })).into_response()
}

/// `POST /v1/pipelines/{name}/flush`: roll and commit now.
async fn flush(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    let Some(p) = state.supervisor.pipeline(&name) else {
        return error_response(ErrorKind::NotFound, format!("unknown pipeline `{name}`"));
    };
    let (reply, done) = tokio::sync::oneshot::channel();
    if p.flush.send(reply).await.is_err() {
        let why = p.stats.health().reason.unwrap_or_default();
        return error_response(
            ErrorKind::Unavailable,
            format!("pipeline `{name}` is not running: {why}"),
        );
    }
    match done.await {
        Ok(Ok(report)) => Json(report).into_response(),
        Ok(Err(e)) => error_response(e.kind(), e.to_string()),
        Err(_) => error_response(ErrorKind::Unavailable, format!("pipeline `{name}` stopped")),
    }
}
