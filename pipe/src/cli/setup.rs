//! `pipe setup`: the questions `wrangler pipelines setup` asks, then the
//! stream, sink and pipeline made on the running server.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use serde_json::{json, Map, Value};

use super::manage::{call, new_token, parse, read_json, Target};
use super::render::stream_details;
use crate::wire::StreamView;
use crate::{Error, Result};

/// Reads answers to the wizard's questions, one line each.
struct Prompt<R> {
    input: R,
}

impl<R: BufRead> Prompt<R> {
    /// Asks `question`; an empty answer takes `default`.
    fn ask(&mut self, question: &str, default: &str) -> Result<String> {
        if default.is_empty() {
            print!("{question}: ");
        } else {
            print!("{question} [{default}]: ");
        }
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        let n = self
            .input
            .read_line(&mut line)
            .map_err(|e| Error::Internal(format!("reading the answer: {e}")))?;
        if n == 0 {
            return Err(Error::Config("setup cancelled: the input ended".into()));
        }
        let answer = line.trim();
        if !std::io::stdin().is_terminal() {
            println!("{answer}");
        }
        Ok(if answer.is_empty() {
            default.to_string()
        } else {
            answer.to_string()
        })
    }

    fn yes(&mut self, question: &str, default: bool) -> Result<bool> {
        let hint = if default { "Y/n" } else { "y/N" };
        loop {
            let answer = self.ask(&format!("{question} ({hint})"), "")?;
            match answer.to_ascii_lowercase().as_str() {
                "" => return Ok(default),
                "y" | "yes" => return Ok(true),
                "n" | "no" => return Ok(false),
                _ => println!("  please answer y or n"),
            }
        }
    }
}

/// `pipe setup`: asks for a stream, a sink and a pipeline, and creates the
/// three on a running server. A failed step deletes what the earlier steps
/// created, so it can be run again.
pub async fn setup(target: &Target, input: impl BufRead) -> Result<()> {
    let server = target;
    let mut prompt = Prompt { input };
    println!(
        "pipe setup: a stream, a sink and a pipeline on {}\n",
        target.server
    );
    let pipeline = prompt.ask("Pipeline name", "events")?;
    println!("\nStream");
    let stream = prompt.ask("  Stream name", &format!("{pipeline}_stream"))?;
    let http = prompt.yes("  Enable the HTTP endpoint?", true)?;
    let auth = http && prompt.yes("  Require authentication?", false)?;
    let cors = if http {
        prompt.ask(
            "  CORS origins (comma-separated, * for any; empty for none)",
            "",
        )?
    } else {
        String::new()
    };
    let schema_file = prompt.ask(
        "  Schema file (Pipelines field format; empty for unstructured)",
        "",
    )?;
    println!("\nSink");
    let kind = loop {
        let k = prompt.ask(
            "  Destination: iceberg table, parquet or json files",
            "iceberg",
        )?;
        if matches!(k.as_str(), "iceberg" | "parquet" | "json") {
            break k;
        }
        println!("  please answer iceberg, parquet or json");
    };
    let sink = prompt.ask("  Sink name", &format!("{pipeline}_sink"))?;
    let mut sink_body = Map::new();
    sink_body.insert("name".into(), json!(sink));
    sink_body.insert("type".into(), json!(kind));
    if kind == "iceberg" {
        sink_body.insert(
            "namespace".into(),
            json!(prompt.ask("  Namespace", "default")?),
        );
        sink_body.insert("table".into(), json!(prompt.ask("  Table", &pipeline)?));
    } else {
        let path = prompt.ask(
            "  Path in the warehouse (empty: a folder named after the sink)",
            "",
        )?;
        if !path.is_empty() {
            sink_body.insert("path".into(), json!(path));
        }
    }
    let default_codec = if kind == "json" { "none" } else { "zstd" };
    sink_body.insert(
        "compression".into(),
        json!(prompt.ask("  Compression", default_codec)?),
    );
    let number = |answer: String, what: &str| {
        answer
            .parse::<u64>()
            .map_err(|_| Error::Config(format!("{what}: expected a whole number, got `{answer}`")))
    };
    sink_body.insert(
        "roll_size_mb".into(),
        json!(number(
            prompt.ask("  Roll file when size reaches (MB)", "128")?,
            "roll size"
        )?),
    );
    sink_body.insert(
        "roll_interval_secs".into(),
        json!(number(
            prompt.ask("  Roll file when time reaches (seconds)", "300")?,
            "roll interval"
        )?),
    );
    println!("\nSQL");
    let simple = format!("INSERT INTO {sink} SELECT * FROM {stream}");
    let sql = if prompt.yes(
        &format!("  Use the simple ingestion query ({simple})?"),
        true,
    )? {
        simple
    } else {
        prompt.ask("  SQL", &simple)?
    };
    println!();

    let token = auth.then(new_token);
    let mut stream_body = Map::new();
    stream_body.insert("name".into(), json!(stream));
    stream_body.insert("http".into(), json!(http));
    if let Some(t) = &token {
        stream_body.insert(
            "auth_token_sha256".into(),
            json!([hex::encode(pipe_ingest::http::token_digest(t))]),
        );
    }
    let origins: Vec<&str> = cors
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .collect();
    stream_body.insert("cors_origins".into(), json!(origins));
    if !schema_file.is_empty() {
        stream_body.insert(
            "schema".into(),
            read_json(Path::new(&schema_file), "schema file")?,
        );
    }
    let created_stream = call(
        reqwest::Method::POST,
        server,
        "/v1/streams",
        Some(&Value::Object(stream_body)),
    )
    .await?;
    println!("Created stream '{stream}'.");
    if let Err(e) = call(
        reqwest::Method::POST,
        server,
        "/v1/sinks",
        Some(&Value::Object(sink_body)),
    )
    .await
    {
        let _ = call(
            reqwest::Method::DELETE,
            server,
            &format!("/v1/streams/{stream}?force=true"),
            None,
        )
        .await;
        return Err(e);
    }
    println!("Created sink '{sink}'.");
    let body = json!({"name": pipeline, "sql": sql});
    if let Err(e) = call(reqwest::Method::POST, server, "/v1/pipelines", Some(&body)).await {
        let _ = call(
            reqwest::Method::DELETE,
            server,
            &format!("/v1/sinks/{sink}"),
            None,
        )
        .await;
        let _ = call(
            reqwest::Method::DELETE,
            server,
            &format!("/v1/streams/{stream}?force=true"),
            None,
        )
        .await;
        return Err(e);
    }
    println!("Created pipeline '{pipeline}'.\n");
    let view: StreamView = parse(&created_stream)?;
    print!("{}", stream_details(&view));
    let endpoint = view.endpoint;
    println!("\nSend events:");
    match &token {
        Some(t) => {
            println!("  Bearer token (shown once, not stored): {t}");
            println!("  curl -X POST {endpoint} -H 'Authorization: Bearer {t}' -H 'Content-Type: application/json' -d @events.json");
        }
        None => println!(
            "  curl -X POST {endpoint} -H 'Content-Type: application/json' -d @events.json"
        ),
    }
    println!("  pipe send {stream} events.ndjson");
    println!("Then: pipe pipelines get {pipeline}");
    Ok(())
}
