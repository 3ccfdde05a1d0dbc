//! Ingest load on the real `pipe serve` (release build), every ack fsync'd,
//! with the pipeline committing to Iceberg alongside as it would in
//! production. Events have the fraud-detection tutorial's shape. Prints:
//!
//! - events/s and MB/s for batches of 1, 100, 1000 events with 1, 8, 64 clients;
//! - the single-core arrow-json decode rate of the same events, and the ratio;
//! - p50/p99 of one 64 KiB write + fdatasync on this disk, beside the p50/p99
//!   ack latency at half the best measured load;
//! - the server's peak RSS after a 2× overload.
//!
//! A program that prints figures, not a test: it asserts nothing.
//!
//! ```sh
//! cargo bench -p pipe --bench ingest_load -- [SECONDS_PER_POINT]
//! ```

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

#[path = "../../benches/fraud_events.rs"]
mod fraud_events;
#[path = "../../benches/load_client.rs"]
mod load_client;
#[path = "../../benches/serve_pipe.rs"]
mod serve_pipe;
use fraud_events::{event, SCHEMA};
use load_client::Point;
use serve_pipe::Server;

/// A filter and six expressions per row (no list to unnest in this shape).
const HEAVY: &str = "SELECT transaction_id, upper(location) AS loc, amount * 1.1 AS with_tax, \
    md5(transaction_id) AS digest, regexp_replace(merchant_category, '[AEIOU]', '*', 'g') AS masked, \
    CASE WHEN amount > 1000 THEN 'high' ELSE 'low' END AS band, \
    date_trunc('hour', CAST(transaction_timestamp AS TIMESTAMP)) AS hour \
    FROM transactions WHERE is_fraud = false OR amount > 100";

fn body(events: usize, seq: usize) -> String {
    fraud_events::body(events, seq, event)
}

/// Starts `pipe serve` with one pipeline running `select` (the part
/// after `INSERT INTO out`) and waits until it answers.
fn start(rt: &tokio::runtime::Runtime, select: &str) -> Server {
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
roll_interval_secs = 5
[pipelines.load]
sql = "INSERT INTO out {select}"
"#
        ),
    )
    .unwrap();
    rt.block_on(Server::start(dir))
}

/// [`load_client::load`] of fraud events to the server's `transactions`.
async fn load_to(
    server: &Server,
    per_request: usize,
    clients: usize,
    seconds: f64,
    rate: Option<f64>,
) -> Point {
    let bodies = Arc::new((0..32).map(|s| body(per_request, s)).collect());
    let url = format!("{}/v1/streams/transactions", server.url);
    load_client::load(&url, bodies, per_request, clients, seconds, rate).await
}

/// Single-core arrow-json decode rate of the same events: (events/s, MB/s).
fn decode_rate() -> (f64, f64) {
    let schema = Arc::new(arrow::datatypes::Schema::new(fraud_events::arrow_fields()));
    let n = 200_000;
    let ndjson: String = (0..n).map(|i| event(i) + "\n").collect();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let mut decoder = arrow::json::ReaderBuilder::new(schema.clone())
            .with_batch_size(8192)
            .build_decoder()
            .unwrap();
        let mut buf = ndjson.as_bytes();
        let mut rows = 0;
        while !buf.is_empty() {
            let used = decoder.decode(buf).unwrap();
            buf = &buf[used..];
            if let Some(b) = decoder.flush().unwrap() {
                rows += b.num_rows();
            }
        }
        if let Some(b) = decoder.flush().unwrap() {
            rows += b.num_rows();
        }
        assert_eq!(rows, n);
        best = best.min(t.elapsed().as_secs_f64());
    }
    (n as f64 / best, ndjson.len() as f64 / best / 1e6)
}

/// Single-core rate of pipe's own validating decoder on the same events, in
/// 1,000-event JSON array bodies: (events/s, MB/s).
fn pipe_decode_rate() -> (f64, f64) {
    let schema = pipe::schemas::StreamSchema::from_json(SCHEMA).unwrap();
    let decoder = pipe::schemas::EventDecoder::new(Some(schema));
    let bodies: Vec<String> = (0..200).map(|seq| body(1000, seq)).collect();
    let bytes: usize = bodies.iter().map(String::len).sum();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        for b in &bodies {
            match decoder.decode(b.as_bytes(), pipe::schemas::BodyFormat::Json) {
                Ok(pipe::schemas::Decoded::Batch { batch, .. }) => {
                    assert_eq!(batch.num_rows(), 1000)
                }
                _ => panic!("the bench's events are valid"),
            }
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    (200_000.0 / best, bytes as f64 / best / 1e6)
}

/// p50 and p99 (ms) of one 64 KiB append + fdatasync on the temp dir's disk.
fn fsync_latency() -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(dir.path().join("probe")).unwrap();
    let block = vec![7u8; 64 * 1024];
    let mut lat: Vec<f64> = (0..500)
        .map(|_| {
            let t = Instant::now();
            f.write_all(&block).unwrap();
            f.sync_data().unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    (lat[lat.len() / 2], lat[lat.len() * 99 / 100])
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let seconds: f64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(5.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = start(&rt, "SELECT * FROM transactions");
    let event_bytes = event(12345).len();
    println!("ingest_load: fraud-detection events (~{event_bytes} B of JSON each), {seconds} s per point, acks fsync'd, pipeline committing every 5 s");
    println!(
        "{:>8} {:>8} {:>12} {:>9} {:>9} {:>9} {:>8}",
        "batch", "clients", "events/s", "MB/s", "p50 ms", "p99 ms", "refused"
    );
    let mut best = (0.0f64, 0usize, 0usize);
    for per_request in [1, 100, 1000] {
        for clients in [1, 8, 64] {
            let mut p = rt.block_on(load_to(&server, per_request, clients, seconds, None));
            let (p50, p99) = (p.pct(0.5), p.pct(0.99));
            println!(
                "{:>8} {:>8} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>8}",
                per_request,
                clients,
                p.events_per_s(),
                p.mb_per_s(),
                p50,
                p99,
                p.refused
            );
            if p.events_per_s() > best.0 {
                best = (p.events_per_s(), per_request, clients);
            }
        }
    }

    let (dec_events, dec_mb) = decode_rate();
    let (own_events, own_mb) = pipe_decode_rate();
    println!(
        "pipe's validating decode, one core: {own_events:.0} events/s, {own_mb:.1} MB/s = {:.2} of arrow-json",
        own_events / dec_events
    );
    let best_mb = best.0 * event_bytes as f64 / 1e6;
    println!(
        "arrow-json decode, one core: {dec_events:.0} events/s, {dec_mb:.1} MB/s; best ingest {:.0} events/s ({best_mb:.1} MB/s, batch {}, {} clients) = {:.2} of it",
        best.0, best.1, best.2, best.0 / dec_events
    );

    let (f50, f99) = fsync_latency();
    let half_rate = best.0 / 2.0 / best.1 as f64; // requests/s
    let mut half = rt.block_on(load_to(
        &server,
        best.1,
        best.2,
        seconds * 2.0,
        Some(half_rate),
    ));
    let (h50, h99) = (half.pct(0.5), half.pct(0.99));
    println!(
        "fsync of 64 KiB: p50 {f50:.2} ms, p99 {f99:.2} ms; acks at half load ({:.0} events/s): p50 {h50:.2} ms, p99 {h99:.2} ms (p99 = {:.1} fsync p99s)",
        half.events_per_s(),
        h99 / f99
    );

    let mut over = rt.block_on(load_to(&server, 1000, 128, seconds * 2.0, None));
    let over_p99 = over.pct(0.99);
    println!(
        "2x overload (128 clients x 1000 events): {:.0} events/s accepted, {} requests refused (503), ack p99 {over_p99:.1} ms; server peak RSS {:.0} MiB",
        over.events_per_s(),
        over.refused,
        server.peak_rss_mib()
    );

    drop(server);

    // The same half load with a heavy transform: a filter and expressions
    // on every row, Parquet of the result.
    let heavy = start(&rt, HEAVY);
    let mut half_heavy = rt.block_on(load_to(
        &heavy,
        best.1,
        best.2,
        seconds * 2.0,
        Some(half_rate),
    ));
    println!(
        "acks at the same half load with a heavy transform ({:.0} events/s): p50 {:.2} ms, p99 {:.2} ms (SELECT *: p50 {h50:.2} ms, p99 {h99:.2} ms)",
        half_heavy.events_per_s(),
        half_heavy.pct(0.5),
        half_heavy.pct(0.99),
    );
}
