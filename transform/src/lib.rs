//! Pipeline SQL for `pipe`: `INSERT INTO sink SELECT … FROM stream`, planned
//! once and run on every batch read from the stream's buffer.
//!
//! - [`PipelinePlan::new`] parses the statement, checks the target sink and
//!   the source stream exist, and plans the SELECT with DataFusion against the
//!   stream's schema: a bad query fails here, before any data flows.
//! - [`PipelinePlan::run`] executes the plan over a batch. The stream table is
//!   a [`BatchSlot`] whose contents are swapped for each run, so the SQL is
//!   parsed and analysed only once.
//! - The output always carries `__ingest_ts`: when the SELECT drops it, it is
//!   added back with the newest ingest time of the batch.
//! - [`PipelinePlan::run_isolating`] never lets one bad row hold up the rest:
//!   when the SQL fails on a batch because of its data (a cast that fails on
//!   one value, a division by zero, a function refusing its argument), the
//!   batch is split in halves until the failing rows are single rows. The
//!   other rows' output goes on; each failing row comes back as a
//!   [`FailedRow`] (the input row as JSON, the error text) for the
//!   pipeline's quarantine table. Errors that are about the machine (out of
//!   memory, I/O, object store) fail the run as a whole, so the caller
//!   retries and nothing is set aside that a retry could have handled; any
//!   other error is deterministic, and a row it fails is set aside even
//!   when every row fails the same way. Finding `k`
//!   bad rows among `n` costs about `2k·log2(n)` extra runs.
//!
//!   Splitting assumes the SQL works row by row (projection, filter,
//!   UNNEST), which is what a pipeline over a stream of batches can mean:
//!   an aggregate over one batch has no stable meaning anyway.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::collections::HashMap;
//! use std::sync::Arc;
//! use arrow::array::{Int64Array, TimestampMicrosecondArray};
//! use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
//! use arrow::record_batch::RecordBatch;
//! use pipe_transform::PipelinePlan;
//!
//! let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()));
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("n", DataType::Int64, false),
//!     Field::new("__ingest_ts", ts, false),
//! ]));
//! let streams = HashMap::from([("events".to_string(), schema.clone())]);
//! let plan = PipelinePlan::new(
//!     "p", "INSERT INTO out SELECT n * 2 AS doubled FROM events WHERE n > 1",
//!     &streams, &["out".to_string()],
//! ).await.unwrap();
//! let batch = RecordBatch::try_new(schema, vec![
//!     Arc::new(Int64Array::from(vec![1, 2, 3])),
//!     Arc::new(TimestampMicrosecondArray::from(vec![0, 0, 0]).with_timezone("+00:00")),
//! ]).unwrap();
//! let out = plan.run(vec![batch]).await.unwrap();
//! assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
//! # }
//! ```

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::{AsArray, TimestampMicrosecondArray};
use arrow::datatypes::{Field, Schema, SchemaRef, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::DataFrame;
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{Statement, TableObject};

mod conform;
pub mod fault;
pub mod functions;
pub mod nesting;

/// The column pipe stamps on every event at ingest (the `schemas` crate
/// owns it).
pub use pipe_schemas::INGEST_TS_COLUMN;

/// Errors of the transform crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipeline's SQL is not something pipe can run.
    #[error("pipeline `{pipeline}`: {message}")]
    InvalidSql { pipeline: String, message: String },
    /// Running the plan over a batch failed.
    #[error("pipeline `{pipeline}`: running the SQL failed: {source}")]
    Execution {
        pipeline: String,
        source: datafusion::error::DataFusionError,
    },
    /// Input events of another version of the stream's schema that do not
    /// fit the one the SQL was planned for.
    #[error("pipeline `{pipeline}`: {message}")]
    Input { pipeline: String, message: String },
}

impl Error {
    /// The kind of this error: the SQL or the input's fault, or (for a
    /// run that failed on the machine's trouble, see [`is_row_error`])
    /// unavailable, which a retry may get past.
    pub fn kind(&self) -> pipe_schemas::ErrorKind {
        use pipe_schemas::ErrorKind;
        match self {
            Error::InvalidSql { .. } | Error::Input { .. } => ErrorKind::InvalidInput,
            Error::Execution { source, .. } if is_row_error(source) => ErrorKind::InvalidInput,
            Error::Execution { .. } => ErrorKind::Unavailable,
        }
    }
}

/// An input row the SQL failed on, set aside with why.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedRow {
    /// Position of the row in the run's input, counting across its batches.
    pub index: usize,
    /// The input row as a JSON object.
    pub event: String,
    /// The error the SQL raised on this row alone.
    pub error: String,
    /// The row's `__ingest_ts` (micros), or 0 when the input has none.
    pub ingest_ts: i64,
}

/// What [`PipelinePlan::run_isolating`] produced.
#[derive(Debug, Default)]
pub struct Isolated {
    /// Output of every row the SQL handled, in input order.
    pub output: Vec<RecordBatch>,
    /// The rows it failed on, in input order.
    pub failed: Vec<FailedRow>,
}

/// The columns of a pipeline's quarantine table: `event` (the input row as
/// JSON), `error`, and `__ingest_ts`.
pub fn failed_rows_schema() -> SchemaRef {
    use arrow::datatypes::{DataType, TimeUnit};
    Arc::new(Schema::new(vec![
        Field::new("event", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, false),
        Field::new(
            INGEST_TS_COLUMN,
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            false,
        ),
    ]))
}

/// Failed rows as one batch of [`failed_rows_schema`].
pub fn failed_rows_batch<'a>(rows: impl IntoIterator<Item = &'a FailedRow>) -> RecordBatch {
    use arrow::array::StringArray;
    let rows: Vec<&FailedRow> = rows.into_iter().collect();
    RecordBatch::try_new(
        failed_rows_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.event.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.error.as_str()),
            )),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.ingest_ts))
                    .with_timezone("+00:00"),
            ),
        ],
    )
    .expect("columns match failed_rows_schema")
}

/// Whether an execution error is about the rows, so that a retry would fail
/// the same way: everything but the machine's own trouble (memory, I/O,
/// object store, a task that died; see [`fault`]). Deterministic errors
/// that are not about one value (a function refusing a constant argument,
/// say) fail every row, and every row goes to quarantine with the error:
/// the pipeline never stalls on them.
fn is_row_error(e: &datafusion::error::DataFusionError) -> bool {
    !fault::fault(e).is_transient()
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A pipeline's SQL, parsed and planned.
pub struct PipelinePlan {
    name: String,
    sink: String,
    stream: String,
    ctx: SessionContext,
    plan: LogicalPlan,
    slot: Arc<BatchSlot>,
    output_schema: SchemaRef,
    add_ingest_ts: bool,
}

impl std::fmt::Debug for PipelinePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelinePlan")
            .field("name", &self.name)
            .field("stream", &self.stream)
            .field("sink", &self.sink)
            .field("output_schema", &self.output_schema)
            .finish_non_exhaustive()
    }
}

impl PipelinePlan {
    /// Parses and plans `sql` for the pipeline `name`.
    ///
    /// `streams` maps stream names to their table schemas (with
    /// `__ingest_ts`); `sinks` lists the sink names the INSERT may target.
    pub async fn new(
        name: &str,
        sql: &str,
        streams: &HashMap<String, SchemaRef>,
        sinks: &[String],
    ) -> Result<PipelinePlan> {
        let invalid = |message: String| Error::InvalidSql {
            pipeline: name.to_string(),
            message,
        };
        nesting::check(sql).map_err(invalid)?;
        let mut statements = DFParser::parse_sql(sql).map_err(|e| invalid(e.to_string()))?;
        if statements.len() != 1 {
            return Err(invalid(format!(
                "expected one `INSERT INTO sink SELECT … FROM stream` statement, found {}",
                statements.len()
            )));
        }
        let statement = statements.pop_front().expect("one statement");
        let DFStatement::Statement(statement) = statement else {
            return Err(invalid(
                "expected `INSERT INTO sink SELECT … FROM stream`".into(),
            ));
        };
        let Statement::Insert(insert) = *statement else {
            return Err(invalid(format!(
                "expected `INSERT INTO sink SELECT … FROM stream`, got `{statement}`"
            )));
        };
        let TableObject::TableName(target) = &insert.table else {
            return Err(invalid("INSERT must name a sink".into()));
        };
        // A quoted name (`"click-events_sink"`) is the name inside the quotes.
        let sink = match target.0.as_slice() {
            [part] => part
                .as_ident()
                .map_or_else(|| part.to_string(), |i| i.value.clone()),
            _ => target.to_string(),
        };
        if !sinks.contains(&sink) {
            return Err(invalid(format!(
                "unknown sink `{sink}` (defined sinks: {})",
                list(sinks)
            )));
        }
        if !insert.columns.is_empty() || insert.overwrite {
            return Err(invalid(
                "INSERT column lists and OVERWRITE are not supported; name the columns in the SELECT".into(),
            ));
        }
        let Some(query) = insert.source else {
            return Err(invalid("INSERT needs a SELECT".into()));
        };

        // Spans let planning errors point at the part of the SQL at fault.
        let mut ctx = SessionContext::new_with_config(
            datafusion::prelude::SessionConfig::new()
                .set_bool("datafusion.sql_parser.collect_spans", true),
        );
        // The functions queries have too (JSON ones, …).
        functions::register(&mut ctx).map_err(|e| invalid(e.to_string()))?;
        let mut slots = HashMap::new();
        for (stream, schema) in streams {
            let slot = Arc::new(BatchSlot::new(schema.clone()));
            // As named (`Clicks`), not parsed as SQL (which lowercases it
            // and fails on `-`): the SQL names it `"Clicks"`.
            ctx.register_table(
                datafusion::sql::TableReference::bare(stream.as_str()),
                slot.clone(),
            )
            .map_err(|e| invalid(e.to_string()))?;
            slots.insert(stream.clone(), slot);
        }
        let plan = ctx
            .state()
            .statement_to_plan(DFStatement::Statement(Box::new(Statement::Query(query))))
            .await
            .map_err(|e| invalid(with_position(&e)))?;
        let plan = ctx
            .state()
            .optimize(&plan)
            .map_err(|e| invalid(e.to_string()))?;

        let mut sources = Vec::new();
        let mut unnests: Option<Vec<String>> = None;
        plan.apply(|node| {
            match node {
                LogicalPlan::TableScan(scan) => sources.push(scan.table_name.table().to_string()),
                LogicalPlan::Unnest(u) if u.list_type_columns.len() > 1 => {
                    unnests = Some(
                        u.list_type_columns
                            .iter()
                            .map(|(i, _)| unnest_source(u.input.schema().field(*i).name()))
                            .collect(),
                    )
                }
                _ => {}
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .map_err(|e| invalid(e.to_string()))?;
        if let Some(lists) = unnests {
            return Err(invalid(format!(
                "the SELECT unnests {} lists ({}); pipelines allow at most one UNNEST per SELECT (unnest the others in a WITH query)",
                lists.len(),
                lists.join(", ")
            )));
        }
        sources.sort();
        sources.dedup();
        let stream = match sources.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(invalid(format!(
                    "the SELECT reads no stream (streams: {})",
                    list(&streams.keys().cloned().collect::<Vec<_>>())
                )))
            }
            many => {
                return Err(invalid(format!(
                    "the SELECT reads {} streams ({}); a pipeline reads exactly one",
                    many.len(),
                    many.join(", ")
                )))
            }
        };
        let Some(slot) = slots.remove(&stream) else {
            return Err(invalid(format!(
                "the SELECT reads `{stream}`, which is no stream (streams: {})",
                list(&streams.keys().cloned().collect::<Vec<_>>())
            )));
        };
        let planned: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        let add_ingest_ts = planned.field_with_name(INGEST_TS_COLUMN).is_err();
        let output_schema = if add_ingest_ts {
            let mut fields: Vec<_> = planned.fields().iter().cloned().collect();
            let ts = slot.schema.field_with_name(INGEST_TS_COLUMN).map_err(|_| {
                invalid(format!(
                    "stream `{stream}` has no `{INGEST_TS_COLUMN}` column"
                ))
            })?;
            fields.push(Arc::new(ts.clone()));
            Arc::new(Schema::new(fields))
        } else {
            planned
        };
        Ok(PipelinePlan {
            name: name.to_string(),
            sink,
            stream,
            ctx,
            plan,
            slot,
            output_schema,
            add_ingest_ts,
        })
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sink the pipeline inserts into.
    pub fn sink(&self) -> &str {
        &self.sink
    }

    /// The stream the pipeline reads.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Whether `__ingest_ts` is added to the output because the SELECT
    /// dropped it.
    pub fn adds_ingest_ts(&self) -> bool {
        self.add_ingest_ts
    }

    /// The schema of every batch [`run`](Self::run) returns.
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output_schema
    }

    /// The same plan over a slot of its own: a run of the copy and a run
    /// of this plan may go on at once (each run fills its plan's slot, so
    /// one plan runs one batch at a time). Costs no planning.
    pub fn fork(&self) -> Result<PipelinePlan> {
        use datafusion::common::tree_node::Transformed;
        let slot = Arc::new(BatchSlot::new(self.slot.schema.clone()));
        let source = datafusion::datasource::provider_as_source(slot.clone());
        let plan = self
            .plan
            .clone()
            .transform_up_with_subqueries(|node| match node {
                LogicalPlan::TableScan(mut scan) if scan.table_name.table() == self.stream => {
                    scan.source = source.clone();
                    Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
                }
                other => Ok(Transformed::no(other)),
            })
            .map_err(|e| Error::InvalidSql {
                pipeline: self.name.clone(),
                message: e.to_string(),
            })?
            .data;
        Ok(PipelinePlan {
            name: self.name.clone(),
            sink: self.sink.clone(),
            stream: self.stream.clone(),
            ctx: self.ctx.clone(),
            plan,
            slot,
            output_schema: self.output_schema.clone(),
            add_ingest_ts: self.add_ingest_ts,
        })
    }

    /// Runs the SQL over `input` (batches of the stream's table schema, or
    /// of an earlier version of it: see [`PipelinePlan::conform`]).
    pub async fn run(&self, input: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        let input = self.conform_all(input)?;
        let newest = newest_ingest_ts(&input);
        self.slot.fill(input);
        let df = DataFrame::new(self.ctx.state(), self.plan.clone());
        let result = df.collect().await;
        self.slot.fill(Vec::new());
        let batches = result.map_err(|source| Error::Execution {
            pipeline: self.name.clone(),
            source,
        })?;
        if !self.add_ingest_ts {
            return Ok(batches);
        }
        batches
            .into_iter()
            .map(|b| {
                let ts = TimestampMicrosecondArray::from(vec![newest; b.num_rows()])
                    .with_timezone(pipe_tz(&self.output_schema));
                let mut columns = b.columns().to_vec();
                columns.push(Arc::new(ts));
                RecordBatch::try_new(self.output_schema.clone(), columns).map_err(|e| {
                    Error::Execution {
                        pipeline: self.name.clone(),
                        source: e.into(),
                    }
                })
            })
            .collect()
    }
}

impl PipelinePlan {
    /// The schema input batches are read as: the stream's table schema
    /// when the plan was made.
    pub fn input_schema(&self) -> &SchemaRef {
        &self.slot.schema
    }

    /// Runs the SQL over `input` like [`run`](Self::run), but when it fails
    /// because of some rows, sets those rows aside and keeps the output of
    /// the others. Fails only on errors that are not about the rows.
    pub async fn run_isolating(&self, input: Vec<RecordBatch>) -> Result<Isolated> {
        let input = self.conform_all(input)?;
        let schema = self.slot.schema.clone();
        let whole = match self.run(input.clone()).await {
            Ok(output) => {
                return Ok(Isolated {
                    output,
                    failed: Vec::new(),
                })
            }
            Err(Error::Execution { source, .. }) if is_row_error(&source) => {
                arrow::compute::concat_batches(&schema, &input).map_err(|e| Error::Execution {
                    pipeline: self.name.clone(),
                    source: e.into(),
                })?
            }
            Err(e) => return Err(e),
        };
        let mut isolated = Isolated::default();
        let (left, right) = halves(&whole);
        self.isolate(left, 0, &mut isolated).await?;
        self.isolate(right, whole.num_rows() / 2, &mut isolated)
            .await?;
        Ok(isolated)
    }

    /// Runs `batch` (rows from `offset` of the input); on a row error,
    /// splits it until the failing rows stand alone.
    fn isolate<'a>(
        &'a self,
        batch: RecordBatch,
        offset: usize,
        into: &'a mut Isolated,
    ) -> futures::future::BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if batch.num_rows() == 0 {
                return Ok(());
            }
            match self.run(vec![batch.clone()]).await {
                Ok(output) => into.output.extend(output),
                Err(Error::Execution { source, .. })
                    if is_row_error(&source) && batch.num_rows() == 1 =>
                {
                    into.failed.push(FailedRow {
                        index: offset,
                        event: row_json(&batch),
                        error: source.strip_backtrace(),
                        ingest_ts: newest_ingest_ts(std::slice::from_ref(&batch)),
                    });
                }
                Err(Error::Execution { source, .. }) if is_row_error(&source) => {
                    let (left, right) = halves(&batch);
                    let mid = left.num_rows();
                    self.isolate(left, offset, into).await?;
                    self.isolate(right, offset + mid, into).await?;
                }
                Err(e) => return Err(e),
            }
            Ok(())
        })
    }
}

/// The expression an UNNEST reads, from DataFusion's placeholder column
/// name `__unnest_placeholder(expr)`.
fn unnest_source(name: &str) -> String {
    name.strip_prefix("__unnest_placeholder(")
        .and_then(|n| n.strip_suffix(')'))
        .unwrap_or(name)
        .to_string()
}

/// A planning error's text, followed by where in the SQL it points, when
/// DataFusion knows.
fn with_position(e: &datafusion::error::DataFusionError) -> String {
    let text = e.strip_backtrace();
    match e.diagnostic().and_then(|d| d.span) {
        Some(span) if !text.contains(" at Line: ") => format!(
            "{text} (at line {}, column {})",
            span.start.line, span.start.column
        ),
        _ => text,
    }
}

fn halves(batch: &RecordBatch) -> (RecordBatch, RecordBatch) {
    let mid = batch.num_rows() / 2;
    (
        batch.slice(0, mid),
        batch.slice(mid, batch.num_rows() - mid),
    )
}

/// One row as a JSON object (arrow-json's encoding: binary as hex,
/// timestamps as RFC 3339).
fn row_json(row: &RecordBatch) -> String {
    let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
    let text = writer
        .write(row)
        .and_then(|()| writer.finish())
        .map(|()| writer.into_inner());
    match text {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim_end().to_string(),
        Err(e) => format!("{{\"unprintable\":{:?}}}", e.to_string()),
    }
}

fn pipe_tz(schema: &Schema) -> String {
    match schema
        .field_with_name(INGEST_TS_COLUMN)
        .map(Field::data_type)
    {
        Ok(arrow::datatypes::DataType::Timestamp(_, Some(tz))) => tz.to_string(),
        _ => "+00:00".to_string(),
    }
}

fn newest_ingest_ts(batches: &[RecordBatch]) -> i64 {
    batches
        .iter()
        .filter_map(|b| b.column_by_name(INGEST_TS_COLUMN))
        .filter_map(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
        .filter_map(arrow::compute::max)
        .max()
        .unwrap_or_default()
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        let mut names = names.to_vec();
        names.sort();
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A table whose rows are whatever batches were last put in it.
#[derive(Debug)]
pub struct BatchSlot {
    schema: SchemaRef,
    batches: Mutex<Vec<RecordBatch>>,
}

impl BatchSlot {
    /// An empty slot for batches of `schema`.
    pub fn new(schema: SchemaRef) -> Self {
        Self {
            schema,
            batches: Mutex::new(Vec::new()),
        }
    }

    /// Replaces the slot's contents.
    pub fn fill(&self, batches: Vec<RecordBatch>) {
        *self
            .batches
            .lock()
            .expect("slot lock is never held across a panic") = batches;
    }
}

#[async_trait]
impl TableProvider for BatchSlot {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let batches = self
            .batches
            .lock()
            .expect("slot lock is never held across a panic")
            .clone();
        let exec: Arc<dyn ExecutionPlan> =
            MemorySourceConfig::try_new_exec(&[batches], self.schema.clone(), projection.cloned())?;
        Ok(exec)
    }
}

#[cfg(test)]
mod tests;
