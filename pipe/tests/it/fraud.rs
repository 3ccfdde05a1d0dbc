//! The R2 SQL fraud-detection tutorial (`examples/fraud`), end to end with
//! the tutorial's names: its generator posts to `raw_events_stream`, two
//! pipelines fill `fraud_detection.transactions` (everything) and
//! `fraud_detection.fraud_transactions` (`is_fraud = true AND amount >
//! 1000`), and both tables are checked against what was sent.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn fraud_tutorial_fills_both_tables() {
    let example = repo_path("examples/fraud");
    let dir = tempfile::tempdir().unwrap();
    for file in ["pipe.toml", "raw_transactions_schema.json"] {
        std::fs::copy(example.join(file), dir.path().join(file)).unwrap();
    }
    let config = dir.path().join("pipe.toml");
    let server = Server::start(&config).await;

    let saved = dir.path().join("sent.ndjson");
    let out = std::process::Command::new(python())
        .arg(example.join("fraud_data_generator.py"))
        .args(["--events", "3000", "--seed", "42", "--endpoint"])
        .arg(format!("{}/v1/streams/raw_events_stream", server.url))
        .arg("--save")
        .arg(&saved)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "generator: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: Vec<Value> = std::fs::read_to_string(&saved)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(sent.len(), 3000);
    let flagged: BTreeSet<String> = sent
        .iter()
        .filter(|e| e["is_fraud"] == true && e["amount"].as_f64().unwrap() > 1000.0)
        .map(|e| e["transaction_id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !flagged.is_empty(),
        "the seed yields some flagged transactions"
    );

    assert_eq!(server.flush("raw_events_pipeline")["rows"], 3000);
    assert_eq!(
        server.flush("fraud_events_pipeline")["rows"].as_u64(),
        Some(flagged.len() as u64)
    );
    server.stop();

    let all = query(
        &config,
        "SELECT count(*) AS n, count(DISTINCT transaction_id) AS ids, sum(CASE WHEN is_fraud THEN 1 ELSE 0 END) AS fraud \
         FROM fraud_detection.transactions",
    );
    let fraud = sent.iter().filter(|e| e["is_fraud"] == true).count();
    assert_eq!(all, vec![json!({"n": 3000, "ids": 3000, "fraud": fraud})]);

    let rows = query(
        &config,
        "SELECT transaction_id, user_id, amount, location, merchant_category, is_fraud, transaction_timestamp \
         FROM fraud_detection.fraud_transactions",
    );
    let got: BTreeSet<String> = rows
        .iter()
        .map(|r| r["transaction_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got.len(), rows.len(), "no duplicates");
    assert_eq!(got, flagged, "exactly the flagged transactions over 1,000");
    // The tutorial's last check: no non-fraudulent events got through.
    let leaked = query(
        &config,
        "SELECT transaction_id FROM fraud_detection.fraud_transactions WHERE is_fraud = false",
    );
    assert!(leaked.is_empty(), "{leaked:?}");
}
