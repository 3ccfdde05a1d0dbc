//! The control plane: the one place that changes definitions. Each change
//! runs under the definitions' change guard (one at a time; reads never
//! wait, see `config::shared::Shared`) in one order: check
//! everything it touches → store the definitions durably → apply it to the
//! running parts → on failure, put the stored definitions back (the
//! running parts put themselves back, see `running::supervisor::update`).
//! Catalog calls have the store timeout as deadline; every stored change
//! is on record (`config::changes`).
//!
//! The admin API ([`crate::server::admin`]) is a thin caller: it parses
//! requests and renders answers. Definitions made and deleted are in
//! `define.rs`, changes of a stream in `streams.rs`, other changes in
//! place in this file.

use serde_json::{Map, Value};

use crate::config::definitions::{Definitions, Kind, Origin};
use crate::config::{Config, SinkFile};
use crate::running::supervisor::{PipelineChange, Supervisor};
use crate::{Error, ErrorKind, Result};

mod define;
mod reload;
mod streams;
#[cfg(test)]
mod tests;

pub use define::{
    create_pipeline, create_sink, create_stream, delete_pipeline, delete_sink, delete_stream,
    readers, StreamDeleted,
};
pub use reload::{reload, start, Reloaded};
pub use streams::{stream_fixed, update_stream, SchemaDoc, StreamUpdate};

/// What a change did.
#[derive(Debug)]
pub enum Outcome<C> {
    /// The definition already was so: nothing was stored or switched.
    Unchanged,
    /// Checked, not applied (`dry_run`).
    DryRun(C),
    /// Stored and running.
    Applied(C),
}

pub fn not_found(kind: Kind, name: &str) -> Error {
    Error::Remote(
        format!("unknown {} `{name}`", kind.noun()),
        ErrorKind::NotFound,
    )
}

pub fn invalid(message: String) -> Error {
    Error::Remote(message, ErrorKind::InvalidInput)
}

/// Applies a change of the API's definitions: validated with every other
/// definition, stored, then made the configuration in effect.
///
/// Every stream but `schema_of` keeps the schema it runs with (`running`):
/// resolving reads the schema files again, and one edited on disk for the
/// next restart (a `pipe.toml` stream's) must not slip in with an
/// unrelated change, unchecked and without the stream's route.
pub fn changed(
    definitions: &Definitions,
    running: &Config,
    schema_of: Option<&str>,
    edit: impl FnOnce(&mut crate::config::definitions::ApiDefinitions),
) -> Result<(crate::config::definitions::ApiDefinitions, Config)> {
    let mut api = definitions.api().clone();
    edit(&mut api);
    let mut config = definitions.resolve(&api).map_err(|e| match e {
        Error::Config(message) => invalid(message),
        other => other,
    })?;
    for stream in &mut config.streams {
        if Some(stream.name.as_str()) == schema_of {
            continue;
        }
        if let Some(kept) = running.streams.iter().find(|s| s.name == stream.name) {
            *stream = kept.clone();
        }
    }
    Ok((api, config))
}

/// Where the API keeps a stream's schema document, relative to the data
/// directory.
pub fn schema_relative(stream: &str, kind: &str) -> std::path::PathBuf {
    std::path::Path::new(crate::config::definitions::SCHEMAS_DIR)
        .join(format!("{stream}.{kind}.json"))
}

/// Refuses a change of what `pipe.toml` defines (the file is changed and
/// the server restarted, `restart` saying what that does) or of a name
/// nothing defines.
pub(crate) fn from_api(
    definitions: &Definitions,
    kind: Kind,
    name: &str,
    restart: &str,
) -> Result<()> {
    match definitions.origin(kind, name) {
        Some(Origin::Api) => Ok(()),
        Some(Origin::File) => Err(Error::Remote(
            format!(
                "{} `{name}` is defined in pipe.toml: change it there and reload the file (`pipe reload` or SIGHUP), {restart}",
                kind.noun()
            ),
            ErrorKind::Conflict,
        )),
        None => Err(not_found(kind, name)),
    }
}

/// `before` (a stored definition) as a JSON object, and the same with
/// the keys of `patch` replacing its own (`null` unsets one).
pub(crate) fn merge_patch(
    before: &impl serde::Serialize,
    patch: Map<String, Value>,
) -> Result<(Map<String, Value>, Map<String, Value>)> {
    let Value::Object(stored) = serde_json::to_value(before)
        .map_err(|e| Error::Internal(format!("a definition as JSON: {e}")))?
    else {
        return Err(Error::Internal("a definition is not an object".into()));
    };
    let mut merged = stored.clone();
    for (key, value) in patch {
        match value {
            Value::Null => merged.remove(&key),
            value => merged.insert(key, value),
        };
    }
    Ok((stored, merged))
}

/// The value of `key` in `m`: a key stored as `null` and one left out say
/// the same.
pub(crate) fn set(m: &Map<String, Value>, key: &str) -> Option<Value> {
    m.get(key).filter(|v| !v.is_null()).cloned()
}

/// Keys of a sink that name where it writes: they never change in place.
pub(crate) const TARGET_KEYS: [&str; 4] = ["type", "namespace", "table", "path"];

/// The pipeline writing sink `name`, if one runs.
pub fn writer_of(supervisor: &Supervisor, name: &str) -> Option<String> {
    supervisor
        .pipelines()
        .iter()
        .find(|p| p.sink_name == name)
        .map(|p| p.name.clone())
}

/// Changes pipeline `name`'s SQL and/or quarantine table in place, at an
/// offset (see `running::supervisor::update`).
pub async fn update_pipeline(
    supervisor: &Supervisor,
    name: &str,
    sql: Option<String>,
    quarantine_table: Option<String>,
    dry_run: bool,
) -> Result<Outcome<PipelineChange>> {
    let mut definitions = supervisor.definitions.change().await;
    from_api(
        &definitions,
        Kind::Pipeline,
        name,
        "which runs the new SQL from the offset after the pipeline's last commit",
    )?;
    let before = definitions
        .api()
        .pipelines
        .get(name)
        .cloned()
        .ok_or_else(|| not_found(Kind::Pipeline, name))?;
    let mut after = before.clone();
    if let Some(sql) = sql {
        after.sql = sql;
    }
    if let Some(table) = quarantine_table {
        after.quarantine_table = Some(table);
    }
    if after == before {
        return Ok(Outcome::Unchanged);
    }
    let (api, config) = changed(&definitions, &supervisor.config(), None, |api| {
        api.pipelines.insert(name.to_string(), after);
    })?;
    let change = supervisor.check_pipeline_change(&config, name).await?;
    if dry_run {
        return Ok(Outcome::DryRun(change));
    }
    // A crash after the store restarts with the new SQL from the old
    // one's last commit, which is the switch.
    let old = supervisor.config();
    let switch = async {
        crate::crash::point(crate::crash::CHANGE_AFTER_STORE);
        supervisor.change_pipeline(&old, &config, name).await
    };
    let change = definitions.store_then(api, switch).await?;
    supervisor.set_config(config);
    Ok(Outcome::Applied(change))
}

/// Changes sink `name`'s settings: the keys of `patch` replace the stored
/// ones (`null` unsets one). The pipeline writing it, if any, switches
/// to them at an offset. Where it writes does not change in place; a new
/// `partition_by` evolves an Iceberg table's partition spec for the data
/// written from the switch on (`pipe_sink::table` partition evolution).
pub async fn update_sink(
    supervisor: &Supervisor,
    name: &str,
    patch: Map<String, Value>,
    dry_run: bool,
) -> Result<Outcome<Option<PipelineChange>>> {
    let mut definitions = supervisor.definitions.change().await;
    from_api(
        &definitions,
        Kind::Sink,
        name,
        "which its pipeline writes with from the offset after its last commit",
    )?;
    let before = definitions
        .api()
        .sinks
        .get(name)
        .cloned()
        .ok_or_else(|| not_found(Kind::Sink, name))?;
    let (stored, merged) = merge_patch(&before, patch)?;
    for key in TARGET_KEYS {
        if set(&merged, key) != set(&stored, key) {
            return Err(invalid(format!(
                "`{key}` of sink `{name}` does not change in place: a sink keeps the table or folder it writes. Create a new sink (and a pipeline for it) instead"
            )));
        }
    }
    let after: SinkFile = serde_json::from_value(Value::Object(merged))
        .map_err(|e| invalid(format!("`sinks.{name}`: {e}")))?;
    if serde_json::to_value(&after).ok() == Some(Value::Object(stored)) {
        return Ok(Outcome::Unchanged);
    }
    let (api, config) = changed(&definitions, &supervisor.config(), None, |api| {
        api.sinks.insert(name.to_string(), after);
    })?;
    let writer = writer_of(supervisor, name);
    let change = match &writer {
        Some(p) => Some(supervisor.check_pipeline_change(&config, p).await?),
        None => None,
    };
    if dry_run {
        return Ok(Outcome::DryRun(change));
    }
    let old = supervisor.config();
    let switch = async {
        crate::crash::point(crate::crash::CHANGE_AFTER_STORE);
        match &writer {
            Some(p) => supervisor.change_pipeline(&old, &config, p).await.map(Some),
            None => Ok(None),
        }
    };
    let change = definitions.store_then(api, switch).await?;
    supervisor.set_config(config);
    tracing::info!(sink = %name, "sink changed");
    Ok(Outcome::Applied(change))
}
