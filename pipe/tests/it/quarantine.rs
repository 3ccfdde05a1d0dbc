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
