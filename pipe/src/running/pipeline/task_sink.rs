//! What the pipeline task needs of its sink: [`TaskSink`]. In production
//! that is [`Sink`] (an Iceberg table or a file sink); the model test
//! (`model.rs`) runs the task against a fake one that fails on demand.

use std::future::Future;

use arrow::record_batch::RecordBatch;
use pipe_sink::{Closed, CommitOutcome, FileStats, OffsetRange, Result, Sink};

/// The sink operations of the pipeline task: write rows into open files,
/// close them, commit closed files with the offset range they cover, or
/// drop the open ones.
pub trait TaskSink: Send + 'static {
    /// Files closed by [`TaskSink::close_files`], waiting for their commit.
    type Closed: Send + Sync;

    /// Writes a batch of the pipeline's output into the open files.
    fn write(&mut self, batch: &RecordBatch) -> impl Future<Output = Result<()>> + Send;

    /// Closes the open files, ready to commit.
    fn close_files(&mut self) -> impl Future<Output = Result<Self::Closed>> + Send;

    /// Drops the open files (their range is read again).
    fn abort(&mut self);

    /// Commits `closed` as covering `range`, exactly once: a retry of a
    /// range that landed finds it, and a range that a later commit already
    /// covers is [`CommitOutcome::AlreadyCommitted`] (its files are never
    /// referenced). `last_crc`: see [`pipe_sink::Committed::last_crc`].
    fn commit(
        &mut self,
        range: OffsetRange,
        last_crc: Option<u32>,
        closed: &Self::Closed,
    ) -> impl Future<Output = Result<CommitOutcome>> + Send;

    /// What `closed` adds up to, for the pipeline's figures.
    fn stats(closed: &Self::Closed) -> FileStats;
}

impl TaskSink for Sink {
    type Closed = Closed;

    async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        Sink::write(self, batch).await
    }

    async fn close_files(&mut self) -> Result<Closed> {
        Sink::close_files(self).await
    }

    fn abort(&mut self) {
        Sink::abort(self)
    }

    async fn commit(
        &mut self,
        range: OffsetRange,
        last_crc: Option<u32>,
        closed: &Closed,
    ) -> Result<CommitOutcome> {
        Sink::commit(self, range, last_crc, closed).await
    }

    fn stats(closed: &Closed) -> FileStats {
        closed.stats()
    }
}
