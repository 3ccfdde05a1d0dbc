//! A storage outage stops commits, loses nothing that was acknowledged, and
//! heals by itself: the S3 server (a private ministack) is killed while
//! events keep arriving, then started again on the same data; or it hangs
//! (stopped with SIGSTOP: connections accepted, nothing answered).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;

struct S3 {
    child: Child,
    port: u16,
    data: PathBuf,
}

impl S3 {
    fn start(port: u16, data: &Path) -> S3 {
        let bin = Path::new(&python()).with_file_name("ministack");
        let child = Command::new(bin)
            .env("BIND_HOST", "127.0.0.1")
            .env("GATEWAY_PORT", port.to_string())
            .env("S3_PERSIST", "1")
            .env("S3_DATA_DIR", data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting ministack");
        S3 {
            child,
            port,
            data: data.to_path_buf(),
        }
    }

    async fn wait_ready(&self) {
        let url = format!("http://127.0.0.1:{}/_ministack/health", self.port);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if reqwest::get(&url)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("ministack did not start on port {}", self.port);
    }

    /// SIGSTOP / SIGCONT: the server keeps its port, takes connections
    /// into the kernel's backlog, and answers nothing while stopped.
    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    fn kill(mut self) -> (u16, PathBuf) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        (self.port, self.data.clone())
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post_batch(server: &Server, from: usize) -> Option<Vec<String>> {
    let ids: Vec<String> = (from..from + 50).map(|i| format!("o{i:06}")).collect();
    let body: Vec<Value> = ids
        .iter()
        .map(|id| json!({"user_id": id, "event_type": "outage"}))
        .collect();
    let (status, _) = server
        .post_json("ecommerce_stream", &Value::Array(body))
        .await;
    (status == 200).then_some(ids)
}

#[tokio::test(flavor = "multi_thread")]
async fn storage_outage_loses_nothing_and_heals() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3::start(free_port(), &dir.path().join("s3"));
    s3.wait_ready().await;
    let endpoint = format!("http://127.0.0.1:{}", s3.port);
    let store = Store::s3(&endpoint, "outage").await;
    let config = write_config(dir.path(), 1, &store.toml());
    let server = Server::start(&config).await;

    let mut acked = Vec::new();
    let mut next = 0;
    for _ in 0..10 {
        acked.extend(post_batch(&server, next).await.expect("S3 is up"));
        next += 50;
    }
    server.flush("ecommerce");

    // The store goes away; events keep arriving and are acknowledged from
    // the buffer while the pipeline's commits fail.
    let (port, data) = s3.kill();
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(12) {
        if let Some(ids) = post_batch(&server, next).await {
            acked.extend(ids);
        }
        next += 50;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        acked.len() > 1000,
        "ingest kept acknowledging during the outage"
    );

    let log = server.log_text();
    assert!(
        log.contains("pipeline step failed") || log.contains("commit failed"),
        "the outage should have made the pipeline's work fail and retry:\n{log}"
    );

    // The store comes back; the pipeline catches up on its own.
    let s3 = S3::start(port, &data);
    s3.wait_ready().await;
    let report = server.flush("ecommerce");
    assert!(report["committed_through"].as_u64().is_some(), "{report}");
    server.stop();

    let acked: HashSet<String> = acked.into_iter().collect();
    assert_exactly_once(dir.path(), &store, &acked);
    // Nobody was killed: every stored event was acknowledged.
    let rows = query(&config, "SELECT count(*) AS n FROM default.ecommerce");
    assert_eq!(rows, vec![json!({"n": acked.len()})]);
    drop(s3);
}

/// The store hangs instead of refusing: every call would wait forever.
/// Ingest goes on, the pipeline's calls time out (`store_timeout_secs`)
/// and are retried, its state says so, and once the store answers again
/// everything is committed once.
#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_store_is_a_retried_timeout_not_a_stuck_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3::start(free_port(), &dir.path().join("s3"));
    s3.wait_ready().await;
    let endpoint = format!("http://127.0.0.1:{}", s3.port);
    let store = Store::s3(&endpoint, "hang").await;
    let config = write_config(
        dir.path(),
        1,
        &format!("store_timeout_secs = 2\n{}", store.toml()),
    );
    let server = Server::start(&config).await;
    let mut acked = Vec::new();
    let mut next = 0;
    for _ in 0..4 {
        acked.extend(post_batch(&server, next).await.expect("S3 is up"));
        next += 50;
    }
    server.flush("ecommerce");

    s3.signal("STOP");
    let hang = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut retrying = None;
    while hang.elapsed() < Duration::from_secs(10) {
        let sent = Instant::now();
        acked.extend(
            post_batch(&server, next)
                .await
                .expect("ingest does not need the store"),
        );
        slowest = slowest.max(sent.elapsed());
        next += 50;
        let status = server.status("ecommerce").await;
        if status["state"] == "retrying" {
            retrying = Some(status);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let retrying = retrying.expect("the pipeline shows it is retrying while the store hangs");
    assert!(
        retrying["state_reason"]
            .as_str()
            .unwrap()
            .contains("did not finish within 2 s"),
        "{retrying}"
    );
    assert!(slowest < Duration::from_secs(2), "an ack took {slowest:?}");

    s3.signal("CONT");
    let report = server.flush("ecommerce");
    assert!(report["committed_through"].as_u64().is_some(), "{report}");
    assert_eq!(server.status("ecommerce").await["state"], "running");
    server.stop();
    let acked: HashSet<String> = acked.into_iter().collect();
    assert_exactly_once(dir.path(), &store, &acked);
    drop(s3);
}

/// A change waiting on a hanging store holds other changes back, never
/// reads: listing and showing definitions answer at once meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_the_definitions_do_not_wait_behind_a_hanging_change() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3::start(free_port(), &dir.path().join("s3"));
    s3.wait_ready().await;
    let endpoint = format!("http://127.0.0.1:{}", s3.port);
    let store = Store::s3(&endpoint, "reads").await;
    let config = write_config(
        dir.path(),
        1,
        &format!("store_timeout_secs = 5\n{}", store.toml()),
    );
    let server = Server::start(&config).await;
    crate::manage::ok(&server, &["sinks", "create", "k", "--table", "hung"]);
    s3.signal("STOP");
    let url = server.url.clone();
    let create = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_pipe"))
            .args(["pipelines", "create", "p", "--server", &url, "--sql"])
            .arg("INSERT INTO k SELECT * FROM ecommerce_stream")
            .output()
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = reqwest::Client::new();
    let mut slowest = Duration::ZERO;
    for path in [
        "/v1/pipelines",
        "/v1/pipelines/ecommerce",
        "/v1/streams",
        "/v1/sinks/k",
    ] {
        let at = Instant::now();
        let r = client
            .get(format!("{}{path}", server.url))
            .timeout(Duration::from_secs(4))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path} waited behind the change: {e}"));
        assert_eq!(r.status(), 200, "{path}");
        slowest = slowest.max(at.elapsed());
    }
    assert!(slowest < Duration::from_secs(2), "a read took {slowest:?}");
    let out = create.await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s3.signal("CONT");
    server.stop();
    drop(s3);
}

/// A reload that removes a pipeline while the store is down: its last
/// commit fails, so it runs on as it was (not left failed with events
/// stranded), the reload says why, and once the store is back the next
/// reload removes it with every acknowledged event committed once.
#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_removed_while_the_store_is_down_runs_on() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3::start(free_port(), &dir.path().join("s3"));
    s3.wait_ready().await;
    let endpoint = format!("http://127.0.0.1:{}", s3.port);
    let store = Store::s3(&endpoint, "removed").await;
    let config = write_config(dir.path(), 1, &store.toml());
    let with_pipeline = std::fs::read_to_string(&config).unwrap();
    let server = Server::start(&config).await;
    let mut acked = Vec::new();
    let mut next = 0;
    for _ in 0..4 {
        acked.extend(post_batch(&server, next).await.expect("S3 is up"));
        next += 50;
    }
    server.flush("ecommerce");

    let (port, data) = s3.kill();
    for _ in 0..4 {
        acked.extend(
            post_batch(&server, next)
                .await
                .expect("the buffer takes them"),
        );
        next += 50;
    }
    let without = with_pipeline.replace(
        "[pipelines.ecommerce]\nsql = \"INSERT INTO ecommerce_sink SELECT * FROM ecommerce_stream\"\n",
        "",
    );
    assert_ne!(without, with_pipeline);
    std::fs::write(&config, &without).unwrap();
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(["reload", "--server", &server.url])
        .output()
        .unwrap();
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && why.contains("ecommerce"),
        "{why}"
    );
    let status = server.status("ecommerce").await;
    assert_eq!(status["pipeline"], "ecommerce", "still listed: {status}");
    acked.extend(post_batch(&server, next).await.expect("the stream goes on"));

    let s3 = S3::start(port, &data);
    s3.wait_ready().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pipe"))
            .args(["reload", "--server", &server.url])
            .output()
            .unwrap();
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reload never went through: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    server.stop();
    let acked: HashSet<String> = acked.into_iter().collect();
    assert_exactly_once(dir.path(), &store, &acked);
    drop(s3);
}
