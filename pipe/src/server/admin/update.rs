//! Definitions changed in place over HTTP: `PATCH /v1/pipelines/{name}`,
//! `PATCH /v1/sinks/{name}` and `PATCH /v1/streams/{name}`, and `pipe.toml`
//! read again, `POST /v1/reload`. The changes
//! themselves are the control plane's ([`crate::control`]); these parse
//! the request and render the answer.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{answer, invalid, pipeline_view, sink_view, stream_view};
use crate::control::{self, Outcome, SchemaDoc, StreamUpdate};
use crate::server::state::AdminState;
use crate::wire::Updated;
use crate::{Error, Result};

/// The body of `PATCH /v1/pipelines/{name}`: the fields to change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineUpdate {
    sql: Option<String>,
    quarantine_table: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct UpdateParams {
    #[serde(default)]
    dry_run: bool,
}

/// The answer to a change of `name`: what it did, with `view` (the
/// definition as it runs now) when applied.
fn outcome<V, C>(
    name: &str,
    outcome: Outcome<C>,
    view: impl FnOnce() -> Result<V>,
) -> Result<Updated<V, C>> {
    let name = name.to_string();
    Ok(match outcome {
        Outcome::Unchanged => Updated::Unchanged { name },
        Outcome::DryRun(change) => Updated::DryRun { name, change },
        Outcome::Applied(change) => Updated::Applied {
            view: view()?,
            change,
        },
    })
}

/// `PATCH /v1/pipelines/{name}`: changes a pipeline's SQL (and quarantine
/// table) in place, at an offset. `?dry_run=true` checks and says what
/// would happen.
pub(super) async fn update_pipeline(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Query(params): Query<UpdateParams>,
    body: axum::body::Bytes,
) -> Response {
    let result = async {
        let update: PipelineUpdate = serde_json::from_slice(&body).map_err(|e| {
            invalid(format!(
                "expected {{\"sql\": \"…\", \"quarantine_table\": \"namespace.table\"}}: {e}"
            ))
        })?;
        let supervisor = &state.supervisor;
        let done = control::update_pipeline(
            supervisor,
            &name,
            update.sql,
            update.quarantine_table,
            params.dry_run,
        )
        .await?;
        outcome(&name, done, || {
            let running = supervisor
                .pipeline(&name)
                .ok_or_else(|| Error::Internal("the changed pipeline is missing".into()))?;
            let definitions = supervisor.definitions.read();
            Ok(pipeline_view(&definitions, &supervisor.config(), &running))
        })
    }
    .await;
    answer(result, false)
}

/// `PATCH /v1/sinks/{name}`: changes a sink's settings; the pipeline
/// writing it switches to them at an offset.
pub(super) async fn update_sink(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Query(params): Query<UpdateParams>,
    body: axum::body::Bytes,
) -> Response {
    let result = async {
        let patch: Map<String, Value> = serde_json::from_slice(&body)
            .map_err(|e| invalid(format!("expected a JSON object of sink settings: {e}")))?;
        let done = control::update_sink(&state.supervisor, &name, patch, params.dry_run).await?;
        outcome(&name, done, || {
            let definitions = state.supervisor.definitions.read();
            sink_view(&state, &definitions, &state.supervisor.config(), &name)
                .ok_or_else(|| Error::Internal("the changed sink is missing".into()))
        })
    }
    .await;
    answer(result, false)
}

/// `PATCH /v1/streams/{name}`: changes a stream in place: its schema,
/// with `{"schema": …}` (Pipelines field format) or `{"json_schema": …}`,
/// and/or its settings (keys of `[streams.NAME]`, `null` unsets one).
pub(crate) async fn update_stream(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Query(params): Query<UpdateParams>,
    body: axum::body::Bytes,
) -> Response {
    let result = async {
        let mut settings: Map<String, Value> = serde_json::from_slice(&body).map_err(|e| {
            invalid(format!(
                "expected a JSON object: {{\"schema\": …}} or {{\"json_schema\": …}}, and/or stream settings: {e}"
            ))
        })?;
        let schema = settings.remove("schema").filter(|v| !v.is_null());
        let json_schema = settings.remove("json_schema").filter(|v| !v.is_null());
        let schema = match (schema, json_schema) {
            (Some(doc), None) => Some(SchemaDoc::Fields(doc)),
            (None, Some(doc)) => Some(SchemaDoc::JsonSchema(doc)),
            (None, None) => None,
            (Some(_), Some(_)) => {
                return Err(invalid("send `schema` or `json_schema`, not both".into()))
            }
        };
        let update = StreamUpdate { schema, settings };
        let done = control::update_stream(&state.supervisor, &name, update, params.dry_run).await?;
        outcome(&name, done, || {
            let definitions = state.supervisor.definitions.read();
            stream_view(&state, &definitions, &state.supervisor.config(), &name)
                .ok_or_else(|| Error::Internal("the changed stream is missing".into()))
        })
    }
    .await;
    answer(result, false)
}

/// `POST /v1/reload`: reads `pipe.toml` again and applies what changed in
/// it (as SIGHUP does; see `control::reload`). `?dry_run=true` checks and
/// says what would change.
pub(super) async fn reload(
    State(state): State<AdminState>,
    Query(params): Query<UpdateParams>,
) -> Response {
    answer(
        control::reload(&state.supervisor, params.dry_run).await,
        false,
    )
}
