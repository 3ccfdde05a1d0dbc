//! `pipe.toml` read again while the server runs (SIGHUP, `POST
//! /v1/reload`, `pipe reload`), and the file's definitions at start.
//!
//! A reload compares the file on disk with the file as the server applied
//! it, and checks every difference before it applies any: the whole
//! configuration resolves; a changed stream, sink or pipeline can change
//! in place (the same checks as `PATCH`); every pipeline plans, and no
//! sink gets two writers; server settings other than `[admin]` (listen
//! address, data dir, catalog, …) are unchanged, since they take a
//! restart, and the file passes the start's access check; a file that
//! suddenly defines nothing (read half-written) is refused. Then, in this
//! order: new streams start; changed streams switch (`streams.rs`);
//! changed pipelines (their SQL, or their sink's settings, whoever made
//! the pipeline) switch at an offset; removed streams stop taking events
//! (their buffers stay on disk, as a restart leaves them); removed
//! pipelines commit what they read and stop; new pipelines start at their
//! `start` (so a renamed pipeline takes over its sink). A removed pipeline
//! whose last commit fails runs on as it was.
//!
//! If a step fails once applying began (the catalog went away), the steps
//! before it stay applied and the failed one is put back as its own change
//! is; the server then holds the file as far as it got, so the next reload,
//! or a restart, applies the rest. Definitions made through the API are
//! not touched.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::streams::{apply_stream, check_stream};
use super::{invalid, set, TARGET_KEYS};
use crate::config::definitions::{Definitions, Kind, Origin};
use crate::config::{Config, ConfigFile};
use crate::running::supervisor::{PipelineChange, StreamChange, Supervisor};
use crate::{Error, ErrorKind, Result};

/// What a reload did, or would do (`dry_run`): the answer of `POST /v1/reload`.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reloaded {
    pub dry_run: bool,
    pub streams_added: Vec<String>,
    pub streams_changed: Vec<StreamChange>,
    pub streams_removed: Vec<String>,
    pub sinks_added: Vec<String>,
    pub sinks_changed: Vec<String>,
    pub sinks_removed: Vec<String>,
    pub pipelines_added: Vec<String>,
    pub pipelines_changed: Vec<PipelineChange>,
    pub pipelines_removed: Vec<String>,
    /// Defined pipelines whose task had ended unable to commit (a stop
    /// during an outage): they run again.
    #[serde(default)]
    pub pipelines_revived: Vec<String>,
    /// `[admin]` changed: the admin API takes the new tokens.
    pub admin_changed: bool,
}

impl Reloaded {
    /// Whether the file changed nothing.
    pub fn is_empty(&self) -> bool {
        self.streams_added.is_empty()
            && self.streams_changed.is_empty()
            && self.streams_removed.is_empty()
            && self.sinks_added.is_empty()
            && self.sinks_changed.is_empty()
            && self.sinks_removed.is_empty()
            && self.pipelines_added.is_empty()
            && self.pipelines_changed.is_empty()
            && self.pipelines_removed.is_empty()
            && self.pipelines_revived.is_empty()
            && !self.admin_changed
    }
}

/// Starts everything defined (the file's definitions and the API's), as
/// `pipe serve` does once at start.
pub async fn start(supervisor: &Supervisor) -> Result<()> {
    let _change = supervisor.definitions.change().await;
    let config = supervisor.config();
    let streams: Vec<&str> = config.streams.iter().map(|s| s.name.as_str()).collect();
    let pipelines: Vec<&str> = config.pipelines.iter().map(|p| p.name.as_str()).collect();
    supervisor.start(&config, &streams, &pipelines).await
}

/// Names in both maps, in only the first, in only the second.
fn split<V>(
    old: &std::collections::BTreeMap<String, V>,
    new: &std::collections::BTreeMap<String, V>,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let kept = old
        .keys()
        .filter(|k| new.contains_key(*k))
        .cloned()
        .collect();
    let removed = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .cloned()
        .collect();
    let added = new
        .keys()
        .filter(|k| !old.contains_key(*k))
        .cloned()
        .collect();
    (kept, removed, added)
}

/// Whether two stored definitions differ.
fn differ(a: &impl Serialize, b: &impl Serialize) -> bool {
    serde_json::to_value(a).ok() != serde_json::to_value(b).ok()
}

/// The file as far as a reload applied it: `old` with the definitions in
/// `done` as `new` has them.
fn applied_file(old: &ConfigFile, new: &ConfigFile, done: &Done) -> ConfigFile {
    let mut file = old.clone();
    for name in &done.streams {
        match new.streams.get(name) {
            Some(s) => file.streams.insert(name.clone(), s.clone()),
            None => file.streams.remove(name),
        };
    }
    for name in &done.sinks {
        match new.sinks.get(name) {
            Some(s) => file.sinks.insert(name.clone(), s.clone()),
            None => file.sinks.remove(name),
        };
    }
    for name in &done.pipelines {
        match new.pipelines.get(name) {
            Some(p) => file.pipelines.insert(name.clone(), p.clone()),
            None => file.pipelines.remove(name),
        };
    }
    file
}

/// The names whose new definition runs.
#[derive(Default)]
struct Done {
    streams: BTreeSet<String>,
    sinks: BTreeSet<String>,
    pipelines: BTreeSet<String>,
}

/// Reads `pipe.toml` again and applies what changed in it (see the module
/// doc); `dry_run` checks and says what would change.
pub async fn reload(supervisor: &Supervisor, dry_run: bool) -> Result<Reloaded> {
    let mut definitions = supervisor.definitions.change().await;
    let fresh = definitions.reread().map_err(|e| match e {
        Error::Config(message) => invalid(message),
        other => other,
    })?;
    let (old, new) = (definitions.file(), fresh.file());
    // Server settings take a restart; `[admin]` is read per request.
    let mut server = fresh.server_settings().clone();
    let mut before = definitions.server_settings().clone();
    let admin_changed = server.remove("admin") != before.remove("admin");
    let keys: BTreeSet<&String> = server.keys().chain(before.keys()).collect();
    let moved: Vec<String> = keys
        .into_iter()
        .filter(|k| server.get(*k) != before.get(*k))
        .map(|k| format!("`{k}`"))
        .collect();
    if !moved.is_empty() {
        return Err(invalid(format!(
            "pipe.toml changes {}: server settings take a restart (`[admin]` and the definitions are reloaded)",
            moved.join(", ")
        )));
    }
    // A name the API defined too: at a restart the file would win and drop
    // the API's copy; a reload does not drop what runs.
    for (kind, names) in [
        (Kind::Stream, new.streams.keys().collect::<Vec<_>>()),
        (Kind::Sink, new.sinks.keys().collect()),
        (Kind::Pipeline, new.pipelines.keys().collect()),
    ] {
        for name in names {
            if definitions.origin(kind, name) == Some(Origin::Api) {
                return Err(Error::Remote(
                    format!("pipe.toml now defines {} `{name}`, which the admin API made: delete it through the API first (or restart the server, where the file's definition replaces the API's)", kind.noun()),
                    ErrorKind::Conflict,
                ));
            }
        }
    }
    // A file read while an editor rewrote it in place can be empty: that
    // would stop every stream and pipeline it defines.
    let defines = |f: &ConfigFile| f.streams.len() + f.pipelines.len();
    if defines(new) == 0 && defines(old) > 0 {
        return Err(invalid(format!(
            "pipe.toml now defines no stream and no pipeline, where it defined {}: refused as a file read while it was being written. Restart the server to run an empty file",
            defines(old)
        )));
    }
    let running = supervisor.config();
    let mut config = fresh.resolve(fresh.api()).map_err(|e| match e {
        Error::Config(message) => invalid(format!("pipe.toml: {message}")),
        other => other,
    })?;
    // The API's streams run as they run (see `control::changed`).
    for stream in &mut config.streams {
        if definitions.origin(Kind::Stream, &stream.name) == Some(Origin::Api) {
            if let Some(kept) = running.streams.iter().find(|s| s.name == stream.name) {
                *stream = kept.clone();
            }
        }
    }

    // What a start with this file would refuse (an admin API open to the
    // network), a reload refuses too.
    crate::server::access::check_listen(&config).map_err(|e| invalid(e.to_string()))?;
    supervisor.check_plans(&config).await?;
    let mut plan = Reloaded {
        dry_run,
        admin_changed,
        ..Reloaded::default()
    };
    let (kept_streams, removed_streams, added_streams) = split(&old.streams, &new.streams);
    let (kept_sinks, removed_sinks, added_sinks) = split(&old.sinks, &new.sinks);
    let (kept_pipelines, removed_pipelines, added_pipelines) =
        split(&old.pipelines, &new.pipelines);
    let restart = "Restart the server to apply it (a restart applies the whole file)";
    for name in &kept_sinks {
        let (a, b) = (
            super::merge_patch(&old.sinks[name], Default::default())?.0,
            super::merge_patch(&new.sinks[name], Default::default())?.0,
        );
        for key in TARGET_KEYS {
            if set(&a, key) != set(&b, key) {
                return Err(invalid(format!(
                    "`sinks.{name}.{key}` does not change in place: a running sink keeps its table or folder. {restart}; its pipeline then starts at its `start`"
                )));
            }
        }
        if differ(&old.sinks[name], &new.sinks[name]) {
            plan.sinks_changed.push(name.clone());
        }
    }
    // Streams: a changed schema (in the TOML or in its schema file)
    // switches the pipelines reading it; the route takes the rest.
    let mut switched: BTreeSet<String> = BTreeSet::new();
    for name in &kept_streams {
        let mut change = check_stream(supervisor, &running, &config, name, restart).await?;
        let (a, b) = (
            super::merge_patch(&old.streams[name], Default::default())?.0,
            super::merge_patch(&new.streams[name], Default::default())?.0,
        );
        change.settings = super::streams::changed_keys(&a, &b);
        if change.schema_changes.is_empty() && change.settings.is_empty() {
            continue;
        }
        switched.extend(change.pipelines.iter().map(|p| p.pipeline.clone()));
        plan.streams_changed.push(change);
    }
    // Pipelines: a file pipeline's SQL or quarantine table; any
    // pipeline's (the API's too) sink settings.
    let mut changed: Vec<String> = Vec::new();
    for name in &kept_pipelines {
        let (Some(before), Ok(after)) = (
            running.pipelines.iter().find(|p| &p.name == name),
            pipeline_of(&config, name),
        ) else {
            continue;
        };
        if before.definition() != after.definition() || before.quarantine != after.quarantine {
            changed.push(name.clone());
        }
    }
    for p in supervisor.pipelines() {
        if plan.sinks_changed.contains(&p.sink_name) && !changed.contains(&p.name) {
            changed.push(p.name.clone());
        }
    }
    for name in changed {
        if !switched.contains(&name) {
            plan.pipelines_changed
                .push(supervisor.check_pipeline_change(&config, &name).await?);
        }
    }
    plan.streams_added = added_streams;
    plan.streams_removed = removed_streams;
    plan.sinks_added = added_sinks;
    plan.sinks_removed = removed_sinks;
    plan.pipelines_added = added_pipelines;
    plan.pipelines_removed = removed_pipelines;
    // A pipeline the file still defines whose task ended unable to commit
    // (its stop failed) runs again, whatever else changed.
    plan.pipelines_revived = supervisor
        .pipelines()
        .iter()
        .filter(|p| p.stop_failed() && kept_pipelines.contains(&p.name))
        .filter(|p| !plan.pipelines_changed.iter().any(|c| c.pipeline == p.name))
        .map(|p| p.name.clone())
        .collect();
    if dry_run {
        return Ok(plan);
    }
    let mut done = Done::default();
    let applied = apply(supervisor, &running, &config, &mut plan, &mut done).await;
    // The other streams' routes too: a JSON Schema's rules may be new.
    if applied.is_ok() {
        for name in &kept_streams {
            supervisor.reconfigure_stream(&config, name)?;
        }
    }
    // What runs now: the file as far as it was applied.
    let file = match &applied {
        Ok(()) => new.clone(),
        Err(_) => applied_file(old, new, &done),
    };
    let held = fresh.with_file(file);
    let in_effect = match &applied {
        Ok(()) => Ok(config),
        Err(_) => resolve_kept(&held, &running),
    };
    match in_effect {
        Ok(config) => supervisor.set_config(config),
        Err(e) => {
            tracing::error!(error = %e, "the file as far as the reload applied it does not resolve; the running configuration is kept")
        }
    }
    // `[admin]` is part of the server settings kept for the next reload.
    let held = match &applied {
        Ok(()) => held,
        Err(_) => held.with_server_settings(definitions.server_settings().clone()),
    };
    definitions.replace(held);
    applied.map(|()| plan)
}

/// The configuration of `held`, with the API's streams as they run.
fn resolve_kept(held: &Definitions, running: &Config) -> Result<Config> {
    let mut config = held.resolve(held.api())?;
    for stream in &mut config.streams {
        if let Some(kept) = running.streams.iter().find(|s| s.name == stream.name) {
            if held.origin(Kind::Stream, &stream.name) == Some(Origin::Api) {
                *stream = kept.clone();
            }
        }
    }
    Ok(config)
}

fn pipeline_of<'a>(config: &'a Config, name: &str) -> Result<&'a crate::config::PipelineConfig> {
    config
        .pipelines
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| Error::Internal(format!("pipeline `{name}` vanished")))
}

/// Applies a checked reload in the module doc's order, recording in
/// `done` each definition whose new version runs.
async fn apply(
    supervisor: &Supervisor,
    running: &Config,
    config: &Config,
    plan: &mut Reloaded,
    done: &mut Done,
) -> Result<()> {
    for name in &plan.pipelines_revived {
        supervisor.revive(running, name).await?;
    }
    let added: Vec<&str> = plan.streams_added.iter().map(String::as_str).collect();
    supervisor.start(config, &added, &[]).await?;
    done.streams.extend(plan.streams_added.iter().cloned());
    // Sinks hold nothing running: their pipelines switch below.
    done.sinks.extend(plan.sinks_added.iter().cloned());
    for change in std::mem::take(&mut plan.streams_changed) {
        let name = change.stream.clone();
        let change = apply_stream(supervisor, running, config, &name, change).await?;
        done.pipelines
            .extend(change.pipelines.iter().map(|p| p.pipeline.clone()));
        done.streams.insert(name);
        plan.streams_changed.push(change);
    }
    done.sinks.extend(plan.sinks_changed.iter().cloned());
    for change in std::mem::take(&mut plan.pipelines_changed) {
        let name = change.pipeline.clone();
        let change = supervisor.change_pipeline(running, config, &name).await?;
        done.pipelines.insert(name);
        plan.pipelines_changed.push(change);
    }
    // Removed streams take no more events (their buffers drained to disk),
    // so their pipelines' last commits hold every event they acknowledged.
    for name in &plan.streams_removed {
        supervisor.stop_stream(name).await?;
    }
    // Removed pipelines commit what they read and stop (a stream's
    // quarantine pipeline goes with it), before new pipelines start: a
    // renamed pipeline takes over its sink.
    let quarantines: Vec<String> = plan
        .streams_removed
        .iter()
        .filter_map(|name| running.streams.iter().find(|s| &s.name == name))
        .map(|s| s.quarantine_pipeline())
        .collect();
    for name in plan.pipelines_removed.iter().chain(&quarantines) {
        // One whose last commit failed before (a reload during an outage)
        // runs again first, so that its stop commits what it holds.
        if supervisor.pipeline(name).is_some_and(|p| p.stop_failed()) {
            supervisor.revive(running, name).await?;
        }
        if let Err(e) = supervisor.stop_pipeline(name, false).await {
            // Its last commit did not land: it runs on as it was, and the
            // next reload stops it again.
            return Err(supervisor.run_again(running, name, e).await);
        }
        if plan.pipelines_removed.contains(name) {
            done.pipelines.insert(name.clone());
        }
    }
    done.streams.extend(plan.streams_removed.iter().cloned());
    done.sinks.extend(plan.sinks_removed.iter().cloned());
    let added: Vec<&str> = plan.pipelines_added.iter().map(String::as_str).collect();
    supervisor.start(config, &[], &added).await?;
    done.pipelines.extend(plan.pipelines_added.iter().cloned());
    Ok(())
}
