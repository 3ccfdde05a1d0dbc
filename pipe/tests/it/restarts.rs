//! Restarts after what operators do between two starts: a pipeline's
//! `FROM` changed in `pipe.toml`, a buffer restored from an older copy.
//! The server starts every time, and every acknowledged event lands once.

use std::path::Path;

use serde_json::{json, Value};

use crate::harness::*;

/// Three unique events per request, ids from `first`.
async fn post_requests(server: &Server, stream: &str, first: usize, requests: usize) {
    for r in 0..requests {
        let events: Vec<Value> = (0..3)
            .map(|i| json!({"user_id": format!("u{:06}", first + r * 3 + i), "event_type": stream}))
            .collect();
        let (status, body) = server.post_json(stream, &Value::Array(events)).await;
        assert_eq!(status, 200, "{body}");
    }
}

/// Streams `a`, `b` (and `empty`), pipeline `p` reading `from` into
/// `default.t`.
fn config(dir: &Path, from: &str) -> std::path::PathBuf {
    write_stream_config(
        dir,
        "",
        &format!(
            r#"
[streams.a]
schema_file = "schema.json"

[streams.b]
schema_file = "schema.json"

[streams.empty]
schema_file = "schema.json"

[sinks.t_sink]
table = "t"
roll_interval_secs = 3600

[pipelines.p]
sql = "INSERT INTO t_sink SELECT * FROM {from}"
"#
        ),
    )
}

fn counts(config: &Path) -> Value {
    query(
        config,
        "SELECT count(*) AS n, count(DISTINCT user_id) AS ids FROM default.t",
    )[0]
    .clone()
}

/// `p` committed offsets of `a`; its SQL now reads `b`, whose buffer holds
/// fewer offsets (and then `empty`, whose buffer holds none). Before, the
/// server failed to start ("buffer is corrupt") or spun at 100% CPU.
#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_whose_from_changed_reads_the_new_stream() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&config(dir.path(), "a")).await;
    post_requests(&server, "a", 0, 5).await;
    post_requests(&server, "b", 1000, 1).await;
    server.flush("p");
    server.stop();

    let config = config(dir.path(), "b");
    let server = Server::start(&config).await;
    server.flush("p");
    post_requests(&server, "b", 2000, 1).await;
    server.flush("p");
    server.stop();
    assert_eq!(
        counts(&config),
        json!({"n": 21, "ids": 21}),
        "a's 15, then b's 6"
    );

    let config = self::config(dir.path(), "empty");
    let server = Server::start(&config).await;
    post_requests(&server, "empty", 3000, 1).await;
    server.flush("p");
    server.stop();
    assert_eq!(counts(&config), json!({"n": 24, "ids": 24}));
}

/// The buffer folder restored from a copy older than what the table holds
/// (the catalog and warehouse live elsewhere and went on). Before, every
/// start failed with "record 2 is durable but neither in the current
/// segment…".
#[tokio::test(flavor = "multi_thread")]
async fn a_buffer_restored_from_an_older_copy_starts_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let buffer = dir.path().join("data/buffer/ecommerce_stream");
    let backup = dir.path().join("backup");

    let server = Server::start(&config).await;
    post_requests(&server, "ecommerce_stream", 0, 2).await;
    server.flush("ecommerce");
    server.stop();
    copy_dir(&buffer, &backup);

    let server = Server::start(&config).await;
    post_requests(&server, "ecommerce_stream", 100, 3).await;
    server.flush("ecommerce");
    server.stop();

    std::fs::remove_dir_all(&buffer).unwrap();
    copy_dir(&backup, &buffer);
    let server = Server::start(&config).await;
    post_requests(&server, "ecommerce_stream", 200, 1).await;
    server.flush("ecommerce");
    assert!(
        server.log_text().contains("restored from an older copy"),
        "the skipped offsets are reported: {}",
        server.log_text()
    );
    server.stop();
    assert_eq!(
        query(
            &config,
            "SELECT count(*) AS n, count(DISTINCT user_id) AS ids FROM default.ecommerce"
        ),
        vec![json!({"n": 18, "ids": 18})]
    );
    assert!(buffer.join("gaps.log").exists());
}

/// Two pipelines share a stream; one is deleted and made again (the way
/// its SQL is changed until updates in place exist). While it was gone,
/// the other's commits let the stream release events: the recreated
/// pipeline starts at the oldest event still held, and says which offsets
/// its table lacks, in its recent errors (what `pipe pipelines get`
/// shows), not only in the log.
#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_recreated_beside_another_says_what_it_missed() {
    let dir = tempfile::tempdir().unwrap();
    let both = |with_p: bool| {
        let p = if with_p {
            "[sinks.tp_sink]\ntable = \"tp\"\nroll_interval_secs = 3600\n\n[pipelines.p]\nsql = \"INSERT INTO tp_sink SELECT * FROM ecommerce_stream\"\n"
        } else {
            ""
        };
        write_stream_config(
            dir.path(),
            "",
            &format!(
                "buffer_segment_mb = 1\n\n[sinks.tq_sink]\ntable = \"tq\"\nroll_interval_secs = 3600\n\n[pipelines.q]\nsql = \"INSERT INTO tq_sink SELECT * FROM ecommerce_stream\"\n\n{p}"
            ),
        )
    };
    let filler = |from: usize| -> Vec<Value> {
        (from..from + 1500)
            .map(|i| json!({"user_id": format!("f{i:06}"), "event_type": "x", "product_id": "p".repeat(1000)}))
            .collect()
    };
    let config = both(true);
    let server = Server::start(&config).await;
    server
        .post_chunks("ecommerce_stream", &filler(0), 500)
        .await;
    server.flush("p");
    server.flush("q");
    server.stop();

    // p deleted: q alone commits, and the stream releases behind it.
    let config = both(false);
    let server = Server::start(&config).await;
    server
        .post_chunks("ecommerce_stream", &filler(10_000), 500)
        .await;
    server.flush("q");
    server.stop();

    let config = both(true);
    let server = Server::start(&config).await;
    server.flush("p");
    let status = server.status("p").await;
    let missed = status["recent_errors"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|e| {
            e["error"]
                .as_str()
                .filter(|m| m.contains("were released while no pipeline `p`"))
        })
        .unwrap_or_else(|| panic!("the recreated pipeline says what it missed: {status}"))
        .to_string();
    server.stop();
    let count = |table: &str| {
        query(
            &config,
            &format!("SELECT count(*) AS n FROM default.{table}"),
        )[0]["n"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(count("tq"), 3000);
    assert!(count("tp") < 3000, "{missed}");
    assert!(missed.contains("they are not in `default.tp`"), "{missed}");
}

/// A crash right after a commit landed, then a restart with the
/// pipeline's FROM changed: the write ledger the crash left was resolved
/// against the new stream's position, which cannot see that commit, and
/// the committed data file was deleted (found by the hostile review).
#[tokio::test(flavor = "multi_thread")]
async fn files_of_a_commit_that_landed_survive_a_from_change_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with_env(
        &config(dir.path(), "a"),
        &[("PIPE_CRASH_AT", pipe::crash::AFTER_COMMIT)],
    )
    .await;
    post_requests(&server, "a", 0, 5).await;
    request_flush(&server, "p").await;
    assert!(
        !server.child.wait().unwrap().success(),
        "the crash point ends the process"
    );
    drop(server);
    let config = config(dir.path(), "b");
    let server = Server::start(&config).await;
    server.flush("p");
    server.stop();
    // The flush commits what the task had read, then the rest: the crash
    // ends it at the first commit, which holds 4 or all 5 requests. Their
    // files survive (a deleted one fails the query).
    let counted = counts(&config);
    assert!(
        counted == json!({"n": 15, "ids": 15}) || counted == json!({"n": 12, "ids": 12}),
        "a's rows of the commit that landed are readable: {counted}"
    );
}

/// After an upgrade, a pipeline's failed-rows table may hold only commits
/// without a source (rows failed under the old version; none since), while
/// its main table already has commits with one. Its FROM then changes:
/// those old commits (offsets of the old stream) must not be taken for the
/// new stream's, or its failed rows at those offsets are dropped. Before,
/// the rule "commits without a source count until one with a source lands"
/// was decided per table, and the failed-rows table only gets commits when
/// rows fail.
#[tokio::test(flavor = "multi_thread")]
async fn old_failed_rows_commits_are_not_taken_for_a_new_streams() {
    let dir = tempfile::tempdir().unwrap();
    let cast = |from: &str| {
        let config = config(dir.path(), from);
        let text = std::fs::read_to_string(&config).unwrap().replace(
            &format!("SELECT * FROM {from}"),
            &format!("SELECT user_id, CAST(product_id AS INT) AS product FROM {from}"),
        );
        std::fs::write(&config, text).unwrap();
        config
    };
    let events = |prefix: &str, bad_every: usize| -> Value {
        (0..20)
            .map(|i| {
                let product = if bad_every > 0 && i % bad_every == 1 {
                    "bad".into()
                } else {
                    i.to_string()
                };
                json!({"user_id": format!("{prefix}{i}"), "event_type": "x", "product_id": product})
            })
            .collect()
    };
    let config = cast("a");
    let server = Server::start(&config).await;
    assert_eq!(server.post_json("a", &events("a", 0)).await.0, 200);
    server.flush("p");
    server.stop();
    // What the previous version left after quarantining rows of `a` up to
    // offset 999: properties without a source.
    python_json(
        r#"
import sys, json
from pyiceberg.catalog.sql import SqlCatalog
d = sys.argv[1]
cat = SqlCatalog("pipe", uri=f"sqlite:///{d}/data/catalog.db", warehouse=f"file://{d}/data/warehouse")
t = cat.load_table("default.p_failed")
with t.transaction() as tx:
    tx.set_properties({"pipe.p__failed.commit-id": "p__failed/t_sink/900-999",
                       "pipe.p__failed.offset-first": "900", "pipe.p__failed.offset-last": "999"})
print(json.dumps(True))
"#,
        dir.path(),
    );
    let config = cast("b");
    let server = Server::start(&config).await;
    assert_eq!(server.post_json("b", &events("b", 2)).await.0, 200);
    let flushed = server.flush("p");
    assert_eq!(
        (flushed["rows"].as_u64(), flushed["failed_rows"].as_u64()),
        (Some(10), Some(10)),
        "{flushed}"
    );
    server.stop();
    let failed = query(&config, "SELECT count(*) AS n FROM default.p_failed");
    assert_eq!(failed, vec![json!({"n": 10})]);
}

/// An upgrade from a version whose commits named no log, with `p`'s FROM
/// changed in the same restart: `p`'s old position (offsets of `a`) is
/// past the end of `b`'s log. Before, `b` started past it and its four
/// buffered requests were skipped. Now the start is refused, saying what
/// to do, and leaves the buffers as they were: started once with the old
/// FROM, `p` goes on from its old position in `a`, and then `b`'s events
/// all land when FROM changes.
#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_that_also_changes_from_is_refused_then_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    // `config` writes one file: each start writes the one it runs.
    let config_a = config(dir.path(), "a");
    let server = Server::start(&config_a).await;
    post_requests(&server, "a", 0, 10).await;
    post_requests(&server, "b", 100, 4).await;
    server.flush("p");
    server.stop();
    // What the older version left: buffers without ids, and `p`'s commit
    // recorded in properties that name no log.
    for stream in ["a", "b", "empty"] {
        std::fs::remove_file(dir.path().join("data/buffer").join(stream).join("id")).unwrap();
    }
    let last = python_json(
        r#"
import sys, json
from pyiceberg.catalog.sql import SqlCatalog
d = sys.argv[1]
cat = SqlCatalog("pipe", uri=f"sqlite:///{d}/data/catalog.db", warehouse=f"file://{d}/data/warehouse")
t = cat.load_table("default.t")
sourced = {k: v for k, v in t.properties.items() if k.startswith("pipe.p@")}
last = next(v for k, v in sourced.items() if k.endswith(".offset-last"))
with t.transaction() as tx:
    tx.remove_properties(*sourced.keys())
    tx.set_properties({"pipe.p.commit-id": "p/t_sink/0-" + last,
                       "pipe.p.offset-first": "0", "pipe.p.offset-last": last})
print(json.dumps(int(last)))
"#,
        dir.path(),
    );
    assert_eq!(last, json!(9));

    let config_b = config(dir.path(), "b");
    let log = dir.path().join("refused.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(["serve", "--config"])
        .arg(&config_b)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!(
                "the start was not refused:\n{}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("through offset 9")
            && stderr.contains("old FROM")
            && stderr.contains("legacy-consumers"),
        "{stderr}"
    );
    for stream in ["a", "b", "empty"] {
        let buffer = dir.path().join("data/buffer").join(stream);
        assert!(!buffer.join("id").exists(), "{stream}: left as it was");
        assert!(!buffer.join("gaps.log").exists(), "{stream}: no gap");
    }

    // As the message says: once with the old FROM (nothing of `a` is
    // written again), then the new one (all of `b`).
    let config_a = config(dir.path(), "a");
    let server = Server::start(&config_a).await;
    post_requests(&server, "a", 30, 1).await;
    server.flush("p");
    server.stop();
    assert_eq!(counts(&config_a), json!({"n": 33, "ids": 33}));
    let config_b = config(dir.path(), "b");
    let server = Server::start(&config_b).await;
    server.flush("p");
    server.stop();
    assert_eq!(counts(&config_b), json!({"n": 45, "ids": 45}));
}

/// A second server on the same data directory (a restart while the old
/// process still drains) is refused at start, naming the directory.
/// Before, it started: each deleted the data files the other was about to
/// commit as leftovers of an earlier run, and a committed table could no
/// longer be read (review 6 finding 1).
#[tokio::test(flavor = "multi_thread")]
async fn a_second_server_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "a");
    let server = Server::start(&config).await;
    post_requests(&server, "a", 0, 2).await;
    cli(&server, &["streams", "create", "extra"]);
    // The second one's file also defines `extra`: loading its definitions
    // would drop the API's copy (review 7 finding 2).
    let second = dir.path().join("second.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&second, format!("{text}\n[streams.extra]\n")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--config",
        ])
        .arg(&second)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("another `pipe serve` uses the data directory"),
        "{stderr}"
    );
    server.flush("p");
    server.stop();
    assert_eq!(counts(&config), json!({"n": 6, "ids": 6}));
    // Once it is gone, the directory is free, and the API's stream is
    // still defined.
    let server = Server::start(&config).await;
    assert!(cli(&server, &["streams", "list"]).contains("extra"));
    server.stop();
}
