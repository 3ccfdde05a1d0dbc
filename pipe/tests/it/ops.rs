//! Running it like a product: `/metrics` counts what a client sent and what
//! landed, `/readyz` answers, JSON logs parse, and SIGTERM under load
//! drains, commits and exits 0 with nothing acknowledged lost.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_what_was_sent_and_what_landed() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let server = Server::start(&config).await;
    let ready = reqwest::get(format!("{}/readyz", server.url))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    let events = getting_started_events();
    assert_eq!(server.post_json("ecommerce_stream", &events).await.0, 200);
    // Two bad events in one request: the request is refused.
    let bad = json!([
        {"event_type": "purchase"},
        {"user_id": "u", "event_type": "view", "amount": "lots"}
    ]);
    assert_eq!(server.post_json("ecommerce_stream", &bad).await.0, 400);
    let before = server.metrics().await;
    let stream = r#"{stream="ecommerce_stream"}"#;
    let lag = r#"pipe_pipeline_lag_records{pipeline="ecommerce",stream="ecommerce_stream"}"#;
    assert_eq!(before[lag], 1.0, "one durable record not committed yet");
    assert!(
        before[r#"pipe_pipeline_oldest_unprocessed_age_seconds{pipeline="ecommerce",stream="ecommerce_stream"}"#]
            > 0.0
    );
    assert_eq!(server.flush("ecommerce")["rows"], 3);

    let m = server.metrics().await;
    server.stop();
    assert_eq!(m[&format!("pipe_stream_requests_total{stream}")], 2.0);
    assert_eq!(m[&format!("pipe_stream_records_in_total{stream}")], 3.0);
    assert_eq!(m[&format!("pipe_stream_decode_errors_total{stream}")], 2.0);
    assert!(m[&format!("pipe_stream_bytes_in_total{stream}")] > 100.0);
    for kind in ["missing_field", "type_mismatch"] {
        let key = format!(
            r#"pipe_stream_user_errors_total{{stream="ecommerce_stream",error_family="deserialization",error_type="{kind}"}}"#
        );
        assert_eq!(m.get(&key), Some(&1.0), "{key} in {m:#?}");
    }
    assert_eq!(m[&format!("pipe_stream_buffer_records{stream}")], 1.0);
    assert!(m[&format!("pipe_stream_buffer_bytes{stream}")] > 0.0);
    let sink = r#"{pipeline="ecommerce",sink="default.ecommerce"}"#;
    assert_eq!(m[&format!("pipe_sink_records_written_total{sink}")], 3.0);
    assert_eq!(m[&format!("pipe_sink_files_written_total{sink}")], 1.0);
    assert_eq!(m[&format!("pipe_sink_row_groups_written_total{sink}")], 1.0);
    assert!(m[&format!("pipe_sink_bytes_written_total{sink}")] > 0.0);
    assert!(m[&format!("pipe_sink_uncompressed_bytes_written_total{sink}")] > 0.0);
    assert_eq!(m[&format!("pipe_sink_commits_total{sink}")], 1.0);
    assert!(m[&format!("pipe_sink_commit_seconds_total{sink}")] > 0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last = m[&format!("pipe_sink_last_commit_timestamp_seconds{sink}")];
    assert!((now - last).abs() < 60.0, "{last} vs {now}");
    assert_eq!(m[lag], 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_load_drains_commits_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing rolls by itself: whatever was acknowledged is committed by
    // the drain.
    let config = write_config(dir.path(), 3600, "");
    let started = Instant::now();
    let server = Server::start_with_env(&config, &[("PIPE_LOG_FORMAT", "json")]).await;
    let startup = started.elapsed();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (url, stop, acked) = (server.url.clone(), stop.clone(), acked.clone());
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut next = c * 10_000_000;
            while !stop.load(Ordering::Relaxed) {
                let ids: Vec<String> = (next..next + 50).map(|i| format!("id-{i:08}")).collect();
                next += 50;
                let body: Vec<Value> = ids
                    .iter()
                    .map(|id| json!({"user_id": id, "event_type": "sigterm"}))
                    .collect();
                let sent = client
                    .post(format!("{url}/v1/streams/ecommerce_stream"))
                    .json(&body)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => acked.lock().unwrap().extend(ids),
                    // Refused or cut off while draining: not acknowledged.
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = acked.lock().unwrap().len();
    assert!(before > 1000, "the clients were acknowledged: {before}");
    let log = server.log_text();
    let t = Instant::now();
    server.stop(); // SIGTERM, and asserts exit status 0.
    let shutdown = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    // JSON logs: every line is an object with a level and a message.
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["level"].is_string() && v.get("message").is_some(),
            "{line}"
        );
    }
    // Everything acknowledged was committed by the drain: the table has it
    // before any restart.
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert_exactly_once(dir.path(), &Store::local(dir.path()), &acked);
    eprintln!(
        "SIGTERM under load: {} events acknowledged, all committed; startup to ready {:.0} ms, shutdown {:.0} ms",
        acked.len(),
        startup.as_secs_f64() * 1e3,
        shutdown.as_secs_f64() * 1e3
    );
}

/// A second SIGTERM while draining exits at once; what was acknowledged is
/// in the buffer and lands after the next start.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_sigterm_exits_at_once_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let mut server = Server::start(&config).await;
    let acked: HashSet<String> = post_some(&server, 0, 40).await.into_iter().collect();
    assert_eq!(acked.len(), 1000);
    let pid = server.child.id().to_string();
    for _ in 0..2 {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
    }
    let status = server.child.wait().unwrap();
    // Either the drain finished first (0) or the second signal cut it (130).
    assert!(matches!(status.code(), Some(0) | Some(130)), "{status}");
    drop(server);
    let server = Server::start(&config).await;
    server.flush("ecommerce");
    server.stop();
    assert_exactly_once(dir.path(), &Store::local(dir.path()), &acked);
}
