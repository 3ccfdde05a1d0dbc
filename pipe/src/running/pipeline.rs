//! The task that runs one pipeline: buffer → SQL → data files → commit.
//!
//! ```text
//!  BufferReader ──records──► decode IPC ──► PipelinePlan::run ──► Sink::write
//!       ▲                                                             │
//!       │            roll (size / interval / flush request)           ▼
//!       └──── release buffer ◄── commit(offsets a..=b, files) ◄── close files
//! ```
//!
//! The task owns a *pending range*: the offsets read since the last commit.
//! A roll closes the data files and commits them with that range; the commit
//! is retried (same range, same files) until it succeeds or is found already
//! done, and only then is buffer space released and new data read. On
//! restart the task starts after the last range the table holds for it.
//!
//! A step that fails (an error, or a panic caught at the step) is retried
//! with backoff from a known point: files not yet closed are dropped and
//! the range is read again from the buffer; closed files wait in
//! `unfinished` and their commit is retried. The pipeline's [`Health`]
//! says which: running, retrying (with the reason and the attempts), or
//! failed (the task ended; the supervisor records why).
//!
//! Rows the SQL fails on (see `PipelinePlan::run_isolating`) go to the
//! pipeline's quarantine table with their error, through a second sink that
//! commits the same offset ranges under its own name, `<pipeline>__failed`.
//! A roll commits the quarantine table first, then the sink table, so after
//! a crash between the two the quarantine table is ahead: on replay, failed
//! rows of records at or below its last committed offset are already there
//! and are not written again. The sink table's range decides where the
//! pipeline resumes and when the buffer is released.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use pipe_ingest::buffer::BufferReader;
use pipe_ingest::log::StreamLog;
use pipe_ingest::payload::{decode_batches, decode_quarantine};
use pipe_sink::{CommitOutcome, OffsetRange, Sink, TableSink};
use pipe_transform::{failed_rows_batch, PipelinePlan};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{Error, Result};

mod stats;
mod task_sink;
pub use stats::{Health, Lag, PipelineStats, RecentError, State, RECENT_ERRORS};
pub use task_sink::TaskSink;

#[cfg(test)]
mod model;

/// Records read from the buffer per step.
const READ_RECORDS: usize = 4096;
/// Bytes read from the buffer per step.
const READ_BYTES: usize = 32 << 20;

/// What a flush did: the answer of `POST /v1/pipelines/{name}/flush`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlushReport {
    pub pipeline: String,
    /// The last committed buffer offset after the flush, if any.
    pub committed_through: Option<u64>,
    /// Rows committed by this flush.
    pub rows: usize,
    /// Rows the SQL failed on, committed to the quarantine table by this flush.
    pub failed_rows: usize,
}

/// A request to roll and commit now.
pub type FlushRequest = oneshot::Sender<Result<FlushReport>>;

/// Which part of each buffer record a pipeline reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The accepted events (every user pipeline).
    Events,
    /// The quarantined events (a stream's quarantine pipeline).
    Quarantine,
}

/// The running state of one pipeline. `S` is its sink: a [`Sink`], or a
/// fake one in tests.
pub struct PipelineTask<S: TaskSink = Sink> {
    pub part: Part,
    pub plan: PipelinePlan,
    pub sink: S,
    pub reader: BufferReader,
    /// The stream's log: where the reader comes from, and what is told of
    /// each commit (so it can release what every consumer has committed).
    pub log: Arc<StreamLog>,
    pub roll_interval: Duration,
    pub roll_bytes: u64,
    /// Roll once this many rows were written, if set.
    pub roll_rows: Option<u64>,
    pub committed_through: Option<u64>,
    /// The offset the task started reading at: where a rewind goes back to
    /// while nothing is committed (the reader has moved past it by then).
    pub started_at: u64,
    /// How long one read-and-write step, one close of the data files, or
    /// one commit attempt may take before it counts as failed: a store or
    /// catalog that hangs (rather than refusing) becomes a retried error.
    pub store_timeout: Duration,
    /// Where rows the SQL fails on go; `None` for pipelines whose SQL
    /// cannot fail on a row (a stream's quarantine pipeline).
    pub failed: Option<FailedRows>,
    /// Closed files whose commit has not succeeded yet: retried before
    /// anything new is read, so no later range can overtake them.
    pub unfinished: Option<Unfinished<S>>,
    pub stats: Arc<PipelineStats>,
    pub backoff: Backoff,
}

/// The pipeline's quarantine table for rows its SQL fails on.
pub struct FailedRows {
    pub sink: TableSink,
    /// The last buffer offset whose failed rows the table holds.
    pub committed_through: Option<u64>,
}

/// How long the task waits before it tries a failed step or commit again.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// After a failed step; doubled with each failure in a row, up to `max`.
    pub step: Duration,
    /// The longest wait between two tries of a failing step.
    pub max: Duration,
    /// Before the first quick retry of a failed commit; doubled with each.
    pub commit: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            step: Duration::from_millis(500),
            max: Duration::from_secs(30),
            commit: Duration::from_millis(200),
        }
    }
}

/// A closed range waiting for its commits.
pub struct Unfinished<S: TaskSink = Sink> {
    range: OffsetRange,
    /// CRC of the range's last record's payload (`Committed::last_crc`).
    last_crc: u32,
    /// When the range's last request was accepted (µs since the epoch).
    newest_micros: i64,
    rows: usize,
    files: S::Closed,
    failed_rows: usize,
    failed_files: Vec<pipe_sink::DataFile>,
}

struct Pending {
    range: OffsetRange,
    last_crc: u32,
    /// When the range's last request was accepted (µs since the epoch).
    newest_micros: i64,
    bytes: u64,
    rows: usize,
    failed_rows: usize,
    since: Instant,
}

/// Rows committed by one or more rolls.
#[derive(Debug, Default, Clone, Copy)]
struct Rolled {
    rows: usize,
    failed_rows: usize,
}

impl std::ops::AddAssign for Rolled {
    fn add_assign(&mut self, other: Rolled) {
        self.rows += other.rows;
        self.failed_rows += other.failed_rows;
    }
}

impl<S: TaskSink> PipelineTask<S> {
    /// Runs until `cancel`, then commits what it holds and returns.
    pub async fn run(
        mut self,
        mut flushes: mpsc::Receiver<FlushRequest>,
        cancel: CancellationToken,
    ) -> Result<()> {
        let name = self.plan.name().to_string();
        info!(pipeline = %name, from_offset = self.reader.position(), "pipeline started");
        let mut pending: Option<Pending> = None;
        let tick = self.roll_interval.min(Duration::from_millis(500));
        loop {
            let mut flush: Option<FlushRequest> = None;
            tokio::select! {
                _ = cancel.cancelled() => {
                    if crate::crash::fault(crate::crash::SLOW_STOP) {
                        tokio::time::sleep(crate::crash::fault_delay()).await;
                    }
                    self.commit_through_durable(&mut pending, &cancel).await?;
                    info!(pipeline = %name, committed_through = ?self.committed_through, "pipeline stopped");
                    return Ok(());
                }
                Some(req) = flushes.recv() => flush = Some(req),
                _ = self.reader.wait(tick) => {}
            }
            if crate::crash::fault(crate::crash::PIPELINE_TASK_PANIC) {
                panic!("PIPE_FAULT: {}", crate::crash::PIPELINE_TASK_PANIC);
            }
            let step = async {
                let mut rolled = Rolled::default();
                if self.unfinished.is_some() {
                    rolled += self.roll(&mut pending, &cancel).await?;
                }
                if flush.is_some() {
                    rolled += self.commit_through_durable(&mut pending, &cancel).await?;
                    return Ok(rolled);
                }
                if let Err(e) = self.read_available_timed(&mut pending, false).await {
                    self.rewind(&mut pending);
                    return Err(e);
                }
                let due = pending
                    .as_ref()
                    .is_some_and(|p| self.full(p) || p.since.elapsed() >= self.roll_interval);
                if due {
                    rolled += self.roll(&mut pending, &cancel).await?;
                }
                Ok(rolled)
            };
            // A panic in a step is a failed step: what was read and not
            // closed is dropped and read again, closed files wait in
            // `unfinished`, as after an error.
            let result = match std::panic::AssertUnwindSafe(step).catch_unwind().await {
                Ok(result) => result,
                Err(panic) => {
                    self.rewind(&mut pending);
                    Err(Error::Internal(format!(
                        "the pipeline step panicked: {}",
                        pipe_schemas::panic_message(panic.as_ref())
                    )))
                }
            };
            let failed = result.as_ref().err().map(|e| e.to_string());
            // The state first: whoever the flush answers sees it already.
            let attempts = match &failed {
                None => {
                    self.stats.set_running();
                    None
                }
                Some(reason) => Some(self.stats.set_retrying(reason)),
            };
            match (flush, result) {
                (Some(reply), Ok(rolled)) => {
                    let _ = reply.send(Ok(FlushReport {
                        pipeline: name.clone(),
                        committed_through: self.committed_through,
                        rows: rolled.rows,
                        failed_rows: rolled.failed_rows,
                    }));
                }
                (Some(reply), Err(e)) => {
                    error!(pipeline = %name, error = %e, "flush failed");
                    self.stats.record_error(format!("flush failed: {e}"));
                    let _ = reply.send(Err(e));
                }
                (None, Ok(_)) => {}
                (None, Err(e)) => {
                    // Nothing is lost: the pending range stays in the buffer
                    // and the next turn tries again.
                    error!(pipeline = %name, error = %e, "pipeline step failed; retrying");
                    self.stats
                        .record_error(format!("step failed (retrying): {e}"));
                }
            }
            if let Some(attempts) = attempts {
                let backoff = self
                    .backoff
                    .step
                    .saturating_mul(1 << attempts.min(8))
                    .min(self.backoff.max);
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = tokio::time::sleep(backoff) => {}
                }
            }
        }
    }

    /// Commits everything durable now (everything acknowledged so far), in
    /// as many rolls as the size limit needs. Used by flush and shutdown.
    async fn commit_through_durable(
        &mut self,
        pending: &mut Option<Pending>,
        cancel: &CancellationToken,
    ) -> Result<Rolled> {
        let target = self.reader.durable_end();
        let mut rows = self.roll(pending, cancel).await?;
        while self.reader.position() < target {
            if let Err(e) = self.read_available_timed(pending, true).await {
                self.rewind(pending);
                return Err(e);
            }
            rows += self.roll(pending, cancel).await?;
        }
        Ok(rows)
    }

    /// [`read_available`](Self::read_available) within the store timeout.
    async fn read_available_timed(
        &mut self,
        pending: &mut Option<Pending>,
        drain: bool,
    ) -> Result<()> {
        let limit = self.store_timeout;
        crate::within(
            limit,
            "writing data files",
            self.read_available(pending, drain),
        )
        .await
    }

    /// Reads and processes durable records: all of them when `drain`, else
    /// one step's worth.
    async fn read_available(&mut self, pending: &mut Option<Pending>, drain: bool) -> Result<()> {
        loop {
            let records =
                tokio::task::block_in_place(|| self.reader.read(READ_RECORDS, READ_BYTES))?;
            let Some(last) = records.last() else {
                return Ok(());
            };
            let range = OffsetRange {
                first: records[0].offset,
                last: last.offset,
            };
            let last_crc = last.payload_crc();
            let newest_micros = pipe_ingest::payload::decode_meta(&last.payload)?.at_micros;
            let bytes: u64 = records.iter().map(|r| r.payload.len() as u64).sum();
            let mut batches = Vec::new();
            // (rows so far, offset): the record each input row came from.
            let mut ends = Vec::with_capacity(records.len());
            let mut input_rows = 0;
            for r in &records {
                let decoded = match self.part {
                    Part::Events => decode_batches(&r.payload)?,
                    Part::Quarantine => decode_quarantine(&r.payload)?,
                };
                input_rows += decoded.iter().map(|b| b.num_rows()).sum::<usize>();
                ends.push((input_rows, r.offset));
                batches.extend(decoded);
            }
            let (output, failed) = match &self.failed {
                Some(_) => {
                    let isolated = self.plan.run_isolating(batches).await?;
                    (isolated.output, isolated.failed)
                }
                None => (self.plan.run(batches).await?, Vec::new()),
            };
            crate::crash::point(crate::crash::BEFORE_WRITE);
            if crate::crash::fault(crate::crash::PIPELINE_STEP_PANIC) {
                panic!("PIPE_FAULT: {}", crate::crash::PIPELINE_STEP_PANIC);
            }
            let mut rows = 0;
            for batch in &output {
                self.sink.write(batch).await?;
                rows += batch.num_rows();
            }
            let mut failed_rows = 0;
            if let Some(sink) = &mut self.failed {
                // Failed rows of records the quarantine table already holds
                // (written before a crash) are not written again.
                let fresh: Vec<_> = failed
                    .iter()
                    .filter(|f| {
                        let record = ends.partition_point(|(end, _)| *end <= f.index);
                        sink.committed_through.is_none_or(|c| ends[record].1 > c)
                    })
                    .collect();
                if let Some(first) = failed.first() {
                    warn!(pipeline = %self.plan.name(), failed = failed.len(), first_error = %first.error, "the SQL failed on some rows; they go to the quarantine table");
                    self.stats.record_error(format!(
                        "the SQL failed on {} rows (kept in the quarantine table), first: {}",
                        failed.len(),
                        first.error
                    ));
                }
                if !fresh.is_empty() {
                    sink.sink
                        .write(&failed_rows_batch(fresh.iter().copied()))
                        .await?;
                    failed_rows = fresh.len();
                }
            }
            match pending {
                Some(p) => {
                    p.range.last = range.last;
                    p.last_crc = last_crc;
                    p.newest_micros = newest_micros;
                    p.bytes += bytes;
                    p.rows += rows;
                    p.failed_rows += failed_rows;
                }
                None => {
                    *pending = Some(Pending {
                        range,
                        last_crc,
                        newest_micros,
                        bytes,
                        rows,
                        failed_rows,
                        since: Instant::now(),
                    })
                }
            }
            if !drain || pending.as_ref().is_some_and(|p| self.full(p)) {
                return Ok(());
            }
        }
    }

    /// Whether the pending range has reached the size or row limit.
    fn full(&self, p: &Pending) -> bool {
        p.bytes >= self.roll_bytes
            || self
                .roll_rows
                .is_some_and(|rows| (p.rows + p.failed_rows) as u64 >= rows)
    }

    /// Forgets what was read but not committed and reads it again from the
    /// buffer: the safe answer to any failure before the files were closed.
    fn rewind(&mut self, pending: &mut Option<Pending>) {
        self.sink.abort();
        if let Some(failed) = &mut self.failed {
            failed.sink.abort();
        }
        // Never the reader's position: a step that failed after reading
        // has moved it past records nothing has committed. Nor before a
        // closed range (a commit that panicked): it is committed from
        // `unfinished`, and reading it again would commit it twice.
        let from = match (pending.take(), &self.unfinished, self.committed_through) {
            (Some(p), _, _) => p.range.first,
            (None, Some(u), _) => u.range.last + 1,
            (None, None, Some(c)) => (c + 1).max(self.started_at),
            (None, None, None) => self.started_at,
        };
        warn!(pipeline = %self.plan.name(), from_offset = from, "rewinding to the first offset not read into closed files");
        self.reader = self.log.reader(from);
    }

    /// Closes the data files and commits the pending range (or retries an
    /// unfinished commit); returns the rows committed.
    async fn roll(
        &mut self,
        pending: &mut Option<Pending>,
        cancel: &CancellationToken,
    ) -> Result<Rolled> {
        if self.unfinished.is_none() {
            let Some(p) = pending.take() else {
                return Ok(Rolled::default());
            };
            let limit = self.store_timeout;
            let closed = crate::within(limit, "closing data files", async {
                let files = self.sink.close_files().await?;
                let failed_files = match &mut self.failed {
                    Some(failed) => failed.sink.close_files().await?,
                    None => Vec::new(),
                };
                Ok::<_, Error>((files, failed_files))
            })
            .await;
            match closed {
                Ok((files, failed_files)) => {
                    crate::crash::point(crate::crash::AFTER_FILES);
                    self.unfinished = Some(Unfinished {
                        range: p.range,
                        last_crc: p.last_crc,
                        newest_micros: p.newest_micros,
                        rows: p.rows,
                        files,
                        failed_rows: p.failed_rows,
                        failed_files,
                    })
                }
                Err(e) => {
                    *pending = Some(p);
                    self.rewind(pending);
                    return Err(e);
                }
            }
        }
        let u = self.unfinished.as_ref().expect("set above");
        let range = u.range;
        let newest_micros = u.newest_micros;
        let rolled = Rolled {
            rows: u.rows,
            failed_rows: u.failed_rows,
        };
        let mut delay = self.backoff.commit;
        let mut tries = 0;
        let started = Instant::now();
        loop {
            // A commit attempt cut short by the timeout has an unknown
            // outcome, like a lost answer: the next attempt reloads the
            // table and looks for its commit id first, and the catalog's
            // compare-and-swap lets only one of them land.
            let limit = self.store_timeout;
            let attempt = tokio::time::timeout(limit, self.commit_unfinished())
                .await
                .unwrap_or_else(|_| Err(pipe_sink::Error::TimedOut(format!(
                    "the commit did not finish within {} s: the catalog or the store is not answering",
                    limit.as_secs()
                ))));
            match attempt {
                Ok(outcome) => {
                    self.stats.commits.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .commit_micros
                        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                    let now_ms = pipe_schemas::now_micros().max(0) as u64 / 1000;
                    self.stats
                        .last_commit_unix_ms
                        .store(now_ms, Ordering::Relaxed);
                    if let CommitOutcome::Committed { .. } = outcome {
                        let files = S::stats(&self.unfinished.as_ref().expect("still set").files);
                        let add = |counter: &AtomicU64, n: u64| {
                            counter.fetch_add(n, Ordering::Relaxed);
                        };
                        add(&self.stats.files_committed, files.files);
                        add(&self.stats.bytes_committed, files.bytes);
                        add(
                            &self.stats.uncompressed_bytes_committed,
                            files.uncompressed_bytes.unwrap_or(0),
                        );
                        add(&self.stats.row_groups_committed, files.row_groups);
                    }
                    if outcome == CommitOutcome::AlreadyCommitted {
                        warn!(pipeline = %self.plan.name(), first = range.first, last = range.last, "range was already committed; this attempt's files were deleted");
                    }
                    self.unfinished = None;
                    self.committed_through = Some(range.last);
                    crate::crash::point(crate::crash::BEFORE_RELEASE);
                    self.stats.set_committed(self.committed_through);
                    self.stats
                        .newest_committed_micros
                        .fetch_max(newest_micros, Ordering::Relaxed);
                    self.stats
                        .rows_committed
                        .fetch_add(rolled.rows as u64, Ordering::Relaxed);
                    self.stats
                        .failed_rows_committed
                        .fetch_add(rolled.failed_rows as u64, Ordering::Relaxed);
                    self.log.committed(self.plan.name(), range.last);
                    return Ok(rolled);
                }
                // The table's partition spec changed since the files were
                // written (another writer evolved it): they can never be
                // committed. They are dropped (the write ledger deletes
                // them) and the range is read again into files of the
                // table's spec; the sink made its writer anew.
                Err(e @ pipe_sink::Error::Respec(_)) => {
                    warn!(pipeline = %self.plan.name(), error = %e, "the table's partition spec changed; writing the range again");
                    self.unfinished = None;
                    self.rewind(pending);
                    return Err(Error::from(e));
                }
                // A few quick tries here; past them the step ends with the
                // error, so flushes get an answer and the task's backoff
                // (and state) take over. The range stays unfinished.
                Err(e) if e.kind().retryable() && !cancel.is_cancelled() && tries < 3 => {
                    tries += 1;
                    warn!(pipeline = %self.plan.name(), error = %e, "commit failed; retrying the same range");
                    self.stats
                        .record_error(format!("commit failed (retrying): {e}"));
                    self.stats.set_retrying(&e.to_string());
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                // Another process appends to a copy of this log: nothing
                // more is committed from it, and the log is marked so that
                // a restart does not go on past the other's commits
                // (skipping this one's own events).
                Err(e @ pipe_sink::Error::Forked(_)) => {
                    if let Err(mark) = self.log.mark_forked(&e.to_string()) {
                        tracing::error!(pipeline = %self.plan.name(), error = %mark, "could not mark the stream's log as forked");
                    }
                    return Err(Error::from(e));
                }
                // The range and its files stay in `unfinished` and are
                // committed before anything newer; the records stay in the
                // buffer until then.
                Err(e) => return Err(Error::from(e)),
            }
        }
    }

    /// Commits the unfinished range: the quarantine table first (when the
    /// range has failed rows), then the sink table. Each commit is
    /// idempotent, so a retry after a partial success is safe.
    async fn commit_unfinished(&mut self) -> std::result::Result<CommitOutcome, pipe_sink::Error> {
        let u = self
            .unfinished
            .as_ref()
            .expect("called with an unfinished range");
        if let Some(failed) = &mut self.failed {
            if !u.failed_files.is_empty() {
                // After a crash between the two commits the quarantine
                // table may hold the start of this range already (and its
                // rows were not written again): it gets the rest.
                let range = match failed.committed_through {
                    Some(c) if c >= u.range.first && c < u.range.last => OffsetRange {
                        first: c + 1,
                        last: u.range.last,
                    },
                    _ => u.range,
                };
                failed
                    .sink
                    .commit_with(range, Some(u.last_crc), &u.failed_files)
                    .await?;
                failed.committed_through = Some(u.range.last);
                crate::crash::point(crate::crash::AFTER_FAILED_ROWS_COMMIT);
            }
        }
        self.sink.commit(u.range, Some(u.last_crc), &u.files).await
    }
}
