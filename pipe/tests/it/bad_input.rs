//! Bad input gets a clear 4xx, keeps nothing of the request, and the server
//! keeps serving.

use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused_whole_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let server = Server::start(&config).await;

    // Invalid JSON.
    let (status, body) = server
        .post("ecommerce_stream", "[{\"user_id\":", "application/json")
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["kind"], "invalid_input");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid JSON"),
        "{body}"
    );

    // Wrong types and a missing required field: every bad event is listed,
    // and the good event of the same request is not kept.
    let (status, body) = server
        .post_json(
            "ecommerce_stream",
            &json!([
                {"user_id": "good", "event_type": "purchase"},
                {"event_type": "purchase"},
                {"user_id": "u", "event_type": "purchase", "amount": "12.5"},
                {"user_id": 7, "event_type": "purchase"}
            ]),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"errors": [
            {"index": 1, "field": "user_id", "type": "missing_field", "message": "required field `user_id` is missing"},
            {"index": 2, "field": "amount", "type": "type_mismatch", "message": "field `amount`: expected float64, got a string"},
            {"index": 3, "field": "user_id", "type": "type_mismatch", "message": "field `user_id`: expected string, got a number"}
        ]})
    );

    // Unknown stream.
    let (status, body) = server.post_json("no_such_stream", &json!({"a": 1})).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["message"], "unknown stream `no_such_stream`");

    // Not events at all.
    let (status, _) = server.post_json("ecommerce_stream", &json!(42)).await;
    assert_eq!(status, 400);

    // Too big.
    let big = format!(
        "[{}]",
        vec![r#"{"user_id":"x","event_type":"y"}"#; 200_000].join(",")
    );
    let (status, _) = server
        .post("ecommerce_stream", big, "application/json")
        .await;
    assert_eq!(status, 413);

    // Still serving, and only the good request is in the table.
    let (status, _) = server
        .post_json(
            "ecommerce_stream",
            &json!({"user_id": "after", "event_type": "ok"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(server.flush("ecommerce")["rows"], 1);
    assert_eq!(
        query(&config, "SELECT user_id FROM default.ecommerce"),
        vec![json!({"user_id": "after"})]
    );

    // Unknown pipeline for flush: a clear error and a non-zero exit.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(["flush", "--server", &server.url, "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown pipeline `nope`"));
    server.stop();
}

#[test]
fn bad_definitions_stop_startup_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 10, "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "SELECT * FROM ecommerce_stream",
        "SELECT missing_column FROM ecommerce_stream",
    );
    std::fs::write(&config, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pipeline `ecommerce`") && stderr.contains("missing_column"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_body_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("body_timeout_secs = 1\n{text}")).unwrap();
    let server = Server::start(&config).await;
    let addr = server.url.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    conn.write_all(
        b"POST /v1/streams/ecommerce_stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[{\"user_id\":",
    )
    .await
    .unwrap();
    let mut response = vec![0u8; 512];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), conn.read(&mut response))
        .await
        .expect("the server answers a stalled body")
        .unwrap();
    let response = String::from_utf8_lossy(&response[..n]);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("did not arrive within 1 s"), "{response}");
    server.stop();
}
