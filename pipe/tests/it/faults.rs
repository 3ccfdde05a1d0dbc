//! Faults of the machine, caused on purpose: the disk that holds the buffer
//! fills up and later frees.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;

/// A small tmpfs mounted at a folder for the life of the value (the tests
/// run as root, as CI does).
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a {size} tmpfs at {} (the fault tests need root): {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(at.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Posts one request of 200 events of ~1 KB; returns its status and body.
async fn post_big(server: &Server, request: usize) -> (u16, Value, Vec<String>) {
    let ids: Vec<String> = (0..200).map(|i| format!("r{request:05}-{i:03}")).collect();
    let events: Vec<Value> = ids
        .iter()
        .map(|id| json!({"user_id": id, "event_type": "fill", "product_id": "x".repeat(1000)}))
        .collect();
    let (status, body) = server
        .post_json("ecommerce_stream", &Value::Array(events))
        .await;
    (status, body, ids)
}

/// Posts big requests until one gets 503: the ids acknowledged before it,
/// and its answer.
async fn fill_until_refused(server: &Server) -> (HashSet<String>, Value) {
    let mut acked = HashSet::new();
    for request in 0..100 {
        let (status, body, ids) = post_big(server, request).await;
        match status {
            200 => acked.extend(ids),
            503 => return (acked, body),
            other => panic!("{other}: {body}"),
        }
    }
    panic!("the disk did not fill up")
}

/// The buffer's disk fills: requests get 503 (nothing of them kept), the
/// server goes on, and once commits release segments the same stream
/// takes events again, without a restart. Every acknowledged event lands
/// once.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_buffer_disk_refuses_requests_until_space_frees() {
    let dir = tempfile::tempdir().unwrap();
    // No reserve: the disk fills to its last byte (see the next test).
    // Default segments (64 MiB), larger than the disk: the writer starts
    // new ones at a tenth of it. Before, the one active segment filled the
    // disk and, never released, refused every request for good (review 5
    // finding 3).
    let config = write_config_with(dir.path(), 3600, "", "min_free_disk_mb = 0");
    let _disk = SmallDisk::mount(&dir.path().join("data/buffer"), "3m");
    let server = Server::start(&config).await;
    let (mut acked, refused) = fill_until_refused(&server).await;
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("No space left") && message.contains("nothing of it was kept"),
        "{message}"
    );
    assert!(
        acked.len() >= 1000,
        "{} acked before the disk filled",
        acked.len()
    );
    // Still refused while full, still serving.
    assert_eq!(post_big(&server, 900).await.0, 503);
    assert_eq!(
        reqwest::get(format!("{}/readyz", server.url))
            .await
            .unwrap()
            .status(),
        200,
        "a full disk is not a broken stream"
    );
    // Commit: the released segments free the disk; events are taken again.
    server.flush("ecommerce");
    let (status, body, ids) = post_big(&server, 1000).await;
    assert_eq!(status, 200, "{body}");
    acked.extend(ids);
    server.flush("ecommerce");
    server.stop();
    let rows = query(
        &config,
        "SELECT count(*) AS n, count(DISTINCT user_id) AS ids FROM default.ecommerce",
    );
    assert_eq!(rows, vec![json!({"n": acked.len(), "ids": acked.len()})]);
    let stored: HashSet<String> = query(&config, "SELECT user_id FROM default.ecommerce")
        .iter()
        .map(|r| r["user_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stored, acked, "exactly the acknowledged events");
}

/// The default layout: the buffer, the tables and the catalog on one disk,
/// which fills. Requests are refused while the disk still has the reserve
/// commits need, so a flush commits, releases segments, and the stream
/// takes events again. Before, the buffer took the disk to its last byte;
/// commits could not write the files that would free it, and nothing
/// recovered.
#[tokio::test(flavor = "multi_thread")]
async fn a_disk_shared_by_the_buffer_and_the_tables_keeps_room_for_commits() {
    let dir = tempfile::tempdir().unwrap();
    // Default segments (64 MiB): larger than the whole disk. The writer
    // starts new ones at half the reserve, or the active segment, never
    // freed, would keep the disk below the reserve for good.
    let config = write_config(dir.path(), 3600, "");
    let _disk = SmallDisk::mount(&dir.path().join("data"), "8m");
    let server = Server::start(&config).await;
    let (mut acked, refused) = fill_until_refused(&server).await;
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("nearly full"), "{message}");
    for round in 0..3 {
        // (`flush` asserts the commit succeeded.)
        server.flush("ecommerce");
        let (status, body, ids) = post_big(&server, 1000 + round).await;
        assert_eq!(status, 200, "{body}");
        acked.extend(ids);
    }
    server.flush("ecommerce");
    server.stop();
    let stored: HashSet<String> = query(&config, "SELECT user_id FROM default.ecommerce")
        .iter()
        .map(|r| r["user_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stored, acked, "exactly the acknowledged events");
}

/// A pipeline deleted while its last commit cannot land (its file sink's
/// disk is full): the delete fails, and the pipeline stays, `failed`, at
/// its place in the log. Before, it left the running set and let go of its
/// place while still defined: the stream released what the other pipeline
/// committed, and after a restart the pipeline found its events gone.
#[tokio::test(flavor = "multi_thread")]
async fn a_delete_whose_last_commit_fails_keeps_the_pipeline_and_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config_with(
        dir.path(),
        3600,
        "file_sink_roots = [\"exports\"]",
        "buffer_segment_mb = 1",
    );
    let exports = dir.path().join("exports");
    let _disk = SmallDisk::mount(&exports, "4m");
    let server = Server::start(&config).await;
    let out = exports.canonicalize().unwrap().join("out");
    cli(
        &server,
        &[
            "sinks",
            "create",
            "f",
            "--type",
            "json",
            "--path",
            &out.display().to_string(),
        ],
    );
    cli(
        &server,
        &[
            "pipelines",
            "create",
            "p",
            "--sql",
            "INSERT INTO f SELECT * FROM ecommerce_stream",
        ],
    );
    // The sink's disk, full.
    let mut filler = std::fs::File::create(exports.join("filler")).unwrap();
    let block = vec![0u8; 64 * 1024];
    while std::io::Write::write_all(&mut filler, &block).is_ok() {}
    drop(filler);
    let mut acked = 0;
    for request in 0..8 {
        let (status, body, _) = post_big(&server, request).await;
        assert_eq!(status, 200, "{body}");
        acked += 200;
    }
    let r = reqwest::Client::new()
        .delete(format!("{}/v1/pipelines/p", server.url))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_server_error(), "{}", r.status());
    let state = server.status("p").await;
    assert_eq!(state["state"], "failed", "{state}");
    // Deleting it again does not give its events up unless forced.
    let again = reqwest::Client::new()
        .delete(format!("{}/v1/pipelines/p", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    assert!(again.text().await.unwrap().contains("force"));
    // The other pipeline commits; the stream keeps what `p` has not.
    server.flush("ecommerce");
    let first_segment = dir
        .path()
        .join("data/buffer/ecommerce_stream/00000000000000000000.seg");
    assert!(first_segment.exists(), "p's events were released");
    server.stop();
    std::fs::remove_file(exports.join("filler")).unwrap();
    let server = Server::start(&config).await;
    assert_eq!(server.flush("p")["rows"], acked);
    server.stop();
}

/// libfaketime, to step the clock of the `pipe` process alone.
fn faketime_lib() -> String {
    let lib = std::env::var("PIPE_TEST_FAKETIME")
        .unwrap_or_else(|_| "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1".to_string());
    assert!(
        Path::new(&lib).exists(),
        "{lib} is missing: run the README's test command (scripts/test), which installs faketime"
    );
    lib
}

async fn post_keyed(server: &Server, key: &str) -> (u16, bool) {
    let events: Vec<Value> = (0..3)
        .map(|i| json!({"user_id": format!("{key}-{i}"), "event_type": "clock"}))
        .collect();
    let r = reqwest::Client::new()
        .post(format!("{}/v1/streams/ecommerce_stream", server.url))
        .header("idempotency-key", key)
        .json(&events)
        .send()
        .await
        .unwrap();
    (
        r.status().as_u16(),
        r.headers().contains_key("idempotent-replayed"),
    )
}

/// The wall clock steps back 10 minutes, forward 10 minutes, and back
/// again, while keyed requests arrive, are retried and are committed, and
/// across a restart. Iceberg refuses snapshots stamped more than a minute
/// before the table's last one, so while the clock is behind, commits wait
/// (the pipeline shows why) and nothing is lost or doubled; retries are
/// recognised whatever the clock did.
#[tokio::test(flavor = "multi_thread")]
async fn the_clock_stepping_back_and_forward_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let clock = dir.path().join("clock");
    let set_clock = |offset: &str| std::fs::write(&clock, offset).unwrap();
    set_clock("+0");
    let lib = faketime_lib();
    let clock_path = clock.display().to_string();
    let env = [
        ("LD_PRELOAD", lib.as_str()),
        ("FAKETIME_TIMESTAMP_FILE", clock_path.as_str()),
        ("FAKETIME_NO_CACHE", "1"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let server = Server::start_with_env(&config, &env).await;
    for k in ["k0", "k1", "k2"] {
        assert_eq!(post_keyed(&server, k).await, (200, false));
    }
    server.flush("ecommerce");

    set_clock("-600");
    for k in ["k3", "k4"] {
        assert_eq!(post_keyed(&server, k).await, (200, false));
    }
    assert_eq!(
        post_keyed(&server, "k0").await,
        (200, true),
        "a retry after the step"
    );
    let (code, body) = flush_answer(&server, "ecommerce").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("clock is behind"), "{body}");
    let status = server.status("ecommerce").await;
    assert_eq!(status["state"], "retrying", "{status}");

    set_clock("+600");
    assert_eq!(post_keyed(&server, "k5").await, (200, false));
    assert_eq!(post_keyed(&server, "k3").await, (200, true));
    server.flush("ecommerce");
    // (k3 and k4 may have landed before the flush, on the task's retry.)
    assert_eq!(
        query(&config, "SELECT count(*) AS n FROM default.ecommerce"),
        vec![json!({"n": 18})],
        "k0 to k5"
    );

    set_clock("+0");
    assert_eq!(post_keyed(&server, "k6").await, (200, false));
    assert_eq!(flush_answer(&server, "ecommerce").await.0, 503);
    server.kill();

    // Restarted with the clock ahead again: keys are rebuilt, k6 commits.
    set_clock("+600");
    let server = Server::start_with_env(&config, &env).await;
    for k in ["k0", "k4", "k6"] {
        assert_eq!(post_keyed(&server, k).await, (200, true), "{k}");
    }
    assert_eq!(server.flush("ecommerce")["rows"], 3);
    server.stop();
    assert_eq!(
        query(
            &config,
            "SELECT count(*) AS n, count(DISTINCT user_id) AS ids FROM default.ecommerce"
        ),
        vec![json!({"n": 21, "ids": 21})]
    );
}

/// Idle connections and half-sent request heads are closed after
/// `body_timeout_secs`: they cannot hold the connection cap for ever
/// (locking everyone out of ingest, no token needed), nor keep a shutdown
/// from reaching its final commits. Before, neither had a deadline.
#[tokio::test(flavor = "multi_thread")]
async fn idle_and_half_sent_connections_are_closed_in_time() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "body_timeout_secs = 2");
    let server = Server::start_with_file_limit(&config, 300).await;
    let addr = server.url.trim_start_matches("http://").to_string();
    let half_head = || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.write_all(b"POST /v1/streams/ecommerce_stream HTTP/1.1\r\nHost: localhost\r\n")
            .unwrap();
        s
    };
    let mut half = half_head();
    let idle: Vec<_> = (0..300)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    assert!(idle.len() >= 236, "{} connections", idle.len());
    tokio::time::sleep(Duration::from_secs(4)).await;
    // The idle clients still hold their sockets; the server closed them.
    let events = getting_started_events();
    assert_eq!(server.post_json("ecommerce_stream", &events).await.0, 200);
    half.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 512];
    let n = half.read(&mut buf).unwrap_or(0);
    assert!(
        n == 0 || String::from_utf8_lossy(&buf[..n]).contains("408"),
        "the half-sent head is closed: {:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // A shutdown does not wait for a client that never finishes its head.
    let _stuck = half_head();
    let started = Instant::now();
    server.stop();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "shutdown took {:?}",
        started.elapsed()
    );
    drop(idle);
}

/// Many idle connections: at most a capped number is held (the rest are
/// closed at once), so the server keeps descriptors for its own files and
/// its pipeline goes on committing; once the idle clients leave, requests
/// are served again. Before, the idle clients took every descriptor: no
/// request was accepted, and commits failed to open their files.
#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_cannot_take_every_file_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 1, "");
    // 300 files: 236 connections at most, 64 kept for the server.
    let server = Server::start_with_file_limit(&config, 300).await;
    let events = getting_started_events();
    assert_eq!(server.post_json("ecommerce_stream", &events).await.0, 200);
    let addr = server.url.trim_start_matches("http://").to_string();
    let mut idle = Vec::new();
    for _ in 0..400 {
        match std::net::TcpStream::connect(&addr) {
            Ok(s) => idle.push(s),
            Err(_) => break,
        }
    }
    assert!(idle.len() >= 300, "{} connections", idle.len());
    // The pipeline commits (roll every second) while the clients idle.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let rows = query(&config, "SELECT count(*) AS n FROM default.ecommerce");
        if rows == vec![json!({"n": 3})] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no commit while the connections idle: {rows:?}\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(server.log_text().contains("too many open connections"));
    drop(idle);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.post_json("ecommerce_stream", &events).await.0, 200);
    assert_eq!(server.flush("ecommerce")["rows"], 3);
    server.stop();
}

/// Sends a request head to `path` announcing a 1000-byte JSON body, then
/// a byte every 300 ms; returns the answer's first bytes and when they
/// came.
fn trickle(addr: &str, path: &str) -> (String, Duration) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    while started.elapsed() < Duration::from_secs(15) {
        let _ = s.write_all(b" ");
        match s.read(&mut buf) {
            Ok(n) => return (String::from_utf8_lossy(&buf[..n]).into(), started.elapsed()),
            Err(_) => continue,
        }
    }
    (String::new(), started.elapsed())
}

/// A body trickled to the query or admin API is cut off after
/// `body_timeout_secs` (408), and the query API reads no body before the
/// token: a client cannot hold a connection (under the connection cap)
/// nor the memory of a body longer. Before, only ingest had a whole-body
/// deadline, and the query API read up to 2 MB before it checked the
/// token (review 5 finding 2).
#[tokio::test(flavor = "multi_thread")]
async fn bodies_trickled_to_the_query_and_admin_apis_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "body_timeout_secs = 2");
    let server = Server::start(&config).await;
    let addr = server.url.trim_start_matches("http://").to_string();
    for path in ["/v1/query", "/v1/sinks"] {
        let addr = addr.clone();
        let (answer, after) = tokio::task::spawn_blocking(move || trickle(&addr, path))
            .await
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer:?}");
        assert!(after < Duration::from_secs(6), "{path}: {after:?}");
    }
    server.stop();

    let config = write_config(
        dir.path(),
        3600,
        &format!(
            "body_timeout_secs = 30\n[query]\nauth_token_sha256 = [\"{}\"]",
            hex_digest("secret")
        ),
    );
    let server = Server::start(&config).await;
    let addr = server.url.trim_start_matches("http://").to_string();
    let (answer, after) = tokio::task::spawn_blocking(move || trickle(&addr, "/v1/query"))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer:?}");
    assert!(after < Duration::from_secs(3), "{after:?}");
    server.stop();
}
