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
