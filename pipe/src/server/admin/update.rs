//! Definitions changed in place: `PATCH /v1/pipelines/{name}` and
//! `PATCH /v1/sinks/{name}`. The running pipeline a change touches is
//! switched by [`crate::running::supervisor::Supervisor::change_pipeline`]; the
//! definition is stored before the switch and put back if it fails.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{
    answer, changed, invalid, not_found, pipeline_view, schema_relative, sink_view, sink_writer,
    stream_view,
};
use crate::config::definitions::{Definitions, Kind, Origin};
use crate::config::SinkFile;
use crate::server::state::AdminState;
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
/// table) in place, at an offset (see `crate::running::supervisor::update`).
/// `?dry_run=true` checks and says what would happen.
pub(super) async fn update_pipeline(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Query(params): Query<UpdateParams>,
    body: axum::body::Bytes,
) -> Response {
    let result = async {
        let mut definitions = state.supervisor.definitions.change().await;
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
        let (api, config) = changed(&definitions, &state.supervisor.config(), None, |api| {
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
        let mut definitions = state.supervisor.definitions.change().await;
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
        // A key stored as `null` and one left out say the same.
        let set = |m: &Map<String, Value>, key: &str| m.get(key).filter(|v| !v.is_null()).cloned();
        for key in TARGET_KEYS {
            if set(&merged, key) != set(&stored, key) {
                return Err(invalid(format!(
                    "`{key}` of sink `{name}` does not change in place: a sink keeps the table or folder it writes. Create a new sink (and a pipeline for it) instead"
                )));
            }
        }
        if set(&merged, "partition_by") != set(&stored, "partition_by") {
            return Err(invalid(format!(
                "`partition_by` of sink `{name}` does not change in place: an Iceberg table keeps the partition spec it was made with (partition spec evolution is not built yet)"
            )));
        }
        let after: SinkFile = serde_json::from_value(Value::Object(merged))
            .map_err(|e| invalid(format!("`sinks.{name}`: {e}")))?;
        if serde_json::to_value(&after).ok() == Some(Value::Object(stored)) {
            return Ok(json!({ "sink": name, "changed": false }));
        }
        let (api, config) = changed(&definitions, &state.supervisor.config(), None, |api| {
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

/// `PATCH /v1/streams/{name}`: changes a stream's schema in place, with
/// `{"schema": …}` (Pipelines field format) or `{"json_schema": …}`. What
/// old events fit is allowed (`pipe_schemas::evolution`); the pipelines
/// reading the stream switch at an offset and their tables evolve. The
/// new schema is written to a file of its own (named by its digest)
/// before the definitions point at it, so a crash leaves either schema
/// whole.
pub(crate) async fn update_stream(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Query(params): Query<UpdateParams>,
    body: axum::body::Bytes,
) -> Response {
    let result = async {
        let mut definitions = state.supervisor.definitions.change().await;
        from_api(
            &definitions,
            Kind::Stream,
            &name,
            "where events buffered under the old schema are read as the new one",
        )?;
        let mut patch: Map<String, Value> = serde_json::from_slice(&body)
            .map_err(|e| invalid(format!("expected {{\"schema\": …}} or {{\"json_schema\": …}}: {e}")))?;
        let schema = patch.remove("schema").filter(|v| !v.is_null());
        let json_schema = patch.remove("json_schema").filter(|v| !v.is_null());
        if let Some(key) = patch.keys().next() {
            return Err(invalid(format!(
                "`{key}`: only a stream's schema changes in place; other settings are set when the stream is made"
            )));
        }
        let (doc, kind) = match (schema, json_schema) {
            (Some(doc), None) => (doc, "schema"),
            (None, Some(doc)) => (doc, "json-schema"),
            _ => return Err(invalid("send `schema` or `json_schema` (one of them)".into())),
        };
        let before = definitions
            .api()
            .streams
            .get(&name)
            .cloned()
            .ok_or_else(|| not_found(Kind::Stream, &name))?;
        let text = serde_json::to_vec_pretty(&doc).map_err(|e| Error::Internal(e.to_string()))?;
        let digest = {
            use sha2::Digest;
            let d = sha2::Sha256::digest(&text);
            d[..4].iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        let relative = schema_relative(&name, &format!("{kind}.{digest}"));
        let mut after = before.clone();
        match kind {
            "schema" => {
                after.schema_file = Some(relative.clone());
                after.json_schema_file = None;
            }
            _ => {
                after.schema_file = None;
                after.json_schema_file = Some(relative.clone());
            }
        }
        let old_file = before.schema_file.clone().or(before.json_schema_file.clone());
        let path = definitions.data_dir().join(&relative);
        // The very document the stream has: nothing to change.
        let same = old_file
            .as_ref()
            .and_then(|f| std::fs::read(definitions.data_dir().join(f)).ok())
            .is_some_and(|old| old == text);
        if same {
            return Ok(json!({ "stream": name, "changed": false }));
        }
        let ours = old_file.as_ref() != Some(&relative);
        if ours {
            crate::config::definitions::write_durably(&path, &text)?;
        }
        let outcome = async {
            let running = state.supervisor.config();
            let (api, config) = changed(&definitions, &running, Some(&name), |api| {
                api.streams.insert(name.clone(), after);
            })?;
            let change = state.supervisor.check_stream_change(&config, &name).await?;
            if params.dry_run || !ours {
                return Ok((change, None));
            }
            if change.schema_changes.is_empty() {
                // The same columns, other rules (a JSON Schema's `maximum`,
                // `pattern`, …): later requests are checked by them; the
                // pipelines read the same events as before.
                let stream = config
                    .streams
                    .iter()
                    .find(|s| s.name == name)
                    .ok_or_else(|| Error::Internal(format!("stream `{name}` vanished")))?;
                let decoder = stream.decoder()?;
                definitions.store(api)?;
                state.supervisor.routes.set_decoder(&name, decoder);
                state.supervisor.set_config(config);
                return Ok((change, Some(())));
            }
            let previous = definitions.api().clone();
            let old = state.supervisor.config();
            definitions.store(api)?;
            crate::crash::point(crate::crash::CHANGE_AFTER_STORE);
            match state.supervisor.change_stream(&old, &config, &name).await {
                Ok(change) => {
                    state.supervisor.set_config(config);
                    Ok((change, Some(())))
                }
                Err(e) => {
                    definitions.store(previous)?;
                    Err(e)
                }
            }
        }
        .await;
        let applied = matches!(outcome, Ok((_, Some(()))));
        // The schema file no definition points at goes.
        match (applied, ours) {
            (true, _) => {
                if let Some(old) = old_file.filter(|o| *o != relative) {
                    let _ = std::fs::remove_file(definitions.data_dir().join(old));
                }
            }
            (false, true) => {
                let _ = std::fs::remove_file(&path);
            }
            (false, false) => {}
        }
        let (change, applied) = outcome?;
        if params.dry_run {
            return Ok(json!({ "stream": name, "dry_run": true, "change": change }));
        }
        if applied.is_none() {
            return Ok(json!({ "stream": name, "changed": false }));
        }
        tracing::info!(stream = %name, "stream schema changed");
        let config = state.supervisor.config();
        let mut view = stream_view(&state, &definitions, &config, &name)
            .ok_or_else(|| Error::Internal("the changed stream is missing".into()))?;
        view["change"] = json!(change);
        Ok(view)
    }
    .await;
    answer(result, false)
}
