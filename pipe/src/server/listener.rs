//! The HTTP listener: connections capped below the process's file limit.
//!
//! Every connection holds a file descriptor for as long as its client keeps
//! it open, idle or not. Without a cap, enough idle clients take every
//! descriptor, and then the server cannot accept anyone, create a buffer
//! segment, open a Parquet file or reach its catalog: ingest and commits
//! stall together. So:
//!
//! - at startup the soft `RLIMIT_NOFILE` is raised to the hard limit;
//! - at most [`connection_cap`] connections are open at once, which leaves
//!   a reserve of descriptors for the server's own files and connections;
//! - a connection past the cap is accepted and closed at once (the client
//!   sees a reset and can retry), and the log says so, at most once a
//!   second;
//! - [`serve`] closes a connection whose next request head has not arrived
//!   in time (`body_timeout_secs`): idle keep-alive connections and clients
//!   that send half a head do not hold a place under the cap for ever,
//!   and cannot keep a shutdown waiting (which has a deadline as well,
//!   [`SHUTDOWN_GRACE`]).
//!
//! ```text
//!   accept ──► permit? ──yes──► Capped(stream, permit) ──► hyper
//!                 └──no──► close, count, warn (rate-limited)
//! ```

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

/// Raises the soft limit on open files to the hard limit; returns the soft
/// limit now in effect.
pub fn raise_file_limit() -> u64 {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write `limit`.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return 1024;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit.rlim_cur = limit.rlim_max;
                }
            }
        }
        limit.rlim_cur
    }
    #[cfg(not(unix))]
    {
        1024
    }
}

/// Connections open at once for a process allowed `file_limit` open files:
/// all but a reserve (an eighth, at least 64) kept for the server's own
/// files and connections.
pub fn connection_cap(file_limit: u64) -> usize {
    let reserve = (file_limit / 8).max(64);
    file_limit.saturating_sub(reserve).clamp(8, 1 << 20) as usize
}

/// A listener that hands out at most `cap` connections at once.
pub struct CappedListener {
    inner: TcpListener,
    /// How long a write to a client may stay blocked (see [`Capped`]).
    write_timeout: Duration,
    permits: Arc<Semaphore>,
    refused: Arc<AtomicU64>,
    last_warning: Option<Instant>,
}

impl CappedListener {
    pub fn new(inner: TcpListener, cap: usize, write_timeout: Duration) -> CappedListener {
        info!(max_connections = cap, "accepting connections");
        CappedListener {
            inner,
            write_timeout,
            permits: Arc::new(Semaphore::new(cap)),
            refused: Arc::default(),
            last_warning: None,
        }
    }
}

impl axum::serve::Listener for CappedListener {
    type Io = Capped;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors despite the reserve, or a
                    // connection reset before it was accepted: wait a
                    // little rather than spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    return (
                        Capped {
                            stream,
                            _permit: permit,
                            write_timeout: self.write_timeout,
                            stalled: None,
                        },
                        addr,
                    )
                }
                Err(_) => {
                    drop(stream);
                    let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
                    if self
                        .last_warning
                        .is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
                    {
                        self.last_warning = Some(Instant::now());
                        warn!(refused, "too many open connections: closing new ones until some end (raise the open-files limit, or put a proxy in front)");
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// How long a shutdown waits for open connections to finish their
/// requests before it goes on without them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);

/// Serves `app` (HTTP/1.1) on `listener` until `shutdown` completes, then
/// lets requests in progress finish, for at most [`SHUTDOWN_GRACE`]. A
/// connection whose next request head has not arrived within
/// `header_timeout` (idle, or sending it) is closed.
pub async fn serve(
    mut listener: CappedListener,
    app: axum::Router,
    header_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use axum::serve::Listener as _;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt as _;
    let connections = tokio_util::task::TaskTracker::new();
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (io, _addr) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone().map_request(
            |r: axum::http::Request<hyper::body::Incoming>| r.map(axum::body::Body::new),
        ));
        let mut stopping = stopping.clone();
        connections.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let conn = builder.serve_connection(TokioIo::new(io), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stopping.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    drop(listener);
    let _ = stop.send(true);
    connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
        .await
        .is_err()
    {
        warn!(
            open = connections.len(),
            "connections still open {} s after the shutdown began; going on without them",
            SHUTDOWN_GRACE.as_secs()
        );
    }
}

/// A connection holding one of the listener's permits until it closes.
pub struct Capped {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    /// A write that stays blocked this long (a client that does not read
    /// its answer) fails, and the connection with it: an answer held for a
    /// client that never reads it would hold its memory for ever.
    write_timeout: Duration,
    /// Running while a write is blocked.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Capped {
    /// `Pending` from a write: starts (or checks) the stall timer.
    fn blocked<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        let timeout = self.write_timeout;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match std::future::Future::poll(timer.as_mut(), cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client did not read its answer in time",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Capped {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Capped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write(cx, buf) {
            Poll::Pending => self.blocked(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.blocked(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_keeps_a_reserve() {
        assert_eq!(connection_cap(1024), 896);
        assert_eq!(connection_cap(300), 236);
        assert_eq!(connection_cap(1 << 20), 917_504);
        assert_eq!(connection_cap(50), 8);
    }
}
