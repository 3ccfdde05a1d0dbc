//! Parquet and NDJSON file sinks on the S3 server: published files read
//! back by DuckDB, and the crash matrix over the file-sink protocol.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::harness::*;

/// One stream feeding a Parquet sink and a gzip NDJSON sink, both in
/// `bucket` on the test's S3 server: the first in a folder of the
/// warehouse, the second outside it, under a root the file allows.
fn write_files_config(dir: &Path, store: &Store, bucket: &str) -> std::path::PathBuf {
    write_stream_config(
        dir,
        &format!(
            "file_sink_roots = [\"s3://{bucket}/json\"]\n{}",
            store.toml()
        ),
        &format!(
            r#"
[sinks.parquet_files]
type = "parquet"
path = "parquet"
roll_interval_secs = 3600

[sinks.json_files]
type = "json"
compression = "gzip"
path = "s3://{bucket}/json"
partitioning = "dt=%Y-%m-%d"
roll_interval_secs = 3600

[pipelines.to_parquet]
sql = "INSERT INTO parquet_files SELECT * FROM ecommerce_stream"

[pipelines.to_json]
sql = "INSERT INTO json_files SELECT user_id, upper(event_type) AS event_type, amount FROM ecommerce_stream"
"#
        ),
    )
}

/// What DuckDB reads from a file sink (see `tests/readers/check_files.py`).
fn read_files(location: &str, format: &str) -> Value {
    let out = Command::new(python())
        .arg(repo_path("tests/readers/check_files.py"))
        .args(["--location", location, "--format", format])
        .args(["--column", "user_id", "--s3-endpoint", &s3_endpoint()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check_files.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn file_sinks_on_s3_are_read_back_by_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = format!("files-{}", std::process::id());
    let store = Store::s3(&s3_endpoint(), &bucket).await;
    let config = write_files_config(dir.path(), &store, &bucket);
    let server = Server::start(&config).await;
    let events = getting_started_events();
    assert_eq!(
        server.post_json("ecommerce_stream", &events).await,
        (200, json!({"accepted": 3}))
    );
    assert_eq!(server.flush("to_parquet")["rows"], 3);
    assert_eq!(server.flush("to_json")["rows"], 3);
    let status = server.status("to_json").await;
    server.stop();
    assert_eq!(status["sink_kind"], "files", "{status}");
    assert_eq!(status["sink"], format!("s3://{bucket}/json"), "{status}");
    assert_eq!(status["files_committed"], 1, "{status}");
    assert!(
        status["uncompressed_bytes_committed"].as_u64() > status["bytes_committed"].as_u64(),
        "gzip shrinks the text: {status}"
    );

    let today = chrono::Utc::now();
    let parquet = read_files(&format!("s3://{bucket}/warehouse/parquet"), "parquet");
    assert_eq!(parquet["n"], 3, "{parquet}");
    let files = parquet["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{parquet}");
    let name = files[0].as_str().unwrap();
    assert!(
        name.starts_with(&today.format("year=%Y/month=%m/day=%d/").to_string())
            && name.ends_with("-0000.parquet"),
        "{name}"
    );
    assert_eq!(parquet["staging"], json!([]));
    for column in [
        "user_id",
        "event_type",
        "product_id",
        "amount",
        "__ingest_ts",
    ] {
        assert!(
            parquet["columns"]
                .as_array()
                .unwrap()
                .contains(&json!(column)),
            "{parquet}"
        );
    }

    let ndjson = read_files(&format!("s3://{bucket}/json"), "json");
    assert_eq!(ndjson["n"], 3, "{ndjson}");
    let name = ndjson["files"][0].as_str().unwrap();
    assert!(
        name.starts_with(&today.format("dt=%Y-%m-%d/").to_string()) && name.ends_with(".json.gz"),
        "{name}"
    );
    assert_eq!(
        ndjson["columns"],
        json!(["user_id", "event_type", "amount", "__ingest_ts", "dt"]),
        "the SQL's columns, `__ingest_ts` (always kept), and the folder's"
    );
}

/// The crash matrix over the file-sink protocol: each trial dies at one
/// point (before rows are written, with staging files closed, right after
/// the commit record, between two published files, before the buffer is
/// released), 20 trials; then DuckDB finds every acknowledged event once
/// in each sink and no staging file is left.
#[tokio::test(flavor = "multi_thread")]
async fn file_sink_crash_matrix_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = format!("files-crash-{}", std::process::id());
    let store = Store::s3(&s3_endpoint(), &bucket).await;
    let config = write_files_config(dir.path(), &store, &bucket);
    let points = [
        pipe::crash::BEFORE_WRITE,
        pipe::crash::AFTER_FILES,
        pipe::crash::AFTER_COMMIT,
        pipe::crash::MID_PUBLISH,
        pipe::crash::BEFORE_RELEASE,
    ];
    let (acked, crashed) = crash_trials(&config, &points, &["to_parquet", "to_json"], 20).await;
    let server = Server::start(&config).await;
    server.flush("to_parquet");
    server.flush("to_json");
    server.stop();
    for (location, format) in [("warehouse/parquet", "parquet"), ("json", "json")] {
        let read = read_files(&format!("s3://{bucket}/{location}"), format);
        assert_eq!(read["n"], read["distinct"], "{location}: duplicated rows");
        let ids: HashSet<&str> = read["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let missing: Vec<_> = acked
            .iter()
            .filter(|id| !ids.contains(id.as_str()))
            .take(5)
            .collect();
        assert!(
            missing.is_empty(),
            "{location}: acknowledged events lost: {missing:?}"
        );
        assert_eq!(read["staging"], json!([]), "{location}: staging files left");
    }
    assert!(
        crashed >= 14,
        "most trials reach their crash point, {crashed} did"
    );
    eprintln!(
        "file-sink crash matrix on S3: 20 trials, {crashed} ended at their crash point, {} events acknowledged, each published once in both sinks",
        acked.len()
    );
}

/// Two file sinks on one folder (`out` and `./out`): before, both
/// pipelines committed the same final names and one replaced the other's
/// files (issue 16, item 5). Such a pair is refused at startup; and file
/// names carry the pipeline and its buffer's id, so writers that do share
/// a folder (the same pipeline in two processes) never collide
/// (`sink/tests/it`, `writers_sharing_a_folder_never_replace_each_others_files`).
#[test]
fn two_file_sinks_on_one_folder_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_stream_config(
        dir.path(),
        "",
        r#"
[sinks.one]
type = "parquet"
path = "out"

[sinks.two]
type = "parquet"
path = "./out"

[pipelines.first]
sql = "INSERT INTO one SELECT * FROM ecommerce_stream"

[pipelines.second]
sql = "INSERT INTO two SELECT * FROM ecommerce_stream"
"#,
    );
    let out = Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`sinks.two.path`")
            && err.contains("is already the path of sink `one`")
            && err.contains("a folder of its own"),
        "{err}"
    );
}
