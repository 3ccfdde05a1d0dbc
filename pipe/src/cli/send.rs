//! `pipe send STREAM [FILE|-]`: posts events from a file or standard input
//! to a running server, in NDJSON batches, and sums up what happened.
//!
//! - Input: NDJSON (one event per line; blank lines skipped) or one JSON
//!   array (the input's first character is `[`). A line that is not JSON
//!   is reported (`parse_failure`) and not sent: the server would refuse
//!   its whole request for it.
//! - Batches of at most `--batch-events` events and `--batch-bytes` bytes,
//!   several in flight. Each batch carries an `Idempotency-Key`, so a batch
//!   retried after a timeout or a 5xx is never stored twice.
//! - A batch the stream refuses (reject mode: a bad event refuses its whole
//!   request, storing nothing) is sent again without the refused events, so
//!   only the bad events are lost, each reported with its line.
//! - A progress line on standard error when it is a terminal; a summary at
//!   the end: accepted, quarantined and rejected events, the rejections by
//!   error type, and the first few reasons with their line numbers.

use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use pipe_ingest::wire::{IngestAnswer, Refused};
use pipe_schemas::EventError;

use crate::{Error, ErrorKind, Result};

/// How `pipe send` batches and sends.
#[derive(Debug, Clone)]
pub struct SendOptions {
    pub server: String,
    pub stream: String,
    /// Bearer token for streams that require one.
    pub token: Option<String>,
    pub batch_events: usize,
    pub batch_bytes: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Show a progress line (when standard error is a terminal).
    pub progress: bool,
}

/// One rejected event.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// Line of the input (1-based; for a JSON array, the element's position).
    pub line: u64,
    pub kind: String,
    pub message: String,
}

/// What a `pipe send` did.
#[derive(Debug, Default, Clone)]
pub struct SendSummary {
    pub events: u64,
    pub bytes: u64,
    pub batches: u64,
    pub accepted: u64,
    pub quarantined: u64,
    pub rejected: u64,
    /// Rejected or quarantined problems by error type.
    pub by_type: BTreeMap<String, u64>,
    /// The first rejections, in input order.
    pub first: Vec<Rejection>,
    pub seconds: f64,
}

/// Problems listed in the summary.
const SHOWN: usize = 10;

impl std::fmt::Display for SendSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "sent {} events ({:.1} MB) in {} requests in {:.2} s ({:.0} events/s, {:.1} MB/s)",
            self.events,
            self.bytes as f64 / 1e6,
            self.batches,
            self.seconds,
            self.events as f64 / self.seconds.max(1e-9),
            self.bytes as f64 / 1e6 / self.seconds.max(1e-9)
        )?;
        writeln!(
            f,
            "accepted {}, quarantined {}, rejected {}",
            self.accepted, self.quarantined, self.rejected
        )?;
        if !self.by_type.is_empty() {
            let types: Vec<String> = self
                .by_type
                .iter()
                .map(|(k, n)| format!("{k} ×{n}"))
                .collect();
            writeln!(f, "problems by type: {}", types.join(", "))?;
        }
        for r in &self.first {
            writeln!(f, "  line {}: {} ({})", r.line, r.message, r.kind)?;
        }
        if self.rejected as usize > self.first.len() {
            writeln!(
                f,
                "  … and {} more",
                self.rejected as usize - self.first.len()
            )?;
        }
        Ok(())
    }
}

/// A batch: its events (raw JSON text) and the input line of each.
#[derive(Default)]
struct Batch {
    events: Vec<String>,
    lines: Vec<u64>,
    /// Lines that are not JSON: never sent (the server would refuse the
    /// whole request for one), reported as `parse_failure`.
    invalid: Vec<Rejection>,
}

impl Batch {
    fn body(&self) -> String {
        let mut body = String::with_capacity(self.events.iter().map(|e| e.len() + 1).sum());
        for e in &self.events {
            body.push_str(e);
            body.push('\n');
        }
        body
    }
}

/// Reads events from `input`, sends them, and returns the summary.
pub async fn send(input: Box<dyn Read + Send>, options: SendOptions) -> Result<SendSummary> {
    let started = Instant::now();
    let (tx, mut rx) = mpsc::channel::<Batch>(options.concurrency * 2);
    let (batch_events, batch_bytes) = (options.batch_events.max(1), options.batch_bytes.max(1));
    let reader =
        tokio::task::spawn_blocking(move || read_batches(input, batch_events, batch_bytes, tx));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| Error::Internal(format!("HTTP client: {e}")))?;
    let url = format!(
        "{}/v1/streams/{}",
        options.server.trim_end_matches('/'),
        options.stream
    );
    let progress =
        (options.progress && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                    .expect("a valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
    let mut summary = SendSummary::default();
    let mut rejections = Vec::new();
    let mut in_flight = JoinSet::new();
    let mut input_done = false;
    loop {
        while !input_done && in_flight.len() < options.concurrency.max(1) {
            match rx.recv().await {
                Some(batch) => {
                    summary.events += (batch.events.len() + batch.invalid.len()) as u64;
                    summary.bytes += batch.events.iter().map(|e| e.len() as u64 + 1).sum::<u64>();
                    let (client, url, token) = (client.clone(), url.clone(), options.token.clone());
                    in_flight.spawn(async move {
                        send_batch(&client, &url, token.as_deref(), batch).await
                    });
                }
                None => input_done = true,
            }
        }
        let Some(done) = in_flight.join_next().await else {
            break;
        };
        let outcome = done.map_err(|e| Error::Internal(format!("a send task failed: {e}")))??;
        summary.batches += outcome.requests;
        summary.accepted += outcome.accepted;
        summary.quarantined += outcome.quarantined;
        summary.rejected += outcome.rejected.len() as u64;
        for (kind, n) in outcome.by_type {
            *summary.by_type.entry(kind).or_default() += n;
        }
        rejections.extend(outcome.rejected);
        if let Some(bar) = &progress {
            bar.set_message(format!(
                "{} events accepted, {} rejected, {:.1} MB read",
                summary.accepted,
                summary.rejected,
                summary.bytes as f64 / 1e6
            ));
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    reader
        .await
        .map_err(|e| Error::Internal(format!("the input reader failed: {e}")))??;
    rejections.sort_by_key(|r| r.line);
    rejections.truncate(SHOWN);
    summary.first = rejections;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Splits the input into batches (NDJSON lines, or a JSON array's elements).
fn read_batches(
    input: Box<dyn Read + Send>,
    batch_events: usize,
    batch_bytes: usize,
    tx: mpsc::Sender<Batch>,
) -> Result<()> {
    let mut input = std::io::BufReader::with_capacity(1 << 20, input);
    let starts_array = {
        let buf = input
            .fill_buf()
            .map_err(|e| Error::Config(format!("reading the input: {e}")))?;
        buf.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[')
    };
    let mut batch = Batch::default();
    let mut size = 0;
    let push = |event: String, line: u64, batch: &mut Batch, size: &mut usize| -> bool {
        *size += event.len() + 1;
        batch.events.push(event);
        batch.lines.push(line);
        if batch.events.len() >= batch_events || *size >= batch_bytes {
            *size = 0;
            let full = std::mem::take(batch);
            return tx.blocking_send(full).is_ok();
        }
        true
    };
    if starts_array {
        let mut text = String::new();
        input
            .read_to_string(&mut text)
            .map_err(|e| Error::Config(format!("reading the input: {e}")))?;
        let events: Vec<&serde_json::value::RawValue> = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("the input is not a JSON array of events: {e}")))?;
        for (i, e) in events.into_iter().enumerate() {
            if !push(e.get().to_string(), i as u64 + 1, &mut batch, &mut size) {
                return Ok(());
            }
        }
    } else {
        for (i, line) in input.lines().enumerate() {
            let line = line.map_err(|e| Error::Config(format!("reading line {}: {e}", i + 1)))?;
            if line.trim().is_empty() {
                continue;
            }
            if let Err(e) = serde_json::from_str::<&serde_json::value::RawValue>(&line) {
                batch.invalid.push(Rejection {
                    line: i as u64 + 1,
                    kind: "parse_failure".into(),
                    message: format!("not JSON: {e}"),
                });
                continue;
            }
            if !push(line, i as u64 + 1, &mut batch, &mut size) {
                return Ok(());
            }
        }
    }
    if !batch.events.is_empty() || !batch.invalid.is_empty() {
        let _ = tx.blocking_send(batch);
    }
    Ok(())
}

/// What one batch came to.
#[derive(Default)]
struct Outcome {
    requests: u64,
    accepted: u64,
    quarantined: u64,
    rejected: Vec<Rejection>,
    by_type: BTreeMap<String, u64>,
}

/// Sends a batch, retrying safely; resends it without refused events.
async fn send_batch(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    mut batch: Batch,
) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    for bad in std::mem::take(&mut batch.invalid) {
        *outcome.by_type.entry(bad.kind.clone()).or_default() += 1;
        outcome.rejected.push(bad);
    }
    loop {
        if batch.events.is_empty() {
            return Ok(outcome);
        }
        let answer =
            post_with_retries(client, url, token, batch.body(), "application/x-ndjson").await?;
        outcome.requests += 1;
        let mut count_types = |errors: &[EventError]| {
            for e in errors {
                *outcome
                    .by_type
                    .entry(e.kind.name().to_string())
                    .or_default() += 1;
            }
        };
        match answer.read() {
            IngestAnswer::Accepted(accepted) => {
                outcome.accepted += accepted.accepted;
                outcome.quarantined += accepted.quarantined;
                count_types(&accepted.errors);
                return Ok(outcome);
            }
            IngestAnswer::Refused(Refused { errors }) => {
                // Nothing of this request was stored: drop the refused
                // events and send the rest again.
                count_types(&errors);
                let mut refused: BTreeMap<usize, (String, String)> = BTreeMap::new();
                for e in &errors {
                    let message = if e.field.is_empty() {
                        e.message.clone()
                    } else {
                        format!("`{}`: {}", e.field, e.message)
                    };
                    refused
                        .entry(e.index)
                        .or_insert((e.kind.name().to_string(), message));
                }
                if refused.is_empty() {
                    return Err(Error::Remote(
                        "the stream refused a request without saying which events".into(),
                        ErrorKind::InvalidInput,
                    ));
                }
                let mut kept = Batch::default();
                for (i, (event, line)) in batch.events.into_iter().zip(batch.lines).enumerate() {
                    match refused.remove(&i) {
                        Some((kind, message)) => outcome.rejected.push(Rejection {
                            line,
                            kind,
                            message,
                        }),
                        None => {
                            kept.events.push(event);
                            kept.lines.push(line);
                        }
                    }
                }
                batch = kept;
            }
            IngestAnswer::Error(kind, message) => {
                return Err(Error::Remote(
                    format!("the server answered {}: {message}", answer.status),
                    kind,
                ));
            }
        }
    }
}

/// A server's answer to a POST.
pub(crate) struct Answer {
    pub status: u16,
    pub body: String,
    /// Answered from an earlier try with the same idempotency key.
    pub replayed: bool,
}

impl Answer {
    /// The answer as the stream wrote it ([`pipe_ingest::wire`]).
    pub fn read(&self) -> IngestAnswer {
        IngestAnswer::read(self.status, &self.body)
    }
}

/// POSTs one body with an idempotency key, retrying what may be transient
/// (connection errors, timeouts, 408, 409, 429, 5xx) with backoff.
pub(crate) async fn post_with_retries(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: String,
    content_type: &str,
) -> Result<Answer> {
    let key = uuid::Uuid::new_v4().to_string();
    let mut delay = Duration::from_millis(100);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut request = client
            .post(url)
            .header("content-type", content_type)
            .header("idempotency-key", &key)
            .body(body.clone());
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let transient = match request.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                // 409: the first try with this key is still being
                // processed (a client that timed out and retried); once it
                // ends, the retry gets its answer.
                let transient = matches!(status, 408 | 409 | 429) || status >= 500;
                if !transient || attempt >= 8 {
                    let replayed = r.headers().contains_key("idempotent-replayed");
                    let body = r.text().await.unwrap_or_default();
                    return Ok(Answer {
                        status,
                        body,
                        replayed,
                    });
                }
                format!("status {status}")
            }
            Err(e) if attempt < 8 => e.to_string(),
            Err(e) => {
                return Err(Error::Remote(
                    format!("sending to {url}: {e}"),
                    ErrorKind::Unavailable,
                ))
            }
        };
        tracing::warn!(attempt, error = %transient, "request failed; retrying with the same idempotency key");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
