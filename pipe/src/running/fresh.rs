//! What each running pipeline has acknowledged and not committed, for
//! fresh reads (the rules are in `pipe_query::fresh`).
//!
//! The supervisor registers every pipeline that writes an Iceberg table as
//! it starts its task: the table, and the pipeline's quarantine table for
//! rows its SQL fails on. A query naming such a table pins the stream's
//! log at the pipeline's committed position ([`StreamLog::pin`]), loads
//! the table, and reads the records past the last offset that snapshot
//! holds for the pipeline: past its own newest commit from this log, and
//! never before the task's first offset (a `start` past older events, or
//! a position taken over from another pipeline). They run through a fork
//! of the pipeline's plan, so the rows are the ones its next commit will
//! hold, with these differences: a pipeline whose SELECT drops
//! `__ingest_ts` stamps each batch with its newest event's time, and the
//! batches a query reads are not the ones the task will commit; and while
//! a change to the pipeline switches it, the plan a query uses may be
//! either.
//!
//! A read is bounded by `[query] max_unflushed_bytes` of buffer records
//! per table: past it the query fails (503) naming the lagging pipeline,
//! rather than making every query as slow as the pipeline is behind.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use datafusion::common::{DataFusionError, Result as DFResult};
use futures::stream::BoxStream;
use iceberg::table::Table;
use iceberg::TableIdent;
use pipe_ingest::buffer::BufferReader;
use pipe_ingest::log::{ReadPin, StreamLog};
use pipe_ingest::payload::{decode_batches, decode_quarantine};
use pipe_query::fresh::{Pinned, Tail, Unflushed};
use pipe_transform::{failed_rows_batch, PipelinePlan};

use crate::running::pipeline::Part;

/// Buffer records read per step of a fresh read.
const READ_RECORDS: usize = 4096;
/// Buffer bytes read per step of a fresh read.
const READ_BYTES: usize = 16 << 20;

/// The tables running pipelines write, with what each has not committed.
#[derive(Debug)]
pub struct FreshReads {
    tables: RwLock<HashMap<TableIdent, Arc<Source>>>,
    /// `[query] max_unflushed_bytes`.
    max_bytes: u64,
}

/// One pipeline's table: how to read what it has not committed.
#[derive(Debug)]
pub struct Source {
    /// The pipeline: the log consumer whose position is pinned.
    pub pipeline: String,
    /// The name the table's commits record: the pipeline, or
    /// `<pipeline>__failed` for its quarantine table.
    pub writer: String,
    pub log: Arc<StreamLog>,
    /// A fork of the task's plan; each read forks it again.
    pub plan: PipelinePlan,
    pub part: Part,
    /// The table holds the rows the SQL fails on, not its output.
    pub failed_rows: bool,
    /// Whether the pipeline has a quarantine table (its rows are then
    /// split as the task splits them).
    pub isolates: bool,
    /// The task's first offset.
    pub started_at: u64,
}

impl FreshReads {
    /// No table yet; reads of at most `max_bytes` of records per table.
    pub fn new(max_bytes: u64) -> FreshReads {
        FreshReads {
            tables: RwLock::default(),
            max_bytes,
        }
    }

    /// `table` is written by `source` from now on.
    pub fn register(&self, table: TableIdent, source: Source) {
        let mut tables = self.tables.write().expect("never poisoned");
        tables.insert(table, Arc::new(source));
    }

    /// Pipeline `name` is gone: its tables are read committed only.
    pub fn remove(&self, name: &str) {
        let mut tables = self.tables.write().expect("never poisoned");
        tables.retain(|_, s| s.pipeline != name);
    }
}

impl Unflushed for FreshReads {
    fn pin(&self, table: &TableIdent) -> Option<Box<dyn Pinned>> {
        let source = self
            .tables
            .read()
            .expect("never poisoned")
            .get(table)?
            .clone();
        let pin = source.log.pin(&source.pipeline);
        Some(Box::new(PinnedSource {
            source,
            pin,
            max_bytes: self.max_bytes,
            table: table.to_string(),
        }))
    }
}

#[derive(Debug)]
struct PinnedSource {
    source: Arc<Source>,
    pin: ReadPin,
    max_bytes: u64,
    table: String,
}

fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl Pinned for PinnedSource {
    fn tail(self: Box<Self>, table: &Table) -> DFResult<Arc<dyn Tail>> {
        let s = &self.source;
        let own = pipe_sink::commit::last_committed(table, &s.writer, Some(s.log.id()), true)
            .map_err(external)?
            .map(|c| c.range.last + 1);
        // Never before what the pin keeps or the buffer holds: records a
        // snapshot lacks below them (one rolled back by another engine)
        // are no more the pipeline's to write.
        let from = own
            .unwrap_or(0)
            .max(s.started_at)
            .max(self.pin.from())
            .max(s.log.first_offset());
        let to = s.log.reader(from).durable_end().max(from);
        Ok(Arc::new(BufferTail {
            records: s.log.records_in(from, to),
            from,
            to,
            source: self.source.clone(),
            pin: Arc::new(self.pin),
            max_bytes: self.max_bytes,
            table: self.table,
        }))
    }
}

/// The records `from..to` of one pinned source. Each read of it (a query
/// may name the table twice) reads them again, through its own fork of
/// the plan: the pin keeps them.
#[derive(Debug)]
struct BufferTail {
    records: u64,
    from: u64,
    to: u64,
    source: Arc<Source>,
    pin: Arc<ReadPin>,
    max_bytes: u64,
    table: String,
}

#[derive(Debug)]
struct ReadState {
    reader: BufferReader,
    to: u64,
    plan: PipelinePlan,
    bytes: u64,
}

impl Tail for BufferTail {
    fn records(&self) -> u64 {
        self.records
    }

    fn rows(&self) -> BoxStream<'static, DFResult<arrow::record_batch::RecordBatch>> {
        use futures::{StreamExt, TryStreamExt};
        let plan = match self.source.plan.fork() {
            Ok(plan) => plan,
            Err(e) => return futures::stream::once(async move { Err(external(e)) }).boxed(),
        };
        let state = ReadState {
            reader: self.source.log.reader(self.from),
            to: self.to,
            plan,
            bytes: 0,
        };
        let source = self.source.clone();
        let pin = self.pin.clone();
        let limit = (self.max_bytes, self.table.clone());
        futures::stream::try_unfold(state, move |state| {
            let source = source.clone();
            // The pin lives as long as the stream.
            let _held = &pin;
            let limit = limit.clone();
            async move { step(state, &source, limit).await }
        })
        .map(|batches| batches.map(|b| futures::stream::iter(b.into_iter().map(Ok))))
        .try_flatten()
        .boxed()
    }
}

/// Reads, decodes and transforms one step's records: the batches, and
/// the state for the next step (`None` once `to` is reached).
async fn step(
    mut state: ReadState,
    source: &Source,
    (max_bytes, table): (u64, String),
) -> DFResult<Option<(Vec<arrow::record_batch::RecordBatch>, ReadState)>> {
    let left = state.to.saturating_sub(state.reader.position());
    if left == 0 {
        return Ok(None);
    }
    if state.bytes == 0 && crate::crash::fault(crate::crash::SLOW_FRESH_READ) {
        tokio::time::sleep(crate::crash::fault_delay()).await;
    }
    let max = READ_RECORDS.min(usize::try_from(left).unwrap_or(usize::MAX));
    let (reader, records) = tokio::task::spawn_blocking(move || {
        let read = state.reader.read(max, READ_BYTES);
        (state.reader, read)
    })
    .await
    .map_err(external)?;
    state.reader = reader;
    let records = records.map_err(external)?;
    if records.is_empty() {
        return Err(DataFusionError::Internal(format!(
            "the buffer of stream `{}` ended at offset {} before the durable end {}",
            source.log.name(),
            state.reader.position(),
            state.to
        )));
    }
    state.bytes += records.iter().map(|r| r.payload.len() as u64).sum::<u64>();
    if state.bytes > max_bytes {
        return Err(DataFusionError::External(
            format!(
                "pipeline `{}` has more than {} of acknowledged events not yet committed to `{table}`, more than a fresh read takes (`[query] max_unflushed_bytes`): it is behind (see `GET /v1/pipelines/{}`). Read what is committed (`committed_only`, `pipe query --committed`) or raise the setting",
                source.pipeline,
                pipe_query::human_bytes(usize::try_from(max_bytes).unwrap_or(usize::MAX)),
                source.pipeline,
            )
            .into(),
        ));
    }
    let mut input = Vec::new();
    for r in &records {
        let decoded = match source.part {
            Part::Events => decode_batches(&r.payload),
            Part::Quarantine => decode_quarantine(&r.payload),
        };
        input.extend(decoded.map_err(external)?);
    }
    let run_error = |e: pipe_transform::Error| {
        DataFusionError::External(
            format!(
                "running pipeline `{}`'s SQL over what it has not committed to `{table}`: {e}; `committed_only` reads the table without it",
                source.pipeline
            )
            .into(),
        )
    };
    let output = if source.failed_rows {
        let isolated = state.plan.run_isolating(input).await.map_err(run_error)?;
        match isolated.failed.is_empty() {
            true => Vec::new(),
            false => vec![failed_rows_batch(&isolated.failed)],
        }
    } else if source.isolates {
        state
            .plan
            .run_isolating(input)
            .await
            .map_err(run_error)?
            .output
    } else {
        state.plan.run(input).await.map_err(run_error)?
    };
    Ok(Some((output, state)))
}
