//! Reading a request body within a stream's limits: its size, the
//! stream's in-flight budget (bytes held as sent and as they inflate), and
//! gzip, every member of it.

use std::io::Read;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{error_response, StreamPolicy};
use crate::ErrorKind;

/// How much of an oversized body is read and thrown away before the 413 is
/// sent, so that ordinary clients finish sending and read the answer instead
/// of failing on a closed connection. Past this the connection is dropped.
pub(super) const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// Reads and drops a body that is not needed, up to `limit` bytes (the
/// route's body timeout bounds the wait).
pub(super) async fn drain(body: Body, limit: usize) {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut seen = 0;
    while let Some(Ok(chunk)) = stream.next().await {
        seen += chunk.len();
        if seen > limit {
            break;
        }
    }
}

/// Reads the body within the stream's limits, undoing gzip. The bytes it
/// holds are taken from the stream's in-flight budget as they arrive (and
/// as they inflate); the returned permit gives them back when dropped.
pub(super) async fn read_body(
    policy: &StreamPolicy,
    inflight: &Arc<Semaphore>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Bytes, OwnedSemaphorePermit), Response> {
    use futures::StreamExt;
    let limit = policy.max_body_bytes;
    let mut budget = take(inflight, 0).expect("no permits always fit");
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let mut seen = 0usize;
    let mut over_budget = false;
    while let Some(chunk) = stream.next().await {
        // Time is kept by the caller, over the whole body.
        let chunk = chunk.map_err(|e| {
            let e = e.into_inner();
            error_response(
                ErrorKind::InvalidInput,
                format!("reading the request body: {e}"),
            )
        })?;
        seen += chunk.len();
        if seen <= limit && !over_budget {
            match take(inflight, chunk.len()) {
                Some(more) => {
                    budget.merge(more);
                    buf.extend_from_slice(&chunk);
                }
                // Read on (and drop) so that the client reads the answer.
                None => {
                    over_budget = true;
                    buf = Vec::new();
                    budget = take(inflight, 0).expect("no permits always fit");
                }
            }
        } else if seen > DRAIN_LIMIT {
            break;
        }
    }
    if seen > limit {
        return Err(error_response(
            ErrorKind::TooLarge,
            format!("the request body is larger than the stream's limit of {limit} bytes"),
        ));
    }
    if over_budget {
        return Err(busy(policy));
    }
    let bytes = Bytes::from(buf);
    // Content codings are case-insensitive (RFC 9110).
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("identity") => Ok((bytes, budget)),
        Some("gzip") | Some("x-gzip") => {
            let inflated = gunzip_within(&bytes, policy.max_decompressed_bytes, |n| {
                take(inflight, n).map(|more| budget.merge(more)).is_some()
            });
            match inflated {
                Ok(out) => Ok((Bytes::from(out), budget)),
                Err(GunzipError::TooLarge(limit)) => Err(error_response(
                    ErrorKind::TooLarge,
                    format!(
                        "the decompressed body is larger than the stream's limit of {limit} bytes"
                    ),
                )),
                Err(GunzipError::Invalid(e)) => Err(error_response(
                    ErrorKind::InvalidInput,
                    format!("the gzip body does not decompress: {e}"),
                )),
                Err(GunzipError::OverBudget) => Err(busy(policy)),
            }
        }
        Some(other) => Err(error_response(
            ErrorKind::InvalidInput,
            format!("unsupported Content-Encoding `{other}` (use gzip or none)"),
        )),
    }
}

/// Makes a stream's in-flight `budget` of `old` bytes one of `new`: a
/// larger one at once, a smaller one as held bytes are given back (a task
/// takes the difference out as it comes free), so the bytes held never
/// pass the larger of the two, however often it changes.
pub(super) fn resize_budget(budget: &Arc<Semaphore>, old: usize, new: usize) {
    if new > old {
        budget.add_permits(new - old);
    } else if new < old {
        let less = u32::try_from(old - new).unwrap_or(u32::MAX);
        let budget = budget.clone();
        tokio::spawn(async move {
            if let Ok(taken) = budget.acquire_many_owned(less).await {
                taken.forget();
            }
        });
    }
}

/// `bytes` more of the in-flight budget, if it has them.
fn take(inflight: &Arc<Semaphore>, bytes: usize) -> Option<OwnedSemaphorePermit> {
    let bytes = u32::try_from(bytes).ok()?;
    inflight.clone().try_acquire_many_owned(bytes).ok()
}

/// The answer when the stream's in-flight budget is spent.
fn busy(policy: &StreamPolicy) -> Response {
    error_response(
        ErrorKind::Unavailable,
        format!(
            "the stream is holding as many request bytes as it may at once ({} bytes in flight, `max_inflight_mb`); nothing of this request was kept: retry shortly",
            policy.max_inflight_bytes
        ),
    )
}

/// Why a gzip body was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum GunzipError {
    /// It inflates past this many bytes.
    TooLarge(usize),
    /// It is not gzip, is cut short, or has bytes after its last member.
    Invalid(String),
    /// The caller's budget refused the memory its output needs.
    OverBudget,
}

/// Inflates a gzip body: every member of it (`cat a.gz b.gz` is one body
/// of two members, and streaming compressors write many), up to `limit`
/// bytes. Anything after the last member that is not another whole member
/// refuses the body: reading only part of it would accept some events and
/// silently drop the rest.
pub fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, GunzipError> {
    gunzip_within(body, limit, |_| true)
}

/// [`gunzip`], asking `reserve(n)` before the output grows by `n` bytes;
/// a `false` stops it with [`GunzipError::OverBudget`].
pub fn gunzip_within(
    body: &[u8],
    limit: usize,
    mut reserve: impl FnMut(usize) -> bool,
) -> Result<Vec<u8>, GunzipError> {
    const STEP: usize = 256 * 1024;
    let mut out = Vec::new();
    // One byte past the limit tells "at the limit" from "over it".
    let past_limit = (limit as u64).saturating_add(1);
    let mut decoder = flate2::read::MultiGzDecoder::new(body).take(past_limit);
    let mut chunk = vec![0u8; STEP];
    loop {
        let n = match decoder.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(GunzipError::Invalid(e.to_string())),
        };
        if !reserve(n) {
            return Err(GunzipError::OverBudget);
        }
        out.extend_from_slice(&chunk[..n]);
    }
    if out.len() > limit {
        return Err(GunzipError::TooLarge(limit));
    }
    if body.is_empty() {
        return Err(GunzipError::Invalid("the body is empty".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[tokio::test]
    async fn a_resized_budget_never_holds_more_than_the_larger_size() {
        let budget = Arc::new(Semaphore::new(10));
        let held = take(&budget, 8).unwrap();
        // Down to 4 while 8 are held: what comes free goes, not out again.
        resize_budget(&budget, 10, 4);
        tokio::task::yield_now().await;
        assert!(budget.available_permits() <= 2);
        drop(held);
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(budget.available_permits(), 4);
        // Churn while bytes are held: never more than the largest size out.
        let held = take(&budget, 3).unwrap();
        let mut size = 4;
        for next in [6, 2, 6, 2, 6, 3] {
            resize_budget(&budget, size, next);
            size = next;
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            assert!(
                3 + budget.available_permits() <= 6,
                "at most 6 held or free"
            );
        }
        drop(held);
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(budget.available_permits(), 3, "the last size");
    }

    #[test]
    fn inflating_asks_the_budget_as_the_output_grows() {
        let body = gzip(&vec![b'x'; 1 << 20]);
        let mut asked = 0;
        let out = gunzip_within(&body, 2 << 20, |n| {
            asked += n;
            true
        })
        .unwrap();
        assert_eq!((out.len(), asked), (1 << 20, 1 << 20));
        let mut granted = 0;
        let refused = gunzip_within(&body, 2 << 20, |n| {
            granted += n;
            granted <= 300_000
        });
        assert_eq!(refused, Err(GunzipError::OverBudget));
    }

    #[test]
    fn every_gzip_member_is_read() {
        let mut body = gzip(b"{\"a\":1}\n{\"a\":2}\n");
        body.extend(gzip(b"{\"a\":3}\n{\"a\":4}\n"));
        body.extend(gzip(b""));
        assert_eq!(
            gunzip(&body, 1 << 20).unwrap(),
            b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n{\"a\":4}\n"
        );
    }

    #[test]
    fn bytes_after_the_last_member_refuse_the_body() {
        let whole = gzip(b"[1,2,3]");
        for tail in [
            &b"garbage"[..],
            b"\0\0\0\0",
            b"\x1f",
            &whole[..whole.len() - 1],
        ] {
            let mut body = whole.clone();
            body.extend_from_slice(tail);
            assert!(
                matches!(gunzip(&body, 1 << 20), Err(GunzipError::Invalid(_))),
                "tail {tail:?}"
            );
        }
        // Cut short, empty, or not gzip at all.
        assert!(matches!(
            gunzip(&whole[..whole.len() - 3], 1 << 20),
            Err(GunzipError::Invalid(_))
        ));
        assert!(matches!(gunzip(b"", 1 << 20), Err(GunzipError::Invalid(_))));
        assert!(matches!(
            gunzip(b"not gzip", 1 << 20),
            Err(GunzipError::Invalid(_))
        ));
    }

    #[test]
    fn the_limit_counts_every_member() {
        let mut body = gzip(&[b'x'; 600]);
        body.extend(gzip(&[b'y'; 600]));
        assert_eq!(gunzip(&body, 1000), Err(GunzipError::TooLarge(1000)));
        assert_eq!(gunzip(&body, 1200).unwrap().len(), 1200);
    }

    /// Found by the `gunzip` fuzz target: the largest limit overflowed.
    #[test]
    fn the_largest_limit_is_no_limit() {
        assert_eq!(gunzip(&gzip(b"[1]"), usize::MAX).unwrap(), b"[1]");
    }
}
