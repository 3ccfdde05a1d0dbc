//! Definitions changed in place: `PATCH /v1/pipelines/{name}` and
//! `PATCH /v1/sinks/{name}`. The running pipeline a change touches is
//! switched by [`crate::supervisor::Supervisor::change_pipeline`]; the
//! definition is stored before the switch and put back if it fails.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{answer, changed, invalid, not_found, pipeline_view, sink_view, sink_writer};
use crate::config::SinkFile;
use crate::definitions::{Definitions, Kind, Origin};
use crate::server::AdminState;
use crate::{Error, ErrorKind, Result};

/// Refuses a change of what `pipe.toml` defines (the file is changed and
/// the server restarted, `restart` saying what that does) or of a name
/// nothing defines.
fn from_api(definitions: &Definitions, kind: Kind, name: &str, restart: &str) -> Result<()> {
    match definitions.origin(kind, name) {
        Some(Origin::Api) => Ok(()),
        Some(Origin::File) => Err(Error::Remote(
            format!(
                "{} `{name}` is defined in pipe.toml: change it there and restart the server, {restart}",
                kind.noun()
            ),
            ErrorKind::Conflict,
        )),
        None => Err(not_found(kind, name)),
    }
}

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

/// `PATCH /v1/pipelines/{name}`: changes a pipeline's SQL (and quarantine
/// table) in place, at an offset (see `crate::supervisor::update`).
/// `?dry_run=true` checks and says what would happen.
pub(super) async fn update_pipeline(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Query(params): Query<UpdateParams>,
    body: axum::body::Bytes,
) -> Response {
    let result = async {
        let mut definitions = state.supervisor.definitions.lock().await;
        from_api(
            &definitions,
            Kind::Pipeline,
            &name,
            "which runs the new SQL from the offset after the pipeline's last commit",
        )?;
        let update: PipelineUpdate = serde_json::from_slice(&body).map_err(|e| {
            invalid(format!(
                "expected {{\"sql\": \"…\", \"quarantine_table\": \"namespace.table\"}}: {e}"
            ))
        })?;
        let before = definitions
            .api()
            .pipelines
            .get(&name)
            .cloned()
            .ok_or_else(|| not_found(Kind::Pipeline, &name))?;
        let mut after = before.clone();
        if let Some(sql) = update.sql {
            after.sql = sql;
        }
        if let Some(table) = update.quarantine_table {
            after.quarantine_table = Some(table);
        }
        if after == before {
            return Ok(json!({ "pipeline": name, "changed": false }));
        }
        let (api, config) = changed(&definitions, |api| {
            api.pipelines.insert(name.clone(), after);
        })?;
        let change = state
            .supervisor
            .check_pipeline_change(&config, &name)
            .await?;
        if params.dry_run {
            return Ok(json!({ "pipeline": name, "dry_run": true, "change": change }));
        }
        let previous = definitions.api().clone();
        let old = state.supervisor.config();
        // Stored first: a crash from here on restarts with the new SQL
        // from the old one's last commit, which is the switch.
        definitions.store(api)?;
        crate::crash::point(crate::crash::CHANGE_AFTER_STORE);
        match state.supervisor.change_pipeline(&old, &config, &name).await {
            Ok(change) => {
                state.supervisor.set_config(config);
                let running = state
                    .supervisor
                    .pipeline(&name)
                    .ok_or_else(|| Error::Internal("the changed pipeline is missing".into()))?;
                let mut view = pipeline_view(&definitions, &state.supervisor.config(), &running);
                view["change"] = json!(change);
                Ok(view)
            }
            Err(e) => {
                definitions.store(previous)?;
                Err(e)
            }
        }
    }
    .await;
    answer(result, false)
}

/// Keys of a sink that name where it writes: they never change in place.
const TARGET_KEYS: [&str; 4] = ["type", "namespace", "table", "path"];

/// `PATCH /v1/sinks/{name}`: changes a sink's settings (roll policy,
/// compression, row groups, bloom filters, sort order, target file size,
/// retention, compaction, a file sink's folder template), the keys given
/// replacing the stored ones (`null` unsets one). The pipeline writing
/// the sink, if any, switches to them at an offset, as for a change of
/// its SQL. Where it writes, and an Iceberg table's partition spec, do not
/// change in place.
pub(super) async fn update_sink(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Query(params): Query<UpdateParams>,
    body: axum::body::Bytes,
) -> Response {
    let result = async {
        let mut definitions = state.supervisor.definitions.lock().await;
        from_api(
            &definitions,
            Kind::Sink,
            &name,
            "which its pipeline writes with from the offset after its last commit",
        )?;
        let patch: Map<String, Value> = serde_json::from_slice(&body)
            .map_err(|e| invalid(format!("expected a JSON object of sink settings: {e}")))?;
        let before = definitions
            .api()
            .sinks
            .get(&name)
            .cloned()
            .ok_or_else(|| not_found(Kind::Sink, &name))?;
        let Value::Object(mut merged) = serde_json::to_value(&before)
            .map_err(|e| Error::Internal(format!("sink `{name}` as JSON: {e}")))?
        else {
            return Err(Error::Internal(format!("sink `{name}` is not an object")));
        };
        let stored = merged.clone();
        for (key, value) in patch {
            match value {
                Value::Null => merged.remove(&key),
                value => merged.insert(key, value),
            };
        }
        for key in TARGET_KEYS {
            if merged.get(key) != stored.get(key) {
                return Err(invalid(format!(
                    "`{key}` of sink `{name}` does not change in place: a sink keeps the table or folder it writes. Create a new sink (and a pipeline for it) instead"
                )));
            }
        }
        if merged.get("partition_by") != stored.get("partition_by") {
            return Err(invalid(format!(
                "`partition_by` of sink `{name}` does not change in place: an Iceberg table keeps the partition spec it was made with (partition spec evolution is not built yet)"
            )));
        }
        let after: SinkFile = serde_json::from_value(Value::Object(merged))
            .map_err(|e| invalid(format!("`sinks.{name}`: {e}")))?;
        if serde_json::to_value(&after).ok() == Some(Value::Object(stored)) {
            return Ok(json!({ "sink": name, "changed": false }));
        }
        let (api, config) = changed(&definitions, |api| {
            api.sinks.insert(name.clone(), after);
        })?;
        let writer = sink_writer(&state, &name);
        let change = match &writer {
            Some(p) => Some(state.supervisor.check_pipeline_change(&config, p).await?),
            None => None,
        };
        if params.dry_run {
            return Ok(json!({ "sink": name, "dry_run": true, "change": change }));
        }
        let previous = definitions.api().clone();
        let old = state.supervisor.config();
        definitions.store(api)?;
        crate::crash::point(crate::crash::CHANGE_AFTER_STORE);
        let change = match &writer {
            Some(p) => match state.supervisor.change_pipeline(&old, &config, p).await {
                Ok(change) => Some(change),
                Err(e) => {
                    definitions.store(previous)?;
                    return Err(e);
                }
            },
            None => None,
        };
        state.supervisor.set_config(config);
        tracing::info!(sink = %name, "sink changed");
        let config = state.supervisor.config();
        let mut view = sink_view(&state, &definitions, &config, &name)
            .ok_or_else(|| Error::Internal("the changed sink is missing".into()))?;
        view["change"] = json!(change);
        Ok(view)
    }
    .await;
    answer(result, false)
}
