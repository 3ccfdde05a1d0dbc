//! A file sink's storage: an OpenDAL operator rooted at its path, and
//! files created whole or not at all.

use opendal::{ErrorKind as StoreErrorKind, Operator};

use tracing::warn;

use super::{store_err, Record, StagedFile, TEMP_SUFFIX};
use crate::{Error, Result};

/// The storage under a file sink: an OpenDAL operator rooted at its path.
pub(super) struct Store {
    pub(super) op: Operator,
    pub(super) location: String,
}

impl Store {
    /// Creates the file `path` holding `body` unless it exists (`false`
    /// then), whole or not at all. On S3 a conditional PUT is both. On a
    /// folder, OpenDAL creates the final name first and then writes, so a
    /// full disk or a kill in between leaves an empty file that would stop
    /// the sink for good: the body goes to a temporary file, synced, which
    /// is then hard-linked to the final name (fails if it exists).
    pub(super) async fn create(&self, path: &str, body: Vec<u8>) -> opendal::Result<bool> {
        let Some(folder) = self.location.strip_prefix("file://") else {
            return match self.op.write_with(path, body).if_not_exists(true).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == StoreErrorKind::ConditionNotMatch => Ok(false),
                Err(e) => Err(e),
            };
        };
        let target = std::path::Path::new(folder).join(path);
        let created = tokio::task::spawn_blocking(move || create_whole(&target, &body))
            .await
            .map_err(|e| opendal::Error::new(StoreErrorKind::Unexpected, e.to_string()))?;
        created.map_err(|e| {
            opendal::Error::new(StoreErrorKind::Unexpected, format!("creating {path}: {e}"))
                .set_source(e)
        })
    }

    /// The names in folder `dir` ending in `suffix`, sorted.
    /// Whether `pipeline` has a commit record under a source's folder
    /// (`_pipe/<pipeline>@<source>/commits/`), ours or another log's.
    pub(super) async fn has_sourced_commits(&self, pipeline: &str) -> Result<bool> {
        let prefix = format!("_pipe/{pipeline}@");
        let dirs: Vec<String> = self
            .list("_pipe/", "/")
            .await?
            .into_iter()
            .filter(|d| d.starts_with(&prefix))
            .collect();
        for dir in dirs {
            let commits = format!("{dir}commits/");
            let records = self.list(&commits, ".commit").await?;
            if !records.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub(super) async fn list(&self, dir: &str, suffix: &str) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .op
            .list(dir)
            .await
            .or_else(|e| match e.kind() {
                StoreErrorKind::NotFound => Ok(Vec::new()),
                _ => Err(e),
            })
            .map_err(store_err(format!("listing {}/{dir}", self.location)))?
            .into_iter()
            .map(|e| e.path().to_string())
            .filter(|p| p.ends_with(suffix))
            .collect();
        names.sort();
        Ok(names)
    }

    pub(super) async fn delete(&self, path: &str) -> Result<()> {
        self.op
            .delete(path)
            .await
            .map_err(store_err(format!("deleting {}/{path}", self.location)))
    }

    pub(super) async fn read_record(&self, path: &str) -> Result<Option<Record>> {
        match self.op.read(path).await {
            Ok(bytes) => serde_json::from_slice(&bytes.to_vec())
                .map(Some)
                .map_err(|e| {
                    Error::Corrupt(format!(
                        "commit record {}/{path} is not valid ({e}). An empty one is left by older versions of pipe when a full disk or a crash cut its write short; nothing was published for it: delete it and start again",
                        self.location
                    ))
                }),
            Err(e) if e.kind() == StoreErrorKind::NotFound => Ok(None),
            Err(e) => Err(store_err(format!("reading {}/{path}", self.location))(e)),
        }
    }

    /// Moves each staging file of `record` to its final name (idempotent).
    /// `crash`: offer the `mid-publish` crash point.
    pub(super) async fn publish(&self, record: &Record, crash: bool) -> Result<()> {
        let rename = self.op.info().full_capability().rename;
        for (n, (staging, target)) in record.files.iter().enumerate() {
            let staged = self
                .op
                .exists(staging)
                .await
                .map_err(store_err(format!("looking up {staging}")))?;
            if staged {
                // A final name receives one staging file only; a file there
                // already is someone else's (or, after a copy cut short by a
                // crash, this very copy: same size), never to be replaced.
                if let Some(existing) = self.size_of(target).await? {
                    let ours = !rename && Some(existing) == self.size_of(staging).await?;
                    if !ours {
                        return Err(Error::Corrupt(format!(
                            "publishing commit {}..={} would replace {target} under {}, which another writer made; two sinks write into one folder under the same names",
                            record.first, record.last, self.location
                        )));
                    }
                }
                if rename {
                    self.op
                        .rename(staging, target)
                        .await
                        .map_err(store_err(format!("publishing {target}")))?;
                } else {
                    self.op
                        .copy(staging, target)
                        .await
                        .map_err(store_err(format!("publishing {target}")))?;
                    self.op
                        .delete(staging)
                        .await
                        .map_err(store_err(format!("deleting {staging}")))?;
                }
            } else if !self
                .op
                .exists(target)
                .await
                .map_err(store_err(format!("looking up {target}")))?
            {
                return Err(Error::Corrupt(format!(
                    "commit {}..={} names {target}, but neither it nor its staging file {staging} exists under {}",
                    record.first, record.last, self.location
                )));
            }
            if crash && n == 0 {
                crate::crash::point(crate::crash::MID_PUBLISH);
            }
        }
        Ok(())
    }

    /// The size of `path`, or `None` if there is no such file.
    pub(super) async fn size_of(&self, path: &str) -> Result<Option<u64>> {
        match self.op.stat(path).await {
            Ok(meta) => Ok(Some(meta.content_length())),
            Err(e) if e.kind() == StoreErrorKind::NotFound => Ok(None),
            Err(e) => Err(store_err(format!("looking up {path}"))(e)),
        }
    }

    pub(super) async fn delete_staged(&self, files: &[StagedFile]) -> Result<()> {
        for f in files {
            self.delete(&f.staging).await?;
        }
        Ok(())
    }

    /// Keeps the newest few commit records of folder `dir`, up to `newest`;
    /// recovery only needs the last.
    pub(super) async fn prune_records(&self, dir: &str, newest: &str) {
        let Ok(names) = self.list(dir, ".commit").await else {
            return;
        };
        let names: Vec<&String> = names.iter().filter(|p| p.as_str() <= newest).collect();
        let old = names.len().saturating_sub(KEEP_RECORDS);
        for name in &names[..old] {
            if let Err(e) = self.op.delete(name).await {
                warn!(record = %name, error = %e, "could not delete an old commit record");
            }
        }
    }
}

/// Commit records kept (recovery needs only the newest).
pub(super) const KEEP_RECORDS: usize = 16;

/// Writes `body` to a temporary file beside `target`, syncs it, and links
/// it to `target` unless that exists (`false` then); the folder is synced.
pub(super) fn create_whole(target: &std::path::Path, body: &[u8]) -> std::io::Result<bool> {
    use std::io::Write as _;
    let dir = target.parent().expect("a record path has a folder");
    std::fs::create_dir_all(dir)?;
    let name = target
        .file_name()
        .expect("a record path has a name")
        .to_string_lossy();
    let temp = dir.join(format!(
        ".{name}.{}{TEMP_SUFFIX}",
        uuid::Uuid::new_v4().simple()
    ));
    let written = std::fs::File::create(&temp).and_then(|mut f| {
        f.write_all(body)?;
        f.sync_all()
    });
    let linked = written.and_then(|()| match std::fs::hard_link(&temp, target) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    });
    let _ = std::fs::remove_file(&temp);
    let created = linked?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(created)
}
