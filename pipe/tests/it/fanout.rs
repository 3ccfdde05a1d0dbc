//! One stream feeding two pipelines with their own SQL and tables; buffer
//! space is freed only when both have committed past it.

use serde_json::{json, Value};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn one_stream_two_pipelines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("schema.json"), SCHEMA).unwrap();
    let config = dir.path().join("pipe.toml");
    std::fs::write(
        &config,
        r#"data_dir = "data"
[streams.ecommerce_stream]
schema_file = "schema.json"
buffer_segment_mb = 1

[sinks.all_events]
table = "all_events"
roll_interval_secs = 3600

[sinks.purchases]
namespace = "sales"
table = "purchases"
roll_interval_secs = 3600

[pipelines.everything]
sql = "INSERT INTO all_events SELECT * FROM ecommerce_stream"

[pipelines.purchases_only]
sql = "INSERT INTO purchases SELECT user_id, amount * 100 AS cents FROM ecommerce_stream WHERE event_type = 'purchase'"
"#,
    )
    .unwrap();
    let server = Server::start(&config).await;
    let events: Vec<Value> = (0..3000)
        .map(|i| {
            json!({"user_id": format!("u{i:05}"), "event_type": if i % 3 == 0 { "purchase" } else { "view" },
                   "product_id": "p".repeat(400), "amount": 1.5})
        })
        .collect();
    server.post_chunks("ecommerce_stream", &events, 500).await;
    let first_segment = dir
        .path()
        .join(format!("data/buffer/ecommerce_stream/{:020}.seg", 0));
    // One pipeline committing is not enough to free the shared buffer.
    assert_eq!(server.flush("everything")["rows"], 3000);
    assert!(
        first_segment.exists(),
        "purchases_only has not committed yet"
    );
    assert_eq!(server.flush("purchases_only")["rows"], 1000);
    assert!(
        !first_segment.exists(),
        "both pipelines committed past the first segment"
    );
    server.stop();

    assert_eq!(
        query(&config, "SELECT count(*) AS n FROM default.all_events"),
        vec![json!({"n": 3000})]
    );
    assert_eq!(
        query(
            &config,
            "SELECT count(*) AS n, min(cents) AS c FROM sales.purchases"
        ),
        vec![json!({"n": 1000, "c": 150.0})]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_without_pipelines_keeps_its_events_until_one_is_attached() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("schema.json"), SCHEMA).unwrap();
    let config = dir.path().join("pipe.toml");
    let stream_only = r#"data_dir = "data"
[streams.ecommerce_stream]
schema_file = "schema.json"

[sinks.later]
table = "later"
roll_interval_secs = 3600
"#;
    std::fs::write(&config, stream_only).unwrap();
    let server = Server::start(&config).await;
    let events = getting_started_events();
    assert_eq!(server.post_json("ecommerce_stream", &events).await.0, 200);
    assert_eq!(server.post_json("ecommerce_stream", &events).await.0, 200);
    server.stop();

    std::fs::write(
        &config,
        format!(
            "{stream_only}\n[pipelines.attached]\nsql = \"INSERT INTO later SELECT user_id FROM ecommerce_stream\"\n"
        ),
    )
    .unwrap();
    let server = Server::start(&config).await;
    assert_eq!(server.flush("attached")["rows"], 6);
    server.stop();
    let rows = query(&config, "SELECT count(*) AS n FROM default.later");
    assert_eq!(rows, vec![json!({"n": 6})]);
}
