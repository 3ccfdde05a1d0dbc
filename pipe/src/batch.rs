//! Pipelines in a batch job: the same validation, SQL and exactly-once
//! sinks as the server, in-process, over records the job already has.
//!
//! A [`BatchJob`] is one pipeline (`INSERT INTO <sink> SELECT … FROM
//! <stream>`) from an in-memory stream into one Iceberg table. Each call to
//! [`BatchJob::run_ndjson_files`], [`BatchJob::run_values`] or
//! [`BatchJob::run_batches`] is one *batch* with a caller-chosen `batch_id`
//! and is committed as one Iceberg snapshot whose commit id is derived from
//! the job's name and the batch id, exactly as the server commits buffer
//! ranges. Running the same batch again finds its commit and adds nothing
//! (its data files are deleted), so a job that crashed or was re-run does
//! not duplicate anything.
//!
//! Batch ids must increase from one batch to the next (a date such as
//! `20261123`, or an hour, works well): a batch id at or below the last one
//! committed is taken as already done.
//!
//! Events are validated against the stream schema before anything is
//! written; a batch with a bad event fails as a whole and reports every
//! problem, like a refused HTTP request. Rows the SQL fails on are returned
//! in [`BatchReport::failed`], never dropped silently.
//!
//! ```no_run
//! # async fn demo() -> pipe::Result<()> {
//! use pipe::batch::{BatchJob, BatchJobOptions};
//! use pipe::schemas::StreamSchema;
//! use pipe::sink::CatalogSettings;
//!
//! let schema = StreamSchema::from_json(r#"{"fields":[
//!     {"name":"user_id","type":"string","required":true},
//!     {"name":"amount","type":"float64"}]}"#)?;
//! let job = BatchJob::new(BatchJobOptions {
//!     name: "daily_load".into(),
//!     catalog: CatalogSettings::local(std::path::Path::new("data")),
//!     schema: Some(schema),
//!     sql: "INSERT INTO sales SELECT user_id, amount FROM events WHERE amount > 0".into(),
//!     namespace: "shop".into(),
//!     table: "sales".into(),
//!     write: Default::default(),
//! })
//! .await?;
//! let report = job.run_ndjson_files(20261123, &["day/2026-11-23.ndjson"]).await?;
//! println!("{} rows committed (already there: {})", report.rows, report.already_committed);
//! let totals = pipe::batch::query(&job.catalog(), "SELECT count(*) FROM shop.sales").await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::path::Path;

use arrow::record_batch::RecordBatch;
use pipe_schemas::{BodyFormat, Decoded, EventDecoder, StreamSchema};
use pipe_sink::{CatalogSettings, CommitOutcome, OffsetRange, TableSink, WriteOptions};
use pipe_transform::{FailedRow, PipelinePlan};
use tokio::sync::Mutex;

use crate::{Error, Result};

/// The in-memory stream a job's SQL reads from.
pub const STREAM: &str = "events";

/// What a batch job runs.
#[derive(Debug, Clone)]
pub struct BatchJobOptions {
    /// The job's name: its commits are recorded under it.
    pub name: String,
    pub catalog: CatalogSettings,
    /// The events' schema (the Pipelines field format); `None`:
    /// unstructured (one `value` JSON column).
    pub schema: Option<StreamSchema>,
    /// `INSERT INTO <table> SELECT … FROM events`.
    pub sql: String,
    pub namespace: String,
    pub table: String,
    /// Compression, row groups, partitioning, snapshot retention.
    pub write: WriteOptions,
}

/// What one batch did.
#[derive(Debug, Clone)]
pub struct BatchReport {
    pub batch_id: u64,
    /// Events read.
    pub events: usize,
    /// Rows committed by this run (0 when the batch was already there).
    pub rows: usize,
    /// The batch had been committed by an earlier run: nothing was added.
    pub already_committed: bool,
    /// Rows the SQL failed on, with the error (not written).
    pub failed: Vec<FailedRow>,
}

/// One pipeline into one table, run batch by batch.
pub struct BatchJob {
    name: String,
    catalog_settings: CatalogSettings,
    decoder: EventDecoder,
    plan: PipelinePlan,
    sink: Mutex<TableSink>,
}

impl std::fmt::Debug for BatchJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchJob")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl BatchJob {
    /// Plans the SQL and opens (creating if needed) the table.
    pub async fn new(options: BatchJobOptions) -> Result<BatchJob> {
        let decoder = EventDecoder::new(options.schema.clone());
        let tables = HashMap::from([(STREAM.to_string(), decoder.table_schema())]);
        let plan = PipelinePlan::new(
            &options.name,
            &options.sql,
            &tables,
            std::slice::from_ref(&options.table),
        )
        .await?;
        let catalog = pipe_sink::open_catalog(&options.catalog).await?;
        let sink = TableSink::open(
            catalog,
            &options.namespace,
            &options.table,
            &options.name,
            &options.table,
            plan.output_schema(),
            WriteOptions {
                owns_metadata_files: options.catalog.owns_metadata_files(),
                warehouse: options
                    .catalog
                    .owns_metadata_files()
                    .then(|| options.catalog.warehouse.location.clone()),
                committer: Some(pipe_sink::maintenance::Committer::open(&options.catalog).await?),
                ..options.write
            },
        )
        .await?;
        Ok(BatchJob {
            name: options.name,
            catalog_settings: options.catalog,
            decoder,
            plan,
            sink: Mutex::new(sink),
        })
    }

    /// The catalog the job writes to (for [`query`]).
    pub fn catalog(&self) -> CatalogSettings {
        self.catalog_settings.clone()
    }

    /// Loads NDJSON files (one event per line) as batch `batch_id`.
    pub async fn run_ndjson_files(
        &self,
        batch_id: u64,
        files: &[impl AsRef<Path>],
    ) -> Result<BatchReport> {
        let mut batches = Vec::new();
        for file in files {
            let path = file.as_ref();
            let bytes = std::fs::read(path)
                .map_err(|e| Error::Config(format!("reading `{}`: {e}", path.display())))?;
            batches.push(self.decode(&bytes, BodyFormat::NdJson, &path.display().to_string())?);
        }
        self.run_batches(batch_id, batches).await
    }

    /// Loads JSON values (each an event object) as batch `batch_id`.
    pub async fn run_values(
        &self,
        batch_id: u64,
        events: &[serde_json::Value],
    ) -> Result<BatchReport> {
        let body = serde_json::to_vec(events).map_err(|e| Error::Internal(e.to_string()))?;
        let batch = self.decode(&body, BodyFormat::Json, "the events")?;
        self.run_batches(batch_id, vec![batch]).await
    }

    /// Runs the SQL over `input` (batches of the stream's table schema, with
    /// `__ingest_ts`) and commits the result as batch `batch_id`.
    pub async fn run_batches(&self, batch_id: u64, input: Vec<RecordBatch>) -> Result<BatchReport> {
        let events = input.iter().map(RecordBatch::num_rows).sum();
        let mut sink = self.sink.lock().await;
        let range = OffsetRange {
            first: batch_id,
            last: batch_id,
        };
        let done = |already: bool, rows, failed| BatchReport {
            batch_id,
            events,
            rows,
            already_committed: already,
            failed,
        };
        if sink
            .last_committed()
            .await?
            .is_some_and(|c| c.range.last >= batch_id)
        {
            return Ok(done(true, 0, Vec::new()));
        }
        let isolated = self.plan.run_isolating(input).await?;
        let mut rows = 0;
        for batch in &isolated.output {
            sink.write(batch).await?;
            rows += batch.num_rows();
        }
        let files = sink.close_files().await?;
        Ok(match sink.commit(range, &files).await? {
            CommitOutcome::Committed { .. } => done(false, rows, isolated.failed),
            CommitOutcome::AlreadyCommitted => done(true, 0, Vec::new()),
        })
    }

    /// Validates and decodes one body, stamping `__ingest_ts` with now.
    fn decode(&self, body: &[u8], format: BodyFormat, what: &str) -> Result<RecordBatch> {
        let batch = match self.decoder.decode(body, format)? {
            Decoded::Batch { batch, .. } => batch,
            Decoded::Rejected(errors) => {
                let shown: Vec<String> = errors
                    .iter()
                    .take(10)
                    .map(|e| {
                        let at = if e.field.is_empty() {
                            String::new()
                        } else {
                            format!(" `{}`", e.field)
                        };
                        format!("event {}{at}: {}", e.index, e.message)
                    })
                    .collect();
                return Err(Error::Config(format!(
                    "{what}: {} bad events, nothing loaded: {}",
                    errors.len(),
                    shown.join("; ")
                )));
            }
        };
        Ok(pipe_schemas::stamp_ingest_ts(
            &batch,
            pipe_schemas::now_micros(),
        )?)
    }
}

/// Runs one SQL statement over the catalog's tables; the result as Arrow.
pub async fn query(catalog: &CatalogSettings, sql: &str) -> Result<Vec<RecordBatch>> {
    let catalog = pipe_sink::open_catalog(catalog).await?;
    let engine = pipe_query::QueryEngine::new(catalog).await?;
    Ok(engine.sql(sql).await?)
}
