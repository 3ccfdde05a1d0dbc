//! The getting-started pipeline on an `s3://` warehouse served by ministack
//! on 127.0.0.1, read back from S3 by PyIceberg.

use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn s3_warehouse_round_trip() {
    let endpoint = s3_endpoint();
    let bucket = format!("pipe-test-{}", std::process::id());
    let store = Store::s3(&endpoint, &bucket).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, &store.toml());
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
    // Scans read S3 through the table's FileIO, and pruning works there too.
    let (_, stats) = query_with_stats(&config, "SELECT sum(amount) FROM default.ecommerce");
    assert!(stats.contains(" from 1 of 1 files (0 skipped)"), "{stats}");
    let (rows, stats) = query_with_stats(
        &config,
        "SELECT count(*) AS n FROM default.ecommerce WHERE __ingest_ts < '2000-01-01T00:00:00Z'",
    );
    assert_eq!(rows, vec![json!({"n": 0})]);
    assert!(
        stats.contains("read 0 B from 0 of 1 files (1 skipped)"),
        "{stats}"
    );
    server.stop();

    let read = read_with_python(dir.path(), &store.warehouse, Some(&endpoint), false);
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
