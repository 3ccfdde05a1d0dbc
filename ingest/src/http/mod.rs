//! The HTTP ingest endpoint.
//!
//! `POST /v1/streams/{stream}` with a JSON array of events, one JSON object,
//! or NDJSON (`Content-Type: application/x-ndjson`), optionally
//! `Content-Encoding: gzip`.
//!
//! | outcome                               | status | body                                              |
//! |---------------------------------------|--------|---------------------------------------------------|
//! | every event valid, on disk            | 200    | `{"accepted": N}` (+ `"dropped_fields"` when dropping) |
//! | quarantine mode, some events invalid  | 200    | `{"accepted": N, "quarantined": M, "errors": [...]}` |
//! | some event invalid                    | 400    | `{"errors": [{"index","field","type","message"}]}` |
//! | body not JSON / not events / bad gzip | 400    | `{"error": {"kind": "invalid_input", "message"}}` |
//! | missing or wrong bearer token         | 401    | `{"error": {"kind": "unauthorized", …}}`, no detail |
//! | unknown stream, or HTTP disabled      | 404    | `{"error": …}`                                    |
//! | body not received within the body timeout | 408 | `{"error": …}`                                    |
//! | body, decompressed body or event count over the stream's limit | 413 | `{"error": …}` naming the limit |
//! | same `Idempotency-Key` still in flight | 409   | `{"error": …}`                                    |
//! | buffer queue full / shutting down     | 503    | `{"error": …}` + `Retry-After: 1`                 |
//!
//! With `Idempotency-Key: K`, a request already accepted with K inside the
//! stream's window is answered with its first answer (plus
//! `Idempotent-Replayed: true`) and adds nothing; see [`crate::idempotency`].
//!
//! A request is all or nothing: when it is refused, none of its events is kept.
//!
//! Each stream has its own [`StreamPolicy`]: bearer tokens (kept as SHA-256
//! digests, compared in constant time), CORS origins (answered on preflight),
//! and limits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use pipe_schemas::{BodyFormat, Decoded, EventDecoder};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::debug;

use crate::buffer::Appender;
use crate::idempotency::{Answer, Begin, KeyIndex};
use crate::payload::{self, RequestMeta, MAX_KEY_LEN};
use crate::ErrorKind;

mod body;
use body::{drain, read_body, DRAIN_LIMIT};
pub use body::{gunzip, gunzip_within, GunzipError};

/// Default largest request body: 5 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 5 * 1024 * 1024;
/// Default largest body after gzip decompression: 50 MiB.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 50 * 1024 * 1024;
/// Default [`StreamPolicy::max_inflight_bytes`]: 256 MiB.
pub const DEFAULT_MAX_INFLIGHT_BYTES: usize = 256 * 1024 * 1024;
/// Default most events per request.
pub const DEFAULT_MAX_EVENTS: usize = 100_000;

/// Who may send to a stream over HTTP, from where, and how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPolicy {
    /// Whether the stream takes events over HTTP at all.
    pub http_enabled: bool,
    /// SHA-256 digests of the accepted bearer tokens; empty: no auth.
    pub token_digests: Vec<[u8; 32]>,
    /// Origins browsers may send from (`*` for any); empty: no CORS.
    pub cors_origins: Vec<String>,
    /// Largest request body, as sent.
    pub max_body_bytes: usize,
    /// Largest request body after gzip decompression.
    pub max_decompressed_bytes: usize,
    /// Most body bytes (as sent, and after inflating) the stream's requests
    /// may hold in memory at once, from the first byte read until the
    /// request's answer: past it, requests get 503 at once. Bounds what
    /// many concurrent (gzip) requests cost, whatever their number.
    pub max_inflight_bytes: usize,
    /// Keep a request's good events and quarantine its bad ones, instead of
    /// refusing the whole request.
    pub quarantine: bool,
}

impl Default for StreamPolicy {
    fn default() -> Self {
        Self {
            http_enabled: true,
            token_digests: Vec::new(),
            cors_origins: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
            max_inflight_bytes: DEFAULT_MAX_INFLIGHT_BYTES,
            quarantine: false,
        }
    }
}

/// The SHA-256 digest of a token, as stored in a [`StreamPolicy`].
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A stream as the HTTP layer sees it.
#[derive(Debug, Clone)]
pub struct StreamEndpoint {
    pub decoder: EventDecoder,
    pub appender: Appender,
    pub policy: StreamPolicy,
    /// The budget of [`StreamPolicy::max_inflight_bytes`], in bytes.
    pub inflight: Arc<Semaphore>,
    /// Idempotency keys seen within the stream's window.
    pub keys: Arc<KeyIndex>,
    /// What the stream has taken in since the server started.
    pub stats: Arc<StreamStats>,
}

/// A stream's ingest figures since the server started, named as the hosted
/// service's operator and user-error metrics are.
#[derive(Debug, Default)]
pub struct StreamStats {
    /// Requests that reached the stream (authorized, any outcome).
    pub requests: AtomicU64,
    /// Body bytes decoded (after gzip), `bytesIn`.
    pub bytes_in: AtomicU64,
    /// Events accepted and on disk, `recordsIn`.
    pub records_in: AtomicU64,
    /// Events refused (reject mode) or quarantined, `decodeErrors`.
    pub decode_errors: AtomicU64,
    /// Problems by error type (`missing_field`, `type_mismatch`, …); an
    /// event may have several.
    user_errors: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// The last [`RECENT_REJECTIONS`] problems, newest last.
    recent: std::sync::Mutex<std::collections::VecDeque<Rejection>>,
}

/// `text`'s first `chars` characters, and `…` when there were more.
fn cut(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// Problems a stream keeps for its view (`GET /v1/streams/{name}`).
pub const RECENT_REJECTIONS: usize = 20;

/// One problem with an event a stream refused or set aside.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rejection {
    /// When, µs since the epoch.
    pub at_micros: i64,
    /// The event's position in its request.
    pub index: usize,
    /// The offending field's path (empty: the event itself).
    pub field: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

impl StreamStats {
    fn count_errors(&self, errors: &[pipe_schemas::EventError]) {
        let events: std::collections::BTreeSet<usize> = errors.iter().map(|e| e.index).collect();
        self.decode_errors
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        let mut by_type = self.user_errors.lock().expect("never poisoned");
        for e in errors {
            *by_type.entry(e.kind.name().to_string()).or_default() += 1;
        }
        drop(by_type);
        let at_micros = pipe_schemas::now_micros();
        let mut recent = self.recent.lock().expect("never poisoned");
        // The last ones of the request: at most what is kept.
        let skip = errors.len().saturating_sub(RECENT_REJECTIONS);
        for e in &errors[skip..] {
            if recent.len() == RECENT_REJECTIONS {
                recent.pop_front();
            }
            // Both quote the client's event (a field path is its keys):
            // kept short, so a client cannot make every view of the stream
            // megabytes long.
            recent.push_back(Rejection {
                at_micros,
                index: e.index,
                field: cut(&e.field, 200),
                kind: e.kind.name().to_string(),
                message: cut(&e.message, 500),
            });
        }
    }

    /// The last problems, oldest first.
    pub fn recent_rejections(&self) -> Vec<Rejection> {
        let recent = self.recent.lock().expect("never poisoned");
        recent.iter().cloned().collect()
    }

    /// Problems counted by error type.
    pub fn user_errors(&self) -> Vec<(String, u64)> {
        self.user_errors
            .lock()
            .expect("never poisoned")
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

/// The header a client sets to make retries safe.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The streams that take events right now, each with its own route (and
/// CORS layer). Streams are added and removed while the server runs
/// (`pipe streams create|delete`): a request is dispatched to the route of
/// its stream as it is when the request arrives. A removed stream's
/// endpoint lives on in requests already dispatched to it, so its buffer
/// writer ends once they have their answers.
#[derive(Debug)]
pub struct StreamRoutes {
    /// Each stream's route, and the endpoint it was made from (to make it
    /// again with another decoder).
    routes: std::sync::RwLock<HashMap<String, (Router, StreamEndpoint)>>,
    body_timeout: std::time::Duration,
    /// Requests whose body has arrived run to their answer here, whether
    /// or not their client is still connected.
    requests: TaskTracker,
}

/// Default time a client has to send a request body.
pub const DEFAULT_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl StreamRoutes {
    /// No streams yet. A body that does not arrive within `body_timeout` is
    /// answered 408. (Only the body is timed: once it is read, the request
    /// runs to its answer, so a client never sees a timeout for events
    /// that were accepted.)
    pub fn new(body_timeout: std::time::Duration) -> Self {
        Self {
            routes: std::sync::RwLock::new(HashMap::new()),
            body_timeout,
            requests: TaskTracker::new(),
        }
    }

    /// Starts routing `POST /v1/streams/{name}` to `endpoint` (replacing
    /// any route of that name).
    pub fn insert(&self, name: &str, endpoint: StreamEndpoint) {
        let router = stream_router(
            name,
            endpoint.clone(),
            self.body_timeout,
            self.requests.clone(),
        );
        self.routes
            .write()
            .expect("never poisoned")
            .insert(name.to_string(), (router, endpoint));
    }

    /// Handles `name`'s later requests with `decoder` and `policy` (its
    /// schema or settings changed); requests already dispatched finish
    /// with the old ones. The stream keeps one in-flight budget, resized:
    /// a larger one at once, a smaller one as held bytes are given back
    /// (a task takes the difference out as it comes free), so the bytes
    /// held never pass the larger of the two. False if it has no route.
    pub fn reconfigure(&self, name: &str, decoder: EventDecoder, policy: StreamPolicy) -> bool {
        let mut routes = self.routes.write().expect("never poisoned");
        let Some((router, endpoint)) = routes.get_mut(name) else {
            return false;
        };
        body::resize_budget(
            &endpoint.inflight,
            endpoint.policy.max_inflight_bytes,
            policy.max_inflight_bytes,
        );
        endpoint.decoder = decoder;
        endpoint.policy = policy;
        *router = stream_router(
            name,
            endpoint.clone(),
            self.body_timeout,
            self.requests.clone(),
        );
        true
    }

    /// Stops routing to `name`; false if it had no route.
    pub fn remove(&self, name: &str) -> bool {
        self.routes
            .write()
            .expect("never poisoned")
            .remove(name)
            .is_some()
    }

    /// Removes every route (at shutdown): new requests get 404. Then waits
    /// for every request whose body had arrived to get its answer.
    pub async fn clear(&self) {
        self.routes.write().expect("never poisoned").clear();
        self.requests.close();
        self.requests.wait().await;
    }

    /// Answers one request to `/v1/streams/{name}` (`POST`, or a CORS
    /// preflight): 404 for a stream that does not exist.
    pub async fn dispatch(&self, name: &str, request: axum::extract::Request) -> Response {
        let route = self
            .routes
            .read()
            .expect("never poisoned")
            .get(name)
            .map(|(router, _)| router.clone());
        let Some(mut route) = route else {
            return error_response(ErrorKind::NotFound, format!("unknown stream `{name}`"));
        };
        match tower::Service::call(&mut route, request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

/// The route of one stream: its handler and CORS layer (the body is timed
/// by the handler).
fn stream_router(
    name: &str,
    endpoint: StreamEndpoint,
    body_timeout: std::time::Duration,
    requests: TaskTracker,
) -> Router {
    let path = format!("/v1/streams/{name}");
    if !endpoint.policy.http_enabled {
        let message = format!("stream `{name}` does not take events over HTTP");
        return Router::new().route(
            &path,
            post(move || async move { error_response(ErrorKind::NotFound, message) }),
        );
    }
    let cors = cors_layer(&endpoint.policy.cors_origins);
    let endpoint = Arc::new(endpoint);
    let stream = name.to_string();
    let handler = post(move |headers: HeaderMap, body: Body| {
        let endpoint = endpoint.clone();
        let stream = stream.clone();
        let requests = requests.clone();
        async move { post_events(stream, endpoint, &requests, headers, body, body_timeout).await }
    });
    let handler = match cors {
        Some(cors) => handler.layer(cors),
        None => handler,
    };
    // No body-timeout layer: `post_events` bounds every read of the body
    // (whole, not per frame) itself, and two timers of the same length
    // would race to answer with different messages.
    Router::new().route(&path, handler)
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::POST, Method::OPTIONS])
            .allow_headers([
                header::CONTENT_TYPE,
                header::CONTENT_ENCODING,
                header::AUTHORIZATION,
                header::HeaderName::from_static(IDEMPOTENCY_KEY),
            ])
            .max_age(std::time::Duration::from_secs(3600)),
    )
}

/// The HTTP status of an error kind ([`ErrorKind::http_status`] decides).
pub fn status_for(kind: ErrorKind) -> StatusCode {
    StatusCode::from_u16(kind.http_status()).expect("a status between 100 and 999")
}

/// An error response: `{"error": {"kind", "message"}}` with the kind's
/// status ([`ErrorKind::name`], [`ErrorKind::http_status`]); clients read
/// it back with [`crate::wire::ErrorAnswer::read`].
pub fn error_response(kind: ErrorKind, message: impl Into<String>) -> Response {
    let body = Json(crate::wire::ErrorAnswer::new(kind, message));
    let mut response = (status_for(kind), body).into_response();
    let headers = response.headers_mut();
    match kind {
        ErrorKind::Unavailable => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        ErrorKind::Unauthorized => {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        _ => {}
    }
    response
}

/// Whether the request carries one of the policy's bearer tokens. Every
/// stored digest is compared, in constant time, whatever matches.
fn authorized(policy: &StreamPolicy, headers: &HeaderMap) -> bool {
    bearer_authorized(&policy.token_digests, headers)
}

/// Whether `headers` carry `Authorization: Bearer <token>` with a token whose
/// SHA-256 is in `digests` (compared in constant time); any request passes
/// when `digests` is empty.
pub fn bearer_authorized(digests: &[[u8; 32]], headers: &HeaderMap) -> bool {
    if digests.is_empty() {
        return true;
    }
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let presented = token_digest(token.trim());
    let mut ok = subtle::Choice::from(0);
    for digest in digests {
        ok |= digest.ct_eq(&presented);
    }
    ok.into()
}

fn accepted_response(
    answer: &Answer,
    errors: &[pipe_schemas::EventError],
    replayed: bool,
) -> Response {
    let body = crate::wire::Accepted {
        accepted: answer.accepted as u64,
        dropped_fields: answer.dropped as u64,
        quarantined: answer.quarantined as u64,
        errors: match answer.quarantined > 0 && !replayed {
            true => errors.to_vec(),
            false => Vec::new(),
        },
    };
    let mut response = Json(body).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

async fn post_events(
    stream: String,
    endpoint: Arc<StreamEndpoint>,
    requests: &TaskTracker,
    headers: HeaderMap,
    body: Body,
    body_timeout: std::time::Duration,
) -> Response {
    if !authorized(&endpoint.policy, &headers) {
        return error_response(ErrorKind::Unauthorized, "unauthorized");
    }
    let key = match headers.get(IDEMPOTENCY_KEY).map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) if !k.is_empty() && k.len() <= MAX_KEY_LEN => Some(k.to_string()),
        Some(_) => {
            return error_response(
                ErrorKind::InvalidInput,
                format!("`Idempotency-Key` must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
            )
        }
    };
    // Held until the request's outcome is known; dropped unfinished (the
    // request failed, or the client hung up while its body was arriving),
    // it releases the key.
    let claim = match key.map(|k| endpoint.keys.begin(&k)) {
        None => None,
        Some(Begin::New(claim)) => Some(claim),
        // Answered without the body, but only once it has arrived: a
        // client still sending when the answer comes and the connection
        // closes sees a broken pipe, not the answer.
        Some(Begin::Replay(answer)) => {
            debug!(stream = %stream, "idempotent replay");
            // A retry as large as the stream allows is read whole.
            let limit = endpoint.policy.max_body_bytes.max(DRAIN_LIMIT);
            let _ = tokio::time::timeout(body_timeout, drain(body, limit)).await;
            return accepted_response(&answer, &[], true);
        }
        Some(Begin::InFlight) => {
            let limit = endpoint.policy.max_body_bytes.max(DRAIN_LIMIT);
            let _ = tokio::time::timeout(body_timeout, drain(body, limit)).await;
            return error_response(
                ErrorKind::Conflict,
                "a request with this Idempotency-Key is being processed; retry when it has finished",
            );
        }
    };
    let format = body_format(&headers);
    // The whole body within the timeout, not only each piece of it: a
    // client sending a byte now and then must not hold the stream's
    // in-flight budget for ever.
    let read = read_body(&endpoint.policy, &endpoint.inflight, &headers, body);
    let (body, budget) = match tokio::time::timeout(body_timeout, read).await {
        Ok(Ok(read)) => read,
        Ok(Err(response)) => return response,
        Err(_) => {
            return error_response(
                ErrorKind::TimedOut,
                format!(
                    "the request body did not arrive within {} s",
                    body_timeout.as_secs()
                ),
            )
        }
    };
    // From here the request runs to its answer on a task of its own: hyper
    // drops this handler when the client hangs up, and a record handed to
    // the buffer may still become durable, so the key's outcome must be
    // settled by whoever sees the append end.
    let task = requests.spawn(async move {
        let key = claim.as_ref().map(|c| c.key().to_string());
        let result = accept(&stream, &endpoint, format, body, key).await;
        // Held until here: the body, its events and its record.
        drop(budget);
        if let (Some(claim), Ok((answer, _))) = (claim, &result) {
            claim.finish(*answer);
        }
        result
    });
    match task.await {
        Ok(Ok((answer, errors))) => accepted_response(&answer, &errors, false),
        Ok(Err(response)) => response,
        Err(e) => error_response(ErrorKind::Internal, format!("the request failed: {e}")),
    }
}

/// How the body lists its events, from `Content-Type`.
fn body_format(headers: &HeaderMap) -> BodyFormat {
    match headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        Some(ct)
            if ct.starts_with("application/x-ndjson") || ct.starts_with("application/jsonl") =>
        {
            BodyFormat::NdJson
        }
        _ => BodyFormat::Json,
    }
}

/// Reads, validates, decodes and appends a request; the answer once durable.
async fn accept(
    stream: &str,
    endpoint: &StreamEndpoint,
    format: BodyFormat,
    body: Bytes,
    key: Option<String>,
) -> Result<(Answer, Vec<pipe_schemas::EventError>), Response> {
    endpoint.stats.requests.fetch_add(1, Ordering::Relaxed);
    endpoint
        .stats
        .bytes_in
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    let decoder = endpoint.decoder.clone();
    let quarantine = endpoint.policy.quarantine;
    let decoded = tokio::task::spawn_blocking(move || {
        // Reject mode: any bad event refuses the request. Quarantine mode:
        // good events go on, bad ones are kept aside with their errors.
        let (batch, dropped_fields, quarantined) = if quarantine {
            let split = decoder.decode_split(&body, format)?;
            (split.batch, split.dropped_fields, split.quarantined)
        } else {
            match decoder.decode(&body, format)? {
                Decoded::Batch {
                    batch,
                    dropped_fields,
                } => (Some(batch), dropped_fields, Vec::new()),
                Decoded::Rejected(errors) => return Ok(Err(errors)),
            }
        };
        let at = pipe_schemas::now_micros();
        let batch = batch
            .map(|b| pipe_schemas::stamp_ingest_ts(&b, at))
            .transpose()?;
        let quarantine_batch = if quarantined.is_empty() {
            None
        } else {
            Some(pipe_schemas::stamp_ingest_ts(
                &pipe_schemas::quarantine_batch(&quarantined)?,
                at,
            )?)
        };
        let answer = Answer {
            accepted: batch.as_ref().map_or(0, |b| b.num_rows()) as u32,
            dropped: dropped_fields as u32,
            quarantined: quarantined.len() as u32,
            at,
        };
        let meta = RequestMeta {
            key,
            accepted: answer.accepted,
            dropped_fields: answer.dropped,
            quarantined: answer.quarantined,
            at_micros: at,
        };
        let payload = payload::encode(&meta, batch.as_ref(), quarantine_batch.as_ref())
            .map_err(|e| pipe_schemas::Error::Internal(e.to_string()))?;
        let errors: Vec<_> = quarantined.into_iter().flat_map(|q| q.errors).collect();
        Ok::<_, pipe_schemas::Error>(Ok((answer, errors, payload)))
    })
    .await;
    let (answer, errors, payload) = match decoded {
        Ok(Ok(Ok(ok))) => ok,
        Ok(Ok(Err(errors))) => {
            endpoint.stats.count_errors(&errors);
            debug!(stream, bad_events = errors.len(), "request refused");
            let refused = crate::wire::Refused { errors };
            return Err((StatusCode::BAD_REQUEST, Json(refused)).into_response());
        }
        Ok(Err(e)) => return Err(error_response(e.kind(), e.to_string())),
        Err(e) => {
            return Err(error_response(
                ErrorKind::Internal,
                format!("decoder task failed: {e}"),
            ))
        }
    };
    match endpoint.appender.append(payload).await {
        Ok(offset) => {
            endpoint
                .stats
                .records_in
                .fetch_add(u64::from(answer.accepted), Ordering::Relaxed);
            endpoint.stats.count_errors(&errors);
            debug!(
                stream,
                offset,
                rows = answer.accepted,
                quarantined = answer.quarantined,
                "events accepted"
            );
            Ok((answer, errors))
        }
        Err(e) => Err(error_response(e.kind(), e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipe_schemas::{EventError, EventErrorKind};

    #[test]
    fn rejections_keep_a_little_of_what_the_client_sent() {
        let stats = StreamStats::default();
        let key = "k".repeat(4 << 20);
        let errors: Vec<EventError> = (0..30)
            .map(|index| EventError {
                index,
                field: key.clone(),
                kind: EventErrorKind::UnknownField,
                message: format!("unknown field `{key}`"),
            })
            .collect();
        stats.count_errors(&errors);
        let kept = stats.recent_rejections();
        assert_eq!(kept.len(), RECENT_REJECTIONS);
        assert_eq!(kept[0].index, 10);
        for r in &kept {
            assert_eq!(r.field.chars().count(), 201, "200 and `…`");
            assert_eq!(r.message.chars().count(), 501);
            assert!(r.field.ends_with('…'));
        }
        assert_eq!(cut("ab", 2), "ab");
        assert_eq!(cut("äöü", 1), "ä…");
    }
}
