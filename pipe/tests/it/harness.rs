//! Starting, stopping and killing `pipe serve`, and asking it things.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use crate::posting::{load_until, post_ids, post_some};

pub const SCHEMA: &str = r#"{"fields":[
  {"name":"user_id","type":"string","required":true},
  {"name":"event_type","type":"string","required":true},
  {"name":"product_id","type":"string","required":false},
  {"name":"amount","type":"float64","required":false}]}"#;

pub fn getting_started_events() -> Value {
    serde_json::json!([
        {"user_id": "user_12345", "event_type": "purchase", "product_id": "widget-001", "amount": 29.99},
        {"user_id": "user_67890", "event_type": "view_product", "product_id": "widget-002"},
        {"user_id": "user_12345", "event_type": "add_to_cart", "product_id": "widget-003", "amount": 15.50}
    ])
}

/// A definitions file for the getting-started pipeline in `dir`.
/// `warehouse` is extra TOML for the `[warehouse]` table, or empty.
pub fn write_config(dir: &Path, roll_interval_secs: u64, warehouse: &str) -> PathBuf {
    write_config_with(dir, roll_interval_secs, warehouse, "")
}

/// [`write_config`] with extra options for `[streams.ecommerce_stream]`.
pub fn write_config_with(
    dir: &Path,
    roll_interval_secs: u64,
    warehouse: &str,
    stream_options: &str,
) -> PathBuf {
    write_stream_config(
        dir,
        warehouse,
        &format!(
            r#"{stream_options}

[sinks.ecommerce_sink]
namespace = "default"
table = "ecommerce"
roll_interval_secs = {roll_interval_secs}

[pipelines.ecommerce]
sql = "INSERT INTO ecommerce_sink SELECT * FROM ecommerce_stream"
"#
        ),
    )
}

/// Writes `dir/pipe.toml`: the data dir, `warehouse` (TOML for the
/// `[warehouse]` table, or empty), the `ecommerce_stream` stream with the
/// getting-started schema, then `rest` (its options, sinks, pipelines).
pub fn write_stream_config(dir: &Path, warehouse: &str, rest: &str) -> PathBuf {
    std::fs::write(dir.join("schema.json"), SCHEMA).unwrap();
    let config = format!(
        r#"
data_dir = "data"
{warehouse}

[streams.ecommerce_stream]
schema_file = "schema.json"
{rest}"#
    );
    let path = dir.join("pipe.toml");
    std::fs::write(&path, config).unwrap();
    path
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `pipe serve`.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl Server {
    /// Starts the server and waits until `/healthz` answers.
    pub async fn start(config: &Path) -> Server {
        Server::start_with_env(config, &[]).await
    }

    /// [`start`](Self::start) with extra environment variables.
    pub async fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Server {
        let mut server = Server::spawn(config, env);
        server.wait_healthy(false).await;
        server
    }

    /// [`start_with_env`](Self::start_with_env), listening on `host` (such
    /// as `0.0.0.0`) instead of 127.0.0.1; `url` still names 127.0.0.1.
    pub async fn start_on(config: &Path, host: &str, env: &[(&str, &str)]) -> Server {
        let mut server = Server::spawn_on(config, host, env);
        server.wait_healthy(false).await;
        server
    }

    /// Starts the server with a crash point armed, and waits until it is
    /// healthy or has already ended (a pipeline catching up can reach its
    /// crash point before the server answers).
    pub async fn start_to_crash(config: &Path, env: &[(&str, &str)]) -> Server {
        let mut server = Server::spawn(config, env);
        server.wait_healthy(true).await;
        server
    }

    /// [`start`](Self::start) with at most `files` open files (soft and
    /// hard limit).
    pub async fn start_with_file_limit(config: &Path, files: u64) -> Server {
        let limit = format!("--nofile={files}:{files}");
        let mut server = Server::spawn_with(config, "127.0.0.1", &[], &["prlimit", &limit, "--"]);
        server.wait_healthy(false).await;
        server
    }

    fn spawn(config: &Path, env: &[(&str, &str)]) -> Server {
        Server::spawn_on(config, "127.0.0.1", env)
    }

    fn spawn_on(config: &Path, host: &str, env: &[(&str, &str)]) -> Server {
        Server::spawn_with(config, host, env, &[])
    }

    /// Spawns `pipe serve`, run through the `wrapper` command if any.
    fn spawn_with(config: &Path, host: &str, env: &[(&str, &str)], wrapper: &[&str]) -> Server {
        let port = free_port();
        let log = config.with_file_name(format!("serve-{port}.log"));
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_pipe"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_pipe")),
        };
        let child = command
            .args(["serve", "--config"])
            .arg(config)
            .args(["--listen", &format!("{host}:{port}")])
            .env("PIPE_LOG", "info")
            // The token of whoever runs the tests is not the server's.
            .env_remove("PIPE_ADMIN_TOKEN")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting pipe serve");
        Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    async fn wait_healthy(&mut self, may_end: bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if may_end && self.child.try_wait().unwrap().is_some() {
                return;
            }
            if let Ok(r) = reqwest::get(format!("{}/healthz", self.url)).await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("pipe serve did not become healthy:\n{}", self.log_text());
    }

    /// `GET /metrics`, as `name{labels}` → value.
    pub async fn metrics(&self) -> std::collections::BTreeMap<String, f64> {
        let r = reqwest::get(format!("{}/metrics", self.url)).await.unwrap();
        assert_eq!(r.status(), 200);
        let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        r.text()
            .await
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (name, value) = l.rsplit_once(' ').unwrap();
                (name.to_string(), value.parse().unwrap())
            })
            .collect()
    }

    /// `GET /v1/pipelines/{pipeline}`: the pipeline's live figures.
    pub async fn status(&self, pipeline: &str) -> Value {
        reqwest::get(format!("{}/v1/pipelines/{pipeline}", self.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (30 s at most) until the server's log says `text`.
    pub fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.log_text().contains(text) {
            assert!(Instant::now() < deadline, "{}", self.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// POSTs a body to a stream; returns (status, JSON body).
    pub async fn post(
        &self,
        stream: &str,
        body: impl Into<reqwest::Body>,
        content_type: &str,
    ) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/streams/{stream}", self.url))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post_json(&self, stream: &str, body: &Value) -> (u16, Value) {
        self.post(stream, body.to_string(), "application/json")
            .await
    }

    /// `POST /v1/query` with `body`; the answer, which must be a 200.
    pub async fn query_api(&self, body: Value) -> Value {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/query", self.url))
            .json(&body)
            .timeout(std::time::Duration::from_secs(120))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let answer: Value = r.json().await.unwrap();
        assert_eq!(status, 200, "{answer}");
        answer
    }

    /// Creates definitions through the admin API (`POST /v1/{kind}` with
    /// each body, `kind` being `streams`, `sinks` or `pipelines`); each
    /// must get a 201.
    pub async fn create(&self, definitions: &[(&str, Value)]) {
        let client = reqwest::Client::new();
        for (kind, body) in definitions {
            let r = client
                .post(format!("{}/v1/{kind}", self.url))
                .json(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "{kind}: {}", r.text().await.unwrap());
        }
    }

    /// POSTs `events` in requests of `chunk` events; each must get a 200.
    pub async fn post_chunks(&self, stream: &str, events: &[Value], chunk: usize) {
        for part in events.chunks(chunk) {
            let (status, body) = self.post_json(stream, &Value::Array(part.to_vec())).await;
            assert_eq!(status, 200, "{body}");
        }
    }

    /// Runs `pipe flush` for a pipeline and returns its JSON report.
    pub fn flush(&self, pipeline: &str) -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_pipe"))
            .args(["flush", "--server", &self.url, pipeline])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pipe flush failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// SIGTERM and wait: the orderly shutdown.
    pub fn stop(mut self) {
        unsafe_kill(self.child.id(), "TERM");
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "pipe serve exited with {status}:\n{}",
            self.log_text()
        );
    }

    /// SIGKILL: the crash.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_kill(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Runs `pipe query --format json` and returns the rows.
pub fn query(config: &Path, sql: &str) -> Vec<Value> {
    query_with_stats(config, sql).0
}

/// [`query`], with the stats line `pipe query` printed on standard error.
pub fn query_with_stats(config: &Path, sql: &str) -> (Vec<Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(["query", "--format", "json", "--config"])
        .arg(config)
        .arg(sql)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pipe query failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = String::from_utf8_lossy(&out.stderr).trim().to_string();
    match serde_json::from_slice(&out.stdout).unwrap() {
        Value::Array(rows) => (rows, stats),
        other => panic!("not rows: {other}"),
    }
}

/// The Python with the independent readers; the test command provides it.
pub fn python() -> String {
    std::env::var("PIPE_TEST_PYTHON").expect(
        "PIPE_TEST_PYTHON is not set: run the README's test command (scripts/test), \
         which installs PyIceberg and DuckDB for these tests",
    )
}

/// Runs a Python `script` (with the readers' Python) on the folder `dir`
/// (its `sys.argv[1]`) and returns the JSON it prints.
pub fn python_json(script: &str, dir: &Path) -> Value {
    let out = Command::new(python())
        .args(["-c", script])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Reads a table with PyIceberg (and DuckDB with `duckdb`) via tests/readers.
pub fn read_with_python(
    dir: &Path,
    warehouse: &str,
    s3_endpoint: Option<&str>,
    duckdb: bool,
) -> Value {
    read_with_python_args(dir, warehouse, s3_endpoint, duckdb, &[])
}

/// [`read_with_python`] with more arguments for `read_table.py`.
pub fn read_with_python_args(
    dir: &Path,
    warehouse: &str,
    s3_endpoint: Option<&str>,
    duckdb: bool,
    more: &[&str],
) -> Value {
    let script = repo_path("tests/readers/read_table.py");
    let mut cmd = Command::new(python());
    cmd.arg(script)
        .arg("--catalog-db")
        .arg(dir.join("data/catalog.db"))
        .args(["--warehouse", warehouse, "--table", "default.ecommerce"]);
    if let Some(endpoint) = s3_endpoint {
        cmd.args(["--s3-endpoint", endpoint]);
    }
    if duckdb {
        cmd.arg("--duckdb");
    }
    cmd.args(more);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "reader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Sorted rows of the getting-started events, as the readers print them.
pub fn expected_rows(events: &Value) -> Vec<Value> {
    let mut rows: Vec<Value> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            serde_json::json!({
                "user_id": e["user_id"],
                "event_type": e["event_type"],
                "product_id": e.get("product_id").cloned().unwrap_or(Value::Null),
                "amount": e.get("amount").cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    rows.sort_by_key(sorted_json);
    rows
}

/// JSON text with object keys sorted, as Python's `json.dumps(sort_keys=True)`.
pub fn sorted_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<_> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{:?}: {}", k, sorted_json(&m[*k])))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        other => other.to_string(),
    }
}

/// The `(index, field, type)` of each error in a 400 body.
pub fn error_triples(body: &Value) -> Vec<(u64, String, String)> {
    body["errors"]
        .as_array()
        .expect("an errors array")
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["field"].as_str().unwrap().to_string(),
                e["type"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The S3 endpoint the test command started.
pub fn s3_endpoint() -> String {
    std::env::var("PIPE_TEST_S3_ENDPOINT").expect(
        "PIPE_TEST_S3_ENDPOINT is not set: run the README's test command (scripts/test), \
         which starts an S3-compatible server for these tests",
    )
}

/// Creates a bucket with a bare S3 PUT (ministack accepts any credentials).
pub async fn create_bucket(endpoint: &str, bucket: &str) {
    let r = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .expect("creating the bucket");
    assert!(
        r.status().is_success() || r.status().as_u16() == 409,
        "create bucket: {}",
        r.status()
    );
}

/// Where a test's tables live, as the config and the readers name it.
pub struct Store {
    /// The warehouse location.
    pub warehouse: String,
    /// The S3 endpoint, for `s3://` warehouses.
    pub s3_endpoint: Option<String>,
}

impl Store {
    /// The default warehouse: a folder in the test's data dir.
    pub fn local(dir: &Path) -> Store {
        Store {
            warehouse: format!("file://{}/data/warehouse", dir.display()),
            s3_endpoint: None,
        }
    }

    /// A fresh bucket `bucket` on the S3 server at `endpoint`.
    pub async fn s3(endpoint: &str, bucket: &str) -> Store {
        create_bucket(endpoint, bucket).await;
        Store {
            warehouse: format!("s3://{bucket}/warehouse"),
            s3_endpoint: Some(endpoint.to_string()),
        }
    }

    /// The `[warehouse]` TOML for [`write_config`] (empty for the default).
    pub fn toml(&self) -> String {
        match &self.s3_endpoint {
            None => String::new(),
            Some(endpoint) => format!(
                r#"[warehouse]
location = "{}"
s3 = {{ endpoint = "{endpoint}", region = "us-east-1", access_key_id = "test", secret_access_key = "test", path_style = true }}"#,
                self.warehouse
            ),
        }
    }
}

/// Proves exactly-once on `default.ecommerce` of the config in `dir`:
/// `pipe query` and PyIceberg both see every acknowledged `user_id` once,
/// and no data file on storage is left unreferenced by the table.
pub fn assert_exactly_once(dir: &Path, store: &Store, acked: &std::collections::HashSet<String>) {
    let catalog = CatalogRef::Sqlite(dir.join("data/catalog.db"));
    assert_exactly_once_in(dir, store, &catalog, "default.ecommerce", acked)
}

/// The SQL catalog a test's `pipe` uses, as PyIceberg opens it.
pub enum CatalogRef {
    /// The default: a SQLite file, catalog name `pipe`.
    Sqlite(PathBuf),
    /// A catalog named `name` in the PostgreSQL database at `uri`.
    Postgres { name: String, uri: String },
}

/// [`assert_exactly_once`] on `table` (a `user_id` column) of the config
/// `dir/pipe.toml`, whose catalog PyIceberg opens as `catalog`.
pub fn assert_exactly_once_in(
    dir: &Path,
    store: &Store,
    catalog: &CatalogRef,
    table: &str,
    acked: &std::collections::HashSet<String>,
) {
    let config = dir.join("pipe.toml");
    let rows = query(&config, &format!("SELECT user_id FROM {table}"));
    let stored: Vec<String> = rows
        .iter()
        .map(|r| r["user_id"].as_str().unwrap().to_string())
        .collect();
    let unique: std::collections::HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), unique.len(), "duplicated rows");
    let missing: Vec<_> = acked.difference(&unique).take(5).collect();
    assert!(missing.is_empty(), "acknowledged events lost: {missing:?}");

    let script = repo_path("tests/readers/check_table.py");
    let mut cmd = Command::new(python());
    cmd.arg(script)
        .args(["--warehouse", &store.warehouse])
        .args(["--table", table, "--column", "user_id"]);
    match catalog {
        CatalogRef::Sqlite(db) => cmd.arg("--catalog-db").arg(db),
        CatalogRef::Postgres { name, uri } => cmd.args([
            "--catalog-name",
            name,
            "--catalog-uri",
            &uri.replace("postgres://", "postgresql+pg8000://"),
        ]),
    };
    if let Some(endpoint) = &store.s3_endpoint {
        cmd.args(["--s3-endpoint", endpoint]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "check_table.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let checked: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (checked["n"].as_u64(), checked["distinct"].as_u64()),
        (Some(stored.len() as u64), Some(stored.len() as u64)),
        "PyIceberg sees what pipe query sees"
    );
    let ids: std::collections::HashSet<&str> = checked["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(acked.iter().all(|id| ids.contains(id.as_str())));
    assert_eq!(
        checked["orphans"],
        serde_json::json!([]),
        "uncommitted data files left on storage"
    );
    assert_eq!(
        checked["missing"],
        serde_json::json!([]),
        "referenced data files missing"
    );
}

/// A path in this checkout. Read at run time (cargo sets the variable when
/// it runs tests): a binary built from another clone sharing the target
/// folder must not point into that clone.
pub fn repo_path(relative: &str) -> PathBuf {
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    package.join("..").join(relative)
}

/// Runs `pipe <args> --server <url>`, which must succeed; its output.
pub fn cli(server: &Server, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(args)
        .args(["--server", &server.url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pipe {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `POST /v1/pipelines/{pipeline}/flush`: the status and the body.
pub async fn flush_answer(server: &Server, pipeline: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/pipelines/{pipeline}/flush", server.url))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Asks `pipeline` for a flush; the answer does not matter (the process
/// may die).
pub async fn request_flush(server: &Server, pipeline: &str) {
    let _ = reqwest::Client::new()
        .post(format!("{}/v1/pipelines/{pipeline}/flush", server.url))
        .header("content-type", "application/json")
        .timeout(Duration::from_secs(30))
        .send()
        .await;
}

/// Runs `trials` crash trials on the config at `config`: trial `t` starts
/// the server with `PIPE_CRASH_AT` at `points[t % len]` (its first or
/// second hit), posts 3 requests of 25 unique events and asks each of
/// `pipelines` to flush, twice, then kills whatever is left. Returns the
/// acknowledged ids and how many trials ended at their crash point.
pub async fn crash_trials(
    config: &Path,
    points: &[&str],
    pipelines: &[&str],
    trials: usize,
) -> (std::collections::HashSet<String>, usize) {
    let mut acked = std::collections::HashSet::new();
    let mut next = 0;
    let mut crashed = 0;
    for trial in 0..trials {
        let point = points[trial % points.len()];
        let hit = 1 + (trial / points.len()) % 2;
        let spec = format!("{point}@{hit}");
        let mut server = Server::start_to_crash(config, &[("PIPE_CRASH_AT", &spec)]).await;
        for _ in 0..2 {
            if server.child.try_wait().unwrap().is_some() {
                break;
            }
            acked.extend(post_some(&server, next, 3).await);
            next += 75;
            for pipeline in pipelines {
                request_flush(&server, pipeline).await;
            }
        }
        // The flush's connection drops as the process aborts; give it a
        // moment to be gone. Whatever the crash point did not end, a
        // SIGKILL does.
        for _ in 0..50 {
            if server.child.try_wait().unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        if let Ok(Some(_)) = server.child.try_wait() {
            crashed += 1;
            assert!(
                server.log_text().contains("crash point"),
                "trial {trial} ({spec})"
            );
        }
        server.kill();
    }
    (acked, crashed)
}

/// Starts the server on `config`, sends the getting-started events to
/// `ecommerce_stream`, commits them through pipeline `ecommerce`, stops it;
/// returns the events.
pub async fn deliver_getting_started(config: &Path) -> Value {
    let server = Server::start(config).await;
    let events = getting_started_events();
    assert_eq!(server.post_json("ecommerce_stream", &events).await.0, 200);
    assert_eq!(server.flush("ecommerce")["rows"], 3);
    server.stop();
    events
}

/// The SHA-256 digest of `token` as `pipe hash-token` prints it.
pub fn hex_digest(token: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(["hash-token", token])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Runs `cmd` with `input` on its standard input; returns its output.
pub fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Copies the folder `from` to `to`, recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Runs `pipe serve --config CONFIG`, which must refuse to start with exit
/// code 2 (a configuration it will not run); its standard error.
pub fn serve_refused(config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--config",
        ])
        .arg(config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    stderr
}

/// Every file under `dir`, recursively.
pub fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}
