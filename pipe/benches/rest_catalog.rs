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

use std::sync::Arc;
use std::time::Instant;

use iceberg::{Catalog, TableIdent, TableUpdate};

#[path = "../../benches/serve_pipe.rs"]
mod serve_pipe;
use serde_json::json;
use serve_pipe::Server;

const LOADS: usize = 300;
const COMMITS: usize = 100;

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
    let server = Server::start(dir).await;
    let base = format!("{}/iceberg/v1/pipe", server.url);
    let http = reqwest::Client::new();
    let ok = |r: reqwest::Response| {
        assert!(r.status().is_success(), "{}", r.status());
        r
    };
    ok(http
        .post(format!("{}/namespaces", base))
        .json(&json!({"namespace": ["bench"]}))
        .send()
        .await
        .unwrap());
    ok(http
        .post(format!("{}/namespaces/bench/tables", base))
        .json(
            &json!({"name": "t", "schema": {"type": "struct", "schema-id": 0, "fields": [
            {"id": 1, "name": "id", "type": "long", "required": false}]}}),
        )
        .send()
        .await
        .unwrap());
    let table = format!("{}/namespaces/bench/tables/t", base);

    let settings = pipe_sink::CatalogSettings::local(&server.dir.path().join("data"));
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
