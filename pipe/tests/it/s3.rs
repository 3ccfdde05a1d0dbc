//! The getting-started pipeline on an `s3://` warehouse served by ministack
//! on 127.0.0.1, read back from S3 by PyIceberg.

use serde_json::json;

use crate::harness::*;

/// The S3 endpoint the test command started.
fn endpoint() -> String {
    std::env::var("PIPE_TEST_S3_ENDPOINT").expect(
        "PIPE_TEST_S3_ENDPOINT is not set: run the README's test command (scripts/test), \
         which starts an S3-compatible server for these tests",
    )
}

/// Creates a bucket with a bare S3 PUT (ministack accepts any credentials).
async fn create_bucket(endpoint: &str, bucket: &str) {
    let r = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .expect("creating the bucket");
    assert!(
        r.status().is_success() || r.status().as_u16() == 409,
        "create bucket: {}",
        r.status()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_warehouse_round_trip() {
    let endpoint = endpoint();
    let bucket = format!("pipe-test-{}", std::process::id());
    create_bucket(&endpoint, &bucket).await;
    let dir = tempfile::tempdir().unwrap();
    let warehouse = format!(
        r#"[warehouse]
location = "s3://{bucket}/warehouse"
s3 = {{ endpoint = "{endpoint}", region = "us-east-1", access_key_id = "test", secret_access_key = "test", path_style = true }}"#
    );
    let config = write_config(dir.path(), 3600, &warehouse);
    let server = Server::start(&config).await;
    let events = getting_started_events();
    assert_eq!(
        server.post_json("ecommerce_stream", &events).await,
        (200, json!({"accepted": 3}))
    );
    assert_eq!(server.flush("ecommerce")["rows"], 3);
    let rows = query(
        &config,
        "SELECT count(*) AS n, round(sum(amount), 2) AS total FROM default.ecommerce",
    );
    assert_eq!(rows, vec![json!({"n": 3, "total": 45.49})]);
    server.stop();

    let read = read_with_python(
        dir.path(),
        &format!("s3://{bucket}/warehouse"),
        Some(&endpoint),
        false,
    );
    let mut got = read["pyiceberg"]["rows"].as_array().unwrap().clone();
    got.sort_by_key(sorted_json);
    assert_eq!(got, expected_rows(&events));
    let files: Vec<&str> = read["pyiceberg"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        files
            .iter()
            .all(|f| f.starts_with(&format!("s3://{bucket}/warehouse/"))),
        "{files:?}"
    );
}
