//! sqllogictest suite for pipeline SQL: every `.slt` file beside this one,
//! each against a fresh set of streams and sinks.
//!
//! Besides `INSERT INTO sink SELECT … FROM stream`, the files use a few
//! commands to set the scene, so that events go through the same validation
//! and decoding as over HTTP:
//!
//! - `CREATE STREAM name {schema}`: a stream with a Pipelines-format schema
//!   (the JSON may span lines); `CREATE STREAM name` alone is unstructured.
//! - `CREATE SINK name`.
//! - `SEND stream [events]`: validated and decoded by `EventDecoder`, then
//!   stamped with `__ingest_ts` = 2023-11-14T22:13:20Z; a bad event fails the
//!   statement with the validation errors.
//! - `CLEAR stream`: forgets the events sent so far.
//! - `FAILED ROWS`: the rows the last INSERT's SQL failed on, as
//!   `(event, error)`.
//!
//! An INSERT runs the pipeline's SQL over every event sent to its stream
//! (`PipelinePlan::run_isolating`, as the server does) and returns the rows
//! it would write, without the `__ingest_ts` the pipeline adds back. NULL
//! prints as `NULL`, an empty string as `(empty)`.

use std::collections::HashMap;
use std::path::PathBuf;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use pipe_schemas::{BodyFormat, Decoded, EventDecoder, StreamSchema};
use pipe_transform::{FailedRow, PipelinePlan};
use sqllogictest::{DBOutput, DefaultColumnType};

const INGEST_TS: i64 = 1_700_000_000_000_000;

#[path = "../../../tests/support/slt_format.rs"]
mod slt_format;
use slt_format::{column_type, format_rows};
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Failed(String);

#[derive(Default)]
struct PipelineDb {
    streams: HashMap<String, (EventDecoder, Vec<RecordBatch>)>,
    sinks: Vec<String>,
    failed: Vec<FailedRow>,
}

impl PipelineDb {
    fn create_stream(&mut self, rest: &str) -> Result<(), Failed> {
        let (name, schema) = match rest.split_once(char::is_whitespace) {
            Some((name, schema)) => (name, Some(schema.trim())),
            None => (rest, None),
        };
        let schema = schema
            .map(StreamSchema::from_json)
            .transpose()
            .map_err(|e| Failed(e.to_string()))?;
        self.streams
            .insert(name.to_string(), (EventDecoder::new(schema), Vec::new()));
        Ok(())
    }

    fn send(&mut self, rest: &str) -> Result<u64, Failed> {
        let (name, body) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| Failed("SEND stream [events]".into()))?;
        let (decoder, batches) = self
            .streams
            .get_mut(name)
            .ok_or_else(|| Failed(format!("no stream `{name}`")))?;
        match decoder
            .decode(body.trim().as_bytes(), BodyFormat::Json)
            .map_err(|e| Failed(e.to_string()))?
        {
            Decoded::Batch { batch, .. } => {
                let rows = batch.num_rows() as u64;
                batches.push(
                    pipe_schemas::stamp_ingest_ts(&batch, INGEST_TS)
                        .map_err(|e| Failed(e.to_string()))?,
                );
                Ok(rows)
            }
            Decoded::Rejected(errors) => Err(Failed(
                errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            )),
        }
    }

    async fn insert(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Failed> {
        let tables: HashMap<String, SchemaRef> = self
            .streams
            .iter()
            .map(|(name, (d, _))| (name.clone(), d.table_schema()))
            .collect();
        let plan = PipelinePlan::new("slt", sql, &tables, &self.sinks)
            .await
            .map_err(|e| Failed(e.to_string()))?;
        let input = self.streams[plan.stream()].1.clone();
        let out = plan
            .run_isolating(input)
            .await
            .map_err(|e| Failed(e.to_string()))?;
        self.failed = out.failed;
        let shown = plan.output_schema().fields().len() - usize::from(plan.adds_ingest_ts());
        let types = plan.output_schema().fields()[..shown]
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        let mut rows = Vec::new();
        for batch in &out.output {
            rows.extend(format_rows(batch, shown).map_err(|e| Failed(e.to_string()))?);
        }
        Ok(DBOutput::Rows { types, rows })
    }
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for PipelineDb {
    type Error = Failed;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Failed> {
        let sql = sql.trim();
        let (word, rest) = sql.split_once(char::is_whitespace).unwrap_or((sql, ""));
        let rest = rest.trim();
        match word.to_ascii_uppercase().as_str() {
            "CREATE" => match rest.split_once(char::is_whitespace) {
                Some((kind, rest)) if kind.eq_ignore_ascii_case("STREAM") => {
                    self.create_stream(rest.trim())?;
                    Ok(DBOutput::StatementComplete(0))
                }
                Some((kind, name)) if kind.eq_ignore_ascii_case("SINK") => {
                    self.sinks.push(name.trim().to_string());
                    Ok(DBOutput::StatementComplete(0))
                }
                _ => Err(Failed(format!(
                    "expected `CREATE STREAM name [schema]` or `CREATE SINK name`, got: {sql}"
                ))),
            },
            "SEND" => self.send(rest).map(DBOutput::StatementComplete),
            "CLEAR" => {
                let stream = self
                    .streams
                    .get_mut(rest)
                    .ok_or_else(|| Failed(format!("no stream `{rest}`")))?;
                stream.1.clear();
                Ok(DBOutput::StatementComplete(0))
            }
            "FAILED" => Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Text, DefaultColumnType::Text],
                rows: self
                    .failed
                    .iter()
                    .map(|f| vec![f.event.clone(), f.error.clone()])
                    .collect(),
            }),
            _ => self.insert(sql).await,
        }
    }

    async fn shutdown(&mut self) {}
}

fn main() {
    // Read at run time: a binary built from another clone sharing the
    // target folder must read this checkout's files.
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("tests/slt");
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the slt folder")
        .map(|e| e.expect("a folder entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .filter(|p| {
            filter
                .as_ref()
                .is_none_or(|f| p.to_string_lossy().contains(f.as_str()))
        })
        .collect();
    files.sort();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut failures = 0;
    for file in &files {
        let mut runner = sqllogictest::Runner::new(|| async { Ok(PipelineDb::default()) });
        match runtime.block_on(runner.run_file_async(file)) {
            Ok(()) => println!("ok      {}", file.display()),
            Err(e) => {
                failures += 1;
                println!("FAILED  {}\n{}", file.display(), e.display(false));
            }
        }
    }
    println!("{} slt files, {failures} failed", files.len());
    if failures > 0 {
        std::process::exit(1);
    }
}
