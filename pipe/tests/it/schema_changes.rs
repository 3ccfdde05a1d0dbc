//! A stream's schema changed in place (`pipe streams update`, `PATCH
//! /v1/streams/{name}`) and in `pipe.toml` across a crash: events of both
//! schemas land once in the evolved table, which other readers open.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;
use crate::manage::{fails, json_of, ok};

const V1: &str = r#"{"fields":[
  {"name":"user_id","type":"string","required":true},
  {"name":"n","type":"int32"},
  {"name":"amount","type":"float32","required":true}]}"#;
/// `n` and `amount` wider, `amount` optional, `tag` new.
const V2: &str = r#"{"fields":[
  {"name":"user_id","type":"string","required":true},
  {"name":"n","type":"int64"},
  {"name":"amount","type":"float64"},
  {"name":"tag","type":"string"}]}"#;

/// Posts one request of `count` events to `stream`, ids from `first`,
/// with a `tag` when `tagged`; the acknowledged ids.
async fn post(
    server: &Server,
    stream: &str,
    first: usize,
    count: usize,
    tagged: bool,
) -> Vec<String> {
    let ids: Vec<String> = (first..first + count)
        .map(|i| format!("id-{i:08}"))
        .collect();
    let events: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let mut e = json!({"user_id": id, "n": i, "amount": 1.5});
            if tagged {
                e["tag"] = json!("new");
            }
            e
        })
        .collect();
    let sent = reqwest::Client::new()
        .post(format!("{}/v1/streams/{stream}", server.url))
        .json(&events)
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    match sent {
        Ok(r) if r.status() == 200 => ids,
        _ => Vec::new(),
    }
}

/// Every row of `table` as PyIceberg and DuckDB read it.
fn read(dir: &std::path::Path, table: &str) -> Value {
    read_with_python_args(
        dir,
        &Store::local(dir).warehouse,
        None,
        true,
        &["--table", table],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streams_schema_changes_in_place_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 1, "");
    std::fs::write(dir.path().join("v1.json"), V1).unwrap();
    std::fs::write(dir.path().join("v2.json"), V2).unwrap();
    std::fs::write(
        dir.path().join("gone.json"),
        r#"{"fields":[{"name":"user_id","type":"string","required":true}]}"#,
    )
    .unwrap();
    let server = Arc::new(Server::start(&config).await);
    let path = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    ok(
        &server,
        &["streams", "create", "s", "--schema-file", &path("v1.json")],
    );
    ok(
        &server,
        &[
            "sinks",
            "create",
            "evolving_sink",
            "--table",
            "evolving",
            "--roll-interval",
            "1",
        ],
    );
    ok(
        &server,
        &[
            "pipelines",
            "create",
            "p",
            "--sql",
            "INSERT INTO evolving_sink SELECT * FROM s",
        ],
    );
    // Refused, and nothing changes: a field removed; the file's stream.
    let gone = fails(
        &server,
        &[
            "streams",
            "update",
            "s",
            "--schema-file",
            &path("gone.json"),
        ],
        2,
    );
    assert!(gone.contains("field `n` is gone"), "{gone}");
    let file = fails(
        &server,
        &[
            "streams",
            "update",
            "ecommerce_stream",
            "--schema-file",
            &path("v2.json"),
        ],
        4,
    );
    assert!(file.contains("defined in pipe.toml"), "{file}");
    let dry = ok(
        &server,
        &[
            "streams",
            "update",
            "s",
            "--schema-file",
            &path("v2.json"),
            "--dry-run",
        ],
    );
    assert!(dry.contains("add optional field `tag`"), "{dry}");

    // Events of the first schema flow while the schema changes.
    let stop = Arc::new(AtomicBool::new(false));
    let loading = {
        let (server, stop) = (server.clone(), stop.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut next = 0;
            while !stop.load(Ordering::Relaxed) {
                acked.extend(post(&server, "s", next, 20, false).await);
                next += 20;
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let changing = server.clone();
    let v2 = path("v2.json");
    let changed = tokio::task::spawn_blocking(move || {
        json_of(&ok(
            &changing,
            &["streams", "update", "s", "--schema-file", &v2, "--json"],
        ))
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = loading.await.unwrap();
    assert_eq!(
        changed["change"]["schema_changes"]
            .as_array()
            .unwrap()
            .len(),
        4,
        "{changed}"
    );
    assert!(
        changed["change"]["pipelines"][0]["switched_after_offset"].is_u64(),
        "{changed}"
    );
    // Events of the new schema.
    for r in 0..5 {
        let ids = post(&server, "s", 1_000_000 + r * 20, 20, true).await;
        assert_eq!(ids.len(), 20, "a tagged event is taken now");
        acked.extend(ids);
    }
    // The new column reads, fresh and committed, before the commit that
    // holds its first values (the snapshot's files lack it).
    for committed_only in [false, true] {
        let answer = server
            .query_api(serde_json::json!({
                "sql": "SELECT count(*) AS n, count(tag) AS t FROM default.evolving",
                "committed_only": committed_only,
            }))
            .await;
        let row = &answer["rows"][0];
        assert!(
            row["n"].as_u64().is_some(),
            "committed only: {committed_only}: {answer}"
        );
        if !committed_only {
            assert_eq!(row["n"], acked.len(), "{answer}");
            assert_eq!(row["t"], 100, "{answer}");
        }
    }
    server.flush("p");
    Arc::into_inner(server).unwrap().stop();

    let n = acked.len();
    let read = read(dir.path(), "default.evolving");
    for reader in ["pyiceberg", "duckdb"] {
        let rows = read[reader]["rows"].as_array().unwrap();
        assert_eq!(rows.len(), n, "{reader}: every acknowledged event once");
        let tagged = rows.iter().filter(|r| r["tag"] == "new").count();
        assert_eq!(tagged, 100, "{reader}");
        let mut ids: Vec<&str> = rows
            .iter()
            .map(|r| r["user_id"].as_str().unwrap())
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "{reader}: no event twice");
    }
    let rows = query(
        &config,
        "SELECT count(*) AS n, count(tag) AS tagged, sum(n) AS s FROM default.evolving",
    );
    assert_eq!(rows[0]["n"], n, "{rows:?}");
    assert_eq!(rows[0]["tagged"], 100, "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_changed_in_pipe_toml_reads_what_the_old_one_buffered_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.json");
    let config = write_stream_config(
        dir.path(),
        "",
        r#"
[sinks.ecommerce_sink]
table = "evolving"
roll_interval_secs = 3600

[pipelines.ecommerce]
sql = "INSERT INTO ecommerce_sink SELECT * FROM ecommerce_stream"
"#,
    );
    std::fs::write(&schema, V1).unwrap();
    let server = Server::start(&config).await;
    let mut acked = post(&server, "ecommerce_stream", 0, 50, false).await;
    server.flush("ecommerce");
    // Buffered, not committed, when the process dies.
    acked.extend(post(&server, "ecommerce_stream", 50, 50, false).await);
    assert_eq!(acked.len(), 100);
    server.kill();

    std::fs::write(&schema, V2).unwrap();
    let server = Server::start(&config).await;
    acked.extend(post(&server, "ecommerce_stream", 100, 50, true).await);
    assert_eq!(acked.len(), 150);
    server.flush("ecommerce");
    server.stop();

    let read = read(dir.path(), "default.evolving");
    for reader in ["pyiceberg", "duckdb"] {
        let rows = read[reader]["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 150, "{reader}");
        let tagged = rows.iter().filter(|r| r["tag"] == "new").count();
        assert_eq!(tagged, 50, "{reader}");
    }
    let types = query(
        &config,
        "SELECT arrow_typeof(n) AS n, arrow_typeof(amount) AS amount FROM default.evolving LIMIT 1",
    );
    assert_eq!(types, vec![json!({"n": "Int64", "amount": "Float64"})]);
}

/// A `pipe.toml` stream's schema file edited on disk, for the next
/// restart, in a way its buffered events do not fit: an unrelated change
/// through the API does not pick it up, and the restart is refused with
/// the reason while those events wait, instead of a pipeline that can
/// never commit them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_schema_file_waits_for_a_restart_and_a_misfit_is_refused_there() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.json");
    let config = write_stream_config(dir.path(), "", "");
    std::fs::write(&schema, V1).unwrap();
    let server = Server::start(&config).await;
    ok(
        &server,
        &[
            "sinks",
            "create",
            "k",
            "--table",
            "kept",
            "--roll-interval",
            "3600",
        ],
    );
    ok(
        &server,
        &[
            "pipelines",
            "create",
            "p",
            "--sql",
            "INSERT INTO k SELECT * FROM ecommerce_stream",
        ],
    );
    let mut acked = post(&server, "ecommerce_stream", 0, 20, false).await;
    let must = r#"{"fields":[
      {"name":"user_id","type":"string","required":true},
      {"name":"n","type":"int32"},
      {"name":"amount","type":"float32","required":true},
      {"name":"must","type":"string","required":true}]}"#;
    std::fs::write(&schema, must).unwrap();
    ok(
        &server,
        &["sinks", "update", "k", "--roll-interval", "3000"],
    );
    let stream = json_of(&ok(
        &server,
        &["streams", "get", "ecommerce_stream", "--json"],
    ));
    assert_eq!(
        stream["schema"]["fields"].as_array().unwrap().len(),
        3,
        "{stream}"
    );
    acked.extend(post(&server, "ecommerce_stream", 20, 20, false).await);
    server.flush("p");
    // Buffered, not committed, when the process stops.
    acked.extend(post(&server, "ecommerce_stream", 40, 20, false).await);
    assert_eq!(acked.len(), 60);
    server.kill();

    let stderr = serve_refused(&config);
    assert!(stderr.contains("new field `must` is required"), "{stderr}");

    std::fs::write(&schema, V2).unwrap();
    let server = Server::start(&config).await;
    server.flush("p");
    server.stop();
    let rows = query(
        &config,
        "SELECT count(*) AS n, count(DISTINCT user_id) AS d FROM default.kept",
    );
    assert_eq!(rows, vec![json!({"n": 60, "d": 60})]);
}

/// A JSON Schema whose columns stay but whose rules change (`maximum`)
/// applies to the next request; the pipeline goes on untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_schema_rule_change_applies_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 1, "");
    let rules = |max: u32| {
        json!({"type": "object", "properties": {
            "user_id": {"type": "string"},
            "amount": {"type": "number", "maximum": max}
        }, "required": ["user_id"]})
        .to_string()
    };
    std::fs::write(dir.path().join("low.json"), rules(100)).unwrap();
    std::fs::write(dir.path().join("high.json"), rules(1000)).unwrap();
    let server = Server::start(&config).await;
    let path = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    ok(
        &server,
        &[
            "streams",
            "create",
            "j",
            "--json-schema-file",
            &path("low.json"),
        ],
    );
    let event = json!([{"user_id": "a", "amount": 150}]);
    assert_eq!(server.post_json("j", &event).await.0, 400);
    let same = ok(
        &server,
        &[
            "streams",
            "update",
            "j",
            "--json-schema-file",
            &path("low.json"),
        ],
    );
    assert!(same.contains("nothing changed"), "{same}");
    ok(
        &server,
        &[
            "streams",
            "update",
            "j",
            "--json-schema-file",
            &path("high.json"),
        ],
    );
    assert_eq!(server.post_json("j", &event).await.0, 200);
    // The stream's fields sent back as a field list (the console's
    // "Change" box, unedited): the same columns, but the rules go, and the
    // dry run says so rather than "no schema change" (review 17).
    let view: Value = reqwest::get(format!("{}/v1/streams/j", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = reqwest::Client::new()
        .patch(format!("{}/v1/streams/j?dry_run=true", server.url))
        .json(&json!({"schema": view["schema"]}))
        .send()
        .await
        .unwrap();
    let answer: Value = r.json().await.unwrap();
    let lines = answer["change"]["schema_changes"].to_string();
    assert!(
        lines.contains("JSON Schema is replaced by a field list"),
        "{answer}"
    );
    server.stop();
    let server = Server::start(&config).await;
    assert_eq!(
        server.post_json("j", &event).await.0,
        200,
        "kept across a restart"
    );
    server.stop();
}
