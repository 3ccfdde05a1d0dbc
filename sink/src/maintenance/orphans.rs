//! The orphan sweep: files under a table's `data/` and `metadata/`
//! folders that no metadata references, older than a guard age, are
//! deleted. They are what failed commits, crashes between writing and
//! committing, aborted compactions and writers that never cleaned up left.
//!
//! Referenced is everything any kept snapshot can reach, whatever the
//! entry's status: manifest lists, manifests, data and delete files, the
//! current metadata file and those its log lists, and statistics files.
//! A file younger than the guard (default three days, as Java's
//! `DeleteOrphanFiles`) is never touched: another writer may have written
//! it for a commit that has not landed yet. Files the sink's write ledger
//! lists (written, not yet resolved: a commit that is still retrying)
//! are never touched either, whatever their age.
//!
//! Only the table's own `data/` and `metadata/` folders are listed, and
//! a listing whose files the metadata names by another prefix (another
//! scheme or bucket spelling) is refused rather than taken for orphans.
//! A dry run lists what would go.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use iceberg::table::Table;
use opendal::Operator;
use tracing::{info, warn};

use crate::{Error, Result};

/// Files younger than this are never swept.
pub const DEFAULT_GUARD: Duration = Duration::from_secs(3 * 24 * 3600);

/// A file no metadata references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub path: String,
    pub bytes: u64,
    /// How long ago it was last modified.
    pub age: Duration,
}

/// What [`sweep`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    /// Files listed under the data and metadata folders.
    pub listed: usize,
    /// Orphans older than the guard: deleted, or listed on a dry run.
    pub orphans: Vec<Orphan>,
    /// Orphans younger than the guard, or listed in a write ledger: kept.
    pub spared: usize,
    pub deleted: usize,
    /// Orphans that could not be deleted (logged).
    pub failed: usize,
}

/// Every file `table`'s metadata references (see the module doc).
pub async fn referenced(table: &Table) -> Result<HashSet<String>> {
    let read = |what: &str, e| Error::Catalog {
        action: format!("sweeping `{}`: reading {what}", table.identifier()),
        source: Box::new(e),
    };
    let metadata = table.metadata();
    let mut files: HashSet<String> = metadata
        .metadata_log()
        .iter()
        .map(|l| l.metadata_file.clone())
        .chain(table.metadata_location().map(str::to_string))
        .collect();
    files.extend(
        metadata
            .statistics_iter()
            .map(|s| s.statistics_path.clone()),
    );
    files.extend(
        metadata
            .partition_statistics_iter()
            .map(|s| s.statistics_path.clone()),
    );
    let mut manifests = HashSet::new();
    for snapshot in metadata.snapshots() {
        files.insert(snapshot.manifest_list().to_string());
        let list = table
            .manifest_list_reader(snapshot)
            .load()
            .await
            .map_err(|e| read("a manifest list", e))?;
        for m in list.entries() {
            if manifests.insert(m.manifest_path.clone()) {
                let manifest = m
                    .load_manifest(table.file_io())
                    .await
                    .map_err(|e| read("a manifest", e))?;
                files.extend(manifest.entries().iter().map(|e| e.file_path().to_string()));
            }
        }
    }
    files.extend(manifests);
    Ok(files)
}

/// One spelling of a path, so that names of the same file compare equal:
/// `file:/a`, `file:///a` and `/a` are `file:///a` (repeated slashes in a
/// local path are one); `s3a://` and `s3n://` are `s3://` (an object
/// store's keys are kept as they are).
pub fn canonical(path: &str) -> String {
    let (scheme, rest) = match path.split_once(':') {
        Some((scheme, rest)) if !scheme.contains('/') => (scheme.to_ascii_lowercase(), rest),
        _ => ("file".to_string(), path),
    };
    let collapse = |p: &str| {
        let mut out = String::with_capacity(p.len());
        for c in p.chars() {
            if !(c == '/' && out.ends_with('/')) {
                out.push(c);
            }
        }
        out
    };
    match scheme.as_str() {
        "file" => {
            let p = rest.trim_start_matches('/');
            // `file://localhost/a` names `/a` too.
            let p = p.strip_prefix("localhost/").unwrap_or(p);
            format!("file:///{}", collapse(p))
        }
        // In an object store `a//b` and `a/b` are two keys: kept apart.
        other => {
            let scheme = match other {
                "s3a" | "s3n" => "s3",
                s => s,
            };
            format!("{scheme}://{}", rest.trim_start_matches('/'))
        }
    }
}

/// The roots of other tables found inside this one's `data/` folder (a
/// namespace named like this table holds tables whose folders the catalog
/// puts there): any folder with a `metadata/*.metadata.json` below it.
fn nested_tables(listed: &[String]) -> Vec<String> {
    let mut roots: Vec<String> = listed
        .iter()
        .filter(|p| p.starts_with("data/") && p.ends_with(".metadata.json"))
        .filter_map(|p| {
            p.rsplit_once("/metadata/")
                .map(|(root, _)| format!("{root}/"))
        })
        .collect();
    roots.sort();
    roots.dedup();
    roots
}

/// Sweeps `table` through `store` (an operator rooted at the table's
/// location), sparing files younger than `guard` and those in `ledgered`.
///
/// Only `metadata/`'s own files (not its subfolders) and `data/`'s are
/// candidates, and nothing under another table nested in `data/`.
pub async fn sweep(
    store: &Operator,
    table: &Table,
    guard: Duration,
    ledgered: &HashSet<String>,
    dry_run: bool,
) -> Result<Swept> {
    let location = canonical(table.metadata().location().trim_end_matches('/'));
    let referenced: HashSet<String> = referenced(table)
        .await?
        .iter()
        .map(|p| canonical(p))
        .collect();
    let ledgered: HashSet<String> = ledgered.iter().map(|p| canonical(p)).collect();
    let ours = referenced
        .iter()
        .filter(|p| p.starts_with(&location))
        .count();
    let mut swept = Swept::default();
    let mut listed = Vec::new();
    for folder in ["data/", "metadata/"] {
        let entries = match store.list_with(folder).recursive(true).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(Error::Store {
                    action: format!("listing {location}/{folder}"),
                    source: Box::new(e),
                })
            }
        };
        listed.extend(entries.into_iter().filter(|e| e.metadata().is_file()));
    }
    let paths: Vec<String> = listed.iter().map(|e| e.path().to_string()).collect();
    let nested = nested_tables(&paths);
    // Iceberg writes metadata files flat: a subfolder of `metadata/` is
    // not this table's.
    listed.retain(|e| {
        let p = e.path();
        let flat_metadata = p
            .strip_prefix("metadata/")
            .is_none_or(|name| !name.contains('/'));
        flat_metadata && !nested.iter().any(|root| p.starts_with(root.as_str()))
    });
    swept.listed = listed.len();
    if !listed.is_empty() && ours == 0 && !referenced.is_empty() {
        return Err(Error::Config(format!(
            "sweeping `{}`: its metadata names no file under its location `{location}` (another scheme or spelling of the same place?); nothing was deleted",
            table.identifier()
        )));
    }
    let now = SystemTime::now();
    for entry in listed {
        let rel = entry.path().to_string();
        let full = canonical(&format!("{location}/{rel}"));
        if referenced.contains(&full) {
            continue;
        }
        let modified = match entry.metadata().last_modified() {
            Some(t) => Some(t),
            None => store.stat(&rel).await.ok().and_then(|m| m.last_modified()),
        };
        // Unknown age: as young as can be.
        let age = modified
            .and_then(|t| now.duration_since(SystemTime::from(t)).ok())
            .unwrap_or_default();
        if age < guard || ledgered.contains(&full) {
            swept.spared += 1;
            continue;
        }
        let bytes = match entry.metadata().content_length() {
            0 => store
                .stat(&rel)
                .await
                .map(|m| m.content_length())
                .unwrap_or(0),
            n => n,
        };
        if !dry_run {
            match store.delete(&rel).await {
                Ok(()) => swept.deleted += 1,
                Err(e) => {
                    warn!(table = %table.identifier(), file = full, error = %e, "could not delete an orphan file");
                    swept.failed += 1;
                }
            }
        }
        swept.orphans.push(Orphan {
            path: full,
            bytes,
            age,
        });
    }
    if !dry_run && swept.deleted > 0 {
        info!(table = %table.identifier(), deleted = swept.deleted, spared = swept.spared, "deleted orphan files");
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_path_are_one() {
        for (a, b) in [
            ("file:/w/t/data/a.parquet", "file:///w/t/data/a.parquet"),
            ("/w/t/data/a.parquet", "file:///w/t/data/a.parquet"),
            ("file://localhost/w/t/a", "file:///w/t/a"),
            ("file:///w/t//data/a", "file:///w/t/data/a"),
            ("s3a://b/w/t/a", "s3://b/w/t/a"),
            ("s3n://b/w/t/a", "s3://b/w/t/a"),
            ("S3://b/w/t/a", "s3://b/w/t/a"),
        ] {
            assert_eq!(canonical(a), canonical(b), "{a} vs {b}");
        }
        assert_ne!(canonical("s3://b1/t/a"), canonical("s3://b2/t/a"));
        // Two keys in an object store.
        assert_ne!(canonical("s3://b/t//a"), canonical("s3://b/t/a"));
    }

    #[test]
    fn a_table_nested_in_the_data_folder_is_found() {
        let listed = [
            "data/day=1/a.parquet",
            "data/other/metadata/00001-x.metadata.json",
            "data/other/data/b.parquet",
            "metadata/00003-y.metadata.json",
        ]
        .map(String::from);
        assert_eq!(nested_tables(&listed), ["data/other/"]);
    }
}
