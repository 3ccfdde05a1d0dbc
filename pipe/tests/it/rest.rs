//! The getting-started pipeline on an Iceberg REST catalog: the S3 Tables
//! REST endpoint of the test's S3 server (ministack), reached with a bearer
//! token, its table read back by `pipe query` and by PyIceberg's own REST
//! client.

use serde_json::json;

use crate::harness::*;

/// Creates an S3 Tables table bucket; returns its ARN (the warehouse).
async fn create_table_bucket(endpoint: &str, name: &str) -> String {
    let r = reqwest::Client::new()
        .put(format!("{endpoint}/buckets"))
        // ministack routes by the signing service; the signature is not checked.
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3tables/aws4_request, SignedHeaders=host, Signature=0",
        )
        .json(&json!({ "name": name }))
        .send()
        .await
        .expect("creating the table bucket");
    assert!(
        r.status().is_success(),
        "create table bucket: {}",
        r.status()
    );
    let body: serde_json::Value = r.json().await.unwrap();
    body["arn"].as_str().expect("the bucket's ARN").to_string()
}

/// The getting-started stream into `shop.ecommerce` on the REST catalog
/// of the test's S3 server, warehouse `warehouse`, with a bearer token.
fn rest_config(dir: &std::path::Path, endpoint: &str, warehouse: &str) -> std::path::PathBuf {
    write_stream_config(
        dir,
        &format!(
            r#"
[catalog]
type = "rest"
uri = "{endpoint}/iceberg"
warehouse = "{warehouse}"
token = "a-bearer-token"
"#
        ),
        r#"
[sinks.ecommerce_sink]
namespace = "shop"
table = "ecommerce"

[pipelines.ecommerce]
sql = "INSERT INTO ecommerce_sink SELECT * FROM ecommerce_stream"
"#,
    )
}

/// Python that opens the same catalog with PyIceberg's REST client as `cat`.
fn pyiceberg_rest(endpoint: &str, warehouse: &str) -> String {
    format!(
        r#"from pyiceberg.catalog.rest import RestCatalog
cat = RestCatalog("r", uri="{endpoint}/iceberg", warehouse="{warehouse}", token="a-bearer-token",
                  **{{"s3.endpoint": "{endpoint}", "s3.access-key-id": "test", "s3.secret-access-key": "test",
                     "s3.region": "us-east-1", "s3.force-virtual-addressing": "false"}})
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn rest_catalog_round_trip() {
    let endpoint = s3_endpoint();
    let warehouse =
        create_table_bucket(&endpoint, &format!("pipe-rest-{}", std::process::id())).await;
    let dir = tempfile::tempdir().unwrap();
    let config = rest_config(dir.path(), &endpoint, &warehouse);
    deliver_getting_started(&config).await;
    let rows = query(
        &config,
        "SELECT count(*) AS n, round(sum(amount), 2) AS total FROM shop.ecommerce",
    );
    assert_eq!(rows, vec![json!({"n": 3, "total": 45.49})]);

    let open = pyiceberg_rest(&endpoint, &warehouse);
    let script = format!(
        r#"
import json
{open}t = cat.load_table("shop.ecommerce")
rows = t.scan(selected_fields=("user_id", "amount")).to_arrow().to_pylist()
print(json.dumps({{"rows": sorted(rows, key=lambda r: r["user_id"] + str(r["amount"])),
                  "pipeline": t.current_snapshot().summary.additional_properties.get("pipe.pipeline")}}))
"#
    );
    let read = python_json(&script, dir.path());
    assert_eq!(read["pipeline"], "ecommerce", "{read}");
    assert_eq!(
        read["rows"],
        json!([
            {"user_id": "user_12345", "amount": 15.5},
            {"user_id": "user_12345", "amount": 29.99},
            {"user_id": "user_67890", "amount": null}
        ])
    );
}

/// Maintenance through the REST catalog: the compaction's replace snapshot
/// goes to the server's commit endpoint, and PyIceberg's REST client reads
/// every row once afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn maintenance_through_a_rest_catalog() {
    maintain_through_rest("pipe-rest-m", &[]).await;
}

/// The same with the commit's answer held back 2 s while the sink commits
/// on top, then lost: the table is loaded back, shows the compaction's
/// snapshot, and the run is a success with nothing deleted that the table
/// references.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_answer_from_the_rest_catalog_is_read_back() {
    maintain_through_rest(
        "pipe-rest-l",
        &[
            ("PIPE_FAULT", "lose-maintenance-swap-answer@1"),
            ("PIPE_FAULT_DELAY_MS", "2000"),
        ],
    )
    .await;
}

/// Four commits of 5 events, an on-demand compaction (with one more commit
/// of 5 while it runs), then every row once through `pipe query` and
/// PyIceberg's REST client.
async fn maintain_through_rest(bucket: &str, env: &[(&str, &str)]) {
    let endpoint = s3_endpoint();
    let warehouse =
        create_table_bucket(&endpoint, &format!("{bucket}-{}", std::process::id())).await;
    let dir = tempfile::tempdir().unwrap();
    let config = rest_config(dir.path(), &endpoint, &warehouse);
    let server = Server::start_with_env(&config, env).await;
    let mut acked = 0;
    let post = |r: usize| {
        let body: Vec<serde_json::Value> = (0..5)
            .map(|i| json!({"user_id": format!("u-{r}-{i}"), "event_type": "rest"}))
            .collect();
        serde_json::Value::Array(body)
    };
    for r in 0..4 {
        let (status, _) = server.post_json("ecommerce_stream", &post(r)).await;
        assert_eq!(status, 200);
        acked += 5;
        server.flush("ecommerce");
    }
    let url = format!("{}/v1/tables/shop.ecommerce/maintain", server.url);
    let maintain = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .json(&json!({"sweep": false}))
            .send()
            .await
            .unwrap()
    });
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let (status, _) = server.post_json("ecommerce_stream", &post(4)).await;
    assert_eq!(status, 200);
    acked += 5;
    server.flush("ecommerce");
    let r = maintain.await.unwrap();
    assert_eq!(r.status(), 200);
    let done: serde_json::Value = r.json().await.unwrap();
    assert_eq!(done["outcome"], "ok", "{done}");
    // Four, or five if the last commit landed before the run planned.
    let removed = done["compacted"]["files_removed"].as_u64().unwrap();
    assert!(removed == 4 || removed == 5, "{done}");
    server.stop();
    let rows = query(&config, "SELECT count(*) AS n FROM shop.ecommerce");
    assert_eq!(rows, vec![json!({"n": acked})]);
    let open = pyiceberg_rest(&endpoint, &warehouse);
    let script = format!(
        r#"
import json
{open}t = cat.load_table("shop.ecommerce")
ids = t.scan(selected_fields=("user_id",)).to_arrow().column("user_id").to_pylist()
ops = [s.summary.operation.value for s in t.snapshots()]
print(json.dumps({{"n": len(ids), "distinct": len(set(ids)), "operations": ops}}))
"#
    );
    let read = python_json(&script, dir.path());
    assert_eq!(read["n"], acked, "{read}");
    assert_eq!(read["distinct"], acked, "{read}");
    assert!(
        read["operations"]
            .as_array()
            .unwrap()
            .contains(&json!("replace")),
        "{read}"
    );
}
