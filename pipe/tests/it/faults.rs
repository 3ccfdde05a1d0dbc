//! Faults of the machine, caused on purpose: the disk that holds the buffer
//! fills up and later frees.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

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

/// The buffer's disk fills: requests get 503 (nothing of them kept), the
/// server goes on, and once commits release segments the same stream
/// takes events again, without a restart. Every acknowledged event lands
/// once.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_buffer_disk_refuses_requests_until_space_frees() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config_with(dir.path(), 3600, "", "buffer_segment_mb = 1");
    let _disk = SmallDisk::mount(&dir.path().join("data/buffer"), "3m");
    let server = Server::start(&config).await;
    let mut acked = HashSet::new();
    let mut refused = None;
    for request in 0..100 {
        let (status, body, ids) = post_big(&server, request).await;
        match status {
            200 => acked.extend(ids),
            503 => {
                refused = Some(body);
                break;
            }
            other => panic!("{other}: {body}"),
        }
    }
    let refused = refused.expect("a 3 MiB disk fills up");
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
