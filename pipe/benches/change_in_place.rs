//! How long a change in place takes under load, and what it does to the
//! acks meanwhile (issue 21's report), on the real `pipe serve` (release
//! build): 8 clients post batches of 100 fraud events as fast as acks
//! come back, while a pipeline commits every second; then its SQL is
//! changed, its sink's settings, and its stream's schema (a new optional
//! field), each through the admin API. Prints, per change, the time the
//! PATCH took and the ack latency p50/p99/max in the 10 s before it and
//! in the window it ran; and the events acknowledged.
//!
//! A program that prints figures, not a test: it asserts nothing.
//!
//! ```sh
//! cargo bench -p pipe --bench change_in_place
//! ```

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "../../benches/fraud_events.rs"]
mod fraud_events;
#[path = "../../benches/serve_pipe.rs"]
mod serve_pipe;
use serve_pipe::Server;

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pipe.toml"), "data_dir = \"data\"\n").unwrap();
    Server::start(dir).await
}

async fn admin(server: &Server, method: reqwest::Method, path: &str, body: serde_json::Value) {
    let r = reqwest::Client::new()
        .request(method, format!("{}{path}", server.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {text}");
}

fn schema(extra: bool) -> serde_json::Value {
    let mut schema: serde_json::Value = serde_json::from_str(fraud_events::SCHEMA).unwrap();
    if extra {
        schema["fields"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": "channel", "type": "string"}));
    }
    schema
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[i].as_secs_f64() * 1e3
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let server = start().await;
        use reqwest::Method;
        admin(
            &server,
            Method::POST,
            "/v1/streams",
            serde_json::json!({"name": "tx", "schema": schema(false)}),
        )
        .await;
        admin(
            &server,
            Method::POST,
            "/v1/sinks",
            serde_json::json!({"name": "out", "table": "tx", "roll_interval_secs": 1}),
        )
        .await;
        admin(
            &server,
            Method::POST,
            "/v1/pipelines",
            serde_json::json!({"name": "p", "sql": "INSERT INTO out SELECT * FROM tx"}),
        )
        .await;

        // (sent at, latency) of every ack.
        let acks: Arc<Mutex<Vec<(Instant, Duration)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let mut clients = Vec::new();
        for c in 0..8 {
            let (url, acks, stop, acked) = (
                server.url.clone(),
                acks.clone(),
                stop.clone(),
                acked.clone(),
            );
            clients.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut seq = c * 1_000_000;
                while !stop.load(Ordering::Relaxed) {
                    let body = fraud_events::body(100, seq, fraud_events::event);
                    seq += 100;
                    let at = Instant::now();
                    let sent = client
                        .post(format!("{url}/v1/streams/tx"))
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    if sent.is_ok_and(|r| r.status() == 200) {
                        acks.lock().unwrap().push((at, at.elapsed()));
                        acked.fetch_add(100, Ordering::Relaxed);
                    }
                }
            }));
        }
        let changes: [(&str, &str, serde_json::Value); 3] = [
            (
                "pipeline SQL",
                "/v1/pipelines/p",
                serde_json::json!({"sql": "INSERT INTO out SELECT * FROM tx WHERE amount >= 0"}),
            ),
            (
                "sink settings",
                "/v1/sinks/out",
                serde_json::json!({"compression": "snappy", "roll_interval_secs": 2}),
            ),
            (
                "stream schema",
                "/v1/streams/tx",
                serde_json::json!({"schema": schema(true)}),
            ),
        ];
        println!(
            "{:<16} {:>9} {:>30} {:>30}",
            "change", "took ms", "acks before p50/p99/max ms", "acks during p50/p99/max ms"
        );
        for (what, path, body) in changes {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let began = Instant::now();
            admin(&server, Method::PATCH, path, body).await;
            let ended = Instant::now();
            tokio::time::sleep(Duration::from_millis(500)).await;
            let window = |from: Instant, to: Instant| {
                let mut v: Vec<Duration> = acks
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|(at, _)| *at >= from && *at <= to)
                    .map(|(_, d)| *d)
                    .collect();
                v.sort();
                v
            };
            let before = window(began - Duration::from_secs(10), began);
            let during = window(began, ended);
            println!(
                "{what:<16} {:>9.0} {:>30} {:>30}",
                (ended - began).as_secs_f64() * 1e3,
                format!(
                    "{:.1}/{:.1}/{:.1}",
                    pct(&before, 0.5),
                    pct(&before, 0.99),
                    pct(&before, 1.0)
                ),
                format!(
                    "{:.1}/{:.1}/{:.1} ({} acks)",
                    pct(&during, 0.5),
                    pct(&during, 0.99),
                    pct(&during, 1.0),
                    during.len()
                ),
            );
        }
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            let _ = c.await;
        }
        println!("\n{} events acknowledged", acked.load(Ordering::Relaxed));
    });
}
