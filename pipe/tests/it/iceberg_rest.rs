//! The Iceberg REST catalog `pipe serve` serves at `/iceberg`, used by a
//! client nobody here wrote (PyIceberg's `RestCatalog`): listing, reading
//! a pipeline's table, creating and appending, appending to a table a
//! pipeline commits to while it commits; commits checked, guarded and
//! applied once per idempotency key; tokens. What clients may not do:
//! `iceberg_guards.rs`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

/// Runs `script` with PyIceberg; `{url}` in it is the server's catalog URL.
pub fn pyiceberg(server: &Server, dir: &std::path::Path, script: &str) -> Value {
    let script = script.replace("{url}", &format!("{}/iceberg", server.url));
    python_json(&script, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyiceberg_reads_creates_and_appends_while_a_pipeline_commits() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 1, "");
    let server = Arc::new(Server::start(&config).await);
    let mut acked = post_ids(&server, 0, 30).await;
    server.flush("ecommerce");

    let stop = Arc::new(AtomicBool::new(false));
    let load = load_until(&server, 1000, Duration::from_millis(20), &stop);
    let script = r#"
import datetime, json, sys
import pyarrow as pa
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.schema import Schema
from pyiceberg.types import NestedField, StringType, LongType
cat = RestCatalog("pipe", uri="{url}", warehouse="pipe")
out = {"namespaces": [list(n) for n in cat.list_namespaces()],
       "tables": sorted(".".join(t) for t in cat.list_tables("default"))}
events = cat.load_table("default.ecommerce")
out["rows_at_load"] = events.scan().to_arrow().num_rows
cat.create_namespace("ext")
made = cat.create_table("ext.t", Schema(NestedField(1, "id", StringType(), required=False),
                                        NestedField(2, "n", LongType(), required=False)))
made.append(pa.table({"id": ["a", "b", "c"], "n": [1, 2, 3]}))
out["ext_rows"] = cat.load_table("ext.t").scan().to_arrow().num_rows
schema = events.schema().as_arrow()
for batch in range(5):
    rows = {f.name: [] for f in schema}
    for i in range(10):
        rows["user_id"].append(f"py-{batch * 10 + i}")
        rows["event_type"].append("pyiceberg")
        rows["product_id"].append(None)
        rows["amount"].append(None)
        rows["__ingest_ts"].append(datetime.datetime.now(datetime.timezone.utc))
    cat.load_table("default.ecommerce").append(pa.Table.from_pydict(rows, schema=schema))
print(json.dumps(out))
"#;
    let out = pyiceberg(&server, dir.path(), script);
    assert_eq!(out["namespaces"], json!([["default"]]), "{out}");
    assert!(
        out["tables"]
            .as_array()
            .unwrap()
            .contains(&json!("default.ecommerce")),
        "{out}"
    );
    assert!(out["rows_at_load"].as_u64() >= Some(30), "{out}");
    assert_eq!(out["ext_rows"], 3, "{out}");

    // The pipeline goes on committing after the outside appends.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    acked.extend(load.await.unwrap());
    server.flush("ecommerce");
    let server = Arc::into_inner(server).expect("the load ended");
    server.stop();
    let mut all: HashSet<String> = acked.into_iter().collect();
    let pipe_count = all.len();
    all.extend((0..50).map(|i| format!("py-{i}")));
    assert_exactly_once(dir.path(), &Store::local(dir.path()), &all);
    let rows = query(&config, "SELECT count(*) AS n FROM default.ecommerce");
    assert_eq!(
        rows[0]["n"],
        pipe_count + 50,
        "every row once, on both sides"
    );
}

/// `POST` a JSON body to the catalog; the status and the answer.
pub async fn post(server: &Server, path: &str, body: Value, key: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/iceberg/v1/pipe/{path}", server.url))
        .json(&body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn metadata_location(server: &Server, table: &str) -> String {
    let loaded: Value = reqwest::get(format!(
        "{}/iceberg/v1/pipe/namespaces/default/tables/{table}",
        server.url
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    loaded["metadata-location"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_checked_guarded_and_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let server = Server::start(&config).await;
    post_ids(&server, 0, 10).await;
    server.flush("ecommerce");
    let table = "namespaces/default/tables/ecommerce";
    let before = metadata_location(&server, "ecommerce").await;

    // A requirement that no longer holds: 409, and nothing changes.
    let stale = json!({
        "requirements": [{"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": 1}],
        "updates": [{"action": "set-properties", "updates": {"owner": "x"}}],
    });
    let (status, answer) = post(&server, table, stale, None).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["type"], "CommitFailedException", "{answer}");
    assert_eq!(metadata_location(&server, "ecommerce").await, before);

    // The pipelines' positions cannot be changed from outside.
    let loaded: Value = reqwest::get(format!("{}/iceberg/v1/pipe/{table}", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let position = loaded["metadata"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .find(|k| k.starts_with("pipe.ecommerce@") && k.ends_with(".offset-last"))
        .unwrap()
        .clone();
    let move_it = json!({"requirements": [], "updates": [{"action": "set-properties", "updates": {position.clone(): "999"}}]});
    let (status, answer) = post(&server, table, move_it, None).await;
    assert_eq!(
        (status, answer["error"]["type"].clone()),
        (403, json!("ForbiddenException")),
        "{answer}"
    );

    // A retried commit with the same key is applied once.
    let set = json!({"requirements": [], "updates": [{"action": "set-properties", "updates": {"owner": "team"}}]});
    let (first, a) = post(&server, table, set.clone(), Some("key-1")).await;
    let (again, b) = post(&server, table, set.clone(), Some("key-1")).await;
    assert_eq!((first, again), (200, 200));
    assert_eq!(
        a["metadata-location"], b["metadata-location"],
        "the first answer"
    );
    assert_eq!(
        metadata_location(&server, "ecommerce").await,
        a["metadata-location"].as_str().unwrap(),
        "one commit"
    );
    let other = json!({"requirements": [], "updates": [{"action": "set-properties", "updates": {"owner": "other"}}]});
    let (status, _) = post(&server, table, other, Some("key-1")).await;
    assert_eq!(status, 422, "a key reused for another request");

    // Not found, bad requests, and what a pipeline writes.
    let missing = reqwest::Client::new()
        .head(format!(
            "{}/iceberg/v1/pipe/namespaces/default/tables/nope",
            server.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let (status, answer) = post(
        &server,
        "namespaces/nope/tables/t",
        json!({"requirements": [], "updates": []}),
        None,
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    let (status, _) = post(&server, table, json!({"nonsense": 1}), None).await;
    assert_eq!(status, 400);
    let dropped = reqwest::Client::new()
        .delete(format!("{}/iceberg/v1/pipe/{table}", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(dropped.status(), 409, "the pipeline's table stays");
    let wrong = reqwest::get(format!("{}/iceberg/v1/config?warehouse=other", server.url))
        .await
        .unwrap();
    assert_eq!(wrong.status(), 404);

    // The pipeline commits on top of what came through the catalog.
    post_ids(&server, 100, 10).await;
    let report = server.flush("ecommerce");
    assert_eq!(report["rows"], 10, "{report}");
    server.stop();
    let rows = query(&config, "SELECT count(*) AS n FROM default.ecommerce");
    assert_eq!(rows[0]["n"], 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_oauth_clients_guard_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let (write, read, secret) = (
        hex_digest("w-token"),
        hex_digest("r-token"),
        hex_digest("s3cret"),
    );
    let iceberg = format!(
        "[iceberg]\nwrite_token_sha256 = [\"{write}\"]\nread_token_sha256 = [\"{read}\"]\nclients = [{{ id = \"spark\", secret_sha256 = \"{secret}\", write = true }}]\n"
    );
    let config = write_config(dir.path(), 1, &iceberg);
    let server = Server::start(&config).await;
    let create = |token: Option<&'static str>, name: &'static str| {
        let url = format!("{}/iceberg/v1/pipe/namespaces", server.url);
        async move {
            let mut r = reqwest::Client::new()
                .post(url)
                .json(&json!({"namespace": [name]}));
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            r.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(create(None, "a").await, 401, "no token");
    // A refusal is not kept for the key: the retry with a token goes through.
    let keyed = |token: Option<&'static str>| {
        let url = format!("{}/iceberg/v1/pipe/namespaces", server.url);
        async move {
            let mut r = reqwest::Client::new()
                .post(url)
                .header("Idempotency-Key", "k-1")
                .json(&json!({"namespace": ["keyed"]}));
            if let Some(t) = token {
                r = r.header("Authorization", format!("BEARER {t}"));
            }
            r.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(keyed(None).await, 401);
    assert_eq!(keyed(Some("w-token")).await, 200, "the scheme in any case");
    assert_eq!(keyed(Some("w-token")).await, 200, "replayed");
    assert_eq!(keyed(None).await, 401, "a replay is for who may make it");
    assert_eq!(create(Some("nope"), "a").await, 401, "a wrong token");
    assert_eq!(create(Some("r-token"), "a").await, 403, "a read token");
    assert_eq!(create(Some("w-token"), "a").await, 200);
    let listed = reqwest::Client::new()
        .get(format!("{}/iceberg/v1/pipe/namespaces", server.url))
        .bearer_auth("r-token")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);

    // PyIceberg's OAuth2 exchange with the client's credentials.
    let script = r#"
import json
from pyiceberg.catalog.rest import RestCatalog
cat = RestCatalog("pipe", uri="{url}", warehouse="pipe", credential="spark:s3cret")
cat.create_namespace("from_spark")
refused = None
try:
    RestCatalog("pipe", uri="{url}", warehouse="pipe", credential="spark:wrong")
except Exception as e:
    refused = type(e).__name__
print(json.dumps({"namespaces": sorted(n[0] for n in cat.list_namespaces()), "refused": refused}))
"#;
    let out = pyiceberg(&server, dir.path(), script);
    assert_eq!(
        out["namespaces"],
        json!(["a", "default", "from_spark", "keyed"]),
        "{out}"
    );
    assert!(
        out["refused"].is_string(),
        "a wrong secret gets no token: {out}"
    );
    server.stop();
}

/// DuckDB's Iceberg extension attaches `pipe`'s catalog by URL and answers
/// a count and a filter as `pipe query` does, on a local warehouse and on
/// the S3 server (with credentials the catalog vends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_attaches_the_catalog_and_agrees_with_pipe_query() {
    for s3 in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let store = match s3 {
            true => Store::s3(&s3_endpoint(), &format!("duck-{}", free_port())).await,
            false => Store::local(dir.path()),
        };
        let vend = "\n[iceberg]\nvend_credentials = true\n";
        let config = write_config(dir.path(), 3600, &format!("{}{vend}", store.toml()));
        let server = Server::start(&config).await;
        assert_eq!(
            server
                .post_json("ecommerce_stream", &getting_started_events())
                .await
                .0,
            200
        );
        post_ids(&server, 0, 40).await;
        server.flush("ecommerce");
        let sql = [
            "SELECT count(*) AS n FROM default.ecommerce",
            "SELECT count(*) AS n FROM default.ecommerce WHERE event_type = 'purchase'",
        ];
        let script = format!(
            r#"
import duckdb, json, os, duckdb_ext
con = duckdb.connect()
con.execute("SET autoinstall_known_extensions=false")
con.execute(f"SET extension_directory='{{os.path.join(duckdb_ext.__path__[0], 'extensions')}}'")
con.execute("LOAD iceberg"); con.execute("LOAD httpfs")
con.execute("ATTACH 'pipe' AS lake (TYPE iceberg, ENDPOINT '{url}/iceberg', AUTHORIZATION_TYPE 'none')")
print(json.dumps([con.sql(q.replace("default.", "lake.default.")).fetchone()[0] for q in {queries:?}]))
"#,
            url = server.url,
            queries = sql,
        );
        let duck = python_json(&script, dir.path());
        let ours: Vec<Value> = sql
            .iter()
            .map(|q| query(&config, q)[0]["n"].clone())
            .collect();
        assert_eq!(duck, json!(ours), "s3 = {s3}");
        assert_eq!(ours, [json!(43), json!(1)], "s3 = {s3}");
        server.stop();
    }
}

/// A staged creation (PyIceberg's `create_table_transaction`, as Spark's
/// CTAS) makes nothing until its commit, which makes the table with its
/// first rows; a second one of the same name is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_create_is_made_by_its_commit() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let server = Server::start(&config).await;
    let script = r#"
import json
import pyarrow as pa
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.schema import Schema
from pyiceberg.types import NestedField, StringType, LongType
cat = RestCatalog("pipe", uri="{url}", warehouse="pipe")
cat.create_namespace("ctas")
schema = Schema(NestedField(1, "id", StringType(), required=False), NestedField(2, "n", LongType(), required=False))
tx = cat.create_table_transaction("ctas.t", schema)
before = cat.table_exists("ctas.t")
tx.append(pa.table({"id": ["a", "b"], "n": [1, 2]}))
tx.commit_transaction()
rows = cat.load_table("ctas.t").scan().to_arrow().num_rows
again = None
try:
    tx2 = cat.create_table_transaction("ctas.t", schema)
    tx2.commit_transaction()
except Exception as e:
    again = type(e).__name__
print(json.dumps({"before": before, "rows": rows, "again": again}))
"#;
    let out = pyiceberg(&server, dir.path(), script);
    assert_eq!(out["before"], false, "staged: nothing made yet: {out}");
    assert_eq!(out["rows"], 2, "{out}");
    assert!(out["again"].is_string(), "{out}");
    server.stop();
    let rows = query(&config, "SELECT count(*) AS n FROM ctas.t");
    assert_eq!(rows[0]["n"], 2);
}

/// Another engine evolves the partition spec of a table a pipeline
/// writes: the pipeline's next commit finds its files of the old spec
/// refused, writes the range again under the new one, and loses and
/// doubles nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_changed_through_the_catalog_does_not_stall_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let server = Server::start(&config).await;
    let mut acked = post_ids(&server, 0, 30).await;
    server.flush("ecommerce");
    acked.extend(post_ids(&server, 100, 30).await);
    let script = r#"
import json
from pyiceberg.catalog.rest import RestCatalog
cat = RestCatalog("pipe", uri="{url}", warehouse="pipe")
table = cat.load_table("default.ecommerce")
with table.update_spec() as spec:
    spec.add_identity("event_type")
print(json.dumps({"spec": cat.load_table("default.ecommerce").spec().spec_id}))
"#;
    let out = pyiceberg(&server, dir.path(), script);
    assert_eq!(out["spec"], 1, "{out}");
    let (status, body) = flush_answer(&server, "ecommerce").await;
    // The first attempt may meet the old files' refusal; the next writes
    // the range again under the new spec.
    if status != 200 {
        assert!(body.contains("partition spec"), "{body}");
        let (status, body) = flush_answer(&server, "ecommerce").await;
        assert_eq!(status, 200, "{body}");
    }
    acked.extend(post_ids(&server, 200, 30).await);
    server.flush("ecommerce");
    server.stop();
    let acked: HashSet<String> = acked.into_iter().collect();
    assert_exactly_once(dir.path(), &Store::local(dir.path()), &acked);
}

/// What pipe owns stays out of clients' reach: another table's location
/// (by `location` or by registering its metadata under a second name),
/// write paths outside the warehouse, snapshot summaries that speak for
/// a pipeline, and the tables a pipeline writes (its quarantine tables
/// too).
/// A restart between a staged creation and its commit: the table the
/// commit makes still takes the uuid the stage answered with (clients
/// that send no `assign-uuid` check it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_uuid_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let server = Server::start(&config).await;
    let schema = json!({"type": "struct", "schema-id": 0, "fields": [
        {"id": 1, "name": "id", "type": "long", "required": false}]});
    let (status, staged) = post(
        &server,
        "namespaces/default/tables",
        json!({"name": "later", "schema": schema, "stage-create": true}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{staged}");
    let uuid = staged["metadata"]["table-uuid"].clone();
    let location = staged["metadata"]["location"].clone();
    server.stop();
    let server = Server::start(&config).await;
    let commit = json!({
        "requirements": [{"type": "assert-create"}],
        "updates": [
            {"action": "add-schema", "schema": schema},
            {"action": "set-current-schema", "schema-id": -1},
            {"action": "add-spec", "spec": {"spec-id": 0, "fields": []}},
            {"action": "set-default-spec", "spec-id": -1},
            {"action": "add-sort-order", "sort-order": {"order-id": 0, "fields": []}},
            {"action": "set-default-sort-order", "sort-order-id": -1},
            {"action": "set-location", "location": location},
        ],
    });
    let (status, made) = post(&server, "namespaces/default/tables/later", commit, None).await;
    assert_eq!(status, 200, "{made}");
    assert_eq!(made["metadata"]["table-uuid"], uuid, "{made}");
    server.stop();
}

/// Another engine renames a column, or drops one and adds another of its
/// name: pipe's queries read the table by field id, as PyIceberg does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columns_evolved_by_another_engine_read_by_field_id() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let server = Server::start(&config).await;
    let script = r#"
import json
import pyarrow as pa
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.types import StringType
cat = RestCatalog("pipe", uri="{url}", warehouse="pipe")
schema = pa.schema([("id", pa.int64()), ("name", pa.string()), ("x", pa.int32())])
t = cat.create_table("default.evolve", schema)
t.append(pa.table({"id": [1, 2], "name": ["a", "b"], "x": [10, 20]}, schema=schema))
with t.update_schema() as u:
    u.rename_column("name", "label")
with t.update_schema() as u:
    u.delete_column("x")
with t.update_schema() as u:
    u.add_column("x", StringType())
print(json.dumps(cat.load_table("default.evolve").scan().to_arrow().sort_by("id").to_pylist()))
"#;
    let theirs = pyiceberg(&server, dir.path(), script);
    assert_eq!(
        theirs,
        json!([{"id": 1, "label": "a", "x": null}, {"id": 2, "label": "b", "x": null}])
    );
    let answer = server
        .query_api(json!({"sql": "SELECT id, label, x FROM default.evolve ORDER BY id"}))
        .await;
    // (The query answer leaves null values out of its row objects.)
    assert_eq!(
        answer["rows"],
        json!([{"id": 1, "label": "a"}, {"id": 2, "label": "b"}]),
        "{answer}"
    );
    server.stop();
}
