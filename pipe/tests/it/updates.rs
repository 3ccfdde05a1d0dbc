//! Definitions changed in place on a running server (`pipe pipelines
//! update`, `PATCH /v1/pipelines/{name}`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;
use crate::manage::{fails, json_of, ok};

const V1: &str = "INSERT INTO api_sink SELECT user_id, 'v1' AS version FROM ecommerce_stream";
const V2: &str = "INSERT INTO api_sink SELECT user_id, 'v2' AS version FROM ecommerce_stream";

/// Posts requests of 25 events with rising ids, one at a time, until
/// `stop`; the acknowledged ids.
fn load(server: Arc<Server>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut next = 0;
        while !stop.load(Ordering::Relaxed) {
            acked.extend(post_ids(&server, next, 25).await);
            next += 25;
        }
        acked
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelines_sql_changes_at_an_offset_under_load() {
    let dir = tempfile::tempdir().unwrap();
    // A second pipeline on the same stream, committing every second, so
    // the buffer releases what both committed while the change runs.
    let config = write_config(dir.path(), 1, "");
    let server = Arc::new(Server::start(&config).await);
    ok(
        &server,
        &[
            "sinks",
            "create",
            "api_sink",
            "--table",
            "versions",
            "--roll-interval",
            "1",
        ],
    );
    ok(
        &server,
        &["pipelines", "create", "api_pipeline", "--sql", V1],
    );

    let stop = Arc::new(AtomicBool::new(false));
    let loading = load(server.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let changing = server.clone();
    let changed = tokio::task::spawn_blocking(move || {
        let server = changing;
        json_of(&ok(
            &server,
            &["pipelines", "update", "api_pipeline", "--sql", V2, "--json"],
        ))
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = loading.await.unwrap();

    assert_eq!(changed["sql"], V2, "{changed}");
    let change = &changed["change"];
    let switch = change["switched_after_offset"]
        .as_u64()
        .unwrap_or_else(|| panic!("the old SQL committed something: {changed}"));
    assert_ne!(change["definition_before"], change["definition_after"]);
    assert_eq!(changed["definition"], change["definition_after"]);
    server.flush("api_pipeline");
    server.flush("ecommerce");
    Arc::into_inner(server).unwrap().stop();

    let n = acked.len() as u64;
    assert!(n > 100, "the load ran: {n} events");
    let rows = query(
        &config,
        "SELECT version, count(*) AS n, count(DISTINCT user_id) AS d, \
         min(user_id) AS lo, max(user_id) AS hi \
         FROM default.versions GROUP BY version ORDER BY version",
    );
    assert_eq!(rows.len(), 2, "both SQLs made rows: {rows:?}");
    let (v1, v2) = (&rows[0], &rows[1]);
    let count = |v: &Value| v["n"].as_u64().unwrap();
    assert_eq!(
        count(v1) + count(v2),
        n,
        "every acknowledged event once: {rows:?}"
    );
    assert_eq!(v1["n"], v1["d"], "{rows:?}");
    assert_eq!(v2["n"], v2["d"], "{rows:?}");
    // One request (one buffer offset) of 25 events at a time, from offset
    // 0: the old SQL made exactly the events through the switch.
    assert_eq!(count(v1), (switch + 1) * 25, "{rows:?}");
    assert!(
        v1["hi"].as_str().unwrap() < v2["lo"].as_str().unwrap(),
        "{rows:?}"
    );
    let other = query(
        &config,
        "SELECT count(*) AS n, count(DISTINCT user_id) AS d FROM default.ecommerce",
    );
    assert_eq!(other, vec![json!({"n": n, "d": n})]);
    // Each commit records the definition that made it.
    let commits = query(
        &config,
        "SELECT summary['pipe.definition'] AS definition, \
         CAST(summary['pipe.offset-last'] AS BIGINT) AS last \
         FROM default.\"versions$snapshots\" ORDER BY committed_at",
    );
    for c in &commits {
        let expected = match c["last"].as_u64().unwrap() <= switch {
            true => &change["definition_before"],
            false => &change["definition_after"],
        };
        assert_eq!(&c["definition"], expected, "{commits:?}");
    }

    // The stored definition is the new one after a restart.
    let server = Server::start(&config).await;
    let got = json_of(&ok(
        &server,
        &["pipelines", "get", "api_pipeline", "--json"],
    ));
    assert_eq!(got["sql"], V2, "{got}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_cannot_be_made_in_place_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 1, "");
    let schema = dir.path().join("schema.json");
    let server = Server::start(&config).await;
    ok(
        &server,
        &["sinks", "create", "api_sink", "--table", "versions"],
    );
    ok(
        &server,
        &["sinks", "create", "other_sink", "--table", "other"],
    );
    ok(
        &server,
        &[
            "streams",
            "create",
            "other_stream",
            "--schema-file",
            schema.to_str().unwrap(),
        ],
    );
    ok(
        &server,
        &["pipelines", "create", "api_pipeline", "--sql", V1],
    );
    assert_eq!(post_ids(&server, 0, 25).await.len(), 25);
    let update =
        |sql: &str| ["pipelines", "update", "api_pipeline", "--sql", sql].map(String::from);
    let refused = |sql: &str, code: i32| {
        let args = update(sql);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fails(&server, &args, code)
    };

    let from = refused(
        "INSERT INTO api_sink SELECT user_id, 'v2' AS version FROM other_stream",
        2,
    );
    assert!(from.contains("FROM does not change in place"), "{from}");
    let sink = refused(
        "INSERT INTO other_sink SELECT user_id, 'v2' AS version FROM ecommerce_stream",
        2,
    );
    assert!(sink.contains("sink does not change in place"), "{sink}");
    let bad = refused("INSERT INTO api_sink SELECT nope FROM ecommerce_stream", 2);
    assert!(bad.contains("nope"), "{bad}");
    let misfit = refused(
        "INSERT INTO api_sink SELECT user_id, 1.5 AS version FROM ecommerce_stream",
        2,
    );
    assert!(misfit.contains("does not fit its sink's table"), "{misfit}");
    let file = fails(
        &server,
        &[
            "pipelines",
            "update",
            "ecommerce",
            "--sql",
            "INSERT INTO ecommerce_sink SELECT * FROM ecommerce_stream WHERE amount > 1",
        ],
        4,
    );
    assert!(file.contains("defined in pipe.toml"), "{file}");
    let dry = ok(
        &server,
        &[
            "pipelines",
            "update",
            "api_pipeline",
            "--sql",
            V2,
            "--dry-run",
        ],
    );
    assert!(dry.starts_with("Dry run"), "{dry}");
    let same = ok(
        &server,
        &["pipelines", "update", "api_pipeline", "--sql", V1],
    );
    assert!(same.contains("nothing changed"), "{same}");

    // A quarantine table that does not take failed rows (one a deleted
    // pipeline left): refused by the dry run and the change alike, and
    // that table is left as it was (no column added to it).
    ok(
        &server,
        &["sinks", "create", "left_sink", "--table", "left"],
    );
    ok(
        &server,
        &[
            "pipelines",
            "create",
            "tmp",
            "--sql",
            "INSERT INTO left_sink SELECT user_id, 'x' AS version FROM ecommerce_stream",
        ],
    );
    ok(&server, &["pipelines", "delete", "tmp", "-y"]);
    ok(&server, &["sinks", "delete", "left_sink", "-y"]);
    let columns = || {
        query(
            &config,
            "SELECT column_name FROM information_schema.columns \
             WHERE table_schema = 'default' AND table_name = 'left'",
        )
        .iter()
        .map(|r| r["column_name"].as_str().unwrap().to_string())
        .collect::<Vec<_>>()
    };
    let before = columns();
    for dry_run in [true, false] {
        let mut args = vec![
            "pipelines",
            "update",
            "api_pipeline",
            "--quarantine-table",
            "default.left",
        ];
        if dry_run {
            args.push("--dry-run");
        }
        let quarantine = fails(&server, &args, 2);
        assert!(quarantine.contains("quarantine table"), "{quarantine}");
    }
    assert_eq!(columns(), before);
    // Still the first SQL, running: what it reads is made by it.
    let got = json_of(&ok(
        &server,
        &["pipelines", "get", "api_pipeline", "--json"],
    ));
    assert_eq!(
        (got["sql"].clone(), got["state"].clone()),
        (json!(V1), json!("running")),
        "{got}"
    );
    assert_eq!(post_ids(&server, 25, 25).await.len(), 25);
    server.flush("api_pipeline");
    server.stop();
    let rows = query(
        &config,
        "SELECT version, count(*) AS n FROM default.versions GROUP BY version",
    );
    assert_eq!(rows, vec![json!({"version": "v1", "n": 50})]);
}

/// SIGKILL in the middle of a change: the stored definition (the new one,
/// stored first) runs after a restart from its sink's last commit, and
/// every acknowledged event is in the table once, through one SQL or the
/// other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_the_middle_of_a_change_loses_and_doubles_nothing() {
    for point in ["change-after-store", "change-between-definitions"] {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), 1, "");
        let spec = format!("{point}@1");
        let mut server = Server::start_to_crash(&config, &[("PIPE_CRASH_AT", &spec)]).await;
        ok(
            &server,
            &["sinks", "create", "api_sink", "--table", "versions"],
        );
        ok(
            &server,
            &["pipelines", "create", "api_pipeline", "--sql", V1],
        );
        let mut acked = post_some(&server, 0, 4).await;
        server.flush("api_pipeline");
        acked.extend(post_some(&server, 100, 4).await);
        let out = crate::manage::pipe(
            &server,
            &["pipelines", "update", "api_pipeline", "--sql", V2],
        );
        assert!(!out.status.success(), "{point}: the change was cut off");
        for _ in 0..100 {
            if server.child.try_wait().unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            server.child.try_wait().unwrap().is_some(),
            "{point}: the crash point was reached"
        );
        server.kill();

        let server = Server::start(&config).await;
        let got = json_of(&ok(
            &server,
            &["pipelines", "get", "api_pipeline", "--json"],
        ));
        assert_eq!(got["sql"], V2, "{point}: {got}");
        acked.extend(post_some(&server, 200, 4).await);
        server.flush("api_pipeline");
        server.stop();
        let n = acked.len() as u64;
        let rows = query(
            &config,
            "SELECT version, count(*) AS n, count(DISTINCT user_id) AS d, \
             min(user_id) AS lo, max(user_id) AS hi \
             FROM default.versions GROUP BY version ORDER BY version",
        );
        let total: u64 = rows.iter().map(|r| r["n"].as_u64().unwrap()).sum();
        let distinct: u64 = rows.iter().map(|r| r["d"].as_u64().unwrap()).sum();
        assert_eq!((total, distinct), (n, n), "{point}: {rows:?}");
        // The first 4 requests were committed by the old SQL before the
        // change; the last 4 went through the new one.
        assert_eq!(rows[0]["version"], "v1", "{point}: {rows:?}");
        assert!(rows[0]["n"].as_u64().unwrap() >= 100, "{point}: {rows:?}");
        let v2 = rows.last().unwrap();
        assert_eq!(v2["version"], "v2", "{point}: {rows:?}");
        assert!(v2["n"].as_u64().unwrap() >= 100, "{point}: {rows:?}");
        if rows.len() == 2 {
            assert!(
                rows[0]["hi"].as_str().unwrap() < v2["lo"].as_str().unwrap(),
                "{point}: {rows:?}"
            );
        }
    }
}

/// The Parquet codecs of the data files under `folder`.
fn codecs(folder: &std::path::Path) -> Value {
    python_json(
        r#"
import sys, glob, json, pyarrow.parquet as pq
files = glob.glob(sys.argv[1] + "/**/*.parquet", recursive=True)
print(json.dumps(sorted({pq.ParquetFile(f).metadata.row_group(0).column(0).compression for f in files})))
"#,
        folder,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sinks_settings_change_under_load_at_an_offset() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 1, "");
    let server = Arc::new(Server::start(&config).await);
    ok(
        &server,
        &[
            "sinks",
            "create",
            "api_sink",
            "--table",
            "versions",
            "--roll-interval",
            "1",
        ],
    );
    ok(
        &server,
        &["pipelines", "create", "api_pipeline", "--sql", V1],
    );
    let refused = |args: &[&str], code: i32| fails(&server, args, code);
    let table = refused(
        &["sinks", "update", "ecommerce_sink", "--roll-interval", "5"],
        4,
    );
    assert!(table.contains("defined in pipe.toml"), "{table}");
    let dry = ok(
        &server,
        &[
            "sinks",
            "update",
            "api_sink",
            "--compression",
            "snappy",
            "--dry-run",
        ],
    );
    assert!(dry.starts_with("Dry run"), "{dry}");

    let stop = Arc::new(AtomicBool::new(false));
    let loading = load(server.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let changing = server.clone();
    let changed = tokio::task::spawn_blocking(move || {
        json_of(&ok(
            &changing,
            &[
                "sinks",
                "update",
                "api_sink",
                "--compression",
                "snappy",
                "--roll-interval",
                "2",
                "--bloom-filter-column",
                "user_id",
                "--json",
            ],
        ))
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = loading.await.unwrap();
    assert_eq!(changed["compression"], "snappy", "{changed}");
    assert_eq!(changed["roll_interval_secs"], 2, "{changed}");
    assert!(
        changed["change"]["switched_after_offset"].is_u64(),
        "{changed}"
    );
    server.flush("api_pipeline");
    let server = Arc::into_inner(server).unwrap();
    server.stop();

    let n = acked.len() as u64;
    let rows = query(
        &config,
        "SELECT count(*) AS n, count(DISTINCT user_id) AS d FROM default.versions",
    );
    assert_eq!(rows, vec![json!({"n": n, "d": n})]);
    let folder = dir.path().join("data/warehouse/default/versions/data");
    assert_eq!(codecs(&folder), json!(["SNAPPY", "ZSTD"]));

    // Stored: the new settings after a restart; what names the table
    // does not change in place.
    let server = Server::start(&config).await;
    let got = json_of(&ok(&server, &["sinks", "get", "api_sink", "--json"]));
    assert_eq!(got["compression"], "snappy", "{got}");
    assert_eq!(got["bloom_filter_columns"], json!(["user_id"]), "{got}");
    let patch = |body: Value| {
        let url = format!("{}/v1/sinks/api_sink", server.url);
        async move {
            let r = reqwest::Client::new()
                .patch(url)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // Recorded: what changed when.
    let changes: Value = reqwest::get(format!("{}/v1/changes", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        changes["changes"][0]["updated"],
        json!(["sink api_sink"]),
        "{changes}"
    );
    assert_eq!(
        changes["changes"][1]["created"],
        json!(["pipeline api_pipeline"]),
        "{changes}"
    );
    let (status, body) = patch(json!({"table": "elsewhere"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("does not change in place"), "{body}");
    let (status, body) = patch(json!({"partition_by": ["nope"]})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no column `nope`"), "{body}");
    let (status, body) = patch(json!({"partition_by": null, "path": null})).await;
    assert_eq!(
        (status, body.contains("\"changed\":false")),
        (200, true),
        "unset stays unset: {body}"
    );
    let (status, body) = patch(json!({"roll_interval": 3})).await;
    assert_eq!(status, 400, "an unknown key: {body}");
    let (status, body) = patch(json!({"bloom_filter_columns": ["nope"]})).await;
    assert_eq!(status, 400, "{body}");
    let got = json_of(&ok(&server, &["sinks", "get", "api_sink", "--json"]));
    assert_eq!(
        got["bloom_filter_columns"],
        json!(["user_id"]),
        "nothing changed: {got}"
    );
    server.stop();
}

/// Rows of `table`: the number and the distinct ids.
fn counted(config: &std::path::Path, table: &str) -> (u64, u64) {
    let rows = query(
        config,
        &format!("SELECT count(*) AS n, count(DISTINCT user_id) AS d FROM {table}"),
    );
    (
        rows[0]["n"].as_u64().unwrap(),
        rows[0]["d"].as_u64().unwrap(),
    )
}

/// A new pipeline on a stream another pipeline reads starts where it is
/// told, and a crash before its first commit does not move that point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_pipeline_starts_where_it_is_told_even_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 1, "");
    let server = Server::start(&config).await;
    // Before: 4 requests of 25, read by the file's pipeline.
    assert_eq!(post_some(&server, 0, 4).await.len(), 100);
    server.flush("ecommerce");
    for (name, table) in [("from_end", "from_end"), ("from_time", "from_time")] {
        ok(
            &server,
            &[
                "sinks",
                "create",
                &format!("{name}_sink"),
                "--table",
                table,
                "--roll-interval",
                "3600",
            ],
        );
    }
    ok(
        &server,
        &[
            "pipelines",
            "create",
            "from_end",
            "--start",
            "end",
            "--sql",
            "INSERT INTO from_end_sink SELECT * FROM ecommerce_stream",
        ],
    );
    let bad = fails(
        &server,
        &[
            "pipelines",
            "create",
            "bad",
            "--start",
            "latest",
            "--sql",
            "INSERT INTO from_time_sink SELECT * FROM ecommerce_stream",
        ],
        2,
    );
    assert!(bad.contains("expected `earliest`, `end`"), "{bad}");
    // After: 2 requests, then the time `from_time` starts at, then 2 more.
    assert_eq!(post_some(&server, 100, 2).await.len(), 50);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let at = chrono::Utc::now().to_rfc3339();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(post_some(&server, 200, 2).await.len(), 50);
    ok(
        &server,
        &[
            "pipelines",
            "create",
            "from_time",
            "--start",
            &format!("time:{at}"),
            "--sql",
            "INSERT INTO from_time_sink SELECT * FROM ecommerce_stream",
        ],
    );
    server.flush("ecommerce");
    // Neither has committed when the process dies.
    server.kill();

    let server = Server::start(&config).await;
    assert_eq!(post_some(&server, 300, 1).await.len(), 25);
    server.flush("from_end");
    server.flush("from_time");
    server.stop();
    assert_eq!(counted(&config, "default.from_end"), (125, 125));
    assert_eq!(counted(&config, "default.from_time"), (75, 75));
    assert_eq!(counted(&config, "default.ecommerce"), (225, 225));
}

/// What the third hostile review found in making and deleting: a start
/// point past the stream's end or in the future is refused; a stream
/// whose start fails takes no events; a stream a `pipe.toml` pipeline
/// reads is not deleted, even forced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_streams_and_deletes_that_cannot_be_kept_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 1, "");
    let schema = dir.path().join("schema.json");
    let schema = schema.to_str().unwrap();
    let server = Server::start(&config).await;
    ok(
        &server,
        &["sinks", "create", "late_sink", "--table", "late"],
    );
    let sql = "INSERT INTO late_sink SELECT * FROM ecommerce_stream";
    let past = fails(
        &server,
        &[
            "pipelines",
            "create",
            "late",
            "--start",
            "offset:1000",
            "--sql",
            sql,
        ],
        2,
    );
    assert!(past.contains("past the end"), "{past}");
    let future = fails(
        &server,
        &[
            "pipelines",
            "create",
            "late",
            "--start",
            "time:2999-01-01T00:00:00Z",
            "--sql",
            sql,
        ],
        2,
    );
    assert!(future.contains("in the future"), "{future}");
    let pipelines = json_of(&ok(&server, &["pipelines", "list", "--json"]));
    assert_eq!(
        pipelines["pipelines"].as_array().unwrap().len(),
        1,
        "{pipelines}"
    );

    // A stream whose start fails late (its buffer folder unusable) is not
    // left taking events that no definition owns.
    std::fs::create_dir_all(dir.path().join("data/buffer/half/schema.arrow")).unwrap();
    crate::manage::pipe(
        &server,
        &["streams", "create", "half", "--schema-file", schema],
    );
    let (status, body) = server.post_json("half", &getting_started_events()).await;
    assert_eq!(status, 404, "{body}");

    // An API stream that the file's pipeline would read after a restart.
    ok(
        &server,
        &["streams", "create", "api_s", "--schema-file", schema],
    );
    server.stop();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}\n[sinks.f_sink]\ntable = \"f\"\n\n[pipelines.f]\nsql = \"INSERT INTO f_sink SELECT * FROM api_s\"\n"),
    )
    .unwrap();
    let server = Server::start(&config).await;
    let forced = fails(&server, &["streams", "delete", "api_s", "--force"], 4);
    assert!(forced.contains("defined in pipe.toml"), "{forced}");
    server.stop();
    let server = Server::start(&config).await;
    server.stop();
}
