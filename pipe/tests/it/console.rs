//! The web console in a real headless browser (Chromium through
//! Selenium, `tests/console/check_console.py`): the fraud example under
//! load, every page, a SQL query and a bad one, a pipeline made and
//! deleted from the console; and a server that asks for a token. The
//! screenshots of each page go to `$PIPE_TEST_SCREENSHOTS` (scripts/test
//! sets it under its cache folder).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

fn screenshots(name: &str) -> std::path::PathBuf {
    let base = std::env::var_os("PIPE_TEST_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("pipe-console-screenshots"));
    base.join(name)
}

fn check_console(url: &str, shots: &std::path::Path, args: &[&str]) -> Value {
    let out = std::process::Command::new(python())
        .arg(repo_path("tests/console/check_console.py"))
        .arg(url)
        .arg(shots)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the console check failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A fraud event; every fifth is flagged and over 1,000.
fn fraud_event(id: &str, i: u64) -> Value {
    json!({
        "transaction_id": id, "user_id": i % 100, "amount": if i % 5 == 0 { 1500.0 } else { 20.0 },
        "transaction_timestamp": "2026-11-30T10:00:00Z", "location": "US",
        "merchant_category": "RETAIL", "is_fraud": i % 5 == 0,
    })
}

fn fraud_example(dir: &std::path::Path) -> std::path::PathBuf {
    let example = repo_path("examples/fraud");
    for file in ["pipe.toml", "raw_transactions_schema.json"] {
        std::fs::copy(example.join(file), dir.join(file)).unwrap();
    }
    // Commits every 2 s, so pipelines show committed rows within the test.
    let config = dir.join("pipe.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("roll_interval_secs = 30", "roll_interval_secs = 2"),
    )
    .unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_fraud_example_under_load_and_manages_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = fraud_example(dir.path());
    let server = Arc::new(Server::start(&config).await);
    let known: Vec<Value> = (0..500)
        .map(|i| fraud_event(&format!("known-{i}"), i))
        .collect();
    let (status, body) = server.post_json("raw_events_stream", &json!(known)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = server
        .post_json("raw_events_stream", &json!([{"user_id": 1}]))
        .await;
    assert_eq!(status, 400, "an event without its transaction_id");
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (server, stop) = (server.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<Value> = (n..n + 50)
                    .map(|i| fraud_event(&format!("load-{i}"), i))
                    .collect();
                server.post_json("raw_events_stream", &json!(batch)).await;
                n += 50;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let shots = screenshots("fraud");
    let url = server.url.clone();
    let seen = tokio::task::spawn_blocking(move || check_console(&url, &shots, &["load"]))
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert_eq!(seen["known_count"], 500, "{seen}");
    assert!(seen["stats"].as_str().unwrap().contains("1 row"), "{seen}");
    assert!(seen["error"].as_str().unwrap().contains("nope"), "{seen}");
    // Where the error is: its line, with a caret under the column.
    assert_eq!(
        seen["error_at"],
        "line 1, column 8:\nSELECT nope FROM fraud_detection.transactions\n       ^",
        "{seen}"
    );
    assert!(seen["total_points"].as_u64().unwrap() >= 3, "{seen}");
    assert_eq!(seen["stream_state"], "taking events", "{seen}");
    assert_eq!(seen["null_cells"], json!(["null", "null", "1"]), "{seen}");
    assert_eq!(
        seen["history"],
        json!([
            "SELECT NULL AS \"constructor\", NULL AS \"toString\", 1 AS n",
            "SELECT nope FROM fraud_detection.transactions"
        ]),
        "{seen}"
    );
    assert_eq!(
        seen["sinks"],
        json!(["fraud_filter_sink", "raw_events_sink"]),
        "{seen}"
    );
    assert!(
        seen["changed_pipelines"]
            .as_str()
            .unwrap()
            .contains("went through the old SQL, every later one goes through the new"),
        "{seen}"
    );
    assert!(
        seen["changed_sinks"].as_str().unwrap().contains(
            "Changed sink 'console_sink': pipeline 'console_pipeline' wrote events through offset"
        ),
        "{seen}"
    );
    assert!(seen["chart_points"].as_u64().unwrap() >= 3, "{seen}");
    assert!(seen["stream_rate"].as_f64().unwrap() > 0.0, "{seen}");
    assert_eq!(seen["created_and_deleted"], true, "{seen}");
    assert!(seen["time_travel_error"].is_null(), "{seen}");
    let rejections = seen["rejections"].as_str().unwrap();
    assert!(rejections.contains("transaction_id"), "{seen}");
    assert!(seen["time_travel_rows"].as_u64().unwrap() > 0, "{seen}");
    eprintln!("console under load: {seen}");
    Arc::try_unwrap(server).ok().unwrap().stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_console_asks_for_one_and_shows_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = fraud_example(dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    let (admin, query) = (hex_digest("console-token"), hex_digest("query-token"));
    let admin = format!(
        "[admin]\nauth_token_sha256 = [\"{admin}\"]\n\n[query]\nauth_token_sha256 = [\"{query}\"]\n\n[streams."
    );
    std::fs::write(&config, text.replacen("[streams.", &admin, 1)).unwrap();
    let server = Server::start(&config).await;
    let shots = screenshots("token");
    let url = server.url.clone();
    let seen = tokio::task::spawn_blocking(move || {
        check_console(&url, &shots, &["token", "console-token", "query-token"])
    })
    .await
    .unwrap();
    assert_eq!(seen["prompt"], "Admin token", "{seen}");
    assert_eq!(seen["data_before_token"], false, "{seen}");
    assert_eq!(seen["wrong_token_data"], false, "{seen}");
    assert_eq!(seen["after_token"], true, "{seen}");
    // The query API's own token, asked for separately.
    let note = seen["query_prompt_note"].as_str().unwrap();
    assert!(note.contains("query token of its own"), "{seen}");
    assert_eq!(seen["answer_with_both"], "42", "{seen}");
    // A query token alone: no admin data, and SQL runs.
    assert!(
        seen["declined_admin"]
            .as_str()
            .unwrap()
            .contains("admin token"),
        "{seen}"
    );
    assert_eq!(seen["data_without_admin"], false, "{seen}");
    assert_eq!(seen["answer_with_query_token"], "42", "{seen}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_lists_fifty_streams() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let server = Server::start(&config).await;
    let client = reqwest::Client::new();
    for i in 0..49 {
        let r = client
            .post(format!("{}/v1/streams", server.url))
            .json(
                &json!({"name": format!("stream_{i:02}"), "schema": {"fields": [
                {"name": "id", "type": "string", "required": true}]}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    let shots = screenshots("fifty");
    let url = server.url.clone();
    let seen = tokio::task::spawn_blocking(move || check_console(&url, &shots, &["timing", "50"]))
        .await
        .unwrap();
    assert_eq!(seen["listed"], 50, "{seen}");
    assert!(seen["charts"].as_u64().unwrap() >= 53, "{seen}");
    eprintln!("the overview with 50 streams: {seen}");
    server.stop();
}
