//! Fresh reads: a table with the rows its pipeline has acknowledged but
//! not committed yet.
//!
//! A server knows, for each table one of its pipelines writes, which
//! events are acknowledged and not in the table yet: they are in the
//! stream's buffer, past the offsets the table's snapshot records. A
//! session given an [`Unflushed`] reads such a table as one table: its
//! committed snapshot, and beside it those buffered rows run through the
//! pipeline's SQL ([`FreshTable`]). Every acknowledged event is in one of
//! the two, once:
//!
//! 1. [`Unflushed::pin`] runs *before* the table is loaded: it keeps the
//!    buffer's records past what the pipeline had committed then, so no
//!    commit landing later can release what this read needs.
//! 2. The table is loaded: its snapshot is the committed half.
//! 3. [`Pinned::tail`] reads from that snapshot the last offset it holds
//!    and takes the buffered records after it, through the end that is
//!    durable *now* (after the load): the buffered half. A commit landing
//!    after the load is not in the snapshot, and its records are in the
//!    tail; one landing before it is in the snapshot, and its records are
//!    not.
//!
//! Both halves are picked while the query is planned, so a query sees every
//! event acknowledged before it started, and none written to the buffer
//! after it was planned (an event on disk may show a moment before its 200
//! reaches its client). Time travel (`table_at`) reads committed snapshots
//! only.
//!
//! The tail's rows go through the query's filters and projection before
//! they leave it, and a limit (DataFusion passes one only when no filter
//! stays above the scan) stops reading the buffer once reached.
//!
//! The tail's rows are counted in the plan's metrics ([`BUFFER_ROWS`],
//! [`BUFFER_RECORDS`]): [`crate::ScanStats`] reports them, so a reader can
//! tell how much of an answer is not committed yet.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use arrow::array::{new_null_array, ArrayRef};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{DataFusionError, Result as DFResult};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::stream::BoxStream;
use futures::StreamExt;
use iceberg::table::Table;
use iceberg::TableIdent;

use crate::scan::IcebergTable;

/// Metric: rows a scan read from the buffer (acknowledged, not committed).
pub const BUFFER_ROWS: &str = "buffer_rows";
/// Metric: buffer records (accepted requests) those rows came from.
pub const BUFFER_RECORDS: &str = "buffer_records";

/// Where a session finds what the tables' pipelines have not committed.
pub trait Unflushed: Send + Sync + fmt::Debug {
    /// Called before `table` is loaded: keeps what the pipeline writing it
    /// has not committed until the returned value (and the tail made from
    /// it) is dropped. `None`: no pipeline of this server writes it.
    fn pin(&self, table: &TableIdent) -> Option<Box<dyn Pinned>>;
}

/// What a pipeline had not committed when [`Unflushed::pin`] ran.
pub trait Pinned: Send + Sync + fmt::Debug {
    /// The rows past what `table` (loaded after the pin) holds, through
    /// what the buffer holds durably now.
    fn tail(self: Box<Self>, table: &Table) -> DFResult<Arc<dyn Tail>>;
}

/// Rows acknowledged and not in a table's snapshot yet.
pub trait Tail: Send + Sync + fmt::Debug {
    /// Buffer records (accepted requests) the rows come from.
    fn records(&self) -> u64;

    /// The rows, in batches whose columns are named as the table's (a
    /// column a batch lacks is read as null; types are cast to the
    /// table's). Read when the query runs.
    fn rows(&self) -> BoxStream<'static, DFResult<RecordBatch>>;
}

/// A table's committed snapshot and its pipeline's [`Tail`], as one table.
#[derive(Debug)]
pub struct FreshTable {
    committed: IcebergTable,
    tail: Arc<dyn Tail>,
}

impl FreshTable {
    /// `committed` read together with `tail`.
    pub fn new(committed: IcebergTable, tail: Arc<dyn Tail>) -> FreshTable {
        FreshTable { committed, tail }
    }
}

#[async_trait]
impl TableProvider for FreshTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.committed.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        // The snapshot prunes by them; every row is filtered above both.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let committed = self
            .committed
            .scan(state, projection, filters, limit)
            .await?;
        let tail = TailExec {
            filter: tail_filter(state, &self.committed.schema(), filters),
            limit,
            ..TailExec::new(
                self.tail.clone(),
                self.committed.schema(),
                projection.cloned(),
                committed.schema(),
            )
        };
        UnionExec::try_new(vec![committed, Arc::new(tail)])
    }
}

/// The query's filters on the table as one expression over its columns,
/// applied to the buffered rows before they leave the tail (the rows are
/// filtered above the union anyway: a filter that does not plan here is
/// left to that).
fn tail_filter(
    state: &dyn Session,
    table: &SchemaRef,
    filters: &[Expr],
) -> Option<Arc<dyn PhysicalExpr>> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    let unqualified = filters
        .iter()
        .map(|f| {
            f.clone()
                .transform(|e| match e {
                    Expr::Column(c) => Ok(Transformed::yes(Expr::Column(
                        datafusion::common::Column::from_name(c.name),
                    ))),
                    other => Ok(Transformed::no(other)),
                })
                .map(|t| t.data)
        })
        .collect::<DFResult<Vec<_>>>()
        .ok()?;
    let predicate = datafusion::logical_expr::utils::conjunction(unqualified)?;
    let schema = datafusion::common::DFSchema::try_from(table.as_ref().clone()).ok()?;
    state.create_physical_expr(predicate, &schema).ok()
}

/// Reads a [`Tail`] as the table's columns `projection`, with the query's
/// filters applied and stopping at its limit.
#[derive(Debug)]
struct TailExec {
    tail: Arc<dyn Tail>,
    /// The whole table's schema: what each batch is made to fit first.
    table: SchemaRef,
    projection: Option<Vec<usize>>,
    /// Over the whole table's columns (see [`tail_filter`]).
    filter: Option<Arc<dyn PhysicalExpr>>,
    /// Rows wanted at most (DataFusion passes one only when no filter
    /// stays above the scan).
    limit: Option<usize>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl TailExec {
    fn new(
        tail: Arc<dyn Tail>,
        table: SchemaRef,
        projection: Option<Vec<usize>>,
        output: SchemaRef,
    ) -> TailExec {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(output),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        TailExec {
            tail,
            table,
            projection,
            filter: None,
            limit: None,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl DisplayAs for TailExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "BufferTailExec: records={}", self.tail.records())
    }
}

impl ExecutionPlan for TailExec {
    fn name(&self) -> &'static str {
        "BufferTailExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn with_new_children(
        self: Arc<Self>,
        _: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        let rows = MetricBuilder::new(&self.metrics).counter(BUFFER_ROWS, partition);
        MetricBuilder::new(&self.metrics)
            .counter(BUFFER_RECORDS, partition)
            .add(self.tail.records() as usize);
        let table = self.table.clone();
        let output = self.schema();
        let projection = self.projection.clone();
        let filter = self.filter.clone();
        let stream = self.tail.rows().map(move |batch| {
            let batch = conform(&batch?, &table)?;
            rows.add(batch.num_rows());
            let batch = match &filter {
                Some(f) => {
                    let keep = f.evaluate(&batch)?.into_array(batch.num_rows())?;
                    let keep = keep
                        .as_any()
                        .downcast_ref::<arrow::array::BooleanArray>()
                        .ok_or_else(|| {
                            DataFusionError::Internal("a filter that is not boolean".into())
                        })?;
                    arrow::compute::filter_record_batch(&batch, keep)?
                }
                None => batch,
            };
            let batch = match &projection {
                Some(p) => batch.project(p)?,
                None => batch,
            };
            // The snapshot's scan names the output's fields; same columns
            // (none for `count(*)`, hence the row count).
            Ok(RecordBatch::try_new_with_options(
                output.clone(),
                batch.columns().to_vec(),
                &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
            )?)
        });
        // Past the limit nothing more is read from the buffer.
        let stream = match self.limit {
            Some(limit) => {
                let mut left = limit;
                stream
                    .take_while(move |batch| {
                        let go = left > 0;
                        if let Ok(b) = batch {
                            left = left.saturating_sub(b.num_rows());
                        }
                        futures::future::ready(go)
                    })
                    .boxed()
            }
            None => stream.boxed(),
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            stream,
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// `batch` as `schema`'s columns: each taken by name and cast to its type,
/// null where `batch` has no such column.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> DFResult<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| -> DFResult<ArrayRef> {
            match batch.column_by_name(field.name()) {
                Some(c) if c.data_type() == field.data_type() => Ok(c.clone()),
                Some(c) => Ok(arrow::compute::cast(c, field.data_type())?),
                None => Ok(new_null_array(field.data_type(), batch.num_rows())),
            }
        })
        .collect::<DFResult<Vec<_>>>()?;
    RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .map_err(|e| DataFusionError::ArrowError(Box::new(e), None))
}
