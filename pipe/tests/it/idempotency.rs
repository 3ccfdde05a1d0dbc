//! The same request sent again with the same `Idempotency-Key` lands once:
//! right away, after a restart, and after its buffer segment was released.

use serde_json::{json, Value};

use crate::harness::*;

async fn post_with_key(server: &Server, key: &str, body: &Value) -> (u16, Value, bool) {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/streams/ecommerce_stream", server.url))
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let replayed = r.headers().get("idempotent-replayed").is_some();
    (r.status().as_u16(), r.json().await.unwrap(), replayed)
}

#[tokio::test(flavor = "multi_thread")]
async fn retried_requests_land_once() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments, so that the keyed request's segment is released.
    let config = write_config_with(dir.path(), 3600, "", "buffer_segment_mb = 1");
    let events = getting_started_events();

    let server = Server::start(&config).await;
    assert_eq!(
        post_with_key(&server, "order-1", &events).await,
        (200, json!({"accepted": 3}), false)
    );
    for _ in 0..2 {
        assert_eq!(
            post_with_key(&server, "order-1", &events).await,
            (200, json!({"accepted": 3}), true)
        );
    }
    // Bad keys are refused.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/streams/ecommerce_stream", server.url))
        .header("idempotency-key", "x".repeat(300))
        .json(&events)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // A failed request releases its key: the corrected retry goes through.
    let (status, _, _) = post_with_key(&server, "order-2", &json!([{"event_type": "x"}])).await;
    assert_eq!(status, 400);
    let fixed = json!([{"user_id": "u2", "event_type": "x"}]);
    assert_eq!(
        post_with_key(&server, "order-2", &fixed).await,
        (200, json!({"accepted": 1}), false)
    );

    // Restart: the keys are rebuilt from the buffer.
    server.stop();
    let server = Server::start(&config).await;
    assert_eq!(
        post_with_key(&server, "order-1", &events).await,
        (200, json!({"accepted": 3}), true)
    );

    // Push past a segment, commit (which releases the keyed segments), restart.
    let filler: Vec<Value> = (0..2000)
        .map(|i| json!({"user_id": format!("filler-{i:05}"), "event_type": "padding-padding-padding-padding", "product_id": "p".repeat(1000)}))
        .collect();
    server.post_chunks("ecommerce_stream", &filler, 500).await;
    server.flush("ecommerce");
    let segments = std::fs::read_dir(dir.path().join("data/buffer/ecommerce_stream"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".seg")
        })
        .count();
    assert_eq!(segments, 1, "committed segments are released");
    assert!(dir
        .path()
        .join("data/buffer/ecommerce_stream/keys.log")
        .exists());
    server.stop();
    let server = Server::start(&config).await;
    assert_eq!(
        post_with_key(&server, "order-1", &events).await,
        (200, json!({"accepted": 3}), true)
    );
    assert_eq!(
        post_with_key(&server, "order-2", &fixed).await,
        (200, json!({"accepted": 1}), true)
    );
    server.flush("ecommerce");
    server.stop();

    let counts = query(
        &config,
        "SELECT count(*) FILTER (WHERE user_id NOT LIKE 'filler-%') AS keyed FROM default.ecommerce",
    );
    assert_eq!(
        counts,
        vec![json!({"keyed": 4})],
        "three events of order-1 and one of order-2, once each"
    );
}

/// A client that sends a whole body with a key and hangs up before the
/// answer (a client timeout, a killed process) must not leave the key
/// "being processed": the request runs to its end without it, and the
/// retry gets that answer. Its events land once.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_hangs_up_leaves_no_key_stuck() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let server = Server::start(&config).await;
    // Big enough that decoding it takes longer than noticing the hang-up.
    let events = 20_000;
    let body: String = (0..events)
        .map(|i| format!("{{\"user_id\":\"u{i}\",\"event_type\":\"view_product\",\"product_id\":\"p-{i:08}\"}}\n"))
        .collect();
    let addr = server.url.trim_start_matches("http://").to_string();
    let keys: Vec<String> = (0..4).map(|i| format!("hangup-{i}")).collect();
    for key in &keys {
        let mut socket = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            socket,
            "POST /v1/streams/ecommerce_stream HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-ndjson\r\nidempotency-key: {key}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        socket.shutdown(std::net::Shutdown::Both).unwrap();
    }
    let client = reqwest::Client::new();
    for key in &keys {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let sent = client
                .post(format!("{}/v1/streams/ecommerce_stream", server.url))
                .header("content-type", "application/x-ndjson")
                .header("idempotency-key", key)
                .body(body.clone())
                .send()
                .await;
            // A connection that breaks is retried, as a client would.
            let Ok(r) = sent else {
                assert!(std::time::Instant::now() < deadline, "{sent:?}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let status = r.status().as_u16();
            if status == 200 {
                assert_eq!(r.json::<Value>().await.unwrap()["accepted"], events);
                break;
            }
            assert_eq!(status, 409, "{}", r.text().await.unwrap());
            assert!(
                std::time::Instant::now() < deadline,
                "key `{key}` is still `being processed` 10 s after its client hung up"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    server.flush("ecommerce");
    server.stop();
    assert_eq!(
        query(
            &config,
            "SELECT count(*) AS n, count(DISTINCT user_id) AS users FROM default.ecommerce"
        ),
        vec![json!({"n": events * keys.len(), "users": events})],
        "each key's events once"
    );
}

/// A retry is answered from its key before its body is needed, but only
/// once the body has arrived: answered early, a client still sending a
/// large body saw the connection close (a broken pipe) instead of the
/// replay (found by the hostile review).
#[tokio::test(flavor = "multi_thread")]
async fn a_large_retry_gets_its_replay() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let server = Server::start(&config).await;
    let body: String = (0..40_000)
        .map(|i| format!("{{\"user_id\":\"u{i}\",\"event_type\":\"view_product\",\"product_id\":\"p-{i:08}\"}}\n"))
        .collect();
    // Sent in pieces, as a slow link would: the answer can come before
    // the end of the body.
    let send = || {
        let pieces: Vec<Vec<u8>> = body
            .as_bytes()
            .chunks(64 * 1024)
            .map(<[u8]>::to_vec)
            .collect();
        let stream = futures::stream::iter(pieces).then(|piece| async move {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            Ok::<_, std::io::Error>(piece)
        });
        reqwest::Client::new()
            .post(format!("{}/v1/streams/ecommerce_stream", server.url))
            .header("content-type", "application/x-ndjson")
            .header("idempotency-key", "large")
            .header("content-length", body.len())
            .body(reqwest::Body::wrap_stream(stream))
            .send()
    };
    assert_eq!(send().await.unwrap().status(), 200);
    for _ in 0..5 {
        let r = send().await.expect("the replay, not a closed connection");
        assert_eq!(r.status(), 200);
        assert!(r.headers().contains_key("idempotent-replayed"));
    }
    server.stop();
}
