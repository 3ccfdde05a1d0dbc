//! Manifest merging: a fast append adds one manifest per commit, and a
//! query plans by reading every manifest the current snapshot lists, so
//! a table committed 2,000 times is planned from 2,000 files. Once a
//! partition spec has [`ManifestPolicy::min_count`] small data manifests
//! to merge (tiered: the largest is left alone while it is larger than
//! the rest together), they are packed into manifests of about
//! [`ManifestPolicy::target_bytes`] in a `replace` snapshot (what Java's
//! `RewriteManifests` makes; Iceberg's `commit.manifest-merge.enabled`,
//! `commit.manifest.min-count-to-merge` (default here
//! [`DEFAULT_MIN_COUNT_TO_MERGE`]) and `commit.manifest.target-size-bytes`
//! are honoured).
//!
//! The new manifests list every live file of the old ones as `EXISTING`,
//! with its snapshot id and sequence numbers; entries of deleted files are
//! dropped. No data file is added or removed, so the snapshot keeps the
//! previous totals, and readers of older snapshots still find the old
//! manifests until those snapshots expire (then expiry deletes them).
//! The commit requires `main` to be the snapshot the merge read; on a
//! conflict the merge is planned again on the new state.

use std::collections::BTreeMap;
use std::sync::Arc;

use iceberg::spec::{ManifestContentType, ManifestFile, ManifestStatus};
use iceberg::table::Table;
use iceberg::Catalog;
use tracing::info;

use super::lock::TableLock;
use super::snapshot::{is_conflict, main_manifests, totals_of, Committer, NewSnapshot, Prepared};
use crate::{Error, Result};

/// Iceberg's table property: merge manifests (default true).
pub const MERGE_ENABLED: &str = "commit.manifest-merge.enabled";
/// Iceberg's table property: merge once a spec has this many manifests
/// (default 100).
pub const MIN_COUNT_TO_MERGE: &str = "commit.manifest.min-count-to-merge";
/// Iceberg's table property: the size merged manifests aim for (default
/// 8 MiB).
pub const TARGET_SIZE_BYTES: &str = "commit.manifest.target-size-bytes";

/// Manifests that gather before a merge when the table does not say
/// (Java's default is 100, for tables appended to a few times a day; a
/// table committed every few seconds keeps 100 snapshots' lists of up to
/// 100 manifests each, most of its metadata).
pub const DEFAULT_MIN_COUNT_TO_MERGE: usize = 10;

/// When and how manifests are merged, read from the table's properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestPolicy {
    pub enabled: bool,
    pub min_count: usize,
    pub target_bytes: u64,
}

impl ManifestPolicy {
    /// The policy `table`'s properties set (Iceberg's defaults otherwise).
    pub fn of(table: &Table) -> ManifestPolicy {
        let props = table.metadata().properties();
        let get = |key: &str| props.get(key).map(|v| v.trim().to_ascii_lowercase());
        ManifestPolicy {
            enabled: get(MERGE_ENABLED).is_none_or(|v| v != "false"),
            min_count: get(MIN_COUNT_TO_MERGE)
                .and_then(|v| v.parse().ok())
                .unwrap_or(DEFAULT_MIN_COUNT_TO_MERGE)
                .max(2),
            target_bytes: get(TARGET_SIZE_BYTES)
                .and_then(|v| v.parse().ok())
                .unwrap_or(8 << 20),
        }
    }
}

/// What [`merge_manifests`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Merged {
    pub manifests_before: usize,
    pub manifests_after: usize,
    /// Entries copied into the new manifests.
    pub entries: usize,
}

/// The manifests to merge: for each partition spec with at least
/// `min_count` data manifests, its manifests under the target size, in
/// list order, packed into groups of about the target size; groups of
/// one are left alone.
fn plan(manifests: &[ManifestFile], policy: &ManifestPolicy) -> Vec<(i32, Vec<ManifestFile>)> {
    let mut by_spec: BTreeMap<i32, Vec<&ManifestFile>> = BTreeMap::new();
    for m in manifests {
        if m.content == ManifestContentType::Data {
            by_spec.entry(m.partition_spec_id).or_default().push(m);
        }
    }
    let len = |m: &ManifestFile| u64::try_from(m.manifest_length).unwrap_or(0);
    let mut groups = Vec::new();
    for (spec, list) in by_spec {
        let mut small: Vec<&ManifestFile> = list
            .into_iter()
            .filter(|m| len(m) < policy.target_bytes)
            .collect();
        // Tiered, as compaction is: the largest stays while it is larger
        // than the rest together, so a big merged manifest is not
        // rewritten each time a few small ones join it.
        small.sort_by_key(|m| std::cmp::Reverse(len(m)));
        let mut rest: u64 = small.iter().map(|m| len(m)).sum();
        while let Some(largest) = small.first() {
            rest -= len(largest);
            if len(largest) <= rest {
                break;
            }
            small.remove(0);
        }
        if small.len() < policy.min_count {
            continue;
        }
        let mut group: Vec<ManifestFile> = Vec::new();
        let mut bytes = 0u64;
        for m in small {
            if bytes + len(m) > policy.target_bytes && !group.is_empty() {
                groups.push((spec, std::mem::take(&mut group)));
                bytes = 0;
            }
            bytes += len(m);
            group.push(m.clone());
        }
        groups.push((spec, group));
    }
    groups.retain(|(_, g)| g.len() > 1);
    groups
}

/// Merges `table`'s manifests when its policy says so (see the module
/// doc), up to `attempts` tries (another process committing can make one
/// lose; never call it holding the table's lock). Each try writes the
/// merged manifests without the lock, then, holding it, moves them onto
/// `main` as it is by then ([`rebase`]) and swaps, so the sink waits for
/// that short step at most. Returns the table after the merge, or `None`
/// when there was nothing to merge.
pub async fn merge_manifests(
    committer: &Committer,
    catalog: &Arc<dyn Catalog>,
    table: &Table,
    attempts: u32,
) -> Result<Option<(Table, Merged)>> {
    let lock = TableLock::of(table);
    let load = || async {
        catalog
            .load_table(table.identifier())
            .await
            .map_err(|e| Error::Catalog {
                action: format!("loading `{}`", table.identifier()),
                source: Box::new(e),
            })
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let planned_on = match attempt {
            1 => table.clone(),
            _ => load().await?,
        };
        let Some((prepared, entries)) = prepare_merge(&planned_on).await? else {
            return Ok(None);
        };
        let guard = lock.lock().await;
        let current = match load().await {
            Ok(current) => current,
            Err(e) => {
                prepared.delete().await;
                return Err(e);
            }
        };
        let (created, replaced) = (prepared.written.len(), prepared.replaced.len());
        let snapshot_id = prepared.new.snapshot_id;
        let properties = |list: &[ManifestFile]| {
            let mut properties = totals_of(&current);
            properties.extend([
                ("manifests-created".to_string(), created.to_string()),
                (
                    "manifests-kept".to_string(),
                    (list.len() - replaced).to_string(),
                ),
                ("manifests-replaced".to_string(), replaced.to_string()),
                ("entries-processed".to_string(), entries.to_string()),
            ]);
            properties
        };
        let landed = prepared
            .land(committer, catalog, &current, |_| false, properties)
            .await;
        if !matches!(&landed, Err(failed) if failed.not_done()) {
            lock.bump();
        }
        drop(guard);
        match landed {
            Ok(Some(landed)) => {
                let merged = Merged {
                    manifests_before: landed.manifests_before,
                    manifests_after: landed.manifests_after,
                    entries,
                };
                info!(table = %landed.table.identifier(), snapshot_id, before = merged.manifests_before, after = merged.manifests_after, entries, "merged manifests");
                return Ok(Some((landed.table, merged)));
            }
            Ok(None) => return Ok(None),
            Err(failed) if is_conflict(&failed.error) && attempt < attempts => {}
            Err(failed) => return Err(failed.error),
        }
    }
}

fn read_error(table: &Table, what: &str, e: iceberg::Error) -> Error {
    Error::Catalog {
        action: format!("reading {what} of `{}`", table.identifier()),
        source: Box::new(e),
    }
}

/// Writes the merged manifests of `table`'s main, if its policy asks for
/// any; with how many entries they hold.
async fn prepare_merge(table: &Table) -> Result<Option<(Prepared, usize)>> {
    let policy = ManifestPolicy::of(table);
    if !policy.enabled {
        return Ok(None);
    }
    let Some(list) = main_manifests(table).await? else {
        return Ok(None);
    };
    let groups = plan(&list, &policy);
    if groups.is_empty() {
        return Ok(None);
    }
    let mut prepared = Prepared::new(NewSnapshot::start(table)?);
    prepared.replaced = groups
        .iter()
        .flat_map(|(_, g)| g.iter().map(|m| m.manifest_path.clone()))
        .collect();
    let mut entries = 0;
    for (spec, group) in &groups {
        match write_merged(&mut prepared.new, *spec, group).await {
            Ok((manifest, n)) => {
                prepared.written.push(manifest);
                entries += n;
            }
            Err(e) => {
                prepared.delete().await;
                return Err(e);
            }
        }
    }
    Ok(Some((prepared, entries)))
}

/// Writes one manifest holding every live entry of `group`; returns it
/// and how many entries it holds.
async fn write_merged(
    snapshot: &mut NewSnapshot,
    spec: i32,
    group: &[ManifestFile],
) -> Result<(ManifestFile, usize)> {
    let table = &snapshot.base.clone();
    let mut writer = snapshot.manifest_writer(spec)?;
    let mut entries = 0;
    for m in group {
        let manifest = m
            .load_manifest(table.file_io())
            .await
            .map_err(|e| read_error(table, &format!("manifest `{}`", m.manifest_path), e))?;
        for e in manifest.entries() {
            if e.status() == ManifestStatus::Deleted {
                continue;
            }
            let (Some(snapshot_id), Some(sequence)) = (e.snapshot_id, e.sequence_number) else {
                return Err(Error::Corrupt(format!(
                    "manifest `{}` of `{}` has an entry without a snapshot id or sequence number",
                    m.manifest_path,
                    table.identifier()
                )));
            };
            writer
                .add_existing_file(
                    e.data_file.clone(),
                    snapshot_id,
                    sequence,
                    e.file_sequence_number,
                )
                .map_err(|e| read_error(table, &format!("an entry of `{}`", m.manifest_path), e))?;
            entries += 1;
        }
    }
    let manifest = writer
        .write_manifest_file()
        .await
        .map_err(|e| read_error(table, "a merged manifest", e))?;
    Ok((manifest, entries))
}
