//! `pipe query` beside DuckDB, on the same Parquet files, in one run.
//!
//! The sink (`TableSink`, default write options: zstd, 128k-row groups,
//! `day(__ingest_ts)` partitions) writes two tables into a local
//! warehouse:
//!
//! - `shop.events`: the fraud-detection tutorial's transactions
//!   (`../shared/reference/r2-sql.md`), 10M by default, spread evenly over
//!   30 days of `__ingest_ts`, with pseudo-random users, amounts, places
//!   and merchants; with a bloom filter on `transaction_id`
//!   (`bloom_filter_columns`), as a table people look transactions up in
//!   would have (DuckDB reads it too);
//! - `shop.users`: the 9,000 users, with a segment and a home country, for
//!   the join.
//!
//! The warehouse is kept (under the target folder) and reused while the
//! event count matches. Then each query of [`QUERIES`] runs on both
//! engines, interleaved: DuckDB (Python, `threads` = this machine's cores)
//! over views of `read_parquet` on exactly the data files the tables' current
//! snapshots list (`t$files`), and `pipe_query::QueryEngine` in this
//! process (catalog, table load and planning included). Each takes one
//! warm-up and then the median of `RUNS` runs; the result row counts must
//! agree. It prints each time and ratio (pipe / DuckDB), the geometric
//! mean, and the bytes a one-day filter reads against the same query
//! without it.
//!
//! A program that prints figures, not a test. DuckDB comes from the test
//! virtualenv; `scripts/bench-query` sets it up and runs this:
//!
//! ```sh
//! scripts/bench-query [EVENTS] [QUERY…]   # QUERY: a part of a query's name
//! # or: PIPE_TEST_PYTHON=…/bin/python cargo bench -p pipe-query --bench query -- [EVENTS]
//! ```

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use pipe_query::QueryEngine;
use pipe_sink::{open_catalog, CatalogSettings, OffsetRange, TableSink, WriteOptions};

#[path = "../../benches/fraud_events.rs"]
mod fraud_events;
mod shop;
use fraud_events::LOCATIONS;
use shop::{events, events_schema, ingest_ts, splitmix, DAYS, START_MICROS, USERS};

const DEFAULT_EVENTS: usize = 10_000_000;
/// Runs per query and engine after the warm-up (`PIPE_BENCH_RUNS` to change).
const RUNS: usize = 5;
const SEGMENTS: [&str; 4] = ["new", "regular", "vip", "dormant"];

/// Each query as `pipe query` and as DuckDB spell it (the same query;
/// only function names and timestamp literals differ).
const QUERIES: [(&str, &str, &str); 14] = [
    ("count", "SELECT count(*) FROM shop.events", "SELECT count(*) FROM events"),
    (
        "count where",
        "SELECT count(*) FROM shop.events WHERE is_fraud",
        "SELECT count(*) FROM events WHERE is_fraud",
    ),
    (
        "group by location",
        "SELECT location, count(*), sum(amount), avg(amount) FROM shop.events GROUP BY location ORDER BY location",
        "SELECT location, count(*), sum(amount), avg(amount) FROM events GROUP BY location ORDER BY location",
    ),
    (
        "group by 2 keys",
        "SELECT location, merchant_category, count(*) AS n FROM shop.events GROUP BY 1, 2 ORDER BY n DESC, 1, 2 LIMIT 10",
        "SELECT location, merchant_category, count(*) AS n FROM events GROUP BY 1, 2 ORDER BY n DESC, 1, 2 LIMIT 10",
    ),
    (
        "top users by spend",
        "SELECT user_id, sum(amount) AS spent FROM shop.events GROUP BY user_id ORDER BY spent DESC LIMIT 10",
        "SELECT user_id, sum(amount) AS spent FROM events GROUP BY user_id ORDER BY spent DESC LIMIT 10",
    ),
    (
        "one day",
        "SELECT count(*), sum(amount) FROM shop.events WHERE __ingest_ts >= '2026-10-15T00:00:00Z' AND __ingest_ts < '2026-10-16T00:00:00Z'",
        "SELECT count(*), sum(amount) FROM events WHERE __ingest_ts >= TIMESTAMPTZ '2026-10-15 00:00:00+00' AND __ingest_ts < TIMESTAMPTZ '2026-10-16 00:00:00+00'",
    ),
    (
        "one user",
        "SELECT count(*), sum(amount) FROM shop.events WHERE user_id = 4242",
        "SELECT count(*), sum(amount) FROM events WHERE user_id = 4242",
    ),
    (
        "one transaction",
        "SELECT * FROM shop.events WHERE transaction_id = 'ef114740-4b2c-4d5e-9f01-000005000000'",
        "SELECT * FROM events WHERE transaction_id = 'ef114740-4b2c-4d5e-9f01-000005000000'",
    ),
    (
        "per day",
        "SELECT date_trunc('day', __ingest_ts) AS day, count(*), sum(amount) FROM shop.events GROUP BY day ORDER BY day",
        "SELECT date_trunc('day', __ingest_ts) AS day, count(*), sum(amount) FROM events GROUP BY day ORDER BY day",
    ),
    (
        "join users",
        "SELECT u.segment, count(*), sum(e.amount) FROM shop.events e JOIN shop.users u ON e.user_id = u.user_id WHERE e.is_fraud GROUP BY u.segment ORDER BY u.segment",
        "SELECT u.segment, count(*), sum(e.amount) FROM events e JOIN users u ON e.user_id = u.user_id WHERE e.is_fraud GROUP BY u.segment ORDER BY u.segment",
    ),
    (
        "count distinct",
        "SELECT count(DISTINCT user_id) FROM shop.events",
        "SELECT count(DISTINCT user_id) FROM events",
    ),
    (
        "approx distinct",
        "SELECT approx_distinct(user_id) FROM shop.events",
        "SELECT approx_count_distinct(user_id) FROM events",
    ),
    (
        "approx percentile",
        "SELECT location, approx_percentile_cont(amount, 0.95) FROM shop.events GROUP BY location ORDER BY location",
        "SELECT location, approx_quantile(amount, 0.95) FROM events GROUP BY location ORDER BY location",
    ),
    (
        "largest amounts",
        "SELECT transaction_id, amount FROM shop.events ORDER BY amount DESC, transaction_id LIMIT 10",
        "SELECT transaction_id, amount FROM events ORDER BY amount DESC, transaction_id LIMIT 10",
    ),
];

fn users(schema: &SchemaRef) -> RecordBatch {
    let ids: Vec<i64> = (1000..1000 + USERS as i64).collect();
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(StringArray::from_iter_values(
                ids.iter()
                    .map(|i| SEGMENTS[(splitmix(*i as u64) % 4) as usize]),
            )),
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|i| LOCATIONS[(*i % 6) as usize]),
            )),
            Arc::new(
                TimestampMicrosecondArray::from(vec![START_MICROS; ids.len()])
                    .with_timezone("+00:00"),
            ),
        ],
    )
    .expect("the users batch")
}

async fn write_table(
    dir: &Path,
    name: &str,
    schema: &SchemaRef,
    batches: impl Iterator<Item = RecordBatch>,
    options: WriteOptions,
) {
    let catalog = open_catalog(&CatalogSettings::local(dir))
        .await
        .expect("the catalog");
    let mut sink = TableSink::open(catalog, "shop", name, "bench", "s", schema, options)
        .await
        .expect("the sink");
    for batch in batches {
        sink.write(&batch).await.expect("a write");
    }
    let files = sink.close_files().await.expect("closing files");
    sink.commit(OffsetRange { first: 0, last: 0 }, &files)
        .await
        .expect("the commit");
}

/// The warehouse holding `total` events, written now unless it already is.
async fn warehouse(total: usize) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    // The suffix changes with the tables' layout, so an old warehouse is
    // not reused.
    let dir = target.join(format!("bench-query-{total}-bloom"));
    let done = dir.join("complete");
    if done.exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the warehouse folder");
    let started = Instant::now();
    let schema = events_schema();
    const CHUNK: usize = 250_000;
    write_table(
        &dir,
        "events",
        &schema,
        (0..total.div_ceil(CHUNK))
            .map(|c| events(&schema, c * CHUNK, ((c + 1) * CHUNK).min(total), total)),
        WriteOptions {
            bloom_filter_columns: vec!["transaction_id".into()],
            ..WriteOptions::default()
        },
    )
    .await;
    let users_schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Int64, false),
        Field::new("segment", DataType::Utf8, false),
        Field::new("home", DataType::Utf8, false),
        ingest_ts(),
    ]));
    write_table(
        &dir,
        "users",
        &users_schema,
        std::iter::once(users(&users_schema)),
        WriteOptions::default(),
    )
    .await;
    std::fs::write(&done, b"").expect("marking the warehouse complete");
    println!(
        "wrote {total} events over {DAYS} days in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    dir
}

/// DuckDB in a Python child, answering one JSON line per query.
struct DuckDb {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
}

impl DuckDb {
    fn start(views: &serde_json::Value) -> DuckDb {
        let python = std::env::var("PIPE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/duckdb_runner.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting {python}: {e} (set PIPE_TEST_PYTHON to a Python with duckdb)")
            });
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut duck = DuckDb { child, out };
        duck.ask(views);
        duck
    }

    fn ask(&mut self, request: &serde_json::Value) -> serde_json::Value {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{request}").expect("writing to DuckDB");
        stdin.flush().expect("flushing");
        let mut line = String::new();
        self.out.read_line(&mut line).expect("DuckDB's answer");
        let answer: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("DuckDB answered `{line}`: {e}"));
        if let Some(error) = answer.get("error") {
            panic!("DuckDB: {error}");
        }
        answer
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn data_files(engine: &QueryEngine, table: &str) -> Vec<String> {
    let batches = engine
        .sql(&format!("SELECT file_path FROM shop.\"{table}$files\""))
        .await
        .expect("listing data files");
    let mut files = Vec::new();
    for b in &batches {
        let paths = b
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("file paths");
        files.extend(
            paths
                .iter()
                .flatten()
                .map(|p| p.trim_start_matches("file://").to_string()),
        );
    }
    files
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let total = args
        .iter()
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(DEFAULT_EVENTS);
    // Other arguments pick queries by a part of their name.
    let picked: Vec<&String> = args
        .iter()
        .filter(|a| a.parse::<usize>().is_err())
        .collect();
    let queries: Vec<_> = QUERIES
        .iter()
        .filter(|(name, _, _)| {
            picked.is_empty() || picked.iter().any(|p| name.contains(p.as_str()))
        })
        .collect();
    let dir = warehouse(total).await;
    let catalog = open_catalog(&CatalogSettings::local(&dir))
        .await
        .expect("the catalog");
    let engine = QueryEngine::new(catalog).await.expect("the engine");
    let events_files = data_files(&engine, "events").await;
    let bytes: u64 = events_files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    println!(
        "shop.events: {total} events in {} data files, {:.1} MB of Parquet",
        events_files.len(),
        bytes as f64 / 1e6
    );
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut duck = DuckDb::start(&serde_json::json!({
        "threads": threads,
        "views": {"events": events_files, "users": data_files(&engine, "users").await},
    }));

    println!(
        "\n{:<20} {:>10} {:>10} {:>7} {:>6}",
        "query", "pipe ms", "duckdb ms", "ratio", "rows"
    );
    let runs = std::env::var("PIPE_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse::<usize>().ok())
        .unwrap_or(RUNS)
        .max(1);
    // `PIPE_BENCH_EXPLAIN=1`: each query's `EXPLAIN ANALYZE` after its times.
    let explain = std::env::var_os("PIPE_BENCH_EXPLAIN").is_some();
    let mut log_sum = 0.0;
    for &&(name, ours, theirs) in &queries {
        let d = duck.ask(&serde_json::json!({"sql": theirs, "runs": runs}));
        let duck_ms = d["median_ms"].as_f64().expect("a time");
        let duck_rows = d["rows"].as_u64().expect("a row count") as usize;
        let mut times = Vec::new();
        let mut rows = 0;
        for run in 0..=runs {
            let started = Instant::now();
            let answer = engine
                .query(ours)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            if run > 0 {
                times.push(started.elapsed().as_secs_f64() * 1e3);
            }
            rows = pipe_query::row_count(&answer.batches);
        }
        assert_eq!(rows, duck_rows, "{name}: row counts differ");
        let ours_ms = median(times);
        let ratio = ours_ms / duck_ms;
        log_sum += ratio.ln();
        println!("{name:<20} {ours_ms:>10.1} {duck_ms:>10.1} {ratio:>7.2} {rows:>6}");
        if explain {
            let plan = engine
                .query(&format!("EXPLAIN ANALYZE {ours}"))
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let text = arrow::util::pretty::pretty_format_batches(&plan.batches)
                .expect("the plan as text");
            println!("{text}");
        }
    }
    println!(
        "geometric mean of the ratios (pipe / DuckDB): {:.2}",
        (log_sum / queries.len() as f64).exp()
    );

    let same = "SELECT count(*), sum(amount), max(__ingest_ts) FROM shop.events";
    let all = engine.query(same).await.expect("the full query").scan;
    let day = engine
        .query(&format!(
            "{same} WHERE __ingest_ts >= '2026-10-15T00:00:00Z' AND __ingest_ts < '2026-10-16T00:00:00Z'"
        ))
        .await
        .expect("the one-day query")
        .scan;
    println!(
        "\none day of {DAYS}: {} of {} bytes read ({:.4}), {} of {} files",
        day.bytes_read,
        all.bytes_read,
        day.bytes_read as f64 / all.bytes_read as f64,
        day.files_planned,
        day.files_total
    );
}
