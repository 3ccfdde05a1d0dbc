//! The steps of [`Supervisor::start`] that open things: a pipeline's sink
//! and quarantine table (with its position in the log), a stream's
//! quarantine pipeline, a stream's log and its route, and the check that
//! a pipeline's last commit holds the event this log holds at its offset.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pipe_ingest::buffer::{BufferOptions, Identity};
use pipe_ingest::http::{StreamEndpoint, StreamStats};
use pipe_ingest::log::{LogOptions, Opened, StreamLog};
use pipe_sink::{FileSink, Sink, TableSink, WriteOptions};
use pipe_transform::PipelinePlan;
use tracing::info;

use super::{buffer_dir, Planned, RunningStream, Supervisor};
use crate::config::{Config, PipelineConfig, SinkTarget, StartAt, StreamConfig};
use crate::running::metrics::StreamSource;
use crate::running::pipeline::{FailedRows, Part};
use crate::{Error, ErrorKind, Result};

impl Supervisor {
    /// Plans the quarantine pipeline of a stream in quarantine mode.
    pub(super) async fn open_quarantine(
        &self,
        config: &Config,
        stream: &StreamConfig,
        log: &Identity,
    ) -> Result<Option<Planned>> {
        let Some((namespace, table)) = &stream.quarantine else {
            return Ok(None);
        };
        let name = stream.quarantine_pipeline();
        let source = format!("{}__quarantined", stream.name);
        let sink_name = format!("{name}_sink");
        let schema = pipe_schemas::EventDecoder::quarantine_table_schema();
        let plan = PipelinePlan::new(
            &name,
            // Quoted: a stream's name may hold `-` or capitals.
            &format!("INSERT INTO \"{sink_name}\" SELECT * FROM \"{source}\""),
            &HashMap::from([(source.clone(), schema)]),
            std::slice::from_ref(&sink_name),
        )
        .await?;
        let mut sink = Sink::Table(Box::new(
            TableSink::open(
                self.catalog.clone(),
                namespace,
                table,
                &name,
                &sink_name,
                plan.output_schema(),
                WriteOptions {
                    unsourced_ended: !log.legacy_consumers.contains(&name),
                    ..self.ledgered(config, &log.id)
                },
            )
            .await?,
        ));
        let last = sink.last_committed().await?;
        let committed = last.as_ref().map(|c| c.range.last);
        info!(pipeline = %name, stream = %stream.name, table = %sink.describe(), committed_through = ?committed, "quarantine pipeline planned");
        Ok(Some(Planned {
            stream: stream.name.clone(),
            sink_name: String::new(),
            part: Part::Quarantine,
            plan,
            sink,
            committed,
            last,
            failed: None,
            failed_floor: None,
            roll_interval: Duration::from_secs(60),
            roll_bytes: 64 << 20,
            roll_rows: None,
            start: StartAt::Earliest,
            start_through: None,
            taken_over: None,
        }))
    }

    /// Opens a planned pipeline's sink and quarantine table. `legacy`:
    /// its commits that name no log are positions in log `source`.
    pub(super) async fn open_pipeline(
        &self,
        config: &Config,
        p: &PipelineConfig,
        plan: PipelinePlan,
        source: &str,
        legacy: bool,
    ) -> Result<Planned> {
        let sink_config = config
            .sink(plan.sink())
            .expect("the plan checked the sink exists");
        let options = WriteOptions {
            codec: sink_config.compression,
            row_group_rows: sink_config.row_group_rows,
            target_file_bytes: sink_config.target_file_bytes,
            partition_by: sink_config.partition_by.clone(),
            retention: sink_config.retention,
            compact: sink_config.compaction,
            full_compaction_every: sink_config.full_compaction_every,
            bloom_filter_columns: sink_config.bloom_filter_columns.clone(),
            sort_by: sink_config.sort_by.clone(),
            unsourced_ended: !legacy,
            definition: Some(p.definition()),
            ..self.ledgered(config, source)
        };
        let mut sink = match &sink_config.target {
            SinkTarget::Table { namespace, table } => Sink::Table(Box::new(
                TableSink::open(
                    self.catalog.clone(),
                    namespace,
                    table,
                    &p.name,
                    &sink_config.name,
                    plan.output_schema(),
                    options,
                )
                .await?,
            )),
            SinkTarget::Files(settings) => Sink::Files(Box::new(
                FileSink::open(
                    settings,
                    &p.name,
                    Some(source),
                    !legacy,
                    plan.output_schema(),
                )
                .await?,
            )),
        };
        let last = sink.last_committed().await?;
        let mut committed = last.as_ref().map(|c| c.range.last);
        let mut taken_over = sink.newest_from_source();
        // Another pipeline committed from this log since this one's own
        // last commit (renamed away and back, or replaced and restored):
        // the table holds those events, so it goes on after them.
        if let (Some(own), Some((other, through))) = (committed, &taken_over) {
            if *through > own {
                info!(pipeline = %p.name, from = %other, through, "the table holds this log's events through this offset, committed by another pipeline since this one's last commit: starting after them");
                committed = Some(*through);
            }
            taken_over = None;
        }
        let (namespace, table) = &p.quarantine;
        // Failed rows are committed only when some fail: once the main sink
        // holds a commit with a source, commits without one in the
        // failed-rows table are no position of this log either.
        let unsourced_ended = !legacy || sink.has_sourced_commits().await?;
        let mut failed_sink = TableSink::open(
            self.catalog.clone(),
            namespace,
            table,
            &p.failed_rows_writer(),
            &sink_config.name,
            &pipe_transform::failed_rows_schema(),
            WriteOptions {
                unsourced_ended,
                ..self.ledgered(config, source)
            },
        )
        .await?;
        let failed_last = failed_sink.last_committed().await?;
        let failed = FailedRows {
            committed_through: failed_last.as_ref().map(|c| c.range.last),
            sink: failed_sink,
        };
        info!(pipeline = %p.name, stream = plan.stream(), sink = %sink.describe(), quarantine_table = %failed.sink.ident(), committed_through = ?committed, "pipeline planned");
        Ok(Planned {
            stream: plan.stream().to_string(),
            sink_name: sink_config.name.clone(),
            part: Part::Events,
            plan,
            sink,
            committed,
            last,
            failed: Some(failed),
            // Positions that name no log never move a log's next offset
            // (see `pipe_ingest::log`).
            failed_floor: failed_last
                .filter(|c| c.source.is_some())
                .map(|c| c.range.last),
            roll_interval: sink_config.roll_interval,
            roll_bytes: sink_config.roll_bytes,
            roll_rows: sink_config.roll_rows,
            start: p.start,
            start_through: None,
            taken_over,
        })
    }

    /// Refuses a pipeline whose last commit holds another event at its
    /// last offset than the log does (see `Committed::last_crc`): a copy of
    /// this log appended other events under the same offsets and committed
    /// them while this server was down. Going on would skip this log's
    /// events at those offsets; the log is marked forked instead.
    pub(super) fn check_last_record(&self, p: &Planned) -> Result<()> {
        let Some(last) = &p.last else {
            return Ok(());
        };
        let Some(crc) = last.last_crc.filter(|_| last.source.is_some()) else {
            return Ok(());
        };
        let running = self
            .stream(&p.stream)
            .ok_or_else(|| Error::Internal(format!("stream `{}` is not running", p.stream)))?;
        let offset = last.range.last;
        match running.log.payload_crc_at(offset)? {
            Some(held) if held != crc => {
                let reason = format!(
                    "`{}` holds offsets {}..={offset} of this stream's log committed by pipeline `{}`, but the event this log holds at offset {offset} is another one: a copy of this log appended other events under the same offsets and committed them while this server was down. Nothing more is committed from this log here",
                    p.sink.describe(),
                    last.range.first,
                    p.plan.name(),
                );
                running.log.mark_forked_from(&reason, last.range.first)?;
                Err(Error::Remote(reason, ErrorKind::Conflict))
            }
            _ => Ok(()),
        }
    }

    /// Opens a stream's log (recovering its buffer) and starts its
    /// writer. `users`: the pipelines that read it, with what each
    /// committed from this log; `legacy_positions`: those of them whose
    /// position comes from commits that name no log.
    pub(super) fn open_stream(
        &self,
        config: &Config,
        stream: &StreamConfig,
        identity: Identity,
        users: impl IntoIterator<Item = (String, Option<u64>)>,
        legacy_positions: std::collections::BTreeSet<String>,
        committed_floor: u64,
    ) -> Result<Opened> {
        let options = LogOptions {
            committed_floor,
            legacy_positions,
            buffer: BufferOptions {
                segment_bytes: stream.segment_bytes,
                max_disk_bytes: stream.max_buffer_bytes,
                min_free_disk_bytes: stream.min_free_disk_bytes,
                ..BufferOptions::default()
            },
            idempotency_window: stream.idempotency_window,
            max_keys: stream.idempotency_max_keys,
        };
        let opened = StreamLog::open(
            &stream.name,
            &buffer_dir(config, &stream.name),
            identity,
            options,
            users,
        )?;
        check_buffered_schema(config, stream, &opened.log)?;
        Ok(opened)
    }

    /// Starts an opened log's HTTP route and metrics.
    pub(super) fn run_stream(&self, stream: &StreamConfig, opened: Opened) -> Result<()> {
        let stats = Arc::new(StreamStats::default());
        self.metrics.add_stream(StreamSource {
            name: stream.name.clone(),
            stats: stats.clone(),
            log: opened.log.clone(),
        });
        self.routes.insert(
            &stream.name,
            StreamEndpoint {
                decoder: stream.decoder()?,
                appender: opened.appender,
                policy: stream.policy.clone(),
                inflight: Arc::new(tokio::sync::Semaphore::new(
                    stream.policy.max_inflight_bytes,
                )),
                keys: opened.log.keys(),
                stats: stats.clone(),
            },
        );
        self.streams.write().expect("never poisoned").insert(
            stream.name.clone(),
            Arc::new(RunningStream {
                log: opened.log,
                stats,
                writer: std::sync::Mutex::new(Some(opened.writer)),
            }),
        );
        info!(stream = %stream.name, "stream started");
        Ok(())
    }
}

/// Where a stream's buffer keeps the schema (Arrow, as an IPC stream with
/// no batch) its events were last accepted with.
fn schema_file(config: &Config, stream: &str) -> std::path::PathBuf {
    buffer_dir(config, stream).join("schema.arrow")
}

/// Refuses to start stream `stream` on a schema that the events its log
/// still holds for some pipeline do not fit (see
/// `pipe_schemas::evolution`): a schema file edited before a restart is
/// judged as a change in place is. A stream with nothing left to read
/// takes any schema.
fn check_buffered_schema(config: &Config, stream: &StreamConfig, log: &StreamLog) -> Result<()> {
    let new = stream.decoder()?.table_schema();
    let old = std::fs::read(schema_file(config, &stream.name))
        .ok()
        .and_then(|bytes| {
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).ok()
        })
        .map(|reader| reader.schema());
    if let Some(old) = old.filter(|_| log.unprocessed() > 0) {
        pipe_schemas::evolution::changes(&old, &new).map_err(|why| {
            Error::Config(format!(
                "stream `{}`: its schema changed since the last start in a way the {} accepted requests not yet committed by every pipeline do not fit: {why}. Put the old schema back until its pipelines have committed them (or change it only in ways old events fit: new optional fields, wider numbers)",
                stream.name,
                log.unprocessed()
            ))
        })?;
    }
    Ok(())
}

/// Keeps `stream`'s schema as the one its events are now accepted with.
pub(super) fn keep_schema(config: &Config, stream: &StreamConfig) -> Result<()> {
    let schema = stream.decoder()?.table_schema();
    let mut bytes = Vec::new();
    let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut bytes, &schema)
        .map_err(|e| Error::Internal(format!("encoding the schema of `{}`: {e}", stream.name)))?;
    writer
        .finish()
        .map_err(|e| Error::Internal(format!("encoding the schema of `{}`: {e}", stream.name)))?;
    drop(writer);
    crate::config::definitions::write_durably(&schema_file(config, &stream.name), &bytes)
}
