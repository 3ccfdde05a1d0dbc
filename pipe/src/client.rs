//! [`Client`]: send events to a running server from Rust, the role of the
//! hosted service's Workers binding `send()`, and query its tables.
//!
//! Each [`Client::send`] is one request with its own `Idempotency-Key`;
//! a timeout, a 408, 429 or 5xx is retried with the same key, so a retried
//! send is stored once. The answer arrives once the events are on disk.
//! [`Client::query`] reads every acknowledged event, committed or not
//! (see `POST /v1/query` in the README).
//!
//! ```no_run
//! # async fn demo() -> pipe::Result<()> {
//! let client = pipe::Client::new("http://127.0.0.1:8080");
//! let sent = client
//!     .send("ecommerce_stream", &[serde_json::json!({"user_id": "u1", "event_type": "view"})])
//!     .await?;
//! assert_eq!(sent.accepted, 1);
//! # Ok(()) }
//! ```

use std::time::Duration;

use serde::Serialize;

use pipe_ingest::wire::{ErrorAnswer, IngestAnswer, Refused};

use crate::wire::{QueryAnswer, QueryRequest};

use crate::{Error, ErrorKind, Result};

/// A client of a `pipe` server's stream endpoints.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    server: String,
    token: Option<String>,
}

/// What a send stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub accepted: u64,
    /// Events set aside in the stream's quarantine table (quarantine mode).
    pub quarantined: u64,
    /// The answer came from an earlier try with the same key.
    pub replayed: bool,
}

impl Client {
    /// A client of the server at `server` (`http://host:port`).
    pub fn new(server: &str) -> Client {
        Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("a default HTTP client builds"),
            server: server.trim_end_matches('/').to_string(),
            token: None,
        }
    }

    /// Sends `Authorization: Bearer <token>` (streams with `auth`).
    pub fn with_token(mut self, token: impl Into<String>) -> Client {
        self.token = Some(token.into());
        self
    }

    /// Sends `records` to `stream` as one request. A record the stream's
    /// schema refuses fails the whole send (nothing is stored) with every
    /// problem listed.
    pub async fn send<T: Serialize>(&self, stream: &str, records: &[T]) -> Result<Sent> {
        let body = serde_json::to_string(records)
            .map_err(|e| Error::Config(format!("records do not serialize: {e}")))?;
        let url = format!("{}/v1/streams/{stream}", self.server);
        let answer = crate::cli::send::post_with_retries(
            &self.http,
            &url,
            self.token.as_deref(),
            body,
            "application/json",
        )
        .await?;
        match answer.read() {
            IngestAnswer::Accepted(a) => Ok(Sent {
                accepted: a.accepted,
                quarantined: a.quarantined,
                replayed: answer.replayed,
            }),
            IngestAnswer::Refused(Refused { errors }) => {
                let problems: Vec<String> = errors
                    .iter()
                    .map(|e| format!("record {}: {} ({})", e.index, e.message, e.kind.name()))
                    .collect();
                Err(Error::Remote(
                    format!("`{stream}` refused the records: {}", problems.join("; ")),
                    ErrorKind::InvalidInput,
                ))
            }
            IngestAnswer::Error(kind, message) => {
                Err(Error::Remote(format!("`{stream}`: {message}"), kind))
            }
        }
    }

    /// Runs one read-only statement on the server: its tables with every
    /// acknowledged event, committed or not. The token (if any) is the
    /// query endpoint's.
    pub async fn query(&self, sql: &str) -> Result<QueryAnswer> {
        self.query_with(&QueryRequest::new(sql)).await
    }

    /// [`Client::query`] with the request's every option
    /// (`committed_only`, `max_rows`, `timeout_secs`).
    pub async fn query_with(&self, request: &QueryRequest) -> Result<QueryAnswer> {
        let url = format!("{}/v1/query", self.server);
        let mut call = self.http.post(&url).json(request);
        if let Some(timeout) = request.timeout_secs {
            call = call.timeout(Duration::from_secs(timeout + 10));
        }
        if let Some(token) = &self.token {
            call = call.bearer_auth(token);
        }
        let unavailable = |e: reqwest::Error| {
            Error::Remote(format!("calling `{url}`: {e}"), ErrorKind::Unavailable)
        };
        let response = call.send().await.map_err(unavailable)?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(unavailable)?;
        if status != 200 {
            let (kind, message) = ErrorAnswer::read(status, &text);
            return Err(Error::Remote(message, kind));
        }
        serde_json::from_str(&text)
            .map_err(|e| Error::Internal(format!("the answer of `{url}`: {e}")))
    }
}
