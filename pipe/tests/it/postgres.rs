//! Two `pipe` processes, each with its own buffer and pipeline, commit to
//! one Iceberg table through a shared SQL catalog on PostgreSQL (and one S3
//! bucket), as two nodes would.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::*;

/// The PostgreSQL server the test command started.
fn postgres_uri() -> String {
    std::env::var("PIPE_TEST_POSTGRES_URI").expect(
        "PIPE_TEST_POSTGRES_URI is not set: run the README's test command (scripts/test), \
         which starts a PostgreSQL server for these tests",
    )
}

/// A node's definitions: pipeline `node` from its own stream into the
/// shared table `default.shared`, rolling every second.
fn node_config(dir: &Path, store: &Store, catalog: &str, node: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let settings = format!(
        "{}\n\n[catalog]\nname = \"{catalog}\"\nuri = \"{}\"\n",
        store.toml(),
        postgres_uri()
    );
    write_stream_config(
        dir,
        &settings,
        &format!(
            r#"
[sinks.shared_sink]
table = "shared"
roll_interval_secs = 1

[pipelines.{node}]
sql = "INSERT INTO shared_sink SELECT * FROM ecommerce_stream"
"#
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_commit_to_one_table_through_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let id = std::process::id();
    let store = Store::s3(&s3_endpoint(), &format!("shared-{id}")).await;
    // A catalog name of its own keeps this test's tables apart from any
    // other run's in the same database.
    let catalog = format!("pipe_test_{id}");
    let a = node_config(&dir.path().join("a"), &store, &catalog, "node_a");
    let b = node_config(&dir.path().join("b"), &store, &catalog, "node_b");
    let node_a = Server::start(&a).await;
    let node_b = Server::start(&b).await;

    let mut acked = HashSet::new();
    for round in 0..6 {
        let (from_a, from_b) = tokio::join!(
            post_some(&node_a, round * 100, 4),
            post_some(&node_b, 10_000_000 + round * 100, 4)
        );
        acked.extend(from_a);
        acked.extend(from_b);
        // Let both nodes roll and commit between rounds.
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert_eq!(acked.len(), 6 * 2 * 100);
    node_a.flush("node_a");
    node_b.flush("node_b");
    let rechecks = node_a.log_text().matches("re-checking").count()
        + node_b.log_text().matches("re-checking").count();
    node_a.stop();
    node_b.stop();

    assert_exactly_once_in(
        &dir.path().join("a"),
        &store,
        &CatalogRef::Postgres {
            name: catalog,
            uri: postgres_uri(),
        },
        "default.shared",
        &acked,
    );
    let rows = query(&b, "SELECT count(*) AS n FROM default.shared");
    assert_eq!(rows, vec![serde_json::json!({"n": acked.len()})]);
    eprintln!(
        "two nodes on PostgreSQL: {} events from both, each once; {rechecks} commits re-checked after a conflict",
        acked.len()
    );
}

/// The same pipeline name in two processes sharing the catalog: each
/// process's pipeline commits the events of its own buffer. Before, the
/// second process's commit of offsets the first had already used was taken
/// for "already committed" and its rows dropped, while both reported them
/// committed (issue 16, item 6).
#[tokio::test(flavor = "multi_thread")]
async fn the_same_pipeline_name_in_two_processes_keeps_both_sides_rows() {
    let dir = tempfile::tempdir().unwrap();
    let id = std::process::id();
    let store = Store::s3(&s3_endpoint(), &format!("samename-{id}")).await;
    let catalog = format!("pipe_same_{id}");
    let a = node_config(&dir.path().join("a"), &store, &catalog, "node");
    let b = node_config(&dir.path().join("b"), &store, &catalog, "node");
    let node_a = Server::start(&a).await;
    let node_b = Server::start(&b).await;
    let mut acked = HashSet::new();
    // Both buffers count from offset 0: their ranges overlap.
    acked.extend(post_some(&node_a, 0, 3).await);
    node_a.flush("node");
    acked.extend(post_some(&node_b, 10_000_000, 2).await);
    node_b.flush("node");
    acked.extend(post_some(&node_a, 100, 1).await);
    acked.extend(post_some(&node_b, 10_000_100, 2).await);
    node_a.flush("node");
    node_b.flush("node");
    assert_eq!(acked.len(), 8 * 25);
    node_a.stop();
    node_b.stop();
    // Restarted, each goes on from its own position: nothing replayed.
    let node_b = Server::start(&b).await;
    acked.extend(post_some(&node_b, 10_000_200, 1).await);
    node_b.flush("node");
    node_b.stop();
    assert_exactly_once_in(
        &dir.path().join("a"),
        &store,
        &CatalogRef::Postgres {
            name: catalog,
            uri: postgres_uri(),
        },
        "default.shared",
        &acked,
    );
    let rows = query(&b, "SELECT count(*) AS n FROM default.shared");
    assert_eq!(rows, vec![serde_json::json!({"n": 9 * 25})]);
}

/// A data directory copied, and the copy run beside its original against
/// the same catalog: both append to one log id, with different events
/// under the same offsets. Before runs were recorded, the second to commit
/// found the first's commit of "its" range and dropped its own events
/// while both reported them committed. Now the second stops committing,
/// says why, and marks its log so that a restart cannot skip its events;
/// the original goes on with every event once.
#[tokio::test(flavor = "multi_thread")]
async fn a_copied_data_dir_run_beside_its_original_stops_instead_of_merging() {
    let dir = tempfile::tempdir().unwrap();
    let id = std::process::id();
    let store = Store::s3(&s3_endpoint(), &format!("copied-{id}")).await;
    let catalog = format!("pipe_copied_{id}");
    let a = node_config(&dir.path().join("a"), &store, &catalog, "node");
    let node_a = Server::start(&a).await;
    let mut acked = HashSet::new();
    acked.extend(post_some(&node_a, 0, 2).await);
    node_a.flush("node");
    node_a.stop();
    copy_dir(&dir.path().join("a"), &dir.path().join("b"));
    let b = dir.path().join("b").join(a.file_name().unwrap());
    let node_a = Server::start(&a).await;
    let node_b = Server::start(&b).await;
    acked.extend(post_some(&node_a, 100, 2).await);
    node_a.flush("node");
    post_some(&node_b, 10_000_000, 2).await;
    let (status, body) = flush_answer(&node_b, "node").await;
    assert!(
        status >= 500 && body.contains("another process"),
        "{status} {body}"
    );
    let state = node_b.status("node").await;
    assert!(
        state["state_reason"]
            .as_str()
            .is_some_and(|r| r.contains("another process")),
        "{state}"
    );
    // It takes no more events, and is not ready.
    let (status, body) = node_b
        .post_json("ecommerce_stream", &getting_started_events())
        .await;
    assert_eq!(status, 503, "{body}");
    let ready = reqwest::get(format!("{}/readyz", node_b.url))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    // The stream's view says why (the console shows it).
    let view: serde_json::Value =
        reqwest::get(format!("{}/v1/streams/ecommerce_stream", node_b.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert!(
        view["failure"].as_str().is_some_and(|f| f.contains("fork")),
        "{view}"
    );
    // (An orderly stop ends with that error too.)
    node_b.kill();
    // Restarted, the copy refuses to start and says what to do.
    let node_b = Server::start_to_crash(&b, &[]).await;
    node_b.wait_for_log("appended to by two servers");
    drop(node_b);
    // The original goes on; the table holds its events, once each, and
    // none of the copy's (they wait in its buffer; the data file its
    // refused commit wrote stays until its next open sweeps it).
    acked.extend(post_some(&node_a, 200, 1).await);
    node_a.flush("node");
    node_a.stop();
    let rows = query(&a, "SELECT user_id FROM default.shared");
    let stored: Vec<&str> = rows
        .iter()
        .map(|r| r["user_id"].as_str().unwrap())
        .collect();
    let unique: HashSet<String> = stored.iter().map(|s| s.to_string()).collect();
    assert_eq!(stored.len(), unique.len(), "duplicated rows");
    assert_eq!(unique, acked);
}

/// The copy commits while its original is down, offsets below where the
/// original's next run starts: runs cannot tell that commit from one of
/// the original's own earlier runs. The commit records its last event's
/// checksum, and the original holds another event at that offset: it
/// refuses to start, marks its log, and says what to do. Before, it went
/// on after the copy's commit, skipping its own acknowledged event at
/// that offset (review 3 finding J).
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_committing_while_its_original_is_down_does_not_skip_the_originals_events() {
    let dir = tempfile::tempdir().unwrap();
    let id = std::process::id();
    let store = Store::s3(&s3_endpoint(), &format!("copydown-{id}")).await;
    let catalog = format!("pipe_copydown_{id}");
    let a = node_config(&dir.path().join("a"), &store, &catalog, "node");
    let node_a = Server::start(&a).await;
    post_some(&node_a, 0, 2).await;
    node_a.flush("node");
    node_a.stop();
    copy_dir(&dir.path().join("a"), &dir.path().join("b"));
    let b = dir.path().join("b").join(a.file_name().unwrap());
    // The original takes two more requests and dies before committing.
    let text = std::fs::read_to_string(&a).unwrap();
    std::fs::write(
        &a,
        text.replace("roll_interval_secs = 1", "roll_interval_secs = 3600"),
    )
    .unwrap();
    let node_a = Server::start(&a).await;
    post_some(&node_a, 100, 2).await;
    node_a.kill();
    // The copy takes one, under the first of the same offsets, and
    // commits it.
    let node_b = Server::start(&b).await;
    post_some(&node_b, 10_000_000, 1).await;
    node_b.flush("node");
    node_b.stop();
    let before = query(&a, "SELECT count(*) AS n FROM default.shared");
    // The original refuses to start, and its log is marked.
    let node_a = Server::start_to_crash(&a, &[]).await;
    node_a.wait_for_log("is another one");
    drop(node_a);
    let node_a = Server::start_to_crash(&a, &[]).await;
    node_a.wait_for_log("appended to by two servers");
    drop(node_a);
    assert_eq!(
        query(&a, "SELECT count(*) AS n FROM default.shared"),
        before,
        "nothing committed past the copy's commit"
    );
}

/// A PostgreSQL server of this test's own, to stop and hang.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    uri: String,
}

impl PrivatePostgres {
    fn start() -> PrivatePostgres {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(python())
            .arg(repo_path("tests/servers/postgres.py"))
            .arg("start")
            .arg(dir.path())
            .arg(free_port().to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let uri = String::from_utf8(out.stdout).unwrap().trim().to_string();
        PrivatePostgres { dir, uri }
    }

    /// SIGSTOP or SIGCONT to the server and every process it started (a
    /// connection's backend would go on answering otherwise).
    fn signal(&self, signal: &str) {
        let pid = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid")).unwrap();
        let pid = pid.lines().next().unwrap().trim().to_string();
        let children = std::process::Command::new("pgrep")
            .args(["-P", &pid])
            .output()
            .unwrap();
        let mut pids = vec![pid];
        pids.extend(
            String::from_utf8_lossy(&children.stdout)
                .split_whitespace()
                .map(str::to_string),
        );
        for pid in pids {
            std::process::Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(pid)
                .status()
                .unwrap();
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.signal("CONT");
        let _ = std::process::Command::new(python())
            .arg(repo_path("tests/servers/postgres.py"))
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

/// The catalog hangs (its server stopped: connections open, nothing
/// answered): ingest goes on, the pipeline's commit attempts time out and
/// are retried (it shows `retrying`), a server started meanwhile fails
/// saying the catalog does not answer instead of hanging, and once the
/// catalog answers again every event is committed once.
#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_catalog_is_a_retried_timeout() {
    let pg = PrivatePostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let settings = format!(
        "store_timeout_secs = 2\n\n[catalog]\nuri = \"{}\"\n",
        pg.uri
    );
    let config = write_config(dir.path(), 1, &settings);
    let server = Server::start(&config).await;
    let mut acked: HashSet<String> = post_some(&server, 0, 2).await.into_iter().collect();
    server.flush("ecommerce");

    pg.signal("STOP");
    let hang = std::time::Instant::now();
    let mut retrying = None;
    while hang.elapsed() < Duration::from_secs(10) {
        acked.extend(post_some(&server, 1000 + acked.len(), 1).await);
        let status = server.status("ecommerce").await;
        if status["state"] == "retrying" {
            retrying = Some(status);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let retrying = retrying.expect("the pipeline retries while the catalog hangs");
    assert!(
        retrying["state_reason"]
            .as_str()
            .unwrap()
            .contains("did not finish within 2 s"),
        "{retrying}"
    );
    assert!(acked.len() > 200, "ingest went on: {}", acked.len());
    // A second server on the same catalog cannot start, and says why.
    let other = tempfile::tempdir().unwrap();
    let other_config = write_config(other.path(), 1, &settings);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(["serve", "--config"])
        .arg(&other_config)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not answering"), "{err}");

    pg.signal("CONT");
    let report = server.flush("ecommerce");
    assert!(report["committed_through"].as_u64().is_some(), "{report}");
    server.stop();
    let rows = query(
        &config,
        "SELECT count(*) AS n, count(DISTINCT user_id) AS ids FROM default.ecommerce",
    );
    assert_eq!(
        rows,
        vec![serde_json::json!({"n": acked.len(), "ids": acked.len()})]
    );
}

/// Two nodes on PostgreSQL and S3 each run maintenance of the shared table
/// while both keep committing: the compactions race each other and the
/// sinks (the compare-and-swap on PostgreSQL decides), and every event is
/// in the table once. The sweep lists the bucket and finds nothing old.
#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_maintaining_one_table_on_postgres_and_s3() {
    let dir = tempfile::tempdir().unwrap();
    let id = std::process::id();
    let store = Store::s3(&s3_endpoint(), &format!("maint-{id}")).await;
    let catalog = format!("pipe_maint_{id}");
    let a = node_config(&dir.path().join("a"), &store, &catalog, "node_a");
    let b = node_config(&dir.path().join("b"), &store, &catalog, "node_b");
    let node_a = Server::start(&a).await;
    let node_b = Server::start(&b).await;
    let mut acked = HashSet::new();
    for round in 0..4 {
        let (from_a, from_b) = tokio::join!(
            post_some(&node_a, round * 100, 4),
            post_some(&node_b, 10_000_000 + round * 100, 4)
        );
        acked.extend(from_a);
        acked.extend(from_b);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let maintain = |server: &Server| {
        let url = format!("{}/v1/tables/default.shared/maintain", server.url);
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .json(&serde_json::json!({}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let (ra, rb, more_a, more_b) = tokio::join!(
        maintain(&node_a),
        maintain(&node_b),
        post_some(&node_a, 900, 4),
        post_some(&node_b, 10_000_900, 4)
    );
    acked.extend(more_a);
    acked.extend(more_b);
    for r in [&ra, &rb] {
        assert_eq!(r["outcome"], "ok", "{r}");
        assert_eq!(r["swept"]["deleted"], 0, "{r}");
        assert!(r["swept"]["listed"].as_u64().unwrap() > 0, "{r}");
    }
    let compacted = [&ra, &rb]
        .iter()
        .filter_map(|r| r["compacted"]["files_removed"].as_u64())
        .sum::<u64>();
    assert!(compacted > 0, "neither node compacted: {ra} {rb}");
    node_a.flush("node_a");
    node_b.flush("node_b");
    node_a.stop();
    node_b.stop();
    assert_exactly_once_in(
        &dir.path().join("a"),
        &store,
        &CatalogRef::Postgres {
            name: catalog,
            uri: postgres_uri(),
        },
        "default.shared",
        &acked,
    );
    eprintln!(
        "two nodes maintaining on PostgreSQL + S3: {} events once; compacted {compacted} files; a: {}, b: {}",
        acked.len(),
        ra["compacted"],
        rb["compacted"]
    );
}
