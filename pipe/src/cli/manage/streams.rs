//! `pipe streams create|list|get|update|delete`.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{json, Map, Value};

use super::{
    call, confirm, name_arg, new_token, parse, read_json, remove, set, show, update, SetKeys,
    Target,
};
use crate::cli::render::{deleted_with, stream_details, stream_update_summary, streams_table};
use crate::wire::StreamView;
use crate::{Error, ErrorKind, Result};

/// `pipe streams …`.
#[derive(Debug, Subcommand)]
pub enum StreamsAction {
    /// Create a stream; it takes events at once.
    Create {
        #[arg(value_parser = name_arg)]
        name: String,
        /// Schema in the Pipelines field format (`{"fields": [...]}`); none: unstructured.
        #[arg(long, conflicts_with = "json_schema_file")]
        schema_file: Option<PathBuf>,
        /// A JSON Schema document instead: every event is checked against it.
        #[arg(long)]
        json_schema_file: Option<PathBuf>,
        /// Whether the stream takes events over HTTP.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        http_enabled: bool,
        /// Require a bearer token: one is generated and printed once.
        #[arg(long)]
        http_auth: bool,
        /// Require a token whose SHA-256 is this (`pipe hash-token`); repeatable.
        #[arg(long)]
        auth_token_sha256: Vec<String>,
        /// An origin browsers may send from, or `*`; repeatable.
        #[arg(long)]
        cors_origin: Vec<String>,
        /// A request with bad events: `reject` it whole, or `quarantine` the bad ones.
        #[arg(long)]
        invalid_events: Option<String>,
        /// Fields not in the schema: `reject`, `drop` or `keep`.
        #[arg(long)]
        unknown_fields: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Every stream.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// One stream: endpoint, schema, buffer, pipelines, figures.
    Get {
        #[arg(value_parser = name_arg)]
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Change a stream in place. Its schema: new optional fields, int32 →
    /// int64, float32 → float64, required → optional; its pipelines
    /// switch at an offset and their tables evolve, and events buffered
    /// under the old schema are read as the new one. Its settings (tokens,
    /// origins, limits, unknown fields): the next request is handled with
    /// them.
    Update {
        #[arg(value_parser = name_arg)]
        name: String,
        /// The new schema, in the Pipelines field format.
        #[arg(long, conflicts_with = "json_schema_file")]
        schema_file: Option<PathBuf>,
        /// The new schema as a JSON Schema document.
        #[arg(long)]
        json_schema_file: Option<PathBuf>,
        /// Whether the stream takes events over HTTP.
        #[arg(long, action = clap::ArgAction::Set)]
        http_enabled: Option<bool>,
        /// Accept only tokens whose SHA-256 is this (`pipe hash-token`);
        /// repeatable, replaces the stream's list.
        #[arg(long)]
        auth_token_sha256: Vec<String>,
        /// Accept any request, without a token.
        #[arg(long, conflicts_with = "auth_token_sha256")]
        no_auth: bool,
        /// An origin browsers may send from, or `*`; repeatable, replaces
        /// the stream's list.
        #[arg(long)]
        cors_origin: Vec<String>,
        /// Fields not in the schema: `reject` or `drop` (`keep` adds a
        /// column: a schema change).
        #[arg(long)]
        unknown_fields: Option<String>,
        #[command(flatten)]
        set: SetKeys,
        /// Check the change and say what it would do; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a stream and its buffer.
    Delete {
        #[arg(value_parser = name_arg)]
        name: String,
        /// Skip the confirmation; also needed when events would be lost or
        /// pipelines read the stream (they are deleted with it, after
        /// committing what they have).
        #[arg(long, short = 'y', alias = "y")]
        force: bool,
        #[command(flatten)]
        target: Target,
    },
}

/// Runs `pipe streams …`.
pub async fn streams(action: StreamsAction) -> Result<()> {
    match action {
        StreamsAction::Create {
            name,
            schema_file,
            json_schema_file,
            http_enabled,
            http_auth,
            mut auth_token_sha256,
            cors_origin,
            invalid_events,
            unknown_fields,
            target,
        } => {
            let token = http_auth.then(new_token);
            if let Some(t) = &token {
                auth_token_sha256.push(hex::encode(pipe_ingest::http::token_digest(t)));
            }
            let mut body = Map::new();
            body.insert("name".into(), json!(name));
            set(
                &mut body,
                "schema",
                schema_file
                    .map(|p| read_json(&p, "schema file"))
                    .transpose()?,
            );
            set(
                &mut body,
                "json_schema",
                json_schema_file
                    .map(|p| read_json(&p, "JSON Schema file"))
                    .transpose()?,
            );
            body.insert("http".into(), json!(http_enabled));
            body.insert("auth_token_sha256".into(), json!(auth_token_sha256));
            body.insert("cors_origins".into(), json!(cors_origin));
            set(&mut body, "invalid_events", invalid_events.map(Value::from));
            set(&mut body, "unknown_fields", unknown_fields.map(Value::from));
            let answer = call(
                reqwest::Method::POST,
                &target,
                "/v1/streams",
                Some(&Value::Object(body)),
            )
            .await?;
            if target.json {
                let mut v: Value = parse(&answer)?;
                if let Some(t) = &token {
                    v["token"] = json!(t);
                }
                println!("{v}");
            } else {
                println!("Created stream '{name}'.");
                print!("{}", stream_details(&parse::<StreamView>(&answer)?));
                if let Some(t) = token {
                    println!("\nBearer token (shown once, not stored; send `Authorization: Bearer <token>`):\n  {t}");
                }
            }
        }
        StreamsAction::List { target } => {
            show(&target, "/v1/streams", streams_table).await?;
        }
        StreamsAction::Get { name, target } => {
            show(&target, &format!("/v1/streams/{name}"), stream_details).await?;
        }
        StreamsAction::Update {
            name,
            schema_file,
            json_schema_file,
            http_enabled,
            auth_token_sha256,
            no_auth,
            cors_origin,
            unknown_fields,
            set: keys,
            dry_run,
            target,
        } => {
            let mut body = Map::new();
            if let Some(p) = schema_file {
                body.insert("schema".into(), read_json(&p, "schema file")?);
            }
            if let Some(p) = json_schema_file {
                body.insert("json_schema".into(), read_json(&p, "JSON Schema file")?);
            }
            set(&mut body, "http", http_enabled.map(Value::from));
            if no_auth {
                body.insert("auth_token_sha256".into(), json!([]));
            } else if !auth_token_sha256.is_empty() {
                body.insert("auth_token_sha256".into(), json!(auth_token_sha256));
            }
            if !cors_origin.is_empty() {
                body.insert("cors_origins".into(), json!(cors_origin));
            }
            set(&mut body, "unknown_fields", unknown_fields.map(Value::from));
            keys.into_body(&mut body)?;
            if body.is_empty() {
                return Err(Error::Config(
                    "nothing to change: give a schema file or a setting to change (see --help)"
                        .into(),
                ));
            }
            update(
                &target,
                "stream",
                &name,
                body,
                dry_run,
                stream_update_summary,
            )
            .await?;
        }
        StreamsAction::Delete {
            name,
            force,
            target,
        } => {
            let path = format!("/v1/streams/{name}");
            let stream: StreamView =
                parse(&call(reqwest::Method::GET, &target, &path, None).await?)?;
            let unprocessed = stream.buffer.map_or(0, |b| b.unprocessed_records);
            let readers = stream.pipelines;
            let mut warnings = Vec::new();
            if unprocessed > 0 {
                warnings.push(format!(
                    "stream '{name}' holds {unprocessed} accepted request(s) not committed by any pipeline it has now: they would be lost"
                ));
            }
            if !readers.is_empty() {
                warnings.push(format!(
                    "pipeline(s) {} read it and would be deleted too (after committing what they have read)",
                    readers.join(", ")
                ));
            }
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            if !warnings.is_empty() && !force {
                return Err(Error::Remote(
                    format!("stream '{name}' not deleted: pass --force to delete it anyway"),
                    ErrorKind::Conflict,
                ));
            }
            confirm(&format!("Delete stream '{name}' and its buffer?"), force)?;
            let path = format!("{path}?force={force}");
            remove(&target, &path, "stream", &name, deleted_with).await?;
        }
    }
    Ok(())
}
