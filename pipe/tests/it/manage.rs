//! `pipe streams|sinks|pipelines create|list|get|delete` and `pipe setup`
//! against a running server: round trips, persistence across a restart,
//! and the errors for duplicates, unknown names and definitions the file
//! owns.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::harness::*;

/// Runs `pipe ARGS --server URL` with standard input closed.
pub(crate) fn pipe(server: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(args)
        .args(["--server", &server.url])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// [`pipe`], which must succeed; its standard output.
pub(crate) fn ok(server: &Server, args: &[&str]) -> String {
    let out = pipe(server, args);
    assert!(
        out.status.success(),
        "pipe {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log_text()
    );
    String::from_utf8(out.stdout).unwrap()
}

/// [`pipe`], which must fail with `code`; its standard error.
pub(crate) fn fails(server: &Server, args: &[&str], code: i32) -> String {
    let out = pipe(server, args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(code), "pipe {args:?}: {stderr}");
    stderr
}

pub(crate) fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn names(list: &Value, key: &str, name: &str) -> Vec<String> {
    list[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[name].as_str().unwrap().to_string())
        .collect()
}

fn count(config: &Path, table: &str) -> u64 {
    query(config, &format!("SELECT count(*) AS n FROM {table}"))[0]["n"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_made_with_the_cli_work_persist_and_refuse_what_they_should() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 1, "");
    let schema = dir.path().join("schema.json");
    let schema = schema.to_str().unwrap();
    let server = Server::start(&config).await;

    // Create: a stream, an Iceberg sink and a pipeline with a filter.
    let stream = json_of(&ok(
        &server,
        &[
            "streams",
            "create",
            "api_stream",
            "--schema-file",
            schema,
            "--cors-origin",
            "https://shop.example",
            "--json",
        ],
    ));
    assert_eq!(stream["origin"], "api", "{stream}");
    assert_eq!(
        stream["endpoint"],
        format!("{}/v1/streams/api_stream", server.url)
    );
    assert_eq!(stream["schema"]["fields"].as_array().unwrap().len(), 4);
    assert_eq!(
        stream["http"]["cors_origins"],
        json!(["https://shop.example"])
    );
    let sink = json_of(&ok(
        &server,
        &[
            "sinks",
            "create",
            "api_sink",
            "--namespace",
            "shop",
            "--table",
            "big_orders",
            "--roll-interval",
            "1",
            "--bloom-filter-column",
            "user_id",
            "--json",
        ],
    ));
    assert_eq!(sink["table"], "shop.big_orders", "{sink}");
    assert_eq!(sink["compression"], "zstd", "{sink}");
    assert_eq!(sink["bloom_filter_columns"], json!(["user_id"]), "{sink}");
    let sql = "INSERT INTO api_sink SELECT user_id, amount FROM api_stream WHERE amount > 20";
    let pipeline = json_of(&ok(
        &server,
        &[
            "pipelines",
            "create",
            "api_pipeline",
            "--sql",
            sql,
            "--json",
        ],
    ));
    assert_eq!(pipeline["sql"], sql, "{pipeline}");
    assert_eq!(pipeline["stream"], "api_stream", "{pipeline}");

    // The stream takes events at once; the pipeline commits the matching ones.
    let (status, body) = server
        .post_json("api_stream", &getting_started_events())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.flush("api_pipeline")["rows"], 1);
    assert_eq!(count(&config, "shop.big_orders"), 1);
    // `/metrics` follows what was created.
    let metrics = server.metrics().await;
    for (name, value) in [
        (r#"pipe_stream_records_in_total{stream="api_stream"}"#, 3.0),
        (
            r#"pipe_sink_records_written_total{pipeline="api_pipeline",sink="shop.big_orders"}"#,
            1.0,
        ),
    ] {
        assert_eq!(metrics.get(name), Some(&value), "{name} in {metrics:?}");
    }

    // Human output: the creation summary's layout, tables for lists.
    let details = ok(&server, &["streams", "get", "api_stream"]);
    for expected in [
        "Name: api_stream",
        &format!("Endpoint: {}/v1/streams/api_stream", server.url),
        "CORS Origins: https://shop.example",
        "│ Field Name │ Type    │ Unit/Items │ Required │",
        "│ user_id    │ string  │            │ Yes      │",
        "Pipelines: api_pipeline",
        "Events accepted: 3",
    ] {
        assert!(details.contains(expected), "{expected:?} in\n{details}");
    }
    let list = ok(&server, &["streams", "list"]);
    assert!(list.starts_with("STREAM "), "{list}");
    assert!(
        list.lines()
            .any(|l| l.starts_with("ecommerce_stream ") && l.contains(" file ")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("api_stream ") && l.contains(" api ")),
        "{list}"
    );
    let sinks = ok(&server, &["sinks", "get", "api_sink"]);
    assert!(sinks.contains("Table: shop.big_orders"), "{sinks}");
    assert!(sinks.contains("Bloom filters: user_id"), "{sinks}");
    assert!(sinks.contains("Pipeline: api_pipeline"), "{sinks}");
    let pipelines = json_of(&ok(&server, &["pipelines", "list", "--json"]));
    assert_eq!(
        names(&pipelines, "pipelines", "pipeline"),
        ["api_pipeline", "ecommerce"]
    );

    // Errors: duplicates, the file's names, unknown names, bad definitions.
    let e = fails(&server, &["streams", "create", "api_stream"], 4);
    assert!(e.contains("stream `api_stream` already exists"), "{e}");
    let e = fails(&server, &["streams", "create", "ecommerce_stream"], 4);
    assert!(e.contains("defined in the definitions file"), "{e}");
    let e = fails(
        &server,
        &["streams", "delete", "ecommerce_stream", "--force"],
        4,
    );
    assert!(e.contains("remove it there and reload"), "{e}");
    let e = fails(&server, &["pipelines", "delete", "ecommerce", "--force"], 4);
    assert!(e.contains("definitions file"), "{e}");
    let e = fails(&server, &["streams", "get", "nope"], 3);
    assert!(e.contains("unknown stream `nope`"), "{e}");
    // A name is one path segment: a query string in it is refused, not
    // sent (it would have turned `force` on).
    let e = fails(
        &server,
        &["pipelines", "delete", "ecommerce?force=true&x=", "--force"],
        2,
    );
    assert!(e.contains("names use letters"), "{e}");
    fails(&server, &["sinks", "delete", "nope", "--force"], 3);
    fails(&server, &["pipelines", "get", "nope"], 3);
    let e = fails(
        &server,
        &[
            "pipelines",
            "create",
            "p2",
            "--sql",
            "INSERT INTO api_sink SELECT nope FROM api_stream",
        ],
        2,
    );
    assert!(e.contains("nope"), "{e}");
    let e = fails(
        &server,
        &[
            "pipelines",
            "create",
            "p2",
            "--sql",
            "INSERT INTO api_sink SELECT * FROM api_stream",
        ],
        4,
    );
    assert!(
        e.contains("already written by pipeline `api_pipeline`"),
        "{e}"
    );
    let e = fails(
        &server,
        &[
            "sinks",
            "create",
            "s2",
            "--type",
            "iceberg",
            "--table",
            "ecommerce",
        ],
        2,
    );
    assert!(
        e.contains("already the table of sink `ecommerce_sink`"),
        "{e}"
    );
    // A bloom filter on a column the pipeline does not write: the pipeline
    // is refused before it starts, and leaves nothing behind.
    ok(
        &server,
        &[
            "sinks",
            "create",
            "bloomy",
            "--table",
            "bloomy",
            "--bloom-filter-column",
            "nope",
        ],
    );
    let e = fails(
        &server,
        &[
            "pipelines",
            "create",
            "p3",
            "--sql",
            "INSERT INTO bloomy SELECT * FROM api_stream",
        ],
        2,
    );
    assert!(e.contains("bloom filter column `nope`"), "{e}");
    fails(&server, &["pipelines", "get", "p3"], 3);
    ok(&server, &["sinks", "delete", "bloomy", "--force"]);
    let e = fails(&server, &["streams", "create", "bad name"], 2);
    assert!(e.contains("names use letters"), "{e}");
    let e = fails(
        &server,
        &["sinks", "create", "s3", "--compression", "brotli"],
        2,
    );
    assert!(e.contains("brotli"), "{e}");
    let e = fails(&server, &["sinks", "delete", "api_sink", "--force"], 4);
    assert!(e.contains("delete the pipeline first"), "{e}");
    // Without a terminal, a delete needs --force; a stream read by a
    // pipeline needs it even on a terminal.
    let e = fails(&server, &["pipelines", "delete", "api_pipeline"], 4);
    assert!(e.contains("--force"), "{e}");
    let e = fails(&server, &["streams", "delete", "api_stream"], 4);
    assert!(e.contains("api_pipeline read it"), "{e}");
    // Nothing the errors touched changed.
    assert_eq!(
        names(
            &json_of(&ok(&server, &["streams", "list", "--json"])),
            "streams",
            "stream"
        ),
        ["api_stream", "ecommerce_stream"]
    );
    server.stop();

    // Persistence: after a restart everything made with the CLI is back,
    // and the pipeline goes on from its last commit.
    let stored = std::fs::read_to_string(dir.path().join("data/definitions.toml")).unwrap();
    assert!(stored.contains("[pipelines.api_pipeline]"), "{stored}");
    let server = Server::start(&config).await;
    let streams = json_of(&ok(&server, &["streams", "list", "--json"]));
    assert_eq!(
        names(&streams, "streams", "stream"),
        ["api_stream", "ecommerce_stream"]
    );
    assert_eq!(
        json_of(&ok(&server, &["sinks", "get", "api_sink", "--json"]))["origin"],
        "api"
    );
    let (status, _) = server
        .post_json("api_stream", &getting_started_events())
        .await;
    assert_eq!(status, 200);
    assert_eq!(server.flush("api_pipeline")["rows"], 1);
    assert_eq!(count(&config, "shop.big_orders"), 2);

    // Delete: events not yet committed need --force on the stream; the
    // pipeline commits what it read before it goes.
    let (status, _) = server
        .post_json("api_stream", &getting_started_events())
        .await;
    assert_eq!(status, 200);
    let deleted = json_of(&ok(
        &server,
        &["pipelines", "delete", "api_pipeline", "--force", "--json"],
    ));
    assert_eq!(deleted["deleted"], "api_pipeline");
    assert_eq!(
        count(&config, "shop.big_orders"),
        3,
        "committed before it went"
    );
    ok(&server, &["sinks", "delete", "api_sink", "--force"]);
    let (status, _) = server
        .post_json("api_stream", &getting_started_events())
        .await;
    assert_eq!(status, 200);
    let e = fails(&server, &["streams", "delete", "api_stream"], 4);
    assert!(e.contains("not committed by any pipeline"), "{e}");
    let out = ok(&server, &["streams", "delete", "api_stream", "--force"]);
    assert!(out.contains("Deleted stream 'api_stream'."), "{out}");
    let (status, body) = server
        .post_json("api_stream", &getting_started_events())
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(!dir.path().join("data/buffer/api_stream").exists());
    let metrics = server.metrics().await;
    assert!(
        !metrics
            .keys()
            .any(|k| k.contains("api_stream") || k.contains("api_pipeline")),
        "{metrics:?}"
    );
    // The file's pipeline was never disturbed.
    let (status, _) = server
        .post_json("ecommerce_stream", &getting_started_events())
        .await;
    assert_eq!(status, 200);
    server.flush("ecommerce");
    assert_eq!(count(&config, "default.ecommerce"), 3);
    server.stop();

    let server = Server::start(&config).await;
    let streams = json_of(&ok(&server, &["streams", "list", "--json"]));
    assert_eq!(names(&streams, "streams", "stream"), ["ecommerce_stream"]);
    assert_eq!(
        json_of(&ok(&server, &["sinks", "list", "--json"]))["sinks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The table the deleted sink wrote stays, and holds each row once.
    assert_eq!(count(&config, "shop.big_orders"), 3);
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_asks_and_creates_a_working_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipe.toml");
    std::fs::write(&config, "data_dir = \"data\"\n").unwrap();
    std::fs::write(dir.path().join("schema.json"), SCHEMA).unwrap();
    let server = Server::start(&config).await;
    let answers = format!(
        "orders\n\n\nn\n\n{}\n\n\n\norders_table\n\n\n1\n\n",
        dir.path().join("schema.json").display()
    );
    let out = run_with_stdin(
        Command::new(env!("CARGO_BIN_EXE_pipe")).args(["setup", "--server", &server.url]),
        answers.as_bytes(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "Created stream 'orders_stream'.",
        "Created sink 'orders_sink'.",
        "Created pipeline 'orders'.",
        &format!("Endpoint: {}/v1/streams/orders_stream", server.url),
        "│ event_type │ string  │            │ Yes      │",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in\n{stdout}");
    }
    let (status, body) = server
        .post_json("orders_stream", &getting_started_events())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.flush("orders")["rows"], 3);
    assert_eq!(count(&config, "default.orders_table"), 3);

    // A failed step leaves nothing behind: the sink's table is taken.
    let answers = "again\n\n\nn\n\n\n\n\n\norders_table\n\n\n\n\n";
    let out = run_with_stdin(
        Command::new(env!("CARGO_BIN_EXE_pipe")).args(["setup", "--server", &server.url]),
        answers.as_bytes(),
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let streams = json_of(&ok(&server, &["streams", "list", "--json"]));
    assert_eq!(names(&streams, "streams", "stream"), ["orders_stream"]);
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_token_guards_the_admin_api_but_not_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 1, "");
    let digest = hex_digest("s3cret");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}\n[admin]\nauth_token_sha256 = [\"{digest}\"]\n"),
    )
    .unwrap();
    let server = Server::start(&config).await;

    let e = fails(&server, &["streams", "list"], 6);
    assert!(e.contains("unauthorized"), "{e}");
    fails(
        &server,
        &["pipelines", "get", "ecommerce", "--admin-token", "wrong"],
        6,
    );
    let status = reqwest::get(format!("{}/v1/streams/ecommerce_stream", server.url))
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
    let list = ok(
        &server,
        &["streams", "list", "--admin-token", "s3cret", "--json"],
    );
    assert_eq!(
        names(&json_of(&list), "streams", "stream"),
        ["ecommerce_stream"]
    );
    // Events need no admin token (the stream has no token of its own).
    let (status, body) = server
        .post_json("ecommerce_stream", &getting_started_events())
        .await;
    assert_eq!(status, 200, "{body}");
    server.stop();
}

/// A client that hangs up right after sending `DELETE /v1/pipelines/p`
/// (hyper then drops its handler): the delete still runs to its end, the
/// pipeline's events committed and the pipeline gone from the running set
/// and from the definitions alike, never half-way.
#[tokio::test(flavor = "multi_thread")]
async fn an_admin_change_whose_client_hangs_up_runs_to_its_end() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let config = write_stream_config(dir.path(), "", "");
    let server = Server::start(&config).await;
    ok(
        &server,
        &[
            "sinks",
            "create",
            "out",
            "--table",
            "out",
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
            "INSERT INTO out SELECT * FROM ecommerce_stream",
        ],
    );
    for _ in 0..20 {
        let (status, body) = server
            .post_json("ecommerce_stream", &getting_started_events())
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let addr = server.url.trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"DELETE /v1/pipelines/p HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    // Gone while the delete waits for the pipeline's last commit.
    std::thread::sleep(std::time::Duration::from_millis(30));
    drop(s);
    let definitions = dir.path().join("data/definitions.toml");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let running = reqwest::get(format!("{}/v1/pipelines/p", server.url))
            .await
            .unwrap()
            .status();
        let defined = std::fs::read_to_string(&definitions)
            .unwrap()
            .contains("[pipelines.p]");
        if running == 404 && !defined {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "half-way: running {running}, still defined {defined}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server.stop();
    assert_eq!(count(&config, "default.out"), 60);
}
