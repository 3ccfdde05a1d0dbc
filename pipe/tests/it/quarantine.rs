//! Quarantine mode: good events go on, bad ones land with their errors in a
//! quarantine table that `pipe query` reads. Nothing is dropped.

use serde_json::{json, Value};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn bad_events_are_quarantined_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config_with(dir.path(), 3600, "", "invalid_events = \"quarantine\"");
    let server = Server::start(&config).await;

    let (status, body) = server
        .post_json(
            "ecommerce_stream",
            &json!([
                {"user_id": "good1", "event_type": "purchase", "amount": 1.0},
                {"event_type": "purchase"},
                {"user_id": "good2", "event_type": "view"},
                {"user_id": "bad", "event_type": "purchase", "amount": "lots"}
            ]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["quarantined"], 2);
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["user_id", "amount"]);
    // A request with only bad events is still answered 200: all quarantined.
    let (status, body) = server
        .post_json("ecommerce_stream", &json!({"nope": 1}))
        .await;
    assert_eq!(
        (
            status,
            body["accepted"].clone(),
            body["quarantined"].clone()
        ),
        (200, json!(0), json!(1))
    );

    assert_eq!(server.flush("ecommerce")["rows"], 2);
    assert_eq!(server.flush("ecommerce_stream__quarantine")["rows"], 3);
    server.stop();
    // A restart commits nothing twice.
    let server = Server::start(&config).await;
    server.flush("ecommerce");
    server.flush("ecommerce_stream__quarantine");
    server.stop();

    let good = query(
        &config,
        "SELECT user_id FROM default.ecommerce ORDER BY user_id",
    );
    assert_eq!(
        good,
        vec![json!({"user_id": "good1"}), json!({"user_id": "good2"})]
    );
    let bad = query(
        &config,
        "SELECT event_index, event, errors FROM default.ecommerce_stream_quarantine ORDER BY __ingest_ts, event_index",
    );
    assert_eq!(bad.len(), 3);
    assert_eq!(bad[0]["event_index"], 1);
    assert_eq!(bad[0]["event"], r#"{"event_type":"purchase"}"#);
    let errors: Value = serde_json::from_str(bad[1]["errors"].as_str().unwrap()).unwrap();
    assert_eq!(errors[0]["type"], "type_mismatch");
    assert_eq!(errors[0]["field"], "amount");
    assert_eq!(bad[2]["event"], r#"{"nope":1}"#);
}

/// A stream named with `-` and capitals quarantines too, and a pipeline
/// names such a stream and sink quoted (its quarantine pipeline's SQL
/// named them bare, so creating the stream failed with a parse error).
#[tokio::test(flavor = "multi_thread")]
async fn names_with_dashes_and_capitals_quarantine_and_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipe.toml");
    std::fs::write(&config, "data_dir = \"data\"\n").unwrap();
    let server = Server::start(&config).await;
    server
        .create(&[
            (
                "streams",
                json!({"name": "Click-Events", "schema": {"fields": [{"name": "id", "type": "int64", "required": true}]}, "invalid_events": "quarantine"}),
            ),
            (
                "sinks",
                json!({"name": "clicks-sink", "type": "iceberg", "namespace": "web", "table": "clicks", "roll_interval_secs": 3600}),
            ),
            (
                "pipelines",
                json!({"name": "clicks", "sql": "INSERT INTO \"clicks-sink\" SELECT id FROM \"Click-Events\""}),
            ),
        ])
        .await;
    let (status, body) = server
        .post_json("Click-Events", &json!([{"id": 1}, {"id": "two"}]))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.flush("clicks")["rows"], 1);
    assert_eq!(server.flush("Click-Events__quarantine")["rows"], 1);
    server.stop();
    let bad = query(
        &config,
        "SELECT event FROM \"default\".\"Click-Events_quarantine\"",
    );
    assert_eq!(bad, vec![json!({"event": r#"{"id":"two"}"#})]);

    // Capitals alone: registered as named, not lowercased (review 17).
    let server = Server::start(&config).await;
    server
        .create(&[(
            "streams",
            json!({"name": "Clicks", "schema": {"fields": [{"name": "id", "type": "int64", "required": true}]}, "invalid_events": "quarantine"}),
        )])
        .await;
    let r = reqwest::Client::new()
        .post(format!("{}/v1/pipelines", server.url))
        .json(&json!({"name": "clicks2", "sql": "INSERT INTO \"clicks-sink2\" SELECT id FROM \"Clicks\""}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "no such sink yet");
    let (status, body) = server
        .post_json("Clicks", &json!([{"id": 1}, {"id": "two"}]))
        .await;
    assert_eq!(
        (status, body["quarantined"].clone()),
        (200, json!(1)),
        "{body}"
    );
    assert_eq!(server.flush("Clicks__quarantine")["rows"], 1);
    server.stop();
}
