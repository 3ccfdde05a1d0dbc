//! `pipe streams|sinks|pipelines create|list|get|delete` and `pipe setup`:
//! the command-line client of a running server's admin API
//! ([`crate::server::admin`]). Human output is tables; `--json` prints the server's
//! JSON as it came.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{Args as ClapArgs, Subcommand};
use serde_json::{json, Map, Value};

use super::render::*;
use crate::{Error, ErrorKind, Result};

/// The default server address.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Where the server is, and how to print its answers.
#[derive(Debug, Clone, ClapArgs)]
pub struct Target {
    /// The server's address.
    #[arg(long, env = "PIPE_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// The server's JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Bearer token for a server with `[admin] auth_token_sha256`.
    #[arg(long, env = "PIPE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

impl Target {
    /// The server at `server`, without `--json` and with the token from
    /// `PIPE_ADMIN_TOKEN` (for commands that do not take these flags).
    pub fn at(server: &str) -> Self {
        Self {
            server: server.to_string(),
            json: false,
            admin_token: std::env::var("PIPE_ADMIN_TOKEN").ok(),
        }
    }
}

/// A name on the command line: what definitions take (letters, digits,
/// `_`, `-`), so that it is one path segment of the URL it goes into.
pub(crate) fn name_arg(name: &str) -> std::result::Result<String, String> {
    crate::config::check_name("name", name)
        .map(|()| name.to_string())
        .map_err(|e| e.to_string())
}

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

/// `pipe sinks …`.
// Parsed once per process: the size of the `create` variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum SinksAction {
    /// Create a sink: an Iceberg table, or Parquet / NDJSON files.
    Create {
        #[arg(value_parser = name_arg)]
        name: String,
        /// `iceberg`, `parquet` or `json`.
        #[arg(long = "type", default_value = "iceberg")]
        kind: String,
        /// Iceberg namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Iceberg table.
        #[arg(long)]
        table: Option<String>,
        /// Where files go (file sinks): a folder of the warehouse, or a path
        /// under the server's `file_sink_roots`.
        #[arg(long)]
        path: Option<String>,
        /// A partition field of the table, e.g. `day(__ingest_ts)`; repeatable.
        #[arg(long)]
        partition_by: Vec<String>,
        #[command(flatten)]
        settings: SinkSettings,
        #[command(flatten)]
        target: Target,
    },
    /// Change a sink's settings; the pipeline writing it switches to them
    /// after its last commit, losing and doubling nothing. Its table or
    /// folder stays.
    Update {
        #[arg(value_parser = name_arg)]
        name: String,
        #[command(flatten)]
        settings: SinkSettings,
        #[command(flatten)]
        set: SetKeys,
        /// Check the change and say what it would do; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Every sink, one line each.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// One sink: its table or folder, partitioning, sort order and roll
    /// settings.
    Get {
        #[arg(value_parser = name_arg)]
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a sink's definition (its table or files stay).
    Delete {
        #[arg(value_parser = name_arg)]
        name: String,
        #[arg(long, short = 'y')]
        force: bool,
        #[command(flatten)]
        target: Target,
    },
}

/// Any key of a definition, for `update`s: the settings without a flag
/// of their own.
#[derive(Debug, clap::Args)]
pub struct SetKeys {
    /// `KEY=VALUE`: set key KEY of the definition (as in `pipe.toml`) to
    /// VALUE, read as JSON if it is JSON (`5`, `true`, `["a"]`), else as
    /// text; `KEY=` unsets it. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl SetKeys {
    /// Puts each `KEY=VALUE` into `body` (an empty VALUE as `null`).
    fn into_body(self, body: &mut Map<String, Value>) -> Result<()> {
        for pair in self.set {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(Error::Config(format!(
                    "--set `{pair}`: expected KEY=VALUE (KEY= unsets KEY)"
                )));
            };
            let value = match value {
                "" => Value::Null,
                v => serde_json::from_str(v).unwrap_or_else(|_| Value::from(v)),
            };
            body.insert(key.trim().to_string(), value);
        }
        Ok(())
    }
}

/// A sink's settings that `create` sets and `update` changes.
#[derive(Debug, clap::Args)]
pub struct SinkSettings {
    /// Folder template of file sinks (strftime on `__ingest_ts`).
    #[arg(long)]
    partitioning: Option<String>,
    /// A column that gets a bloom filter, for lookups by id; repeatable.
    #[arg(long)]
    bloom_filter_column: Vec<String>,
    /// A column of the table's sort order, which compaction rewrites
    /// files in: `id`, `amount DESC`, `name ASC NULLS LAST`; repeatable.
    #[arg(long)]
    sort_by: Vec<String>,
    /// zstd, snappy, gzip, lz4, none.
    #[arg(long)]
    compression: Option<String>,
    /// Commit at least this often, in seconds.
    #[arg(long)]
    roll_interval: Option<u64>,
    /// Commit once this many MB were read.
    #[arg(long)]
    roll_size: Option<u64>,
    /// Commit once this many rows were written.
    #[arg(long)]
    roll_rows: Option<u64>,
    /// Largest Parquet row group, in rows.
    #[arg(long)]
    target_row_group_size: Option<usize>,
    /// The size data files and compaction aim for, in MB (Iceberg).
    #[arg(long)]
    target_file_size: Option<u64>,
}

impl SinkSettings {
    /// Puts the settings given into `body`, under the API's keys.
    fn into_body(self, body: &mut Map<String, Value>) {
        set(body, "partitioning", self.partitioning.map(Value::from));
        if !self.bloom_filter_column.is_empty() {
            body.insert(
                "bloom_filter_columns".into(),
                json!(self.bloom_filter_column),
            );
        }
        if !self.sort_by.is_empty() {
            body.insert("sort_by".into(), json!(self.sort_by));
        }
        set(body, "compression", self.compression.map(Value::from));
        set(
            body,
            "roll_interval_secs",
            self.roll_interval.map(Value::from),
        );
        set(body, "roll_size_mb", self.roll_size.map(Value::from));
        set(body, "roll_rows", self.roll_rows.map(Value::from));
        set(
            body,
            "row_group_rows",
            self.target_row_group_size.map(Value::from),
        );
        set(
            body,
            "target_file_size_mb",
            self.target_file_size.map(Value::from),
        );
    }
}

/// `pipe pipelines …`.
#[derive(Debug, Subcommand)]
pub enum PipelinesAction {
    /// Create a pipeline: `INSERT INTO sink SELECT … FROM stream`.
    Create {
        #[arg(value_parser = name_arg)]
        name: String,
        /// The SQL.
        #[arg(
            long,
            conflicts_with = "sql_file",
            required_unless_present = "sql_file"
        )]
        sql: Option<String>,
        /// A file holding the SQL.
        #[arg(long)]
        sql_file: Option<PathBuf>,
        /// Where rows the SQL fails on go, `namespace.table`.
        #[arg(long)]
        quarantine_table: Option<String>,
        /// Where it starts in its stream: `earliest` (every event the
        /// buffer holds; the default), `end` (events accepted from now
        /// on), `offset:N`, or `time:RFC3339`.
        #[arg(long)]
        start: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Every pipeline, one line each.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// One pipeline: its stream, sink and SQL, what it committed since the
    /// server started, and its recent errors with their reasons.
    Get {
        #[arg(value_parser = name_arg)]
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Change a running pipeline's SQL in place: the old SQL commits every
    /// event accepted so far, the new one takes every later event; none is
    /// skipped or read twice. The stream and the sink stay.
    Update {
        #[arg(value_parser = name_arg)]
        name: String,
        /// The new SQL.
        #[arg(long, conflicts_with = "sql_file")]
        sql: Option<String>,
        /// A file holding the new SQL.
        #[arg(long)]
        sql_file: Option<PathBuf>,
        /// Where rows the SQL fails on go from now on, `namespace.table`.
        #[arg(long)]
        quarantine_table: Option<String>,
        /// Check the change and say what it would do; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a pipeline after it commits what it has read.
    Delete {
        #[arg(value_parser = name_arg)]
        name: String,
        #[arg(long, short = 'y')]
        force: bool,
        /// Delete it even though an earlier delete could not commit its
        /// last events: they are given up.
        #[arg(long)]
        discard_uncommitted: bool,
        #[command(flatten)]
        target: Target,
    },
}

/// Calls a running server's admin API; returns the body of a 2xx answer.
/// An error answer becomes an error of its kind, with the server's message.
pub async fn call(
    method: reqwest::Method,
    target: &Target,
    path: &str,
    body: Option<&Value>,
) -> Result<String> {
    let url = format!("{}{path}", target.server.trim_end_matches('/'));
    let mut request = reqwest::Client::new().request(method.clone(), &url);
    if let Some(token) = &target.admin_token {
        request = request.bearer_auth(token);
    }
    // Every POST says it is JSON, a flush without a body too: the server
    // answers 415 otherwise (see `crate::server::access`).
    match body {
        Some(body) => request = request.json(body),
        None if method == reqwest::Method::POST => {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json");
        }
        None => {}
    }
    let response = request
        .send()
        .await
        .map_err(|e| Error::Remote(format!("calling `{url}`: {e}"), ErrorKind::Unavailable))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| {
        Error::Remote(
            format!("reading the answer of `{url}`: {e}"),
            ErrorKind::Unavailable,
        )
    })?;
    if status.is_success() {
        return Ok(text);
    }
    let (kind, message) = pipe_ingest::wire::ErrorAnswer::read(status.as_u16(), &text);
    Err(Error::Remote(message, kind))
}

/// Parses a JSON answer of the server.
pub fn parse(body: &str) -> Result<Value> {
    serde_json::from_str(body).map_err(|e| Error::Internal(format!("the server's answer: {e}")))
}

pub(crate) fn read_file(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("reading the {what} `{}`: {e}", path.display())))
}

pub(crate) fn read_json(path: &Path, what: &str) -> Result<Value> {
    serde_json::from_str(&read_file(path, what)?)
        .map_err(|e| Error::Config(format!("the {what} `{}` is not JSON: {e}", path.display())))
}

/// Puts `value` under `key` when it is set.
pub(crate) fn set(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        map.insert(key.into(), v);
    }
}

/// A new random bearer token (256 bits, hex).
pub(crate) fn new_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Asks before deleting: `--force`, or a `y` on a terminal.
pub(crate) fn confirm(question: &str, force: bool) -> Result<()> {
    if force {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Remote(
            format!("{question} Pass --force to confirm (standard input is not a terminal)."),
            ErrorKind::Conflict,
        ));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Error::Internal(format!("reading the answer: {e}")))?;
    if matches!(line.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Error::Remote("not deleted".into(), ErrorKind::Conflict))
    }
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
                let mut v = parse(&answer)?;
                if let Some(t) = &token {
                    v["token"] = json!(t);
                }
                println!("{v}");
            } else {
                println!("Created stream '{name}'.");
                print!("{}", stream_details(&parse(&answer)?));
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
            let body = Value::Object(body);
            let path = format!("/v1/streams/{name}?dry_run={dry_run}");
            let answer = call(reqwest::Method::PATCH, &target, &path, Some(&body)).await?;
            if target.json {
                println!("{answer}");
            } else {
                print!("{}", stream_update_summary(&name, &parse(&answer)?));
            }
        }
        StreamsAction::Delete {
            name,
            force,
            target,
        } => {
            let path = format!("/v1/streams/{name}");
            let stream = parse(&call(reqwest::Method::GET, &target, &path, None).await?)?;
            let unprocessed = stream["buffer"]["unprocessed_records"]
                .as_u64()
                .unwrap_or(0);
            let readers: Vec<String> = stream["pipelines"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_str())
                .map(String::from)
                .collect();
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
            remove(&target, &format!("{path}?force={force}"), "stream", &name).await?;
        }
    }
    Ok(())
}

/// Runs `pipe sinks …`.
pub async fn sinks(action: SinksAction) -> Result<()> {
    match action {
        SinksAction::Create {
            name,
            kind,
            namespace,
            table,
            path,
            partition_by,
            settings,
            target,
        } => {
            let mut body = Map::new();
            body.insert("name".into(), json!(name));
            body.insert("type".into(), json!(kind));
            set(&mut body, "namespace", namespace.map(Value::from));
            set(&mut body, "table", table.map(Value::from));
            set(&mut body, "path", path.map(Value::from));
            if !partition_by.is_empty() {
                body.insert("partition_by".into(), json!(partition_by));
            }
            settings.into_body(&mut body);
            create(&target, "sink", &name, body, sink_details).await?;
        }
        SinksAction::Update {
            name,
            settings,
            set: keys,
            dry_run,
            target,
        } => {
            let mut body = Map::new();
            settings.into_body(&mut body);
            keys.into_body(&mut body)?;
            if body.is_empty() {
                return Err(Error::Config(
                    "nothing to change: give a setting to change (see --help)".into(),
                ));
            }
            let path = format!("/v1/sinks/{name}?dry_run={dry_run}");
            let body = Value::Object(body);
            let answer = call(reqwest::Method::PATCH, &target, &path, Some(&body)).await?;
            if target.json {
                println!("{answer}");
            } else {
                print!("{}", sink_update_summary(&name, &parse(&answer)?));
            }
        }
        SinksAction::List { target } => {
            show(&target, "/v1/sinks", sinks_table).await?;
        }
        SinksAction::Get { name, target } => {
            show(&target, &format!("/v1/sinks/{name}"), sink_details).await?;
        }
        SinksAction::Delete {
            name,
            force,
            target,
        } => {
            confirm(
                &format!("Delete sink '{name}'? (Its table or files stay.)"),
                force,
            )?;
            remove(&target, &format!("/v1/sinks/{name}"), "sink", &name).await?;
        }
    }
    Ok(())
}

/// Runs `pipe pipelines …`.
pub async fn pipelines(action: PipelinesAction) -> Result<()> {
    match action {
        PipelinesAction::Create {
            name,
            sql,
            sql_file,
            quarantine_table,
            start,
            target,
        } => {
            let sql = match (sql, sql_file) {
                (Some(sql), _) => sql,
                (None, Some(path)) => read_file(&path, "SQL file")?,
                (None, None) => return Err(Error::Config("--sql or --sql-file".into())),
            };
            let mut body = Map::new();
            body.insert("name".into(), json!(name));
            body.insert("sql".into(), json!(sql));
            set(
                &mut body,
                "quarantine_table",
                quarantine_table.map(Value::from),
            );
            set(&mut body, "start", start.map(Value::from));
            create(&target, "pipeline", &name, body, pipeline_details).await?;
        }
        PipelinesAction::Update {
            name,
            sql,
            sql_file,
            quarantine_table,
            dry_run,
            target,
        } => {
            let sql = match (sql, sql_file) {
                (Some(sql), _) => Some(sql),
                (None, Some(path)) => Some(read_file(&path, "SQL file")?),
                (None, None) => None,
            };
            if sql.is_none() && quarantine_table.is_none() {
                return Err(Error::Config(
                    "nothing to change: give --sql, --sql-file or --quarantine-table".into(),
                ));
            }
            let mut body = Map::new();
            set(&mut body, "sql", sql.map(Value::from));
            set(
                &mut body,
                "quarantine_table",
                quarantine_table.map(Value::from),
            );
            let path = format!("/v1/pipelines/{name}?dry_run={dry_run}");
            let body = Value::Object(body);
            let answer = call(reqwest::Method::PATCH, &target, &path, Some(&body)).await?;
            if target.json {
                println!("{answer}");
            } else {
                print!("{}", update_summary(&parse(&answer)?));
            }
        }
        PipelinesAction::List { target } => {
            show(&target, "/v1/pipelines", pipelines_table).await?;
        }
        PipelinesAction::Get { name, target } => {
            show(&target, &format!("/v1/pipelines/{name}"), pipeline_details).await?;
        }
        PipelinesAction::Delete {
            name,
            force,
            discard_uncommitted,
            target,
        } => {
            confirm(
                &format!("Delete pipeline '{name}'? (It commits what it has read first.)"),
                force,
            )?;
            remove(
                &target,
                &format!("/v1/pipelines/{name}?force={discard_uncommitted}"),
                "pipeline",
                &name,
            )
            .await?;
        }
    }
    Ok(())
}

/// POSTs a create body to `/v1/{kind}s`; prints the answer: its JSON, or
/// `Created …` and `details`.
pub(crate) async fn create(
    target: &Target,
    kind: &str,
    name: &str,
    body: Map<String, Value>,
    details: fn(&Value) -> String,
) -> Result<()> {
    let path = format!("/v1/{kind}s");
    let answer = call(
        reqwest::Method::POST,
        target,
        &path,
        Some(&Value::Object(body)),
    )
    .await?;
    if target.json {
        println!("{answer}");
    } else {
        println!("Created {kind} '{name}'.");
        print!("{}", details(&parse(&answer)?));
    }
    Ok(())
}

/// GETs `path`; prints its JSON or `details`.
pub(crate) async fn show(target: &Target, path: &str, details: fn(&Value) -> String) -> Result<()> {
    let answer = call(reqwest::Method::GET, target, path, None).await?;
    if target.json {
        println!("{answer}");
    } else {
        print!("{}", details(&parse(&answer)?));
    }
    Ok(())
}

/// DELETEs `path`; prints what was deleted.
pub(crate) async fn remove(target: &Target, path: &str, kind: &str, name: &str) -> Result<()> {
    let answer = call(reqwest::Method::DELETE, target, path, None).await?;
    print_deleted(&answer, target.json, kind, name)
}

pub(crate) fn print_deleted(answer: &str, json: bool, kind: &str, name: &str) -> Result<()> {
    if json {
        println!("{answer}");
        return Ok(());
    }
    let v = parse(answer)?;
    println!("Deleted {kind} '{name}'.");
    for p in v["pipelines_deleted"].as_array().into_iter().flatten() {
        println!("Deleted pipeline '{}' with it.", text(p));
    }
    if let Some(n) = v["unprocessed_records_dropped"].as_u64().filter(|n| *n > 0) {
        println!("Dropped {n} accepted request(s) no pipeline had committed.");
    }
    Ok(())
}

// ---- rendering ----
