//! Snapshot expiry, and the files only expired snapshots referenced.
//!
//! A snapshot of `main` is kept when it is one of the newest
//! [`SnapshotRetention::retain_last`], or when it is younger than
//! [`SnapshotRetention::max_age`] and one of the newest
//! [`SnapshotRetention::max_count`]. So a table committed every few
//! seconds keeps at most `max_count` snapshots, not a day's worth
//! (`history.expire.*` of Iceberg bounds by age only).
//!
//! Expiry is one metadata commit (iceberg's `expire_snapshots` with the
//! ids chosen here). Then the files that no kept snapshot references are
//! deleted: the manifest lists of the expired snapshots, their manifests
//! that no kept snapshot lists, and the data files of those manifests
//! that no kept manifest holds live. What is kept is read from the table
//! as the expiry commit left it, so a snapshot another writer added
//! meanwhile is counted.
//!
//! The pipeline's offsets outlive their snapshots in table properties
//! (see [`crate::commit`]).

use std::collections::HashSet;
use std::sync::Arc;

use iceberg::spec::{ManifestStatus, MAIN_BRANCH};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::Catalog;
use tracing::{info, warn};

use crate::{Error, Result};

/// How much of a table's history a sink keeps (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotRetention {
    pub max_age: std::time::Duration,
    /// Always kept, whatever their age. At least 1.
    pub retain_last: usize,
    /// Never more than this many (at least `retain_last`).
    pub max_count: usize,
}

impl Default for SnapshotRetention {
    /// A day of history, at most 50 snapshots of it, and at least the
    /// last 10 snapshots. Each kept snapshot costs a manifest list, the
    /// manifest of its append and its entry in every kept metadata file
    /// (about 15 KB together): 50 keep a table committed every few
    /// seconds at a few percent of its data in metadata.
    fn default() -> Self {
        SnapshotRetention {
            max_age: std::time::Duration::from_secs(24 * 3600),
            retain_last: 10,
            max_count: 50,
        }
    }
}

/// The snapshots of `main` that `retention` expires, newest first, as of
/// `now_ms`.
pub fn plan(table: &Table, retention: &SnapshotRetention, now_ms: i64) -> Vec<i64> {
    let metadata = table.metadata();
    let cutoff = now_ms - i64::try_from(retention.max_age.as_millis()).unwrap_or(i64::MAX);
    let max_count = retention.max_count.max(retention.retain_last);
    let mut expired = Vec::new();
    let mut next = metadata.current_snapshot_id();
    let mut position = 0;
    while let Some(snapshot) = next.and_then(|id| metadata.snapshot_by_id(id)) {
        let kept = position < retention.retain_last.max(1)
            || (snapshot.timestamp_ms() >= cutoff && position < max_count);
        if !kept {
            expired.push(snapshot.snapshot_id());
        }
        position += 1;
        next = snapshot.parent_snapshot_id();
    }
    expired
}

fn ancestry_len(table: &Table) -> usize {
    let metadata = table.metadata();
    let mut next = metadata.current_snapshot_id();
    let mut n = 0;
    while let Some(snapshot) = next.and_then(|id| metadata.snapshot_by_id(id)) {
        n += 1;
        next = snapshot.parent_snapshot_id();
    }
    n
}

/// The snapshots refs other than `main` hold: each one's head, and a
/// branch's whole ancestry.
fn protected_by_other_refs(table: &Table) -> std::collections::HashSet<i64> {
    let metadata = table.metadata();
    let mut protected = std::collections::HashSet::new();
    let Ok(json) = serde_json::to_value(metadata) else {
        // Unknown refs: protect everything but `main`'s own line.
        protected.extend(metadata.snapshots().map(|s| s.snapshot_id()));
        return protected;
    };
    for (name, r) in json["refs"].as_object().into_iter().flatten() {
        if name == MAIN_BRANCH {
            continue;
        }
        let Some(head) = r["snapshot-id"].as_i64() else {
            continue;
        };
        protected.insert(head);
        if r["type"] == "branch" {
            let mut next = metadata
                .snapshot_by_id(head)
                .and_then(|s| s.parent_snapshot_id());
            while let Some(snapshot) = next.and_then(|id| metadata.snapshot_by_id(id)) {
                protected.insert(snapshot.snapshot_id());
                next = snapshot.parent_snapshot_id();
            }
        }
    }
    protected
}

/// What [`expire`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Expired {
    pub snapshots: usize,
    /// Manifest lists, manifests and data files deleted.
    pub files_deleted: usize,
    /// Files that should have gone but could not be deleted (logged; the
    /// orphan sweep finds them later).
    pub files_left: usize,
}

/// Expires the snapshots [`plan`] names, once they are at least a tenth
/// of those it keeps (so the extra metadata commit stays rare; with
/// `force`, any), then deletes the files only
/// they referenced, and (`owns_metadata_files`) the metadata files the
/// commit dropped from the log. Returns the table as the expiry left it.
pub async fn expire(
    catalog: &Arc<dyn Catalog>,
    table: &Table,
    retention: &SnapshotRetention,
    force: bool,
    owns_metadata_files: bool,
) -> Result<Option<(Table, Expired)>> {
    // Branches and tags keep what they point at (and a branch its whole
    // history, to be safe); `main` is bounded by count and age beside them.
    // (Planned first: the refs are read from the metadata's JSON form,
    // which costs a serialisation, only when something is due.)
    let ids = plan(table, retention, chrono::Utc::now().timestamp_millis());
    let kept = ancestry_len(table) - ids.len();
    if ids.is_empty() || (!force && ids.len() < (kept / 10).max(1)) {
        return Ok(None);
    }
    let protected = protected_by_other_refs(table);
    let ids: Vec<i64> = ids
        .into_iter()
        .filter(|id| !protected.contains(id))
        .collect();
    if ids.is_empty() {
        return Ok(None);
    }
    let catalog_err = |e| Error::Catalog {
        action: format!("expiring snapshots of `{}`", table.identifier()),
        source: Box::new(e),
    };
    let tx = Transaction::new(table);
    // Only the ids planned here: keep every other ancestor (and other
    // snapshots by age, as iceberg would).
    let cutoff = chrono::Utc::now().timestamp_millis()
        - i64::try_from(retention.max_age.as_millis()).unwrap_or(i64::MAX);
    let action = tx
        .expire_snapshots()
        .expire_snapshot_ids(ids.iter().copied())
        .retain_last(usize::MAX);
    let tx = action
        .expire_older_than_ms(cutoff)
        .apply(tx)
        .map_err(catalog_err)?;
    let after = tx.commit(catalog.as_ref()).await.map_err(catalog_err)?;
    crate::crash::point(crate::crash::EXPIRY_BEFORE_CLEANUP);
    if owns_metadata_files {
        super::metadata_files::delete_dropped(table, &after).await;
    }
    // Every other ref holds at least its head: none protected, none there
    // (the expiry commit adds no refs).
    let other_refs = !protected.is_empty();
    let (files_deleted, files_left) = delete_unreferenced(table, &after, other_refs).await?;
    let expired = Expired {
        snapshots: table
            .metadata()
            .snapshots()
            .filter(|s| after.metadata().snapshot_by_id(s.snapshot_id()).is_none())
            .count(),
        files_deleted,
        files_left,
    };
    info!(table = %after.identifier(), expired = expired.snapshots, kept = after.metadata().snapshots().count(), files_deleted, "expired old snapshots");
    Ok(Some((after, expired)))
}

/// Deletes the files that snapshots of `before` missing from `after`
/// referenced and no snapshot of `after` does (`other_refs`: the table
/// has branches or tags besides `main`). Returns (deleted, left).
///
/// The usual case is linear: `main` is the only ref, and what expired is
/// the oldest part of its ancestry. A manifest then lives in a run of
/// consecutive snapshots (once dropped from a list it never comes back),
/// so one the oldest kept snapshot does not list is referenced by no
/// kept snapshot; and a data file an expired snapshot, or the oldest kept
/// one, deleted was live only in older snapshots, all expired. That
/// reads the expired snapshots' lists, their own manifests that delete
/// files, and the oldest kept list and its own such manifests. Anything else (branches, tags, snapshots off `main`) takes the
/// general way, which reads every kept manifest.
pub async fn delete_unreferenced(
    before: &Table,
    after: &Table,
    other_refs: bool,
) -> Result<(usize, usize)> {
    if let Some(oldest_kept) = linear_expiry(before, after, other_refs) {
        return delete_unreferenced_linear(before, after, oldest_kept).await;
    }
    delete_unreferenced_general(before, after).await
}

/// The oldest kept snapshot, when the expiry from `before` to `after`
/// removed exactly the oldest part of `main`'s ancestry and `main` is
/// the only ref (see [`delete_unreferenced`]).
fn linear_expiry(before: &Table, after: &Table, other_refs: bool) -> Option<i64> {
    if other_refs {
        return None;
    }
    let metadata = before.metadata();
    let mut next = metadata.current_snapshot_id();
    let mut oldest_kept = None;
    let mut ancestry = 0;
    let mut expired_tail = false;
    while let Some(snapshot) = next.and_then(|id| metadata.snapshot_by_id(id)) {
        ancestry += 1;
        let kept = after
            .metadata()
            .snapshot_by_id(snapshot.snapshot_id())
            .is_some();
        match (kept, expired_tail) {
            (true, false) => oldest_kept = Some(snapshot.snapshot_id()),
            (false, _) => expired_tail = true,
            (true, true) => return None,
        }
        next = snapshot.parent_snapshot_id();
    }
    // Every snapshot of `before` is on that line.
    (ancestry == metadata.snapshots().count())
        .then_some(oldest_kept)
        .flatten()
}

async fn delete_unreferenced_linear(
    before: &Table,
    after: &Table,
    oldest_kept: i64,
) -> Result<(usize, usize)> {
    let read_err = |what: &str, e| Error::Catalog {
        action: format!("reading {what} of `{}`", after.identifier()),
        source: Box::new(e),
    };
    let kept = after
        .metadata()
        .snapshot_by_id(oldest_kept)
        .expect("the oldest kept snapshot is kept");
    let kept_list = after
        .manifest_list_reader(kept)
        .load()
        .await
        .map_err(|e| read_err("the oldest kept manifest list", e))?;
    let kept_manifests: HashSet<&str> = kept_list
        .entries()
        .iter()
        .map(|m| m.manifest_path.as_str())
        .collect();
    let mut doomed: Vec<String> = Vec::new();
    let mut doomed_manifests: HashSet<String> = HashSet::new();
    for snapshot in before.metadata().snapshots() {
        if after
            .metadata()
            .snapshot_by_id(snapshot.snapshot_id())
            .is_some()
        {
            continue;
        }
        doomed.push(snapshot.manifest_list().to_string());
        let Ok(list) = before.manifest_list_reader(snapshot).load().await else {
            continue;
        };
        for m in list.entries() {
            if !kept_manifests.contains(m.manifest_path.as_str()) {
                doomed_manifests.insert(m.manifest_path.clone());
            }
            let deleted = deleted_by(before, m, snapshot.snapshot_id()).await;
            doomed.extend(deleted.map_err(|e| read_err("a manifest of an expired snapshot", e))?);
        }
    }
    // What the oldest kept snapshot deleted was live only in its
    // ancestors, all expired now.
    for m in kept_list.entries() {
        let deleted = deleted_by(after, m, oldest_kept).await;
        doomed.extend(deleted.map_err(|e| read_err("a manifest of the oldest kept snapshot", e))?);
    }
    doomed.extend(doomed_manifests);
    Ok(delete_all(after, doomed).await)
}

/// The files `m` marks deleted, if snapshot `id` wrote it (a manifest
/// carried from an earlier snapshot says nothing new).
async fn deleted_by(
    table: &Table,
    m: &iceberg::spec::ManifestFile,
    id: i64,
) -> iceberg::Result<Vec<String>> {
    if m.added_snapshot_id != id || !m.has_deleted_files() {
        return Ok(Vec::new());
    }
    let manifest = m.load_manifest(table.file_io()).await?;
    Ok(manifest
        .entries()
        .iter()
        .filter(|e| e.status() == ManifestStatus::Deleted)
        .map(|e| e.file_path().to_string())
        .collect())
}

/// Deletes `files`, those inside the table's location only (see
/// [`super::owned`]): `(deleted, left)`.
async fn delete_all(table: &Table, files: Vec<String>) -> (usize, usize) {
    let (mut deleted, mut left) = (0, 0);
    let location = table.metadata().location();
    for file in files {
        if !super::owned::owns(location, &file) {
            warn!(table = %table.identifier(), file, "an expired snapshot named a file outside the table's location: left where it is");
            left += 1;
            continue;
        }
        match table.file_io().delete(&file).await {
            Ok(()) => deleted += 1,
            Err(e) => {
                warn!(table = %table.identifier(), file, error = %e, "could not delete a file of an expired snapshot");
                left += 1;
            }
        }
    }
    (deleted, left)
}

async fn delete_unreferenced_general(before: &Table, after: &Table) -> Result<(usize, usize)> {
    let read_err = |what: String| {
        move |e| Error::Catalog {
            action: format!("reading {what} of `{}`", after.identifier()),
            source: Box::new(e),
        }
    };
    let removed: Vec<_> = before
        .metadata()
        .snapshots()
        .filter(|s| after.metadata().snapshot_by_id(s.snapshot_id()).is_none())
        .cloned()
        .collect();
    if removed.is_empty() {
        return Ok((0, 0));
    }
    let mut kept_manifests = HashSet::new();
    let mut kept_lists = HashSet::new();
    for snapshot in after.metadata().snapshots() {
        kept_lists.insert(snapshot.manifest_list().to_string());
        let list = after
            .manifest_list_reader(snapshot)
            .load()
            .await
            .map_err(read_err(format!(
                "the manifest list of snapshot {}",
                snapshot.snapshot_id()
            )))?;
        for m in list.entries() {
            kept_manifests.insert(m.manifest_path.clone());
        }
    }
    let mut doomed_lists = Vec::new();
    let mut doomed_manifests = Vec::new();
    for snapshot in &removed {
        if !kept_lists.contains(snapshot.manifest_list()) {
            doomed_lists.push(snapshot.manifest_list().to_string());
        }
        // A list already gone (an earlier expiry that stopped half way)
        // has nothing more to give.
        let Ok(list) = before.manifest_list_reader(snapshot).load().await else {
            continue;
        };
        for m in list.consume_entries() {
            if !kept_manifests.contains(&m.manifest_path) {
                doomed_manifests.push(m);
            }
        }
    }
    doomed_manifests.sort_by(|a, b| a.manifest_path.cmp(&b.manifest_path));
    doomed_manifests.dedup_by(|a, b| a.manifest_path == b.manifest_path);
    // Data files of the doomed manifests that no kept manifest holds live.
    let mut candidates = HashSet::new();
    for m in &doomed_manifests {
        if let Ok(manifest) = m.load_manifest(after.file_io()).await {
            candidates.extend(manifest.entries().iter().map(|e| e.file_path().to_string()));
        }
    }
    if !candidates.is_empty() {
        for path in &kept_manifests {
            let manifest = load_manifest_at(after, path)
                .await
                .map_err(read_err(format!("manifest `{path}`")))?;
            for e in manifest.entries() {
                if e.status() != ManifestStatus::Deleted {
                    candidates.remove(e.file_path());
                }
            }
            if candidates.is_empty() {
                break;
            }
        }
    }
    let doomed = candidates
        .into_iter()
        .chain(doomed_manifests.into_iter().map(|m| m.manifest_path))
        .chain(doomed_lists)
        .collect();
    Ok(delete_all(after, doomed).await)
}

/// The manifest at `path` (its length and spec come from the file itself).
async fn load_manifest_at(table: &Table, path: &str) -> iceberg::Result<iceberg::spec::Manifest> {
    let bytes = table.file_io().new_input(path)?.read().await?;
    iceberg::spec::Manifest::parse_avro(&bytes)
}
