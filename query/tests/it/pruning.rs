//! Pruning reaches the scan: a one-day filter on a 30-day table reads one
//! day's file, and a filter on an id reads only the files whose bounds can
//! hold it. Counted by the scan's own byte counter, and checked against the
//! rows the queries return.

use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use pipe_query::{QueryEngine, Reader, ScanStats};
use pipe_sink::{open_catalog, CatalogSettings, OffsetRange, TableSink, WriteOptions};

use crate::{timestamps, ts_field, write_table, write_table_with};

const DAYS: i64 = 30;
const ROWS_PER_DAY: i64 = 3000;
/// 2026-01-01T00:00:00Z in microseconds.
const START_MICROS: i64 = 1_767_225_600_000_000;
const DAY_MICROS: i64 = 86_400_000_000;

/// A 30-day table, `day(__ingest_ts)`-partitioned as sinks make them: one
/// file per day, `order_id` rising through the days.
async fn thirty_days(dir: &std::path::Path) -> QueryEngine {
    QueryEngine::new(thirty_days_catalog(dir).await)
        .await
        .unwrap()
}

fn orders_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, false),
        ts_field(),
    ]))
}

async fn thirty_days_catalog(dir: &std::path::Path) -> Arc<dyn iceberg::Catalog> {
    let catalog = open_catalog(&CatalogSettings::local(dir)).await.unwrap();
    let schema = orders_schema();
    let mut batches = Vec::new();
    for day in 0..DAYS {
        let ids: Vec<i64> = (0..ROWS_PER_DAY).map(|i| day * ROWS_PER_DAY + i).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids.clone())),
                Arc::new(StringArray::from_iter_values(
                    ids.iter().map(|i| format!("user-{:05}", i % 977)),
                )),
                Arc::new(Float64Array::from_iter_values(
                    ids.iter().map(|i| (i % 100) as f64 + 0.5),
                )),
                timestamps(
                    ids.iter()
                        .map(|i| START_MICROS + day * DAY_MICROS + (i % ROWS_PER_DAY) * 1_000_000),
                ),
            ],
        )
        .unwrap();
        batches.push(batch);
    }
    write_table(catalog.clone(), "shop", "orders", &schema, &[&batches]).await;
    catalog
}

/// `rows` orders of one day with ids `0..rows` in scrambled order, each
/// amount its id, and `user(id)` as the user.
fn scrambled_orders(rows: i64, user: impl Fn(i64) -> String) -> RecordBatch {
    let ids: Vec<i64> = (0..rows).map(|i| (i * 7919) % rows).collect();
    RecordBatch::try_new(
        orders_schema(),
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(StringArray::from_iter_values(ids.iter().map(|i| user(*i)))),
            Arc::new(Float64Array::from_iter_values(
                ids.iter().map(|i| *i as f64),
            )),
            timestamps((0..rows).map(|i| START_MICROS + i)),
        ],
    )
    .unwrap()
}

async fn run(engine: &QueryEngine, sql: &str) -> (String, ScanStats) {
    let answer = engine.query(sql).await.unwrap();
    let csv = pipe_query::render(&answer.batches, pipe_query::OutputFormat::Csv).unwrap();
    (csv, answer.scan)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_day_of_thirty_reads_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let engine = thirty_days(dir.path()).await;

    // The same query with and without the filter, so both read the same
    // columns.
    let query = "SELECT count(*) AS n, sum(amount) AS total, max(__ingest_ts) AS last \
                 FROM shop.orders";
    let (all_rows, all) = run(&engine, query).await;
    assert_eq!(
        all_rows,
        "n,total,last\n90000,4500000.0,2026-01-30T00:49:59Z\n"
    );
    assert_eq!((all.files_total, all.files_planned), (30, 30), "{all:?}");

    let (day_rows, day) = run(
        &engine,
        &format!(
            "{query} WHERE __ingest_ts >= '2026-01-10T00:00:00Z' \
             AND __ingest_ts < '2026-01-11T00:00:00Z'"
        ),
    )
    .await;
    assert_eq!(
        day_rows,
        "n,total,last\n3000,150000.0,2026-01-10T00:49:59Z\n"
    );
    assert_eq!((day.files_total, day.files_planned), (30, 1), "{day:?}");
    assert_eq!(day.files_skipped(), 29);
    let ratio = day.bytes_read as f64 / all.bytes_read as f64;
    println!(
        "one day of 30: read {} of {} bytes (ratio {ratio:.4})",
        day.bytes_read, all.bytes_read
    );
    assert!(all.bytes_read > 0 && day.bytes_read > 0, "{all:?} {day:?}");
    assert!(
        ratio <= 0.05,
        "a one-day filter read {ratio:.3} of the bytes"
    );

    // Column bounds prune too: ids 40,000..40,009 are all on day 13.
    let (id_rows, by_id) = run(
        &engine,
        "SELECT count(*) AS n, min(__ingest_ts) AS first FROM shop.orders \
         WHERE order_id BETWEEN 40000 AND 40009",
    )
    .await;
    assert_eq!(id_rows, "n,first\n10,2026-01-14T00:16:40Z\n");
    assert_eq!(by_id.files_planned, 1, "{by_id:?}");

    // A filter nothing matches reads nothing.
    let (none_rows, none) = run(
        &engine,
        "SELECT count(*) AS n FROM shop.orders WHERE __ingest_ts < '2025-12-01T00:00:00Z'",
    )
    .await;
    assert_eq!(none_rows, "n\n0\n");
    assert_eq!(
        (none.files_total, none.files_planned, none.bytes_read),
        (30, 0, 0),
        "{none:?}"
    );

    // Time travel prunes the same way.
    let (id, _) = run(&engine, "SELECT snapshot_id FROM shop.\"orders$snapshots\"").await;
    let id = id.lines().nth(1).unwrap();
    let (at_rows, at) = run(
        &engine,
        &format!(
            "SELECT count(*) AS n FROM table_at('shop.orders', {id}) \
             WHERE __ingest_ts >= '2026-01-30T00:00:00Z'"
        ),
    )
    .await;
    assert_eq!(at_rows, "n\n3000\n");
    assert_eq!((at.files_total, at.files_planned), (30, 1), "{at:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_tables_take_projections_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let engine = thirty_days(dir.path()).await;
    let (rows, _) = run(
        &engine,
        "SELECT operation, summary['added-records'] AS added FROM shop.\"orders$snapshots\"",
    )
    .await;
    assert_eq!(rows, "operation,added\nappend,90000\n");
    let (rows, _) = run(
        &engine,
        "SELECT count(*) AS files, sum(record_count) AS records, \
         min(partition) AS first FROM shop.\"orders$files\"",
    )
    .await;
    assert_eq!(
        rows,
        "files,records,first\n30,90000,__ingest_ts_day=2026-01-01\n"
    );
    let (rows, _) = run(
        &engine,
        "SELECT added_data_files_count FROM shop.\"orders$manifests\"",
    )
    .await;
    assert_eq!(rows, "added_data_files_count\n30\n");
}

/// The default reader and iceberg-datafusion's own scan give the same
/// answers, types included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_readers_agree() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = thirty_days_catalog(dir.path()).await;
    let ours = QueryEngine::new(catalog.clone()).await.unwrap();
    let theirs = QueryEngine::with_reader(catalog, Reader::Iceberg)
        .await
        .unwrap();
    for sql in [
        "SELECT * FROM shop.orders ORDER BY order_id LIMIT 5",
        "SELECT user_id, count(*) AS n, sum(amount) AS total FROM shop.orders \
         GROUP BY user_id ORDER BY n DESC, user_id LIMIT 5",
        "SELECT arrow_typeof(user_id) AS t, count(*) AS n FROM shop.orders \
         WHERE user_id LIKE 'user-0001%' AND __ingest_ts > '2026-01-20T00:00:00Z' GROUP BY t",
        "SELECT order_id, amount FROM shop.orders WHERE order_id IN (5, 45000, 89999) ORDER BY 1",
        // Lookups are read with late materialization.
        "SELECT * FROM shop.orders WHERE user_id = 'user-00042' ORDER BY order_id",
        "SELECT order_id FROM shop.orders WHERE user_id = 'user-00042' AND amount = 42.5 \
         AND __ingest_ts < '2026-01-10T00:00:00Z' ORDER BY order_id",
    ] {
        let (a, stats) = run(&ours, sql).await;
        let (b, none) = run(&theirs, sql).await;
        assert_eq!(a, b, "{sql}");
        assert!(stats.files_total > 0, "{sql}: {stats:?}");
        assert_eq!(none, ScanStats::default(), "{sql}");
    }
    let (types, _) = run(
        &ours,
        "SELECT arrow_typeof(user_id) AS t FROM shop.orders LIMIT 1",
    )
    .await;
    assert_eq!(types, "t\nUtf8View\n");
}

/// One engine answers many queries: a repeated query fetches no footer or
/// page index again (the session keeps them), and a commit made between two
/// queries is in the next one's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_queries_reuse_metadata_and_see_new_commits() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = thirty_days_catalog(dir.path()).await;
    let engine = QueryEngine::new(catalog.clone()).await.unwrap();
    let query = "SELECT count(*) AS n, sum(amount) AS total FROM shop.orders WHERE amount > 50";
    let (rows, first) = run(&engine, query).await;
    assert_eq!(rows, "n,total\n45000,3375000.0\n");
    let (again_rows, again) = run(&engine, query).await;
    assert_eq!(again_rows, rows);
    assert!(
        0 < again.bytes_read && again.bytes_read < first.bytes_read,
        "the repeat read {} bytes, the first {}",
        again.bytes_read,
        first.bytes_read
    );

    let schema = orders_schema();
    let mut sink = TableSink::open(
        catalog,
        "shop",
        "orders",
        "later",
        "s",
        &schema,
        WriteOptions::default(),
    )
    .await
    .unwrap();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(90_000..90_010)),
            Arc::new(StringArray::from_iter_values((0..10).map(|_| "user-late"))),
            Arc::new(Float64Array::from(vec![60.5; 10])),
            timestamps((0..10).map(|i| START_MICROS + DAYS * DAY_MICROS + i)),
        ],
    )
    .unwrap();
    sink.write(&batch).await.unwrap();
    let files = sink.close_files().await.unwrap();
    sink.commit(OffsetRange { first: 0, last: 0 }, &files)
        .await
        .unwrap();

    let (rows, after) = run(&engine, query).await;
    assert_eq!(rows, "n,total\n45010,3375605.0\n");
    assert_eq!(
        (after.files_total, after.files_planned),
        (31, 31),
        "{after:?}"
    );
}

/// Bloom filters the sink writes skip the row groups a looked-up id is not
/// in: min/max statistics of unsorted ids skip nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bloom_filters_skip_row_groups_of_a_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open_catalog(&CatalogSettings::local(dir.path()))
        .await
        .unwrap();
    let schema = orders_schema();
    // Ids in scrambled order, so every row group spans nearly all of them.
    let batch = scrambled_orders(40_000, |i| format!("user-{i:05}"));
    for (table, bloom) in [("plain", vec![]), ("bloomed", vec!["user_id".to_string()])] {
        let options = WriteOptions {
            row_group_rows: 2000,
            bloom_filter_columns: bloom,
            ..WriteOptions::default()
        };
        write_table_with(
            catalog.clone(),
            "shop",
            table,
            &schema,
            &[std::slice::from_ref(&batch)],
            options,
        )
        .await;
    }
    let engine = QueryEngine::new(catalog).await.unwrap();
    let lookup = |table: &str, id: &str| {
        format!("SELECT order_id, amount FROM shop.{table} WHERE user_id = '{id}'")
    };
    // The first lookups read footers (and filters); the repeats read what
    // the caches do not hold.
    let (plain_rows, _) = run(&engine, &lookup("plain", "user-12345")).await;
    let (rows, cold) = run(&engine, &lookup("bloomed", "user-12345")).await;
    assert_eq!(rows, "order_id,amount\n12345,12345.0\n");
    assert_eq!(rows, plain_rows);
    let (_, plain) = run(&engine, &lookup("plain", "user-23456")).await;
    let (rows, bloomed) = run(&engine, &lookup("bloomed", "user-23456")).await;
    assert_eq!(rows, "order_id,amount\n23456,23456.0\n");
    println!(
        "one id of 40,000 in 20 row groups: {} bytes with bloom filters ({} on the first lookup), {} without",
        bloomed.bytes_read, cold.bytes_read, plain.bytes_read
    );
    // Cached filters leave one row group's chunks to read.
    assert!(
        0 < bloomed.bytes_read && bloomed.bytes_read * 5 < plain.bytes_read,
        "with bloom filters {} bytes, without {}",
        bloomed.bytes_read,
        plain.bytes_read
    );
    for (table, groups) in [
        ("bloomed", "20 total → 1 matched"),
        ("plain", "20 total → 20 matched"),
    ] {
        let (plan, _) = run(
            &engine,
            &format!("EXPLAIN ANALYZE {}", lookup(table, "user-12345")),
        )
        .await;
        let pruned = format!("row_groups_pruned_bloom_filter={groups}");
        assert!(plan.contains(&pruned), "{table}: no `{pruned}` in {plan}");
    }
    let (none, _) = run(&engine, &lookup("bloomed", "user-99999")).await;
    assert_eq!(none.lines().skip(1).count(), 0, "{none}");
}

/// A scan that plans one file (one day of a day-partitioned table) still
/// decodes it on every core: the file is split into byte ranges, each row
/// group read once, and the answer is the one-partition reader's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_file_is_read_by_every_core() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open_catalog(&CatalogSettings::local(dir.path()))
        .await
        .unwrap();
    let schema = orders_schema();
    // 200,000 rows of scrambled ids in 20 row groups: one file of a few MB,
    // all on one day.
    let batch = scrambled_orders(200_000, |i| {
        format!("user-{:08x}", i.wrapping_mul(2_654_435_761))
    });
    let options = WriteOptions {
        row_group_rows: 10_000,
        ..WriteOptions::default()
    };
    write_table_with(
        catalog.clone(),
        "shop",
        "orders",
        &schema,
        &[std::slice::from_ref(&batch)],
        options,
    )
    .await;
    let engine = QueryEngine::new(catalog.clone()).await.unwrap();
    let one_core = QueryEngine::with_reader(catalog, Reader::Iceberg)
        .await
        .unwrap();

    let query = "SELECT count(*) AS n, sum(order_id) AS ids, count(DISTINCT user_id) AS users \
                 FROM shop.orders WHERE amount >= 100";
    let (answer, stats) = run(&engine, query).await;
    assert_eq!(answer, "n,ids,users\n199900,19999895050,199900\n");
    assert_eq!(answer, run(&one_core, query).await.0);
    assert_eq!(
        (stats.files_total, stats.files_planned),
        (1, 1),
        "{stats:?}"
    );

    // As many ranges of the file as the session has partitions, and each
    // row group read by one of them.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (plan, _) = run(&engine, &format!("EXPLAIN ANALYZE {query}")).await;
    let groups = if cores == 1 {
        "1 group:".to_string()
    } else {
        format!("{cores} groups:")
    };
    assert!(
        plan.contains(&format!("file_groups={{{groups}")),
        "not {groups} in {plan}"
    );
    assert!(
        plan.contains("row_groups_pruned_statistics=20 total → 20 matched"),
        "{plan}"
    );

    // A data file gone from under the table is an error that names it,
    // even with its footer still cached.
    let (path, _) = run(&engine, "SELECT file_path FROM shop.\"orders$files\"").await;
    let path = path.lines().nth(1).unwrap().trim_start_matches("file://");
    std::fs::remove_file(path).unwrap();
    let e = engine.query(query).await.unwrap_err().to_string();
    assert!(e.contains(path) && e.contains("No such file"), "{e}");
}
