//! Fresh reads on the real `pipe serve` (release build), with the
//! fraud-detection tutorial's events. Prints:
//!
//! 1. the time from an event's 200 to its being visible in a fresh query
//!    (`POST /v1/query`, polled), p50 and p99, at half the best ingest rate
//!    measured first, with the default roll (128 MiB or 300 s);
//! 2. a fresh query over a table with N buffered records beside the same
//!    query committed-only, for N up to `[query] max_unflushed_bytes`
//!    (medians of 5);
//! 3. ack latency p50/p99 at half load, with and without a fresh query
//!    every 100 ms.
//!
//! A program that prints figures, not a test: it asserts nothing.
//!
//! ```sh
//! cargo bench -p pipe --bench fresh_reads -- [SECONDS_PER_POINT]
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../../benches/fraud_events.rs"]
mod fraud_events;
#[path = "../../benches/load_client.rs"]
mod load_client;
#[path = "../../benches/serve_pipe.rs"]
mod serve_pipe;
use fraud_events::{event, SCHEMA};
use load_client::{load, Point};
use serde_json::{json, Value};
use serve_pipe::Server;

const TABLE: &str = "fraud_detection.transactions";

/// `pipe serve` with one `SELECT *` pipeline whose sink has `sink` (TOML).
fn start(rt: &tokio::runtime::Runtime, sink: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("schema.json"), SCHEMA).unwrap();
    std::fs::write(
        dir.path().join("pipe.toml"),
        format!(
            r#"data_dir = "data"
[streams.transactions]
schema_file = "schema.json"
[sinks.out]
namespace = "fraud_detection"
table = "transactions"
{sink}
[pipelines.load]
sql = "INSERT INTO out SELECT * FROM transactions"
"#
        ),
    )
    .unwrap();
    rt.block_on(Server::start(dir))
}

fn bodies(per_request: usize) -> Arc<Vec<String>> {
    Arc::new(
        (0..32)
            .map(|s| fraud_events::body(per_request, s, event))
            .collect(),
    )
}

async fn ingest(
    server: &Server,
    per_request: usize,
    clients: usize,
    secs: f64,
    rate: Option<f64>,
) -> Point {
    let url = format!("{}/v1/streams/transactions", server.url);
    load(&url, bodies(per_request), per_request, clients, secs, rate).await
}

/// `POST /v1/query`: the answer and the time it took.
async fn query(
    client: &reqwest::Client,
    server: &Server,
    sql: &str,
    committed_only: bool,
) -> (Value, Duration) {
    let t = Instant::now();
    let answer: Value = client
        .post(format!("{}/v1/query", server.url))
        .json(&json!({"sql": sql, "committed_only": committed_only, "timeout_secs": 120}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (answer, t.elapsed())
}

fn pct(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    if samples.is_empty() {
        return f64::NAN;
    }
    let i = ((samples.len() as f64 * p) as usize).min(samples.len() - 1);
    samples[i].as_secs_f64() * 1e3
}

/// Posts a marker event every 100 ms for `secs` and polls a fresh query
/// for it from its 200 on: the times from ack to visible.
async fn visibility(server: &Server, secs: f64) -> Vec<Duration> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut seen = Vec::new();
    let mut n = 0;
    while Instant::now() < deadline {
        let id = format!("marker-{n}");
        n += 1;
        let mut marker: Value = serde_json::from_str(&event(n)).unwrap();
        marker["transaction_id"] = json!(id);
        let posted = client
            .post(format!("{}/v1/streams/transactions", server.url))
            .json(&json!([marker]))
            .send()
            .await
            .unwrap();
        if posted.status() != 200 {
            continue;
        }
        let acked = Instant::now();
        let sql = format!("SELECT count(*) AS n FROM {TABLE} WHERE transaction_id = '{id}'");
        loop {
            let (answer, _) = query(&client, server, &sql, false).await;
            if answer["rows"][0]["n"] == 1 {
                seen.push(acked.elapsed());
                break;
            }
            if answer.get("error").is_some() {
                eprintln!("query failed: {answer}");
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

fn main() {
    let secs: f64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(10.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // 1. Ack to visible at half the best rate, default roll.
    let server = start(&rt, "");
    let best = rt.block_on(ingest(&server, 1000, 8, secs.min(5.0), None));
    let half_rate = best.events_per_s() / 2.0 / 1000.0; // requests/s
    println!(
        "best ingest: {:.0} events/s (1,000-event requests, 8 clients); half: {:.0} events/s",
        best.events_per_s(),
        best.events_per_s() / 2.0
    );
    let (mut seen, point) = rt.block_on(async {
        let load = ingest(&server, 1000, 8, secs, Some(half_rate));
        tokio::join!(visibility(&server, secs), load)
    });
    println!(
        "ack to visible in a fresh query at {:.0} events/s: p50 {:.0} ms, p99 {:.0} ms ({} markers)",
        point.events_per_s(),
        pct(&mut seen, 0.5),
        pct(&mut seen, 0.99),
        seen.len()
    );
    drop(server);

    // 2. Fresh beside committed-only with N buffered records.
    let server = start(&rt, "roll_interval_secs = 3600\nroll_size_mb = 16384");
    let client = reqwest::Client::new();
    rt.block_on(async {
        post_n(&server, 1_000_000).await;
        flush(&client, &server).await;
    });
    println!("\nbuffered records beside a committed 1M events: median of 5, fresh vs committed-only (ms)");
    println!(
        "{:>10} {:>10} {:>12} {:>12} {:>12} {:>12}",
        "buffered", "requests", "count fresh", "committed", "group fresh", "committed"
    );
    let mut buffered = 0;
    for n in [10_000, 100_000, 1_000_000] {
        rt.block_on(post_n(&server, n - buffered));
        buffered = n;
        let count = format!("SELECT count(*) AS n FROM {TABLE}");
        let group = format!(
            "SELECT location, count(*) AS n, avg(amount) AS a FROM {TABLE} GROUP BY location"
        );
        let median = |sql: &str, committed_only: bool| {
            let mut times = Vec::new();
            let mut answer = Value::Null;
            for _ in 0..5 {
                let (a, t) = rt.block_on(query(&client, &server, sql, committed_only));
                answer = a;
                times.push(t);
            }
            (pct(&mut times, 0.5), answer)
        };
        let (count_fresh, answer) = median(&count, false);
        let (count_committed, _) = median(&count, true);
        let (group_fresh, _) = median(&group, false);
        let (group_committed, _) = median(&group, true);
        println!(
            "{:>10} {:>10} {:>12.1} {:>12.1} {:>12.1} {:>12.1}   rows {} (buffer {})",
            answer["buffer_rows"],
            answer["buffer_records"],
            count_fresh,
            count_committed,
            group_fresh,
            group_committed,
            answer["rows"][0]["n"],
            answer["buffer_rows"]
        );
    }
    drop(server);

    // 3. Acks at half load, with and without fresh queries every 100 ms.
    let server = start(&rt, "");
    let mut quiet = rt.block_on(ingest(&server, 1000, 8, secs, Some(half_rate)));
    let stop = Arc::new(AtomicBool::new(false));
    let (mut busy, mut query_times) = rt.block_on(async {
        let asking = {
            let (client, url, stop) = (client.clone(), server.url.clone(), stop.clone());
            tokio::spawn(async move {
                let mut times = Vec::new();
                let sql = format!("SELECT count(*) AS n FROM {TABLE} WHERE location = 'US'");
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let _ = client
                        .post(format!("{url}/v1/query"))
                        .json(&json!({"sql": sql}))
                        .send()
                        .await
                        .and_then(|r| r.error_for_status());
                    times.push(t.elapsed());
                    tokio::time::sleep(Duration::from_millis(100).saturating_sub(t.elapsed()))
                        .await;
                }
                times
            })
        };
        let point = ingest(&server, 1000, 8, secs, Some(half_rate)).await;
        stop.store(true, Ordering::Relaxed);
        (point, asking.await.unwrap())
    });
    println!(
        "\nacks at half load ({:.0} events/s): p50 {:.2} ms, p99 {:.2} ms; with a fresh query every 100 ms ({:.0} events/s, {} queries, p50 {:.0} ms, p99 {:.0} ms): p50 {:.2} ms, p99 {:.2} ms",
        quiet.events_per_s(),
        quiet.pct(0.5),
        quiet.pct(0.99),
        busy.events_per_s(),
        query_times.len(),
        pct(&mut query_times, 0.5),
        pct(&mut query_times, 0.99),
        busy.pct(0.5),
        busy.pct(0.99),
    );
}

/// Posts `n` events (1,000 per request, 4 clients).
async fn post_n(server: &Server, n: usize) {
    let bodies = bodies(1000);
    let client = reqwest::Client::new();
    let requests = n / 1000;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..4 {
        let (client, url, bodies) = (
            client.clone(),
            format!("{}/v1/streams/transactions", server.url),
            bodies.clone(),
        );
        tasks.spawn(async move {
            for i in (c..requests).step_by(4) {
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(bodies[i % bodies.len()].clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

async fn flush(client: &reqwest::Client, server: &Server) {
    let r = client
        .post(format!("{}/v1/pipelines/load/flush", server.url))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
