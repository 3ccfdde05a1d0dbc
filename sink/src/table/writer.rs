//! Writing rows into a table's data files: Parquet with the sink's codec,
//! row groups and bloom filters, one file per partition (rolling past the
//! target size), each file's path written down in the ledger (when there
//! is one) before the file is created. The sink writes its pipeline's rows
//! through it, and compaction ([`crate::maintenance::compact`]) rewrites
//! small files through it with the same settings.

use std::sync::Arc;

use arrow::array::{new_null_array, ArrayRef};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use iceberg::arrow::{schema_to_arrow_schema, RecordBatchPartitionSplitter};
use iceberg::spec::{DataFile, DataFileFormat, PartitionKey};
use iceberg::table::Table;
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator, LocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use iceberg::writer::partitioning::unpartitioned_writer::UnpartitionedWriter;
use iceberg::writer::partitioning::PartitioningWriter;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::{Codec, BLOOM_FILTER_FPP};
use crate::ledger::Ledger;
use crate::{Error, Result};

/// How data files are laid out.
#[derive(Debug, Clone)]
pub struct Layout {
    pub codec: Codec,
    /// Largest row group, in rows.
    pub row_group_rows: usize,
    /// A data file is closed and another started past this size.
    pub target_file_bytes: usize,
    /// Top-level columns with a bloom filter in every row group.
    pub bloom_filter_columns: Vec<String>,
}

type FileWriterBuilder =
    DataFileWriterBuilder<ParquetWriterBuilder, LedgerLocations, DefaultFileNameGenerator>;

/// The open data files: one per partition, or one for an unpartitioned
/// table.
enum FileWriter {
    Partitioned(Box<FanoutWriter<FileWriterBuilder>>),
    Unpartitioned(Box<UnpartitionedWriter<FileWriterBuilder>>),
}

/// iceberg's default data file locations, each written down in the ledger
/// before the file is created.
#[derive(Clone)]
struct LedgerLocations {
    inner: DefaultLocationGenerator,
    ledger: Option<Arc<Ledger>>,
}

impl LocationGenerator for LedgerLocations {
    fn generate_location(&self, partition_key: Option<&PartitionKey>, file_name: &str) -> String {
        let location = self.inner.generate_location(partition_key, file_name);
        if let Some(ledger) = &self.ledger {
            ledger.record_file(&location);
        }
        location
    }
}

/// Writes rows into data files of one table, in its current schema and
/// default partition spec (as they were when the writer was made).
pub(crate) struct DataWriter {
    table: Table,
    arrow_schema: SchemaRef,
    /// `None` for an unpartitioned table.
    splitter: Option<RecordBatchPartitionSplitter>,
    layout: Layout,
    /// Data file names start with this.
    prefix: String,
    ledger: Option<Arc<Ledger>>,
    open: Option<FileWriter>,
    pending_rows: usize,
    /// The partition spec the files are written with.
    spec_id: i32,
}

impl DataWriter {
    pub fn new(
        table: &Table,
        layout: Layout,
        prefix: &str,
        ledger: Option<Arc<Ledger>>,
    ) -> Result<DataWriter> {
        let arrow_schema = Arc::new(
            schema_to_arrow_schema(table.metadata().current_schema()).map_err(|e| {
                Error::Catalog {
                    action: format!("reading the schema of `{}`", table.identifier()),
                    source: Box::new(e),
                }
            })?,
        );
        Ok(DataWriter {
            table: table.clone(),
            arrow_schema,
            splitter: splitter(table)?,
            layout,
            prefix: prefix.to_string(),
            ledger,
            open: None,
            pending_rows: 0,
            spec_id: table.metadata().default_partition_spec_id(),
        })
    }

    /// The partition spec the files are written with.
    pub fn spec_id(&self) -> i32 {
        self.spec_id
    }

    /// Rows written since the files were last closed.
    pub fn pending_rows(&self) -> usize {
        self.pending_rows
    }

    /// Writes a batch (any columns the table has, in any order, of types
    /// that cast to the table's) into the open data files.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let ident = self.table.identifier().clone();
        let batch = conform(batch, &self.arrow_schema)?;
        if self.open.is_none() {
            self.open = Some(self.new_files()?);
        }
        let write_err = |e| Error::Catalog {
            action: format!("writing data files of `{ident}`"),
            source: Box::new(e),
        };
        let rows = batch.num_rows();
        match (self.open.as_mut().expect("opened above"), &self.splitter) {
            (FileWriter::Unpartitioned(writer), _) => {
                writer.write(batch).await.map_err(write_err)?;
            }
            (FileWriter::Partitioned(writer), Some(splitter)) => {
                let split_err = |e| Error::Catalog {
                    action: format!("partitioning rows for `{ident}`"),
                    source: Box::new(e),
                };
                // Most batches (one request, one roll) fall in a single
                // partition: find its key from one row and write the batch
                // whole, instead of splitting it row by row.
                let parts = if single_partition(&self.table, &batch) {
                    let (key, _) = splitter
                        .split(&batch.slice(0, 1))
                        .map_err(split_err)?
                        .pop()
                        .expect("one row, one partition");
                    vec![(key, batch)]
                } else {
                    splitter.split(&batch).map_err(split_err)?
                };
                for (key, part) in parts {
                    writer.write(key, part).await.map_err(write_err)?;
                }
            }
            (FileWriter::Partitioned(_), None) => unreachable!("a fan-out writer has a splitter"),
        }
        self.pending_rows += rows;
        Ok(())
    }

    /// `batch` in the table's columns and types, as [`DataWriter::write`]
    /// writes it.
    pub fn conform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        conform(batch, &self.arrow_schema)
    }

    /// Closes the open data files and returns them.
    pub async fn close(&mut self) -> Result<Vec<DataFile>> {
        let closed = match self.open.take() {
            Some(FileWriter::Partitioned(writer)) => writer.close().await,
            Some(FileWriter::Unpartitioned(writer)) => writer.close().await,
            None => Ok(Vec::new()),
        };
        self.pending_rows = 0;
        let closed = closed.map_err(|e| Error::Catalog {
            action: format!("closing data files of `{}`", self.table.identifier()),
            source: Box::new(e),
        })?;
        // iceberg's unpartitioned writer records spec 0, the default only
        // of a table made unpartitioned: one evolved to no partitioning
        // has another.
        match self.splitter.is_none() && self.spec_id != 0 {
            true => closed
                .into_iter()
                .map(|f| crate::maintenance::sort::rebuilt(f, self.spec_id, None))
                .collect(),
            false => Ok(closed),
        }
    }

    /// Drops the open data files without closing them.
    pub fn abort(&mut self) {
        self.open = None;
        self.pending_rows = 0;
    }

    fn new_files(&self) -> Result<FileWriter> {
        let metadata = self.table.metadata();
        let rows = self.layout.row_group_rows.max(1);
        let mut props = WriterProperties::builder()
            .set_compression(self.layout.codec.parquet())
            .set_max_row_group_row_count(Some(rows));
        for column in &self.layout.bloom_filter_columns {
            let path = ColumnPath::from(column.as_str());
            // Sized for a row group of distinct values: a full one keeps
            // the rate, a smaller one does better.
            props = props
                .set_column_bloom_filter_enabled(path.clone(), true)
                .set_column_bloom_filter_ndv(path.clone(), rows as u64)
                .set_column_bloom_filter_fpp(path, BLOOM_FILTER_FPP);
        }
        let props = props.build();
        let parquet = ParquetWriterBuilder::new(props, metadata.current_schema().clone());
        let location = LedgerLocations {
            inner: DefaultLocationGenerator::new(metadata).map_err(|e| Error::Catalog {
                action: format!("locating data files of `{}`", self.table.identifier()),
                source: Box::new(e),
            })?,
            ledger: self.ledger.clone(),
        };
        let names = DefaultFileNameGenerator::new(
            format!("{}-{}", self.prefix, uuid::Uuid::new_v4()),
            None,
            DataFileFormat::Parquet,
        );
        let rolling = RollingFileWriterBuilder::new(
            parquet,
            self.layout.target_file_bytes,
            self.table.file_io().clone(),
            location,
            names,
        );
        let builder = DataFileWriterBuilder::new(rolling);
        Ok(match self.splitter {
            Some(_) => FileWriter::Partitioned(Box::new(FanoutWriter::new(builder))),
            None => FileWriter::Unpartitioned(Box::new(UnpartitionedWriter::new(builder))),
        })
    }
}

/// Whether every row of `batch` has the same partition values: each
/// partition field's transform, applied to its (top-level) source column,
/// gives one value and no nulls. `false` when unsure.
fn single_partition(table: &Table, batch: &RecordBatch) -> bool {
    let metadata = table.metadata();
    let schema = metadata.current_schema();
    metadata
        .default_partition_spec()
        .fields()
        .iter()
        .all(|field| {
            let Some(column) = schema
                .field_by_id(field.source_id)
                .and_then(|source| batch.column_by_name(&source.name))
            else {
                return false;
            };
            let Ok(transformed) = iceberg::transform::create_transform_function(&field.transform)
                .and_then(|f| f.transform(column.clone()))
            else {
                return false;
            };
            if transformed.null_count() > 0 {
                return false;
            }
            let first = arrow::array::Scalar::new(transformed.slice(0, 1));
            arrow::compute::kernels::cmp::eq(&transformed, &first)
                .is_ok_and(|same| same.true_count() == transformed.len())
        })
}

fn splitter(table: &Table) -> Result<Option<RecordBatchPartitionSplitter>> {
    let metadata = table.metadata();
    if metadata.default_partition_spec().is_unpartitioned() {
        return Ok(None);
    }
    RecordBatchPartitionSplitter::try_new_with_computed_values(
        metadata.current_schema().clone(),
        metadata.default_partition_spec().clone(),
    )
    .map(Some)
    .map_err(|e| Error::Catalog {
        action: format!("partitioning `{}`", table.identifier()),
        source: Box::new(e),
    })
}

/// Reshapes a batch to the table's Arrow schema: columns by name, cast to
/// the table's types, nulls for optional columns the batch lacks.
fn conform(batch: &RecordBatch, table: &SchemaRef) -> Result<RecordBatch> {
    let columns = table
        .fields()
        .iter()
        .map(|f| -> Result<ArrayRef> {
            match batch.column_by_name(f.name()) {
                Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
                Some(c) => arrow::compute::cast(c, f.data_type()).map_err(|e| {
                    Error::Schema(format!(
                        "casting column `{}` to {}: {e}",
                        f.name(),
                        f.data_type()
                    ))
                }),
                None => Ok(new_null_array(f.data_type(), batch.num_rows())),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new(table.clone(), columns)
        .map_err(|e| Error::Schema(format!("rows do not fit the table: {e}")))
}
