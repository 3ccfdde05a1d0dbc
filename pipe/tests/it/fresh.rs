//! Fresh reads through the server: a query sees every acknowledged event
//! once, whether its pipeline has committed it or not; `committed_only`
//! sees the table as other engines do.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;

/// A pipeline whose SQL fails on events whose `product_id` is no number
/// (they go to its quarantine table, `default.ecommerce_failed`).
const CAST_PIPELINE: &str = r#"
[sinks.ecommerce_sink]
namespace = "default"
table = "ecommerce"
roll_interval_secs = 3600

[pipelines.ecommerce]
sql = "INSERT INTO ecommerce_sink SELECT user_id, CAST(product_id AS INT) AS n FROM ecommerce_stream"
"#;

/// `POST /v1/query`; the answer, which must be a 200.
async fn ask(server: &Server, body: Value) -> Value {
    server.query_api(body).await
}

/// The single number a `SELECT count(*) AS n` answers.
async fn count(server: &Server, sql: &str, committed_only: bool) -> (u64, Value) {
    let answer = ask(
        server,
        json!({"sql": sql, "committed_only": committed_only}),
    )
    .await;
    (answer["rows"][0]["n"].as_u64().unwrap(), answer)
}

/// The getting-started pipeline, keeping all but `event_type = 'skip'`,
/// committing every `roll_secs`.
fn filtered_config(dir: &std::path::Path, roll_secs: u64) -> std::path::PathBuf {
    write_stream_config(
        dir,
        "",
        &format!(
            r#"buffer_segment_mb = 1

[sinks.ecommerce_sink]
namespace = "default"
table = "ecommerce"
roll_interval_secs = {roll_secs}

[pipelines.ecommerce]
sql = "INSERT INTO ecommerce_sink SELECT * FROM ecommerce_stream WHERE event_type <> 'skip'"
"#
        ),
    )
}

/// One request of `n` events from id `first`; every third is a `skip`.
/// Returns how many the pipeline keeps if it was acknowledged.
async fn post_kept(server: &Server, first: u64, n: u64) -> Option<u64> {
    let events: Vec<Value> = (first..first + n)
        .map(|i| {
            let kind = if i % 3 == 0 { "skip" } else { "view" };
            json!({"user_id": format!("id-{i}"), "event_type": kind, "product_id": "p"})
        })
        .collect();
    let (status, _) = server.post_json("ecommerce_stream", &json!(events)).await;
    (status == 200).then(|| (first..first + n).filter(|i| i % 3 != 0).count() as u64)
}

/// Kept events of the one request the sender has in flight (30 events,
/// every third skipped).
const IN_FLIGHT: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_under_load_are_between_the_acks_before_and_after_each_query() {
    let dir = tempfile::tempdir().unwrap();
    let config = filtered_config(dir.path(), 1);
    let server = Arc::new(Server::start(&config).await);
    // Events the pipeline keeps, acknowledged so far.
    let kept = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let (server, kept, stop) = (server.clone(), kept.clone(), stop.clone());
        tokio::spawn(async move {
            let mut next = 0;
            while !stop.load(Ordering::SeqCst) {
                if let Some(n) = post_kept(&server, next, 30).await {
                    kept.fetch_add(n, Ordering::SeqCst);
                }
                next += 30;
            }
        })
    };
    let started = Instant::now();
    let (mut queries, mut fresh_seen, mut committed_seen) = (0, 0, 0);
    while started.elapsed() < Duration::from_secs(12) {
        let before = kept.load(Ordering::SeqCst);
        let (n, answer) = count(
            &server,
            "SELECT count(*) AS n FROM default.ecommerce",
            false,
        )
        .await;
        // The one request in flight may be on disk (and read) before its
        // 200 reaches the sender: at most 20 kept events beyond `after`.
        let after = kept.load(Ordering::SeqCst);
        assert!(
            before <= n && n <= after + IN_FLIGHT,
            "query {queries}: {n} rows, {before} kept events acked before it and {after} after: {answer}"
        );
        queries += 1;
        fresh_seen += u64::from(answer["buffer_rows"].as_u64().unwrap() > 0);
        committed_seen += u64::from(answer["files_total"].as_u64().unwrap() > 0);
        let (committed, answer) =
            count(&server, "SELECT count(*) AS n FROM default.ecommerce", true).await;
        let after = kept.load(Ordering::SeqCst);
        assert!(committed <= after + IN_FLIGHT, "{answer}");
        assert_eq!(answer["buffer_rows"], 0, "{answer}");
    }
    stop.store(true, Ordering::SeqCst);
    sender.await.unwrap();
    let total = kept.load(Ordering::SeqCst);
    let (n, _) = count(
        &server,
        "SELECT count(DISTINCT user_id) AS n FROM default.ecommerce WHERE event_type <> 'skip'",
        false,
    )
    .await;
    assert_eq!(n, total, "every kept event once, none filtered out");
    let (skipped, _) = count(
        &server,
        "SELECT count(*) AS n FROM default.ecommerce WHERE event_type = 'skip'",
        false,
    )
    .await;
    assert_eq!(skipped, 0, "rows the SQL filters out never appear");
    let (one, _) = count(
        &server,
        "SELECT count(*) AS n FROM default.ecommerce WHERE user_id = 'id-1'",
        false,
    )
    .await;
    assert_eq!(one, 1, "a lookup, filtered in the buffer too");
    let limited = ask(
        &server,
        json!({"sql": "SELECT user_id FROM default.ecommerce LIMIT 7"}),
    )
    .await;
    assert_eq!(limited["rows"].as_array().unwrap().len(), 7, "{limited}");
    eprintln!(
        "fresh reads under load: {queries} queries in 12 s, {fresh_seen} with buffered rows, {committed_seen} with committed files; {total} events kept"
    );
    assert!(
        fresh_seen > 0 && committed_seen > 0,
        "both halves were read"
    );
    Arc::try_unwrap(server).ok().unwrap().stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_landing_during_queries_neither_double_nor_drop_rows() {
    let dir = tempfile::tempdir().unwrap();
    let config = filtered_config(dir.path(), 3600);
    // Each query waits 1.5 s between planning and reading the buffer: the
    // flush asked for meanwhile commits, and releases segments, in between.
    let server = Server::start_with_env(
        &config,
        &[
            (
                "PIPE_FAULT",
                &format!("{}@1+", pipe::crash::SLOW_FRESH_READ),
            ),
            ("PIPE_FAULT_DELAY_MS", "1500"),
        ],
    )
    .await;
    let mut total = 0;
    for round in 0..3u64 {
        // 30,000 events over 1 MiB segments: a flush releases several.
        for r in 0..50 {
            total += post_kept(&server, round * 1_000_000 + r * 600, 600)
                .await
                .expect("acked");
        }
        let sql = "SELECT count(*) AS n FROM default.ecommerce";
        let query = count(&server, sql, false);
        let flush = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            request_flush(&server, "ecommerce").await;
        };
        let ((n, answer), ()) = tokio::join!(query, flush);
        assert_eq!(n, total, "round {round}: {answer}");
        let (n, answer) = count(&server, sql, true).await;
        assert_eq!(n, total, "flushed: {answer}");
    }
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_the_sql_fails_on_are_fresh_in_the_quarantine_table_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_stream_config(dir.path(), "", CAST_PIPELINE);
    let server = Server::start(&config).await;
    let events: Vec<Value> = (0..40)
        .map(|i| {
            let product = if i % 10 == 7 {
                format!("bad-{i}")
            } else {
                i.to_string()
            };
            json!({"user_id": format!("u{i}"), "event_type": "view", "product_id": product})
        })
        .collect();
    let (status, body) = server.post_json("ecommerce_stream", &json!(events)).await;
    assert_eq!(status, 200, "{body}");
    let main = "SELECT count(*) AS n FROM default.ecommerce";
    let failed = "SELECT count(*) AS n FROM default.ecommerce_failed";
    for flushed in [false, true] {
        assert_eq!(
            count(&server, main, false).await.0,
            36,
            "flushed: {flushed}"
        );
        assert_eq!(
            count(&server, failed, false).await.0,
            4,
            "flushed: {flushed}"
        );
        let (bad, _) = count(
            &server,
            "SELECT count(*) AS n FROM default.ecommerce_failed WHERE event LIKE '%bad-%'",
            false,
        )
        .await;
        assert_eq!(bad, 4);
        if !flushed {
            assert_eq!(
                count(&server, main, true).await.0,
                0,
                "nothing committed yet"
            );
            request_flush(&server, "ecommerce").await;
        }
    }
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sigkill_under_load_a_query_at_once_sees_each_acked_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 1, "");
    let server = Arc::new(Server::start(&config).await);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loads = [0, 10_000_000].map(|first| load_until(&server, first, Duration::ZERO, &stop));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    stop.store(true, Ordering::SeqCst);
    let mut acked = std::collections::HashSet::new();
    for load in loads {
        acked.extend(load.await.unwrap());
    }
    drop(server);
    let server = Server::start(&config).await;
    let answer = ask(
        &server,
        json!({"sql": "SELECT user_id FROM default.ecommerce", "max_rows": 100000}),
    )
    .await;
    let rows = answer["rows"].as_array().unwrap();
    let mut seen = std::collections::HashSet::new();
    for row in rows {
        let id = row["user_id"].as_str().unwrap().to_string();
        assert!(seen.insert(id.clone()), "{id} twice");
    }
    let missing: Vec<_> = acked.iter().filter(|id| !seen.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acked ids missing: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // Beyond the acked ones: only requests in flight at the kill (2 × 20).
    assert!(
        seen.len() - acked.len() <= 40,
        "{} unacked rows",
        seen.len() - acked.len()
    );
    assert!(
        answer["buffer_rows"].as_u64().unwrap() > 0 || answer["files_total"].as_u64().unwrap() > 0
    );
    eprintln!(
        "after SIGKILL: {} acked, {} rows ({} from the buffer)",
        acked.len(),
        rows.len(),
        answer["buffer_rows"]
    );
    server.stop();
}

/// `pipe query --server` with `args`, as JSON rows; and its stats line.
fn cli_query(server: &Server, args: &[&str], sql: &str) -> (Vec<Value>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(["query", "--format", "json", "--server", &server.url])
        .args(args)
        .arg(sql)
        .output()
        .unwrap();
    let stats = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(out.status.success(), "pipe query: {stats}");
    (serde_json::from_slice(&out.stdout).unwrap(), stats)
}

fn ids(rows: &[Value]) -> std::collections::BTreeSet<String> {
    rows.iter()
        .map(|r| r["user_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_the_client_read_fresh_and_committed_reads_match_pyiceberg() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let server = Server::start(&config).await;
    let committed = post_some(&server, 0, 2).await;
    request_flush(&server, "ecommerce").await;
    let buffered = post_some(&server, 1000, 2).await;
    let sql = "SELECT user_id FROM default.ecommerce";

    let (rows, stats) = cli_query(&server, &[], sql);
    assert_eq!(rows.len(), 100, "{stats}");
    let all: std::collections::BTreeSet<String> =
        committed.iter().chain(&buffered).cloned().collect();
    assert_eq!(ids(&rows), all);
    assert!(
        stats.contains("; 50 rows from 2 buffered requests not committed yet"),
        "{stats}"
    );

    let (rows, stats) = cli_query(&server, &["--committed"], sql);
    assert!(stats.ends_with("; committed snapshots only"), "{stats}");
    let read = read_with_python(dir.path(), "", None, false);
    let pyiceberg: Vec<Value> = read["pyiceberg"]["rows"].as_array().unwrap().clone();
    assert_eq!(
        ids(&rows),
        ids(&pyiceberg),
        "--committed reads what PyIceberg reads"
    );
    assert_eq!(ids(&rows), committed.iter().cloned().collect());

    let (_, stats) = query_with_stats(&config, sql);
    assert!(
        stats.contains("committed snapshots only (`--server` also reads"),
        "{stats}"
    );

    let client = pipe::Client::new(&server.url);
    let answer = client
        .query("SELECT count(*) AS n FROM default.ecommerce")
        .await
        .unwrap();
    assert_eq!(answer.rows[0]["n"], 100);
    assert_eq!((answer.buffer_rows, answer.buffer_records), (50, 2));
    let mut request = pipe::wire::QueryRequest::new("SELECT count(*) AS n FROM default.ecommerce");
    request.committed_only = true;
    let answer = client.query_with(&request).await.unwrap();
    assert_eq!(answer.rows[0]["n"], 50);
    let error = client
        .query("SELECT nope FROM default.ecommerce")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), pipe::ErrorKind::InvalidInput, "{error}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_pipeline_fails_fresh_reads_past_the_bound_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_stream_config(
        dir.path(),
        "",
        r#"
[sinks.ecommerce_sink]
namespace = "default"
table = "ecommerce"
roll_interval_secs = 3600

[pipelines.ecommerce]
sql = "INSERT INTO ecommerce_sink SELECT * FROM ecommerce_stream"

[query]
max_unflushed_bytes = 4000
"#,
    );
    let server = Server::start(&config).await;
    post_some(&server, 0, 4).await;
    let sql = "SELECT count(*) AS n FROM default.ecommerce";
    let r = reqwest::Client::new()
        .post(format!("{}/v1/query", server.url))
        .json(&json!({"sql": sql}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    for want in [
        "pipeline `ecommerce`",
        "`[query] max_unflushed_bytes`",
        "committed_only",
    ] {
        assert!(message.contains(want), "{want} in {message}");
    }
    assert_eq!(
        count(&server, sql, true).await.0,
        0,
        "committed-only still reads"
    );
    request_flush(&server, "ecommerce").await;
    assert_eq!(
        count(&server, sql, false).await.0,
        100,
        "caught up: fresh again"
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_named_twice_and_a_moved_quarantine_table_read_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = CAST_PIPELINE;
    let config = write_stream_config(dir.path(), "", pipeline);
    let server = Server::start(&config).await;
    let batch = |first: u64| -> Value {
        (first..first + 40)
            .map(|i| {
                let product = if i % 10 == 7 {
                    format!("bad-{i}")
                } else {
                    i.to_string()
                };
                json!({"user_id": format!("u{i}"), "event_type": "view", "product_id": product})
            })
            .collect()
    };
    assert_eq!(server.post_json("ecommerce_stream", &batch(0)).await.0, 200);
    // Named twice in one query: each read takes the buffered rows again.
    for sql in [
        "SELECT count(*) AS n FROM default.ecommerce a JOIN default.ecommerce b ON a.user_id = b.user_id",
        "SELECT count(*) AS n FROM (SELECT user_id FROM default.ecommerce UNION ALL SELECT user_id FROM default.ecommerce)",
    ] {
        assert_eq!(count(&server, sql, false).await.0, if sql.contains("UNION") { 72 } else { 36 }, "{sql}");
    }
    request_flush(&server, "ecommerce").await;
    // The rows the SQL fails on go to another table from now on.
    let moved = pipeline.replace(
        "FROM ecommerce_stream\"",
        "FROM ecommerce_stream\"\nquarantine_table = \"default.moved_failed\"",
    );
    write_stream_config(dir.path(), "", &moved);
    let reloaded = reqwest::Client::new()
        .post(format!("{}/v1/reload", server.url))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(reloaded.status(), 200, "{}", reloaded.text().await.unwrap());
    assert_eq!(
        server.post_json("ecommerce_stream", &batch(100)).await.0,
        200
    );
    let old = "SELECT count(*) AS n FROM default.ecommerce_failed";
    let new = "SELECT count(*) AS n FROM default.moved_failed";
    assert_eq!(
        count(&server, old, false).await.0,
        4,
        "nothing new goes there"
    );
    assert_eq!(count(&server, new, false).await.0, 4);
    assert_eq!(
        count(
            &server,
            "SELECT count(*) AS n FROM default.ecommerce",
            false
        )
        .await
        .0,
        72
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_started_at_the_end_counts_its_lag_from_there() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let server = Server::start(&config).await;
    post_some(&server, 0, 10).await;
    let client = reqwest::Client::new();
    for (kind, body) in [
        (
            "sinks",
            json!({"name": "late_sink", "type": "iceberg", "namespace": "default", "table": "late"}),
        ),
        (
            "pipelines",
            json!({"name": "late", "sql": "INSERT INTO late_sink SELECT * FROM ecommerce_stream", "start": "end"}),
        ),
    ] {
        let r = client
            .post(format!("{}/v1/{kind}", server.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    post_some(&server, 1000, 2).await;
    let status = server.status("late").await;
    assert_eq!(status["uncommitted_records"], 2, "{status}");
    let sql = "SELECT count(*) AS n FROM default.late";
    assert_eq!(count(&server, sql, false).await.0, 50);
    server.stop();
}
