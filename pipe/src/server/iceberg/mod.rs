//! The Iceberg REST catalog `pipe serve` serves under `/iceberg`, over the
//! catalog its sinks commit to, so any engine that speaks the Iceberg REST
//! protocol (PyIceberg, DuckDB, Spark, Trino, …) opens the tables by URL:
//! `http://HOST:PORT/iceberg`, warehouse = the catalog's name.
//!
//! - `GET /v1/config` names the warehouse's prefix and the endpoints
//!   served (`namespaces.rs`, `tables.rs`); multi-table transactions are
//!   not (the SQL catalog cannot swap two tables at once).
//! - **Who.** `[iceberg]` (`crate::config::IcebergConfig`): bearer tokens
//!   that may read, or read and write, and OAuth2 clients
//!   (`POST /v1/oauth/tokens`, client credentials) whose tokens live for
//!   an hour in memory (`auth.rs`). Without any, the catalog is open on a
//!   loopback `listen` (to `localhost` and IP `Host`s only, against DNS
//!   rebinding) and off elsewhere.
//! - **Writes go where the sinks' go.** A table commit checks its
//!   requirements and applies its updates through the sinks' `Committer`
//!   (new `metadata.json`, compare-and-swap on the catalog's row) while
//!   holding the table's in-process lock, and bumps its generation, so a
//!   pipeline's sink reloads before its next commit; other processes'
//!   commits meet the compare-and-swap. What pipe owns stays out of
//!   reach (`guard.rs`): the `pipe.` properties and snapshot summaries
//!   that hold pipelines' positions, the tables pipelines write, and any
//!   place outside the warehouse or inside another table.
//! - **Retries.** A mutation with an `Idempotency-Key` is answered once:
//!   a retry with the same key within [`IDEMPOTENCY_LIFETIME`] gets the
//!   first answer and changes nothing (kept in memory: a restart forgets
//!   the keys).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use iceberg::{NamespaceIdent, TableIdent};
use serde::Deserialize;
use serde_json::json;

use crate::running::supervisor::Supervisor;

mod auth;
mod error;
mod guard;
mod namespaces;
mod tables;

pub use auth::Access;
use error::{RestError, RestResult};

/// How long an `Idempotency-Key` is remembered (advertised in ISO 8601).
pub const IDEMPOTENCY_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// The most keys remembered; past it the oldest are forgotten.
const MAX_KEYS: usize = 10_000;
/// Staged creations waiting for their commit, at most (each key is a
/// table's full name: a few KB at most, see `guard::check_namespace`).
const MAX_STAGED: usize = 1_000;
/// How long a staged creation waits for its commit.
const STAGED_FOR_SECS: u64 = 3600;

/// What the catalog's routes share.
#[derive(Clone)]
pub(crate) struct IcebergState {
    pub supervisor: Arc<Supervisor>,
    tokens: Arc<auth::Tokens>,
    keys: Arc<Mutex<HashMap<String, Kept>>>,
    /// Held by what gives a table or namespace a location (create,
    /// register, `set-location`, a namespace's `location`) and by a purge,
    /// from their check that no table's location overlaps to their end.
    pub places: Arc<tokio::sync::Mutex<()>>,
    /// The uuid each staged creation was answered with (the table made by
    /// its commit takes it; clients check it), for an hour, with the unix
    /// second it was staged; kept in `<data_dir>/iceberg-staged.json`
    /// too, so a restart between a stage and its commit keeps it.
    staged: Arc<Mutex<HashMap<String, (uuid::Uuid, u64)>>>,
}

/// An answer kept for an `Idempotency-Key`.
#[derive(Clone)]
enum Kept {
    InFlight,
    Done {
        request: String,
        status: StatusCode,
        body: Vec<u8>,
        at: Instant,
    },
}

impl IcebergState {
    /// Where staged uuids are kept.
    fn stages_file(supervisor: &Supervisor) -> std::path::PathBuf {
        supervisor.config().data_dir.join("iceberg-staged.json")
    }

    /// The staged uuids a previous run kept (none if unreadable).
    fn kept_stages(supervisor: &Supervisor) -> HashMap<String, (uuid::Uuid, u64)> {
        std::fs::read(Self::stages_file(supervisor))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    pub fn new(supervisor: Arc<Supervisor>) -> IcebergState {
        let staged = Self::kept_stages(&supervisor);
        IcebergState {
            supervisor,
            tokens: Arc::new(auth::Tokens::default()),
            keys: Arc::new(Mutex::new(HashMap::new())),
            staged: Arc::new(Mutex::new(staged)),
            places: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The uuid a staged creation of `table` is answered with: the one an
    /// earlier stage of the same name got while it waits for its commit
    /// (so every client staging it sees the uuid the table will have),
    /// else `uuid`, remembered.
    pub fn stage(&self, table: &TableIdent, uuid: uuid::Uuid) -> uuid::Uuid {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let mut staged = self.staged.lock().expect("never poisoned");
        staged.retain(|_, (_, at)| now.saturating_sub(*at) < STAGED_FOR_SECS);
        if let Some((kept, _)) = staged.get(&table.to_string()) {
            return *kept;
        }
        if staged.len() >= MAX_STAGED {
            return uuid;
        }
        staged.insert(table.to_string(), (uuid, now));
        self.keep_stages(&staged);
        uuid
    }

    /// The uuid `table`'s staged creation was answered with, if it is
    /// still waiting for its commit.
    pub fn staged_uuid(&self, table: &TableIdent) -> Option<uuid::Uuid> {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let staged = self.staged.lock().expect("never poisoned");
        staged
            .get(&table.to_string())
            .filter(|(_, at)| now.saturating_sub(*at) < STAGED_FOR_SECS)
            .map(|(uuid, _)| *uuid)
    }

    /// `table`'s staged creation is done (its commit made it).
    pub fn unstage(&self, table: &TableIdent) {
        let mut staged = self.staged.lock().expect("never poisoned");
        if staged.remove(&table.to_string()).is_some() {
            self.keep_stages(&staged);
        }
    }

    fn keep_stages(&self, staged: &HashMap<String, (uuid::Uuid, u64)>) {
        let kept = serde_json::to_vec(staged)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                crate::config::definitions::write_durably(
                    &Self::stages_file(&self.supervisor),
                    &bytes,
                )
                .map_err(|e| e.to_string())
            });
        if let Err(e) = kept {
            tracing::warn!(error = %e, "could not keep a staged table's uuid across restarts");
        }
    }

    /// Refuses a request without the access `need` (see the module doc).
    pub fn allow(&self, headers: &HeaderMap, need: Access) -> RestResult<()> {
        auth::allow(&self.supervisor.config(), &self.tokens, headers, need)
    }

    /// The catalog's name: its warehouse and its prefix.
    fn name(&self) -> String {
        self.supervisor.config().catalog.name.clone()
    }

    /// Refuses a read by a caller without access, or of another prefix.
    pub fn reading(&self, headers: &HeaderMap, prefix: &str) -> RestResult<()> {
        self.allow(headers, Access::Read)?;
        self.check_prefix(prefix)
    }

    /// Refuses a prefix that is not this catalog's.
    pub fn check_prefix(&self, prefix: &str) -> RestResult<()> {
        let name = self.name();
        if prefix == name {
            Ok(())
        } else {
            Err(RestError::new(
                StatusCode::NOT_FOUND,
                "NotFoundException",
                format!("unknown warehouse `{prefix}`: this catalog's warehouse is `{name}`"),
            ))
        }
    }

    /// Runs mutation `run` of `prefix` once per `Idempotency-Key` (when
    /// the request has one), for a caller who may write (checked first,
    /// with the prefix: nothing is kept for a caller refused, and a
    /// replay goes only to one who may make the request). `request` names it (a JSON array of the route, its path parts and the body, so no two requests spell the same;
    /// its digest is kept), and a retry of the same request gets the
    /// first answer; one that comes while the first runs waits for it.
    /// Answers of 5xx are not kept: the request did not, or may not have,
    /// happened. (Requests run to their end even if the client hangs up:
    /// see `router`.)
    pub async fn once<T: IntoResponse>(
        &self,
        headers: &HeaderMap,
        prefix: &str,
        request: String,
        run: impl std::future::Future<Output = RestResult<T>>,
    ) -> Response {
        let allowed = self
            .allow(headers, Access::Write)
            .and_then(|()| self.check_prefix(prefix));
        if let Err(refused) = allowed {
            return refused.into_response();
        }
        let run = async { run.await.into_response() };
        let Some(key) = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
        else {
            return run.await;
        };
        if key.is_empty() || key.len() > 256 {
            return RestError::bad_request("an Idempotency-Key is 1 to 256 characters")
                .into_response();
        }
        let request = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(request.as_bytes()))
        };
        let waited = Instant::now();
        while matches!(
            self.keys.lock().expect("never poisoned").get(&key),
            Some(Kept::InFlight)
        ) {
            if waited.elapsed() > Duration::from_secs(120) {
                return RestError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailableException",
                    format!("a request with Idempotency-Key `{key}` is still being applied"),
                )
                .into_response();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        {
            let mut keys = self.keys.lock().expect("never poisoned");
            keys.retain(|_, k| match k {
                Kept::Done { at, .. } => at.elapsed() < IDEMPOTENCY_LIFETIME,
                Kept::InFlight => true,
            });
            match keys.get(&key) {
                Some(Kept::InFlight) => {
                    // Taken again between the wait and the lock.
                    return RestError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "ServiceUnavailableException",
                        format!("a request with Idempotency-Key `{key}` is being applied: retry"),
                    )
                    .into_response();
                }
                Some(Kept::Done {
                    request: first,
                    status,
                    body,
                    ..
                }) => {
                    if *first != request {
                        return RestError::new(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "BadRequestException",
                            format!("Idempotency-Key `{key}` was used for another request"),
                        )
                        .into_response();
                    }
                    let mut answer = (*status, body.clone()).into_response();
                    answer.headers_mut().insert(
                        axum::http::header::CONTENT_TYPE,
                        "application/json".parse().expect("a header value"),
                    );
                    return answer;
                }
                None => {
                    if keys.len() >= MAX_KEYS {
                        let oldest = keys
                            .iter()
                            .filter_map(|(k, v)| match v {
                                Kept::Done { at, .. } => Some((k.clone(), *at)),
                                Kept::InFlight => None,
                            })
                            .min_by_key(|(_, at)| *at)
                            .map(|(k, _)| k);
                        if let Some(oldest) = oldest {
                            keys.remove(&oldest);
                        }
                    }
                    keys.insert(key.clone(), Kept::InFlight);
                }
            }
        }
        let answer = run.await;
        let status = answer.status();
        let (parts, body) = answer.into_parts();
        let bytes = axum::body::to_bytes(body, 256 << 20)
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default();
        let mut keys = self.keys.lock().expect("never poisoned");
        if status.is_server_error() {
            keys.remove(&key);
        } else {
            keys.insert(
                key,
                Kept::Done {
                    request,
                    status,
                    body: bytes.clone(),
                    at: Instant::now(),
                },
            );
        }
        Response::from_parts(parts, axum::body::Body::from(bytes))
    }
}

/// A namespace in a path: its levels joined by the unit separator (0x1F).
pub fn namespace_of(path: &str) -> RestResult<NamespaceIdent> {
    let levels: Vec<&str> = path.split('\u{1f}').collect();
    let ident =
        NamespaceIdent::from_strs(levels).map_err(|e| RestError::bad_request(e.to_string()))?;
    ident
        .as_ref()
        .iter()
        .try_for_each(|level| guard::check_path_name("namespace", level))?;
    Ok(ident)
}

/// A table in a path.
pub fn table_of(namespace: &str, table: &str) -> RestResult<TableIdent> {
    guard::check_path_name("table", table)?;
    Ok(TableIdent::new(namespace_of(namespace)?, table.to_string()))
}

/// The routes, to nest under `/iceberg`.
pub(crate) fn router(state: IcebergState) -> Router {
    Router::new()
        .route("/v1/config", get(config))
        .route("/v1/oauth/tokens", post(auth::tokens))
        .merge(namespaces::routes())
        .merge(tables::routes())
        .with_state(state)
        // A mutation runs to its end even if its client hangs up, so an
        // Idempotency-Key is always settled and a commit never cut short.
        .layer(axum::middleware::from_fn(crate::server::admin::run_to_end))
}

#[derive(Debug, Deserialize)]
struct ConfigParams {
    warehouse: Option<String>,
}

/// `GET /v1/config`: the prefix of the warehouse (this catalog) and the
/// endpoints served.
async fn config(
    State(state): State<IcebergState>,
    headers: HeaderMap,
    axum::extract::Query(params): axum::extract::Query<ConfigParams>,
) -> RestResult<Json<serde_json::Value>> {
    state.allow(&headers, Access::Read)?;
    let name = state.name();
    if let Some(w) = params.warehouse.filter(|w| !w.is_empty()) {
        state.check_prefix(&w)?;
    }
    let endpoints = [
        "GET /v1/{prefix}/namespaces",
        "POST /v1/{prefix}/namespaces",
        "GET /v1/{prefix}/namespaces/{namespace}",
        "HEAD /v1/{prefix}/namespaces/{namespace}",
        "DELETE /v1/{prefix}/namespaces/{namespace}",
        "POST /v1/{prefix}/namespaces/{namespace}/properties",
        "GET /v1/{prefix}/namespaces/{namespace}/tables",
        "POST /v1/{prefix}/namespaces/{namespace}/tables",
        "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}",
        "HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}",
        "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}",
        "DELETE /v1/{prefix}/namespaces/{namespace}/tables/{table}",
        "POST /v1/{prefix}/namespaces/{namespace}/register",
        "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}/metrics",
        "POST /v1/{prefix}/tables/rename",
    ];
    Ok(Json(json!({
        "defaults": {},
        "overrides": {"prefix": name},
        "endpoints": endpoints,
        "idempotency-key-lifetime": format!("PT{}M", IDEMPOTENCY_LIFETIME.as_secs() / 60),
    })))
}
