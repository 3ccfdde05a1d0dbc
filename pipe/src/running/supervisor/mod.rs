//! The running parts of `pipe serve`: one buffer writer and HTTP route per
//! stream, one task per pipeline. All of them start together when the
//! server starts, and one at a time while it runs, as the admin API
//! creates and deletes definitions ([`crate::server::admin`]).
//!
//! Starting a set of new parts follows the startup order of
//! [`crate::server`]: plan each pipeline's SQL and open its table (reading
//! its last committed offset), then open each new stream's buffer (its
//! offsets start past anything a table already holds for it), then start
//! the pipelines. A pipeline added to a stream that is already running is
//! attached to the stream's [`StreamLog`] before it reads, so nothing it
//! needs is released under it. A pipeline's position is read from its sink
//! for the stream's log (its identity is read first): offsets committed
//! from another log (the pipeline read another stream before, or the
//! stream was made again) are not this log's. Commits made before logs had
//! ids count only in the log the pipeline read when it got its id (see
//! [`pipe_ingest::log`]), so the plans come first: they say which
//! pipelines read each new log.
//!
//! Stopping is the shutdown order, per part: a pipeline commits what it
//! has read from the buffer and ends, then it stops holding buffer space; a
//! stream stops taking requests, its writer finishes what is queued, and
//! its buffer is removed only when the stream is deleted.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use pipe_ingest::buffer::Identity;
use pipe_ingest::http::{StreamRoutes, StreamStats};
use pipe_ingest::log::StreamLog;
use pipe_sink::Catalog;
use pipe_sink::{Sink, WriteOptions};
use pipe_transform::PipelinePlan;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::definitions::Definitions;
use crate::config::{Config, PipelineConfig, StartAt, StreamConfig};
use crate::running::fresh::{FreshReads, Source};
use crate::running::metrics::{PipelineSource, SharedMetrics};
use crate::running::pipeline::{FailedRows, FlushRequest, Part, PipelineStats, PipelineTask};
use crate::{Error, ErrorKind, Result};

mod open;
mod start_at;
mod update;
pub use update::{PipelineChange, StreamChange};

/// A stream that takes events.
pub struct RunningStream {
    pub log: Arc<StreamLog>,
    pub stats: Arc<StreamStats>,
    writer: std::sync::Mutex<Option<JoinHandle<pipe_ingest::Result<()>>>>,
}

/// A pipeline that runs.
pub struct RunningPipeline {
    pub name: String,
    pub stream: String,
    /// The sink's name (empty for a stream's quarantine pipeline).
    pub sink_name: String,
    /// `namespace.table`, or the location of a file sink.
    pub sink: String,
    pub kind: &'static str,
    pub quarantine_table: Option<String>,
    pub stats: Arc<PipelineStats>,
    /// Its stream's log (for its lag).
    pub log: Arc<StreamLog>,
    pub flush: mpsc::Sender<FlushRequest>,
    cancel: CancellationToken,
    task: std::sync::Mutex<Option<JoinHandle<Result<()>>>>,
    /// A stop whose last commit failed: its events are still owed.
    stop_failed: std::sync::atomic::AtomicBool,
}

impl RunningPipeline {
    /// Whether its stop failed to commit its last events (see
    /// [`Supervisor::stop_pipeline`]).
    pub fn stop_failed(&self) -> bool {
        self.stop_failed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A pipeline planned and its table opened, ready to start.
struct Planned {
    /// The stream whose buffer it reads.
    stream: String,
    sink_name: String,
    part: Part,
    plan: PipelinePlan,
    sink: Sink,
    committed: Option<u64>,
    /// The commit `committed` comes from.
    last: Option<pipe_sink::Committed>,
    failed: Option<FailedRows>,
    /// What the failed-rows table committed from this log, when its
    /// commits name it.
    failed_floor: Option<u64>,
    roll_interval: Duration,
    roll_bytes: u64,
    roll_rows: Option<u64>,
    /// Where it starts without a position in the log.
    start: StartAt,
    /// That start, as the offset it has in effect consumed through.
    start_through: Option<u64>,
    /// The newest position another pipeline recorded in the sink's table
    /// for this log, when this one has none (it was renamed, or replaces a
    /// deleted one): an `earliest` start continues after it.
    taken_over: Option<(String, u64)>,
}

/// Everything running, and the definitions it runs.
pub struct Supervisor {
    catalog: Arc<dyn Catalog>,
    /// Commits the maintenance snapshots of the sinks' tables.
    committer: pipe_sink::maintenance::Committer,
    pub routes: Arc<StreamRoutes>,
    pub metrics: SharedMetrics,
    pipeline_runtime: tokio::runtime::Handle,
    /// Cancels every pipeline at shutdown (each also has its own child).
    cancel: CancellationToken,
    /// Held while the definitions change, so changes happen one at a time.
    pub definitions: crate::config::shared::Shared,
    config: RwLock<Arc<Config>>,
    streams: RwLock<BTreeMap<String, Arc<RunningStream>>>,
    pipelines: RwLock<BTreeMap<String, Arc<RunningPipeline>>>,
    /// What the running pipelines have not committed, for fresh reads.
    pub fresh: Arc<FreshReads>,
}

impl Supervisor {
    /// Nothing running yet: [`Supervisor::start`] starts the parts.
    pub fn new(
        catalog: Arc<dyn Catalog>,
        committer: pipe_sink::maintenance::Committer,
        definitions: Definitions,
        config: Config,
        pipeline_runtime: tokio::runtime::Handle,
    ) -> Self {
        Self {
            catalog,
            committer,
            routes: Arc::new(StreamRoutes::new(config.body_timeout)),
            metrics: SharedMetrics::default(),
            fresh: Arc::new(FreshReads::new(config.query.max_unflushed_bytes)),
            pipeline_runtime,
            cancel: CancellationToken::new(),
            definitions: crate::config::shared::Shared::new(definitions),
            config: RwLock::new(Arc::new(config)),
            streams: RwLock::new(BTreeMap::new()),
            pipelines: RwLock::new(BTreeMap::new()),
        }
    }

    /// The catalog the sinks commit to.
    pub fn catalog(&self) -> Arc<dyn Catalog> {
        self.catalog.clone()
    }

    /// What commits the sinks' tables' maintenance snapshots.
    pub fn committer(&self) -> &pipe_sink::maintenance::Committer {
        &self.committer
    }

    /// The definitions in effect.
    pub fn config(&self) -> Arc<Config> {
        self.config.read().expect("never poisoned").clone()
    }

    /// Makes `config` the definitions in effect (after a change started or
    /// stopped its parts).
    pub fn set_config(&self, config: Config) {
        *self.config.write().expect("never poisoned") = Arc::new(config);
    }

    pub fn stream(&self, name: &str) -> Option<Arc<RunningStream>> {
        self.streams
            .read()
            .expect("never poisoned")
            .get(name)
            .cloned()
    }

    pub fn pipeline(&self, name: &str) -> Option<Arc<RunningPipeline>> {
        self.pipelines
            .read()
            .expect("never poisoned")
            .get(name)
            .cloned()
    }

    /// Every running pipeline, by name.
    pub fn pipelines(&self) -> Vec<Arc<RunningPipeline>> {
        self.pipelines
            .read()
            .expect("never poisoned")
            .values()
            .cloned()
            .collect()
    }

    /// Starts the streams and pipelines of `config` named in `streams` and
    /// `pipelines` (with a new stream comes its quarantine pipeline, if it
    /// has one). Every pipeline is planned and its table opened before
    /// anything starts, so a failure starts nothing.
    pub async fn start(&self, config: &Config, streams: &[&str], pipelines: &[&str]) -> Result<()> {
        let (tables, sink_names) = plan_inputs(config)?;
        let mut sink_users: HashMap<String, String> = self
            .pipelines()
            .iter()
            .filter(|p| !p.sink_name.is_empty())
            .map(|p| (p.sink_name.clone(), p.name.clone()))
            .collect();
        // The plans first: which pipelines read each new stream's log.
        let mut plans = Vec::new();
        for name in pipelines {
            let p = pipeline_config(config, name)?;
            let plan = PipelinePlan::new(&p.name, &p.sql, &tables, &sink_names).await?;
            if let Some(other) = sink_users.insert(plan.sink().to_string(), p.name.clone()) {
                return Err(Error::Remote(
                    format!(
                        "`pipelines.{}.sql`: sink `{}` is already written by pipeline `{other}`",
                        p.name,
                        plan.sink()
                    ),
                    ErrorKind::Conflict,
                ));
            }
            plans.push((p, plan));
        }
        // The identity of each stream's log: what the sinks' positions are for.
        let mut identities: HashMap<String, Identity> = HashMap::new();
        for name in streams {
            let stream = stream_config(config, name)?;
            let quarantine = stream.quarantine_pipeline();
            let readers: Vec<&str> = plans
                .iter()
                .filter(|(_, plan)| plan.stream() == *name)
                .map(|(p, _)| p.name.as_str())
                .chain(stream.quarantine.as_ref().map(|_| quarantine.as_str()))
                .collect();
            let identity = StreamLog::identity(&buffer_dir(config, name), &readers)?;
            identities.insert(name.to_string(), identity);
        }
        // A log's id, and whether `reader`'s commits that name no log are
        // positions in it.
        let log_of = |stream: &str, reader: &str| -> Result<(String, bool)> {
            match identities.get(stream) {
                Some(i) => Ok((i.id.clone(), i.legacy_consumers.contains(reader))),
                None => self
                    .stream(stream)
                    .map(|s| {
                        let legacy = s.log.legacy_consumers().contains(reader);
                        (s.log.id().to_string(), legacy)
                    })
                    .ok_or_else(|| Error::Internal(format!("stream `{stream}` is not running"))),
            }
        };
        let mut planned = Vec::new();
        for (p, plan) in plans {
            let (source, legacy) = log_of(plan.stream(), &p.name)?;
            let what = format!("opening the sink of pipeline `{}`", p.name);
            let opened = self.open_pipeline(config, p, plan, &source, legacy);
            planned.push(crate::within(config.store_timeout, &what, opened).await?);
        }
        for name in streams {
            let stream = stream_config(config, name)?;
            let what = format!("opening the quarantine table of stream `{name}`");
            let opened = self.open_quarantine(config, stream, &identities[*name]);
            if let Some(q) = crate::within(config.store_timeout, &what, opened).await? {
                planned.push(q);
            }
        }

        // New streams: their logs start past anything committed from them.
        // All open before any new identity is written, so that a start one
        // of them refuses leaves every id-less buffer as it was.
        let mut opened = Vec::new();
        for name in streams {
            let stream = stream_config(config, name)?;
            let users = planned
                .iter()
                .filter(|p| p.stream == stream.name)
                .map(|p| (p.plan.name().to_string(), p.committed));
            let legacy = planned
                .iter()
                .filter(|p| {
                    p.stream == stream.name && p.last.as_ref().is_some_and(|c| c.source.is_none())
                })
                .map(|p| p.plan.name().to_string())
                .collect();
            // A failed-rows table commits a range before its main table: a
            // crash between the two leaves it ahead.
            let floor = planned
                .iter()
                .filter(|p| p.stream == stream.name)
                .filter_map(|p| p.failed_floor)
                .max()
                .map_or(0, |c| c + 1);
            let identity = identities.remove(*name).expect("made above");
            opened.push((
                stream,
                self.open_stream(config, stream, identity, users, legacy, floor)?,
            ));
        }
        for (stream, opened) in opened {
            opened.log.keep_identity()?;
            open::keep_schema(config, stream)?;
            self.run_stream(stream, opened)?;
        }
        // Pipelines added to running streams.
        for p in &planned {
            if streams.contains(&p.stream.as_str()) {
                continue;
            }
            let running = self
                .stream(&p.stream)
                .ok_or_else(|| Error::Internal(format!("stream `{}` is not running", p.stream)))?;
            let next = running.log.next_offset();
            // Its failed-rows table too: it commits a range before the
            // main table (as a new log's floor, see above).
            let through = p.committed.into_iter().chain(p.failed_floor).max();
            if let Some(c) = through.filter(|c| c + 1 > next) {
                return Err(Error::Remote(
                    format!(
                        "`{}` holds what a pipeline named `{}` committed from this log of `{}` through offset {c}, past its end (next offset {next}): restart the server, which starts the log past it",
                        p.sink.describe(),
                        p.plan.name(),
                        p.stream
                    ),
                    ErrorKind::Conflict,
                ));
            }
        }
        for p in &planned {
            self.check_last_record(p)?;
        }
        let mut planned = planned;
        for p in &mut planned {
            if p.committed.is_some() {
                continue;
            }
            let running = self
                .stream(&p.stream)
                .ok_or_else(|| Error::Internal(format!("stream `{}` is not running", p.stream)))?;
            let marker = start_at::marker(&config.data_dir, p.plan.name());
            let resolved = start_at::resolve(p.start, &running.log, &marker)?;
            p.start_through = match (&p.start, &p.taken_over) {
                (StartAt::Earliest, Some((other, through))) => {
                    info!(pipeline = %p.plan.name(), from = %other, through, "the table holds this log's events through this offset, committed by another pipeline: starting after them");
                    Some(*through)
                }
                _ => resolved,
            };
        }
        for p in planned {
            self.start_pipeline(p);
        }
        Ok(())
    }

    /// Starts a planned pipeline's task.
    fn start_pipeline(&self, mut p: Planned) {
        let name = p.plan.name().to_string();
        let running = self
            .stream(&p.stream)
            .expect("the stream started before its pipelines");
        let log = running.log.clone();
        // Commits record the log's run: a copy of this log appending
        // elsewhere is caught (`pipe_sink::Run`).
        let (run, run_from) = log.run();
        let run = pipe_sink::Run {
            id: run.to_string(),
            from: run_from,
        };
        p.sink.set_run(run.clone());
        if let Some(failed) = &mut p.failed {
            failed.sink.set_run(run);
        }
        // Attached before it reads, so no release passes it. A pipeline
        // recreated under a deleted one's name resumes after its last
        // commit, unless the log has released those events since.
        let from = log.attach(&name, p.committed.or(p.start_through));
        let (tx, rx) = mpsc::channel(16);
        let stats = Arc::new(PipelineStats::new(p.committed, from));
        // Said where the operator looks, not only in the log: those events
        // are in the stream's other pipelines' tables, not in this one's.
        if let Some(c) = p.committed.filter(|c| c + 1 < from) {
            stats.record_error(format!(
                "offsets {}..{} of stream `{}` were released while no pipeline `{name}` read it (other pipelines had committed them): they are not in `{}`",
                c + 1,
                from - 1,
                p.stream,
                p.sink.describe()
            ));
        }
        self.metrics.add_pipeline(PipelineSource {
            name: name.clone(),
            stream: p.stream.clone(),
            sink: p.sink.describe(),
            stats: stats.clone(),
            log: log.clone(),
        });
        let cancel = self.cancel.child_token();
        let info = RunningPipeline {
            name: name.clone(),
            stream: p.stream.clone(),
            sink_name: p.sink_name.clone(),
            sink: p.sink.describe(),
            kind: match &p.sink {
                Sink::Table(_) => "iceberg",
                Sink::Files(_) => "files",
            },
            quarantine_table: p.failed.as_ref().map(|f| f.sink.ident().to_string()),
            stats: stats.clone(),
            log: log.clone(),
            flush: tx,
            cancel: cancel.clone(),
            task: std::sync::Mutex::new(None),
            stop_failed: Default::default(),
        };
        self.register_fresh(&p, &log, from);
        let task = PipelineTask {
            part: p.part,
            reader: log.reader(from),
            plan: p.plan,
            sink: p.sink,
            log,
            roll_interval: p.roll_interval,
            roll_bytes: p.roll_bytes,
            roll_rows: p.roll_rows,
            committed_through: p.committed,
            started_at: from,
            store_timeout: self.config().store_timeout,
            failed: p.failed,
            unfinished: None,
            stats: stats.clone(),
            backoff: Default::default(),
        };
        // The task's end is recorded in its health: a pipeline that stops
        // on an error or a panic shows as failed (admin API, /metrics,
        // /readyz) instead of vanishing.
        let watched = {
            let stats = stats.clone();
            let name = name.clone();
            async move {
                use futures::FutureExt;
                match std::panic::AssertUnwindSafe(task.run(rx, cancel))
                    .catch_unwind()
                    .await
                {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => {
                        error!(pipeline = %name, error = %e, "pipeline stopped with an error");
                        stats.set_failed(&e.to_string());
                        Err(e)
                    }
                    Err(panic) => {
                        let message = format!(
                            "the pipeline task panicked: {}",
                            pipe_schemas::panic_message(panic.as_ref())
                        );
                        error!(pipeline = %name, "{message}");
                        stats.set_failed(&message);
                        Err(Error::Internal(message))
                    }
                }
            }
        };
        let handle = self.pipeline_runtime.spawn(watched);
        *info.task.lock().expect("never poisoned") = Some(handle);
        self.pipelines
            .write()
            .expect("never poisoned")
            .insert(name, Arc::new(info));
    }

    /// Registers a starting pipeline's tables for fresh reads.
    fn register_fresh(&self, p: &Planned, log: &Arc<StreamLog>, from: u64) {
        let name = p.plan.name();
        // What it registered before (its quarantine table may have moved).
        self.fresh.remove(name);
        let Sink::Table(sink) = &p.sink else { return };
        let source = |writer: String, failed_rows: bool| -> Option<Source> {
            Some(Source {
                pipeline: name.to_string(),
                writer,
                log: log.clone(),
                plan: p
                    .plan
                    .fork()
                    .inspect_err(|e| warn!(pipeline = name, error = %e, "no fresh reads"))
                    .ok()?,
                part: p.part,
                failed_rows,
                isolates: p.failed.is_some(),
                started_at: from,
            })
        };
        if let Some(s) = source(name.to_string(), false) {
            self.fresh.register(sink.ident().clone(), s);
        }
        if let Some(failed) = &p.failed {
            if let Some(s) = source(format!("{name}__failed"), true) {
                self.fresh.register(failed.sink.ident().clone(), s);
            }
        }
    }

    /// What keeps the server from doing its work: a stream whose buffer
    /// writer failed (it takes no events), a pipeline whose task ended.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self
            .streams
            .read()
            .expect("never poisoned")
            .iter()
            .filter_map(|(name, s)| {
                s.log
                    .failure()
                    .map(|e| format!("stream `{name}` takes no events: {e}"))
            })
            .collect();
        for p in self.pipelines() {
            let health = p.stats.health();
            if health.state == crate::running::pipeline::State::Failed {
                problems.push(format!(
                    "pipeline `{}` failed: {}",
                    p.name,
                    health.reason.unwrap_or_default()
                ));
            }
        }
        problems
    }

    /// Stops a pipeline: it commits what it has read and ends; then it no
    /// longer holds buffer space. An error is its last commit's. A pipeline
    /// whose earlier stop failed still owes its events: it is removed only
    /// with `force` (giving them up).
    ///
    /// Returns the offset it committed through, its last commit included
    /// (`None`: nothing committed, or it was not running).
    pub async fn stop_pipeline(&self, name: &str, force: bool) -> Result<Option<u64>> {
        let Some(p) = self.end_task(name, force).await? else {
            return Ok(None);
        };
        self.fresh.remove(name);
        if let Some(stream) = self.stream(&p.stream) {
            stream.log.detach(name);
        }
        let _ = std::fs::remove_file(start_at::marker(&self.config().data_dir, name));
        info!(pipeline = name, "pipeline stopped");
        Ok(p.stats.committed_through())
    }

    /// Ends a pipeline's task: it commits what is durable and returns, and
    /// is taken out of the running parts and the metrics. While it commits
    /// it stays listed, as `draining`. It stays attached to its stream's
    /// log, so nothing after its last commit is released until the caller
    /// detaches it or starts its successor. A task whose last commit fails
    /// is kept (see [`Self::stop_pipeline`]). Callers hold the definitions'
    /// change lock, so no other change sees it half stopped.
    async fn end_task(&self, name: &str, force: bool) -> Result<Option<Arc<RunningPipeline>>> {
        let Some(p) = self.pipeline(name) else {
            return Ok(None);
        };
        if p.stop_failed.load(std::sync::atomic::Ordering::Relaxed) && !force {
            return Err(Error::Remote(
                format!("pipeline `{name}` could not commit its last events when it was stopped: restart the server to run it and commit them, or delete it with `?force=true` (`pipe pipelines delete --discard-uncommitted`) to give them up"),
                ErrorKind::Conflict,
            ));
        }
        let task = p.task.lock().expect("never poisoned").take();
        if task.is_some() {
            p.stats.set_draining();
        }
        p.cancel.cancel();
        let result = match task {
            Some(task) => task
                .await
                .map_err(|e| Error::Internal(format!("pipeline `{name}`: {e}")))
                .and_then(|r| r),
            None => Ok(()),
        };
        if let Err(e) = &result {
            p.stop_failed
                .store(true, std::sync::atomic::Ordering::Relaxed);
            // Its last commit did not land: it keeps its place in the log
            // (nothing it has not committed is released) and shows as
            // failed, instead of vanishing while still defined.
            p.stats.set_failed(&format!(
                "stopping it failed, so it was not removed: {e}; its events stay in the buffer: restart the server to run it again, or delete it with force to give them up"
            ));
            return result.map(|()| None);
        }
        self.pipelines.write().expect("never poisoned").remove(name);
        self.metrics.remove_pipeline(name);
        Ok(Some(p))
    }

    /// Stops a stream (after its pipelines: see [`Supervisor::stop_pipeline`]):
    /// new requests get 404, queued ones finish. Its buffer stays on disk.
    pub async fn stop_stream(&self, name: &str) -> Result<()> {
        let Some(stream) = self.streams.write().expect("never poisoned").remove(name) else {
            return Ok(());
        };
        self.routes.remove(name);
        let writer = stream.writer.lock().expect("never poisoned").take();
        if let Some(writer) = writer {
            writer
                .await
                .map_err(|e| Error::Internal(format!("buffer writer of `{name}`: {e}")))??;
        }
        self.metrics.remove_stream(name);
        info!(stream = name, "stream stopped");
        Ok(())
    }

    /// Shutdown: no new requests; each buffer writer finishes its queue;
    /// then every pipeline commits what is left and ends. Returns the first
    /// failure.
    pub async fn shutdown(&self) -> Option<Error> {
        // An admin change runs to its end on a task of its own, even when
        // its client hung up (`crate::server::admin::run_to_end`): one in flight is
        // waited for, and none starts after, so nothing it starts escapes
        // the ordered stop below.
        let _no_changes = self.definitions.change().await;
        self.routes.clear().await;
        let mut failure = None;
        let streams: Vec<(String, Arc<RunningStream>)> = self
            .streams
            .read()
            .expect("never poisoned")
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        for (name, stream) in streams {
            let writer = stream.writer.lock().expect("never poisoned").take();
            let Some(writer) = writer else { continue };
            match writer.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    error!(stream = %name, error = %e, "buffer writer failed");
                    failure.get_or_insert(Error::from(e));
                }
                Err(e) => {
                    failure
                        .get_or_insert(Error::Internal(format!("buffer writer of `{name}`: {e}")));
                }
            }
        }
        for p in self.pipelines() {
            if p.task.lock().expect("never poisoned").is_some() {
                p.stats.set_draining();
            }
        }
        self.cancel.cancel();
        for p in self.pipelines() {
            let task = p.task.lock().expect("never poisoned").take();
            let Some(task) = task else { continue };
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    error!(pipeline = %p.name, error = %e, "pipeline stopped with an error");
                    failure.get_or_insert(e);
                }
                Err(e) => {
                    failure.get_or_insert(Error::Internal(e.to_string()));
                }
            }
        }
        failure
    }
}

/// What pipeline SQL is planned against: each stream's table schema, and
/// the sinks' names.
type PlanInputs = (HashMap<String, arrow::datatypes::SchemaRef>, Vec<String>);

impl Supervisor {
    /// Plans every pipeline of `config` (changing nothing): each reads a
    /// stream and writes a sink `config` defines, with columns it has, and
    /// no sink has two writers.
    pub async fn check_plans(&self, config: &Config) -> Result<()> {
        let (tables, sink_names) = plan_inputs(config)?;
        let mut writers: HashMap<String, &str> = HashMap::new();
        for p in &config.pipelines {
            let plan = PipelinePlan::new(&p.name, &p.sql, &tables, &sink_names)
                .await
                .map_err(|e| {
                    Error::Remote(
                        format!("pipeline `{}`: {e}", p.name),
                        ErrorKind::InvalidInput,
                    )
                })?;
            if let Some(other) = writers.insert(plan.sink().to_string(), &p.name) {
                return Err(Error::Remote(
                    format!(
                        "pipelines `{other}` and `{}` both write sink `{}`: a sink has one writer",
                        p.name,
                        plan.sink()
                    ),
                    ErrorKind::InvalidInput,
                ));
            }
        }
        Ok(())
    }
}

fn plan_inputs(config: &Config) -> Result<PlanInputs> {
    let tables = config
        .streams
        .iter()
        .map(|s| Ok((s.name.clone(), s.decoder()?.table_schema())))
        .collect::<Result<_>>()?;
    let sink_names = config.sinks.iter().map(|s| s.name.clone()).collect();
    Ok((tables, sink_names))
}

fn pipeline_config<'a>(config: &'a Config, name: &str) -> Result<&'a PipelineConfig> {
    config
        .pipelines
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| Error::Internal(format!("pipeline `{name}` is not defined")))
}

fn stream_config<'a>(config: &'a Config, name: &str) -> Result<&'a StreamConfig> {
    config
        .streams
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| Error::Internal(format!("stream `{name}` is not defined")))
}

impl Supervisor {
    /// Each sink's write ledger (files written, not yet resolved) lives
    /// beside the buffer; its commits record the stream log `source` they
    /// read; its table's manifests are merged by the server's committer.
    fn ledgered(&self, config: &Config, source: &str) -> WriteOptions {
        WriteOptions {
            ledger_dir: Some(ledger_dir(config)),
            source: Some(source.to_string()),
            owns_metadata_files: config.catalog.owns_metadata_files(),
            warehouse: config
                .catalog
                .owns_metadata_files()
                .then(|| config.catalog.warehouse.location.clone()),
            committer: Some(self.committer.clone()),
            ..WriteOptions::default()
        }
    }
}

/// Where the sinks' write ledgers live (files written, not yet resolved,
/// which the orphan sweep must never take).
pub fn ledger_dir(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("sinks")
}

/// Where a stream's buffer lives.
pub fn buffer_dir(config: &Config, stream: &str) -> std::path::PathBuf {
    config.data_dir.join("buffer").join(stream)
}
