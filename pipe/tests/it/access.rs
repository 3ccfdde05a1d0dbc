//! Who may reach the admin and query APIs: a server other machines can
//! reach needs an admin token, and the query endpoint falls back to it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;

/// `pipe serve --listen 0.0.0.0:…` without a token stops at once (exit 2)
/// and says how to set one or where to listen instead.
#[test]
fn a_server_other_machines_reach_refuses_to_start_without_an_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", &format!("0.0.0.0:{port}")])
        .env_remove("PIPE_ADMIN_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("pipe serve started on 0.0.0.0 without an admin token");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for want in [
        format!("`0.0.0.0:{port}`"),
        "PIPE_ADMIN_TOKEN=<token> pipe serve".into(),
        "pipe hash-token".into(),
        "[admin] auth_token_sha256".into(),
        format!("--listen 127.0.0.1:{port}"),
    ] {
        assert!(stderr.contains(&want), "{want} in {stderr}");
    }
    assert!(
        !dir.path().join("data/catalog.db").exists(),
        "refused before anything was opened"
    );
}

/// POSTs `body` as JSON to `path` with `token`; the status and body.
async fn post(server: &Server, path: &str, body: &Value, token: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}{path}", server.url))
        .json(body)
        .timeout(Duration::from_secs(30));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// With `PIPE_ADMIN_TOKEN` the same server starts on 0.0.0.0; the admin
/// API and the query endpoint then need that token, ingest does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_admin_token_the_admin_and_query_apis_need_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let server = Server::start_on(&config, "0.0.0.0", &[("PIPE_ADMIN_TOKEN", "s3cret")]).await;
    let get = |token: Option<&'static str>| {
        let mut request = reqwest::Client::new().get(format!("{}/v1/streams", server.url));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get(None).await, 401);
    assert_eq!(get(Some("wrong")).await, 401);
    assert_eq!(get(Some("s3cret")).await, 200);
    let sink = json!({"name": "s", "table": "t"});
    assert_eq!(post(&server, "/v1/sinks", &sink, None).await.0, 401);
    assert_eq!(
        post(&server, "/v1/sinks", &sink, Some("s3cret")).await.0,
        201
    );

    let sql = json!({"sql": "SELECT 1 AS one"});
    assert_eq!(post(&server, "/v1/query", &sql, None).await.0, 401);
    let (status, body) = post(&server, "/v1/query", &sql, Some("s3cret")).await;
    assert_eq!(
        (status, &body["rows"]),
        (200, &json!([{"one": 1}])),
        "{body}"
    );

    let (status, body) = server
        .post_json("ecommerce_stream", &getting_started_events())
        .await;
    assert_eq!(status, 200, "events need no admin token: {body}");
    server.stop();
}

/// `[query] auth_token_sha256` of its own replaces the admin token there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_endpoint_keeps_its_own_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_stream_config(
        dir.path(),
        &format!(
            "[admin]\nauth_token_sha256 = [\"{}\"]\n[query]\nauth_token_sha256 = [\"{}\"]\n",
            hex_digest("admin-t"),
            hex_digest("query-t")
        ),
        "",
    );
    let server = Server::start_on(&config, "0.0.0.0", &[]).await;
    let sql = json!({"sql": "SELECT 1 AS one"});
    assert_eq!(post(&server, "/v1/query", &sql, None).await.0, 401);
    assert_eq!(
        post(&server, "/v1/query", &sql, Some("admin-t")).await.0,
        401
    );
    assert_eq!(
        post(&server, "/v1/query", &sql, Some("query-t")).await.0,
        200
    );
    server.stop();
}

/// On loopback nothing changes: no token, no auth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_loopback_the_apis_stay_open_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let server = Server::start(&config).await;
    let sql = json!({"sql": "SELECT 1 AS one"});
    assert_eq!(post(&server, "/v1/query", &sql, None).await.0, 200);
    let sink = json!({"name": "s", "table": "t"});
    assert_eq!(post(&server, "/v1/sinks", &sink, None).await.0, 201);
    // A page that pointed its own name at 127.0.0.1 (DNS rebinding) is
    // same-origin with the server, but its requests say its name.
    let rebound = |path: &str, body: &Value| {
        reqwest::Client::new()
            .post(format!("{}{path}", server.url))
            .header("host", "attacker.example:8080")
            .json(body)
            .send()
    };
    let r = rebound("/v1/query", &sql).await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("not localhost"));
    let other = json!({"name": "s2", "table": "t2"});
    assert_eq!(rebound("/v1/sinks", &other).await.unwrap().status(), 403);
    // Reads too: the listing, and the metrics and readiness that name
    // streams and pipelines and count their events.
    for path in ["/v1/streams", "/metrics", "/readyz"] {
        let r = reqwest::Client::new()
            .get(format!("{}{path}", server.url))
            .header("host", "attacker.example")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
        let r = reqwest::get(format!("{}{path}", server.url)).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    server.stop();
}

/// What a web page can make a browser send without a CORS preflight: a
/// `text/plain` or form body, or a `POST` with no type at all. The admin
/// and query APIs answer 415 and do nothing; JSON goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_and_query_apis_take_json_bodies_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let server = Server::start(&config).await;
    let client = reqwest::Client::new();
    let send = |path: &str, content_type: Option<&str>, body: &str| {
        let mut request = client
            .post(format!("{}{path}", server.url))
            .body(body.to_string());
        if let Some(t) = content_type {
            request = request.header("content-type", t);
        }
        async move {
            let r = request.send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let sink = r#"{"name": "s", "type": "json"}"#;
    for (path, body) in [
        ("/v1/sinks", sink),
        ("/v1/streams", r#"{"name": "x"}"#),
        ("/v1/pipelines", r#"{"name": "p", "sql": "x"}"#),
        ("/v1/query", r#"{"sql": "SELECT 1"}"#),
        ("/v1/pipelines/ecommerce/flush", ""),
    ] {
        for content_type in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            None,
        ] {
            let (status, answer) = send(path, content_type, body).await;
            assert_eq!(status, 415, "{path} {content_type:?}: {answer}");
            let message = answer["error"]["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("expected `Content-Type: application/json`"),
                "{answer}"
            );
        }
    }
    let sinks: Value = client
        .get(format!("{}/v1/sinks", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&Value> = sinks["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["sink"])
        .collect();
    assert_eq!(names, [&json!("ecommerce_sink")], "nothing was created");

    let json = Some("application/json; charset=utf-8");
    assert_eq!(send("/v1/sinks", json, sink).await.0, 201);
    assert_eq!(
        send("/v1/query", json, r#"{"sql": "SELECT 1"}"#).await.0,
        200
    );
    assert_eq!(send("/v1/pipelines/ecommerce/flush", json, "").await.0, 200);
    // Ingest is not an admin API: its content types are the stream's.
    let (status, body) = server
        .post(
            "ecommerce_stream",
            r#"{"user_id": "u", "event_type": "e"}"#,
            "text/plain",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The CLI sends JSON, a body-less flush included.
    assert_eq!(server.flush("ecommerce")["rows"], 1);
    server.stop();
}
