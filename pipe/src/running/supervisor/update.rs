//! A running pipeline's SQL changed in place.
//!
//! The switch happens at an offset: the old SQL's task commits everything
//! durable when the change arrives (through offset X) and ends, still
//! attached to its stream's log, so nothing after X is released in
//! between, whatever the stream's other pipelines commit; the new SQL's
//! task then opens the same sink and starts at X + 1, which its table
//! says it committed through. Every event through X went through the old
//! SQL, every one after it through the new, and each commit records which
//! in `pipe.definition` (a digest of the SQL,
//! [`crate::config::PipelineConfig::definition`]).
//!
//! Everything the change touches is checked before the old task stops:
//! the new SQL plans against the stream's schema, it reads the same
//! stream and writes the same sink (other changes are not in place), and
//! the sink's table takes its output ([`TableSink::check`]). If the new
//! task still cannot start (its table is unreachable), the old definition
//! is started again, from where the old task stopped.
//!
//! A change of a sink's settings switches the pipeline writing it the same
//! way. A change of a stream's schema switches every pipeline reading it,
//! all ended before any starts, and the stream's route takes the new
//! schema only once the new plans run ([`Supervisor::change_stream`]).

use pipe_sink::TableSink;
use pipe_transform::PipelinePlan;
use tracing::{info, warn};

use std::sync::Arc;

use super::{pipeline_config, plan_inputs, RunningPipeline, Supervisor};
use crate::config::{Config, SinkTarget};
use crate::running::metrics::PipelineSource;
use crate::{Error, ErrorKind, Result};

/// What a change of a pipeline's SQL did, or would do.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PipelineChange {
    pub pipeline: String,
    /// The digests of the old and the new SQL (`pipe.definition`).
    pub definition_before: String,
    pub definition_after: String,
    /// The last offset the old SQL committed (the switch is after it);
    /// `None` before anything was committed, or for a dry run, where it
    /// is not known yet.
    pub switched_after_offset: Option<u64>,
    /// Records (accepted requests) the old SQL had not committed when the
    /// change began; it commits them before it ends.
    pub records_through_old_definition: u64,
}

impl Supervisor {
    /// Checks that `name`'s definition in `new` can replace its running
    /// one in place, changing nothing. Returns what the change would do.
    pub async fn check_pipeline_change(&self, new: &Config, name: &str) -> Result<PipelineChange> {
        let running = self.pipeline(name).ok_or_else(|| {
            Error::Remote(format!("unknown pipeline `{name}`"), ErrorKind::NotFound)
        })?;
        let old = self.config();
        let before = pipeline_config(&old, name)?;
        let after = pipeline_config(new, name)?;
        let (tables, sink_names) = plan_inputs(new)?;
        let plan = PipelinePlan::new(name, &after.sql, &tables, &sink_names)
            .await
            .map_err(|e| Error::Remote(e.to_string(), ErrorKind::InvalidInput))?;
        if plan.stream() != running.stream {
            return Err(refused(format!(
                "the new SQL of pipeline `{name}` reads stream `{}`, the running one reads `{}`: a pipeline's FROM does not change in place, because its position belongs to the stream it reads. Create a new pipeline reading `{}` instead (and delete this one when it has caught up)",
                plan.stream(),
                running.stream,
                plan.stream()
            )));
        }
        if plan.sink() != running.sink_name {
            return Err(refused(format!(
                "the new SQL of pipeline `{name}` writes sink `{}`, the running one writes `{}`: a pipeline's sink does not change in place. Create a new pipeline for sink `{}` instead",
                plan.sink(),
                running.sink_name,
                plan.sink()
            )));
        }
        if running.stop_failed() {
            return Err(Error::Remote(
                format!("pipeline `{name}` could not commit its last events when it was stopped: restart the server before changing it"),
                ErrorKind::Conflict,
            ));
        }
        let sink = new
            .sink(plan.sink())
            .expect("the plan checked the sink exists");
        if let SinkTarget::Table { namespace, table } = &sink.target {
            let options = pipe_sink::WriteOptions {
                bloom_filter_columns: sink.bloom_filter_columns.clone(),
                sort_by: sink.sort_by.clone(),
                partition_by: sink.partition_by.clone(),
                ..Default::default()
            };
            let (output, whose) = (plan.output_schema(), "its sink's table");
            self.check_table(new, name, namespace, table, output, &options, whose)
                .await?;
        }
        // The table for rows the SQL fails on (it may be another now).
        let (namespace, table) = &after.quarantine;
        let output = pipe_transform::failed_rows_schema();
        let whose = "its quarantine table (for the rows it fails on)";
        self.check_table(
            new,
            name,
            namespace,
            table,
            &output,
            &Default::default(),
            whose,
        )
        .await?;
        let committed = running.stats.committed_through();
        let next = self
            .stream(&running.stream)
            .map_or(0, |s| s.log.next_offset());
        Ok(PipelineChange {
            pipeline: name.to_string(),
            definition_before: before.definition(),
            definition_after: after.definition(),
            switched_after_offset: None,
            records_through_old_definition: next.saturating_sub(committed.map_or(0, |c| c + 1)),
        })
    }

    /// Whether `namespace.table` takes `output` (see `TableSink::check`),
    /// within the store timeout; a refusal says it is `whose` table.
    #[allow(clippy::too_many_arguments)]
    async fn check_table(
        &self,
        new: &Config,
        name: &str,
        namespace: &str,
        table: &str,
        output: &arrow::datatypes::SchemaRef,
        options: &pipe_sink::WriteOptions,
        whose: &str,
    ) -> Result<()> {
        let what = format!("checking table `{namespace}.{table}` for pipeline `{name}`");
        let checked = TableSink::check(&self.catalog, namespace, table, output, options);
        crate::within(new.store_timeout, &what, async {
            checked.await.map_err(|e| match e {
                pipe_sink::Error::Config(message) | pipe_sink::Error::Schema(message) => {
                    refused(format!(
                        "the new definition of pipeline `{name}` does not fit {whose}: {message}"
                    ))
                }
                other => other.into(),
            })
        })
        .await
    }

    /// Replaces `name`'s running SQL with its definition in `new` (see the
    /// module doc). `old` is the configuration it runs now. On an error
    /// the old definition runs again, unless the error says otherwise.
    pub async fn change_pipeline(
        &self,
        old: &Config,
        new: &Config,
        name: &str,
    ) -> Result<PipelineChange> {
        let mut change = self.check_pipeline_change(new, name).await?;
        let ended = match self.end_task(name, false).await {
            Ok(Some(ended)) => ended,
            Ok(None) => {
                return Err(Error::Internal(format!(
                    "pipeline `{name}` stopped meanwhile"
                )))
            }
            // Its last commit under the old SQL failed and its task ended:
            // the old SQL starts again from its last commit.
            Err(e) => return Err(self.run_again(old, name, e).await),
        };
        change.switched_after_offset = ended.stats.committed_through();
        crate::crash::point(crate::crash::CHANGE_BETWEEN_DEFINITIONS);
        match self.start(new, &[], &[name]).await {
            Ok(()) => {
                info!(pipeline = name, switched_after_offset = ?change.switched_after_offset, definition = %change.definition_after, "pipeline SQL changed in place");
                Ok(change)
            }
            Err(e) => {
                warn!(pipeline = name, error = %e, "the new SQL could not start; starting the old one again");
                match self.start(old, &[], &[name]).await {
                    Ok(()) => Err(e),
                    Err(again) => {
                        let message = format!("the new definition of pipeline `{name}` could not start ({e}), nor could the old one again ({again}): nothing after offset {:?} was released; restart the server to run the stored definition", change.switched_after_offset);
                        self.list_failed(&[ended], &message);
                        Err(Error::Remote(message, ErrorKind::Unavailable))
                    }
                }
            }
        }
    }
}

fn refused(message: String) -> Error {
    Error::Remote(message, ErrorKind::InvalidInput)
}

impl Supervisor {
    /// After a change or a stop failed with `error` once `name`'s task had
    /// ended unable to commit: its definition in `old` runs again (see
    /// [`Self::revive`]); if it cannot start either, the ended task stays
    /// listed as failed (as after a failed stop). Returns the error to
    /// answer with.
    pub(crate) async fn run_again(&self, old: &Config, name: &str, error: Error) -> Error {
        match self.revive(old, name).await {
            Ok(()) => error,
            Err(again) => Error::Remote(
                format!("{error}; its definition before the change could not run again either ({again})"),
                ErrorKind::Unavailable,
            ),
        }
    }

    /// Runs `name` as `config` defines it again after its task ended
    /// unable to commit (a failed stop or change): from its last commit,
    /// with its stream if that was stopped, so nothing it holds is
    /// stranded. If it cannot start, it stays listed as failed.
    pub(crate) async fn revive(&self, config: &Config, name: &str) -> Result<()> {
        let failed = self.pipelines.write().expect("never poisoned").remove(name);
        self.metrics.remove_pipeline(name);
        let stopped: Vec<String> = failed
            .iter()
            .map(|f| f.stream.clone())
            .filter(|s| self.stream(s).is_none())
            .collect();
        let streams: Vec<&str> = stopped.iter().map(String::as_str).collect();
        let started = self.start(config, &streams, &[name]).await;
        if started.is_err() {
            if let Some(failed) = failed {
                self.pipelines
                    .write()
                    .expect("never poisoned")
                    .insert(name.to_string(), failed);
            }
        }
        started
    }
}

/// What a change of a stream's schema did, or would do.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StreamChange {
    pub stream: String,
    /// One line per change of the schema.
    pub schema_changes: Vec<String>,
    /// The settings changed (keys of `[streams.NAME]`): the stream's
    /// route takes them for the next request.
    pub settings: Vec<String>,
    /// Each pipeline reading the stream, switched at an offset.
    pub pipelines: Vec<PipelineChange>,
}

impl Supervisor {
    /// The pipelines that read stream `name`'s events (not its quarantine
    /// pipeline, whose records keep their schema).
    fn readers(&self, name: &str) -> Vec<String> {
        self.pipelines()
            .iter()
            .filter(|p| p.stream == name && !p.sink_name.is_empty())
            .map(|p| p.name.clone())
            .collect()
    }

    /// Checks that stream `name`'s schema in `new` can replace its running
    /// one in place (see `pipe_schemas::evolution`), with every pipeline
    /// reading it (their SQL plans against it, their tables take or can
    /// evolve to their output), changing nothing.
    pub async fn check_stream_change(&self, new: &Config, name: &str) -> Result<StreamChange> {
        if self.stream(name).is_none() {
            return Err(Error::Remote(
                format!("unknown stream `{name}`"),
                ErrorKind::NotFound,
            ));
        }
        let old = self.config();
        let before = super::stream_config(&old, name)?.decoder()?.table_schema();
        let after = super::stream_config(new, name)?.decoder()?.table_schema();
        let schema_changes = pipe_schemas::evolution::changes(&before, &after).map_err(|why| {
            refused(format!(
                "the new schema of stream `{name}` cannot replace the running one in place: {why}"
            ))
        })?;
        // The same columns: the pipelines read the same events as before.
        let mut pipelines = Vec::new();
        if !schema_changes.is_empty() {
            for p in self.readers(name) {
                pipelines.push(self.check_pipeline_change(new, &p).await?);
            }
        }
        Ok(StreamChange {
            stream: name.to_string(),
            schema_changes,
            settings: Vec::new(),
            pipelines,
        })
    }

    /// Replaces stream `name`'s running schema with its schema in `new`:
    /// each pipeline reading it commits what is durable under its old
    /// plan and ends (still attached), the new plans start after those
    /// commits (reading events of the old schema as the new one), and only
    /// then do requests get validated with the new schema, so the old
    /// plans never meet an event they cannot read. If the new plans cannot
    /// start, the old ones start again and the stream keeps its schema.
    pub async fn change_stream(
        &self,
        old: &Config,
        new: &Config,
        name: &str,
    ) -> Result<StreamChange> {
        let mut change = self.check_stream_change(new, name).await?;
        let readers: Vec<String> = change
            .pipelines
            .iter()
            .map(|p| p.pipeline.clone())
            .collect();
        let mut ended: Vec<Arc<RunningPipeline>> = Vec::new();
        for (p, planned) in readers.iter().zip(change.pipelines.iter_mut()) {
            match self.end_task(p, false).await {
                Ok(Some(task)) => {
                    planned.switched_after_offset = task.stats.committed_through();
                    ended.push(task);
                }
                Ok(None) => {}
                Err(e) => {
                    let e = self.run_again(old, p, e).await;
                    let names: Vec<&str> = ended.iter().map(|t| t.name.as_str()).collect();
                    return Err(match self.start(old, &[], &names).await {
                        Ok(()) => e,
                        Err(again) => {
                            let message = format!("{e}; pipelines {names:?} could not start again either ({again}): restart the server");
                            self.list_failed(&ended, &message);
                            Error::Remote(message, ErrorKind::Unavailable)
                        }
                    });
                }
            }
        }
        crate::crash::point(crate::crash::CHANGE_BETWEEN_DEFINITIONS);
        let names: Vec<&str> = ended.iter().map(|t| t.name.as_str()).collect();
        if let Err(e) = self.start(new, &[], &names).await {
            warn!(stream = name, error = %e, "the pipelines could not start on the new schema; starting them again on the old one");
            return Err(match self.start(old, &[], &names).await {
                Ok(()) => e,
                Err(again) => {
                    let message = format!("the pipelines of stream `{name}` could not start on its new schema ({e}), nor again on the old one ({again}): nothing they had not committed was released; restart the server");
                    self.list_failed(&ended, &message);
                    Error::Remote(message, ErrorKind::Unavailable)
                }
            });
        }
        self.reconfigure_stream(new, name)?;
        let stream = super::stream_config(new, name)?;
        if let Err(e) = super::open::keep_schema(new, stream) {
            // Only the next start's check of buffered events is the
            // weaker for it (it compares with the schema before).
            warn!(stream = name, error = %e, "could not keep the stream's new schema");
        }
        info!(stream = name, changes = ?change.schema_changes, "stream schema changed in place");
        Ok(change)
    }
}

impl Supervisor {
    /// Makes stream `name`'s route validate and admit later requests as
    /// its definition in `new` says: its schema's rules, its tokens,
    /// origins and limits (requests already dispatched finish under the
    /// old ones). What its buffer fixed when it opened does not change
    /// here (see `control::stream_fixed`).
    pub fn reconfigure_stream(&self, new: &Config, name: &str) -> Result<()> {
        let stream = super::stream_config(new, name)?;
        let decoder = stream.decoder()?;
        if !self
            .routes
            .reconfigure(name, decoder, stream.policy.clone())
        {
            // A stream that takes no HTTP events has no route.
            tracing::debug!(stream = name, "no route to reconfigure");
        }
        Ok(())
    }

    /// Lists pipelines whose task ended for a change that then could not
    /// start any definition: shown `failed` with `reason` (API, `/metrics`,
    /// `/readyz`) until a restart runs them, instead of vanishing while
    /// they still hold their place in the log.
    fn list_failed(&self, ended: &[Arc<RunningPipeline>], reason: &str) {
        for task in ended {
            task.stats.set_failed(reason);
            if let Some(stream) = self.stream(&task.stream) {
                self.metrics.add_pipeline(PipelineSource {
                    name: task.name.clone(),
                    stream: task.stream.clone(),
                    sink: task.sink.clone(),
                    stats: task.stats.clone(),
                    log: stream.log.clone(),
                });
            }
            self.pipelines
                .write()
                .expect("never poisoned")
                .insert(task.name.clone(), task.clone());
        }
    }
}
