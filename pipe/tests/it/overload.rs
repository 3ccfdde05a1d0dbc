//! Load beyond what the buffer may hold gets 503 + Retry-After, never an
//! OOM or a hang; once pipelines commit, space comes back, and everything
//! acknowledged is in the table.

use serde_json::{json, Value};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_full_buffer_answers_503_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config_with(
        dir.path(),
        3600,
        "",
        "buffer_segment_mb = 1
max_buffer_mb = 2",
    );
    let server = Server::start(&config).await;

    let mut next = 0usize;
    let mut batch = || {
        let events: Vec<Value> = (next..next + 400)
            .map(|i| json!({"user_id": format!("u{i:07}"), "event_type": "load", "product_id": "x".repeat(500)}))
            .collect();
        next += 400;
        Value::Array(events)
    };
    let client = reqwest::Client::new();
    let url = format!("{}/v1/streams/ecommerce_stream", server.url);
    let mut acked = 0u64;
    let mut refused = None;
    for _ in 0..50 {
        let r = client.post(&url).json(&batch()).send().await.unwrap();
        if r.status() == 200 {
            acked += 400;
            continue;
        }
        refused = Some((
            r.status().as_u16(),
            r.headers().get("retry-after").cloned(),
            r.text().await.unwrap(),
        ));
        break;
    }
    let (status, retry_after, body) = refused.expect("a 2 MiB buffer cannot take 50 × 200 KiB");
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry_after.unwrap(), "1");
    assert!(body.contains("buffer is full"), "{body}");
    assert!(acked > 0);

    // The pipeline commits, whole segments are released, and ingest resumes.
    server.flush("ecommerce");
    let r = client.post(&url).json(&batch()).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    acked += 400;
    server.flush("ecommerce");
    server.stop();
    assert_eq!(
        query(&config, "SELECT count(*) AS n FROM default.ecommerce"),
        vec![json!({"n": acked})]
    );
}
