//! SIGKILL the server while a client is posting and after some commits
//! (at times no code chooses), and at each point of the commit protocol;
//! restart; every event that got a 200 is in the table exactly once, and
//! no data file is left that the table does not reference.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

/// Posts batches of unique events until `stop`; returns the acknowledged ids.
async fn post_until(
    url: String,
    stop: Arc<AtomicBool>,
    start: usize,
    acked: Arc<Mutex<Vec<String>>>,
) {
    let client = reqwest::Client::new();
    let mut next = start;
    while !stop.load(Ordering::Relaxed) {
        let ids: Vec<String> = (next..next + 20).map(|i| format!("id-{i:08}")).collect();
        next += 20;
        let body: Vec<Value> = ids
            .iter()
            .map(|id| json!({"user_id": id, "event_type": "crash_test", "amount": 1.0}))
            .collect();
        let sent = client
            .post(format!("{url}/v1/streams/ecommerce_stream"))
            .json(&body)
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        match sent {
            Ok(r) if r.status() == 200 => acked.lock().unwrap().extend(ids),
            // The server died mid-request: these were not acknowledged.
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_stream_loses_and_duplicates_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::s3(&s3_endpoint(), &format!("sigkill-{}", std::process::id())).await;
    // Roll every second so commits happen while the client posts.
    let config = write_config(dir.path(), 1, &store.toml());
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut start = 0;
    for round in 0..5 {
        let server = Server::start(&config).await;
        let stop = Arc::new(AtomicBool::new(false));
        let client = tokio::spawn(post_until(
            server.url.clone(),
            stop.clone(),
            start,
            acked.clone(),
        ));
        // Long enough for a few rolls and commits, then kill mid-stream.
        tokio::time::sleep(Duration::from_millis(2000 + 370 * round)).await;
        server.kill();
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, Ordering::Relaxed);
        client.await.unwrap();
        start += 1_000_000;
    }
    // Restart, commit what the buffer still holds, and count.
    let server = Server::start(&config).await;
    server.flush("ecommerce");
    server.stop();

    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert!(
        acked.len() > 200,
        "the client should have been acknowledged many events, got {}",
        acked.len()
    );
    assert_exactly_once(dir.path(), &store, &acked);
    eprintln!(
        "SIGKILL under load on S3, 5 kills: {} acknowledged, each stored once, no orphan files",
        acked.len()
    );
}

/// The crash matrix: the process dies at each point of the commit protocol
/// (before data files are written, after they are closed, right after the
/// catalog took the commit but before the answer, after the commit before
/// the buffer is released), on the first and on a later roll, 20 trials on
/// one table in a bucket of the S3 server. Every acknowledged event is there
/// once at the end, as `pipe query` and PyIceberg both count, and no data
/// file a crash left uncommitted is still on S3.
#[tokio::test(flavor = "multi_thread")]
async fn crash_at_every_protocol_point_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = format!("crash-matrix-{}", std::process::id());
    let store = Store::s3(&s3_endpoint(), &bucket).await;
    let config = write_config(dir.path(), 3600, &store.toml());
    let points = [
        pipe::crash::BEFORE_WRITE,
        pipe::crash::AFTER_FILES,
        pipe::crash::AFTER_COMMIT,
        pipe::crash::BEFORE_RELEASE,
    ];
    let (acked, crashed) = crash_trials(&config, &points, &["ecommerce"], 20).await;
    assert!(
        crashed >= 16,
        "most trials reach their crash point, {crashed} did"
    );

    let server = Server::start(&config).await;
    server.flush("ecommerce");
    server.stop();
    assert_exactly_once(dir.path(), &store, &acked);
    eprintln!(
        "crash matrix on S3: 20 trials, {crashed} ended at their crash point, {} events acknowledged, each stored once",
        acked.len()
    );
}

/// A commit whose answer is lost (the catalog took it, the committer hears
/// an error) is found again by its commit id, not made twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_commit_answer_is_not_committed_twice() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let server =
        Server::start_with_env(&config, &[("PIPE_FAULT", pipe::crash::LOSE_COMMIT_ANSWER)]).await;
    let acked: HashSet<String> = post_some(&server, 0, 4).await.into_iter().collect();
    assert_eq!(acked.len(), 100);
    assert_eq!(server.flush("ecommerce")["rows"], 100);
    let log = server.log_text();
    server.stop();
    assert!(log.contains("answer was lost"), "{log}");
    assert!(log.contains("re-checking the table"), "{log}");
    assert_exactly_once(dir.path(), &Store::local(dir.path()), &acked);
    let rows = query(&config, "SELECT count(*) AS n FROM default.ecommerce");
    assert_eq!(rows, vec![json!({"n": 100})]);
}
