//! Definitions made and deleted on a running server, in the control
//! plane's one order: check → store → apply → on failure put back.

use super::{changed, invalid, writer_of, SchemaDoc};
use crate::config::definitions::{Kind, Origin};
use crate::config::{PipelineFile, SinkFile, StreamFile};
use crate::running::supervisor::Supervisor;
use crate::{Error, ErrorKind, Result};

/// The defined pipelines that read stream `name` (not the stream's own
/// quarantine pipeline, which comes and goes with it).
pub fn readers(supervisor: &Supervisor, name: &str) -> Vec<String> {
    supervisor
        .config()
        .pipelines
        .iter()
        .filter(|p| {
            supervisor
                .pipeline(&p.name)
                .is_some_and(|r| r.stream == name)
        })
        .map(|p| p.name.clone())
        .collect()
}

/// Makes stream `name`; its schema document, if any, is kept beside the
/// definitions, named after the stream, before they point at it.
pub async fn create_stream(
    supervisor: &Supervisor,
    name: &str,
    mut stream: StreamFile,
    schema: Option<SchemaDoc>,
) -> Result<()> {
    crate::config::check_name(&format!("streams.{name}"), name)
        .map_err(|e| invalid(e.to_string()))?;
    let mut definitions = supervisor.definitions.change().await;
    definitions.check_new(Kind::Stream, name)?;
    let doc = match schema {
        None => None,
        Some(SchemaDoc::Fields(doc)) => {
            stream.schema_file = Some(super::schema_relative(name, "schema"));
            Some(doc)
        }
        Some(SchemaDoc::JsonSchema(doc)) => {
            stream.json_schema_file = Some(super::schema_relative(name, "json-schema"));
            Some(doc)
        }
    };
    let path = stream
        .schema_file
        .clone()
        .or(stream.json_schema_file.clone())
        .map(|p| definitions.data_dir().join(p));
    if let (Some(doc), Some(path)) = (&doc, &path) {
        let text = serde_json::to_vec_pretty(doc).map_err(|e| Error::Internal(e.to_string()))?;
        crate::config::definitions::write_durably(path, &text)?;
    }
    let outcome = async {
        let (api, config) = changed(&definitions, &supervisor.config(), None, |api| {
            api.streams.insert(name.to_string(), stream);
        })?;
        let start = async {
            let started = supervisor.start(&config, &[name], &[]).await;
            if started.is_err() {
                // A start that failed late may have opened the stream's
                // route: nothing undefined may take events.
                if let Err(stop) = supervisor.stop_stream(name).await {
                    tracing::warn!(stream = %name, error = %stop, "stopping the stream whose start failed");
                }
            }
            started
        };
        definitions.store_then(api, start).await?;
        supervisor.set_config(config);
        Ok::<_, Error>(())
    }
    .await;
    if let (Err(_), Some(path)) = (&outcome, &path) {
        let _ = std::fs::remove_file(path);
    }
    outcome?;
    tracing::info!(stream = %name, "stream created");
    Ok(())
}

/// What deleting a stream took with it.
#[derive(Debug)]
pub struct StreamDeleted {
    pub pipelines: Vec<String>,
    pub unprocessed: u64,
}

/// Deletes stream `name` and its buffer. Without `force`, refused while
/// pipelines read it or it holds events none has committed.
pub async fn delete_stream(
    supervisor: &Supervisor,
    name: &str,
    force: bool,
) -> Result<StreamDeleted> {
    let mut definitions = supervisor.definitions.change().await;
    definitions.check_deletable(Kind::Stream, name)?;
    let config = supervisor.config();
    let running = supervisor.stream(name);
    let readers = readers(supervisor, name);
    let unprocessed = running.as_ref().map_or(0, |r| r.log.unprocessed());
    // Force or not: a pipeline pipe.toml defines cannot be deleted here,
    // and would name a stream that is gone at the next start.
    let from_file: Vec<&String> = readers
        .iter()
        .filter(|p| definitions.origin(Kind::Pipeline, p) == Some(Origin::File))
        .collect();
    if !from_file.is_empty() {
        return Err(Error::Remote(
            format!(
                "stream `{name}` is read by pipeline(s) {from_file:?} defined in pipe.toml: remove them from the file and reload it (`pipe reload`) before deleting the stream"
            ),
            ErrorKind::Conflict,
        ));
    }
    if !force {
        if !readers.is_empty() {
            return Err(Error::Remote(
                format!(
                    "stream `{name}` is read by pipeline(s) {}: delete them first, or force (each commits what it has read, then is deleted with the stream)",
                    readers.join(", ")
                ),
                ErrorKind::Conflict,
            ));
        }
        if unprocessed > 0 {
            return Err(Error::Remote(
                format!(
                    "stream `{name}` holds {unprocessed} accepted request(s) not committed by any pipeline it has now: deleting it loses them; force to delete anyway"
                ),
                ErrorKind::Conflict,
            ));
        }
    }
    let own = config
        .streams
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.quarantine_pipeline());
    for p in readers.iter().cloned().chain(own) {
        if let Err(e) = supervisor.stop_pipeline(&p, false).await {
            tracing::warn!(pipeline = %p, error = %e, "the pipeline's last commit failed; deleting it anyway (forced)");
            // Kept as failed by the first stop; this one removes it.
            let _ = supervisor.stop_pipeline(&p, true).await;
        }
    }
    supervisor.stop_stream(name).await?;
    let schema = definitions
        .api()
        .streams
        .get(name)
        .and_then(|s| s.schema_file.clone().or(s.json_schema_file.clone()));
    let (api, new_config) = changed(&definitions, &supervisor.config(), None, |api| {
        api.streams.remove(name);
        for p in &readers {
            api.pipelines.remove(p);
        }
    })?;
    definitions.store(api)?;
    supervisor.set_config(new_config);
    std::fs::remove_dir_all(crate::running::supervisor::buffer_dir(&config, name)).or_else(
        |e| match e.kind() {
            std::io::ErrorKind::NotFound => Ok(()),
            _ => Err(Error::Internal(format!(
                "removing the buffer of `{name}`: {e}"
            ))),
        },
    )?;
    if let Some(schema) = schema {
        let _ = std::fs::remove_file(definitions.data_dir().join(schema));
    }
    tracing::info!(stream = %name, pipelines = ?readers, unprocessed, "stream deleted");
    Ok(StreamDeleted {
        pipelines: readers,
        unprocessed,
    })
}

/// Makes sink `name` (its table is made when a pipeline first writes it).
pub async fn create_sink(supervisor: &Supervisor, name: &str, sink: SinkFile) -> Result<()> {
    let mut definitions = supervisor.definitions.change().await;
    definitions.check_new(Kind::Sink, name)?;
    let (api, config) = changed(&definitions, &supervisor.config(), None, |api| {
        api.sinks.insert(name.to_string(), sink);
    })?;
    definitions.store(api)?;
    supervisor.set_config(config);
    tracing::info!(sink = %name, "sink created");
    Ok(())
}

/// Deletes sink `name`'s definition (never its table); refused while a
/// pipeline writes it.
pub async fn delete_sink(supervisor: &Supervisor, name: &str) -> Result<()> {
    let mut definitions = supervisor.definitions.change().await;
    definitions.check_deletable(Kind::Sink, name)?;
    if let Some(p) = writer_of(supervisor, name) {
        return Err(Error::Remote(
            format!("sink `{name}` is written by pipeline `{p}`: delete the pipeline first"),
            ErrorKind::Conflict,
        ));
    }
    let (api, config) = changed(&definitions, &supervisor.config(), None, |api| {
        api.sinks.remove(name);
    })?;
    definitions.store(api)?;
    supervisor.set_config(config);
    tracing::info!(sink = %name, "sink deleted");
    Ok(())
}

/// Makes pipeline `name`, planned and running before it returns.
pub async fn create_pipeline(
    supervisor: &Supervisor,
    name: &str,
    pipeline: PipelineFile,
) -> Result<()> {
    let mut definitions = supervisor.definitions.change().await;
    definitions.check_new(Kind::Pipeline, name)?;
    if supervisor.pipeline(name).is_some() {
        return Err(Error::Remote(
            format!("pipeline `{name}` already exists"),
            ErrorKind::Conflict,
        ));
    }
    let (api, config) = changed(&definitions, &supervisor.config(), None, |api| {
        api.pipelines.insert(name.to_string(), pipeline);
    })?;
    let names = [name];
    let start = supervisor.start(&config, &[], &names);
    definitions
        .store_then(api, start)
        .await
        .map_err(|e| match e {
            Error::Transform(t) => invalid(t.to_string()),
            other => other,
        })?;
    supervisor.set_config(config);
    tracing::info!(pipeline = %name, "pipeline created");
    Ok(())
}

/// Deletes pipeline `name` once it has committed what it read; the offset
/// it committed through. `force`: also one whose earlier delete could not
/// commit, giving those events up.
pub async fn delete_pipeline(
    supervisor: &Supervisor,
    name: &str,
    force: bool,
) -> Result<Option<u64>> {
    let mut definitions = supervisor.definitions.change().await;
    definitions.check_deletable(Kind::Pipeline, name)?;
    // Read after its last commit, which the stop waits for.
    let committed = supervisor.stop_pipeline(name, force).await?;
    let (api, config) = changed(&definitions, &supervisor.config(), None, |api| {
        api.pipelines.remove(name);
    })?;
    definitions.store(api)?;
    supervisor.set_config(config);
    tracing::info!(pipeline = %name, "pipeline deleted");
    Ok(committed)
}
