//! Table maintenance through the server: on demand over the CLI and the
//! admin API, its records and metrics, and SIGKILLs at each step of a
//! compaction while the sink commits.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

/// `pipe tables <args> --json`: the JSON it prints.
fn tables(server: &Server, args: &[&str]) -> Value {
    let mut all = vec!["tables"];
    all.extend_from_slice(args);
    all.push("--json");
    serde_json::from_str(&cli(server, &all)).unwrap()
}

/// Sets every file under `dir` `secs` seconds older.
fn age_all(dir: &Path, secs: u64) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            age_all(&p, secs);
        } else {
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            let when = std::time::SystemTime::now() - Duration::from_secs(secs);
            f.set_modified(when).unwrap();
        }
    }
}

/// Posts `rounds` requests of 10 events, each followed by a flush; the
/// acknowledged ids.
async fn post_and_commit(server: &Server, first: usize, rounds: usize) -> Vec<String> {
    let mut acked = Vec::new();
    for r in 0..rounds {
        acked.extend(post_ids(server, first + r * 10, 10).await);
        request_flush(server, "ecommerce").await;
    }
    acked
}

#[tokio::test(flavor = "multi_thread")]
async fn maintenance_on_demand_is_recorded_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 300, "");
    let server = Server::start(&config).await;
    let acked: HashSet<String> = post_and_commit(&server, 0, 6).await.into_iter().collect();

    // A dry run says what would be done and does nothing.
    let dry = tables(&server, &["maintain", "default.ecommerce", "--dry-run"]);
    assert_eq!(dry["outcome"], "ok", "{dry}");
    assert_eq!(dry["planned"]["compact_files"], 6, "{dry}");
    assert_eq!(dry["before"], dry["after"]);

    // An orphan older than the guard; the sweep takes it, and only it.
    let data = dir.path().join("data/warehouse/default/ecommerce/data");
    let orphan = data.join("left-by-a-crash.parquet");
    std::fs::write(&orphan, b"PAR1").unwrap();
    age_all(&data, 4 * 86_400);
    let done = tables(&server, &["maintain", "default.ecommerce"]);
    assert_eq!(done["outcome"], "ok", "{done}");
    assert_eq!(done["compacted"]["files_removed"], 6, "{done}");
    assert_eq!(done["after"]["data_files"], 1, "{done}");
    assert_eq!(done["swept"]["deleted"], 1, "{done}");
    assert!(!orphan.exists());

    // The people's view of the same.
    let text = cli(
        &server,
        &["tables", "maintain", "default.ecommerce", "--no-sweep"],
    );
    assert!(text.contains("before:") && text.contains("next:"), "{text}");

    let runs = tables(&server, &["maintenance", "default.ecommerce"]);
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(
        runs.iter().filter(|r| r["trigger"] == "on demand").count(),
        3
    );
    let metrics = server.metrics().await;
    assert_eq!(
        metrics.get("pipe_table_maintenance_runs_recorded{table=\"default.ecommerce\"}"),
        Some(&3.0),
        "{metrics:?}"
    );
    assert_eq!(
        metrics.get("pipe_table_maintenance_last_run_failed{table=\"default.ecommerce\"}"),
        Some(&0.0)
    );

    // Bad requests say why.
    let client = reqwest::Client::new();
    let url = |t: &str| format!("{}/v1/tables/{t}/maintain", server.url);
    let r = client
        .post(url("default.ecommerce"))
        .json(&json!({"older_than_secs": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("younger than an hour"));
    let r = client
        .post(url("default.nope"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = client
        .post(url("default.ecommerce"))
        .json(&json!({"compcat": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // More events after all that, then every reader agrees.
    let mut acked = acked;
    acked.extend(post_and_commit(&server, 1000, 2).await);
    server.stop();
    // The records outlive a restart.
    let server = Server::start(&config).await;
    let runs = tables(&server, &["maintenance", "default.ecommerce"]);
    let on_demand = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["trigger"] == "on demand")
        .count();
    assert_eq!(on_demand, 3, "{runs}");
    server.stop();
    assert_exactly_once(dir.path(), &Store::local(dir.path()), &acked);
    let read = read_with_python(dir.path(), &Store::local(dir.path()).warehouse, None, true);
    assert_eq!(
        read["duckdb"]["rows"].as_array().unwrap().len(),
        acked.len()
    );
}

/// A sink's `sort_by` is the table's sort order (PyIceberg sees it), and
/// compaction writes each file in it (DuckDB reads each file's rows in
/// that order); its target file size is the table's property; the sink
/// shows both.
#[tokio::test(flavor = "multi_thread")]
async fn compaction_writes_files_in_the_sinks_sort_order() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 300, "");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace(
        "roll_interval_secs = 300\n",
        "roll_interval_secs = 300\nsort_by = [\"user_id DESC\"]\ntarget_file_size_mb = 64\n",
    );
    std::fs::write(&config, text).unwrap();
    let server = Server::start(&config).await;
    let shown = cli(&server, &["sinks", "get", "ecommerce_sink"]);
    assert!(
        shown.contains("Sorted by: user_id DESC NULLS LAST"),
        "{shown}"
    );
    assert!(shown.contains("Target file size: 64 MB"), "{shown}");
    let acked = post_and_commit(&server, 0, 6).await;
    let done = tables(&server, &["maintain", "default.ecommerce"]);
    assert_eq!(done["compacted"]["files_removed"], 6, "{done}");
    server.stop();
    let warehouse = Store::local(dir.path()).warehouse;
    let read = read_with_python_args(
        dir.path(),
        &warehouse,
        None,
        true,
        &["--file-column", "user_id"],
    );
    assert_eq!(
        read["pyiceberg"]["sort_order"],
        json!(["user_id DESC NULLS LAST"])
    );
    assert_eq!(read["pyiceberg"]["sort_order_ids"], json!([1]), "{read}");
    assert_eq!(
        read["pyiceberg"]["properties"]["write.target-file-size-bytes"],
        "67108864"
    );
    let by_file = read["duckdb"]["by_file"].as_object().unwrap();
    assert_eq!(by_file.len(), 1);
    let ids: Vec<String> = by_file
        .values()
        .next()
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let mut expected = acked.clone();
    expected.sort();
    expected.reverse();
    assert_eq!(ids, expected, "one file, every id once, descending");
    assert_exactly_once(
        dir.path(),
        &Store::local(dir.path()),
        &acked.iter().cloned().collect(),
    );
}

/// SIGKILL at each step of a compaction (planned, files written, committed,
/// after the commit) and of an expiry (committed, files not yet deleted)
/// while the sink commits: every acknowledged event is in
/// the table once (pipe, PyIceberg, DuckDB), no referenced file is missing,
/// and what the crashes left is swept once old enough.
#[tokio::test(flavor = "multi_thread")]
async fn compaction_crash_matrix() {
    let dir = tempfile::tempdir().unwrap();
    // Few snapshots kept, so that expiry (the sink's after its commits,
    // and the on-demand run's) has work in every trial.
    let config = write_stream_config(
        dir.path(),
        "",
        r#"
[sinks.ecommerce_sink]
namespace = "default"
table = "ecommerce"
roll_interval_secs = 300
snapshot_max_count = 4
snapshot_retain_last = 2

[pipelines.ecommerce]
sql = "INSERT INTO ecommerce_sink SELECT * FROM ecommerce_stream"
"#,
    );
    let points = [
        "maintenance-before-write",
        "maintenance-before-swap",
        "maintenance-after-swap",
        "expiry-before-cleanup",
    ];
    let mut acked = HashSet::new();
    let mut crashed = 0;
    let mut next = 0;
    for trial in 0..points.len() * 2 {
        let spec = format!("{}@1", points[trial % points.len()]);
        let mut server = Server::start_to_crash(&config, &[("PIPE_CRASH_AT", &spec)]).await;
        acked.extend(post_and_commit(&server, next, 4).await);
        next += 40;
        // The sink keeps committing while a compaction runs.
        let maintain = {
            let url = format!("{}/v1/tables/default.ecommerce/maintain", server.url);
            tokio::spawn(async move {
                reqwest::Client::new()
                    .post(url)
                    .json(&json!({"sweep": false}))
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await
            })
        };
        acked.extend(post_and_commit(&server, next, 3).await);
        next += 30;
        let _ = maintain.await;
        for _ in 0..100 {
            if server.child.try_wait().unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Ok(Some(_)) = server.child.try_wait() {
            crashed += 1;
        }
        server.kill();
    }
    assert_eq!(
        crashed,
        points.len() * 2,
        "every trial reached its crash point"
    );
    // A clean start commits what is left; what crashes left behind is
    // swept once old enough (here: made old).
    let server = Server::start(&config).await;
    acked.extend(post_and_commit(&server, next, 1).await);
    age_all(&dir.path().join("data/warehouse"), 2 * 3600);
    let swept = tables(
        &server,
        &["maintain", "default.ecommerce", "--older-than-secs", "3600"],
    );
    assert_eq!(swept["outcome"], "ok", "{swept}");
    server.stop();
    assert_exactly_once(dir.path(), &Store::local(dir.path()), &acked);
    let read = read_with_python(dir.path(), &Store::local(dir.path()).warehouse, None, true);
    // Events whose answer a crash cut off may be there too: DuckDB reads
    // what PyIceberg reads.
    assert_eq!(
        read["duckdb"]["rows"].as_array().unwrap().len(),
        read["pyiceberg"]["rows"].as_array().unwrap().len()
    );
    eprintln!(
        "compaction crash matrix: {crashed} crashes, {} acknowledged, swept {}",
        acked.len(),
        swept["swept"]
    );
}

/// The swap of a compaction goes through and its answer is lost: the
/// catalog's row is read back, the run is a success, and nothing the table
/// now references is deleted. (Before, the lost answer was taken for "not
/// done" and the new files were deleted: the table could not be read.)
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_answer_to_a_maintenance_swap_is_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 300, "");
    let server =
        Server::start_with_env(&config, &[("PIPE_FAULT", "lose-maintenance-swap-answer@1")]).await;
    let mut acked: HashSet<String> = post_and_commit(&server, 0, 4).await.into_iter().collect();
    let done = tables(&server, &["maintain", "default.ecommerce", "--no-sweep"]);
    assert_eq!(done["outcome"], "ok", "{done}");
    assert_eq!(done["compacted"]["files_removed"], 4, "{done}");
    acked.extend(post_and_commit(&server, 500, 2).await);
    server.stop();
    assert_exactly_once(dir.path(), &Store::local(dir.path()), &acked);
}

/// The swap's answer is held back, then lost, while the sink commits on
/// top of the compaction: the catalog no longer points at the compaction's
/// metadata but at a later one that lists it, which proves it landed.
/// (Before, "the pointer is elsewhere" was taken for "not done" and the
/// files the table referenced were deleted.)
#[tokio::test(flavor = "multi_thread")]
async fn a_swap_answer_lost_while_others_commit_on_top_is_still_done() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 300, "");
    let server = Server::start_with_env(
        &config,
        &[
            ("PIPE_FAULT", "lose-maintenance-swap-answer@1"),
            ("PIPE_FAULT_DELAY_MS", "3000"),
        ],
    )
    .await;
    let mut acked: HashSet<String> = post_and_commit(&server, 0, 4).await.into_iter().collect();
    let url = format!("{}/v1/tables/default.ecommerce/maintain", server.url);
    let maintain = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .json(&json!({"sweep": false, "expire": false}))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    });
    // While the answer is held back, the sink commits on top.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    acked.extend(post_and_commit(&server, 500, 2).await);
    let done = maintain.await.unwrap();
    assert_eq!(done["outcome"], "ok", "{done}");
    assert_eq!(done["compacted"]["files_removed"], 4, "{done}");
    acked.extend(post_and_commit(&server, 900, 1).await);
    server.stop();
    assert_exactly_once(dir.path(), &Store::local(dir.path()), &acked);
}
