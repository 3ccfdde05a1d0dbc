//! `POST /v1/query`: one read-only statement over the catalog's tables,
//! run so that no query can take the server down with it.
//!
//! ```text
//!  request ── auth, JSON ──► limits checked (400: timeout_secs, max_rows)
//!     │
//!     ├─ no free slot of `max_concurrent` ──► 503 + Retry-After
//!     ▼
//!  task on the `pipe-query` runtime (nice 15)   ◄── owns the slot
//!     │  DataFusion within one shared memory pool of `memory_limit_bytes`,
//!     │  spilling to <data_dir>/query-spill up to `max_spill_bytes`
//!     ├─ pool and spill exhausted ──► 503 naming the settings
//!     ├─ past `timeout_secs` ──► 408; the task is aborted
//!     ▼
//!  200 {"columns", "rows", …}
//! ```
//!
//! - **Its own runtime.** Queries run on a dedicated multi-thread runtime
//!   whose threads have a lower CPU priority than the pipelines' (and those
//!   lower than HTTP's), so acks of ingest never wait for a query.
//! - **Memory.** All queries share one DataFusion memory pool
//!   ([`pipe_query::Limits`]): the total is bounded, not each query's.
//!   Sorts, aggregations and joins past their share spill to disk, up to a
//!   bound, so a disk-filling query cannot starve the buffers either.
//! - **Time.** A request asks for `timeout_secs` (default 30) up to
//!   `max_timeout_secs`. At the deadline the task is aborted: the plan and
//!   the tasks DataFusion spawned for it are dropped, and its slot is free
//!   once they are. A client that hangs up aborts it the same way.
//! - **Concurrency.** `max_concurrent` queries run at once; one more is
//!   refused at once with 503 and `Retry-After` rather than queued, so a
//!   client sees back-pressure instead of a hung request.
//! - **Result size.** `max_rows` (default 10,000) up to `max_result_rows`:
//!   the rows are rendered to JSON in memory, outside DataFusion's pool.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use pipe_ingest::http::error_response;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio_util::task::AbortOnDropHandle;

use crate::config::{Config, QueryConfig};
use crate::running::supervisor::Supervisor;
use crate::wire::{QueryAnswer, QueryRequest};
use crate::{Error, ErrorKind, Result};

/// `timeout_secs` when a request sets none (at most `max_timeout_secs`).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// `max_rows` when a request sets none (at most `max_result_rows`).
const DEFAULT_MAX_ROWS: usize = 10_000;

/// What every query of one server shares: the runtime queries run on,
/// their slots, and their session caches (with the memory pool).
pub(crate) struct QueryService {
    runtime: tokio::runtime::Handle,
    slots: Arc<Semaphore>,
    caches: pipe_query::Caches,
    /// A SQL catalog's connections and the caches probing it, opened by
    /// the first query (on the query runtime, which their pools then live
    /// on) and kept; a query that fails to open them leaves the next one
    /// to try again.
    sql: Arc<tokio::sync::OnceCell<SqlCatalog>>,
}

/// A SQL catalog, kept open between queries.
#[derive(Clone)]
struct SqlCatalog {
    catalog: Arc<dyn pipe_sink::Catalog>,
    /// The server's caches, told whether a kept table is current by one
    /// read of the catalog's row (`Caches::probing`).
    caches: pipe_query::Caches,
}

impl QueryService {
    /// The service for `config`, running queries on `runtime`. Empties the
    /// spill folder (what a killed process left there is of no use).
    pub fn new(config: &Config, runtime: tokio::runtime::Handle) -> Result<QueryService> {
        let q = &config.query;
        let spill = (q.max_spill_bytes > 0)
            .then(|| -> Result<pipe_query::Spill> {
                let dir = QueryConfig::spill_dir(&config.data_dir);
                let io = |e: std::io::Error| {
                    Error::Internal(format!("preparing `{}`: {e}", dir.display()))
                };
                match std::fs::remove_dir_all(&dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
                    _ => {}
                }
                std::fs::create_dir_all(&dir).map_err(io)?;
                Ok(pipe_query::Spill {
                    dir,
                    max_bytes: q.max_spill_bytes,
                })
            })
            .transpose()?;
        let caches = pipe_query::Caches::with_limits(&pipe_query::Limits {
            memory_bytes: q.memory_limit_bytes,
            spill,
            max_value_bytes: q.max_value_bytes,
        })?;
        Ok(QueryService {
            runtime,
            slots: Arc::new(Semaphore::new(q.max_concurrent)),
            caches,
            sql: Arc::default(),
        })
    }
}

/// What the query endpoint takes of the server's state.
#[derive(Clone)]
pub(crate) struct QueryState {
    pub service: Arc<QueryService>,
    pub supervisor: Arc<Supervisor>,
}

/// The request's limits within the server's, or the 400 that says why not.
fn limits(request: &QueryRequest, q: &QueryConfig) -> Result<(Duration, usize)> {
    let max_secs = q.max_timeout.as_secs();
    let timeout = match request.timeout_secs {
        None => DEFAULT_TIMEOUT.min(q.max_timeout),
        Some(0) => return Err(invalid("`timeout_secs` must be at least 1".into())),
        Some(secs) if secs > max_secs => {
            return Err(invalid(format!(
                "`timeout_secs` is {secs}; this server allows at most {max_secs} (`[query] max_timeout_secs`)"
            )))
        }
        Some(secs) => Duration::from_secs(secs),
    };
    let max_rows = match request.max_rows {
        None => DEFAULT_MAX_ROWS.min(q.max_result_rows),
        Some(n) if n > q.max_result_rows => {
            return Err(invalid(format!(
                "`max_rows` is {n}; this server returns at most {} (`[query] max_result_rows`)",
                q.max_result_rows
            )))
        }
        Some(n) => n,
    };
    Ok((timeout, max_rows))
}

fn invalid(message: String) -> Error {
    Error::Remote(message, ErrorKind::InvalidInput)
}

/// `POST /v1/query`: one read-only statement over the catalog's tables;
/// the rows as JSON objects. Statements that would change data or
/// definitions are refused (400), a query past its time limit is 408, one
/// past the memory it may use 503 (see the module docs).
pub(crate) async fn query(
    State(state): State<QueryState>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let config = state.supervisor.config();
    if !config.query.enabled {
        return error_response(
            ErrorKind::NotFound,
            "the query endpoint is turned off (`[query] enabled = false`)",
        );
    }
    let digests = crate::server::access::query_token_digests(&config);
    if !pipe_ingest::http::bearer_authorized(digests, &headers) {
        return error_response(ErrorKind::Unauthorized, "unauthorized");
    }
    if digests.is_empty() {
        if let Some(refusal) = crate::server::access::refuse_foreign_host(&headers) {
            return refusal;
        }
    }
    if let Some(refusal) = crate::server::access::refuse_unless_json(&headers) {
        return refusal;
    }
    // Read only now, for a caller who may ask (see `crate::server::access`).
    let body = match crate::server::access::read_whole_body(body, config.body_timeout).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    let request: QueryRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error_response(
                ErrorKind::InvalidInput,
                format!("expected {{\"sql\": \"…\", \"max_rows\": n, \"timeout_secs\": n, \"committed_only\": false}}: {e}"),
            )
        }
    };
    let (timeout, max_rows) = match limits(&request, &config.query) {
        Ok(limits) => limits,
        Err(e) => return error_response(e.kind(), e.to_string()),
    };
    let service = &state.service;
    let Ok(slot) = service.slots.clone().try_acquire_owned() else {
        return error_response(
            ErrorKind::Unavailable,
            format!(
                "{} queries are running, the most this server runs at once (`[query] max_concurrent`); retry shortly",
                config.query.max_concurrent
            ),
        );
    };
    let started = Instant::now();
    let caches = service.caches.clone();
    let sql_catalog = service.sql.clone();
    let catalog = config.catalog.clone();
    let fresh = match request.committed_only {
        true => None,
        false => Some(state.supervisor.fresh.clone() as Arc<dyn pipe_query::fresh::Unflushed>),
    };
    // The task owns the slot: it is free again once the query is dropped,
    // whether it failed or was aborted; an answer takes it along.
    let task = AbortOnDropHandle::new(service.runtime.spawn(async move {
        let opened = open(&catalog, &caches, &sql_catalog).await;
        let answer = match opened {
            Ok((catalog, caches)) => {
                let engine = pipe_query::QueryEngine::fresh(
                    catalog,
                    pipe_query::Reader::default(),
                    &caches,
                    fresh,
                )
                .await?;
                run(&engine, &request, max_rows, started).await
            }
            Err(e) => Err(e),
        };
        answer.map(|answer| (answer, slot))
    }));
    match tokio::time::timeout(timeout, task).await {
        // Dropping the task's handle aborted it.
        Err(_) => error_response(
            ErrorKind::TimedOut,
            format!(
                "the query took longer than {} s (`timeout_secs`; this server allows up to {} s)",
                timeout.as_secs(),
                config.query.max_timeout.as_secs()
            ),
        ),
        Ok(Err(e)) => error_response(ErrorKind::Internal, format!("the query task failed: {e}")),
        Ok(Ok(Err(Error::Query(pipe_query::Error::ResourcesExhausted(detail))))) => {
            let q = &config.query;
            let spill = match q.max_spill_bytes {
                0 => "spilling to disk is off (`[query] max_spill_bytes = 0`)".to_string(),
                max => format!("spilling to disk stops at `[query] max_spill_bytes` = {max}"),
            };
            error_response(
                ErrorKind::Unavailable,
                format!(
                    "the query needs more memory than the query endpoint has: `[query] memory_limit_bytes` = {} is shared by the queries running at once, and {spill}. Narrow the query (a filter on `__ingest_ts`, a LIMIT, approx_distinct instead of count(DISTINCT …)) or raise those settings ({detail})",
                    q.memory_limit_bytes
                ),
            )
        }
        Ok(Ok(Err(e))) => error_response(e.kind(), e.to_string()),
        Ok(Ok(Ok((answer, slot)))) => answer_response(answer, slot, timeout),
    }
}

/// The bytes of an answer are sent in pieces of this size.
const ANSWER_PIECE: usize = 64 << 10;

/// An answer, sent within `timeout` (the query's own) of being ready, and
/// holding its query slot until sent or dropped: at most
/// `[query] max_concurrent` answers wait for their clients, and none for
/// longer than that. A client reading slowly enough to keep every write
/// moving would otherwise keep its answer's memory for as long as it
/// liked (the write-stall timeout only sees writes that do not move).
fn answer_response(
    answer: Vec<u8>,
    slot: tokio::sync::OwnedSemaphorePermit,
    timeout: Duration,
) -> Response {
    let deadline = tokio::time::Instant::now() + timeout;
    let answer = axum::body::Bytes::from(answer);
    let pieces: Vec<axum::body::Bytes> = (0..answer.len())
        .step_by(ANSWER_PIECE)
        .map(|at| answer.slice(at..(at + ANSWER_PIECE).min(answer.len())))
        .collect();
    let stream = futures::stream::iter(pieces).map(move |piece| {
        let _held = &slot;
        match tokio::time::Instant::now() < deadline {
            true => Ok(piece),
            false => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client did not read the answer in time",
            )),
        }
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

/// The catalog a query reads and the caches it shares. A SQL catalog is
/// opened once and kept (with a probe that spares loading unchanged
/// tables); a REST catalog is opened for each query, so a credential or
/// address that changed on its side is picked up.
async fn open(
    settings: &pipe_sink::CatalogSettings,
    caches: &pipe_query::Caches,
    kept: &tokio::sync::OnceCell<SqlCatalog>,
) -> Result<(Arc<dyn pipe_sink::Catalog>, pipe_query::Caches)> {
    if !settings.owns_metadata_files() {
        return Ok((pipe_sink::open_catalog(settings).await?, caches.clone()));
    }
    let kept = kept
        .get_or_try_init(|| async {
            let catalog = pipe_sink::open_catalog(settings).await?;
            let probe = pipe_sink::maintenance::Committer::open(settings).await?;
            Ok::<_, Error>(SqlCatalog {
                catalog,
                caches: caches.clone().probing(probe),
            })
        })
        .await?;
    Ok((kept.catalog.clone(), kept.caches.clone()))
}

/// Runs one statement (on the query runtime) and renders the answer.
async fn run(
    engine: &pipe_query::QueryEngine,
    request: &QueryRequest,
    max_rows: usize,
    started: Instant,
) -> Result<Vec<u8>> {
    let (mut answer, truncated) = engine.read_only(&request.sql, max_rows).await?;
    answer.batches = unique_names(answer.batches)?;
    let rows = pipe_query::render(&answer.batches, pipe_query::OutputFormat::Json)?;
    let rows: Value = serde_json::from_str(&rows)
        .map_err(|e| Error::Internal(format!("the rendered rows: {e}")))?;
    let Value::Array(rows) = rows else {
        return Err(Error::Internal("the rendered rows are not an array".into()));
    };
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
    let scan = &answer.scan;
    let answer = QueryAnswer {
        columns,
        rows,
        row_count: pipe_query::row_count(&answer.batches),
        truncated,
        elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
        files_total: scan.files_total,
        files_scanned: scan.files_planned,
        files_skipped: scan.files_skipped(),
        bytes_read: scan.bytes_read,
        committed_only: request.committed_only,
        buffer_rows: scan.buffer_rows,
        buffer_records: scan.buffer_records,
    };
    serde_json::to_vec(&answer).map_err(|e| Error::Internal(format!("the answer: {e}")))
}

/// `batches` with every column named once: rows are JSON objects keyed by
/// column name, so a second `user_id` (a join's) would overwrite the
/// first. Later ones are named `user_id (2)`, `user_id (3)`, ….
fn unique_names(
    batches: Vec<arrow::record_batch::RecordBatch>,
) -> Result<Vec<arrow::record_batch::RecordBatch>> {
    let Some(schema) = batches.first().map(|b| b.schema()) else {
        return Ok(batches);
    };
    let mut seen = std::collections::HashSet::new();
    let mut renamed = false;
    let fields: Vec<arrow::datatypes::Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let mut name = f.name().clone();
            let mut n = 1;
            while !seen.insert(name.clone()) {
                n += 1;
                name = format!("{} ({n})", f.name());
                renamed = true;
            }
            f.as_ref().clone().with_name(name)
        })
        .collect();
    if !renamed {
        return Ok(batches);
    }
    let schema = Arc::new(arrow::datatypes::Schema::new(fields));
    batches
        .into_iter()
        .map(|b| {
            arrow::record_batch::RecordBatch::try_new(schema.clone(), b.columns().to_vec())
                .map_err(|e| Error::Internal(format!("renaming columns: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> QueryRequest {
        serde_json::from_str(text).unwrap()
    }

    fn config() -> QueryConfig {
        let file = toml::from_str("[query]\nmax_timeout_secs = 60\nmax_result_rows = 500").unwrap();
        let c = Config::resolve(file, std::path::Path::new("/x"), &Default::default()).unwrap();
        c.query
    }

    #[test]
    fn requests_stay_within_the_servers_limits() {
        let q = config();
        assert_eq!(
            limits(&request(r#"{"sql": "x"}"#), &q).unwrap(),
            (Duration::from_secs(30), 500),
            "the defaults, capped"
        );
        assert_eq!(
            limits(
                &request(r#"{"sql": "x", "timeout_secs": 60, "max_rows": 0}"#),
                &q
            )
            .unwrap(),
            (Duration::from_secs(60), 0)
        );
        for (body, want) in [
            (
                r#"{"sql": "x", "timeout_secs": 61}"#,
                "`timeout_secs` is 61; this server allows at most 60 (`[query] max_timeout_secs`)",
            ),
            (r#"{"sql": "x", "timeout_secs": 0}"#, "at least 1"),
            (
                r#"{"sql": "x", "max_rows": 501}"#,
                "`max_rows` is 501; this server returns at most 500 (`[query] max_result_rows`)",
            ),
        ] {
            let e = limits(&request(body), &q).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(e.to_string().contains(want), "{body}: {e}");
        }
    }
}
