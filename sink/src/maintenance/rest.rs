//! Maintenance commits through an Iceberg REST catalog: the same
//! requirements and updates a SQL catalog's swap applies, sent as the REST
//! spec's commit (`POST …/namespaces/{ns}/tables/{table}`), which the
//! server applies atomically; the server writes (and deletes) the
//! metadata files.
//!
//! Outcomes follow the spec: 200 is done; 409 (a requirement failed) and
//! the other 4xx are not done; a 5xx, no answer in time or a broken
//! connection is unknown ("CommitStateUnknown"), settled by loading the
//! table: done if it holds the new snapshot, else unknown (every file
//! stays for the orphan sweep).
//!
//! Reached with the catalog's settings: the `prefix` its `/v1/config`
//! gives for the warehouse, and a bearer token (given, or exchanged for
//! OAuth2 client credentials at `v1/oauth/tokens`).

use std::sync::Arc;
use std::time::Duration;

use iceberg::{Catalog, TableIdent, TableRequirement, TableUpdate};
use serde_json::{json, Value};
use tokio::sync::OnceCell;

use super::swap::{Failed, Swap};
use crate::catalog::RestSettings;
use crate::Error;

/// How long a commit (and each call it needs) may take.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(super) struct RestCommitter {
    client: reqwest::Client,
    settings: RestSettings,
    prefix: OnceCell<String>,
    token: OnceCell<Option<String>>,
}

fn failed(swap: Swap, what: String) -> Failed {
    Failed {
        error: Error::Catalog {
            action: "committing maintenance through the REST catalog".into(),
            source: Box::new(iceberg::Error::new(
                match swap {
                    Swap::NotDone if what.starts_with("409") => {
                        iceberg::ErrorKind::CatalogCommitConflicts
                    }
                    _ => iceberg::ErrorKind::Unexpected,
                },
                what,
            )),
        },
        swap,
    }
}

/// `s` percent-encoded for a URL path segment.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl RestCommitter {
    pub(super) fn new(settings: RestSettings) -> RestCommitter {
        RestCommitter {
            client: reqwest::Client::new(),
            settings,
            prefix: OnceCell::new(),
            token: OnceCell::new(),
        }
    }

    fn base(&self) -> &str {
        self.settings.uri.trim_end_matches('/')
    }

    /// The bearer token: the one configured, or one exchanged for the
    /// client credentials (once).
    async fn token(&self) -> std::result::Result<Option<String>, String> {
        self.token
            .get_or_try_init(|| async {
                if let Some(token) = &self.settings.token {
                    return Ok(Some(token.clone()));
                }
                let Some(credential) = &self.settings.credential else {
                    return Ok(None);
                };
                let (id, secret) = credential.split_once(':').unwrap_or(("", credential));
                let url = self
                    .settings
                    .oauth2_server_uri
                    .clone()
                    .unwrap_or_else(|| format!("{}/v1/oauth/tokens", self.base()));
                let scope = self.settings.scope.as_deref().unwrap_or("catalog");
                let body = format!(
                    "grant_type=client_credentials&client_id={}&client_secret={}&scope={}",
                    segment(id),
                    segment(secret),
                    segment(scope)
                );
                let answer: Value = self
                    .client
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .timeout(TIMEOUT)
                    .send()
                    .await
                    .map_err(|e| format!("exchanging the catalog's credentials at `{url}`: {e}"))?
                    .json()
                    .await
                    .map_err(|e| format!("the token answer of `{url}`: {e}"))?;
                match answer["access_token"].as_str() {
                    Some(t) => Ok(Some(t.to_string())),
                    None => Err(format!("`{url}` gave no access_token: {answer}")),
                }
            })
            .await
            .cloned()
    }

    fn request(
        &self,
        method: reqwest::Method,
        url: &str,
        token: &Option<String>,
    ) -> reqwest::RequestBuilder {
        let mut r = self.client.request(method, url).timeout(TIMEOUT);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r
    }

    /// The path prefix the catalog's configuration gives (empty if none).
    async fn prefix(&self, token: &Option<String>) -> std::result::Result<String, String> {
        self.prefix
            .get_or_try_init(|| async {
                let mut url = format!("{}/v1/config", self.base());
                if let Some(w) = &self.settings.warehouse {
                    url = format!("{url}?warehouse={}", segment(w));
                }
                let config: Value = self
                    .request(reqwest::Method::GET, &url, token)
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(|e| format!("reading the catalog's configuration `{url}`: {e}"))?
                    .json()
                    .await
                    .map_err(|e| format!("the catalog's configuration `{url}`: {e}"))?;
                let prefix = config["overrides"]["prefix"]
                    .as_str()
                    .or(config["defaults"]["prefix"].as_str())
                    .unwrap_or("");
                Ok(prefix.trim_matches('/').to_string())
            })
            .await
            .cloned()
    }

    /// Sends the commit; see the module doc for its outcomes.
    pub(super) async fn commit(
        &self,
        catalog: &Arc<dyn Catalog>,
        ident: &TableIdent,
        requirements: &[TableRequirement],
        updates: Vec<TableUpdate>,
    ) -> std::result::Result<(), Failed> {
        let not_done = |what: String| failed(Swap::NotDone, what);
        let token = self.token().await.map_err(not_done)?;
        let prefix = self.prefix(&token).await.map_err(not_done)?;
        let added = updates.iter().find_map(|u| match u {
            TableUpdate::AddSnapshot { snapshot } => Some(snapshot.snapshot_id()),
            _ => None,
        });
        let namespace = segment(&ident.namespace().join("\u{1f}"));
        let url = match prefix.as_str() {
            "" => format!(
                "{}/v1/namespaces/{namespace}/tables/{}",
                self.base(),
                segment(ident.name())
            ),
            p => format!(
                "{}/v1/{p}/namespaces/{namespace}/tables/{}",
                self.base(),
                segment(ident.name())
            ),
        };
        let body = json!({
            "identifier": {"namespace": ident.namespace().as_ref(), "name": ident.name()},
            "requirements": requirements,
            "updates": updates,
        });
        let sent = self
            .request(reqwest::Method::POST, &url, &token)
            .json(&body)
            .send()
            .await;
        let why = match sent {
            Ok(r) if r.status().is_success() => {
                if !crate::crash::fault(crate::crash::LOSE_MAINTENANCE_SWAP_ANSWER) {
                    return Ok(());
                }
                // As an answer that takes its time before it is lost.
                tokio::time::sleep(crate::crash::fault_delay()).await;
                format!("PIPE_FAULT: the answer of `{url}` was lost")
            }
            Ok(r) if r.status().is_client_error() => {
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                return Err(not_done(format!("{status} from `{url}`: {text}")));
            }
            Ok(r) => format!("{} from `{url}`", r.status()),
            Err(e) => format!("`{url}`: {e}"),
        };
        // Unknown: done only if the table now holds the new snapshot.
        let landed = match (added, catalog.load_table(ident).await) {
            (Some(id), Ok(table)) => table.metadata().snapshot_by_id(id).is_some(),
            _ => false,
        };
        match landed {
            true => Ok(()),
            false => Err(failed(
                Swap::Unknown,
                format!("{why}; whether the commit went through is unknown, so every file it would reference is kept (the orphan sweep takes them if it did not)"),
            )),
        }
    }
}
