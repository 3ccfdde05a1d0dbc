//! The admin API of table maintenance (behind the admin token, as the
//! rest of the admin API):
//!
//! - `POST /v1/tables/{table}/maintain` runs maintenance of `namespace.table`
//!   now and answers its record. The body (JSON, every key optional):
//!   `compact` (every small file, default true), `merge` (manifests,
//!   true), `expire` (snapshots, by the sink's retention or the default,
//!   true), `sweep` (orphans, true), `older_than_secs` (the sweep's guard,
//!   default 3 days, at least an hour), `dry_run` (change nothing, report
//!   what would be done; false).
//! - `GET /v1/tables/{table}/maintenance` lists the table's last runs
//!   (this server's, kept across restarts; on demand or by the sink's
//!   triggers), oldest first.
//!
//! One on-demand run per table at a time (409 while one goes on).
//!
//! A run's record (`pipe_sink::maintenance::run::RunRecord`) has the
//! table before and after, what each step did, how long it took, its
//! outcome and when the next run is due. A run that fails answers 200 with
//! the error as its `outcome`: the record is the answer.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pipe_ingest::http::error_response;
use pipe_schemas::ErrorKind;
use pipe_sink::maintenance::orphans::DEFAULT_GUARD;
use pipe_sink::maintenance::run::{self, RunOptions, ON_DEMAND};
use pipe_sink::{SnapshotRetention, WriteOptions};
use serde::Deserialize;

use crate::config::SinkTarget;
use crate::server::state::AdminState;

/// The shortest sweep guard accepted: a younger file may belong to a
/// commit another writer has not made yet.
pub const MIN_GUARD: Duration = Duration::from_secs(3600);

pub(crate) fn router() -> Router<AdminState> {
    Router::new()
        .route("/v1/tables/{table}/maintain", post(maintain))
        .route("/v1/tables/{table}/maintenance", get(runs))
}

fn yes() -> bool {
    true
}

/// What a maintain request asks for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaintainRequest {
    #[serde(default = "yes")]
    compact: bool,
    #[serde(default = "yes")]
    merge: bool,
    #[serde(default = "yes")]
    expire: bool,
    #[serde(default = "yes")]
    sweep: bool,
    #[serde(default)]
    older_than_secs: Option<u64>,
    #[serde(default)]
    dry_run: bool,
}

/// `namespace.table` as an identifier; the message saying what is wrong
/// otherwise.
fn ident(table: &str) -> Result<pipe_sink::TableIdent, String> {
    let bad = || format!("table `{table}`: expected `namespace.table`");
    let (namespace, name) = table.rsplit_once('.').ok_or_else(bad)?;
    if namespace.is_empty() || name.is_empty() {
        return Err(bad());
    }
    pipe_sink::TableIdent::from_strs(namespace.split('.').chain([name])).map_err(|_| bad())
}

async fn maintain(
    State(state): State<AdminState>,
    Path(table): Path<String>,
    body: Bytes,
) -> Response {
    let ident = match ident(&table) {
        Ok(ident) => ident,
        Err(why) => return error_response(ErrorKind::InvalidInput, why),
    };
    let request: MaintainRequest = match body.is_empty() {
        true => serde_json::from_str("{}").expect("an empty request is valid"),
        false => match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return error_response(
                    ErrorKind::InvalidInput,
                    format!("a maintain request is a JSON object: {e}"),
                )
            }
        },
    };
    let guard = request
        .older_than_secs
        .map_or(DEFAULT_GUARD, Duration::from_secs);
    if guard < MIN_GUARD && request.sweep && !request.dry_run {
        return error_response(
            ErrorKind::InvalidInput,
            format!(
                "`older_than_secs` {}: the sweep spares files younger than an hour at least (another writer's commit may not have landed yet); use `dry_run` to list younger ones",
                guard.as_secs()
            ),
        );
    }
    // One run per table at a time: another would rewrite the same files
    // only to give up at its commit.
    let Some(_running) = Running::claim(&ident.to_string()) else {
        return error_response(
            ErrorKind::Conflict,
            format!("a maintenance run of `{table}` is already going on; try again when it ends"),
        );
    };
    let supervisor = &state.supervisor;
    let catalog = supervisor.catalog();
    match catalog.table_exists(&ident).await {
        Ok(true) => {}
        Ok(false) => {
            return error_response(ErrorKind::NotFound, format!("unknown table `{table}`"))
        }
        Err(e) => {
            return error_response(
                ErrorKind::Unavailable,
                format!("looking up table `{table}`: {e}"),
            )
        }
    }
    let config = supervisor.config();
    // The sink that writes the table, if one does: its layout and history.
    let sink = config.sinks.iter().find(|s| {
        matches!(&s.target, SinkTarget::Table { namespace, table: t }
            if ident.namespace().join(".") == *namespace && ident.name() == t)
    });
    let defaults = WriteOptions::default();
    let (layout, retention) = match sink {
        Some(s) => (
            WriteOptions {
                codec: s.compression,
                row_group_rows: s.row_group_rows,
                target_file_bytes: s.target_file_bytes,
                bloom_filter_columns: s.bloom_filter_columns.clone(),
                ..defaults
            }
            .layout(),
            s.retention,
        ),
        None => (defaults.layout(), Some(SnapshotRetention::default())),
    };
    let ledgered = if request.sweep {
        match pipe_sink::ledger::listed_in(&crate::running::supervisor::ledger_dir(&config)) {
            Ok(listed) => listed,
            Err(e) => {
                return error_response(
                    ErrorKind::Unavailable,
                    format!(
                        "reading the write ledgers (the sweep must spare the files they list): {e}"
                    ),
                )
            }
        }
    } else {
        Default::default()
    };
    let options = RunOptions {
        compact: request.compact,
        full: true,
        merge: request.merge,
        expire: if request.expire { retention } else { None },
        sweep: request.sweep.then_some(guard),
        ledgered,
        dry_run: request.dry_run,
        owns_metadata_files: config.catalog.owns_metadata_files(),
        trigger: ON_DEMAND,
        next: "by the sink's triggers, or on demand".into(),
    };
    let record = run::run(supervisor.committer(), &catalog, &ident, &layout, &options).await;
    Json(record).into_response()
}

/// A table's on-demand run in progress, released when dropped.
struct Running(String);

impl Running {
    fn claim(table: &str) -> Option<Running> {
        let mut running = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
        running
            .insert(table.to_string())
            .then(|| Running(table.to_string()))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.0);
    }
}

static RUNNING: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<String>>> =
    std::sync::LazyLock::new(Default::default);

async fn runs(Path(table): Path<String>) -> Response {
    let ident = match ident(&table) {
        Ok(ident) => ident,
        Err(why) => return error_response(ErrorKind::InvalidInput, why),
    };
    let name = ident.to_string();
    Json(serde_json::json!({ "table": name, "runs": run::history(&name) })).into_response()
}
