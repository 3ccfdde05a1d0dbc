//! `pipe streams|sinks|pipelines create|list|get|update|delete` (one
//! module each) and what they share with `pipe setup`, `pipe tables`
//! and `pipe reload`: the command-line client of a running server's admin
//! API ([`crate::server::admin`]). Answers are read as the [`crate::wire`]
//! types the server writes; human output is tables; `--json` prints the
//! server's JSON as it came.

use std::io::{IsTerminal, Write};
use std::path::Path;

use clap::Args as ClapArgs;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::{Error, ErrorKind, Result};

mod pipelines;
mod sinks;
mod streams;

pub use pipelines::{pipelines, PipelinesAction};
pub use sinks::{sinks, SinkSettings, SinksAction};
pub use streams::{streams, StreamsAction};

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

/// Parses a JSON answer of the server: a [`crate::wire`] type, or a
/// `Value` to print as it came.
pub fn parse<T: DeserializeOwned>(body: &str) -> Result<T> {
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

/// POSTs a create body to `/v1/{kind}s`; prints the answer: its JSON, or
/// `Created …` and `details` of the view `V` it answers.
pub(crate) async fn create<V: DeserializeOwned>(
    target: &Target,
    kind: &str,
    name: &str,
    body: Map<String, Value>,
    details: fn(&V) -> String,
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

/// PATCHes `body` to `/v1/{kind}s/{name}` (`?dry_run`); prints the
/// answer: its JSON, or what `summary` says of the outcome `U`.
pub(crate) async fn update<U: DeserializeOwned>(
    target: &Target,
    kind: &str,
    name: &str,
    body: Map<String, Value>,
    dry_run: bool,
    summary: fn(&str, &U) -> String,
) -> Result<()> {
    let path = format!("/v1/{kind}s/{name}?dry_run={dry_run}");
    let body = Value::Object(body);
    let answer = call(reqwest::Method::PATCH, target, &path, Some(&body)).await?;
    if target.json {
        println!("{answer}");
    } else {
        print!("{}", summary(name, &parse(&answer)?));
    }
    Ok(())
}

/// GETs `path`; prints its JSON or `details` of the answer `V`.
pub(crate) async fn show<V: DeserializeOwned>(
    target: &Target,
    path: &str,
    details: fn(&V) -> String,
) -> Result<()> {
    let answer = call(reqwest::Method::GET, target, path, None).await?;
    if target.json {
        println!("{answer}");
    } else {
        print!("{}", details(&parse(&answer)?));
    }
    Ok(())
}

/// DELETEs `path`; prints what was deleted: `Deleted …`, then what
/// `with_it` says of the answer `D` (what went with it).
pub(crate) async fn remove<D: DeserializeOwned>(
    target: &Target,
    path: &str,
    kind: &str,
    name: &str,
    with_it: fn(&D) -> String,
) -> Result<()> {
    let answer = call(reqwest::Method::DELETE, target, path, None).await?;
    if target.json {
        println!("{answer}");
        return Ok(());
    }
    let deleted = parse(&answer)?;
    println!("Deleted {kind} '{name}'.");
    print!("{}", with_it(&deleted));
    Ok(())
}
