//! Who may reach the admin and query APIs, and how.
//!
//! - **From where.** [`check_listen`] refuses to start a server that other
//!   machines can reach (`listen` not on 127.0.0.0/8 or `::1`) unless the
//!   admin API has a token: through it a caller creates and deletes
//!   streams (with their buffered events), sinks and pipelines, and a sink
//!   writes files as the server's user. The query
//!   endpoint on such an address takes its own `[query] auth_token_sha256`,
//!   or else the admin tokens ([`query_token_digests`]). On loopback both
//!   are open unless tokens are set, as a local tool should be.
//! - **With what.** Every `POST` to the admin and query APIs must say
//!   `Content-Type: application/json` ([`require_json`], else 415). A web
//!   page can make a browser send a cross-site `POST` without asking first
//!   only as a form or `text/plain`; a JSON body needs a CORS preflight,
//!   which these APIs never grant. So a page the operator visits cannot
//!   drive a server on their loopback address. Ingest
//!   (`POST /v1/streams/{name}`) is not an admin API: streams keep their
//!   own tokens and CORS settings.
//! - **For whom.** Without a token, the admin and query APIs (and
//!   `/metrics` and `/readyz`, which name streams and pipelines) answer only
//!   requests whose `Host` is `localhost` (or a `*.localhost` name) or an
//!   IP address, with at most a port ([`refuse_foreign_host`], else 403). A page that points its
//!   own domain name at 127.0.0.1 (DNS rebinding) is same-origin with the
//!   server and would pass the JSON check, but its requests carry its
//!   domain name as `Host`.
//!
//! - **In time.** A request body to the admin and query APIs is read only
//!   after the token, `Host` and content type passed, whole, within
//!   `body_timeout_secs` from the handler's start and up to
//!   [`API_BODY_LIMIT`] ([`read_whole_body`], else 408 / 413): a client
//!   trickling a body cannot hold a connection, nor the memory of a body
//!   it never finishes, past that. (Ingest has its own deadline.)
//!
//! ```text
//!  listen on loopback ──────────► admin: tokens if set, else open
//!                                 query: [query] tokens if set, else open
//!  listen elsewhere ── no admin token ──► refused at start (exit 2)
//!                   └─ admin token ─────► admin: admin tokens
//!                                         query: [query] tokens, else admin tokens
//! ```

use std::net::{IpAddr, SocketAddr};

use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::config::Config;
use crate::{Error, Result};

/// Whether only this machine can reach `addr`: 127.0.0.0/8, `::1`, or
/// either as an IPv4-mapped IPv6 address.
pub fn is_loopback(addr: SocketAddr) -> bool {
    match addr.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Refuses a configuration whose admin API other machines could reach
/// without a token.
pub fn check_listen(config: &Config) -> Result<()> {
    if is_loopback(config.listen) || !config.admin_token_digests.is_empty() {
        return Ok(());
    }
    let port = config.listen.port();
    Err(Error::Config(format!(
        "`listen` is `{listen}`, which other machines can reach, and the admin API has no token: \
         anyone who reaches it could create and delete streams, sinks and pipelines. Either set a token: \
         start with `PIPE_ADMIN_TOKEN=<token> pipe serve …` (or `--admin-token <token>`), or put the \
         output of `pipe hash-token <token>` in pipe.toml as `[admin] auth_token_sha256 = [\"…\"]`; \
         clients then send it with `--admin-token` or `PIPE_ADMIN_TOKEN`. Or listen on this machine \
         only: `--listen 127.0.0.1:{port}`",
        listen = config.listen,
    )))
}

/// The bearer-token digests `POST /v1/query` accepts (none: no auth): its
/// own, or, when other machines can reach the server, the admin API's.
pub fn query_token_digests(config: &Config) -> &[[u8; 32]] {
    if config.query.token_digests.is_empty() && !is_loopback(config.listen) {
        &config.admin_token_digests
    } else {
        &config.query.token_digests
    }
}

/// The 403 answer to a request for a tokenless API whose `Host` is a name
/// other than `localhost` (DNS rebinding: see the module doc); `None` when
/// the request may go on.
pub(crate) fn refuse_foreign_host(headers: &HeaderMap) -> Option<Response> {
    let message = foreign_host(headers)?;
    let body = serde_json::json!({"error": {"kind": "unauthorized", "message": message}});
    Some((StatusCode::FORBIDDEN, Json(body)).into_response())
}

/// Why a request for a tokenless API may not go on (its `Host` is a name
/// other than `localhost`: see the module doc), if it may not.
pub(crate) fn foreign_host(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?;
    let host = String::from_utf8_lossy(host.as_bytes()).to_ascii_lowercase();
    if is_local_host(&host) {
        return None;
    }
    Some(format!(
        "`Host: {host}` is not localhost or an IP address: without a token this API answers only those (a web page could otherwise point its own name at this server); set a token to use other names"
    ))
}

/// `localhost`, `*.localhost`, or an IP address, with or without a port.
fn is_local_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`
        Some(rest) => {
            let Some((v6, after)) = rest.split_once(']') else {
                return false;
            };
            let port_only = after.is_empty()
                || after
                    .strip_prefix(':')
                    .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
            return port_only && v6.parse::<std::net::Ipv6Addr>().is_ok();
        }
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    let name = name.trim_end_matches('.');
    name == "localhost" || name.ends_with(".localhost") || name.parse::<IpAddr>().is_ok()
}

/// Answers 415 to a `POST`, `PUT` or `PATCH` whose `Content-Type` is not
/// `application/json` (parameters such as `charset` allowed).
pub(crate) async fn require_json(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let takes_body = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH
    );
    if takes_body {
        if let Some(refusal) = refuse_unless_json(request.headers()) {
            return refusal;
        }
    }
    next.run(request).await
}

/// [`require_json`] for the Iceberg REST catalog, whose OAuth2 token
/// endpoint takes a form (it only answers the right client secret, and
/// its answer is not readable from another site).
pub(crate) async fn require_json_but_forms(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if request.uri().path().ends_with("/oauth/tokens") {
        return next.run(request).await;
    }
    require_json(request, next).await
}

/// The largest body the admin and query APIs take.
pub(crate) const API_BODY_LIMIT: usize = 2 << 20;

/// Middleware: the admin API's request body, read whole within
/// `body_timeout_secs` (see the module doc) before the handler runs.
pub(crate) async fn whole_body(
    axum::extract::State(supervisor): axum::extract::State<
        std::sync::Arc<crate::running::supervisor::Supervisor>,
    >,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let timeout = supervisor.config().body_timeout;
    match read_whole_body(body, timeout).await {
        Ok(bytes) => {
            let request = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
            next.run(request).await
        }
        Err(refusal) => refusal,
    }
}

/// A request body, whole, within `timeout` and [`API_BODY_LIMIT`]; else
/// the answer to send (408, 413, or 400 for a body cut off).
pub(crate) async fn read_whole_body(
    body: axum::body::Body,
    timeout: std::time::Duration,
) -> Result<axum::body::Bytes, Response> {
    use futures::StreamExt;
    use pipe_ingest::ErrorKind;
    let read = async {
        let mut stream = body.into_data_stream();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                (
                    ErrorKind::InvalidInput,
                    format!("reading the request body: {e}"),
                )
            })?;
            if bytes.len() + chunk.len() > API_BODY_LIMIT {
                return Err((
                    ErrorKind::TooLarge,
                    format!("the request body is over {API_BODY_LIMIT} bytes"),
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(axum::body::Bytes::from(bytes))
    };
    let read = tokio::time::timeout(timeout, read)
        .await
        .unwrap_or_else(|_| {
            Err((
                ErrorKind::TimedOut,
                format!(
                    "the request body did not arrive within {} s (`body_timeout_secs`)",
                    timeout.as_secs()
                ),
            ))
        });
    read.map_err(|(kind, message)| pipe_ingest::http::error_response(kind, message))
}

/// The 415 answer, unless the request says its body is JSON.
pub(crate) fn refuse_unless_json(headers: &HeaderMap) -> Option<Response> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let essence = value
        .as_deref()
        .map(|v| v.split(';').next().unwrap_or_default().trim());
    if essence.is_some_and(|e| e.eq_ignore_ascii_case("application/json")) {
        return None;
    }
    let found = match &value {
        Some(v) => format!("`{v}`"),
        None => "none".into(),
    };
    // The body of every error answer, with the kind of a request that
    // fails again as sent; 415 is the status HTTP has for this case.
    let body = serde_json::json!({"error": {
        "kind": pipe_ingest::ErrorKind::InvalidInput.name(),
        "message": format!("expected `Content-Type: application/json`, got {found}"),
    }});
    Some((StatusCode::UNSUPPORTED_MEDIA_TYPE, Json(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &str, admin: bool, query: bool) -> Config {
        let mut text = format!("listen = \"{listen}\"\n");
        let digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        if admin {
            text.push_str(&format!("[admin]\nauth_token_sha256 = [\"{digest}\"]\n"));
        }
        if query {
            let other = digest.replace('9', "8");
            text.push_str(&format!("[query]\nauth_token_sha256 = [\"{other}\"]\n"));
        }
        let file = toml::from_str(&text).unwrap();
        Config::resolve(file, std::path::Path::new("/x"), &Default::default()).unwrap()
    }

    #[test]
    fn loopback_addresses() {
        for addr in [
            "127.0.0.1:1",
            "127.8.9.1:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(is_loopback(addr.parse().unwrap()), "{addr}");
        }
        for addr in [
            "0.0.0.0:1",
            "[::]:1",
            "192.168.1.2:1",
            "[::ffff:10.0.0.1]:1",
        ] {
            assert!(!is_loopback(addr.parse().unwrap()), "{addr}");
        }
    }

    #[test]
    fn a_reachable_admin_api_needs_a_token() {
        check_listen(&config("127.0.0.1:8080", false, false)).unwrap();
        check_listen(&config("0.0.0.0:8080", true, false)).unwrap();
        let e = check_listen(&config("0.0.0.0:8080", false, false)).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
        let e = e.to_string();
        for want in [
            "`0.0.0.0:8080`",
            "PIPE_ADMIN_TOKEN",
            "pipe hash-token",
            "[admin] auth_token_sha256",
            "--listen 127.0.0.1:8080",
        ] {
            assert!(e.contains(want), "{want} in {e}");
        }
    }

    #[test]
    fn a_reachable_query_endpoint_falls_back_to_the_admin_tokens() {
        let local = config("127.0.0.1:8080", true, false);
        assert!(query_token_digests(&local).is_empty(), "loopback: as set");
        let open = config("0.0.0.0:8080", true, false);
        assert_eq!(query_token_digests(&open), &open.admin_token_digests[..]);
        let own = config("0.0.0.0:8080", true, true);
        assert_eq!(query_token_digests(&own), &own.query.token_digests[..]);
        assert_ne!(own.query.token_digests, own.admin_token_digests);
    }

    #[test]
    fn only_local_hosts_reach_a_tokenless_api() {
        let with = |host: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, host.parse().unwrap());
            refuse_foreign_host(&h).map(|r| r.status())
        };
        for ok in [
            "localhost",
            "localhost:8080",
            "LOCALHOST.",
            "app.localhost:1",
            "127.0.0.1:8080",
            "10.1.2.3",
            "[::1]:8080",
            "[::1]",
        ] {
            assert_eq!(with(ok), None, "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.nip.io:8080",
            "[::1.evil",
            "[::1].evil.example",
            "[::1]:",
            "[::1]x",
        ] {
            assert_eq!(with(bad), Some(StatusCode::FORBIDDEN), "{bad}");
        }
        assert!(refuse_foreign_host(&HeaderMap::new()).is_none());
    }

    #[test]
    fn json_content_types() {
        let with = |v: Option<&str>| {
            let mut h = HeaderMap::new();
            if let Some(v) = v {
                h.insert(header::CONTENT_TYPE, v.parse().unwrap());
            }
            refuse_unless_json(&h).map(|r| r.status())
        };
        assert_eq!(with(Some("application/json")), None);
        assert_eq!(with(Some("Application/JSON; charset=utf-8")), None);
        for bad in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/jsonx"),
        ] {
            assert_eq!(
                with(bad),
                Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
                "{bad:?}"
            );
        }
    }
}
