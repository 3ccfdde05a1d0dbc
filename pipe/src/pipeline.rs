//! The task that runs one pipeline: buffer → SQL → data files → commit.
//!
//! ```text
//!  BufferReader ──records──► decode IPC ──► PipelinePlan::run ──► TableSink::write
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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pipe_ingest::buffer::{Buffer, BufferReader};
use pipe_ingest::idempotency::KeyIndex;
use pipe_ingest::payload::{decode_batches, decode_quarantine};
use pipe_sink::{CommitOutcome, OffsetRange, TableSink};
use pipe_transform::PipelinePlan;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{Error, Result};

/// Records read from the buffer per step.
const READ_RECORDS: usize = 4096;
/// Bytes read from the buffer per step.
const READ_BYTES: usize = 32 << 20;

/// Frees buffer space once every pipeline reading a stream has committed it.
#[derive(Debug)]
pub struct ReleaseTracker {
    pub buffer: Arc<Buffer>,
    keys: Arc<KeyIndex>,
    committed: Mutex<HashMap<String, Option<u64>>>,
}

impl ReleaseTracker {
    /// Tracks the given pipelines of one stream's buffer; idempotency keys
    /// of released records are kept in `keys`.
    pub fn new(
        buffer: Arc<Buffer>,
        keys: Arc<KeyIndex>,
        pipelines: impl IntoIterator<Item = (String, Option<u64>)>,
    ) -> Self {
        Self {
            buffer,
            keys,
            committed: Mutex::new(pipelines.into_iter().collect()),
        }
    }

    fn committed(&self, pipeline: &str, last: u64) {
        let through = {
            let mut map = self
                .committed
                .lock()
                .expect("never poisoned: no panics while held");
            map.insert(pipeline.to_string(), Some(last));
            map.values().copied().min().flatten()
        };
        if let Some(through) = through {
            match self
                .buffer
                .release_through(through, |records| self.keys.retain(records))
            {
                Ok(0) => {}
                Ok(n) => info!(pipeline, through, segments = n, "released buffer segments"),
                Err(e) => warn!(pipeline, error = %e, "could not release buffer segments"),
            }
        }
    }
}

/// What a flush did.
#[derive(Debug, Clone, Serialize)]
pub struct FlushReport {
    pub pipeline: String,
    /// The last committed buffer offset after the flush, if any.
    pub committed_through: Option<u64>,
    /// Rows committed by this flush.
    pub rows: usize,
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

/// The running state of one pipeline.
pub struct PipelineTask {
    pub part: Part,
    pub plan: PipelinePlan,
    pub sink: TableSink,
    pub reader: BufferReader,
    pub release: Arc<ReleaseTracker>,
    pub roll_interval: Duration,
    pub roll_bytes: u64,
    pub committed_through: Option<u64>,
    /// Closed files whose commit has not succeeded yet: retried before
    /// anything new is read, so no later range can overtake them.
    pub unfinished: Option<(OffsetRange, usize, Vec<pipe_sink::DataFile>)>,
}

struct Pending {
    range: OffsetRange,
    bytes: u64,
    rows: usize,
    since: Instant,
}

impl PipelineTask {
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
                    self.commit_through_durable(&mut pending, &cancel).await?;
                    info!(pipeline = %name, committed_through = ?self.committed_through, "pipeline stopped");
                    return Ok(());
                }
                Some(req) = flushes.recv() => flush = Some(req),
                _ = self.reader.wait(tick) => {}
            }
            let result = async {
                if self.unfinished.is_some() {
                    self.roll(&mut pending, &cancel).await?;
                }
                if flush.is_some() {
                    return self.commit_through_durable(&mut pending, &cancel).await;
                }
                if let Err(e) = self.read_available(&mut pending, false).await {
                    self.rewind(&mut pending);
                    return Err(e);
                }
                let due = pending.as_ref().is_some_and(|p| {
                    p.bytes >= self.roll_bytes || p.since.elapsed() >= self.roll_interval
                });
                if due {
                    return self.roll(&mut pending, &cancel).await;
                }
                Ok(0)
            }
            .await;
            match (flush, result) {
                (Some(reply), Ok(rows)) => {
                    let _ = reply.send(Ok(FlushReport {
                        pipeline: name.clone(),
                        committed_through: self.committed_through,
                        rows,
                    }));
                }
                (Some(reply), Err(e)) => {
                    error!(pipeline = %name, error = %e, "flush failed");
                    let _ = reply.send(Err(e));
                }
                (None, Ok(_)) => {}
                (None, Err(e)) => {
                    // Nothing is lost: the pending range stays in the buffer
                    // and the next turn tries again.
                    error!(pipeline = %name, error = %e, "pipeline step failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
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
    ) -> Result<usize> {
        let target = self.reader.durable_end();
        let mut rows = self.roll(pending, cancel).await?;
        while self.reader.position() < target {
            if let Err(e) = self.read_available(pending, true).await {
                self.rewind(pending);
                return Err(e);
            }
            rows += self.roll(pending, cancel).await?;
        }
        Ok(rows)
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
            let bytes: u64 = records.iter().map(|r| r.payload.len() as u64).sum();
            let mut batches = Vec::new();
            for r in &records {
                batches.extend(match self.part {
                    Part::Events => decode_batches(&r.payload)?,
                    Part::Quarantine => decode_quarantine(&r.payload)?,
                });
            }
            let output = self.plan.run(batches).await?;
            let mut rows = 0;
            for batch in &output {
                self.sink.write(batch).await?;
                rows += batch.num_rows();
            }
            match pending {
                Some(p) => {
                    p.range.last = range.last;
                    p.bytes += bytes;
                    p.rows += rows;
                }
                None => {
                    *pending = Some(Pending {
                        range,
                        bytes,
                        rows,
                        since: Instant::now(),
                    })
                }
            }
            if !drain || pending.as_ref().is_some_and(|p| p.bytes >= self.roll_bytes) {
                return Ok(());
            }
        }
    }

    /// Forgets what was read but not committed and reads it again from the
    /// buffer: the safe answer to any failure before the files were closed.
    fn rewind(&mut self, pending: &mut Option<Pending>) {
        self.sink.abort();
        let from = match (pending.take(), self.committed_through) {
            (Some(p), _) => p.range.first,
            (None, Some(c)) => c + 1,
            (None, None) => self.reader.position(),
        };
        warn!(pipeline = %self.plan.name(), from_offset = from, "rewinding to the first uncommitted offset");
        self.reader = self.release.buffer.reader(from);
    }

    /// Closes the data files and commits the pending range (or retries an
    /// unfinished commit); returns the rows committed.
    async fn roll(
        &mut self,
        pending: &mut Option<Pending>,
        cancel: &CancellationToken,
    ) -> Result<usize> {
        if self.unfinished.is_none() {
            let Some(p) = pending.take() else {
                return Ok(0);
            };
            match self.sink.close_files().await {
                Ok(files) => self.unfinished = Some((p.range, p.rows, files)),
                Err(e) => {
                    *pending = Some(p);
                    self.rewind(pending);
                    return Err(e.into());
                }
            }
        }
        let (range, rows, files) = self.unfinished.as_ref().expect("set above");
        let (range, rows) = (*range, *rows);
        let mut delay = Duration::from_millis(200);
        loop {
            match self.sink.commit(range, files).await {
                Ok(outcome) => {
                    if outcome == CommitOutcome::AlreadyCommitted {
                        warn!(pipeline = %self.plan.name(), first = range.first, last = range.last, "range was already committed; its new files stay unreferenced");
                    }
                    self.unfinished = None;
                    self.committed_through = Some(range.last);
                    self.release.committed(self.plan.name(), range.last);
                    return Ok(rows);
                }
                Err(e) if e.kind().retryable() && !cancel.is_cancelled() => {
                    warn!(pipeline = %self.plan.name(), error = %e, "commit failed; retrying the same range");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
                // The range and its files stay in `unfinished` and are
                // committed before anything newer; the records stay in the
                // buffer until then.
                Err(e) => return Err(Error::from(e)),
            }
        }
    }
}
