//! sqllogictest files for `pipe query` (`query/tests/slt/*.slt`), run
//! inside this test binary (one integration-test binary per crate).
//!
//! Each file gets a fresh local warehouse holding two tables written by the
//! sink, so the SQL reads real Iceberg tables:
//!
//! - `shop.orders` (`order_id`, `customer`, `region`, `amount`,
//!   `__ingest_ts`): 12 orders over three days, 2023-11-14 to 2023-11-16,
//!   partitioned by day, committed in two snapshots;
//! - `shop.customers` (`customer`, `tier`, `__ingest_ts`): 4 customers, one
//!   of whom never ordered.
//!
//! Statements run through `QueryEngine::read_only`, the path `POST
//! /v1/query` takes. NULL prints as `NULL`, an empty string as `(empty)`. In `DESCRIBE`
//! output, values that differ per run or per Parquet version (the
//! location, snapshot ids and times, sizes) print as `<location>`, `<id>`,
//! `<time>` and `<bytes>`.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use pipe_query::QueryEngine;
use pipe_sink::{open_catalog, CatalogSettings};

use crate::{timestamps, ts_field, write_table};
use sqllogictest::{DBOutput, DefaultColumnType};

const DAY: i64 = 86_400_000_000;
const FIRST_DAY: i64 = 1_699_920_000_000_000; // 2023-11-14T00:00:00Z

#[path = "../../../tests/support/slt_format.rs"]
mod slt_format;
use slt_format::{column_type, format_rows};
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Failed(String);

struct QueryDb {
    engine: QueryEngine,
    _dir: tempfile::TempDir,
}

impl QueryDb {
    async fn new() -> QueryDb {
        let dir = tempfile::tempdir().unwrap();
        let settings = CatalogSettings::local(dir.path());
        let orders = Arc::new(Schema::new(vec![
            Field::new("order_id", DataType::Int64, false),
            Field::new("customer", DataType::Utf8, false),
            Field::new("region", DataType::Utf8, true),
            Field::new("amount", DataType::Float64, true),
            ts_field(),
        ]));
        let customers = [
            "ann", "bob", "cat", "ann", "bob", "ann", "dan", "ann", "bob", "cat", "ann", "bob",
        ];
        let regions = [
            Some("north"),
            Some("south"),
            Some("north"),
            None,
            Some("south"),
            Some("east"),
            Some("north"),
            Some("north"),
            Some("east"),
            Some("south"),
            Some("north"),
            Some("south"),
        ];
        let amounts = [
            Some(10.0),
            Some(25.5),
            Some(7.25),
            Some(100.0),
            None,
            Some(42.0),
            Some(3.5),
            Some(18.0),
            Some(60.0),
            Some(12.5),
            Some(9.0),
            Some(31.0),
        ];
        let batch = |range: std::ops::Range<usize>| {
            RecordBatch::try_new(
                orders.clone(),
                vec![
                    Arc::new(Int64Array::from_iter_values(
                        range.clone().map(|i| i as i64 + 1),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        range.clone().map(|i| customers[i]),
                    )),
                    Arc::new(StringArray::from(
                        range.clone().map(|i| regions[i]).collect::<Vec<_>>(),
                    )),
                    Arc::new(Float64Array::from(
                        range.clone().map(|i| amounts[i]).collect::<Vec<_>>(),
                    )),
                    // Four orders a day, an hour apart.
                    timestamps(range.map(|i| {
                        FIRST_DAY + (i as i64 / 4) * DAY + (i as i64 % 4) * 3_600_000_000
                    })),
                ],
            )
            .unwrap()
        };
        let catalog = open_catalog(&settings).await.unwrap();
        write_table(
            catalog.clone(),
            "shop",
            "orders",
            &orders,
            &[&[batch(0..8)], &[batch(8..12)]],
        )
        .await;
        let people = Arc::new(Schema::new(vec![
            Field::new("customer", DataType::Utf8, false),
            Field::new("tier", DataType::Utf8, false),
            ts_field(),
        ]));
        let customers = RecordBatch::try_new(
            people.clone(),
            vec![
                Arc::new(StringArray::from(vec!["ann", "bob", "cat", "eve"])),
                Arc::new(StringArray::from(vec!["gold", "silver", "gold", "bronze"])),
                timestamps([FIRST_DAY; 4]),
            ],
        )
        .unwrap();
        write_table(
            catalog.clone(),
            "shop",
            "customers",
            &people,
            &[&[customers]],
        )
        .await;
        let engine = QueryEngine::new(catalog).await.unwrap();
        QueryDb { engine, _dir: dir }
    }
}

/// `DESCRIBE` facts that differ per run, as placeholders.
fn stable(row: Vec<String>) -> Vec<String> {
    let placeholder = match row.get(1).map(String::as_str) {
        Some("location") => Some("<location>"),
        Some("current_snapshot") => Some("<id>"),
        Some("snapshot_time") => Some("<time>"),
        Some("size_bytes") => Some("<bytes>"),
        _ => None,
    };
    match (row.first().map(String::as_str), placeholder) {
        (Some("table"), Some(p)) => vec![row[0].clone(), row[1].clone(), p.to_string()],
        _ => row,
    }
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for QueryDb {
    type Error = Failed;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Failed> {
        // Through the read-only path the HTTP endpoint uses, so the files
        // can show what it refuses.
        let (answer, _) = self
            .engine
            .read_only(sql, 1_000_000)
            .await
            .map_err(|e| Failed(e.to_string()))?;
        let batches = answer.batches;
        let Some(first) = batches.first() else {
            return Ok(DBOutput::Rows {
                types: Vec::new(),
                rows: Vec::new(),
            });
        };
        let types = first
            .schema()
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        let mut rows = Vec::new();
        for b in &batches {
            let formatted = format_rows(b, b.num_columns()).map_err(|e| Failed(e.to_string()))?;
            rows.extend(formatted.into_iter().map(stable));
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}
}

#[tokio::test(flavor = "multi_thread")]
async fn slt_files() {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the slt folder")
        .map(|e| e.expect("a folder entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    let mut failures = Vec::new();
    for file in &files {
        let mut runner = sqllogictest::Runner::new(|| async { Ok(QueryDb::new().await) });
        if let Err(e) = runner.run_file_async(file).await {
            failures.push(format!("{}\n{}", file.display(), e.display(false)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `table_at` reads the table as of a snapshot, by id or by time. (In Rust
/// rather than in an `.slt` file: snapshot ids and times differ per run.)
#[tokio::test(flavor = "multi_thread")]
async fn time_travel_reads_a_table_as_of_a_snapshot() {
    let db = QueryDb::new().await;
    let catalog = open_catalog(&CatalogSettings::local(db._dir.path()))
        .await
        .unwrap();
    let ident = iceberg::TableIdent::from_strs(["shop", "orders"]).unwrap();
    let table = catalog.load_table(&ident).await.unwrap();
    let history = table.metadata().history().to_vec();
    assert_eq!(history.len(), 2);
    let count = |sql: String| {
        let engine = &db.engine;
        async move {
            let rows = engine.sql(&sql).await?;
            Ok::<i64, pipe_query::Error>(
                rows[0]
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .value(0),
            )
        }
    };
    let first = history[0].snapshot_id;
    let at = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339()
    };
    assert_eq!(
        count(format!(
            "SELECT count(*) FROM table_at('shop.orders', {first})"
        ))
        .await
        .unwrap(),
        8
    );
    assert_eq!(
        count(format!(
            "SELECT count(*) FROM table_at('shop.orders', '{}')",
            at(history[0].timestamp_ms)
        ))
        .await
        .unwrap(),
        8
    );
    assert_eq!(
        count(format!(
            "SELECT count(*) FROM table_at('shop.orders', '{}')",
            at(history[1].timestamp_ms + 1000)
        ))
        .await
        .unwrap(),
        12
    );
    assert_eq!(
        count("SELECT count(*) FROM shop.orders".into())
            .await
            .unwrap(),
        12
    );
    // Joined with the current table: the orders the second commit added.
    assert_eq!(
        count(format!(
            "SELECT count(*) FROM shop.orders o WHERE o.order_id NOT IN (SELECT order_id FROM table_at('shop.orders', {first}))"
        ))
        .await
        .unwrap(),
        4
    );
    let too_early = count(format!(
        "SELECT count(*) FROM table_at('shop.orders', '{}')",
        at(history[0].timestamp_ms - 86_400_000)
    ))
    .await
    .unwrap_err();
    assert_eq!(too_early.kind(), pipe_query::ErrorKind::InvalidInput);
    assert!(
        too_early
            .to_string()
            .contains("has no snapshot at or before"),
        "{too_early}"
    );
    let unknown = count("SELECT count(*) FROM table_at('shop.orders', 42)".into())
        .await
        .unwrap_err();
    assert!(
        unknown.to_string().contains("has no snapshot 42"),
        "{unknown}"
    );
}
