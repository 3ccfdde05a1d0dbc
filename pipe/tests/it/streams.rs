//! Per-stream policies through the real binary: bearer tokens, CORS, body
//! and event limits, gzip, HTTP switched off, unknown-field policies.

use std::io::Write;

use serde_json::{json, Value};

use crate::harness::*;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_policies() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("schema.json"), SCHEMA).unwrap();
    let digest = hex_digest("s3cret");
    assert_eq!(digest.len(), 64);
    let config = dir.path().join("pipe.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "data"
[streams.secure]
schema_file = "schema.json"
auth_token_sha256 = ["{digest}"]
cors_origins = ["https://app.example"]
max_request_bytes = 2000
max_decompressed_bytes = 4000
max_events_per_request = 5

[streams.loose]
schema_file = "schema.json"
unknown_fields = "keep"

[streams.dropping]
schema_file = "schema.json"
unknown_fields = "drop"

[streams.internal]
schema_file = "schema.json"
http = false

[sinks.loose_sink]
table = "loose"
roll_interval_secs = 3600

[pipelines.loose_p]
sql = "INSERT INTO loose_sink SELECT * FROM loose"
"#
        ),
    )
    .unwrap();
    let server = Server::start(&config).await;
    let client = reqwest::Client::new();
    let secure = format!("{}/v1/streams/secure", server.url);
    let event = json!({"user_id": "u", "event_type": "e"}).to_string();

    // Bearer tokens: none or wrong → 401 without detail; right → 200.
    let r = client
        .post(&secure)
        .body(event.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = client
        .post(&secure)
        .bearer_auth("wrong")
        .body(event.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"]["message"],
        "unauthorized"
    );
    let r = client
        .post(&secure)
        .bearer_auth("s3cret")
        .body(event.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // CORS preflight from an allowed origin, and not from another.
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, &secure)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,authorization",
            )
            .send()
    };
    let r = preflight("https://app.example").await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let r = preflight("https://evil.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    // Limits: body, decompressed body, events per request → 413 naming the limit.
    let big = format!("[{}]", vec![event.as_str(); 80].join(","));
    assert!(big.len() > 2000);
    let inflating = format!("[{}]", vec![event.as_str(); 200].join(","));
    assert!(inflating.len() > 4000 && gzip(inflating.as_bytes()).len() < 2000);
    let r = client
        .post(&secure)
        .bearer_auth("s3cret")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit of 2000 bytes"),
        "{body}"
    );
    let r = client
        .post(&secure)
        .bearer_auth("s3cret")
        .header("content-encoding", "gzip")
        .body(gzip(inflating.as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        413,
        "a small gzip body that inflates past the limit"
    );
    let six = format!("[{}]", [event.as_str(); 6].join(","));
    let r = client
        .post(&secure)
        .bearer_auth("s3cret")
        .body(six)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("the limit is 5 per request"));

    // gzip within the limits is accepted; broken gzip is a 400.
    let three = format!("[{}]", [event.as_str(); 3].join(","));
    let r = client
        .post(&secure)
        .bearer_auth("s3cret")
        .header("content-encoding", "gzip")
        .body(gzip(three.as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        json!({"accepted": 3})
    );
    let r = client
        .post(&secure)
        .bearer_auth("s3cret")
        .header("content-encoding", "gzip")
        .body("not gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // A body of two gzip members (`cat a.gz b.gz`) is read whole; bytes
    // after the last member refuse it rather than drop what they hold.
    // (Content codings are case-insensitive.)
    let two = format!("{event}\n{event}\n");
    let mut members = gzip(two.as_bytes());
    members.extend(gzip(two.as_bytes()));
    let r = client
        .post(&secure)
        .bearer_auth("s3cret")
        .header("content-encoding", "GZip")
        .header("content-type", "application/x-ndjson")
        .body(members.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        json!({"accepted": 4})
    );
    members.extend_from_slice(b"trailing garbage");
    let r = client
        .post(&secure)
        .bearer_auth("s3cret")
        .header("content-encoding", "gzip")
        .header("content-type", "application/x-ndjson")
        .body(members)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("does not decompress"));

    // HTTP switched off for a stream.
    let (status, body) = server
        .post_json("internal", &json!({"user_id": "u", "event_type": "e"}))
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        body["error"]["message"],
        "stream `internal` does not take events over HTTP"
    );

    // Unknown fields: dropped and counted, or kept in `_extra` and queryable.
    let odd = json!([{"user_id": "u", "event_type": "e", "color": "red"}]);
    assert_eq!(
        server.post_json("dropping", &odd).await,
        (200, json!({"accepted": 1, "dropped_fields": 1}))
    );
    assert_eq!(
        server.post_json("loose", &odd).await,
        (200, json!({"accepted": 1}))
    );
    server.flush("loose_p");
    assert_eq!(
        query(&config, "SELECT user_id, _extra FROM default.loose"),
        vec![json!({"user_id": "u", "_extra": "{\"color\":\"red\"}"})]
    );
    server.stop();
}

/// Many gzip bodies at once: what they hold in memory (as sent and
/// inflated) is bounded by the stream's `max_inflight_mb`, whatever their
/// number. Past it a request gets 503 at once and nothing of it is kept;
/// the ones taken are stored, and sent again one by one the others are too.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_gzip_bodies_stay_within_the_inflight_budget() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config_with(
        dir.path(),
        3600,
        "",
        "max_request_bytes = 100000\nmax_decompressed_bytes = 1000000\nmax_inflight_mb = 2",
    );
    let server = Server::start(&config).await;
    let url = format!("{}/v1/streams/ecommerce_stream", server.url);
    // Each inflates to ~900 KB: two fit in the budget at once.
    let body = |n: usize| {
        let events: Vec<serde_json::Value> = (0..40)
            .map(|i| json!({"user_id": format!("b{n}-{i}"), "event_type": "x", "product_id": "p".repeat(22_000)}))
            .collect();
        gzip(serde_json::to_string(&events).unwrap().as_bytes())
    };
    let client = reqwest::Client::new();
    let send = |n: usize| {
        let client = client.clone();
        let url = url.clone();
        let body = body(n);
        async move {
            let r = client
                .post(&url)
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .body(body)
                .send()
                .await
                .unwrap();
            (n, r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let answers = futures::future::join_all((0..24).map(send)).await;
    let mut refused = Vec::new();
    let mut stored = 0;
    for (n, status, text) in answers {
        match status {
            200 => stored += 40,
            503 => {
                assert!(text.contains("max_inflight_mb"), "{text}");
                refused.push(n);
            }
            other => panic!("{other}: {text}"),
        }
    }
    assert!(
        !refused.is_empty(),
        "24 bodies of ~900 KB fit in 2 MiB at once"
    );
    for n in refused {
        let (_, status, text) = send(n).await;
        assert_eq!(status, 200, "{text}");
        stored += 40;
    }
    server.flush("ecommerce");
    server.stop();
    let rows = query(
        &config,
        "SELECT count(*) AS n, count(DISTINCT user_id) AS ids FROM default.ecommerce",
    );
    assert_eq!(rows, vec![json!({"n": stored, "ids": stored})]);
    assert_eq!(stored, 24 * 40);
}

/// A body trickled a byte at a time is cut at `body_timeout_secs` from its
/// start: the timeout is for the whole body, not for each piece (which a
/// client sending a byte now and then would never reach), so slow clients
/// cannot hold the stream's in-flight budget for ever.
#[tokio::test(flavor = "multi_thread")]
async fn a_trickled_body_is_cut_at_the_body_timeout() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "body_timeout_secs = 2");
    let server = Server::start(&config).await;
    let addr = server.url.trim_start_matches("http://").to_string();
    let started = std::time::Instant::now();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(
        b"POST /v1/streams/ecommerce_stream HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n[",
    )
    .unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_millis(400)))
        .unwrap();
    let mut answer = Vec::new();
    while started.elapsed() < std::time::Duration::from_secs(20) {
        let _ = s.write_all(b" ");
        let mut buf = [0u8; 1024];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                break;
            }
            Err(_) => {}
        }
    }
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    server.stop();
}

/// `POST /v1/streams/{stream}` with `events`, bearer `token` if any; the
/// status.
async fn post_as(server: &Server, stream: &str, token: Option<&str>, events: &Value) -> u16 {
    let mut request = reqwest::Client::new()
        .post(format!("{}/v1/streams/{stream}", server.url))
        .json(events);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    request.send().await.unwrap().status().as_u16()
}

/// A stream's tokens, origins and limits change in place (`pipe streams
/// update`): the next request is handled with them, the pipeline reading
/// it goes on, what its buffer fixed is refused, and a restart keeps them.
#[tokio::test(flavor = "multi_thread")]
async fn a_streams_settings_change_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 1, "");
    let server = Server::start(&config).await;
    let schema = dir.path().join("schema.json");
    let (a, b) = (hex_digest("token-a"), hex_digest("token-b"));
    crate::manage::ok(
        &server,
        &[
            "streams",
            "create",
            "s",
            "--schema-file",
            schema.to_str().unwrap(),
            "--auth-token-sha256",
            &a,
        ],
    );
    crate::manage::ok(&server, &["sinks", "create", "t", "--table", "t"]);
    crate::manage::ok(
        &server,
        &[
            "pipelines",
            "create",
            "p",
            "--sql",
            "INSERT INTO t SELECT * FROM s",
        ],
    );
    let one = |i: usize| json!([{"user_id": format!("u{i}"), "event_type": "view"}]);
    assert_eq!(post_as(&server, "s", Some("token-a"), &one(0)).await, 200);
    assert_eq!(post_as(&server, "s", Some("token-b"), &one(1)).await, 401);

    // A dry run says what would change and changes nothing.
    let dry = crate::manage::ok(
        &server,
        &[
            "streams",
            "update",
            "s",
            "--auth-token-sha256",
            &b,
            "--dry-run",
        ],
    );
    assert!(
        dry.contains("Dry run") && dry.contains("auth_token_sha256"),
        "{dry}"
    );
    assert_eq!(post_as(&server, "s", Some("token-a"), &one(2)).await, 200);

    let changed = crate::manage::ok(
        &server,
        &[
            "streams",
            "update",
            "s",
            "--auth-token-sha256",
            &b,
            "--cors-origin",
            "https://app.example",
            "--set",
            "max_events_per_request=2",
        ],
    );
    assert!(
        changed.contains("auth_token_sha256, cors_origins, max_events_per_request"),
        "{changed}"
    );
    assert_eq!(
        post_as(&server, "s", Some("token-a"), &one(3)).await,
        401,
        "the old token is refused"
    );
    assert_eq!(post_as(&server, "s", Some("token-b"), &one(4)).await, 200);
    let three = json!([one(5)[0], one(6)[0], one(7)[0]]);
    assert_eq!(
        post_as(&server, "s", Some("token-b"), &three).await,
        413,
        "the new limit"
    );
    let preflight = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/streams/s", server.url),
        )
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("https://app.example")
    );

    // What the buffer fixed when it opened is refused, and nothing changes.
    let refused = crate::manage::fails(
        &server,
        &[
            "streams",
            "update",
            "s",
            "--set",
            "max_buffer_mb=1000",
            "--set",
            "max_events_per_request=1000",
        ],
        2,
    );
    assert!(
        refused.contains("`max_buffer_mb`") && refused.contains("fixed"),
        "{refused}"
    );
    assert_eq!(post_as(&server, "s", Some("token-b"), &three).await, 413);
    let same = crate::manage::ok(
        &server,
        &[
            "streams",
            "update",
            "s",
            "--cors-origin",
            "https://app.example",
        ],
    );
    assert!(same.contains("nothing changed"), "{same}");

    // Open again: tokens off for everyone.
    crate::manage::ok(&server, &["streams", "update", "s", "--no-auth"]);
    assert_eq!(post_as(&server, "s", None, &one(8)).await, 200);
    assert_eq!(server.flush("p")["rows"], 4, "every accepted event once");
    server.stop();
    let server = Server::start(&config).await;
    assert_eq!(
        post_as(&server, "s", None, &three).await,
        413,
        "kept across a restart"
    );
    server.stop();
}

/// A stream keeps its last problems for its view, quoting a little of each
/// rejected event: a client sending huge keys cannot make the views, the
/// list every console polls, megabytes long.
#[tokio::test(flavor = "multi_thread")]
async fn rejected_events_are_kept_short_and_out_of_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let server = Server::start(&config).await;
    let key = "k".repeat(1 << 20);
    for _ in 0..5 {
        let mut event = getting_started_events()[0].clone();
        event[&key] = json!(1);
        let (status, _) = server.post_json("ecommerce_stream", &json!([event])).await;
        assert_eq!(status, 400);
    }
    let one = reqwest::get(format!("{}/v1/streams/ecommerce_stream", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(one.len() < 20_000, "{} bytes", one.len());
    let view: Value = serde_json::from_str(&one).unwrap();
    let kept = view["stats"]["recent_rejections"].as_array().unwrap();
    assert_eq!(kept.len(), 5, "{view}");
    assert_eq!(kept[0]["type"], "unknown_field", "{view}");
    assert!(kept[0]["field"].as_str().unwrap().ends_with("k…"), "{view}");
    let list = reqwest::get(format!("{}/v1/streams", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let list: Value = serde_json::from_str(&list).unwrap();
    let stats = &list["streams"][0]["stats"];
    assert_eq!(stats["decode_errors"], 5, "{list}");
    assert!(stats.get("recent_rejections").is_none(), "{list}");
    server.stop();
}
