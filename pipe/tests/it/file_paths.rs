//! Where file sinks made through the admin API may write: inside the
//! warehouse, or under a `file_sink_roots` entry of `pipe.toml`.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::harness::*;

/// Runs `pipe ARGS --server URL`; its exit code and standard error.
fn pipe(server: &Server, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(args)
        .args(["--server", &server.url])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The files under `dir`, `_pipe` (staging and commit records) left out.
fn published(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|n| n == "_pipe") {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_file_sinks_write_inside_the_warehouse_or_an_allowed_root() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_stream_config(dir.path(), "file_sink_roots = [\"exports\"]", "");
    let server = Server::start(&config).await;

    // Out of the warehouse: an absolute path, `..`, and a root of its own.
    let outside = dir.path().join("outside");
    for path in [outside.display().to_string(), "../outside".into()] {
        let (code, e) = pipe(
            &server,
            &["sinks", "create", "out", "--type", "json", "--path", &path],
        );
        assert_eq!(code, Some(2), "{path}: {e}");
        assert!(e.contains("`sinks.out.path`"), "{e}");
    }
    let (code, e) = pipe(
        &server,
        &[
            "sinks",
            "create",
            "out",
            "--type",
            "json",
            "--path",
            &outside.display().to_string(),
        ],
    );
    assert!(
        code == Some(2) && e.contains("outside the warehouse") && e.contains("file_sink_roots"),
        "{e}"
    );
    let r = reqwest::Client::new()
        .post(format!("{}/v1/sinks", server.url))
        .json(&json!({"name": "out", "type": "json", "path": outside, "file_sink_roots": ["/"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body.to_string().contains("unknown field `file_sink_roots`"),
        "{body}"
    );

    // Inside the warehouse, and under the file's root: both write there.
    let root = dir.path().canonicalize().unwrap().join("exports/daily");
    for (sink, path) in [
        ("in_warehouse", "raw/events".to_string()),
        ("in_root", root.display().to_string()),
    ] {
        let (code, e) = pipe(
            &server,
            &["sinks", "create", sink, "--type", "json", "--path", &path],
        );
        assert_eq!(code, Some(0), "{sink}: {e}");
        let sql = format!("INSERT INTO {sink} SELECT * FROM ecommerce_stream");
        let (code, e) = pipe(&server, &["pipelines", "create", sink, "--sql", &sql]);
        assert_eq!(code, Some(0), "{sink}: {e}");
    }
    let (status, body) = server
        .post_json("ecommerce_stream", &getting_started_events())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.flush("in_warehouse")["rows"], 3);
    assert_eq!(server.flush("in_root")["rows"], 3);
    server.stop();
    assert_eq!(
        published(&dir.path().join("data/warehouse/raw/events")).len(),
        1
    );
    assert_eq!(published(&root).len(), 1);
    assert!(!outside.exists(), "nothing was written outside");
}
