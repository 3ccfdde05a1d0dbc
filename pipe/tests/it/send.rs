//! `pipe send`: a file of NDJSON events, some bad, and a JSON array on
//! standard input, posted to a running server.

use std::process::Command;

use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn send_posts_a_file_in_batches_and_reports_the_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 3600, "");
    let server = Server::start(&config).await;
    let mut text = String::new();
    for i in 1..=2500 {
        let line = match i {
            7 => json!({"event_type": "purchase"}),
            1500 => json!({"user_id": "u1500", "event_type": "view", "amount": "lots"}),
            _ => json!({"user_id": format!("u{i}"), "event_type": "view", "amount": i}),
        };
        text.push_str(&line.to_string());
        text.push('\n');
        if i == 100 {
            text.push('\n'); // blank lines are skipped
        }
        if i == 2000 {
            text.push_str("not json\n"); // reported, never sent
        }
    }
    let file = dir.path().join("events.ndjson");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(["send", "--server", &server.url, "--batch-events", "1000"])
        .arg("ecommerce_stream")
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stdout.contains("sent 2501 events"), "{stdout}");
    assert!(
        stdout.contains("accepted 2498, quarantined 0, rejected 3"),
        "{stdout}"
    );
    assert!(
        stdout.contains("problems by type: missing_field ×1, parse_failure ×1, type_mismatch ×1"),
        "{stdout}"
    );
    assert!(stdout.contains("line 2002: not JSON"), "{stdout}");
    let line_7 = stdout.find("line 7: `user_id`").expect(&stdout);
    let line_1500 = stdout.find("line 1501: `amount`").expect(&stdout);
    assert!(line_7 < line_1500, "in input order: {stdout}");
    assert!(stderr.contains("3 events were rejected"), "{stderr}");

    // A JSON array on standard input.
    let out = run_with_stdin(
        Command::new(env!("CARGO_BIN_EXE_pipe")).args([
            "send",
            "--server",
            &server.url,
            "ecommerce_stream",
            "-",
        ]),
        getting_started_events().to_string().as_bytes(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("accepted 3, quarantined 0, rejected 0"),
        "{stdout}"
    );

    assert_eq!(server.flush("ecommerce")["rows"], 2501);
    server.stop();
    let rows = query(
        &config,
        "SELECT count(*) AS n, count(DISTINCT user_id) AS d FROM default.ecommerce",
    );
    assert_eq!(rows, vec![json!({"n": 2501, "d": 2500})]);
}
