//! Reading an Iceberg table: Iceberg plans, DataFusion reads.
//!
//! A scan of [`IcebergTable`] has two halves:
//!
//! 1. **Planning, by iceberg-rust.** The query's filters become an Iceberg
//!    predicate, and `TableScan::plan_files` keeps only the data files that
//!    can hold a matching row: manifests are skipped by their partition
//!    summaries, entries by their partition values (`day(__ingest_ts)` and
//!    the other transforms), and files by their column bounds. A filter on
//!    one day of a 30-day table plans one day's files.
//! 2. **Reading, by DataFusion.** The planned files become a DataFusion
//!    Parquet scan (`DataSourceExec`), split into as many partitions as the
//!    session has cores (fewer files than that are split into byte ranges,
//!    so one day's file is still decoded by every core), with the filters
//!    as its pruning predicate, so row
//!    groups and pages are skipped by their statistics, and `LIMIT` and
//!    `ORDER BY … LIMIT` stop reading early. Bytes come through the table's
//!    own `FileIO` (the catalog's storage and credentials, local or S3),
//!    or for a local warehouse straight from the file with positional
//!    reads: [`FileIoReaderFactory`] hands DataFusion an async Parquet
//!    reader per file and counts every byte fetched. A file's footer and page index
//!    are parsed once per session and kept in DataFusion's file metadata
//!    cache (`datafusion.runtime.metadata_cache_limit`, 50 MB by
//!    default): Iceberg data files never change, so a path and size name
//!    one file's metadata for good, and a later query over the same files
//!    fetches only column chunks. Bloom filters (which sinks write for
//!    `bloom_filter_columns`) are kept in the same cache once read, so a
//!    repeated lookup reads only the row groups that may hold its value.
//!
//! Each scan records three counters in its plan's metrics ([`FILES_TOTAL`],
//! [`FILES_PLANNED`], [`BYTES_READ`]); [`ScanStats::of`] sums them after a
//! query for the stats line, and `EXPLAIN ANALYZE` shows them per scan.
//!
//! Reading data files by column name is right for tables whose schema never
//! changed and that have no delete files, which is every table `pipe`
//! writes. For any other table (more than one schema, delete files, or data
//! files that are not Parquet) the scan falls back to iceberg-datafusion's
//! own reader, which maps columns by field id and applies deletes.

mod files;

use std::any::Any;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::{DFSchema, DataFusionError, Result as DFResult, Statistics};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{
    FileGroup, FileGroupPartitioner, FileScanConfigBuilder, FileSource, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::expressions::{CastExpr, Column};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::metrics::MetricBuilder;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;
use futures::TryStreamExt;
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::spec::DataFileFormat;
use iceberg::table::Table;
use iceberg_datafusion::physical_plan::convert_filters_to_predicate;
use iceberg_datafusion::IcebergStaticTableProvider;

use files::{DataFilePath, FileIoReaderFactory};

/// Metric: data files in the snapshot a scan read from.
pub const FILES_TOTAL: &str = "iceberg_files_total";
/// Metric: data files left after Iceberg's partition and statistics pruning.
pub const FILES_PLANNED: &str = "iceberg_files_planned";
/// Metric: bytes fetched from storage (footers, indexes and column chunks).
pub const BYTES_READ: &str = "iceberg_bytes_read";

/// Files planned for fewer partitions than the session's cores are split
/// into byte ranges when they hold at least this many bytes together; a
/// smaller read is over before a second core would have its row groups.
const SPLIT_FILES_FROM: usize = 1 << 20;

/// Which reader scans data files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reader {
    /// Iceberg plans, DataFusion's Parquet scan reads (the default; tables
    /// that need field-id mapping or deletes still use [`Reader::Iceberg`]).
    #[default]
    DataFusion,
    /// iceberg-datafusion's own scan for every table: one partition, no
    /// scan counters. For comparing results, and as a way around a problem
    /// in the default reader.
    Iceberg,
}

/// An Iceberg table (at its current snapshot, or at a chosen one) as a
/// DataFusion table.
#[derive(Debug, Clone)]
pub struct IcebergTable {
    table: Table,
    snapshot_id: Option<i64>,
    schema: SchemaRef,
    reader: Reader,
}

impl IcebergTable {
    /// The table as it is in `table`'s metadata now.
    pub fn current(table: Table) -> iceberg::Result<IcebergTable> {
        let schema = view_types(schema_to_arrow_schema(table.metadata().current_schema())?);
        Ok(IcebergTable {
            table,
            snapshot_id: None,
            schema,
            reader: Reader::default(),
        })
    }

    /// The table as it was at snapshot `snapshot_id`, with that snapshot's
    /// schema.
    pub fn at_snapshot(table: Table, snapshot_id: i64) -> iceberg::Result<IcebergTable> {
        let metadata = table.metadata();
        let snapshot = metadata.snapshot_by_id(snapshot_id).ok_or_else(|| {
            iceberg::Error::new(
                iceberg::ErrorKind::DataInvalid,
                format!("no snapshot {snapshot_id}"),
            )
        })?;
        let schema = view_types(schema_to_arrow_schema(&*snapshot.schema(metadata)?)?);
        Ok(IcebergTable {
            table,
            snapshot_id: Some(snapshot_id),
            schema,
            reader: Reader::default(),
        })
    }

    /// This table, scanned by `reader`.
    pub fn with_reader(mut self, reader: Reader) -> IcebergTable {
        self.reader = reader;
        self
    }

    /// The loaded table.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Whether data files can be read by column name: one schema ever.
    fn reads_by_name(&self) -> bool {
        self.reader == Reader::DataFusion && self.table.metadata().schemas_iter().len() == 1
    }

    async fn fallback(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
        snapshot_id: i64,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        // Filters on evolved columns stay above the scan (every filter is
        // applied there anyway: pushdown is inexact), see `evolved_columns`.
        let evolved = evolved_columns(&self.table);
        let pruning: Vec<Expr> = filters
            .iter()
            .filter(|f| !f.column_refs().iter().any(|c| evolved.contains(&c.name)))
            .cloned()
            .collect();
        // iceberg-rust reads a snapshot with the schema it was written
        // with: a column added since (the current table's schema has it,
        // the current snapshot's not yet) is not asked of it, and reads as
        // null.
        let provider = IcebergStaticTableProvider::try_new_from_table_snapshot(
            self.table.clone(),
            snapshot_id,
        )
        .await
        .map_err(external)?;
        // Columns are matched by field id (a renamed column keeps its id;
        // one dropped and added again under its name gets a new one).
        let theirs = provider.schema();
        let declared = match projection {
            Some(p) => self.schema.project(p)?,
            None => self.schema.as_ref().clone(),
        };
        let id_of = |f: &Field| {
            f.metadata()
                .get(datafusion::parquet::arrow::PARQUET_FIELD_ID_META_KEY)
                .cloned()
        };
        let in_theirs = |field: &Field| {
            let id = id_of(field)?;
            theirs
                .fields()
                .iter()
                .position(|t| id_of(t).as_ref() == Some(&id))
        };
        let mut asked: Vec<usize> = declared
            .fields()
            .iter()
            .filter_map(|f| in_theirs(f))
            .collect();
        asked.sort_unstable();
        asked.dedup();
        let scan = provider.scan(state, Some(&asked), &pruning, limit).await?;
        // That reader yields strings as `Utf8`; this table says `Utf8View`.
        let produced = scan.schema();
        let columns = declared
            .fields()
            .iter()
            .map(|field| {
                let at =
                    in_theirs(field).and_then(|i| produced.index_of(theirs.field(i).name()).ok());
                let expr: Arc<dyn PhysicalExpr> = match at {
                    Some(i) if produced.field(i).data_type() == field.data_type() => {
                        Arc::new(Column::new(produced.field(i).name(), i))
                    }
                    Some(i) => Arc::new(CastExpr::new(
                        Arc::new(Column::new(produced.field(i).name(), i)),
                        field.data_type().clone(),
                        None,
                    )),
                    // Null, with the field's metadata (its field id).
                    None => Arc::new(
                        datafusion::physical_expr::expressions::Literal::new_with_metadata(
                            datafusion::common::ScalarValue::try_from(field.data_type())?,
                            Some(datafusion::common::metadata::FieldMetadata::from(
                                field.as_ref(),
                            )),
                        ),
                    ),
                };
                Ok((expr, field.name().clone()))
            })
            .collect::<DFResult<Vec<_>>>()?;
        Ok(Arc::new(ProjectionExec::try_new(columns, scan)?))
    }
}

/// Top-level columns that older data files may hold in another form: added
/// after some schema (absent from older files) or widened since (`int` →
/// `long`, `float` → `double`). iceberg-rust 0.10 prunes files by such a
/// column's partition values and statistics as if they had the current
/// type, and drops files that hold matching rows: a query on a widened
/// `n` with `n < 5` lost every file written before the widening. Filters
/// on these columns are therefore not used to prune.
fn evolved_columns(table: &Table) -> std::collections::HashSet<String> {
    let metadata = table.metadata();
    let current = metadata.current_schema();
    current
        .as_struct()
        .fields()
        .iter()
        .filter(|field| {
            metadata.schemas_iter().any(|schema| {
                schema
                    .field_by_id(field.id)
                    .is_none_or(|old| old.field_type != field.field_type)
            })
        })
        .map(|field| field.name.clone())
        .collect()
}

/// The table's Arrow schema with `Utf8View`/`BinaryView` for top-level
/// strings and binaries, as DataFusion reads Parquet by default
/// (`schema_force_view_types`): grouping, comparing and filtering on views
/// avoids copying every string.
fn view_types(schema: arrow::datatypes::Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let viewed = match f.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 => DataType::Utf8View,
                DataType::Binary | DataType::LargeBinary => DataType::BinaryView,
                other => other.clone(),
            };
            f.as_ref().clone().with_data_type(viewed)
        })
        .collect();
    Arc::new(arrow::datatypes::Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    ))
}

fn external(e: iceberg::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

#[async_trait]
impl TableProvider for IcebergTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        // Filters prune files and row groups; rows are still filtered above.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let metadata = self.table.metadata();
        let snapshot = match self.snapshot_id {
            Some(id) => metadata.snapshot_by_id(id),
            None => metadata.current_snapshot(),
        };
        let Some(snapshot) = snapshot else {
            // A table nothing was committed to yet has no rows.
            let schema = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        };
        let snapshot_id = snapshot.snapshot_id();
        if !self.reads_by_name() {
            return self
                .fallback(state, projection, filters, limit, snapshot_id)
                .await;
        }

        let mut builder = self.table.scan().snapshot_id(snapshot_id).select_all();
        if let Some(predicate) = convert_filters_to_predicate(filters) {
            builder = builder.with_filter(predicate);
        }
        let tasks: Vec<_> = builder
            .build()
            .map_err(external)?
            .plan_files()
            .await
            .map_err(external)?
            .try_collect()
            .await
            .map_err(external)?;
        if tasks
            .iter()
            .any(|t| !t.deletes.is_empty() || t.data_file_format != DataFileFormat::Parquet)
        {
            return self
                .fallback(state, projection, filters, limit, snapshot_id)
                .await;
        }
        let files_total = snapshot
            .summary()
            .additional_properties
            .get("total-data-files")
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(tasks.len());

        // Balance the files over the session's partitions by size.
        let target_partitions = state.config().target_partitions();
        let partitions = target_partitions.clamp(1, tasks.len().max(1));
        let mut groups: Vec<(u64, Vec<PartitionedFile>)> = vec![(0, Vec::new()); partitions];
        let mut by_size: Vec<_> = tasks.iter().collect();
        by_size.sort_by_key(|t| std::cmp::Reverse(t.file_size_in_bytes));
        for task in by_size {
            let file = PartitionedFile::new(task.data_file_path.clone(), task.file_size_in_bytes)
                .with_extensions(Arc::new(DataFilePath(task.data_file_path.clone())));
            let smallest = groups
                .iter_mut()
                .min_by_key(|(bytes, _)| *bytes)
                .expect("at least one group");
            smallest.0 += task.file_size_in_bytes;
            smallest.1.push(file);
        }
        // With no file left, one empty group: the scan reads nothing but
        // still reports what it skipped.
        let mut file_groups: Vec<FileGroup> = groups
            .into_iter()
            .filter(|(_, files)| !files.is_empty() || tasks.is_empty())
            .map(|(_, files)| FileGroup::new(files))
            .collect();
        // Fewer files than cores (a filter on one day of a day-partitioned
        // table): split them into byte ranges, one per partition, so every
        // core decodes some of their row groups (a row group goes to the
        // range that holds its middle).
        if !tasks.is_empty() && tasks.len() < target_partitions {
            if let Some(split) = FileGroupPartitioner::new()
                .with_target_partitions(target_partitions)
                .with_repartition_file_min_size(SPLIT_FILES_FROM)
                .with_preserve_order_within_groups(false)
                .repartition_file_groups(&file_groups)
            {
                file_groups = split;
            }
        }

        let mut statistics = Statistics::new_unknown(&self.schema);
        let rows: Option<u64> = tasks.iter().map(|t| t.record_count).sum();
        statistics.num_rows = match rows {
            // Without filters every row of every planned file is a result.
            Some(n) if filters.is_empty() => Precision::Exact(n as usize),
            Some(n) => Precision::Inexact(n as usize),
            None => Precision::Absent,
        };
        statistics.total_byte_size =
            Precision::Inexact(tasks.iter().map(|t| t.file_size_in_bytes as usize).sum());

        let mut source = ParquetSource::new(self.schema.clone())
            .with_table_parquet_options(state.table_options().parquet.clone())
            .with_parquet_file_reader_factory(Arc::new(FileIoReaderFactory {
                file_io: self.table.file_io().clone(),
                metadata_cache: state.runtime_env().cache_manager.get_file_metadata_cache(),
            }));
        if let Some(filter) = conjunction(filters.iter().cloned()) {
            let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
            source = source.with_predicate(state.create_physical_expr(filter, &df_schema)?);
        }
        if !state.config_options().execution.parquet.pushdown_filters
            && filters.iter().any(picks_few_rows)
        {
            source = source
                .with_pushdown_filters(true)
                .with_reorder_filters(true);
        }
        let metrics = source.metrics();
        MetricBuilder::new(metrics)
            .global_counter(FILES_TOTAL)
            .add(files_total);
        MetricBuilder::new(metrics)
            .global_counter(FILES_PLANNED)
            .add(tasks.len());

        // The object store URL is not used to read: the reader factory
        // reads through the table's FileIO. DataFusion still resolves one,
        // and the local one is always registered.
        let config =
            FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
                .with_file_groups(file_groups)
                .with_statistics(statistics)
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

/// Whether `filter` looks like a lookup (`column = value`, `column IN
/// (values)`) that keeps few rows: then the scan decodes the filter's
/// columns first and the others only where it matched (late
/// materialization; `datafusion.execution.parquet.pushdown_filters` turns
/// it on for every filter). For a filter that keeps many rows (a flag, a
/// time range), deciding row by row costs more than it saves, so those
/// prune files and row groups and are applied above the scan.
fn picks_few_rows(filter: &Expr) -> bool {
    fn column(e: &Expr) -> bool {
        match e {
            Expr::Column(_) => true,
            Expr::Cast(c) => column(&c.expr),
            Expr::TryCast(c) => column(&c.expr),
            _ => false,
        }
    }
    fn literal(e: &Expr) -> bool {
        match e {
            Expr::Literal(..) => true,
            Expr::Cast(c) => literal(&c.expr),
            Expr::TryCast(c) => literal(&c.expr),
            _ => false,
        }
    }
    match filter {
        Expr::BinaryExpr(b) if b.op == Operator::And => {
            picks_few_rows(&b.left) || picks_few_rows(&b.right)
        }
        Expr::BinaryExpr(b) if b.op == Operator::Eq => {
            (column(&b.left) && literal(&b.right)) || (literal(&b.left) && column(&b.right))
        }
        Expr::InList(l) => !l.negated && column(&l.expr) && l.list.iter().all(literal),
        _ => false,
    }
}

/// What the scans of one executed query did, summed over its plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Data files in the scanned snapshots.
    pub files_total: usize,
    /// Data files left to read after pruning.
    pub files_planned: usize,
    /// Bytes fetched from storage.
    pub bytes_read: usize,
    /// Rows read from the buffer: acknowledged, not committed yet (see
    /// [`crate::fresh`]).
    pub buffer_rows: usize,
    /// Buffer records (accepted requests) those rows came from.
    pub buffer_records: usize,
}

impl ScanStats {
    /// Sums the scan counters of an executed plan.
    pub fn of(plan: &Arc<dyn ExecutionPlan>) -> ScanStats {
        let mut stats = ScanStats::default();
        let mut stack = vec![plan.clone()];
        while let Some(node) = stack.pop() {
            if let Some(metrics) = node.metrics() {
                let sum = |name: &str| metrics.sum_by_name(name).map(|m| m.as_usize()).unwrap_or(0);
                stats.files_total += sum(FILES_TOTAL);
                stats.files_planned += sum(FILES_PLANNED);
                stats.bytes_read += sum(BYTES_READ);
                stats.buffer_rows += sum(crate::fresh::BUFFER_ROWS);
                stats.buffer_records += sum(crate::fresh::BUFFER_RECORDS);
            }
            stack.extend(node.children().into_iter().cloned());
        }
        stats
    }

    /// Data files pruning left out.
    pub fn files_skipped(&self) -> usize {
        self.files_total.saturating_sub(self.files_planned)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::{col, lit};

    use std::path::PathBuf;

    use super::files::{local_file, read_at};
    use super::picks_few_rows;

    #[test]
    fn lookups_pick_few_rows() {
        let id = || col("id");
        for lookup in [
            id().eq(lit("a")),
            lit(7).eq(id()),
            id().in_list(vec![lit(1), lit(2)], false),
            id().eq(lit(1)).and(col("ts").gt(lit(0))),
            col("ts").gt(lit(0)).and(id().eq(lit(1))),
        ] {
            assert!(picks_few_rows(&lookup), "{lookup}");
        }
        for scan in [
            col("is_fraud"),
            col("ts").gt(lit(0)),
            id().not_eq(lit(1)),
            id().in_list(vec![lit(1)], true),
            id().eq(col("other")),
            id().eq(lit(1)).or(col("ts").gt(lit(0))),
        ] {
            assert!(!picks_few_rows(&scan), "{scan}");
        }
    }

    #[test]
    fn local_paths_are_read_directly() {
        if !cfg!(unix) {
            return;
        }
        for (path, file) in [
            (
                "file:///w/shop/t/data/a.parquet",
                "/w/shop/t/data/a.parquet",
            ),
            ("file:/w/a.parquet", "/w/a.parquet"),
            ("/w/a.parquet", "/w/a.parquet"),
        ] {
            assert_eq!(local_file(path), Some(PathBuf::from(file)), "{path}");
        }
        for path in [
            "s3://bucket/w/a.parquet",
            "file://host/w/a.parquet",
            "memory:/w/a.parquet",
            "w/a.parquet",
        ] {
            assert_eq!(local_file(path), None, "{path}");
        }

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        assert_eq!(&read_at(&file, 2..5).unwrap()[..], b"234");
        let past_end = read_at(&file, 8..12).unwrap_err();
        assert_eq!(past_end.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
