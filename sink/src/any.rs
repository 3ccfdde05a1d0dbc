//! One interface over the sink kinds, for the pipeline task: write rows,
//! close files, commit them with their offset range.

use arrow::record_batch::RecordBatch;
use iceberg::spec::DataFile;

use crate::{CommitOutcome, Committed, FileSink, OffsetRange, Result, StagedFile, TableSink};

/// An Iceberg table sink or a plain file sink.
#[derive(Debug)]
pub enum Sink {
    Table(Box<TableSink>),
    Files(Box<FileSink>),
}

/// Files a sink closed, waiting for their commit.
#[derive(Debug, Clone)]
pub enum Closed {
    /// Iceberg data files, and their size before compression if known.
    Table(Vec<DataFile>, Option<u64>),
    Files(Vec<StagedFile>),
}

/// What a set of closed files adds up to, for the sink metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FileStats {
    pub files: u64,
    /// Size on storage (compressed).
    pub bytes: u64,
    /// Size before compression (Parquet column chunks' uncompressed size,
    /// NDJSON text); `None` if a data file's footer could not be read.
    pub uncompressed_bytes: Option<u64>,
    pub row_groups: u64,
}

impl Closed {
    /// Counts the files, their bytes and row groups.
    pub fn stats(&self) -> FileStats {
        match self {
            Closed::Table(files, uncompressed_bytes) => FileStats {
                files: files.len() as u64,
                bytes: files.iter().map(|f| f.file_size_in_bytes()).sum(),
                uncompressed_bytes: *uncompressed_bytes,
                row_groups: files
                    .iter()
                    .map(|f| f.split_offsets().map_or(1, |o| o.len()) as u64)
                    .sum(),
            },
            Closed::Files(files) => FileStats {
                files: files.len() as u64,
                bytes: files.iter().map(|f| f.bytes).sum(),
                uncompressed_bytes: Some(files.iter().map(|f| f.uncompressed_bytes).sum()),
                row_groups: files.iter().map(|f| f.row_groups).sum(),
            },
        }
    }
}

impl Sink {
    /// Where the sink writes: `namespace.table`, or the files' location.
    pub fn describe(&self) -> String {
        match self {
            Sink::Table(t) => t.ident().to_string(),
            Sink::Files(f) => f.location().to_string(),
        }
    }

    /// The run of the log its commits come from (see [`crate::Run`]).
    pub fn set_run(&mut self, run: crate::Run) {
        match self {
            Sink::Table(t) => t.set_run(run),
            Sink::Files(f) => f.set_run(run),
        }
    }

    /// Whether the pipeline has a commit with a source in this sink.
    pub async fn has_sourced_commits(&mut self) -> Result<bool> {
        match self {
            Sink::Table(t) => Ok(t.has_sourced_commits()),
            Sink::Files(f) => f.has_sourced_commits().await,
        }
    }

    /// The newest commit in this sink's table from its source log, if
    /// another pipeline made it (file sinks: none are looked for).
    pub fn newest_from_source(&self) -> Option<(String, u64)> {
        match self {
            Sink::Table(t) => t.newest_from_source(),
            Sink::Files(_) => None,
        }
    }

    /// The newest commit of this pipeline the sink holds.
    pub async fn last_committed(&mut self) -> Result<Option<Committed>> {
        match self {
            Sink::Table(t) => t.last_committed().await,
            Sink::Files(f) => Ok(f.last_committed()),
        }
    }

    /// Writes a batch of the pipeline's output.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            Sink::Table(t) => t.write(batch).await,
            Sink::Files(f) => f.write(batch).await,
        }
    }

    /// Closes the open files, ready to commit.
    pub async fn close_files(&mut self) -> Result<Closed> {
        Ok(match self {
            Sink::Table(t) => {
                let files = t.close_files().await?;
                let uncompressed = t.uncompressed_bytes(&files).await;
                Closed::Table(files, uncompressed)
            }
            Sink::Files(f) => Closed::Files(f.close_files().await?),
        })
    }

    /// Drops the open files (a range is read again).
    pub fn abort(&mut self) {
        match self {
            Sink::Table(t) => t.abort(),
            Sink::Files(f) => f.abort(),
        }
    }

    /// Commits `closed` as covering `range`, exactly once; `last_crc`: see
    /// [`crate::Committed::last_crc`].
    ///
    /// # Panics
    /// If `closed` came from the other kind of sink.
    pub async fn commit(
        &mut self,
        range: OffsetRange,
        last_crc: Option<u32>,
        closed: &Closed,
    ) -> Result<CommitOutcome> {
        match (self, closed) {
            (Sink::Table(t), Closed::Table(files, _)) => {
                t.commit_with(range, last_crc, files).await
            }
            (Sink::Files(f), Closed::Files(files)) => f.commit_with(range, last_crc, files).await,
            _ => panic!("files closed by one kind of sink committed to another"),
        }
    }
}
