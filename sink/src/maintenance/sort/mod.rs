//! Sorting rows while compacting, by the table's default sort order
//! (what a sink's `sort_by` sets, or another engine's `WRITE ORDERED BY`),
//! so that a file's row groups, and the files of one rewrite, hold
//! narrow ranges of the sort columns and lookups by them skip the rest.
//!
//! Compaction sorts one bin at a time (up to the target file size of
//! Parquet, many times that in Arrow), so the sort is external: rows
//! gather up to [`SORT_MEMORY_BYTES`], are sorted and spilled as a run
//! (an Arrow IPC file, LZ4) into a temporary folder, and the runs are
//! merged back, at most [`FAN_IN`] at a time (more are first merged in
//! groups into longer runs). Runs are written in batches of about a
//! `FAN_IN`th of the budget, so a merge holds about the budget whatever
//! the width of the rows. The folder is removed when the sort ends,
//! whatever the outcome; it is made under the folder [`spill_in`] set
//! (`pipe serve`: `<data_dir>/tmp/sort`, emptied at start, so a killed
//! server leaves nothing behind for long), else under the system's
//! temporary folder (`TMPDIR`).
//!
//! Sort fields are top-level columns with any Iceberg transform
//! (`identity`, `bucket`, `truncate`, `day`, …), ascending or descending,
//! nulls first or last, as Iceberg defines them. A sort order naming a
//! nested field is not applied (the rewrite goes on unsorted, logged).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::compute::{
    concat, interleave_record_batch, lexsort_to_indices, SortColumn, SortOptions,
};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow::ipc::CompressionType;
use arrow::record_batch::RecordBatch;
use arrow::row::{OwnedRow, RowConverter, Rows, SortField as RowField};
use iceberg::spec::{DataFile, DataFileBuilder, NullOrder, SortDirection, SortOrder};
use iceberg::table::Table;
use iceberg::transform::{create_transform_function, BoxedTransformFunction};
use tracing::warn;

use crate::{Error, Result};

/// Rows held in memory before a sorted run is spilled.
pub const SORT_MEMORY_BYTES: usize = 128 << 20;

/// Rows per batch the sort hands on (and spills).
const BATCH_ROWS: usize = 8192;

/// The columns rows are ordered by, computed from a batch (shared by the
/// sorts of one compaction).
#[derive(Clone)]
pub(crate) struct SortKey {
    columns: Arc<[KeyColumn]>,
    /// The table's sort order id, recorded on the files written in it.
    order_id: i64,
}

struct KeyColumn {
    name: String,
    transform: BoxedTransformFunction,
    options: SortOptions,
}

impl SortKey {
    /// The key of `table`'s default sort order; `None` if the table is
    /// unsorted or its order names what this cannot sort by.
    pub fn of(table: &Table) -> Option<SortKey> {
        let metadata = table.metadata();
        SortKey::from_order(metadata.default_sort_order(), metadata.current_schema())
            .unwrap_or_else(|why| {
                warn!(table = %table.identifier(), "files are compacted unsorted: {why}");
                None
            })
    }

    fn from_order(
        order: &SortOrder,
        schema: &iceberg::spec::Schema,
    ) -> std::result::Result<Option<SortKey>, String> {
        if order.is_unsorted() {
            return Ok(None);
        }
        let mut columns = Vec::new();
        for field in &order.fields {
            let top = schema
                .as_struct()
                .fields()
                .iter()
                .find(|f| f.id == field.source_id)
                .ok_or_else(|| {
                    format!(
                        "sort order {} names field id {}, not a top-level column",
                        order.order_id, field.source_id
                    )
                })?;
            let transform = create_transform_function(&field.transform)
                .map_err(|e| format!("sort field `{}`: {e}", top.name))?;
            columns.push(KeyColumn {
                name: top.name.clone(),
                transform,
                options: SortOptions {
                    descending: field.direction == SortDirection::Descending,
                    nulls_first: field.null_order == NullOrder::First,
                },
            });
        }
        Ok(Some(SortKey {
            columns: columns.into(),
            order_id: order.order_id,
        }))
    }

    /// The id of the sort order files written by it are in.
    pub fn order_id(&self) -> i32 {
        self.order_id as i32
    }

    /// The key columns of `batch`, transformed.
    fn keys(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        self.columns
            .iter()
            .map(|c| {
                let column = batch.column_by_name(&c.name).ok_or_else(|| {
                    Error::Corrupt(format!("rows to sort have no sort column `{}`", c.name))
                })?;
                c.transform
                    .transform(column.clone())
                    .map_err(|e| Error::Corrupt(format!("sort column `{}`: {e}", c.name)))
            })
            .collect()
    }

    fn row_converter(&self, keys: &[ArrayRef]) -> Result<RowConverter> {
        let fields = keys
            .iter()
            .zip(self.columns.iter())
            .map(|(k, c)| RowField::new_with_options(k.data_type().clone(), c.options))
            .collect();
        RowConverter::new(fields).map_err(local("ordering sort keys"))
    }
}

fn local(action: &str) -> impl Fn(ArrowError) -> Error + '_ {
    move |e| Error::Local {
        action: format!("sorting rows to compact: {action}"),
        source: Box::new(e),
    }
}

/// Rows in, the same rows out in the key's order (see the module doc).
pub(crate) struct ExternalSort {
    key: SortKey,
    budget: usize,
    schema: Option<SchemaRef>,
    pending: Vec<RecordBatch>,
    pending_bytes: usize,
    /// Rows and bytes pushed so far, for the size of the batches handed on.
    pushed_rows: usize,
    pushed_bytes: usize,
    /// Where the temporary folder of spilled runs is made, at the first
    /// spill.
    parent: PathBuf,
    spill: Option<tempfile::TempDir>,
    runs: Vec<PathBuf>,
    /// Run files made so far (each gets its own name).
    made: usize,
}

impl ExternalSort {
    /// A sort of rows by `key` holding about `budget` bytes, spilling
    /// under `parent` ([`spill_parent`] for the process's folder).
    pub fn new(key: SortKey, budget: usize, parent: PathBuf) -> ExternalSort {
        ExternalSort {
            parent,
            key,
            budget: budget.max(1),
            schema: None,
            pending: Vec::new(),
            pending_bytes: 0,
            pushed_rows: 0,
            pushed_bytes: 0,
            spill: None,
            runs: Vec::new(),
            made: 0,
        }
    }

    pub fn push(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.schema.get_or_insert_with(|| batch.schema());
        let bytes = batch.get_array_memory_size();
        self.pending_bytes += bytes;
        self.pushed_bytes += bytes;
        self.pushed_rows += batch.num_rows();
        self.pending.push(batch);
        if self.pending_bytes >= self.budget {
            self.spill_pending()?;
        }
        Ok(())
    }

    /// Rows per batch handed on (and spilled): about a [`FAN_IN`]th of
    /// the budget, so a merge of that many runs holds about the budget.
    fn rows_per_batch(&self) -> usize {
        let row = (self.pushed_bytes / self.pushed_rows.max(1)).max(1);
        (self.budget / FAN_IN / row).clamp(1, BATCH_ROWS)
    }

    fn spill_pending(&mut self) -> Result<()> {
        let batches = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let rows = self.rows_per_batch();
        let sorted = SortedRun::new(&self.key, batches, rows)?;
        let schema = sorted.schema();
        let path = self.next_run_path()?;
        write_run(&path, &schema, sorted)?;
        self.runs.push(path);
        Ok(())
    }

    fn next_run_path(&mut self) -> Result<PathBuf> {
        let dir = match &self.spill {
            Some(dir) => dir,
            None => {
                let parent = &self.parent;
                let made = tempfile::Builder::new()
                    .prefix("pipe-compact-sort-")
                    .tempdir_in(parent)
                    .map_err(|e| Error::Local {
                        action: format!(
                            "making a temporary folder to sort rows in, under {}",
                            parent.display()
                        ),
                        source: Box::new(e),
                    })?;
                self.spill.insert(made)
            }
        };
        self.made += 1;
        Ok(dir.path().join(format!("run-{}.arrow", self.made)))
    }

    /// The rows pushed, in order, a batch at a time.
    pub fn finish(mut self) -> Result<Sorted> {
        let rows = self.rows_per_batch();
        if self.runs.is_empty() {
            let run = SortedRun::new(&self.key, std::mem::take(&mut self.pending), rows)?;
            return Ok(Sorted {
                inner: Inner::One(run),
                _spill: None,
            });
        }
        if !self.pending.is_empty() {
            self.spill_pending()?;
        }
        // More runs than one merge takes at a time are merged in groups
        // into longer runs first, so a merge never holds more than
        // `FAN_IN` batches.
        let mut runs = std::mem::take(&mut self.runs);
        while runs.len() > FAN_IN {
            let group: Vec<PathBuf> = runs.drain(..FAN_IN).collect();
            let merged = Merge::new(
                self.key.clone(),
                open_runs(&group)?,
                self.schema.clone(),
                rows,
            )?;
            let path = self.next_run_path()?;
            let schema = self.schema.clone().expect("rows were pushed");
            write_run(&path, &schema, merged)?;
            for p in group {
                let _ = std::fs::remove_file(p);
            }
            runs.push(path);
        }
        let spill = self.spill.take();
        let merge = Merge::new(self.key, open_runs(&runs)?, self.schema.take(), rows)?;
        Ok(Sorted {
            inner: Inner::Merge(Box::new(merge)),
            _spill: spill,
        })
    }
}

/// The most runs one merge reads at a time.
const FAN_IN: usize = 64;

type Batches = Box<dyn Iterator<Item = Result<RecordBatch>> + Send>;

/// Writes `batches` as a run: an Arrow IPC stream, LZ4.
fn write_run(
    path: &Path,
    schema: &SchemaRef,
    batches: impl Iterator<Item = Result<RecordBatch>>,
) -> Result<()> {
    let spill = local("spilling a sorted run");
    let file = File::create(path)
        .map_err(ArrowError::from)
        .map_err(&spill)?;
    let options = IpcWriteOptions::default()
        .try_with_compression(Some(CompressionType::LZ4_FRAME))
        .map_err(&spill)?;
    let mut writer = StreamWriter::try_new_with_options(BufWriter::new(file), schema, options)
        .map_err(&spill)?;
    for batch in batches {
        writer.write(&batch?).map_err(&spill)?;
    }
    writer.finish().map_err(&spill)
}

fn open_runs(paths: &[PathBuf]) -> Result<Vec<Batches>> {
    let mut runs: Vec<Batches> = Vec::new();
    for path in paths {
        let file = File::open(path).map_err(|e| Error::Local {
            action: format!("reading back sorted run {}", path.display()),
            source: Box::new(e),
        })?;
        let reader = StreamReader::try_new(BufReader::new(file), None)
            .map_err(local("reading back a sorted run"))?;
        runs.push(Box::new(
            reader.map(|b| b.map_err(local("reading back a sorted run"))),
        ));
    }
    Ok(runs)
}

/// Where sorts spill: the folder [`spill_in`] set, else the system's
/// temporary folder.
pub(crate) fn spill_parent() -> PathBuf {
    SPILL_DIR
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_else(std::env::temp_dir)
}

static SPILL_DIR: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

/// Makes sorts of this process spill under `dir`, a folder no other
/// process uses (`pipe serve` passes `<data_dir>/tmp/sort`): what is in
/// it is removed first, the runs a killed process left there. Call it
/// before any sort starts.
pub fn spill_in(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::create_dir_all(dir)?;
    *SPILL_DIR.lock().unwrap_or_else(|p| p.into_inner()) = Some(dir.to_path_buf());
    Ok(())
}

/// The sorted rows: one run held in memory, or runs merged from disk.
pub(crate) struct Sorted {
    inner: Inner,
    /// Removed when the rows have been read (or the sort given up).
    _spill: Option<tempfile::TempDir>,
}

enum Inner {
    One(SortedRun),
    Merge(Box<Merge>),
}

impl Iterator for Sorted {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            Inner::One(run) => run.next(),
            Inner::Merge(merge) => merge.next(),
        }
    }
}

/// Batches held in memory and the order of their rows: handed on in
/// batches of `rows` gathered in that order, without copying the whole
/// first.
struct SortedRun {
    batches: Vec<RecordBatch>,
    /// (batch, row) in order.
    order: Vec<(usize, usize)>,
    at: usize,
    rows: usize,
}

impl SortedRun {
    fn new(key: &SortKey, batches: Vec<RecordBatch>, rows: usize) -> Result<SortedRun> {
        let mut order = Vec::new();
        if !batches.is_empty() {
            let per_batch: Vec<Vec<ArrayRef>> =
                batches.iter().map(|b| key.keys(b)).collect::<Result<_>>()?;
            let columns = (0..key.columns.len())
                .map(|i| {
                    let parts: Vec<&dyn arrow::array::Array> =
                        per_batch.iter().map(|k| k[i].as_ref()).collect();
                    Ok(SortColumn {
                        values: concat(&parts).map_err(local("gathering sort keys"))?,
                        options: Some(key.columns[i].options),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let indices = lexsort_to_indices(&columns, None).map_err(local("sorting"))?;
            let mut starts = Vec::with_capacity(batches.len());
            let mut total = 0;
            for b in &batches {
                starts.push(total);
                total += b.num_rows();
            }
            order = indices
                .values()
                .iter()
                .map(|&i| {
                    let i = i as usize;
                    let b = starts.partition_point(|&s| s <= i) - 1;
                    (b, i - starts[b])
                })
                .collect();
        }
        Ok(SortedRun {
            batches,
            order,
            at: 0,
            rows: rows.max(1),
        })
    }

    fn schema(&self) -> SchemaRef {
        self.batches[0].schema()
    }
}

impl Iterator for SortedRun {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.order.len() {
            return None;
        }
        let end = (self.at + self.rows).min(self.order.len());
        let refs: Vec<&RecordBatch> = self.batches.iter().collect();
        let out = interleave_record_batch(&refs, &self.order[self.at..end])
            .map_err(local("gathering sorted rows"));
        self.at = end;
        Some(out)
    }
}

/// A sorted run being merged: its current batch and that batch's keys.
struct Cursor {
    source: Batches,
    batch: RecordBatch,
    rows: Rows,
    next: usize,
}

/// The k-way merge of sorted runs, by their keys in Arrow's row format
/// (which compares as bytes in the key's order).
struct Merge {
    key: SortKey,
    converter: Option<RowConverter>,
    cursors: Vec<Option<Cursor>>,
    /// The smallest unread row of each run not exhausted; ties go to the
    /// earlier run.
    heap: BinaryHeap<Reverse<(OwnedRow, usize)>>,
    schema: Option<SchemaRef>,
    /// Rows per batch handed on.
    rows: usize,
}

impl Merge {
    fn new(
        key: SortKey,
        sources: Vec<Batches>,
        schema: Option<SchemaRef>,
        rows: usize,
    ) -> Result<Merge> {
        let mut merge = Merge {
            key,
            converter: None,
            cursors: Vec::new(),
            heap: BinaryHeap::new(),
            schema,
            rows: rows.max(1),
        };
        for (i, source) in sources.into_iter().enumerate() {
            merge.cursors.push(None);
            merge.advance(i, source)?;
        }
        Ok(merge)
    }

    /// Loads the next non-empty batch of run `i` from `source` and queues
    /// its first row; the run ends when `source` does.
    fn advance(&mut self, i: usize, mut source: Batches) -> Result<()> {
        let batch = loop {
            match source.next().transpose()? {
                None => {
                    self.cursors[i] = None;
                    return Ok(());
                }
                Some(b) if b.num_rows() == 0 => continue,
                Some(b) => break b,
            }
        };
        let keys = self.key.keys(&batch)?;
        let converter = match &self.converter {
            Some(c) => c,
            None => self.converter.insert(self.key.row_converter(&keys)?),
        };
        let rows = converter
            .convert_columns(&keys)
            .map_err(local("ordering sort keys"))?;
        self.heap.push(Reverse((rows.row(0).owned(), i)));
        self.cursors[i] = Some(Cursor {
            source,
            batch,
            rows,
            next: 0,
        });
        Ok(())
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let mut picks: Vec<(usize, usize)> = Vec::new();
        let mut exhausted = None;
        while picks.len() < self.rows {
            let Some(Reverse((_, i))) = self.heap.pop() else {
                break;
            };
            let cursor = self.cursors[i].as_mut().expect("a queued run has a cursor");
            picks.push((i, cursor.next));
            cursor.next += 1;
            if cursor.next < cursor.batch.num_rows() {
                self.heap
                    .push(Reverse((cursor.rows.row(cursor.next).owned(), i)));
            } else {
                // The rows picked so far point into this batch: hand them
                // on before it is replaced.
                exhausted = Some(i);
                break;
            }
        }
        if picks.is_empty() {
            return Ok(None);
        }
        let out = {
            let empty = self.schema.clone().map(RecordBatch::new_empty);
            let refs: Vec<&RecordBatch> = self
                .cursors
                .iter()
                .map(|c| match c {
                    Some(c) => &c.batch,
                    None => empty.as_ref().expect("a schema once rows were pushed"),
                })
                .collect();
            interleave_record_batch(&refs, &picks).map_err(local("merging sorted runs"))?
        };
        if let Some(i) = exhausted {
            let cursor = self.cursors[i].take().expect("the exhausted run's cursor");
            self.advance(i, cursor.source)?;
        }
        Ok(Some(out))
    }
}

impl Iterator for Merge {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch().transpose()
    }
}

/// `file`, written with partition spec `spec_id`, recorded as sorted in
/// order `order_id` (iceberg-rust's writers leave the field unset).
pub(crate) fn in_order(file: DataFile, spec_id: i32, order_id: i32) -> Result<DataFile> {
    rebuilt(file, spec_id, Some(order_id))
}

/// `file` recorded as written with partition spec `spec_id` (and, if
/// given, sorted in order `order_id`).
pub(crate) fn rebuilt(file: DataFile, spec_id: i32, order_id: Option<i32>) -> Result<DataFile> {
    let mut builder = DataFileBuilder::default();
    builder
        .content(file.content_type())
        .file_path(file.file_path().to_string())
        .file_format(file.file_format())
        .partition(file.partition().clone())
        .record_count(file.record_count())
        .file_size_in_bytes(file.file_size_in_bytes())
        .column_sizes(file.column_sizes().clone())
        .value_counts(file.value_counts().clone())
        .null_value_counts(file.null_value_counts().clone())
        .nan_value_counts(file.nan_value_counts().clone())
        .lower_bounds(file.lower_bounds().clone())
        .upper_bounds(file.upper_bounds().clone())
        .key_metadata(file.key_metadata().map(<[u8]>::to_vec))
        .split_offsets(file.split_offsets().map(<[i64]>::to_vec))
        .equality_ids(file.equality_ids())
        .first_row_id(file.first_row_id())
        .partition_spec_id(spec_id)
        .referenced_data_file(file.referenced_data_file())
        .content_offset(file.content_offset())
        .content_size_in_bytes(file.content_size_in_bytes());
    if let Some(order_id) = order_id.or(file.sort_order_id()) {
        builder.sort_order_id(order_id);
    }
    builder.build().map_err(|e| {
        Error::Corrupt(format!(
            "recording the spec and sort order of a new file: {e}"
        ))
    })
}

#[cfg(test)]
mod tests;
