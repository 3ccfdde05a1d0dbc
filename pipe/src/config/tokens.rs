//! Bearer-token digests as `pipe.toml` lists them (`pipe hash-token`).

use crate::{Error, Result};

/// Parses `auth_token_sha256` digests (the output of `pipe hash-token`).
pub(super) fn token_digests(key: &str, digests: &[String]) -> Result<Vec<[u8; 32]>> {
    digests
        .iter()
        .enumerate()
        .map(|(i, digest)| {
            hex::decode(digest.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    Error::Config(format!(
                        "`{key}[{i}]`: expected 64 hex digits, the output of `pipe hash-token`"
                    ))
                })
        })
        .collect()
}
