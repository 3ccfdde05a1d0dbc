//! `pipe serve`: builds every stage from a [`Config`] and runs them until a
//! shutdown signal.
//!
//! Startup order, each step failing fast with a clear error:
//!
//! 0. refuse an admin API other machines could reach without a token
//!    ([`crate::server::access`]);
//! 1. open the catalog;
//! 2. plan every pipeline's SQL;
//! 3. open or create each sink table and read the pipeline's last committed
//!    offset from it;
//! 4. open each stream's buffer (recovering a torn tail) and start its writer;
//! 5. start one task per pipeline;
//! 6. serve HTTP; queries run on a runtime of their own ([`crate::server::query_api`]).
//!
//! Shutdown (SIGINT / SIGTERM) runs in reverse: stop accepting requests,
//! let the buffer writers finish what is queued, then each pipeline reads
//! what is left, commits it, and exits.
//!
//! The running parts belong to a [`Supervisor`], which also starts and
//! stops single streams and pipelines while the server runs, as the admin
//! API ([`crate::server::admin`]) creates and deletes them.

pub mod access;
pub mod admin;
pub(crate) mod console;
pub(crate) mod iceberg;
pub(crate) mod state;
use state::AdminState;
pub mod listener;
pub mod query_api;
pub mod tables_api;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use pipe_sink::open_catalog;
use serde_json::json;
use tokio::net::TcpListener;
use tracing::info;

use crate::config::definitions::Definitions;
use crate::config::Config;
use crate::running::supervisor::Supervisor;
use crate::{Error, Result};

/// `<data_dir>/lock`, held: an exclusive `flock`, released by the kernel
/// when the process ends, however it ends. Two servers on one data
/// directory would append to the same buffer segments, and each would
/// delete the data files the other is about to commit as leftovers of an
/// earlier run; a restart while the old process still drains is the
/// usual way to get there. Taken before the definitions are read (their
/// load rewrites the API's file), and held by [`serve`] to its end.
pub struct DataDirLock(#[allow(dead_code)] std::fs::File);

/// Takes the [`DataDirLock`] of `dir`, or says who holds it.
pub fn lock_data_dir(dir: &std::path::Path) -> Result<DataDirLock> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Config(format!("creating `{}`: {e}", dir.display())))?;
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Config(format!("opening `{}`: {e}", path.display())))?;
    // SAFETY: flock only takes the descriptor, which `file` keeps open.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::WouldBlock {
            return Err(Error::Config(format!(
                "another `pipe serve` uses the data directory `{}` (it holds `{}`); stop it first: one still draining after SIGTERM holds it until its last commits end",
                dir.display(),
                path.display()
            )));
        }
        return Err(Error::Config(format!(
            "locking `{}` (one server per data directory): {e}",
            path.display()
        )));
    }
    Ok(DataDirLock(file))
}

/// Runs the server until `shutdown` completes: the definitions of the file
/// and of the admin API ([`Definitions::load`]), merged into `config`.
pub async fn serve(
    _lock: DataDirLock,
    definitions: Definitions,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    crate::server::access::check_listen(&config)?;
    // SIGHUP reloads pipe.toml; one that comes while the server starts
    // waits for the start (its default action would end the process).
    let hangups = hangup_signal();
    // A catalog that does not answer fails the start, saying so.
    let catalog = crate::within(config.store_timeout, "opening the catalog", async {
        Ok(open_catalog(&config.catalog).await?)
    })
    .await?;

    // Pipelines (DataFusion, Parquet encoding, uploads) run on their own
    // runtime, at a lower CPU priority, so that CPU-heavy batches never
    // delay HTTP acks: the buffer absorbs a pipeline that lags.
    let pipeline_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(pipeline_threads())
        .thread_name("pipe-pipeline")
        .thread_stack_size(pipe_transform::nesting::STACK_BYTES)
        .on_thread_start(|| lower_thread_priority(PIPELINE_NICE))
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("starting the pipeline runtime: {e}")))?;
    // Queries (`POST /v1/query`) get a runtime of their own, at a lower
    // priority still: ingest first, then pipelines, then ad hoc queries.
    let query_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(pipeline_threads())
        .thread_name("pipe-query")
        .thread_stack_size(pipe_transform::nesting::STACK_BYTES)
        .on_thread_start(|| lower_thread_priority(QUERY_NICE))
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("starting the query runtime: {e}")))?;
    let query =
        crate::server::query_api::QueryService::new(&config, query_runtime.handle().clone())?;
    // Maintenance records outlive restarts (a history: a failure to read
    // them is logged, not fatal).
    let records = config.data_dir.join("maintenance-runs.jsonl");
    if let Err(e) = pipe_sink::maintenance::run::keep_records_in(&records) {
        tracing::warn!(file = %records.display(), error = %e, "could not read the maintenance records");
    }
    // Sorting compactions spill into a folder of this server's own; what
    // a killed one left there goes now.
    let spill = config.data_dir.join("tmp/sort");
    if let Err(e) = pipe_sink::maintenance::sort::spill_in(&spill) {
        tracing::warn!(folder = %spill.display(), error = %e, "could not prepare the folder sorts spill to; they spill to the system's temporary folder");
    }
    let committer = crate::within(config.store_timeout, "opening the catalog", async {
        Ok(pipe_sink::maintenance::Committer::open(&config.catalog).await?)
    })
    .await?;
    let supervisor = Arc::new(Supervisor::new(
        catalog,
        committer,
        definitions,
        config.clone(),
        pipeline_runtime.handle().clone(),
    ));
    let result = run(supervisor, Arc::new(query), config, hangups, shutdown).await;
    // Every pipeline task has finished (or none started); the runtime has
    // nothing left to run. (Dropping it here would block in async code.)
    pipeline_runtime.shutdown_background();
    // A query still running is abandoned with its runtime.
    query_runtime.shutdown_background();
    result
}

/// Starts everything, serves until `shutdown`, then stops in order.
async fn run(
    supervisor: Arc<Supervisor>,
    query: Arc<crate::server::query_api::QueryService>,
    config: Config,
    hangups: Option<Hangups>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    // Connections are capped below the open-files limit, keeping a
    // reserve for buffers, tables and the catalog (see `crate::server::listener`).
    let max_connections =
        crate::server::listener::connection_cap(crate::server::listener::raise_file_limit());
    crate::control::start(&supervisor).await?;
    let reloads = tokio::spawn(reload_on_hangup(supervisor.clone(), hangups));

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::Config(format!("listening on `{}`: {e}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Internal(e.to_string()))?;
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let state = AdminState {
        metrics: Arc::new(supervisor.metrics.registry()),
        supervisor: supervisor.clone(),
        draining: draining.clone(),
        addr,
        query,
    };
    let admin_only =
        axum::middleware::from_fn_with_state(state.clone(), crate::server::admin::authorize);
    let json_only = axum::middleware::from_fn(crate::server::access::require_json);
    let to_end = axum::middleware::from_fn(crate::server::admin::run_to_end);
    let whole_body = axum::middleware::from_fn_with_state(supervisor.clone(), access::whole_body);
    let app = crate::server::admin::router()
        .merge(crate::server::tables_api::router())
        .route(
            "/v1/streams/{stream}",
            get(crate::server::admin::get_stream)
                .delete(crate::server::admin::delete_stream)
                .patch(crate::server::admin::update_stream),
        )
        .route_layer(to_end)
        .route_layer(whole_body)
        .route_layer(json_only)
        .route_layer(admin_only)
        // Ingest (after the admin layer: streams check their own tokens).
        .route("/v1/streams/{stream}", post(dispatch).options(dispatch))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus))
        .route("/v1/query", post(crate::server::query_api::query))
        // The web console: static pages over the APIs above.
        .merge(crate::server::console::router())
        .with_state(state)
        // The Iceberg REST catalog, with its own tokens (`[iceberg]`).
        .nest(
            "/iceberg",
            crate::server::iceberg::router(crate::server::iceberg::IcebergState::new(
                supervisor.clone(),
            ))
            .layer(axum::middleware::from_fn_with_state(
                supervisor.clone(),
                access::whole_body,
            ))
            .layer(axum::middleware::from_fn(access::require_json_but_forms)),
        );

    info!(%addr, streams = config.streams.len(), pipelines = config.pipelines.len(), "pipe is serving");
    println!("pipe listening on http://{addr}");

    let shutdown = async move {
        shutdown.await;
        draining.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    crate::server::listener::serve(
        crate::server::listener::CappedListener::new(
            listener,
            max_connections,
            config.body_timeout,
        ),
        app,
        config.body_timeout,
        shutdown,
    )
    .await;
    info!("HTTP stopped; draining buffers and committing");
    reloads.abort();
    let failure = supervisor.shutdown().await;
    info!("pipe stopped");
    failure.map_or(Ok(()), Err)
}

#[cfg(unix)]
type Hangups = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangups = ();

/// The SIGHUPs to come (their default action, ending the process, is off
/// from here on); `None` if the handler cannot be installed.
fn hangup_signal() -> Option<Hangups> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler: reload with `pipe reload`");
                None
            }
        }
    }
    #[cfg(not(unix))]
    None
}

/// Reads `pipe.toml` again on each SIGHUP (see `control::reload`); the
/// outcome is logged.
async fn reload_on_hangup(supervisor: Arc<Supervisor>, hangups: Option<Hangups>) {
    #[cfg(unix)]
    if let Some(mut hangups) = hangups {
        while hangups.recv().await.is_some() {
            info!("SIGHUP: reading pipe.toml again");
            match crate::control::reload(&supervisor, false).await {
                Ok(done) if done.is_empty() => info!("pipe.toml reloaded: nothing changed"),
                Ok(done) => info!(changes = %serde_json::json!(done), "pipe.toml reloaded"),
                Err(e) => tracing::error!(error = %e, "pipe.toml not reloaded"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (supervisor, hangups);
}

/// `POST /v1/streams/{stream}` (and CORS preflights): to the stream's route.
async fn dispatch(
    State(state): State<AdminState>,
    Path(stream): Path<String>,
    request: axum::extract::Request,
) -> Response {
    state.supervisor.routes.dispatch(&stream, request).await
}

/// Worker threads for pipelines: all cores but one, which stays with ingest.
fn pipeline_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1))
        .unwrap_or(1)
        .max(1)
}

/// `GET /readyz`: 200 while every stream takes events and every pipeline
/// runs (or retries); 503 once the server drains, or while a stream's
/// buffer writer has stopped or a pipeline's task has ended, with the
/// reasons.
async fn readyz(State(state): State<AdminState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(refusal) = foreign_host_without_token(&state, &headers) {
        return refusal;
    }
    let unavailable = axum::http::StatusCode::SERVICE_UNAVAILABLE;
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return (unavailable, Json(json!({"status": "draining"}))).into_response();
    }
    let problems = state.supervisor.problems();
    if !problems.is_empty() {
        return (
            unavailable,
            Json(json!({"status": "failing", "problems": problems})),
        )
            .into_response();
    }
    Json(json!({"status": "ready"})).into_response()
}

/// `/metrics` and `/readyz` name streams and pipelines and count their
/// events: without an admin token (a server on loopback), they answer only
/// requests for localhost or an IP address, as the admin API does (DNS
/// rebinding, see [`crate::server::access`]).
fn foreign_host_without_token(
    state: &AdminState,
    headers: &axum::http::HeaderMap,
) -> Option<Response> {
    if !state.supervisor.config().admin_token_digests.is_empty() {
        return None;
    }
    crate::server::access::refuse_foreign_host(headers)
}

/// `GET /metrics`: Prometheus text format (see [`crate::running::metrics`]).
async fn prometheus(State(state): State<AdminState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(refusal) = foreign_host_without_token(&state, &headers) {
        return refusal;
    }
    let body = crate::running::metrics::render(&state.metrics);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Niceness of pipeline threads: under contention the scheduler gives HTTP
/// and buffer threads about ten times their CPU share.
const PIPELINE_NICE: i32 = 10;

/// Niceness of query threads: below pipelines (about three times less
/// CPU under contention), far below HTTP.
const QUERY_NICE: i32 = 15;

/// Sets the calling thread's niceness (Linux niceness is per thread).
/// Best effort: on failure the thread runs at normal priority.
fn lower_thread_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority has no memory effects; `0` names the calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, nice);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}
