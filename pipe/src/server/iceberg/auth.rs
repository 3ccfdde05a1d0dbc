//! Who may use the Iceberg REST catalog (see the module doc of `super`):
//! bearer tokens of `[iceberg]`, and tokens issued to its OAuth2 clients
//! by `POST /v1/oauth/tokens` (client credentials, an hour, in memory,
//! at most [`MAX_PER_CLIENT`] per client at once: a client asking for more
//! pushes out its own oldest, never another client's).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::error::{RestError, RestResult};
use super::IcebergState;
use crate::config::Config;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Read,
    Write,
}

/// How long an issued token lives.
const ISSUED_FOR: Duration = Duration::from_secs(3600);
/// The most tokens one client has alive at once; past it its oldest goes.
const MAX_PER_CLIENT: usize = 100;

/// Tokens issued to OAuth2 clients, by their digest.
#[derive(Debug, Default)]
pub struct Tokens {
    issued: Mutex<HashMap<[u8; 32], Issued>>,
}

#[derive(Debug)]
struct Issued {
    client: String,
    access: Access,
    until: Instant,
}

impl Tokens {
    fn issue(&self, client: &str, access: Access) -> String {
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut issued = self.issued.lock().expect("never poisoned");
        issued.retain(|_, i| i.until > Instant::now());
        let mine: Vec<([u8; 32], Instant)> = issued
            .iter()
            .filter(|(_, i)| i.client == client)
            .map(|(k, i)| (*k, i.until))
            .collect();
        if mine.len() >= MAX_PER_CLIENT {
            if let Some((oldest, _)) = mine.iter().min_by_key(|(_, until)| *until) {
                issued.remove(oldest);
            }
        }
        issued.insert(
            pipe_ingest::http::token_digest(&token),
            Issued {
                client: client.to_string(),
                access,
                until: Instant::now() + ISSUED_FOR,
            },
        );
        token
    }

    fn access_of(&self, digest: &[u8; 32]) -> Option<Access> {
        let issued = self.issued.lock().expect("never poisoned");
        issued
            .get(digest)
            .filter(|i| i.until > Instant::now())
            .map(|i| i.access)
    }
}

fn matches(digests: &[[u8; 32]], presented: &[u8; 32]) -> bool {
    let mut ok = subtle::Choice::from(0);
    for d in digests {
        ok |= d.ct_eq(presented);
    }
    ok.into()
}

/// Refuses a request without the access `need`.
pub fn allow(
    config: &Config,
    tokens: &Tokens,
    headers: &HeaderMap,
    need: Access,
) -> RestResult<()> {
    let iceberg = &config.iceberg;
    if !iceberg.enabled {
        return Err(RestError::new(
            StatusCode::NOT_FOUND,
            "NotFoundException",
            "the Iceberg REST catalog is off (`[iceberg] enabled = false`)",
        ));
    }
    if !iceberg.has_credentials() {
        if !crate::server::access::is_loopback(config.listen) {
            return Err(RestError::new(
                StatusCode::NOT_FOUND,
                "NotFoundException",
                "the Iceberg REST catalog is off on an address other machines reach until `[iceberg]` sets tokens (`read_token_sha256`, `write_token_sha256`) or OAuth2 `clients`",
            ));
        }
        if let Some(why) = crate::server::access::foreign_host(headers) {
            return Err(RestError::forbidden(why));
        }
        return Ok(());
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
        .map(str::trim)
        .ok_or_else(|| RestError::unauthorized("send a token: `Authorization: Bearer <token>`"))?;
    let digest = pipe_ingest::http::token_digest(token);
    let access = if matches(&iceberg.write_digests, &digest) {
        Access::Write
    } else if matches(&iceberg.read_digests, &digest) {
        Access::Read
    } else {
        tokens
            .access_of(&digest)
            .ok_or_else(|| RestError::unauthorized("the token is not valid (or has expired)"))?
    };
    if access < need {
        return Err(RestError::forbidden(
            "this token may read the catalog, not change it",
        ));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
pub(super) struct TokenRequest {
    grant_type: String,
    client_id: Option<String>,
    client_secret: Option<String>,
    #[allow(dead_code)]
    scope: Option<String>,
}

/// An OAuth2 error answer (RFC 6749 §5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// `POST /v1/oauth/tokens`: a token for an `[iceberg]` client's
/// credentials (`grant_type=client_credentials`, the id and the secret in
/// the form or as HTTP Basic).
pub(super) async fn tokens(
    State(state): State<IcebergState>,
    headers: HeaderMap,
    Form(request): Form<TokenRequest>,
) -> Response {
    let config = state.supervisor.config();
    if !config.iceberg.enabled {
        return oauth_error(
            StatusCode::NOT_FOUND,
            "invalid_request",
            "the Iceberg REST catalog is off",
        );
    }
    if request.grant_type != "client_credentials" {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only `client_credentials` is granted",
        );
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(i, s)| (i.to_string(), s.to_string()))
        });
    let (id, secret) = match (request.client_id, request.client_secret, basic) {
        (Some(id), Some(secret), _) => (id, secret),
        (_, _, Some(pair)) => pair,
        _ => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "send `client_id` and `client_secret`",
            )
        }
    };
    let digest = pipe_ingest::http::token_digest(&secret);
    let client = config
        .iceberg
        .clients
        .iter()
        .find(|c| c.id == id && bool::from(c.secret_digest.ct_eq(&digest)));
    let Some(client) = client else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        );
    };
    let access = if client.write {
        Access::Write
    } else {
        Access::Read
    };
    let token = state.tokens.issue(&client.id, access);
    Json(json!({
        "access_token": token,
        "token_type": "bearer",
        "expires_in": ISSUED_FOR.as_secs(),
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_asking_for_many_tokens_pushes_out_only_its_own() {
        let tokens = Tokens::default();
        let writer = tokens.issue("spark", Access::Write);
        let first = tokens.issue("reader", Access::Read);
        for _ in 0..MAX_PER_CLIENT * 3 {
            tokens.issue("reader", Access::Read);
        }
        let digest = pipe_ingest::http::token_digest;
        assert_eq!(tokens.access_of(&digest(&writer)), Some(Access::Write));
        assert_eq!(
            tokens.access_of(&digest(&first)),
            None,
            "its own oldest went"
        );
        let issued = tokens.issued.lock().unwrap();
        assert_eq!(issued.len(), MAX_PER_CLIENT + 1);
    }
}
