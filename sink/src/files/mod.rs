//! Plain file sinks: Parquet or NDJSON (optionally gzip) files under a path
//! on a local folder or an S3-compatible bucket, time-partitioned by a path
//! template, with the same exactly-once promise as the Iceberg sink.
//!
//! There is no catalog to make a set of files appear at once, so what a
//! reader sees *is* what exists under the sink's path. Files are therefore
//! written out of sight first and only moved into place by a commit that is
//! already durable:
//!
//! ```text
//! <path>/year=2026/month=11/day=23/<pipeline>-<source>-<first>-<last>-0000.parquet
//!                                                     published: committed rows
//! <path>/_pipe/<pipeline>@<source>/staging/<uuid>.parquet.inprogress
//!                                                     written, not committed
//! <path>/_pipe/<pipeline>@<source>/commits/<last>.commit
//!                                                     commit records (JSON)
//!
//!  write rows ──► staging files ──close──► commit record ──publish──► final names
//!                 (invisible to            (conditional PUT:          (copy or rename,
//!                  *.parquet globs)          the commit point)         then delete staging)
//! ```
//!
//! - **Commit point.** A commit writes one record, `commits/<last>.commit`
//!   (`<last>` zero-padded, so names sort by offset), naming the offset
//!   range and, for each staging file, its final name. It is written with
//!   "create only if absent" (`If-None-Match: *` on S3), so a record is
//!   never replaced. Final names are
//!   `<partition>/<pipeline>-<source>-<first>-<last>-<n>.<ext>`,
//!   deterministic per commit and unique to the pipeline and the log its
//!   offsets come from (`<source>`, see [`crate::commit`]), so pipelines
//!   sharing a folder, or one pipeline run by two processes, never write
//!   the same name; a publish that would replace a file refuses instead.
//!   (Records and staging files of sinks written before sources were
//!   recorded live under `_pipe/<pipeline>/` and are recovered from there.)
//! - **Publish.** Each staging file is copied (S3) or renamed (local
//!   folder) to its final name, then the staging file is deleted. Copying
//!   the same staging file to the same name again writes the same bytes,
//!   so a publish cut short by a crash is finished on restart and nothing
//!   is duplicated: a final name only ever receives one staging file.
//! - **Recovery** (on open): the newest record is the pipeline's last
//!   commit; its publish is finished (staging files still there are moved,
//!   the others must already be published), then every remaining staging
//!   file, which no record names, is deleted. The pipeline resumes after
//!   the record's last offset.
//! - **Unknown outcomes.** If the record's conditional write fails because
//!   a record with that name exists, the record is read back: the same
//!   staging files mean it is ours (a retry after a lost answer) and the
//!   publish goes on; anything else means the range was committed by
//!   another attempt ([`CommitOutcome::AlreadyCommitted`]) and this
//!   attempt's staging files are deleted.
//!
//! Readers should read `<path>/**/*.parquet` (or `*.json`, `*.json.gz`):
//! staging files end in `.inprogress` and records in `.commit`. A reader
//! listing while a commit is being published may see part of it; a plain
//! folder has no atomic multi-file swap (use the Iceberg sink for that).

use std::collections::BTreeMap;

use arrow::array::{Array, TimestampMicrosecondArray};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::codec::Codec;
use crate::commit::{CommitOutcome, Committed, OffsetRange, Run};
use crate::storage::operator;
use crate::{Error, Result, S3Options};
use pipe_schemas::INGEST_TS_COLUMN;

mod part;
mod store;

use part::*;
use store::*;

/// The default path template: one folder per UTC day of `__ingest_ts`.
pub const DEFAULT_PARTITIONING: &str = "year=%Y/month=%m/day=%d";

/// How a file sink encodes rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Parquet with the given codec and largest row group (rows).
    Parquet { codec: Codec, row_group_rows: usize },
    /// Newline-delimited JSON, gzip-compressed when `gzip`.
    Json { gzip: bool },
}

impl FileFormat {
    /// The extension of published files.
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Parquet { .. } => "parquet",
            FileFormat::Json { gzip: false } => "json",
            FileFormat::Json { gzip: true } => "json.gz",
        }
    }
}

/// Where and how a file sink writes.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSinkSettings {
    /// `file:///absolute/folder` or `s3://bucket/prefix`.
    pub location: String,
    /// Connection settings for `s3://` locations.
    pub s3: S3Options,
    pub format: FileFormat,
    /// `strftime` template of the folder, applied to each row's
    /// `__ingest_ts` in UTC; empty: no folders.
    pub partitioning: String,
}

/// A closed staging file, waiting for its commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedFile {
    /// Path of the staging file, relative to the sink's location.
    pub staging: String,
    /// The partition folder it belongs in (the template applied).
    pub partition: String,
    pub rows: u64,
    /// Size on storage.
    pub bytes: u64,
    /// Size before compression (Parquet: the column chunks' uncompressed
    /// size; JSON: the NDJSON text).
    pub uncompressed_bytes: u64,
    /// Parquet row groups (1 for JSON).
    pub row_groups: u64,
}

/// One commit record, `commits/<last>.commit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    pipeline: String,
    /// The log the offsets come from (absent in records of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    /// The run of the log that appended the offsets ([`Run`]; absent in
    /// records of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run: Option<String>,
    first: u64,
    last: u64,
    /// See [`Committed::last_crc`] (absent in records of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_crc: Option<u32>,
    /// (staging file, final path), both relative to the sink's location.
    files: Vec<(String, String)>,
}

/// One pipeline's writer of plain files under one path.
pub struct FileSink {
    store: Store,
    format: FileFormat,
    partitioning: String,
    pipeline: String,
    /// The log the offsets come from; see [`crate::commit`].
    source: Option<String>,
    /// Records without a source (older versions) are not this log's, even
    /// before a commit with one lands: the pipeline read another log when
    /// they were made (see [`crate::WriteOptions::unsourced_ended`]).
    unsourced_ended: bool,
    /// This run of that log; see [`Run`].
    run: Option<Run>,
    schema: SchemaRef,
    open: BTreeMap<String, PartWriter>,
    pending_rows: usize,
    last: Option<Committed>,
    /// Commits since old commit records were last pruned.
    unpruned: usize,
    /// Staging files of attempts dropped by [`FileSink::abort`], deleted
    /// after the next commit.
    dropped: Vec<String>,
}

impl std::fmt::Debug for FileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("location", &self.store.location)
            .field("pipeline", &self.pipeline)
            .field("pending_rows", &self.pending_rows)
            .finish_non_exhaustive()
    }
}

fn store_err(action: impl Into<String>) -> impl FnOnce(opendal::Error) -> Error {
    let action = action.into();
    move |e| Error::Store {
        action,
        source: Box::new(e),
    }
}

impl FileSink {
    /// Opens the sink for rows of `output` written by `pipeline` from the
    /// log `source` (see [`crate::commit`]; `None` for writers without
    /// one), finishing whatever an earlier run left (see the module docs).
    /// `unsourced_ended`: records without a source are not this log's.
    pub async fn open(
        settings: &FileSinkSettings,
        pipeline: &str,
        source: Option<&str>,
        unsourced_ended: bool,
        output: &SchemaRef,
    ) -> Result<FileSink> {
        if !settings.partitioning.is_empty() && output.field_with_name(INGEST_TS_COLUMN).is_err() {
            return Err(Error::Schema(format!(
                "the pipeline output has no `{INGEST_TS_COLUMN}` column to partition files by"
            )));
        }
        check_template(&settings.partitioning)?;
        let op = operator(&settings.location, &settings.s3)?;
        let mut sink = FileSink {
            store: Store {
                op,
                location: settings.location.trim_end_matches('/').to_string(),
            },
            format: settings.format,
            partitioning: settings.partitioning.trim_matches('/').to_string(),
            pipeline: pipeline.to_string(),
            source: source.map(str::to_string),
            unsourced_ended,
            run: None,
            schema: output.clone(),
            open: BTreeMap::new(),
            pending_rows: 0,
            last: None,
            unpruned: 0,
            dropped: Vec::new(),
        };
        sink.recover().await?;
        Ok(sink)
    }

    /// The run of the log this sink's commits come from, recorded with
    /// each of them (see [`Run`]).
    pub fn set_run(&mut self, run: Run) {
        self.run = Some(run);
    }

    /// Where the files go.
    pub fn location(&self) -> &str {
        &self.store.location
    }

    /// Whether the pipeline has a commit with a source under this path.
    pub async fn has_sourced_commits(&mut self) -> Result<bool> {
        self.store.has_sourced_commits(&self.pipeline).await
    }

    /// The pipeline's last commit under this path.
    pub fn last_committed(&self) -> Option<Committed> {
        self.last.clone()
    }

    /// Rows written since the last commit.
    pub fn pending_rows(&self) -> usize {
        self.pending_rows
    }

    fn dir(&self, what: &str) -> String {
        match &self.source {
            Some(source) => format!("_pipe/{}@{source}/{what}/", self.pipeline),
            None => self.legacy_dir(what),
        }
    }

    /// Where records and staging files lived before sources were recorded.
    fn legacy_dir(&self, what: &str) -> String {
        format!("_pipe/{}/{what}/", self.pipeline)
    }

    /// Finishes the newest commit's publish and deletes every other
    /// staging file.
    async fn recover(&mut self) -> Result<()> {
        let mut dirs = vec![self.dir("commits")];
        if self.source.is_some()
            && !self.unsourced_ended
            && !self.store.has_sourced_commits(&self.pipeline).await?
        {
            // A sink written by an older version: its records count as
            // ours until a commit with a source lands (then they belong to
            // the log that went on from them, as in `crate::commit`).
            dirs.push(self.legacy_dir("commits"));
        }
        for commits in &dirs {
            let names = self.store.list(commits, ".commit").await?;
            // A record is written whole or not at all (a PUT; on a folder a
            // create of a small file), but a record we cannot read must not
            // be taken as nothing: that would replay its range.
            let Some(newest) = names.last() else {
                continue;
            };
            let record = self.store.read_record(newest).await?.ok_or_else(|| {
                Error::Corrupt(format!(
                    "commit record {}/{newest} has vanished while being read",
                    self.store.location
                ))
            })?;
            self.store.publish(&record, false).await?;
            self.last = Some(committed(&record));
            break;
        }
        let mut leftovers = self.store.list(&self.dir("staging"), ".inprogress").await?;
        leftovers.extend(self.store.list(&self.dir("commits"), TEMP_SUFFIX).await?);
        if self.source.is_some() && self.last.as_ref().is_some_and(|c| c.source.is_none()) {
            leftovers.extend(
                self.store
                    .list(&self.legacy_dir("staging"), ".inprogress")
                    .await?,
            );
        }
        for path in &leftovers {
            self.store.delete(path).await?;
        }
        if !leftovers.is_empty() {
            info!(location = %self.store.location, pipeline = %self.pipeline, deleted = leftovers.len(), "deleted staging files an earlier run wrote and never committed");
        }
        Ok(())
    }

    /// Writes a batch of the pipeline's output into the open staging files.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = conform(batch, &self.schema)?;
        for (partition, part) in self.split(&batch)? {
            if !self.open.contains_key(&partition) {
                let writer = PartWriter::create(
                    &self.store.op,
                    &self.dir("staging"),
                    &self.schema,
                    self.format,
                )
                .await?;
                self.open.insert(partition.clone(), writer);
            }
            let writer = self.open.get_mut(&partition).expect("inserted above");
            writer.write(&part).await?;
        }
        self.pending_rows += batch.num_rows();
        Ok(())
    }

    /// Splits a batch by partition folder.
    fn split(&self, batch: &RecordBatch) -> Result<Vec<(String, RecordBatch)>> {
        if self.partitioning.is_empty() {
            return Ok(vec![(String::new(), batch.clone())]);
        }
        let ts = batch
            .column_by_name(INGEST_TS_COLUMN)
            .expect("checked at open");
        let ts = cast(ts, &DataType::Timestamp(TimeUnit::Microsecond, None))
            .map_err(|e| Error::Schema(format!("reading `{INGEST_TS_COLUMN}`: {e}")))?;
        let ts = ts
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .expect("cast to microseconds");
        // Consecutive rows usually share a timestamp (one request): format
        // each distinct value once.
        let mut folders: Vec<String> = Vec::with_capacity(ts.len());
        let mut last: Option<(i64, usize)> = None;
        for i in 0..ts.len() {
            let micros = if ts.is_null(i) { 0 } else { ts.value(i) };
            match last {
                Some((m, at)) if m == micros => folders.push(folders[at].clone()),
                _ => {
                    let time = DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or_default();
                    folders.push(time.format(&self.partitioning).to_string());
                    last = Some((micros, i));
                }
            }
        }
        let mut distinct: Vec<&String> = folders.iter().collect();
        distinct.sort();
        distinct.dedup();
        if distinct.len() == 1 {
            return Ok(vec![(distinct[0].clone(), batch.clone())]);
        }
        distinct
            .into_iter()
            .map(|folder| {
                let mask: arrow::array::BooleanArray =
                    folders.iter().map(|f| Some(f == folder)).collect();
                filter_record_batch(batch, &mask)
                    .map(|b| (folder.clone(), b))
                    .map_err(|e| Error::Schema(format!("partitioning rows: {e}")))
            })
            .collect()
    }

    /// Closes the open staging files and returns them, ready to commit.
    pub async fn close_files(&mut self) -> Result<Vec<StagedFile>> {
        let mut files = Vec::new();
        for (partition, writer) in std::mem::take(&mut self.open) {
            files.push(writer.close(partition).await?);
        }
        self.pending_rows = 0;
        Ok(files)
    }

    /// Drops the open staging files; they are deleted after the next
    /// commit (or on the next open).
    pub fn abort(&mut self) {
        let open = std::mem::take(&mut self.open);
        self.dropped.extend(open.into_values().map(|w| w.staging));
        self.pending_rows = 0;
    }

    /// Commits `files` as covering buffer offsets `range`, exactly once.
    pub async fn commit(
        &mut self,
        range: OffsetRange,
        files: &[StagedFile],
    ) -> Result<CommitOutcome> {
        self.commit_with(range, None, files).await
    }

    /// [`FileSink::commit`], recording the CRC of the range's last record
    /// (see [`Committed::last_crc`]).
    pub async fn commit_with(
        &mut self,
        range: OffsetRange,
        last_crc: Option<u32>,
        files: &[StagedFile],
    ) -> Result<CommitOutcome> {
        // Another process appending to a copy of this log commits into the
        // same folder under other names: its newest record is read before
        // each commit (a list and a read), not only the one at our name.
        if self.run.is_some() {
            let dir = self.dir("commits");
            if let Some(newest) = self.store.list(&dir, ".commit").await?.last() {
                if let Some(record) = self.store.read_record(newest).await? {
                    if let Some(forked) = self.forked_by(&committed(&record)) {
                        self.store.delete_staged(files).await?;
                        return Err(forked);
                    }
                }
            }
        }
        if let Some(last) = &self.last {
            if let Some(forked) = self.forked_by(last) {
                return Err(forked);
            }
            if last.range.last >= range.last {
                self.store.delete_staged(files).await?;
                return Ok(CommitOutcome::AlreadyCommitted);
            }
            if last.range.last >= range.first {
                return Err(Error::Corrupt(format!(
                    "pipeline `{}` is committing offsets {}..={} but {} already holds {}..={}: overlapping ranges",
                    self.pipeline, range.first, range.last, self.store.location, last.range.first, last.range.last
                )));
            }
        }
        let mut sorted: Vec<&StagedFile> = files.iter().collect();
        sorted.sort_by(|a, b| (&a.partition, &a.staging).cmp(&(&b.partition, &b.staging)));
        let ext = self.format.extension();
        let writer = match &self.source {
            Some(source) => format!("{}-{source}", self.pipeline),
            None => self.pipeline.clone(),
        };
        let record = Record {
            pipeline: self.pipeline.clone(),
            source: self.source.clone(),
            run: self.run.as_ref().map(|r| r.id.clone()),
            first: range.first,
            last: range.last,
            last_crc,
            files: sorted
                .iter()
                .enumerate()
                .map(|(n, f)| {
                    let name = format!(
                        "{writer}-{:020}-{:020}-{n:04}.{ext}",
                        range.first, range.last
                    );
                    let target = if f.partition.is_empty() {
                        name
                    } else {
                        format!("{}/{name}", f.partition)
                    };
                    (f.staging.clone(), target)
                })
                .collect(),
        };
        let path = format!("{}{:020}.commit", self.dir("commits"), range.last);
        let body = serde_json::to_vec(&record).expect("a record serializes");
        match self.store.create(&path, body).await {
            Ok(true) => {}
            Ok(false) => {
                // Written before: by this attempt (its answer was lost) or
                // by another one that committed the same range.
                let existing = self.store.read_record(&path).await?;
                if let Some(forked) = existing
                    .as_ref()
                    .and_then(|e| self.forked_by(&committed(e)))
                {
                    self.store.delete_staged(files).await?;
                    return Err(forked);
                }
                if existing.as_ref() != Some(&record) {
                    warn!(pipeline = %self.pipeline, location = %self.store.location, first = range.first, last = range.last, "range already committed; dropping this attempt's files");
                    self.store.delete_staged(files).await?;
                    return Ok(CommitOutcome::AlreadyCommitted);
                }
            }
            Err(e) => return Err(store_err(format!("writing commit record {path}"))(e)),
        }
        crate::crash::point(crate::crash::AFTER_COMMIT);
        self.store.publish(&record, true).await?;
        self.last = Some(committed(&record));
        for staging in std::mem::take(&mut self.dropped) {
            if let Err(e) = self.store.delete(&staging).await {
                warn!(location = %self.store.location, staging, error = %e, "could not delete a dropped staging file; the next open will");
            }
        }
        info!(pipeline = %self.pipeline, location = %self.store.location, first = range.first, last = range.last, files = files.len(), "committed files");
        // Listing the records costs a request: prune once every KEEP commits.
        self.unpruned += 1;
        if self.unpruned >= KEEP_RECORDS {
            self.unpruned = 0;
            self.store.prune_records(&self.dir("commits"), &path).await;
        }
        Ok(CommitOutcome::Committed { snapshot_id: None })
    }
}

impl FileSink {
    /// The error when `theirs` was committed by another process appending
    /// to this log (see [`Run`]).
    fn forked_by(&self, theirs: &Committed) -> Option<Error> {
        let what = format!("file sink `{}`", self.store.location);
        self.run.as_ref()?.forked_by(theirs, &what)
    }
}

fn committed(record: &Record) -> Committed {
    Committed {
        commit_id: match &record.source {
            Some(source) => format!(
                "{}/{source}/{}-{}",
                record.pipeline, record.first, record.last
            ),
            None => format!("{}/{}-{}", record.pipeline, record.first, record.last),
        },
        range: OffsetRange {
            first: record.first,
            last: record.last,
        },
        snapshot_id: None,
        source: record.source.clone(),
        run: record.run.clone(),
        last_crc: record.last_crc,
    }
}

/// A `strftime` template must format without error and name folders only.
fn check_template(template: &str) -> Result<()> {
    use chrono::format::{Item, StrftimeItems};
    if StrftimeItems::new(template).any(|i| matches!(i, Item::Error)) {
        return Err(Error::Config(format!(
            "partitioning `{template}` is not a valid strftime template"
        )));
    }
    if template.split('/').any(|part| part == ".." || part == ".") {
        return Err(Error::Config(format!(
            "partitioning `{template}` must not contain `.` or `..` folders"
        )));
    }
    Ok(())
}

/// Suffix of the temporary files [`create_whole`] links from; left by a
/// crash, they are deleted when the sink opens.
const TEMP_SUFFIX: &str = ".tmp";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_checked() {
        assert!(check_template(DEFAULT_PARTITIONING).is_ok());
        assert!(check_template("dt=%Y-%m-%d/hr=%H").is_ok());
        assert!(check_template("").is_ok());
        assert!(check_template("%Q").is_err());
        assert!(check_template("../%Y").is_err());
    }
}
