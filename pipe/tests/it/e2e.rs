//! The getting-started flow through the real binary, checked by `pipe
//! query`, PyIceberg and DuckDB.

use serde_json::{json, Value};

use crate::harness::*;

fn sorted(rows: &Value) -> Vec<Value> {
    let mut rows = rows.as_array().expect("rows").clone();
    rows.sort_by_key(sorted_json);
    rows
}

#[tokio::test(flavor = "multi_thread")]
async fn getting_started_events_reach_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let server = Server::start(&config).await;

    let events = getting_started_events();
    assert_eq!(
        server.post_json("ecommerce_stream", &events).await,
        (200, json!({"accepted": 3}))
    );
    // A single object and NDJSON are events too.
    let one = json!({"user_id": "u_single", "event_type": "view_product"});
    assert_eq!(
        server.post_json("ecommerce_stream", &one).await,
        (200, json!({"accepted": 1}))
    );
    let ndjson = "{\"user_id\":\"u_nd1\",\"event_type\":\"purchase\",\"amount\":1.25}\n{\"user_id\":\"u_nd2\",\"event_type\":\"view_product\"}\n";
    assert_eq!(
        server
            .post("ecommerce_stream", ndjson, "application/x-ndjson")
            .await,
        (200, json!({"accepted": 2}))
    );

    let report = server.flush("ecommerce");
    assert_eq!(report["rows"], 6, "{report}");
    assert_eq!(
        report["committed_through"], 2,
        "three requests: offsets 0..=2"
    );

    let purchases = query(
        &config,
        "SELECT user_id, event_type, product_id, amount FROM default.ecommerce \
         WHERE event_type = 'purchase' ORDER BY user_id LIMIT 10",
    );
    assert_eq!(
        purchases,
        vec![
            json!({"user_id": "u_nd1", "event_type": "purchase", "amount": 1.25}),
            json!({"user_id": "user_12345", "event_type": "purchase", "product_id": "widget-001", "amount": 29.99}),
        ]
    );
    let count = query(
        &config,
        "SELECT count(*) AS n, count(__ingest_ts) AS stamped FROM default.ecommerce",
    );
    assert_eq!(count, vec![json!({"n": 6, "stamped": 6})]);

    // The same events survive an orderly restart, and nothing is committed twice.
    server.stop();
    let server = Server::start(&config).await;
    assert_eq!(server.flush("ecommerce")["rows"], 0);
    assert_eq!(
        query(&config, "SELECT count(*) AS n FROM default.ecommerce"),
        vec![json!({"n": 6})]
    );
    server.stop();

    // Readers nobody here wrote see the same rows.
    let warehouse = format!("file://{}/data/warehouse", dir.path().display());
    let read = read_with_python(dir.path(), &warehouse, None, true);
    let mut all = events.as_array().unwrap().clone();
    all.extend([
        one,
        json!({"user_id":"u_nd1","event_type":"purchase","amount":1.25}),
        json!({"user_id":"u_nd2","event_type":"view_product"}),
    ]);
    let want = expected_rows(&Value::Array(all));
    assert_eq!(sorted(&read["pyiceberg"]["rows"]), want, "PyIceberg");
    assert_eq!(sorted(&read["duckdb"]["rows"]), want, "DuckDB");
    assert_eq!(read["duckdb"]["compression"], json!(["ZSTD"]));
    let summary = &read["pyiceberg"]["summary"];
    assert_eq!(summary["pipe.pipeline"], "ecommerce");
    assert_eq!(summary["pipe.offset-last"], "2");
    assert!(
        read["pyiceberg"]["partition_spec"]
            .as_str()
            .unwrap()
            .contains("day"),
        "{read}"
    );
}

/// `roll_rows` commits without a flush once enough rows were written, and
/// `row_group_rows` sets the Parquet row groups: 120 events in row groups of
/// 10 are 12 row groups, which DuckDB counts in the file too.
#[tokio::test(flavor = "multi_thread")]
async fn sink_rolls_by_rows_and_sizes_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "roll_interval_secs = 3600",
        "roll_interval_secs = 3600\nroll_rows = 100\nrow_group_rows = 10\ncompression = \"snappy\"",
    );
    std::fs::write(&config, text).unwrap();
    let server = Server::start(&config).await;
    let events: Vec<Value> = (0..120)
        .map(|i| json!({"user_id": format!("u{i}"), "event_type": "view"}))
        .collect();
    assert_eq!(
        server
            .post_json("ecommerce_stream", &Value::Array(events))
            .await
            .0,
        200
    );

    // No flush: the row count alone rolls the range.
    let mut status = Value::Null;
    for _ in 0..100 {
        status = reqwest::get(format!("{}/v1/pipelines/ecommerce", server.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["rows_committed"] == 120 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status["rows_committed"], 120, "{status}");
    assert_eq!(status["files_committed"], 1, "{status}");
    assert_eq!(status["row_groups_committed"], 12, "{status}");
    let metrics = &status["sink_metrics"];
    assert_eq!(metrics["recordsWritten"], 120, "{status}");
    assert_eq!(metrics["filesWritten"], 1, "{status}");
    assert_eq!(metrics["rowGroupsWritten"], 12, "{status}");
    // 10-row pages barely compress; the figure is checked exactly in the
    // sink's tests.
    assert!(
        metrics["uncompressedBytesWritten"].as_u64() > Some(0),
        "{status}"
    );
    server.stop();

    let script = r#"
import glob, json, sys, duckdb
files = glob.glob(f"{sys.argv[1]}/data/warehouse/**/*.parquet", recursive=True)
meta = duckdb.sql(f"SELECT count(DISTINCT row_group_id) AS groups, any_value(compression) AS codec FROM parquet_metadata({files!r})").fetchone()
print(json.dumps({"files": len(files), "row_groups": meta[0], "codec": meta[1]}))
"#;
    let read = python_json(script, dir.path());
    assert_eq!(
        read,
        json!({"files": 1, "row_groups": 12, "codec": "SNAPPY"})
    );
}

/// `partition_by` shapes the table pipe creates; PyIceberg reads the spec
/// and the rows, and DuckDB the files.
#[tokio::test(flavor = "multi_thread")]
async fn partition_transforms_chosen_by_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_stream_config(
        dir.path(),
        "",
        r#"
[sinks.ecommerce_sink]
table = "ecommerce"
partition_by = ["identity(event_type)", "bucket(8, user_id)", "day(__ingest_ts)"]

[pipelines.ecommerce]
sql = "INSERT INTO ecommerce_sink SELECT * FROM ecommerce_stream"
"#,
    );
    let events = deliver_getting_started(&config).await;
    let read = read_with_python(dir.path(), &Store::local(dir.path()).warehouse, None, true);
    let spec = read["pyiceberg"]["partition_spec"].as_str().unwrap();
    for field in [
        "event_type: identity(",
        "user_id_bucket_8: bucket[8](",
        "__ingest_ts_day: day(",
    ] {
        assert!(spec.contains(field), "{field} in {spec}");
    }
    let want = expected_rows(&events);
    assert_eq!(sorted(&read["pyiceberg"]["rows"]), want, "PyIceberg");
    assert_eq!(sorted(&read["duckdb"]["rows"]), want, "DuckDB");
    let files = read["pyiceberg"]["files"].as_array().unwrap();
    assert_eq!(files.len(), 3, "one file per event type here: {files:?}");
    assert!(files.iter().any(|f| f
        .as_str()
        .unwrap()
        .contains("/event_type=purchase/user_id_bucket_8=")));
}

/// `pipe query --format ndjson` prints one object per line on standard
/// output and a stats line on standard error.
#[tokio::test(flavor = "multi_thread")]
async fn query_prints_ndjson_and_a_stats_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    deliver_getting_started(&config).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(["query", "--format", "ndjson", "--config"])
        .arg(&config)
        .arg("SELECT user_id FROM default.ecommerce ORDER BY user_id, amount")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"user_id\":\"user_12345\"}\n{\"user_id\":\"user_12345\"}\n{\"user_id\":\"user_67890\"}\n"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("3 rows in "), "{stderr}");
    // The getting-started events land in one day's file, and the scan says
    // what it read.
    assert!(
        stderr.contains(" from 1 of 1 files (0 skipped)"),
        "{stderr}"
    );
    assert!(stderr.contains("; read "), "{stderr}");
    // A bad query exits 2 and names the problem.
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(["query", "--config"])
        .arg(&config)
        .arg("SELECT nope FROM default.ecommerce")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nope"));
}

/// `POST /v1/query`: read-only SQL over HTTP with a caller-set row limit,
/// the stream auth model, and refusals for anything that writes.
#[tokio::test(flavor = "multi_thread")]
async fn the_query_endpoint_reads_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let token_digest = hex_digest("q-secret");
    let config = write_stream_config(
        dir.path(),
        &format!("[query]\nauth_token_sha256 = [\"{token_digest}\"]\n"),
        r#"
[sinks.ecommerce_sink]
table = "ecommerce"

[pipelines.ecommerce]
sql = "INSERT INTO ecommerce_sink SELECT * FROM ecommerce_stream"
"#,
    );
    let server = Server::start(&config).await;
    assert_eq!(
        server
            .post_json("ecommerce_stream", &getting_started_events())
            .await
            .0,
        200
    );
    server.flush("ecommerce");
    let client = reqwest::Client::new();
    let ask = |body: Value, token: Option<&'static str>| {
        let mut request = client.post(format!("{}/v1/query", server.url)).json(&body);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        async move {
            let r = request.send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let sql = "SELECT user_id, amount FROM default.ecommerce ORDER BY user_id, amount";
    assert_eq!(ask(json!({"sql": sql}), None).await.0, 401);
    assert_eq!(ask(json!({"sql": sql}), Some("wrong")).await.0, 401);
    let (status, body) = ask(json!({"sql": sql, "max_rows": 2}), Some("q-secret")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["columns"], json!(["user_id", "amount"]));
    assert_eq!(
        body["rows"],
        json!([{"user_id": "user_12345", "amount": 15.5}, {"user_id": "user_12345", "amount": 29.99}])
    );
    assert_eq!(
        (body["row_count"].clone(), body["truncated"].clone()),
        (json!(2), json!(true))
    );
    let (_, all) = ask(json!({"sql": sql}), Some("q-secret")).await;
    assert_eq!(
        (all["row_count"].clone(), all["truncated"].clone()),
        (json!(3), json!(false))
    );
    assert_eq!(
        (all["files_scanned"].clone(), all["files_skipped"].clone()),
        (json!(1), json!(0)),
        "{all}"
    );
    assert!(all["bytes_read"].as_u64().unwrap() > 0, "{all}");
    let (_, tables) = ask(json!({"sql": "SHOW TABLES IN default"}), Some("q-secret")).await;
    assert_eq!(tables["rows"][0]["table_name"], "ecommerce", "{tables}");
    // The server keeps the table it loaded; a commit since is seen.
    let count = json!({"sql": "SELECT count(*) AS n FROM default.ecommerce"});
    let (_, before) = ask(count.clone(), Some("q-secret")).await;
    assert_eq!(before["rows"], json!([{"n": 3}]), "{before}");
    let events = getting_started_events();
    assert_eq!(server.post_json("ecommerce_stream", &events).await.0, 200);
    server.flush("ecommerce");
    let (_, after) = ask(count, Some("q-secret")).await;
    assert_eq!(after["rows"], json!([{"n": 6}]), "{after}");
    for write in [
        "INSERT INTO default.ecommerce SELECT * FROM default.ecommerce",
        "DROP TABLE default.ecommerce",
        "CREATE TABLE t AS SELECT 1",
    ] {
        let (status, body) = ask(json!({"sql": write}), Some("q-secret")).await;
        assert_eq!(status, 400, "{write}: {body}");
        assert!(body.to_string().contains("read-only endpoint"), "{body}");
    }
    let (status, _) = ask(json!({"query": sql}), Some("q-secret")).await;
    assert_eq!(status, 400, "an unknown field is refused");
    server.stop();
    let rows = query(&config, "SELECT count(*) AS n FROM default.ecommerce");
    assert_eq!(rows, vec![json!({"n": 6})], "nothing was written");
}

/// `pipe query` without SQL reads statements (ending with `;`, over several
/// lines) until `exit`; an error does not end the session.
#[tokio::test(flavor = "multi_thread")]
async fn query_without_sql_is_an_interactive_session() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    deliver_getting_started(&config).await;
    let out = run_with_stdin(
        std::process::Command::new(env!("CARGO_BIN_EXE_pipe"))
            .args(["query", "--format", "json", "--config"])
            .arg(&config)
            .env("HOME", dir.path()),
        b"SELECT count(*) AS n FROM default.ecommerce;\nSELECT\n  1 + 1 AS two;\nSELECT nope FROM default.ecommerce;\nSELECT 3 AS three;\nexit\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for want in [r#"[{"n":3}]"#, r#"[{"two":2}]"#, r#"[{"three":3}]"#] {
        assert!(stdout.contains(want), "{want} in {stdout}");
    }
    assert!(
        stderr.contains("error:") && stderr.contains("nope"),
        "{stderr}"
    );
    assert!(dir.path().join(".pipe_history").exists(), "history is kept");
}
