//! What a client of the Iceberg REST catalog may not do to what pipe
//! owns: the pipeline's table and its positions, other tables' folders,
//! locations pipe chooses, names that are paths; and what maintenance and
//! sinks leave alone (files outside a table, folders of renamed tables).

use serde_json::{json, Value};

use crate::harness::*;
use crate::iceberg_rest::{post, pyiceberg};

/// `DELETE /iceberg/v1/pipe/{path}`.
async fn rest_delete(server: &Server, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .delete(format!("{}/iceberg/v1/pipe/{path}", server.url))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_keeps_clients_off_what_pipe_owns() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let server = Server::start(&config).await;
    post_ids(&server, 0, 10).await;
    server.flush("ecommerce");
    let loaded: Value = reqwest::get(format!(
        "{}/iceberg/v1/pipe/namespaces/default/tables/ecommerce",
        server.url
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let location = loaded["metadata"]["location"].as_str().unwrap().to_string();
    let metadata = loaded["metadata-location"].as_str().unwrap().to_string();
    let schema = json!({"type": "struct", "schema-id": 0, "fields": [
        {"id": 1, "name": "id", "type": "long", "required": false}]});

    let (status, answer) = post(
        &server,
        "namespaces/default/register",
        json!({"name": "clone", "metadata-location": metadata}),
        None,
    )
    .await;
    assert_eq!(
        status, 403,
        "a second name for the pipeline's table: {answer}"
    );
    let clone = reqwest::Client::new()
        .head(format!(
            "{}/iceberg/v1/pipe/namespaces/default/tables/clone",
            server.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(clone.status(), 404, "not left registered");
    let (status, answer) = post(
        &server,
        "namespaces/default/tables",
        json!({"name": "twin", "location": location, "schema": schema}),
        None,
    )
    .await;
    assert_eq!(
        status, 403,
        "a table in the pipeline's table's location: {answer}"
    );
    let (status, _) = post(
        &server,
        "namespaces/default/tables",
        json!({"name": "a/b", "schema": schema}),
        None,
    )
    .await;
    assert_eq!(status, 400, "a name that is a path");
    let respelled = location.replacen("/default/", "//default/./", 1);
    let (status, answer) = post(
        &server,
        "namespaces/default/tables",
        json!({"name": "twin2", "location": respelled, "schema": schema}),
        None,
    )
    .await;
    assert_eq!(status, 403, "the same folder spelled otherwise: {answer}");
    // Where pipe makes a table it writes, not made yet (rows the SQL
    // fails on, made when first needed).
    let reserved = location.replace("/ecommerce", "/ecommerce_failed");
    let (status, answer) = post(
        &server,
        "namespaces/default/tables",
        json!({"name": "squatter", "location": reserved, "schema": schema}),
        None,
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    let (status, answer) = post(
        &server,
        "namespaces/default/properties",
        json!({"updates": {"location": "file:///tmp/elsewhere"}}),
        None,
    )
    .await;
    assert_eq!(status, 403, "a namespace's location outside: {answer}");

    // Rename a table away and make a new one of its name: it gets a
    // folder of its own. A purge (`True`, as PyIceberg sends it) deletes
    // only the new one's files.
    let (status, _) = post(&server, "namespaces", json!({"namespace": ["swap"]}), None).await;
    assert_eq!(status, 200);
    let made = |name: &'static str| {
        post(
            &server,
            "namespaces/swap/tables",
            json!({"name": name, "schema": schema}),
            None,
        )
    };
    assert_eq!(made("t").await.0, 200);
    let renamed = reqwest::Client::new()
        .post(format!("{}/iceberg/v1/pipe/tables/rename", server.url))
        .json(&json!({"source": {"namespace": ["swap"], "name": "t"},
                      "destination": {"namespace": ["swap"], "name": "old"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 204);
    let (status, answer) = made("t").await;
    assert_eq!(status, 200, "{answer}");
    let purged = rest_delete(&server, "namespaces/swap/tables/t?purgeRequested=True").await;
    assert_eq!(purged.status(), 204);
    let old = reqwest::get(format!(
        "{}/iceberg/v1/pipe/namespaces/swap/tables/old",
        server.url
    ))
    .await
    .unwrap();
    assert_eq!(old.status(), 200, "the renamed table is whole");

    let outside = json!({"requirements": [], "updates": [{"action": "set-properties",
        "updates": {"write.data.path": "file:///tmp/elsewhere"}}]});
    let (status, answer) = post(
        &server,
        "namespaces/default/tables/ecommerce",
        outside,
        None,
    )
    .await;
    assert_eq!(status, 403, "{answer}");

    let renamed = reqwest::Client::new()
        .post(format!("{}/iceberg/v1/pipe/tables/rename", server.url))
        .json(
            &json!({"source": {"namespace": ["default"], "name": "ecommerce_failed"},
                      "destination": {"namespace": ["default"], "name": "moved"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 409, "the table for rows the SQL fails on");

    let script = r#"
import datetime, json
import pyarrow as pa
from pyiceberg.catalog.rest import RestCatalog
cat = RestCatalog("pipe", uri="{url}", warehouse="pipe")
t = cat.load_table("default.ecommerce")
schema = t.schema().as_arrow()
rows = {f.name: [None] for f in schema}
rows["user_id"] = ["forged"]; rows["event_type"] = ["x"]
rows["__ingest_ts"] = [datetime.datetime.now(datetime.timezone.utc)]
refused = None
try:
    t.append(pa.Table.from_pydict(rows, schema=schema),
             snapshot_properties={"pipe.pipeline": "ecommerce", "pipe.offset-last": "1000000"})
except Exception as e:
    refused = type(e).__name__
print(json.dumps({"refused": refused}))
"#;
    let out = pyiceberg(&server, dir.path(), script);
    assert!(
        out["refused"].is_string(),
        "a snapshot speaking for the pipeline: {out}"
    );
    // The pipeline goes on where it was.
    let mut acked: Vec<String> = (0..10).map(|i| format!("id-{i:08}")).collect();
    acked.extend(post_ids(&server, 100, 10).await);
    server.flush("ecommerce");
    server.stop();
    // (PyIceberg's refused append left its data file behind: the orphan
    // sweep's, not the table's.)
    let rows = query(
        &config,
        "SELECT count(*) AS n, count(DISTINCT user_id) AS d FROM default.ecommerce",
    );
    assert_eq!(rows[0], json!({"n": acked.len(), "d": acked.len()}));
}

/// Locations are pipe's to choose and names are plain (the holes of the
/// third review): a client names no folder of another table however it
/// spells it, moves no table, sets no write path or namespace location,
/// and makes no table the configuration writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locations_are_pipes_to_choose_and_names_are_plain() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let server = Server::start(&config).await;
    post_ids(&server, 0, 10).await;
    server.flush("ecommerce");
    let loaded: Value = reqwest::get(format!(
        "{}/iceberg/v1/pipe/namespaces/default/tables/ecommerce",
        server.url
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let location = loaded["metadata"]["location"].as_str().unwrap().to_string();
    let schema = json!({"type": "struct", "schema-id": 0, "fields": [
        {"id": 1, "name": "id", "type": "long", "required": false}]});
    let create = |name: &str, location: Option<String>| {
        let mut body = json!({"name": name, "schema": schema});
        if let Some(l) = location {
            body["location"] = json!(l);
        }
        post(&server, "namespaces/default/tables", body, None)
    };

    // The pipeline's folder through a symlink every Linux has.
    let path = location.strip_prefix("file://").unwrap();
    let (status, answer) = create("twin", Some(format!("file:///proc/self/root{path}"))).await;
    assert_eq!(status, 403, "{answer}");
    // The location pipe would choose anyway is fine to name.
    let mine = location.replace("/ecommerce", "/mine");
    let (status, answer) = create("mine", Some(mine.clone())).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = create("ecommerce_failed", None).await;
    assert_eq!(status, 409, "a table the configuration writes: {answer}");
    for name in ["a.b", "mine ", "ecommerce\u{2060}"] {
        let (status, answer) = create(name, None).await;
        assert_eq!(status, 400, "{name:?}: {answer}");
    }
    // Another spelling of pipe's own location is kept as pipe spells it.
    let spelled = location.replace("/ecommerce", "/./spelled/");
    let (status, answer) = create("spelled", Some(spelled)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["metadata"]["location"],
        location.replace("/ecommerce", "/spelled")
    );

    for (update, what) in [
        (
            json!({"action": "set-properties", "updates": {"write.data.path": format!("{mine}/data2")}}),
            "a write path, even inside its own folder",
        ),
        (
            json!({"action": "set-location", "location": format!("{mine}-moved")}),
            "a move",
        ),
    ] {
        let (status, answer) = post(
            &server,
            "namespaces/default/tables/mine",
            json!({"requirements": [], "updates": [update]}),
            None,
        )
        .await;
        assert_eq!(status, 403, "{what}: {answer}");
    }
    let warehouse_lake = location.replace("/default/ecommerce", "/lake");
    let (status, answer) = post(
        &server,
        "namespaces/default/properties",
        json!({"updates": {"location": warehouse_lake}}),
        None,
    )
    .await;
    assert_eq!(status, 403, "a namespace's location: {answer}");
    let (status, answer) = post(
        &server,
        "namespaces",
        json!({"namespace": ["placed"], "properties": {"location": warehouse_lake}}),
        None,
    )
    .await;
    assert_eq!(status, 403, "{answer}");

    let deep: Vec<String> = (0..17).map(|i| format!("z{i}")).collect();
    for (namespace, what) in [
        (json!(["q.r"]), "a dot in a level"),
        (json!(deep), "17 levels"),
        (json!(["   "]), "a blank level"),
        (json!(["a\u{202E}b"]), "a bidirectional override"),
    ] {
        let (status, answer) =
            post(&server, "namespaces", json!({"namespace": namespace}), None).await;
        assert_eq!(status, 400, "{what}: {answer}");
    }
    let (status, answer) = post(
        &server,
        "namespaces/default/register",
        json!({"name": "ghost", "metadata-location": format!("{mine}/metadata/none.metadata.json")}),
        None,
    )
    .await;
    assert_eq!(status, 400, "metadata that does not exist: {answer}");

    // Two stages of one name get the uuid the table will have; once made,
    // a new stage of a dropped name is a new table.
    let stage = || {
        post(
            &server,
            "namespaces/default/tables",
            json!({"name": "staged", "schema": schema, "stage-create": true}),
            None,
        )
    };
    let (first, second) = (stage().await.1, stage().await.1);
    let uuid = first["metadata"]["table-uuid"].clone();
    assert_eq!(second["metadata"]["table-uuid"], uuid);
    let commit = json!({
        "requirements": [{"type": "assert-create"}],
        "updates": [
            {"action": "add-schema", "schema": schema},
            {"action": "set-current-schema", "schema-id": -1},
            {"action": "set-location", "location": first["metadata"]["location"]},
        ],
    });
    let (status, made) = post(&server, "namespaces/default/tables/staged", commit, None).await;
    assert_eq!(status, 200, "{made}");
    assert_eq!(made["metadata"]["table-uuid"], uuid);
    let dropped = rest_delete(&server, "namespaces/default/tables/staged").await;
    assert_eq!(dropped.status(), 204);
    assert_ne!(stage().await.1["metadata"]["table-uuid"], uuid);
    // A stage ended by a plain create of its name is over too.
    let staged = stage().await.1["metadata"]["table-uuid"].clone();
    let (status, made) = post(
        &server,
        "namespaces/default/tables",
        json!({"name": "staged", "schema": schema}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{made}");
    let dropped = rest_delete(&server, "namespaces/default/tables/staged").await;
    assert_eq!(dropped.status(), 204);
    assert_ne!(stage().await.1["metadata"]["table-uuid"], staged);
    server.stop();
}

/// Maintenance deletes only a table's own files: a writer that adds the
/// pipeline's data file to its own table (`add_files`), deletes the rows
/// and expires the snapshots leaves the pipeline's file where it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_deletes_no_file_outside_the_tables_location() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let server = Server::start(&config).await;
    let acked = post_ids(&server, 0, 50).await;
    server.flush("ecommerce");
    let location = dir.path().join("data/warehouse/default/ecommerce/data");
    let victim = walk_files(&location)
        .into_iter()
        .find(|f| f.extension().is_some_and(|e| e == "parquet"))
        .expect("the pipeline's data file");
    let script = format!(
        r#"
import json
import pyarrow.parquet as pq
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.expressions import AlwaysTrue
cat = RestCatalog("pipe", uri="{{url}}", warehouse="pipe")
victim = {victim:?}
schema = pq.read_schema(victim).remove_metadata()
t = cat.create_table("default.borrower", schema)
t.add_files(["file://" + victim], check_duplicate_files=False)
t = cat.load_table("default.borrower")
t.delete(AlwaysTrue())
small = pq.read_table(victim).slice(0, 1).cast(schema)
for i in range(55):
    t.append(small)
print(json.dumps({{"snapshots": len(cat.load_table("default.borrower").metadata.snapshots)}}))
"#,
        victim = victim.display().to_string()
    );
    let out = pyiceberg(&server, dir.path(), &script);
    assert!(out["snapshots"].as_u64().unwrap() > 50, "{out}");
    let maintained = cli(
        &server,
        &[
            "tables",
            "maintain",
            "default.borrower",
            "--no-compact",
            "--no-merge",
            "--no-sweep",
        ],
    );
    assert!(
        victim.exists(),
        "the pipeline's file was deleted: {maintained}"
    );
    server.stop();
    let rows = query(&config, "SELECT count(*) AS n FROM default.ecommerce");
    assert_eq!(rows[0]["n"], acked.len());
}

/// A table renamed away keeps its folder; a pipeline's sink that makes a
/// table of the old name makes it in a folder of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_makes_its_table_beside_a_renamed_tables_folder() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let server = Server::start(&config).await;
    let schema = json!({"type": "struct", "schema-id": 0, "fields": [
        {"id": 1, "name": "id", "type": "long", "required": false}]});
    assert_eq!(
        post(&server, "namespaces", json!({"namespace": ["lake"]}), None)
            .await
            .0,
        200
    );
    let (status, made) = post(
        &server,
        "namespaces/lake/tables",
        json!({"name": "audit", "schema": schema}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{made}");
    let old = made["metadata"]["location"].as_str().unwrap().to_string();
    let renamed = reqwest::Client::new()
        .post(format!("{}/iceberg/v1/pipe/tables/rename", server.url))
        .json(&json!({"source": {"namespace": ["lake"], "name": "audit"},
                      "destination": {"namespace": ["lake"], "name": "audit_old"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 204);
    let client = reqwest::Client::new();
    for (kind, body) in [
        (
            "sinks",
            json!({"name": "audit_sink", "type": "iceberg", "namespace": "lake", "table": "audit"}),
        ),
        (
            "pipelines",
            json!({"name": "audit", "sql": "INSERT INTO audit_sink SELECT * FROM ecommerce_stream"}),
        ),
    ] {
        let r = client
            .post(format!("{}/v1/{kind}", server.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    let loaded: Value = reqwest::get(format!(
        "{}/iceberg/v1/pipe/namespaces/lake/tables/audit",
        server.url
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let new = loaded["metadata"]["location"].as_str().unwrap();
    assert_ne!(new.trim_end_matches('/'), old.trim_end_matches('/'));
    assert!(!new.starts_with(&format!("{old}/")), "{new} inside {old}");
    assert!(
        new.starts_with(&format!("{old}-")),
        "a folder of its own beside it: {new}"
    );
    server.stop();
}

/// A sink in a two-level namespace starts (the SQL catalog lists its
/// parent, which lists no tables), and so do new sinks after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_in_nested_namespaces_start_and_do_not_stop_others() {
    let dir = tempfile::tempdir().unwrap();
    let nested = r#"
[sinks.deep_sink]
namespace = "lake.sub"
table = "deep"
roll_interval_secs = 3600

[pipelines.deep]
sql = "INSERT INTO deep_sink SELECT * FROM ecommerce_stream"
"#;
    let config = write_stream_config(dir.path(), "", nested);
    let server = Server::start(&config).await;
    let acked = post_ids(&server, 0, 10).await;
    server.flush("deep");
    server.stop();
    let more = format!(
        "{nested}
[sinks.other_sink]
namespace = \"default\"
table = \"other\"

[pipelines.other]
sql = \"INSERT INTO other_sink SELECT * FROM ecommerce_stream\"
"
    );
    write_stream_config(dir.path(), "", &more);
    let server = Server::start(&config).await;
    post_ids(&server, 100, 10).await;
    server.flush("other");
    server.stop();
    let rows = query(&config, "SELECT count(*) AS n FROM \"lake.sub\".deep");
    assert_eq!(rows[0]["n"], acked.len() + 10);
    // A new pipeline reads what the buffer still holds (`start =
    // "earliest"`): the first 10 events too (their segment is the active one).
    let rows = query(&config, "SELECT count(*) AS n FROM default.other");
    assert_eq!(rows[0]["n"], 20);
}
