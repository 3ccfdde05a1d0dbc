//! Another writer (PyIceberg) appends to the same table while `pipe`
//! commits to it every second: the fence turns each race into a re-check
//! and a retry, never a rebase, so neither side loses or doubles a row.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

const APPENDER: &str = r#"
import sys, time, datetime
import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException
d, n = sys.argv[1], int(sys.argv[2])
cat = SqlCatalog("pipe", uri=f"sqlite:///{d}/data/catalog.db", warehouse=f"file://{d}/data/warehouse")
schema = pa.schema([
    pa.field("user_id", pa.string(), nullable=False),
    pa.field("event_type", pa.string(), nullable=False),
    pa.field("product_id", pa.string()),
    pa.field("amount", pa.float64()),
    pa.field("__ingest_ts", pa.timestamp("us", tz="UTC"), nullable=False),
])
retries = 0
for k in range(n):
    ids = [f"py-{k}-{i}" for i in range(10)]
    now = datetime.datetime.now(datetime.timezone.utc)
    batch = pa.Table.from_pydict({
        "user_id": ids, "event_type": ["py"] * 10, "product_id": [None] * 10,
        "amount": [None] * 10, "__ingest_ts": [now] * 10}, schema=schema)
    while True:
        try:
            cat.load_table("default.ecommerce").append(batch)
            break
        except CommitFailedException:
            retries += 1
    time.sleep(0.15)
print(retries)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn another_writer_between_our_commits_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 1, "");
    let server = Server::start(&config).await;
    // The table exists once the server is up; give it a first commit.
    assert_eq!(
        server
            .post_json(
                "ecommerce_stream",
                &json!({"user_id": "first", "event_type": "x"})
            )
            .await
            .0,
        200
    );
    server.flush("ecommerce");

    let appender = std::process::Command::new(python())
        .args(["-c", APPENDER])
        .arg(dir.path())
        .arg("25")
        .output();
    let poster = async {
        let mut acked = vec!["first".to_string()];
        for r in 0..60 {
            let ids: Vec<String> = (0..20).map(|i| format!("pipe-{r}-{i}")).collect();
            let body: Vec<Value> = ids
                .iter()
                .map(|id| json!({"user_id": id, "event_type": "pipe"}))
                .collect();
            let (status, _) = server
                .post_json("ecommerce_stream", &Value::Array(body))
                .await;
            if status == 200 {
                acked.extend(ids);
            }
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        acked
    };
    let (appended, acked) = tokio::join!(
        tokio::task::spawn_blocking(move || appender.unwrap()),
        poster
    );
    let appended = appended.unwrap();
    assert!(
        appended.status.success(),
        "{}",
        String::from_utf8_lossy(&appended.stderr)
    );
    server.flush("ecommerce");
    let log = server.log_text();
    server.stop();

    let rows = query(&config, "SELECT user_id, event_type FROM default.ecommerce");
    let ours: Vec<&str> = rows
        .iter()
        .filter(|r| r["event_type"] != "py")
        .map(|r| r["user_id"].as_str().unwrap())
        .collect();
    let unique: HashSet<&str> = ours.iter().copied().collect();
    assert_eq!(ours.len(), unique.len(), "pipe rows doubled");
    let acked: HashSet<&str> = acked.iter().map(String::as_str).collect();
    assert_eq!(unique, acked, "every acknowledged event, nothing else");
    let theirs = rows.iter().filter(|r| r["event_type"] == "py").count();
    assert_eq!(theirs, 250, "the other writer's rows are all there, once");
    eprintln!(
        "two writers: {} pipe rows, {theirs} PyIceberg rows, PyIceberg retried {} times, pipe re-checked {} times",
        ours.len(),
        String::from_utf8_lossy(&appended.stdout).trim(),
        log.matches("re-checking the table").count() + log.matches("retrying").count()
    );
}

const SNAPSHOTS: &str = r#"
import sys, json
from pyiceberg.catalog.sql import SqlCatalog
d = sys.argv[1]
cat = SqlCatalog("pipe", uri=f"sqlite:///{d}/data/catalog.db", warehouse=f"file://{d}/data/warehouse")
t = cat.load_table("default.ecommerce")
def ids(snapshot_id):
    rows = t.scan(snapshot_id=snapshot_id, selected_fields=("user_id",)).to_arrow()
    return sorted(rows.column("user_id").to_pylist())
replaces = []
for s in t.snapshots():
    if s.summary is not None and s.summary.operation.value == "replace" and int(s.summary.additional_properties.get("deleted-data-files") or 0) > 0:
        if t.snapshot_by_id(s.parent_snapshot_id) is not None:
            replaces.append(s)
out = {"live_files": len(t.inspect.files()), "replaces": len(replaces), "same_as_parent": True}
for s in replaces:
    if ids(s.snapshot_id) != ids(s.parent_snapshot_id):
        out["same_as_parent"] = False
rows = t.scan().to_arrow()
out["rows"] = rows.num_rows
out["distinct"] = len(set(rows.column("user_id").to_pylist()))
print(json.dumps(out))
"#;

/// Compaction runs beside the sink's commits and PyIceberg's appends: no
/// row of either side is lost or doubled, and each compaction's snapshot
/// reads exactly the rows of the snapshot before it.
#[tokio::test(flavor = "multi_thread")]
async fn compaction_beside_another_writer_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 300, "");
    let server = Server::start(&config).await;
    assert_eq!(
        server
            .post_json(
                "ecommerce_stream",
                &json!({"user_id": "first", "event_type": "x"})
            )
            .await
            .0,
        200
    );
    server.flush("ecommerce");
    let appender = std::process::Command::new(python())
        .args(["-c", APPENDER])
        .arg(dir.path())
        .arg("25")
        .output();
    // 45 commits of 10 events: compaction starts every 10 of them.
    let poster = async {
        let mut acked = vec!["first".to_string()];
        for r in 0..45 {
            let ids: Vec<String> = (0..10).map(|i| format!("pipe-{r}-{i}")).collect();
            let body: Vec<Value> = ids
                .iter()
                .map(|id| json!({"user_id": id, "event_type": "pipe"}))
                .collect();
            let (status, _) = server
                .post_json("ecommerce_stream", &Value::Array(body))
                .await;
            if status == 200 {
                acked.extend(ids);
            }
            let url = server.url.clone();
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_pipe"))
                    .args(["flush", "--server", &url, "ecommerce"])
                    .output()
                    .unwrap()
            })
            .await
            .unwrap();
        }
        acked
    };
    let (appended, acked) = tokio::join!(
        tokio::task::spawn_blocking(move || appender.unwrap()),
        poster
    );
    let appended = appended.unwrap();
    assert!(
        appended.status.success(),
        "{}",
        String::from_utf8_lossy(&appended.stderr)
    );
    // Let the last compaction finish, then stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.flush("ecommerce");
    let log = server.log_text();
    server.stop();

    let rows = query(&config, "SELECT user_id, event_type FROM default.ecommerce");
    let ours: Vec<&str> = rows
        .iter()
        .filter(|r| r["event_type"] != "py")
        .map(|r| r["user_id"].as_str().unwrap())
        .collect();
    let unique: HashSet<&str> = ours.iter().copied().collect();
    assert_eq!(ours.len(), unique.len(), "pipe rows doubled");
    let acked: HashSet<&str> = acked.iter().map(String::as_str).collect();
    assert_eq!(unique, acked, "every acknowledged event, nothing else");
    let theirs = rows.iter().filter(|r| r["event_type"] == "py").count();
    assert_eq!(theirs, 250, "the other writer's rows are all there, once");

    let seen = python_json(SNAPSHOTS, dir.path());
    assert!(
        seen["replaces"].as_u64().unwrap() >= 1,
        "no compaction ran: {seen}\n{log}"
    );
    assert_eq!(seen["same_as_parent"], true, "{seen}");
    assert_eq!(
        seen["rows"].as_u64().unwrap() as usize,
        rows.len(),
        "{seen}"
    );
    assert_eq!(
        seen["distinct"].as_u64().unwrap() as usize,
        rows.len(),
        "{seen}"
    );
    assert!(
        seen["live_files"].as_u64().unwrap() < 70,
        "small files were not compacted: {seen}"
    );
    let read = read_with_python(dir.path(), &Store::local(dir.path()).warehouse, None, true);
    let (py, duck) = (
        read["pyiceberg"]["rows"].as_array().unwrap().len(),
        read["duckdb"]["rows"].as_array().unwrap().len(),
    );
    assert_eq!(
        (py, duck),
        (rows.len(), rows.len()),
        "PyIceberg, DuckDB and pipe agree"
    );
    eprintln!(
        "compaction beside PyIceberg: {seen}; {} compactions logged",
        log.matches("compacted").count()
    );
}
