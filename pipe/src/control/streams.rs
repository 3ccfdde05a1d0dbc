//! A stream changed in place: its schema, its route's settings, or both.
//!
//! What a stream's route holds changes for the next request: its schema's
//! rules, its tokens, origins, body and event limits, whether it takes
//! HTTP at all, how unknown fields are handled (as long as that leaves
//! the columns alone). A change of its columns switches its pipelines at
//! an offset (`running::supervisor::update`). What its buffer fixed when
//! it opened ([`stream_fixed`]) is refused.

use std::path::PathBuf;

use serde_json::{Map, Value};

use super::{changed, from_api, invalid, merge_patch, not_found, set, Outcome};
use crate::config::definitions::Kind;
use crate::config::{Config, StreamConfig, StreamFile};
use crate::running::supervisor::{StreamChange, Supervisor};
use crate::{Error, Result};

/// A stream's new schema document.
#[derive(Debug, Clone)]
pub enum SchemaDoc {
    /// The Pipelines field format.
    Fields(Value),
    /// A JSON Schema document.
    JsonSchema(Value),
}

/// What a change of a stream asks for: a new schema document, settings
/// (keys of `[streams.NAME]`; `null` unsets one), or both.
#[derive(Debug, Clone, Default)]
pub struct StreamUpdate {
    pub schema: Option<SchemaDoc>,
    pub settings: Map<String, Value>,
}

/// The settings of `old` that `new` changes and that the stream's buffer
/// fixed when it opened, by their names in `[streams.NAME]`: they change
/// only when the stream opens again.
pub fn stream_fixed(old: &StreamConfig, new: &StreamConfig) -> Vec<&'static str> {
    let mut fixed = Vec::new();
    let mut differs = |key, changed: bool| {
        if changed {
            fixed.push(key);
        }
    };
    differs("buffer_segment_mb", old.segment_bytes != new.segment_bytes);
    differs(
        "max_buffer_mb",
        old.max_buffer_bytes != new.max_buffer_bytes,
    );
    differs(
        "min_free_disk_mb",
        old.min_free_disk_bytes != new.min_free_disk_bytes,
    );
    differs(
        "idempotency_window_secs",
        old.idempotency_window != new.idempotency_window,
    );
    differs(
        "idempotency_max_keys",
        old.idempotency_max_keys != new.idempotency_max_keys,
    );
    // Quarantine mode has a pipeline of its own, started with the stream.
    differs(
        "invalid_events",
        old.policy.quarantine != new.policy.quarantine,
    );
    differs(
        "quarantine_table",
        old.policy.quarantine && new.policy.quarantine && old.quarantine != new.quarantine,
    );
    fixed
}

/// The keys whose values differ between two stored definitions.
pub(super) fn changed_keys(before: &Map<String, Value>, after: &Map<String, Value>) -> Vec<String> {
    let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| set(before, k) != set(after, k))
        .cloned()
        .collect()
}

fn stream_of<'a>(config: &'a Config, name: &str) -> Result<&'a StreamConfig> {
    config
        .streams
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| Error::Internal(format!("stream `{name}` vanished")))
}

/// Checks stream `name`'s definition in `new` against the one it runs
/// with in `old`: refuses what does not change in place (`advice` says
/// how it can change instead), and says what would change.
pub async fn check_stream(
    supervisor: &Supervisor,
    old: &Config,
    new: &Config,
    name: &str,
    advice: &str,
) -> Result<StreamChange> {
    let fixed = stream_fixed(stream_of(old, name)?, stream_of(new, name)?);
    if !fixed.is_empty() {
        let keys: Vec<String> = fixed.iter().map(|k| format!("`{k}`")).collect();
        return Err(invalid(format!(
            "{} of stream `{name}` {} not change in place: the stream's buffer fixed {} when it opened. {advice}",
            keys.join(", "),
            if keys.len() == 1 { "does" } else { "do" },
            if keys.len() == 1 { "it" } else { "them" },
        )));
    }
    supervisor.check_stream_change(new, name).await
}

/// Makes stream `name` run as `new` says, once [`check_stream`] passed
/// and the definitions are stored (`store` runs between the end of the
/// old pipelines and the start of the new, see `Change::store_then`):
/// a change of columns switches its pipelines at an offset; anything
/// else only reconfigures its route.
pub async fn apply_stream(
    supervisor: &Supervisor,
    old: &Config,
    new: &Config,
    name: &str,
    change: StreamChange,
) -> Result<StreamChange> {
    if change.schema_changes.is_empty() {
        supervisor.reconfigure_stream(new, name)?;
        return Ok(change);
    }
    crate::crash::point(crate::crash::CHANGE_AFTER_STORE);
    let switched = supervisor.change_stream(old, new, name).await?;
    Ok(StreamChange {
        settings: change.settings,
        ..switched
    })
}

/// Changes stream `name` in place (see the module doc). A new schema
/// document is written to a file of its own (named by its digest) before
/// the definitions point at it, so a crash leaves either schema whole.
pub async fn update_stream(
    supervisor: &Supervisor,
    name: &str,
    update: StreamUpdate,
    dry_run: bool,
) -> Result<Outcome<StreamChange>> {
    let mut definitions = supervisor.definitions.change().await;
    from_api(
        &definitions,
        Kind::Stream,
        name,
        "where events buffered under an old schema are read as the new one",
    )?;
    for key in ["schema_file", "json_schema_file"] {
        if update.settings.contains_key(key) {
            return Err(invalid(format!(
                "`{key}`: send the schema itself as `schema` (Pipelines field format) or `json_schema`"
            )));
        }
    }
    let before = definitions
        .api()
        .streams
        .get(name)
        .cloned()
        .ok_or_else(|| not_found(Kind::Stream, name))?;
    let (stored, merged) = merge_patch(&before, update.settings)?;
    let mut after: StreamFile = serde_json::from_value(Value::Object(merged.clone()))
        .map_err(|e| invalid(format!("`streams.{name}`: {e}")))?;
    let settings = changed_keys(&stored, &merged);
    let old_file = before
        .schema_file
        .clone()
        .or(before.json_schema_file.clone());
    // The schema file this change writes (removed again if it fails).
    let mut written: Option<PathBuf> = None;
    if let Some(schema) = update.schema {
        let (doc, kind) = match schema {
            SchemaDoc::Fields(doc) => (doc, "schema"),
            SchemaDoc::JsonSchema(doc) => (doc, "json-schema"),
        };
        let text = serde_json::to_vec_pretty(&doc).map_err(|e| Error::Internal(e.to_string()))?;
        let digest = {
            use sha2::Digest;
            let d = sha2::Sha256::digest(&text);
            d[..4]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let relative = super::schema_relative(name, &format!("{kind}.{digest}"));
        // The very document the stream has already: no schema change.
        let same = old_file.as_ref() == Some(&relative)
            || old_file
                .as_ref()
                .and_then(|f| std::fs::read(definitions.data_dir().join(f)).ok())
                .is_some_and(|old| old == text);
        if !same {
            let (fields, json) = match kind {
                "schema" => (Some(relative.clone()), None),
                _ => (None, Some(relative.clone())),
            };
            after.schema_file = fields;
            after.json_schema_file = json;
            let path = definitions.data_dir().join(&relative);
            crate::config::definitions::write_durably(&path, &text)?;
            written = Some(path);
        }
    }
    if written.is_none() && settings.is_empty() {
        return Ok(Outcome::Unchanged);
    }
    let after_json = after.json_schema_file.clone();
    let outcome = async {
        let running = supervisor.config();
        let (api, config) = changed(&definitions, &running, Some(name), |api| {
            api.streams.insert(name.to_string(), after);
        })?;
        let mut change = check_stream(
            supervisor,
            &running,
            &config,
            name,
            "Create a new stream with it (and pipelines reading it) instead",
        )
        .await?;
        change.settings = settings;
        // Field lists have no constraints: say so when one takes a JSON
        // Schema's place, even where the fields stay the same.
        match (&before.json_schema_file, &after_json) {
            (Some(_), None) if written.is_some() => change.schema_changes.push(
                "the JSON Schema is replaced by a field list: its constraints (`enum`, `minimum`, `pattern`, `format`, …) no longer apply".into(),
            ),
            (None, Some(_)) if written.is_some() => change.schema_changes.push(
                "a JSON Schema replaces the field list: its constraints apply from the next request".into(),
            ),
            _ => {}
        }
        if dry_run {
            return Ok(Outcome::DryRun(change));
        }
        let apply = apply_stream(supervisor, &running, &config, name, change);
        let change = definitions.store_then(api, apply).await?;
        supervisor.set_config(config);
        Ok(Outcome::Applied(change))
    }
    .await;
    // The schema file no definition points at goes.
    match (&outcome, &written) {
        (Ok(Outcome::Applied(_)), Some(_)) => {
            if let Some(old) = old_file {
                let _ = std::fs::remove_file(definitions.data_dir().join(old));
            }
        }
        (Ok(Outcome::Applied(_)), None) => {}
        (_, Some(path)) => {
            let _ = std::fs::remove_file(path);
        }
        _ => {}
    }
    if let Ok(Outcome::Applied(change)) = &outcome {
        tracing::info!(stream = %name, schema = ?change.schema_changes, settings = ?change.settings, "stream changed");
    }
    outcome
}
