//! The HTTP ingest endpoint.
//!
//! `POST /v1/streams/{stream}` with a JSON array of events, one JSON object,
//! or NDJSON (`Content-Type: application/x-ndjson`).
//!
//! | outcome                         | status | body                                              |
//! |---------------------------------|--------|---------------------------------------------------|
//! | every event valid, on disk      | 200    | `{"accepted": N}`                                 |
//! | some event invalid              | 400    | `{"errors": [{"index","field","type","message"}]}` |
//! | body not JSON / not events      | 400    | `{"error": {"kind": "invalid_input", "message"}}` |
//! | unknown stream                  | 404    | `{"error": …}`                                    |
//! | body over the limit             | 413    | `{"error": …}`                                    |
//! | buffer queue full / shutting down | 503  | `{"error": …}` + `Retry-After: 1`                 |
//!
//! A request is all or nothing: when it is refused, none of its events is kept.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use pipe_schemas::{BodyFormat, Decoded, EventDecoder};
use serde_json::json;
use tracing::debug;

use crate::buffer::{encode_batch, Appender};
use crate::ErrorKind;

/// Default largest request body: 5 MB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 5 * 1024 * 1024;

/// A stream as the HTTP layer sees it.
#[derive(Debug, Clone)]
pub struct StreamEndpoint {
    pub decoder: EventDecoder,
    pub appender: Appender,
}

/// Everything the ingest routes need.
#[derive(Debug, Clone)]
pub struct IngestState {
    pub streams: Arc<HashMap<String, StreamEndpoint>>,
}

/// The ingest routes, with the request body limit.
pub fn router(state: IngestState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/streams/{stream}", post(post_events))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// The HTTP status of an error kind. The only place that decides it.
pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error response: `{"error": {"kind", "message"}}` with the kind's status.
pub fn error_response(kind: ErrorKind, message: impl Into<String>) -> Response {
    let name = match kind {
        ErrorKind::InvalidInput => "invalid_input",
        ErrorKind::NotFound => "not_found",
        ErrorKind::Conflict => "conflict",
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::Internal => "internal",
    };
    let body = Json(json!({"error": {"kind": name, "message": message.into()}}));
    let mut response = (status_for(kind), body).into_response();
    if kind == ErrorKind::Unavailable {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

async fn post_events(
    State(state): State<IngestState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(endpoint) = state.streams.get(&stream) else {
        return error_response(ErrorKind::NotFound, format!("unknown stream `{stream}`"));
    };
    let format = match headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        Some(ct)
            if ct.starts_with("application/x-ndjson") || ct.starts_with("application/jsonl") =>
        {
            BodyFormat::NdJson
        }
        _ => BodyFormat::Json,
    };
    let decoder = endpoint.decoder.clone();
    let decoded = tokio::task::spawn_blocking(move || {
        let decoded = decoder.decode(&body, format)?;
        match decoded {
            Decoded::Batch(batch) => {
                let rows = batch.num_rows();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_micros() as i64)
                    .unwrap_or_default();
                let batch = pipe_schemas::stamp_ingest_ts(&batch, now)?;
                let payload = encode_batch(&batch)
                    .map_err(|e| pipe_schemas::Error::Internal(e.to_string()))?;
                Ok(Ok((rows, payload)))
            }
            Decoded::Rejected(errors) => Ok(Err(errors)),
        }
    })
    .await;
    let (rows, payload) = match decoded {
        Ok(Ok(Ok(ok))) => ok,
        Ok(Ok(Err(errors))) => {
            debug!(stream, bad_events = errors.len(), "request refused");
            return (StatusCode::BAD_REQUEST, Json(json!({"errors": errors}))).into_response();
        }
        Ok(Err(pipe_schemas::Error::InvalidBody(message))) => {
            return error_response(ErrorKind::InvalidInput, message)
        }
        Ok(Err(e)) => return error_response(ErrorKind::Internal, e.to_string()),
        Err(e) => return error_response(ErrorKind::Internal, format!("decoder task failed: {e}")),
    };
    match endpoint.appender.append(payload).await {
        Ok(offset) => {
            debug!(stream, offset, rows, "events accepted");
            Json(json!({"accepted": rows})).into_response()
        }
        Err(e) => error_response(e.kind(), e.to_string()),
    }
}
