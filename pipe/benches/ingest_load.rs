//! Ingest load: one client (or several) POSTing getting-started-shaped
//! events to a real `pipe serve`, every ack fsync'd. Prints events/s, MB/s
//! and request latency percentiles. Not a test: it asserts nothing.
//!
//! ```sh
//! cargo bench -p pipe --bench ingest_load -- [SECONDS] [EVENTS_PER_REQUEST] [CLIENTS]
//! ```

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SCHEMA: &str = r#"{"fields":[
  {"name":"user_id","type":"string","required":true},
  {"name":"event_type","type":"string","required":true},
  {"name":"product_id","type":"string","required":false},
  {"name":"amount","type":"float64","required":false},
  {"name":"session","type":"string","required":false},
  {"name":"ts","type":"timestamp","required":false}]}"#;

fn body(events: usize, seq: usize) -> String {
    let events: Vec<String> = (0..events)
        .map(|i| {
            format!(
                r#"{{"user_id":"user_{:08}","event_type":"purchase","product_id":"widget-{:05}","amount":{}.99,"session":"3f1c9a0e-5b7d-4c2e-9a8f-{:012}","ts":"2026-11-23T10:15:{:02}.123Z"}}"#,
                seq * events + i,
                i % 10_000,
                i % 500,
                seq,
                i % 60
            )
        })
        .collect();
    format!("[{}]", events.join(","))
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let seconds: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(10);
    let per_request: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let clients: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("schema.json"), SCHEMA).unwrap();
    std::fs::write(
        dir.path().join("pipe.toml"),
        r#"data_dir = "data"
[streams.events]
schema_file = "schema.json"
[sinks.out]
table = "events"
roll_interval_secs = 5
[pipelines.load]
sql = "INSERT INTO out SELECT * FROM events"
"#,
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--config",
        ])
        .arg(dir.path().join("pipe.toml"))
        .env("PIPE_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/v1/streams/events");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (events, bytes, mut latencies, elapsed) = rt.block_on(async {
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if client
                .get(format!("http://127.0.0.1:{port}/healthz"))
                .send()
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let bodies: Vec<String> = (0..64).map(|s| body(per_request, s)).collect();
        let start = Instant::now();
        let deadline = start + Duration::from_secs(seconds);
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..clients {
            let (client, url, bodies) = (client.clone(), url.clone(), bodies.clone());
            tasks.spawn(async move {
                let (mut events, mut bytes, mut lat) = (0usize, 0usize, Vec::new());
                let mut i = c;
                while Instant::now() < deadline {
                    let b = &bodies[i % bodies.len()];
                    i += clients;
                    let t = Instant::now();
                    let r = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(b.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
                    lat.push(t.elapsed());
                    events += per_request;
                    bytes += b.len();
                }
                (events, bytes, lat)
            });
        }
        let (mut events, mut bytes, mut lat) = (0, 0, Vec::new());
        while let Some(r) = tasks.join_next().await {
            let (e, b, l) = r.unwrap();
            events += e;
            bytes += b;
            lat.extend(l);
        }
        (events, bytes, lat, start.elapsed())
    });
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();

    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let secs = elapsed.as_secs_f64();
    println!(
        "ingest_load: {clients} client(s), {per_request} events/request, {:.1} s, {} requests, avg event {} B",
        secs,
        latencies.len(),
        bytes / events.max(1)
    );
    println!(
        "  {:.0} events/s, {:.2} MB/s of JSON, request latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        events as f64 / secs,
        bytes as f64 / secs / 1e6,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3
    );
}
