//! `pipe serve`: builds every stage from a [`Config`] and runs them until a
//! shutdown signal.
//!
//! Startup order, each step failing fast with a clear error:
//!
//! 1. open the catalog;
//! 2. plan every pipeline's SQL;
//! 3. open or create each sink table and read the pipeline's last committed
//!    offset from it;
//! 4. open each stream's buffer (recovering a torn tail) and start its writer;
//! 5. start one task per pipeline;
//! 6. serve HTTP.
//!
//! Shutdown (SIGINT / SIGTERM) runs in reverse: stop accepting requests,
//! let the buffer writers finish what is queued, then each pipeline reads
//! what is left, commits it, and exits.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pipe_ingest::buffer::{Buffer, BufferOptions};
use pipe_ingest::http::{error_response, IngestState, StreamEndpoint};
use pipe_ingest::idempotency::KeyIndex;
use pipe_schemas::EventDecoder;
use pipe_sink::{open_catalog, FileSink, Sink, TableSink, WriteOptions};
use pipe_transform::PipelinePlan;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::{Config, SinkTarget};
use crate::pipeline::{
    FailedRows, FlushRequest, Part, PipelineStats, PipelineTask, ReleaseTracker,
};
use crate::{Error, ErrorKind, Result};

/// A pipeline planned and its table opened, ready to start.
struct Planned {
    /// The stream whose buffer it reads.
    stream: String,
    part: Part,
    plan: PipelinePlan,
    sink: Sink,
    committed: Option<u64>,
    failed: Option<FailedRows>,
    roll_interval: std::time::Duration,
    roll_bytes: u64,
    roll_rows: Option<u64>,
}

#[derive(Clone)]
struct AdminState {
    flushes: Arc<HashMap<String, mpsc::Sender<FlushRequest>>>,
    pipelines: Arc<HashMap<String, PipelineInfo>>,
    metrics: Arc<prometheus_client::registry::Registry>,
    /// Set once shutdown has begun: `/readyz` answers 503 from then on.
    draining: Arc<std::sync::atomic::AtomicBool>,
    catalog: pipe_sink::CatalogSettings,
    query: crate::config::QueryConfig,
}

/// What `GET /v1/pipelines/{name}` shows of a pipeline.
struct PipelineInfo {
    stream: String,
    /// `namespace.table`, or the location of a file sink.
    sink: String,
    kind: &'static str,
    quarantine_table: Option<String>,
    stats: Arc<PipelineStats>,
}

/// Runs the server until `shutdown` completes.
pub async fn serve(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let catalog = open_catalog(&config.catalog).await?;

    let decoders: HashMap<String, EventDecoder> = config
        .streams
        .iter()
        .map(|s| Ok((s.name.clone(), s.decoder()?)))
        .collect::<Result<_>>()?;
    let tables: HashMap<String, _> = decoders
        .iter()
        .map(|(name, d)| (name.clone(), d.table_schema()))
        .collect();
    let sink_names: Vec<String> = config.sinks.iter().map(|s| s.name.clone()).collect();

    // Each sink's write ledger (files written, not yet resolved) lives
    // beside the buffer.
    let ledger_dir = config.data_dir.join("sinks");
    let ledgered = || WriteOptions {
        ledger_dir: Some(ledger_dir.clone()),
        ..WriteOptions::default()
    };
    // Plan every pipeline and open its table before anything is accepted.
    let mut planned = Vec::new();
    let mut sink_users: HashMap<String, String> = HashMap::new();
    for p in &config.pipelines {
        let plan = PipelinePlan::new(&p.name, &p.sql, &tables, &sink_names).await?;
        if let Some(other) = sink_users.insert(plan.sink().to_string(), p.name.clone()) {
            return Err(Error::Config(format!(
                "`pipelines.{}.sql`: sink `{}` is already written by pipeline `{other}`",
                p.name,
                plan.sink()
            )));
        }
        let sink_config = config
            .sink(plan.sink())
            .expect("the plan checked the sink exists");
        let options = WriteOptions {
            codec: sink_config.compression,
            row_group_rows: sink_config.row_group_rows,
            partition_by: sink_config.partition_by.clone(),
            retention: sink_config.retention,
            ..ledgered()
        };
        let mut sink = match &sink_config.target {
            SinkTarget::Table { namespace, table } => Sink::Table(Box::new(
                TableSink::open(
                    catalog.clone(),
                    namespace,
                    table,
                    &p.name,
                    &sink_config.name,
                    plan.output_schema(),
                    options,
                )
                .await?,
            )),
            SinkTarget::Files(settings) => {
                Sink::Files(FileSink::open(settings, &p.name, plan.output_schema()).await?)
            }
        };
        let committed = sink.last_committed().await?.map(|c| c.range.last);
        let (namespace, table) = &p.quarantine;
        let mut failed_sink = TableSink::open(
            catalog.clone(),
            namespace,
            table,
            &p.failed_rows_writer(),
            &sink_config.name,
            &pipe_transform::failed_rows_schema(),
            ledgered(),
        )
        .await?;
        let failed = FailedRows {
            committed_through: failed_sink.last_committed().await?.map(|c| c.range.last),
            sink: failed_sink,
        };
        info!(pipeline = %p.name, stream = plan.stream(), sink = %sink.describe(), quarantine_table = %failed.sink.ident(), committed_through = ?committed, "pipeline planned");
        planned.push(Planned {
            stream: plan.stream().to_string(),
            part: Part::Events,
            plan,
            sink,
            committed,
            failed: Some(failed),
            roll_interval: sink_config.roll_interval,
            roll_bytes: sink_config.roll_bytes,
            roll_rows: sink_config.roll_rows,
        });
    }
    // Each quarantine-mode stream gets a pipeline into its quarantine table.
    for stream in &config.streams {
        let Some((namespace, table)) = &stream.quarantine else {
            continue;
        };
        let name = stream.quarantine_pipeline();
        let source = format!("{}__quarantined", stream.name);
        let sink_name = format!("{name}_sink");
        let schema = pipe_schemas::EventDecoder::quarantine_table_schema();
        let plan = PipelinePlan::new(
            &name,
            &format!("INSERT INTO {sink_name} SELECT * FROM {source}"),
            &HashMap::from([(source.clone(), schema)]),
            std::slice::from_ref(&sink_name),
        )
        .await?;
        let mut sink = Sink::Table(Box::new(
            TableSink::open(
                catalog.clone(),
                namespace,
                table,
                &name,
                &sink_name,
                plan.output_schema(),
                ledgered(),
            )
            .await?,
        ));
        let committed = sink.last_committed().await?.map(|c| c.range.last);
        info!(pipeline = %name, stream = %stream.name, table = %sink.describe(), committed_through = ?committed, "quarantine pipeline planned");
        planned.push(Planned {
            stream: stream.name.clone(),
            part: Part::Quarantine,
            plan,
            sink,
            committed,
            failed: None,
            roll_interval: std::time::Duration::from_secs(60),
            roll_bytes: 64 << 20,
            roll_rows: None,
        });
    }

    // Open buffers and start their writers.
    let mut writers = JoinSet::new();
    let mut endpoints = HashMap::new();
    let mut trackers = HashMap::new();
    let mut metrics = crate::metrics::Metrics::default();
    for stream in &config.streams {
        let min_next = planned
            .iter()
            .filter(|p| p.stream == stream.name)
            .filter_map(|p| p.committed.map(|c| c + 1))
            .max()
            .unwrap_or(0);
        let dir = config.data_dir.join("buffer").join(&stream.name);
        let options = BufferOptions {
            segment_bytes: stream.segment_bytes,
            max_disk_bytes: stream.max_buffer_bytes,
            ..BufferOptions::default()
        };
        let mut buffer = Buffer::open(&dir, options, min_next)?;
        let keys = Arc::new(KeyIndex::open(
            &dir.join("keys.log"),
            stream.idempotency_window,
        )?);
        rebuild_keys(&buffer, &keys)?;
        let (appender, writer) = buffer.start_writer();
        let name = stream.name.clone();
        writers.spawn(async move { (name, writer.await) });
        let buffer = Arc::new(buffer);
        let stream_stats = Arc::new(pipe_ingest::http::StreamStats::default());
        metrics.streams.push(crate::metrics::StreamSource {
            name: stream.name.clone(),
            stats: stream_stats.clone(),
            buffer: buffer.clone(),
        });
        let users = planned
            .iter()
            .filter(|p| p.stream == stream.name)
            .map(|p| (p.plan.name().to_string(), p.committed));
        trackers.insert(
            stream.name.clone(),
            Arc::new(ReleaseTracker::new(buffer, keys.clone(), users)),
        );
        endpoints.insert(
            stream.name.clone(),
            StreamEndpoint {
                decoder: decoders[&stream.name].clone(),
                appender,
                policy: stream.policy.clone(),
                keys,
                stats: stream_stats,
            },
        );
    }

    // Start the pipelines.
    // Pipelines (DataFusion, Parquet encoding, uploads) run on their own
    // runtime, at a lower CPU priority, so that CPU-heavy batches never
    // delay HTTP acks: the buffer absorbs a pipeline that lags.
    let pipeline_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(pipeline_threads())
        .thread_name("pipe-pipeline")
        .on_thread_start(lower_thread_priority)
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("starting the pipeline runtime: {e}")))?;
    let cancel_pipelines = CancellationToken::new();
    let mut pipelines = JoinSet::new();
    let mut flushes = HashMap::new();
    let mut infos = HashMap::new();
    for p in planned {
        let tracker = trackers[&p.stream].clone();
        let from = match p.committed {
            Some(c) => c + 1,
            None => tracker.buffer.first_offset(),
        };
        let (tx, rx) = mpsc::channel(16);
        flushes.insert(p.plan.name().to_string(), tx);
        let stats = Arc::new(PipelineStats::new(p.committed));
        metrics.pipelines.push(crate::metrics::PipelineSource {
            name: p.plan.name().to_string(),
            stream: p.stream.clone(),
            sink: p.sink.describe(),
            stats: stats.clone(),
            buffer: tracker.buffer.clone(),
        });
        infos.insert(
            p.plan.name().to_string(),
            PipelineInfo {
                stream: p.stream.clone(),
                sink: p.sink.describe(),
                kind: match &p.sink {
                    Sink::Table(_) => "iceberg",
                    Sink::Files(_) => "files",
                },
                quarantine_table: p.failed.as_ref().map(|f| f.sink.ident().to_string()),
                stats: stats.clone(),
            },
        );
        let task = PipelineTask {
            part: p.part,
            reader: tracker.buffer.reader(from),
            plan: p.plan,
            sink: p.sink,
            release: tracker,
            roll_interval: p.roll_interval,
            roll_bytes: p.roll_bytes,
            roll_rows: p.roll_rows,
            committed_through: p.committed,
            failed: p.failed,
            unfinished: None,
            stats,
        };
        let cancel = cancel_pipelines.clone();
        pipelines.spawn_on(task.run(rx, cancel), pipeline_runtime.handle());
    }

    let ingest = pipe_ingest::http::router(
        IngestState {
            streams: Arc::new(endpoints),
        },
        config.body_timeout,
    );
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let admin = Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus))
        .route("/v1/query", post(query))
        .route("/v1/pipelines", get(pipelines_status))
        .route("/v1/pipelines/{name}", get(pipeline_status))
        .route("/v1/pipelines/{name}/flush", post(flush))
        .with_state(AdminState {
            flushes: Arc::new(flushes),
            pipelines: Arc::new(infos),
            metrics: Arc::new(metrics.registry()),
            draining: draining.clone(),
            catalog: config.catalog.clone(),
            query: config.query.clone(),
        });
    let app = ingest.merge(admin);

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::Config(format!("listening on `{}`: {e}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Internal(e.to_string()))?;
    info!(%addr, streams = config.streams.len(), pipelines = config.pipelines.len(), "pipe is serving");
    println!("pipe listening on http://{addr}");

    let shutdown = async move {
        shutdown.await;
        draining.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::Internal(format!("HTTP server: {e}")))?;
    info!("HTTP stopped; draining buffers and committing");

    // The router (and every appender in it) is gone: writers finish their queues.
    let mut failure = None;
    while let Some(joined) = writers.join_next().await {
        match joined {
            Ok((_, Ok(Ok(())))) => {}
            Ok((stream, Ok(Err(e)))) => {
                error!(stream, error = %e, "buffer writer failed");
                failure.get_or_insert(Error::from(e));
            }
            Ok((stream, Err(e))) => {
                failure.get_or_insert(Error::Internal(format!("buffer writer of `{stream}`: {e}")));
            }
            Err(e) => {
                failure.get_or_insert(Error::Internal(e.to_string()));
            }
        }
    }
    cancel_pipelines.cancel();
    while let Some(joined) = pipelines.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                error!(error = %e, "pipeline stopped with an error");
                failure.get_or_insert(e);
            }
            Err(e) => {
                failure.get_or_insert(Error::Internal(e.to_string()));
            }
        }
    }
    // Every pipeline task has finished; the runtime has nothing left to run.
    pipeline_runtime.shutdown_background();
    info!("pipe stopped");
    failure.map_or(Ok(()), Err)
}

/// Worker threads for pipelines: all cores but one, which stays with ingest.
fn pipeline_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1))
        .unwrap_or(1)
        .max(1)
}

/// Puts the idempotency keys of every live buffer record into `keys`.
fn rebuild_keys(buffer: &Buffer, keys: &KeyIndex) -> Result<()> {
    let mut reader = buffer.reader(buffer.first_offset());
    loop {
        let records = reader.read(4096, 64 << 20)?;
        if records.is_empty() {
            return Ok(());
        }
        for r in &records {
            keys.observe(&pipe_ingest::payload::decode_meta(&r.payload)?);
        }
    }
}

/// The body of `POST /v1/query`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    sql: String,
    /// Rows returned at most (default 10,000; the caller may ask for more).
    #[serde(default = "default_max_rows")]
    max_rows: usize,
    /// Seconds the query may take (default 30).
    #[serde(default = "default_query_secs")]
    timeout_secs: u64,
}

fn default_max_rows() -> usize {
    10_000
}

fn default_query_secs() -> u64 {
    30
}

/// `POST /v1/query`: one read-only statement over the catalog's tables;
/// the rows as JSON objects. Statements that would change data or
/// definitions are refused (400), a query past its time limit is 408.
async fn query(
    State(state): State<AdminState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !state.query.enabled {
        return error_response(
            ErrorKind::NotFound,
            "the query endpoint is turned off (`[query] enabled = false`)",
        );
    }
    if !pipe_ingest::http::bearer_authorized(&state.query.token_digests, &headers) {
        return error_response(ErrorKind::Unauthorized, "unauthorized");
    }
    let request: QueryRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error_response(
                ErrorKind::InvalidInput,
                format!("expected {{\"sql\": \"…\", \"max_rows\": n, \"timeout_secs\": n}}: {e}"),
            )
        }
    };
    let started = std::time::Instant::now();
    let run = async {
        let catalog = pipe_sink::open_catalog(&state.catalog).await?;
        let engine = pipe_query::QueryEngine::new(catalog).await?;
        let (answer, truncated) = engine.read_only(&request.sql, request.max_rows).await?;
        let rows = pipe_query::render(&answer.batches, pipe_query::OutputFormat::Json)?;
        Ok::<_, Error>((answer, truncated, rows))
    };
    let limit = std::time::Duration::from_secs(request.timeout_secs.max(1));
    match tokio::time::timeout(limit, run).await {
        Err(_) => error_response(
            ErrorKind::TimedOut,
            format!("the query took longer than {} s", limit.as_secs()),
        ),
        Ok(Err(e)) => error_response(e.kind(), e.to_string()),
        Ok(Ok((answer, truncated, rows))) => {
            let columns: Vec<String> = answer
                .batches
                .first()
                .map(|b| {
                    b.schema()
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .collect()
                })
                .unwrap_or_default();
            let rows: serde_json::Value = serde_json::from_str(&rows).unwrap_or_default();
            Json(json!({
                "columns": columns,
                "rows": rows,
                "row_count": pipe_query::row_count(&answer.batches),
                "truncated": truncated,
                "elapsed_ms": started.elapsed().as_secs_f64() * 1e3,
                "files_total": answer.scan.files_total,
                "files_scanned": answer.scan.files_planned,
                "files_skipped": answer.scan.files_skipped(),
                "bytes_read": answer.scan.bytes_read,
            }))
            .into_response()
        }
    }
}

/// `GET /readyz`: 200 while the server takes events, 503 once it drains.
async fn readyz(State(state): State<AdminState>) -> Response {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "draining"})),
        )
            .into_response();
    }
    Json(json!({"status": "ready"})).into_response()
}

/// `GET /metrics`: Prometheus text format (see [`crate::metrics`]).
async fn prometheus(State(state): State<AdminState>) -> Response {
    let body = crate::metrics::render(&state.metrics);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn pipeline_status(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    let Some(p) = state.pipelines.get(&name) else {
        return error_response(ErrorKind::NotFound, format!("unknown pipeline `{name}`"));
    };
    Json(status_json(&name, p)).into_response()
}

/// `GET /v1/pipelines`: every pipeline's status, by name.
async fn pipelines_status(State(state): State<AdminState>) -> Response {
    let mut names: Vec<&String> = state.pipelines.keys().collect();
    names.sort();
    let all: Vec<serde_json::Value> = names
        .into_iter()
        .map(|name| status_json(name, &state.pipelines[name]))
        .collect();
    Json(json!({ "pipelines": all })).into_response()
}

fn status_json(name: &str, p: &PipelineInfo) -> serde_json::Value {
    let load =
        |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
    let stats = &p.stats;
    json!({
        "pipeline": name,
        "stream": p.stream,
        "sink": p.sink,
        "sink_kind": p.kind,
        "quarantine_table": p.quarantine_table,
        "committed_through": stats.committed_through(),
        "rows_committed": load(&stats.rows_committed),
        "failed_rows_committed": load(&stats.failed_rows_committed),
        "files_committed": load(&stats.files_committed),
        "bytes_committed": load(&stats.bytes_committed),
        "uncompressed_bytes_committed": load(&stats.uncompressed_bytes_committed),
        "row_groups_committed": load(&stats.row_groups_committed),
        "commits": load(&stats.commits),
        "last_commit_unix_ms": load(&stats.last_commit_unix_ms),
        // The same figures under the names the hosted service's sink
        // metrics use.
        "sink_metrics": {
            "recordsWritten": load(&stats.rows_committed),
            "filesWritten": load(&stats.files_committed),
            "bytesWritten": load(&stats.bytes_committed),
            "uncompressedBytesWritten": load(&stats.uncompressed_bytes_committed),
            "rowGroupsWritten": load(&stats.row_groups_committed),
        },
        "recent_errors": stats.recent_errors(),
    })
}

async fn flush(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    let Some(tx) = state.flushes.get(&name) else {
        return error_response(ErrorKind::NotFound, format!("unknown pipeline `{name}`"));
    };
    let (reply, done) = oneshot::channel();
    if tx.send(reply).await.is_err() {
        return error_response(
            ErrorKind::Unavailable,
            format!("pipeline `{name}` is not running"),
        );
    }
    match done.await {
        Ok(Ok(report)) => Json(report).into_response(),
        Ok(Err(e)) => error_response(e.kind(), e.to_string()),
        Err(_) => error_response(ErrorKind::Unavailable, format!("pipeline `{name}` stopped")),
    }
}

/// Niceness of pipeline threads: under contention the scheduler gives HTTP
/// and buffer threads about ten times their CPU share.
const PIPELINE_NICE: i32 = 10;

/// Lowers the calling thread's CPU priority (Linux niceness is per thread).
/// Best effort: on failure the thread runs at normal priority.
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority has no memory effects; `0` names the calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, PIPELINE_NICE);
    }
}
