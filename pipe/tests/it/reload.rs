//! `pipe.toml` read again by a running server (`pipe reload`, SIGHUP):
//! what changed is checked as a whole, then applied in place under load,
//! losing and doubling nothing; what cannot change in place is refused
//! and nothing changes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::*;
use crate::manage::{fails, ok};

const SINK: &str = r#"
[sinks.ecommerce_sink]
namespace = "default"
table = "ecommerce"
roll_interval_secs = 1
"#;

/// The getting-started file with `pipeline` as the pipeline's SQL and
/// `extra` after it.
fn file(dir: &std::path::Path, sql: &str, extra: &str) -> std::path::PathBuf {
    write_stream_config(
        dir,
        "",
        &format!("{SINK}\n[pipelines.ecommerce]\nsql = \"{sql}\"\n{extra}"),
    )
}

const OLD_SQL: &str = "INSERT INTO ecommerce_sink SELECT * FROM ecommerce_stream";
const NEW_SQL: &str = "INSERT INTO ecommerce_sink SELECT *, 'v2' AS version FROM ecommerce_stream";
const SECOND: &str = r#"
[streams.clicks]
schema_file = "schema.json"
cors_origins = ["https://app.example"]

[sinks.clicks_sink]
table = "clicks"
roll_interval_secs = 1

[pipelines.clicks]
sql = "INSERT INTO clicks_sink SELECT * FROM clicks"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_pipe_toml_is_applied_in_place_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let config = file(dir.path(), OLD_SQL, "");
    let server = Arc::new(Server::start(&config).await);

    // Load on the stream for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let load = load_until(&server, 0, Duration::from_millis(5), &stop);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The new SQL adds a column; a new stream, sink and pipeline come.
    file(dir.path(), NEW_SQL, SECOND);
    let dry = ok(&server, &["reload", "--dry-run"]);
    assert!(
        dry.contains("Dry run")
            && dry.contains("streams started: clicks")
            && dry.contains("pipelines switched at an offset: ecommerce")
            && dry.contains("pipelines started: clicks"),
        "{dry}"
    );
    assert_eq!(
        server
            .post_json("clicks", &getting_started_events())
            .await
            .0,
        404,
        "a dry run starts nothing"
    );
    let done = ok(&server, &["reload"]);
    assert!(done.contains("Reloaded"), "{done}");
    assert_eq!(
        server
            .post_json("clicks", &getting_started_events())
            .await
            .0,
        200
    );
    let again = ok(&server, &["reload"]);
    assert!(again.contains("changes nothing"), "{again}");
    tokio::time::sleep(Duration::from_millis(500)).await;

    // What cannot change in place is refused, and nothing changes.
    let with = |extra: &str| file(dir.path(), NEW_SQL, &format!("{SECOND}{extra}"));
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:1\"\n{}",
            std::fs::read_to_string(&config).unwrap()
        ),
    )
    .unwrap();
    let e = fails(&server, &["reload"], 2);
    assert!(e.contains("`listen`") && e.contains("restart"), "{e}");
    with("");
    let moved = std::fs::read_to_string(&config)
        .unwrap()
        .replace("table = \"clicks\"", "table = \"clicks2\"");
    std::fs::write(&config, moved).unwrap();
    let e = fails(&server, &["reload"], 2);
    assert!(e.contains("`sinks.clicks_sink.table`"), "{e}");
    with("[pipelines.broken]\nsql = \"INSERT INTO nowhere SELECT * FROM clicks\"\n");
    let e = fails(&server, &["reload"], 2);
    assert!(e.contains("broken"), "{e}");

    // SIGHUP: the second stream and its pipeline go again.
    file(dir.path(), NEW_SQL, "");
    let pid = server.child.id().to_string();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(hup.success());
    let mut gone = false;
    for _ in 0..100 {
        if server
            .post_json("clicks", &getting_started_events())
            .await
            .0
            == 404
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "SIGHUP did not stop `clicks`:\n{}", server.log_text());

    stop.store(true, Ordering::Relaxed);
    let acked: HashSet<String> = load.await.unwrap().into_iter().collect();
    assert!(acked.len() > 100, "the load ran: {}", acked.len());
    server.flush("ecommerce");
    let server = Arc::into_inner(server).expect("the load ended");
    server.stop();

    // Every acknowledged event once; the new SQL's column from the switch.
    assert_exactly_once(dir.path(), &Store::local(dir.path()), &acked);
    let versions = query(
        &config,
        "SELECT version, count(*) AS n FROM default.ecommerce GROUP BY version ORDER BY version",
    );
    assert_eq!(versions.len(), 2, "rows of both SQLs: {versions:?}");
    let clicks = query(&config, "SELECT count(*) AS n FROM default.clicks");
    assert_eq!(
        clicks[0]["n"], 3,
        "the new pipeline committed before it stopped"
    );

    // A restart runs the file as it is.
    let server = Server::start(&config).await;
    assert_eq!(
        server
            .post_json("clicks", &getting_started_events())
            .await
            .0,
        404
    );
    assert_eq!(
        server
            .post_json("ecommerce_stream", &getting_started_events())
            .await
            .0,
        200
    );
    server.stop();
}

/// A sink's `partition_by` changed in pipe.toml and reloaded under load:
/// the table's partition spec evolves for new data, every acknowledged
/// event is in the table once, old and new files are read and pruned by
/// their own spec (by `pipe query` and PyIceberg), compaction keeps them
/// apart, and a restart does not evolve the spec again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sinks_partitioning_evolves_for_new_data_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let config = file(dir.path(), OLD_SQL, "");
    let server = Arc::new(Server::start(&config).await);
    let stop = Arc::new(AtomicBool::new(false));
    let load = load_until(&server, 0, Duration::from_millis(5), &stop);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let partitioned = std::fs::read_to_string(&config).unwrap().replace(
        "roll_interval_secs = 1\n",
        "roll_interval_secs = 1\npartition_by = [\"day(__ingest_ts)\", \"event_type\"]\n",
    );
    std::fs::write(&config, partitioned).unwrap();
    let done = ok(&server, &["reload"]);
    assert!(done.contains("sinks changed: ecommerce_sink"), "{done}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let acked: HashSet<String> = load.await.unwrap().into_iter().collect();
    server.flush("ecommerce");
    let maintained = cli(
        &server,
        &["tables", "maintain", "default.ecommerce", "--json"],
    );
    assert!(maintained.contains("\"outcome\":\"ok\""), "{maintained}");
    let server = Arc::into_inner(server).expect("the load ended");
    server.stop();

    assert_exactly_once(dir.path(), &Store::local(dir.path()), &acked);
    let script = r#"
import json, sys
sys.path.insert(0, sys.argv[2])
from testenv import open_catalog
catalog = open_catalog(f"{sys.argv[1]}/data/catalog.db", f"file://{sys.argv[1]}/data/warehouse")
table = catalog.load_table("default.ecommerce")
files = table.inspect.files().to_pylist()
print(json.dumps({
    "specs": sorted(table.specs().keys()),
    "default": table.spec().spec_id,
    "default_fields": [f.name for f in table.spec().fields],
    "files_by_spec": sorted({f["spec_id"] for f in files}),
    "rows": table.scan().to_arrow().num_rows,
}))
"#;
    let out = std::process::Command::new(python())
        .args(["-c", script])
        .arg(dir.path())
        .arg(repo_path("tests/readers"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(read["specs"], serde_json::json!([0, 1]), "{read}");
    assert_eq!(read["default"], 1, "{read}");
    assert_eq!(
        read["default_fields"],
        serde_json::json!(["__ingest_ts_day", "event_type"]),
        "{read}"
    );
    assert_eq!(
        read["files_by_spec"],
        serde_json::json!([0, 1]),
        "files of both specs: {read}"
    );
    assert_eq!(read["rows"], acked.len(), "{read}");
    let (rows, stats) = query_with_stats(
        &config,
        "SELECT count(*) AS n FROM default.ecommerce WHERE event_type = 'crash_point'",
    );
    assert_eq!(rows[0]["n"], acked.len(), "{stats}");
    let none = query(
        &config,
        "SELECT count(*) AS n FROM default.ecommerce WHERE event_type = 'other'",
    );
    assert_eq!(none[0]["n"], 0);

    // A restart finds the table as the file says: no further spec.
    let server = Server::start(&config).await;
    assert_eq!(
        server
            .post_json("ecommerce_stream", &getting_started_events())
            .await
            .0,
        200
    );
    server.flush("ecommerce");
    server.stop();
    let out = std::process::Command::new(python())
        .args(["-c", script])
        .arg(dir.path())
        .arg(repo_path("tests/readers"))
        .output()
        .unwrap();
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(read["specs"], serde_json::json!([0, 1]), "{read}");
    assert_eq!(read["rows"], acked.len() + 3, "{read}");
}

/// Posts ids `first..first + n` to `stream`; the ids acknowledged.
async fn post_to(server: &Server, stream: &str, first: usize, n: usize) -> Vec<String> {
    let ids: Vec<String> = (first..first + n).map(|i| format!("id-{i:08}")).collect();
    let body: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| serde_json::json!({"user_id": id, "event_type": "r"}))
        .collect();
    match server
        .post_json(stream, &serde_json::Value::Array(body))
        .await
        .0
    {
        200 => ids,
        _ => Vec::new(),
    }
}

/// A pipeline renamed in the file takes over its sink: the reload stops
/// the old name after its last commit, and the new one continues after
/// the offsets the table holds from the stream's log (not at the oldest
/// buffered event, which the old name had committed already), across a
/// restart too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_pipeline_takes_over_its_sink_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let config = file(dir.path(), OLD_SQL, "");
    let server = Server::start(&config).await;
    let mut acked = post_to(&server, "ecommerce_stream", 0, 300).await;
    server.flush("ecommerce");
    acked.extend(post_to(&server, "ecommerce_stream", 300, 100).await);
    let renamed = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[pipelines.ecommerce]", "[pipelines.ecommerce_v2]");
    std::fs::write(&config, renamed).unwrap();
    let dry = ok(&server, &["reload", "--dry-run"]);
    assert!(dry.contains("pipelines started: ecommerce_v2"), "{dry}");
    let done = ok(&server, &["reload"]);
    assert!(
        done.contains("pipelines stopped after their last commit: ecommerce"),
        "{done}"
    );
    acked.extend(post_to(&server, "ecommerce_stream", 400, 100).await);
    server.flush("ecommerce_v2");
    // And back: the old name's own position is older than what the table
    // holds from the log since.
    let back = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[pipelines.ecommerce_v2]", "[pipelines.ecommerce]");
    std::fs::write(&config, back).unwrap();
    ok(&server, &["reload"]);
    acked.extend(post_to(&server, "ecommerce_stream", 500, 100).await);
    server.flush("ecommerce");
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("[pipelines.ecommerce]", "[pipelines.ecommerce_v2]"),
    )
    .unwrap();
    server.stop();
    let acked: HashSet<String> = acked.into_iter().collect();
    assert_eq!(acked.len(), 600);
    assert_exactly_once(dir.path(), &Store::local(dir.path()), &acked);
    let server = Server::start(&config).await;
    server.flush("ecommerce_v2");
    server.stop();
    assert_exactly_once(dir.path(), &Store::local(dir.path()), &acked);
    let rows = query(&config, "SELECT count(*) AS n FROM default.ecommerce");
    assert_eq!(rows[0]["n"], 600, "no event twice after the restart");
}

/// Reload refusals that protect what runs: a file that would leave the
/// admin API open to the network, and a file read empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_refuses_what_a_start_would_and_an_emptied_file() {
    let dir = tempfile::tempdir().unwrap();
    let digest = hex_digest("admin-secret");
    let config = file(dir.path(), OLD_SQL, "");
    let admin = format!("\n[admin]\nauth_token_sha256 = [\"{digest}\"]\n");
    let guarded = format!("{}{admin}", std::fs::read_to_string(&config).unwrap());
    std::fs::write(&config, &guarded).unwrap();
    let server = Server::start_on(&config, "0.0.0.0", &[]).await;
    let reload = |token: &'static str| {
        let url = format!("{}/v1/reload", server.url);
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // Without `[admin]`, a start on 0.0.0.0 is refused: so is the reload.
    std::fs::write(&config, guarded.replace(&admin, "")).unwrap();
    let (status, body) = reload("admin-secret").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no token"), "{body}");
    let (status, _) = reload("wrong").await;
    assert_eq!(status, 401, "the admin token still guards the API");

    // A file read while it was being rewritten in place.
    std::fs::write(&config, format!("data_dir = \"data\"\n{admin}")).unwrap();
    let (status, body) = reload("admin-secret").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("defines no stream and no pipeline"), "{body}");
    std::fs::write(&config, &guarded).unwrap();
    let (status, body) = reload("admin-secret").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        server
            .post_json("ecommerce_stream", &getting_started_events())
            .await
            .0,
        200
    );
    server.stop();
}

/// A sink in the file written by a pipeline the API made: a reload that
/// changes the sink switches that pipeline too. A stream removed with its
/// pipeline under load stops taking events before the pipeline's last
/// commit, so every event it acknowledged is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_reaches_api_pipelines_and_drains_removed_streams() {
    let dir = tempfile::tempdir().unwrap();
    let shared = "\n[sinks.shared_sink]\ntable = \"shared\"\nroll_interval_secs = 1\n";
    let config = file(dir.path(), OLD_SQL, &format!("{SECOND}{shared}"));
    let server = Arc::new(Server::start(&config).await);
    ok(
        &server,
        &[
            "pipelines",
            "create",
            "api_p",
            "--sql",
            "INSERT INTO shared_sink SELECT * FROM ecommerce_stream",
        ],
    );
    let slower = shared.replace("roll_interval_secs = 1", "roll_interval_secs = 3600");
    file(dir.path(), OLD_SQL, &format!("{SECOND}{slower}"));
    let done = ok(&server, &["reload"]);
    assert!(
        done.contains("sinks changed: shared_sink")
            && done.contains("pipelines switched at an offset: api_p"),
        "{done}"
    );

    // The load on `clicks` runs through the reload that removes it.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (server, stop) = (server.clone(), stop.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut next = 0;
            while !stop.load(Ordering::Relaxed) {
                acked.extend(post_to(&server, "clicks", next, 10).await);
                next += 10;
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    file(dir.path(), OLD_SQL, &slower);
    let done = ok(&server, &["reload"]);
    assert!(
        done.contains("streams stopped") && done.contains("clicks"),
        "{done}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let acked: HashSet<String> = load.await.unwrap().into_iter().collect();
    assert!(acked.len() > 20, "the load ran: {}", acked.len());
    let server = Arc::into_inner(server).expect("the load ended");
    server.stop();
    assert_exactly_once_in(
        dir.path(),
        &Store::local(dir.path()),
        &CatalogRef::Sqlite(dir.path().join("data/catalog.db")),
        "default.clicks",
        &acked,
    );
}

/// A SIGHUP that arrives while the server starts (a reload hook firing
/// during a restart) does not end it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_during_the_start_does_not_end_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let config = file(dir.path(), OLD_SQL, "");
    let port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let hup = || {
        std::process::Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap()
    };
    // From when the process runs `pipe serve` (its first few ms are the
    // loader's), through opening the catalog and starting the pipelines.
    std::thread::sleep(Duration::from_millis(50));
    for _ in 0..20 {
        hup();
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut up = false;
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the server ended: {status}");
        }
        if reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "the server did not come up");
    assert!(child.try_wait().unwrap().is_none());
    child.kill().unwrap();
    child.wait().unwrap();
}
