//! An Iceberg table sink: creates the table from the pipeline's output
//! schema, writes batches into Parquet data files, and commits them through
//! the [`commit`](crate::commit) protocol.
//!
//! Tables are partitioned by `day(__ingest_ts)` unless the sink names other
//! [`PartitionField`]s (identity, year, month, day, hour, bucket, truncate
//! of output columns). Data files are Parquet with zstd (level 1) by
//! default and row groups of at most 128k rows, a layout that keeps
//! DataFusion scans close to DuckDB's speed.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::spec::DataFile;
use iceberg::table::Table;
use iceberg::{Catalog, NamespaceIdent, TableIdent};
use tracing::{info, warn};

mod check;
mod create;
pub mod evolve;
pub mod target_size;
pub(crate) use create::bloom_filter_columns;
mod maintain;
mod partition;
pub mod placed;
mod sort_by;
mod writer;

use maintain::Background;

use create::{adopt_metadata_properties, adopt_target_file_size, check_compatible, table_creation};

pub use partition::{PartitionField, PARTITION_BY_PROPERTY};
pub use sort_by::SortColumn;
pub(crate) use writer::DataWriter;
pub use writer::Layout;

use sort_by::adopt_sort_order;

use crate::commit::{self, CommitOutcome, OffsetRange, RetryPolicy};
use crate::ledger::Ledger;
use crate::maintenance::lock::TableLock;
use crate::maintenance::{metadata_files, SnapshotRetention};
use crate::{Error, Result};

/// How often (in commits) a sink starts maintenance of its table in the
/// background; each start reads the table's manifests to plan.
pub const MAINTAIN_EVERY: usize = 10;

/// How often a sink's background compaction takes every small file by
/// default (see [`WriteOptions::full_compaction_every`]).
pub const FULL_COMPACTION_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// The size data files aim for when neither the sink nor the table says.
pub const DEFAULT_TARGET_FILE_BYTES: usize = 512 << 20;

/// How long a sink's commit waits for a maintenance commit step of the
/// same table at most (see [`crate::maintenance::lock`]).
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How often a sink's background maintenance sweeps orphan files (the
/// first sweep is this long after the sink opened).
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The column every table gets, and is partitioned on by day (the
/// `schemas` crate owns it).
pub use pipe_schemas::INGEST_TS_COLUMN;

pub use crate::codec::Codec;

/// How data files are written.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// The warehouse of a SQL catalog, which puts a new table in its
    /// namespace's folder: the sink then chooses that location itself, or
    /// one of its own beside it when it is another table's (`placed`).
    /// `None`: the catalog chooses (REST).
    pub warehouse: Option<String>,
    pub codec: Codec,
    /// Largest row group, in rows.
    pub row_group_rows: usize,
    /// A data file is closed and another started past this size, and
    /// compaction rewrites small files into files of about it. `Some`:
    /// recorded as the table's `write.target-file-size-bytes` (the
    /// Iceberg property other engines' writers honour too); `None`: that
    /// property if the table has it, else [`DEFAULT_TARGET_FILE_BYTES`].
    pub target_file_bytes: Option<usize>,
    /// Where the sink keeps its write ledger (see [`crate::ledger`]), the
    /// list of data files not yet resolved that lets files a crash left
    /// uncommitted be deleted on the next open. `None`: no ledger, and such
    /// files stay as unreferenced orphans.
    pub ledger_dir: Option<std::path::PathBuf>,
    /// The partition spec of a table this sink creates (an existing table
    /// keeps its own).
    pub partition_by: Vec<PartitionField>,
    /// Expire old snapshots after commits; `None`: keep all history.
    pub retention: Option<SnapshotRetention>,
    /// This process writes the table's metadata files (a SQL catalog), so
    /// it deletes the old ones after its commits
    /// ([`crate::maintenance::metadata_files`]). `false` for a REST
    /// catalog, whose server writes and deletes its own.
    pub owns_metadata_files: bool,
    /// Commits maintenance snapshots (merged manifests) to the table's
    /// catalog; `None`: manifests are never merged.
    pub committer: Option<crate::maintenance::Committer>,
    /// Compact the table's small files in the background (with a
    /// committer; see [`crate::maintenance::compact`]).
    pub compact: bool,
    /// How often the background compaction takes every small file of a
    /// partition, instead of the tiered few (default an hour).
    pub full_compaction_every: std::time::Duration,
    /// Top-level columns that get a Parquet bloom filter in every row group
    /// (see [`BLOOM_FILTER_PROPERTY`]): lookups by one value of such a
    /// column (`id = 'x'`, `id IN (…)`) skip the row groups whose filter
    /// says the value is not there, where min/max statistics of
    /// unsorted ids skip nothing.
    pub bloom_filter_columns: Vec<String>,
    /// The table's sort order, which compaction rewrites files in (see
    /// [`sort_by`]); `None` leaves the table's own order alone.
    pub sort_by: Option<Vec<SortColumn>>,
    /// The identity of the log the committed offsets come from (the
    /// stream's `StreamLog::id`), recorded with each commit: the sink's
    /// position is its pipeline's position in that log. `None` for writers
    /// without a log (batch jobs). See [`crate::commit`].
    pub source: Option<String>,
    /// This run of that log, recorded with each commit so that a copy of
    /// the log appending beside it is caught ([`commit::Run`]).
    pub run: Option<commit::Run>,
    /// Commits without a source in this table no longer count as the
    /// pipeline's (see [`commit::last_committed`]): set when the log is not
    /// the one the pipeline read when they were made (its
    /// `legacy-consumers` do not name the pipeline), and for a pipeline's
    /// failed-rows table once its main sink has a commit with a source,
    /// since failed rows are committed only when some fail.
    pub unsourced_ended: bool,
    /// The definition that makes what this sink commits (a pipeline's SQL,
    /// as a short digest), recorded with each commit (`pipe.definition`):
    /// after a change in place, each range says which definition made it.
    pub definition: Option<String>,
}

/// The Iceberg table property that asks writers for bloom filters on a
/// column (`write.parquet.bloom-filter-enabled.column.<name>` = `true`,
/// as Iceberg's Java writer reads it). A sink records it for its
/// [`WriteOptions::bloom_filter_columns`] when it creates the table, and
/// honours it on tables other writers made.
pub const BLOOM_FILTER_PROPERTY: &str = "write.parquet.bloom-filter-enabled.column.";

/// The false-positive rate of the bloom filters a sink writes: one row
/// group in a hundred that lacks the value is read anyway. With one
/// distinct value per row at most, a 128k-row group's filter is 256 KiB
/// (Parquet's split-block filters round up to a power of two).
pub const BLOOM_FILTER_FPP: f64 = 0.01;

impl WriteOptions {
    /// How this sink lays out data files.
    pub fn layout(&self) -> Layout {
        Layout {
            codec: self.codec,
            row_group_rows: self.row_group_rows,
            target_file_bytes: self.target_file_bytes.unwrap_or(DEFAULT_TARGET_FILE_BYTES),
            bloom_filter_columns: self.bloom_filter_columns.clone(),
        }
    }
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            warehouse: None,
            codec: Codec::Zstd,
            row_group_rows: 128 * 1024,
            target_file_bytes: None,
            ledger_dir: None,
            partition_by: vec![PartitionField::ingest_day()],
            retention: Some(SnapshotRetention::default()),
            owns_metadata_files: true,
            committer: None,
            compact: true,
            full_compaction_every: FULL_COMPACTION_EVERY,
            bloom_filter_columns: Vec::new(),
            sort_by: None,
            source: None,
            run: None,
            definition: None,
            unsourced_ended: false,
        }
    }
}

/// One pipeline's writer into one Iceberg table.
pub struct TableSink {
    catalog: Arc<dyn Catalog>,
    ident: TableIdent,
    pipeline: String,
    sink: String,
    options: WriteOptions,
    retry: RetryPolicy,
    table: Table,
    writer: DataWriter,
    ledger: Option<Arc<Ledger>>,
    /// Takes turns with maintenance commits to the same table.
    lock: Arc<TableLock>,
    /// The lock's generation when this sink last had the table fresh.
    seen_generation: u64,
    /// Maintenance running in the background, if any (aborted when the
    /// sink is dropped).
    maintenance: Option<Background>,
    /// Commits since maintenance was last started.
    commits_since_maintenance: usize,
    /// When orphan files were last swept (or the sink opened).
    last_sweep: std::time::Instant,
    /// When every small file was last compacted (or the sink opened).
    last_full: std::time::Instant,
}

impl std::fmt::Debug for TableSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableSink")
            .field("table", &self.ident)
            .field("pipeline", &self.pipeline)
            .field("pending_rows", &self.writer.pending_rows())
            .finish_non_exhaustive()
    }
}

impl TableSink {
    /// Opens (creating if needed) the table `namespace.name` for rows of
    /// `output` schema, written by `pipeline` through sink `sink`.
    ///
    /// An existing table must have every output column with a type the
    /// output casts to; otherwise this fails before any data flows.
    pub async fn open(
        catalog: Arc<dyn Catalog>,
        namespace: &str,
        name: &str,
        pipeline: &str,
        sink: &str,
        output: &SchemaRef,
        options: WriteOptions,
    ) -> Result<TableSink> {
        let ns = NamespaceIdent::from_strs(namespace.split('.'))
            .map_err(|e| Error::Config(format!("namespace `{namespace}`: {e}")))?;
        let ident = TableIdent::new(ns.clone(), name.to_string());
        // Before anything is created: a bad column must not end up in a new
        // table's properties.
        check::columns_exist(&ident, output, &options)?;
        let catalog_err = |action: String| {
            move |e| Error::Catalog {
                action,
                source: Box::new(e),
            }
        };
        // The namespace and each level above it (`lake` for `lake.sub`), as
        // `mkdir -p` would: a SQL catalog lists `lake` either way, and a
        // namespace listed but not made cannot be listed in turn.
        let levels = ns.as_ref();
        for depth in 1..=levels.len() {
            let level = NamespaceIdent::from_strs(&levels[..depth])
                .map_err(|e| Error::Config(format!("namespace `{namespace}`: {e}")))?;
            let shown = level.join(".");
            if !catalog
                .namespace_exists(&level)
                .await
                .map_err(catalog_err(format!("looking up namespace `{shown}`")))?
            {
                if let Err(e) = catalog.create_namespace(&level, HashMap::new()).await {
                    // Made meanwhile by another process sharing the catalog.
                    if !catalog.namespace_exists(&level).await.unwrap_or(false) {
                        return Err(catalog_err(format!("creating namespace `{shown}`"))(e));
                    }
                }
            }
        }
        let table = if catalog
            .table_exists(&ident)
            .await
            .map_err(catalog_err(format!("looking up table `{ident}`")))?
        {
            catalog
                .load_table(&ident)
                .await
                .map_err(catalog_err(format!("loading table `{ident}`")))?
        } else {
            let mut creation = table_creation(name, output, &options)?;
            // Chosen before the table is made (see `placed`): no moment in
            // which it lies in another table's folder.
            if let Some(warehouse) = &options.warehouse {
                let folder = catalog
                    .get_namespace(&ns)
                    .await
                    .map_err(catalog_err(format!("loading namespace `{namespace}`")))?
                    .properties()
                    .get("location")
                    .map(|l| l.trim_end_matches('/').to_string())
                    .unwrap_or_else(|| {
                        format!("{}/{}", warehouse.trim_end_matches('/'), ns.join("/"))
                    });
                let usual = format!("{folder}/{name}");
                let taken = placed::overlapping(&catalog, &ident, &usual)
                    .await
                    .map_err(catalog_err(format!("listing the tables beside `{ident}`")))?;
                creation.location = Some(match taken {
                    None => usual,
                    Some((other, theirs)) => {
                        let own = placed::suffixed(&usual);
                        warn!(table = %ident, %other, location = %theirs, own = %own, "the usual folder of the new table is another table's: made in a folder of its own");
                        own
                    }
                });
            }
            let table = match catalog.create_table(&ns, creation).await {
                Ok(table) => table,
                // Another process sharing the catalog made it meanwhile.
                Err(e) => match catalog.table_exists(&ident).await {
                    Ok(true) => catalog
                        .load_table(&ident)
                        .await
                        .map_err(catalog_err(format!("loading table `{ident}`")))?,
                    _ => return Err(catalog_err(format!("creating table `{ident}`"))(e)),
                },
            };
            info!(table = %ident, pipeline, location = table.metadata().location(), "created table");
            table
        };
        // Whether the output fits the table as this sink would evolve it,
        // before anything about the table is changed: a refused output
        // leaves the table as it was.
        let loaded = Arc::new(
            schema_to_arrow_schema(table.metadata().current_schema())
                .map_err(catalog_err(format!("reading the schema of `{ident}`")))?,
        );
        let evolution =
            evolve::Evolution::plan(&loaded, output).for_writer(options.committer.as_ref());
        check_compatible(&ident, output, &evolution.applied_to(&loaded))?;
        let table = match options.owns_metadata_files {
            true => adopt_metadata_properties(&catalog, table).await?,
            false => table,
        };
        let table = adopt_sort_order(&catalog, table, options.sort_by.as_deref()).await?;
        let table = adopt_target_file_size(&catalog, table, options.target_file_bytes).await?;
        let table = evolve::evolve(&catalog, options.committer.as_ref(), table, output).await?;
        let table = partition::respec(
            &catalog,
            options.committer.as_ref(),
            table,
            &options.partition_by,
        )
        .await?;
        let arrow_schema = Arc::new(
            schema_to_arrow_schema(table.metadata().current_schema())
                .map_err(catalog_err(format!("reading the schema of `{ident}`")))?,
        );
        check_compatible(&ident, output, &arrow_schema)?;
        let mut options = options;
        options.bloom_filter_columns = bloom_filter_columns(&table, &options.bloom_filter_columns);
        options.target_file_bytes = target_size::table_target_file_bytes(&table)?
            .map(|n| n as usize)
            .or(options.target_file_bytes);
        let (ledger, leftover) = match &options.ledger_dir {
            Some(dir) => {
                let path = dir.join(format!("{pipeline}@{ident}.ledger"));
                let (ledger, entries) = Ledger::open(&path).map_err(|e| {
                    Error::Config(format!("opening the write ledger {}: {e}", path.display()))
                })?;
                (Some(Arc::new(ledger)), Some(entries))
            }
            None => (None, None),
        };
        let writer = DataWriter::new(&table, options.layout(), pipeline, ledger.clone())?;
        let lock = TableLock::of(&table);
        let seen_generation = lock.generation();
        let mut sink = TableSink {
            writer,
            catalog,
            ident,
            pipeline: pipeline.to_string(),
            sink: sink.to_string(),
            options,
            retry: RetryPolicy::default(),

            table,
            ledger,
            lock,
            seen_generation,
            maintenance: None,
            commits_since_maintenance: 0,
            last_sweep: std::time::Instant::now(),
            last_full: std::time::Instant::now(),
        };
        if let Some(entries) = leftover {
            sink.sweep(entries).await?;
        }
        Ok(sink)
    }

    /// Resolves a ledger left by an earlier run (see [`crate::ledger`]):
    /// keeps the files of a commit the table holds, deletes every other
    /// listed file.
    async fn sweep(&mut self, entries: crate::ledger::Entries) -> Result<()> {
        if entries.files.is_empty() {
            return Ok(());
        }
        let landed = match &entries.commit {
            // Any source: the ledger may be one a run reading another log
            // left (the pipeline's FROM changed, its buffer was made
            // again). Keeping files of a commit that did not land leaves
            // orphans; deleting those of one that did loses rows.
            Some(c) => commit::committed_from_any_source(&self.table, &self.pipeline, c.last),
            None => false,
        };
        let keep: std::collections::HashSet<&str> = match (&entries.commit, landed) {
            (Some(c), true) => c.files.iter().map(String::as_str).collect(),
            _ => Default::default(),
        };
        let orphans: Vec<&str> = entries
            .files
            .iter()
            .map(String::as_str)
            .filter(|f| !keep.contains(f))
            .collect();
        let deleted = self.delete_and_forget(&orphans).await?;
        if deleted > 0 {
            info!(table = %self.ident, pipeline = %self.pipeline, deleted, "deleted data files an earlier run wrote and never committed");
        }
        Ok(())
    }

    /// Deletes `files` (none of which the table references) and rewrites the
    /// ledger with those that could not be deleted. Returns how many were.
    async fn delete_and_forget(&mut self, files: &[&str]) -> Result<usize> {
        let mut left = Vec::new();
        for f in files {
            if let Err(e) = self.table.file_io().delete(f).await {
                tracing::warn!(table = %self.ident, file = f, error = %e, "could not delete an uncommitted data file; trying again after the next commit");
                left.push(f.to_string());
            }
        }
        if let Some(ledger) = &self.ledger {
            ledger.reset(&left).map_err(|e| self.ledger_error(e))?;
        }
        Ok(files.len() - left.len())
    }

    fn ledger_error(&self, e: std::io::Error) -> Error {
        Error::Catalog {
            action: format!("writing the write ledger of `{}`", self.ident),
            source: Box::new(iceberg::Error::new(
                iceberg::ErrorKind::Unexpected,
                e.to_string(),
            )),
        }
    }

    /// The run of the log this sink's commits come from, recorded with
    /// each of them (see [`commit::Run`]). A commit it refuses as a fork
    /// leaves its files for the next open's sweep (deleting them here
    /// could take files of an attempt that did land).
    pub fn set_run(&mut self, run: commit::Run) {
        self.options.run = Some(run);
    }

    /// The table this sink writes.
    pub fn ident(&self) -> &TableIdent {
        &self.ident
    }

    /// The newest commit of this pipeline from its source found in the table.
    pub async fn last_committed(&mut self) -> Result<Option<commit::Committed>> {
        self.refresh().await?;
        commit::last_committed(
            &self.table,
            &self.pipeline,
            self.options.source.as_deref(),
            self.options.unsourced_ended,
        )
    }

    /// The newest commit in this table from the sink's source log, if
    /// another pipeline made it (see [`commit::newest_from_source`]): it
    /// was renamed to this one, or this one replaces it.
    pub fn newest_from_source(&self) -> Option<(String, u64)> {
        let source = self.options.source.as_deref()?;
        commit::newest_from_source(&self.table, source).filter(|(p, _)| *p != self.pipeline)
    }

    /// Whether the pipeline has a commit with a source in this table.
    pub fn has_sourced_commits(&self) -> bool {
        commit::has_sourced_commits(&self.table, &self.pipeline)
    }

    /// Rows written since the last commit.
    pub fn pending_rows(&self) -> usize {
        self.writer.pending_rows()
    }

    /// Writes a batch of the pipeline's output into the open data files.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch).await
    }

    /// Closes the open data files and returns them, ready to commit.
    pub async fn close_files(&mut self) -> Result<Vec<DataFile>> {
        let files = self.writer.close().await?;
        if let Some(e) = self.ledger.as_ref().and_then(|l| l.take_error()) {
            // A created file may be missing from the ledger: fail this
            // attempt (its range is read again) rather than risk an orphan
            // nobody can find. Retrying the ledger write is cheap.
            return Err(self.ledger_error(e));
        }
        Ok(files)
    }

    /// The data files' size before compression (see
    /// [`crate::storage::size_before_compression`]), read from their Parquet
    /// footers; Iceberg metadata keeps compressed sizes only. `None` if a footer could not
    /// be read (the figure is a metric, never a reason to fail a roll).
    pub async fn uncompressed_bytes(&mut self, files: &[DataFile]) -> Option<u64> {
        use parquet::arrow::async_reader::AsyncFileReader;
        let mut total = 0;
        for f in files {
            let read = async {
                let input = self.table.file_io().new_input(f.file_path())?;
                let mut reader = iceberg::arrow::ArrowFileReader::new(
                    iceberg::io::FileMetadata {
                        size: f.file_size_in_bytes(),
                    },
                    input.reader().await?,
                );
                reader
                    .get_metadata(None)
                    .await
                    .map_err(|e| iceberg::Error::new(iceberg::ErrorKind::Unexpected, e.to_string()))
            };
            match read.await {
                Ok(meta) => {
                    total += crate::storage::size_before_compression(&meta, f.file_size_in_bytes())
                }
                Err(e) => {
                    tracing::warn!(file = f.file_path(), error = %e, "could not read a data file's footer for the uncompressed-bytes metric");
                    return None;
                }
            }
        }
        Some(total)
    }

    /// Drops the open data files without committing them, e.g. to re-read a
    /// range after a failure. With a ledger they are deleted after the next
    /// commit (or on the next open); without one they stay as orphans.
    pub fn abort(&mut self) {
        self.writer.abort();
    }

    /// Commits `files` as covering buffer offsets `range`, exactly once.
    ///
    /// Then deletes the data files this sink wrote that the table will never
    /// reference: those of aborted attempts and, when the range turns out to
    /// be committed already ([`CommitOutcome::AlreadyCommitted`]), `files`
    /// themselves.
    pub async fn commit(
        &mut self,
        range: OffsetRange,
        files: &[DataFile],
    ) -> Result<CommitOutcome> {
        self.commit_with(range, None, files).await
    }

    /// [`TableSink::commit`], recording the CRC of the range's last record
    /// (see [`commit::Committed::last_crc`]).
    pub async fn commit_with(
        &mut self,
        range: OffsetRange,
        last_crc: Option<u32>,
        files: &[DataFile],
    ) -> Result<CommitOutcome> {
        let paths: Vec<String> = files.iter().map(|f| f.file_path().to_string()).collect();
        if let Some(ledger) = &self.ledger {
            ledger
                .record_commit(range, &paths)
                .map_err(|e| self.ledger_error(e))?;
        }
        // One commit to this table at a time in this process; a
        // compaction committed since our last commit means our copy of the
        // table is stale: reload rather than lose a round to the fence.
        // The lock only saves lost rounds (the fence and the catalog's
        // compare-and-swap keep commits right without it), so a
        // maintenance step that holds it too long (slow storage) is not
        // waited for past `LOCK_WAIT`.
        let lock = self.lock.clone();
        let guard = match tokio::time::timeout(LOCK_WAIT, lock.lock()).await {
            Ok(guard) => Some(guard),
            Err(_) => {
                tracing::warn!(table = %self.ident, pipeline = %self.pipeline, waited_secs = LOCK_WAIT.as_secs(), "table maintenance holds the table's commit step; committing beside it");
                None
            }
        };
        if lock.generation() != self.seen_generation {
            self.refresh().await?;
            self.seen_generation = lock.generation();
        }
        let committed = commit::commit_range(
            &self.catalog,
            &self.table,
            &commit::Origin {
                pipeline: &self.pipeline,
                sink: &self.sink,
                source: self.options.source.as_deref(),
                run: self.options.run.as_ref(),
                unsourced_ended: self.options.unsourced_ended,
                definition: self.options.definition.as_deref(),
            },
            range,
            last_crc,
            files,
            &self.retry,
        )
        .await;
        let (outcome, table) = match committed {
            Ok(done) => done,
            Err(e) => return Err(self.respecced(e).await),
        };
        let before = std::mem::replace(&mut self.table, table);
        if matches!(outcome, CommitOutcome::Committed { .. }) {
            if self.options.owns_metadata_files {
                metadata_files::delete_dropped(&before, &self.table).await;
            }
            self.expire_snapshots().await;
        }
        drop(guard);
        if matches!(outcome, CommitOutcome::Committed { .. }) {
            self.maintain_in_background();
        }
        let referenced: std::collections::HashSet<&str> = match &outcome {
            CommitOutcome::Committed { .. } => paths.iter().map(String::as_str).collect(),
            CommitOutcome::AlreadyCommitted => Default::default(),
        };
        let unreferenced: Vec<String> = match &self.ledger {
            Some(ledger) => ledger
                .files()
                .into_iter()
                .filter(|f| !referenced.contains(f.as_str()))
                .collect(),
            None if outcome == CommitOutcome::AlreadyCommitted => paths.clone(),
            None => Vec::new(),
        };
        let unreferenced: Vec<&str> = unreferenced.iter().map(String::as_str).collect();
        let deleted = self.delete_and_forget(&unreferenced).await?;
        if deleted > 0 {
            info!(table = %self.ident, pipeline = %self.pipeline, deleted, "deleted data files the table will not reference");
        }
        Ok(outcome)
    }

    /// `e`, a commit's error, or [`Error::Respec`] when the table's
    /// partition spec is no longer the one the files were written with
    /// (another writer evolved it; iceberg refuses such files as invalid
    /// data): the writer is made anew for the table's spec.
    async fn respecced(&mut self, e: Error) -> Error {
        let invalid = matches!(&e, Error::Catalog { source, .. } if source.kind() == iceberg::ErrorKind::DataInvalid);
        if !invalid || self.refresh().await.is_err() {
            return e;
        }
        let (now, was) = (
            self.table.metadata().default_partition_spec_id(),
            self.writer.spec_id(),
        );
        if now == was {
            return e;
        }
        match DataWriter::new(
            &self.table,
            self.options.layout(),
            &self.pipeline,
            self.ledger.clone(),
        ) {
            Ok(writer) => {
                self.writer = writer;
                Error::Respec(format!(
                    "the partition spec of `{}` is now spec {now} (another writer changed it) where these files were written under spec {was}: the range is written again under it",
                    self.ident,
                ))
            }
            Err(made) => made,
        }
    }

    async fn refresh(&mut self) -> Result<()> {
        self.table = self
            .catalog
            .load_table(&self.ident)
            .await
            .map_err(|e| Error::Catalog {
                action: format!("loading table `{}`", self.ident),
                source: Box::new(e),
            })?;
        Ok(())
    }
}
