//! Rows the pipeline SQL fails on: the good rows of the batch land, the bad
//! ones land in the pipeline's quarantine table with the error, once each,
//! also when the process dies between the two tables' commits.

use serde_json::{json, Value};

use crate::harness::*;

const CONFIG: &str = r#"
data_dir = "data"

[streams.orders]
schema_file = "schema.json"

[sinks.orders_sink]
namespace = "shop"
table = "orders"
roll_interval_secs = 3600

[pipelines.orders_pipeline]
sql = "INSERT INTO orders_sink SELECT id, CAST(qty AS INT) AS qty FROM orders"
"#;

const SCHEMA: &str = r#"{"fields":[
  {"name":"id","type":"int64","required":true},
  {"name":"qty","type":"string"}]}"#;

fn events(from: i64, to: i64, poison: &[i64]) -> Value {
    Value::Array(
        (from..to)
            .map(|id| {
                let qty = if poison.contains(&id) {
                    format!("{id} boxes")
                } else {
                    id.to_string()
                };
                json!({"id": id, "qty": qty})
            })
            .collect(),
    )
}

/// Writes the config in `dir`, posts 100 orders (ids 13 and 57 fail the
/// SQL) and flushes with the server set to die right after the quarantine
/// table's commit, before the sink's. Returns the config's path.
async fn crash_between_the_two_commits(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::write(dir.join("schema.json"), SCHEMA).unwrap();
    let config = dir.join("pipe.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let mut server = Server::start_with_env(
        &config,
        &[("PIPE_CRASH_AT", pipe::crash::AFTER_FAILED_ROWS_COMMIT)],
    )
    .await;
    let (status, body) = server.post_json("orders", &events(0, 100, &[13, 57])).await;
    assert_eq!(status, 200, "{body}");
    request_flush(&server, "orders_pipeline").await;
    let status = server.child.wait().unwrap();
    assert!(!status.success(), "the crash point ends the process");
    assert!(
        server.log_text().contains("crash point"),
        "{}",
        server.log_text()
    );
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_rows_go_to_quarantine_once_even_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let config = crash_between_the_two_commits(dir.path()).await;

    // After the restart the range is replayed: the sink gets its 98 rows,
    // the quarantine table keeps the 2 it already had.
    let server = Server::start(&config).await;
    let report = server.flush("orders_pipeline");
    assert_eq!(
        (report["rows"].as_u64(), report["failed_rows"].as_u64()),
        (Some(98), Some(0)),
        "{report}"
    );
    let (status, body) = server.post_json("orders", &events(100, 110, &[105])).await;
    assert_eq!(status, 200, "{body}");
    let report = server.flush("orders_pipeline");
    assert_eq!(
        (report["rows"].as_u64(), report["failed_rows"].as_u64()),
        (Some(9), Some(1)),
        "{report}"
    );
    // The live figures since this start.
    let status = server.status("orders_pipeline").await;
    assert_eq!(status["rows_committed"], 107, "{status}");
    assert_eq!(status["failed_rows_committed"], 1, "{status}");
    assert_eq!(
        status["quarantine_table"], "default.orders_pipeline_failed",
        "{status}"
    );
    assert_eq!(status["sink"], "shop.orders", "{status}");
    assert_eq!(status["sink_kind"], "iceberg", "{status}");
    assert!(status["committed_through"].is_u64(), "{status}");
    // Two flushes since the restart, each one day partition: two files.
    assert_eq!(status["files_committed"], 2, "{status}");
    // `pipe pipelines get` and `list` show the figures and the reason.
    let errors = status["recent_errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e["error"]
            .as_str()
            .unwrap()
            .contains("the SQL failed on 1 rows")),
        "{status}"
    );
    let cli = |args: &[&str]| cli(&server, &[&["pipelines"], args].concat());
    let details = cli(&["get", "orders_pipeline"]);
    assert!(
        details.contains("sink              shop.orders (iceberg)"),
        "{details}"
    );
    assert!(
        details.contains("since start: 107 rows, 1 failed rows, 2 files"),
        "{details}"
    );
    assert!(details.contains("recent errors:\n"), "{details}");
    assert!(details.contains("the SQL failed on 1 rows"), "{details}");
    let list = cli(&["list"]);
    let header = list.lines().next().unwrap();
    assert!(
        header.starts_with("PIPELINE") && header.contains("LAST COMMIT"),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("orders_pipeline ") && l.contains("shop.orders")),
        "{list}"
    );
    let json: Value = serde_json::from_str(&cli(&["list", "--json"])).unwrap();
    assert_eq!(json["pipelines"][0]["pipeline"], "orders_pipeline");
    assert_eq!(status["row_groups_committed"], 2, "{status}");
    assert!(
        status["bytes_committed"].as_u64().unwrap() > 100,
        "{status}"
    );
    let missing = reqwest::get(format!("{}/v1/pipelines/nope", server.url))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let log = server.log_text();
    server.stop();

    let counts = query(
        &config,
        "SELECT count(*) AS n, count(DISTINCT id) AS ids, sum(qty) AS total FROM shop.orders",
    );
    let want_total: i64 = (0..110).filter(|i| ![13, 57, 105].contains(i)).sum();
    assert_eq!(
        counts,
        vec![json!({"n": 107, "ids": 107, "total": want_total})]
    );

    let failed = query(
        &config,
        "SELECT event, error FROM default.orders_pipeline_failed ORDER BY event",
    );
    let events: Vec<&str> = failed
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert_eq!(events.len(), 3, "each failing row once: {failed:?}");
    for (row, id) in events.iter().zip([105, 13, 57]) {
        let row: Value = serde_json::from_str(row).unwrap();
        assert_eq!(row["id"], id);
        assert_eq!(row["qty"], format!("{id} boxes"));
    }
    for r in &failed {
        let error = r["error"].as_str().unwrap();
        assert!(error.contains("Cannot cast string"), "{error}");
    }
    assert!(log.contains("the SQL failed on some rows"), "{log}");
}

/// After a crash between the quarantine table's commit and the sink's, the
/// range replayed on restart can grow past what the quarantine table holds
/// (a new request arrives before the first roll): the quarantine table
/// gets only the part after what it holds, never an overlapping range.
#[tokio::test(flavor = "multi_thread")]
async fn a_range_replayed_after_a_crash_can_grow() {
    let dir = tempfile::tempdir().unwrap();
    let config = crash_between_the_two_commits(dir.path()).await;

    let server = Server::start(&config).await;
    let (status, body) = server.post_json("orders", &events(100, 110, &[105])).await;
    assert_eq!(status, 200, "{body}");
    let report = server.flush("orders_pipeline");
    assert_eq!(
        (report["rows"].as_u64(), report["failed_rows"].as_u64()),
        (Some(107), Some(1)),
        "{report}"
    );
    server.stop();
    assert_eq!(
        query(&config, "SELECT count(*) AS n FROM shop.orders"),
        vec![json!({"n": 107})]
    );
    assert_eq!(
        query(
            &config,
            "SELECT count(*) AS n FROM default.orders_pipeline_failed"
        ),
        vec![json!({"n": 3})],
        "each failing row once"
    );
}
