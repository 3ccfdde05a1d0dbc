//! The web console at `/console`: one page (HTML, CSS, JS, all in the
//! binary, no request leaves the server) that uses the same HTTP APIs as
//! every other client: the admin API, `POST /v1/query` and the
//! maintenance API. Nothing here reads state of its own.
//!
//! Access: the page asks for a token when an API answers 401, keeps it in
//! the tab's `sessionStorage` and sends it as a bearer token; the APIs
//! check it as they check any client's. No cookie carries authority, so
//! another site cannot act with the user's credentials (no CSRF); the
//! page may not be framed, runs only its own script, and talks only to
//! its own origin (`Content-Security-Policy`).
//!
//! The user's guide is `docs/console.md`.

use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");

/// What every console response says about itself.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `/` (to the console), `/console/` and its two assets.
pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route(
            "/console/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/console/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/console/app.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}
