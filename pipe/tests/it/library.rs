//! The library: a batch job loading the same batch twice adds it once, bad
//! events stop a batch with every problem named, rows the SQL fails on are
//! reported; `pipe::Client` sends to a running server.

use serde_json::json;

use pipe::batch::{query, BatchJob, BatchJobOptions};
use pipe::schemas::StreamSchema;
use pipe::sink::CatalogSettings;

use crate::harness::*;

async fn job(dir: &std::path::Path) -> BatchJob {
    BatchJob::new(BatchJobOptions {
        name: "loader".into(),
        catalog: CatalogSettings::local(dir),
        schema: Some(StreamSchema::from_json(SCHEMA).unwrap()),
        sql: "INSERT INTO ecommerce SELECT user_id, event_type, CAST(product_id AS INT) AS product, amount FROM events".into(),
        namespace: "default".into(),
        table: "ecommerce".into(),
        write: Default::default(),
    })
    .await
    .unwrap()
}

fn count(rows: &[arrow::record_batch::RecordBatch]) -> i64 {
    rows[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap()
        .value(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_job_run_twice_adds_each_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<_> = (0..3)
        .map(|f| {
            let path = dir.path().join(format!("part-{f}.ndjson"));
            let text: String = (0..100)
                .map(|i| {
                    let id = f * 100 + i;
                    format!("{}\n", json!({"user_id": format!("u{id}"), "event_type": "view", "product_id": id.to_string(), "amount": 1.5}))
                })
                .collect();
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect();
    let job = job(&dir.path().join("data")).await;
    let first = job.run_ndjson_files(1, &files).await.unwrap();
    assert_eq!(
        (first.events, first.rows, first.already_committed),
        (300, 300, false)
    );
    // The same batch again, in this job and in a new one (a re-run).
    let again = job.run_ndjson_files(1, &files).await.unwrap();
    assert_eq!((again.rows, again.already_committed), (0, true));
    let rerun = self::job(&dir.path().join("data")).await;
    assert!(
        rerun
            .run_ndjson_files(1, &files)
            .await
            .unwrap()
            .already_committed
    );
    // The next batch: values, one of which the SQL fails on.
    let next = rerun
        .run_values(
            2,
            &[
                json!({"user_id": "v1", "event_type": "buy", "product_id": "7"}),
                json!({"user_id": "v2", "event_type": "buy", "product_id": "seven"}),
            ],
        )
        .await
        .unwrap();
    assert_eq!(next.rows, 1);
    assert_eq!(next.failed.len(), 1, "{:?}", next.failed);
    assert!(next.failed[0].event.contains("seven"), "{:?}", next.failed);
    // Bad events stop a batch before anything is written.
    let bad = rerun
        .run_values(
            3,
            &[
                json!({"event_type": "buy"}),
                json!({"user_id": 5, "event_type": "x"}),
            ],
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(bad.contains("2 bad events, nothing loaded"), "{bad}");
    assert!(bad.contains("event 0 `user_id`"), "{bad}");

    let catalog = rerun.catalog();
    let rows = query(
        &catalog,
        "SELECT count(DISTINCT user_id) FROM default.ecommerce",
    )
    .await
    .unwrap();
    assert_eq!(count(&rows), 301);
    let rows = query(&catalog, "SELECT count(*) FROM default.ecommerce")
        .await
        .unwrap();
    assert_eq!(count(&rows), 301);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_sends_with_an_idempotency_key_and_names_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let server = Server::start(&config).await;
    let client = pipe::Client::new(&server.url);
    let events = getting_started_events();
    let sent = client
        .send("ecommerce_stream", events.as_array().unwrap())
        .await
        .unwrap();
    assert_eq!(
        sent,
        pipe::Sent {
            accepted: 3,
            quarantined: 0,
            replayed: false
        }
    );
    let refused = client
        .send("ecommerce_stream", &[json!({"event_type": "view"})])
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), pipe::ErrorKind::InvalidInput);
    assert!(refused.to_string().contains("record 0"), "{refused}");
    let unknown = client.send("nope", &[json!({})]).await.unwrap_err();
    assert_eq!(unknown.kind(), pipe::ErrorKind::NotFound, "{unknown}");
    assert_eq!(server.flush("ecommerce")["rows"], 3);
    server.stop();
}
