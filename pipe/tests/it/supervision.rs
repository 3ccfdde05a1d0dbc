//! A pipeline that fails is retried or reported, never silently gone: its
//! state shows in `GET /v1/pipelines/{name}`, `pipe pipelines get`,
//! `/metrics` and `/readyz`. Events buffered under an earlier schema of the
//! stream are read, or refused by name, never a panic.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;

async fn readyz(server: &Server) -> (u16, Value) {
    let r = reqwest::get(format!("{}/readyz", server.url))
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Waits until the pipeline's state is `state`; returns its status.
async fn wait_for_state(server: &Server, pipeline: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = server.status(pipeline).await;
        if status["state"] == state {
            return status;
        }
        assert!(Instant::now() < deadline, "never {state}: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn pipelines_get(server: &Server, pipeline: &str) -> String {
    cli(server, &["pipelines", "get", pipeline])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_that_panics_is_retried_and_shown_while_it_retries() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    // Every step that reads records panics.
    let fault = format!("{}@1+", pipe::crash::PIPELINE_STEP_PANIC);
    let server = Server::start_with_env(&config, &[("PIPE_FAULT", &fault)]).await;
    let events = getting_started_events();
    assert_eq!(server.post_json("ecommerce_stream", &events).await.0, 200);
    let status = wait_for_state(&server, "ecommerce", "retrying").await;
    assert!(
        status["state_reason"]
            .as_str()
            .unwrap()
            .contains("panicked"),
        "{status}"
    );
    assert!(status["retry_attempts"].as_u64().unwrap() >= 1, "{status}");
    let (code, body) = flush_answer(&server, "ecommerce").await;
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("panicked"), "{body}");
    let metrics = server.metrics().await;
    assert_eq!(
        metrics[r#"pipe_pipeline_state{pipeline="ecommerce",state="retrying"}"#],
        1.0
    );
    assert_eq!(
        metrics[r#"pipe_pipeline_state{pipeline="ecommerce",state="running"}"#],
        0.0
    );
    let details = pipelines_get(&server, "ecommerce");
    assert!(
        details.contains("state             retrying since"),
        "{details}"
    );
    // A retrying pipeline still runs: the server is ready.
    assert_eq!(readyz(&server).await.0, 200);
    // Nothing was committed or lost: after a restart the events land once.
    server.kill();
    let server = Server::start(&config).await;
    assert_eq!(server.flush("ecommerce")["rows"], 3);
    assert_eq!(server.status("ecommerce").await["state"], "running");
    server.stop();
    assert_eq!(
        query(&config, "SELECT count(*) AS n FROM default.ecommerce"),
        vec![json!({"n": 3})]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_task_that_ends_is_failed_and_the_server_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let server =
        Server::start_with_env(&config, &[("PIPE_FAULT", pipe::crash::PIPELINE_TASK_PANIC)]).await;
    let events = getting_started_events();
    assert_eq!(server.post_json("ecommerce_stream", &events).await.0, 200);
    let status = wait_for_state(&server, "ecommerce", "failed").await;
    assert!(
        status["state_reason"]
            .as_str()
            .unwrap()
            .contains("panicked"),
        "{status}"
    );
    let (code, body) = readyz(&server).await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body["problems"][0]
            .as_str()
            .unwrap()
            .contains("pipeline `ecommerce` failed"),
        "{body}"
    );
    let (code, body) = flush_answer(&server, "ecommerce").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("panicked"), "{body}");
    let metrics = server.metrics().await;
    assert_eq!(
        metrics[r#"pipe_pipeline_state{pipeline="ecommerce",state="failed"}"#],
        1.0
    );
    assert!(pipelines_get(&server, "ecommerce").contains("state             failed since"));
    // Events still arrive and wait in the buffer; a restart delivers them.
    assert_eq!(server.post_json("ecommerce_stream", &events).await.0, 200);
    server.kill();
    let server = Server::start(&config).await;
    assert_eq!(server.flush("ecommerce")["rows"], 6);
    assert_eq!(readyz(&server).await.0, 200);
    server.stop();
}

const SCHEMA_V1: &str = r#"{"fields":[
  {"name":"user_id","type":"string","required":true},
  {"name":"amount","type":"float32"}]}"#;
const SCHEMA_V2: &str = r#"{"fields":[
  {"name":"user_id","type":"string","required":true},
  {"name":"amount","type":"float64"},
  {"name":"coupon","type":"string"}]}"#;
const SCHEMA_V3: &str = r#"{"fields":[
  {"name":"user_id","type":"string","required":true}]}"#;

fn schema_config(dir: &std::path::Path, schema: &str, table: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("orders.json"), schema).unwrap();
    let config = dir.join("pipe.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "data"
[streams.orders]
schema_file = "orders.json"

[sinks.orders_sink]
table = "{table}"
roll_interval_secs = 3600

[pipelines.p]
sql = "INSERT INTO orders_sink SELECT * FROM orders"
"#
        ),
    )
    .unwrap();
    config
}

/// The stream's schema changes and its pipeline points at a new table while
/// records of the old schema are still in the buffer (a new table starts at
/// the oldest buffered record). Before, the pipeline task panicked (`index
/// out of bounds`) and died silently (issue 16, item 7).
#[tokio::test(flavor = "multi_thread")]
async fn events_of_an_earlier_schema_are_read_or_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = schema_config(dir.path(), SCHEMA_V1, "v1");
    let server = Server::start(&config).await;
    let old = json!([{"user_id": "a", "amount": 1.5}, {"user_id": "b"}]);
    assert_eq!(server.post_json("orders", &old).await.0, 200);
    server.stop();

    // Widened and extended: old events fit.
    let config = schema_config(dir.path(), SCHEMA_V2, "v2");
    let server = Server::start(&config).await;
    let new = json!([{"user_id": "c", "amount": 2.25, "coupon": "X"}]);
    assert_eq!(server.post_json("orders", &new).await.0, 200);
    assert_eq!(server.flush("p")["rows"], 3);
    assert_eq!(server.status("p").await["state"], "running");
    server.stop();
    assert_eq!(
        query(
            &config,
            "SELECT user_id, amount, coupon FROM default.v2 ORDER BY user_id"
        ),
        // (`--format json` leaves nulls out.)
        vec![
            json!({"user_id": "a", "amount": 1.5}),
            json!({"user_id": "b"}),
            json!({"user_id": "c", "amount": 2.25, "coupon": "X"}),
        ]
    );

    // A field removed while events that have it are buffered (for the
    // pipeline, now writing a new table): the start is refused by name,
    // with what to do; nothing is dropped, and the old schema starts.
    let config = schema_config(dir.path(), SCHEMA_V3, "v3");
    let reason = serve_refused(&config);
    assert!(
        reason.contains("field `amount`") && reason.contains("schema back"),
        "{reason}"
    );
    let config = schema_config(dir.path(), SCHEMA_V2, "v3");
    let server = Server::start(&config).await;
    assert_eq!(server.flush("p")["rows"], 3);
    server.stop();
}

/// A pipeline asked to stop shows as `draining` while it commits what it
/// read, in its view and in `/metrics`, and is gone once that landed.
#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_that_is_stopping_shows_as_draining_until_its_last_commit() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let server = Server::start_with_env(
        &config,
        &[
            ("PIPE_FAULT", pipe::crash::SLOW_STOP),
            ("PIPE_FAULT_DELAY_MS", "2500"),
        ],
    )
    .await;
    server
        .create(&[
            (
                "sinks",
                json!({"name": "drained_sink", "type": "iceberg", "namespace": "default", "table": "drained", "roll_interval_secs": 3600}),
            ),
            (
                "pipelines",
                json!({"name": "drained", "sql": "INSERT INTO drained_sink SELECT * FROM ecommerce_stream"}),
            ),
        ])
        .await;
    let http = reqwest::Client::new();
    let events = getting_started_events();
    assert_eq!(server.post_json("ecommerce_stream", &events).await.0, 200);

    let delete = tokio::spawn(
        http.delete(format!("{}/v1/pipelines/drained", server.url))
            .send(),
    );
    let status = wait_for_state(&server, "drained", "draining").await;
    assert!(status["state_reason"].is_null(), "{status}");
    let metrics = server.metrics().await;
    assert_eq!(
        metrics[r#"pipe_pipeline_state{pipeline="drained",state="draining"}"#],
        1.0
    );
    let r = delete.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    // The answer names the offset its last commit reached (it was read
    // before the drain, when nothing was committed yet).
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["committed_through"], 0, "{answer}");
    let r = reqwest::get(format!("{}/v1/pipelines/drained", server.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // What it read was committed before it ended.
    let rows = query(&config, "SELECT count(*) AS n FROM default.drained");
    assert_eq!(rows[0]["n"], events.as_array().unwrap().len());
    server.stop();
}
