//! Posting unique events to the getting-started stream, once or as a
//! load until told to stop; each gives back the ids acknowledged.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::Server;

/// Posts `requests` requests of 25 unique events; returns the acked ids.
pub async fn post_some(server: &Server, first: usize, requests: usize) -> Vec<String> {
    let mut acked = Vec::new();
    for r in 0..requests {
        acked.extend(post_ids(server, first + r * 25, 25).await);
    }
    acked
}

/// Posts one request of `n` events with ids `id-<first>`…; returns their
/// ids if it was acknowledged (a refused connection, the process gone,
/// acknowledges nothing).
pub async fn post_ids(server: &Server, first: usize, n: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n).map(|i| format!("id-{:08}", first + i)).collect();
    let body: Vec<Value> = ids
        .iter()
        .map(|id| json!({"user_id": id, "event_type": "crash_point"}))
        .collect();
    let sent = reqwest::Client::new()
        .post(format!("{}/v1/streams/ecommerce_stream", server.url))
        .json(&body)
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    match sent {
        Ok(r) if r.status() == 200 => ids,
        _ => Vec::new(),
    }
}

/// Posts requests of 20 unique events (ids from `first`) to the
/// getting-started stream, `pause` apart, until `stop` is set; the
/// acknowledged ids.
pub fn load_until(
    server: &std::sync::Arc<Server>,
    first: usize,
    pause: Duration,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Vec<String>> {
    let (server, stop) = (server.clone(), stop.clone());
    tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut next = first;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            acked.extend(post_ids(&server, next, 20).await);
            next += 20;
            tokio::time::sleep(pause).await;
        }
        acked
    })
}
