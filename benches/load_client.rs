//! An ingest load for the benchmarks of the `pipe` package: clients
//! posting bodies to a stream, flat out or paced, with each ack's latency.
//! Included with `#[path]`.

#![allow(dead_code)] // each benchmark uses part of it

use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a load did.
pub struct Point {
    pub events: usize,
    pub bytes: usize,
    pub refused: usize,
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
}

impl Point {
    pub fn events_per_s(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }
    pub fn pct(&mut self, p: f64) -> f64 {
        self.latencies.sort();
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() as f64 * p) as usize).min(self.latencies.len() - 1);
        self.latencies[i].as_secs_f64() * 1e3
    }
}

/// Runs `clients` clients posting `bodies` (of `per_request` events each,
/// in turn) to the stream endpoint `url` for `seconds`; with `rate`
/// (requests/s over all clients), paced.
pub async fn load(
    url: &str,
    bodies: Arc<Vec<String>>,
    per_request: usize,
    clients: usize,
    seconds: f64,
    rate: Option<f64>,
) -> Point {
    let client = reqwest::Client::new();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (client, url, bodies) = (client.clone(), url.to_string(), bodies.clone());
        let interval = rate.map(|r| Duration::from_secs_f64(clients as f64 / r));
        tasks.spawn(async move {
            let mut p = Point {
                events: 0,
                bytes: 0,
                refused: 0,
                latencies: Vec::new(),
                elapsed: Duration::ZERO,
            };
            let mut i = c;
            // Paced clients start spread over one interval, so requests
            // arrive evenly rather than in bursts of `clients` at once.
            let mut next =
                Instant::now() + interval.unwrap_or_default() * c as u32 / clients as u32;
            while Instant::now() < deadline {
                if let Some(iv) = interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += iv;
                }
                let b = &bodies[i % bodies.len()];
                i += clients;
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(b.clone())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        p.latencies.push(t.elapsed());
                        p.events += per_request;
                        p.bytes += b.len();
                    }
                    _ => p.refused += 1,
                }
            }
            p
        });
    }
    let mut total = Point {
        events: 0,
        bytes: 0,
        refused: 0,
        latencies: Vec::new(),
        elapsed: Duration::ZERO,
    };
    while let Some(r) = tasks.join_next().await {
        let p = r.unwrap();
        total.events += p.events;
        total.bytes += p.bytes;
        total.refused += p.refused;
        total.latencies.extend(p.latencies);
    }
    total.elapsed = start.elapsed();
    total
}
