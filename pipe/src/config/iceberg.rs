//! `[iceberg]`: the Iceberg REST catalog `pipe serve` serves under
//! `/iceberg` (see `crate::server::iceberg`), and who may use it.
//!
//! ```toml
//! [iceberg]
//! enabled = true                          # false: 404 for every request
//! read_token_sha256 = ["…"]               # bearer tokens that may read
//! write_token_sha256 = ["…"]              # bearer tokens that may read and write
//! clients = [{ id = "spark", secret_sha256 = "…", write = true }]   # OAuth2 client credentials
//! vend_credentials = false                # hand the warehouse's S3 keys to clients that ask
//! ```
//!
//! On a loopback `listen` without tokens or clients the catalog is open
//! (read and write), as a local tool should be; on any other address it is
//! off unless tokens or clients are set.

use serde::Deserialize;

use super::tokens::token_digests;
use crate::{Error, Result};

/// `[iceberg]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcebergFile {
    #[serde(default)]
    pub enabled: Option<bool>,
    /// SHA-256 digests (`pipe hash-token`) of tokens that may read.
    #[serde(default)]
    pub read_token_sha256: Vec<String>,
    /// SHA-256 digests of tokens that may read and write.
    #[serde(default)]
    pub write_token_sha256: Vec<String>,
    /// OAuth2 clients (`POST /iceberg/v1/oauth/tokens`).
    #[serde(default)]
    pub clients: Vec<IcebergClientFile>,
    /// Whether a client that asks (`X-Iceberg-Access-Delegation:
    /// vended-credentials`) gets the warehouse's S3 settings and keys.
    #[serde(default)]
    pub vend_credentials: bool,
}

/// One OAuth2 client of `[iceberg]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcebergClientFile {
    pub id: String,
    /// SHA-256 digest (`pipe hash-token`) of its secret.
    pub secret_sha256: String,
    /// Whether it may write (default: read only).
    #[serde(default)]
    pub write: bool,
}

/// `[iceberg]`, resolved.
#[derive(Debug, Clone, Default)]
pub struct IcebergConfig {
    pub enabled: bool,
    pub read_digests: Vec<[u8; 32]>,
    pub write_digests: Vec<[u8; 32]>,
    pub clients: Vec<IcebergClient>,
    pub vend_credentials: bool,
}

#[derive(Debug, Clone)]
pub struct IcebergClient {
    pub id: String,
    pub secret_digest: [u8; 32],
    pub write: bool,
}

impl IcebergConfig {
    /// Whether any credential is set (else the catalog is open on
    /// loopback and off elsewhere).
    pub fn has_credentials(&self) -> bool {
        !self.read_digests.is_empty() || !self.write_digests.is_empty() || !self.clients.is_empty()
    }
}

/// `[iceberg]`, checked.
pub(super) fn iceberg_config(file: IcebergFile) -> Result<IcebergConfig> {
    let clients = file
        .clients
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if c.id.trim().is_empty() {
                return Err(Error::Config(format!("`iceberg.clients[{i}].id`: empty")));
            }
            let [secret_digest] = token_digests(
                &format!("iceberg.clients[{i}].secret_sha256"),
                std::slice::from_ref(&c.secret_sha256),
            )?[..] else {
                unreachable!("one digest in, one out")
            };
            Ok(IcebergClient {
                id: c.id.clone(),
                secret_digest,
                write: c.write,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(IcebergConfig {
        enabled: file.enabled.unwrap_or(true),
        read_digests: token_digests("iceberg.read_token_sha256", &file.read_token_sha256)?,
        write_digests: token_digests("iceberg.write_token_sha256", &file.write_token_sha256)?,
        clients,
        vend_credentials: file.vend_credentials,
    })
}
