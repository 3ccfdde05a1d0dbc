//! SIGKILL the server while a client is posting and after some commits;
//! restart; every event that got a 200 is in the table exactly once.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

/// Posts batches of unique events until `stop`; returns the acknowledged ids.
async fn post_until(
    url: String,
    stop: Arc<AtomicBool>,
    start: usize,
    acked: Arc<Mutex<Vec<String>>>,
) {
    let client = reqwest::Client::new();
    let mut next = start;
    while !stop.load(Ordering::Relaxed) {
        let ids: Vec<String> = (next..next + 20).map(|i| format!("id-{i:08}")).collect();
        next += 20;
        let body: Vec<Value> = ids
            .iter()
            .map(|id| json!({"user_id": id, "event_type": "crash_test", "amount": 1.0}))
            .collect();
        let sent = client
            .post(format!("{url}/v1/streams/ecommerce_stream"))
            .json(&body)
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        match sent {
            Ok(r) if r.status() == 200 => acked.lock().unwrap().extend(ids),
            // The server died mid-request: these were not acknowledged.
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_stream_loses_and_duplicates_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // Roll every second so commits happen while the client posts.
    let config = write_config(dir.path(), 1, "");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut start = 0;
    for round in 0..3 {
        let server = Server::start(&config).await;
        let stop = Arc::new(AtomicBool::new(false));
        let client = tokio::spawn(post_until(
            server.url.clone(),
            stop.clone(),
            start,
            acked.clone(),
        ));
        // Long enough for a few rolls and commits, then kill mid-stream.
        tokio::time::sleep(Duration::from_millis(2500 + 300 * round)).await;
        server.kill();
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, Ordering::Relaxed);
        client.await.unwrap();
        start += 1_000_000;
    }
    // Restart, commit what the buffer still holds, and count.
    let server = Server::start(&config).await;
    server.flush("ecommerce");
    server.stop();

    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert!(
        acked.len() > 200,
        "the client should have been acknowledged many events, got {}",
        acked.len()
    );
    let counts = query(
        &config,
        "SELECT count(*) AS n, count(DISTINCT user_id) AS distinct_ids FROM default.ecommerce",
    );
    let n = counts[0]["n"].as_u64().unwrap();
    let distinct = counts[0]["distinct_ids"].as_u64().unwrap();
    assert_eq!(n, distinct, "duplicated rows after crashes");
    let rows = query(&config, "SELECT user_id FROM default.ecommerce");
    let stored: HashSet<String> = rows
        .iter()
        .map(|r| r["user_id"].as_str().unwrap().to_string())
        .collect();
    let missing: Vec<_> = acked.difference(&stored).take(5).collect();
    assert!(
        missing.is_empty(),
        "acknowledged events lost: {missing:?} (of {})",
        acked.len()
    );
    eprintln!(
        "crash test: {} acknowledged, {} stored once each",
        acked.len(),
        stored.len()
    );
}
