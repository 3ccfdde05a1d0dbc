//! What the Iceberg REST catalog (`/iceberg`) costs a client against the
//! same calls made in process (issue 18's report), on the real `pipe
//! serve` (release build) over its default SQLite catalog and local
//! warehouse: loading a table (`GET …/tables/{table}` against
//! `Catalog::load_table`) and committing a change of properties (`POST
//! …/tables/{table}` against the sinks' `Committer::commit`). Prints p50,
//! p99 and the mean of each, and the REST ÷ in-process ratios.
//!
//! A program that prints figures, not a test: it asserts nothing.
//!
//! ```sh
//! cargo bench -p pipe --bench rest_catalog
//! ```

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iceberg::{Catalog, TableIdent, TableUpdate};
use serde_json::json;

const LOADS: usize = 300;
const COMMITS: usize = 100;

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn figures(name: &str, mut ms: Vec<f64>) -> f64 {
    ms.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    println!(
        "{name:<32} p50 {:>7.2} ms   p99 {:>7.2} ms   mean {:>7.2} ms   ({} calls)",
        at(0.5),
        at(0.99),
        mean,
        ms.len()
    );
    at(0.5)
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pipe.toml"), "data_dir = \"data\"\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--config",
        ])
        .arg(dir.path().join("pipe.toml"))
        .env("PIPE_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}/iceberg/v1/pipe"),
    };
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if http
            .get(format!("{}/namespaces", server.url))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ok = |r: reqwest::Response| {
        assert!(r.status().is_success(), "{}", r.status());
        r
    };
    ok(http
        .post(format!("{}/namespaces", server.url))
        .json(&json!({"namespace": ["bench"]}))
        .send()
        .await
        .unwrap());
    ok(http
        .post(format!("{}/namespaces/bench/tables", server.url))
        .json(
            &json!({"name": "t", "schema": {"type": "struct", "schema-id": 0, "fields": [
            {"id": 1, "name": "id", "type": "long", "required": false}]}}),
        )
        .send()
        .await
        .unwrap());
    let table = format!("{}/namespaces/bench/tables/t", server.url);

    let settings = pipe_sink::CatalogSettings::local(&dir.path().join("data"));
    let catalog: Arc<dyn Catalog> = pipe_sink::open_catalog(&settings).await.unwrap();
    let committer = pipe_sink::maintenance::Committer::open(&settings)
        .await
        .unwrap();
    let ident = TableIdent::from_strs(["bench", "t"]).unwrap();

    println!("load a table ({LOADS} times) and commit a property change ({COMMITS} times):");
    let mut rest = Vec::new();
    for _ in 0..LOADS {
        let t = Instant::now();
        let body = ok(http.get(&table).send().await.unwrap())
            .bytes()
            .await
            .unwrap();
        assert!(!body.is_empty());
        rest.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let rest_load = figures("load table, REST", rest);
    let mut local = Vec::new();
    for _ in 0..LOADS {
        let t = Instant::now();
        catalog.load_table(&ident).await.unwrap();
        local.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let local_load = figures("load table, in process", local);

    let mut rest = Vec::new();
    for i in 0..COMMITS {
        let t = Instant::now();
        ok(http
            .post(&table)
            .json(&json!({"requirements": [], "updates": [
                {"action": "set-properties", "updates": {"n": format!("rest-{i}")}}]}))
            .send()
            .await
            .unwrap());
        rest.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let rest_commit = figures("commit, REST", rest);
    let mut local = Vec::new();
    for i in 0..COMMITS {
        let t = Instant::now();
        let update = TableUpdate::SetProperties {
            updates: [("n".to_string(), format!("local-{i}"))].into(),
        };
        committer
            .commit(&catalog, &ident, &[], vec![update])
            .await
            .map_err(|f| f.error)
            .unwrap();
        local.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let local_commit = figures("commit, in process", local);
    println!(
        "REST ÷ in process (p50): load {:.2}×, commit {:.2}×",
        rest_load / local_load,
        rest_commit / local_commit
    );
    drop(server);
}
