//! Old `metadata.json` files: every commit to a table writes a new one,
//! and nothing else ever deletes the old ones. Iceberg's rule, as the
//! Java library applies it after a commit, is followed here: when the table
//! sets `write.metadata.delete-after-commit.enabled`, the files the commit
//! dropped from the metadata log (which keeps the newest
//! `write.metadata.previous-versions-max`) are deleted.
//!
//! Java's default is to keep every file. A table `pipe` writes gets both
//! properties set the first time it is opened (or at creation) when
//! neither is there: deletion on, [`DEFAULT_PREVIOUS_VERSIONS`] kept. Set
//! either property on the table to choose otherwise; `pipe` never changes
//! one that is set.
//!
//! Only where this process writes the metadata files itself (a SQL
//! catalog): a REST catalog's server writes, and deletes, its own.

use iceberg::table::Table;
use tracing::{info, warn};

/// Iceberg's table property: delete metadata files dropped from the log.
pub const DELETE_AFTER_COMMIT: &str = "write.metadata.delete-after-commit.enabled";
/// Iceberg's table property: how many previous metadata files the log keeps.
pub const PREVIOUS_VERSIONS_MAX: &str = "write.metadata.previous-versions-max";
/// Previous metadata files kept on a table `pipe` adopts: enough to see
/// the last commits' history, few enough that a table committed every few
/// seconds does not pile up gigabytes of them.
pub const DEFAULT_PREVIOUS_VERSIONS: usize = 10;

/// The properties to set on `table` so that its old metadata files are
/// deleted: both of them when neither is set, none otherwise.
pub fn properties_to_adopt(table: &Table) -> Vec<(String, String)> {
    let props = table.metadata().properties();
    if props.contains_key(DELETE_AFTER_COMMIT) || props.contains_key(PREVIOUS_VERSIONS_MAX) {
        return Vec::new();
    }
    default_properties()
}

/// The two properties with `pipe`'s defaults, for a table it creates.
pub fn default_properties() -> Vec<(String, String)> {
    vec![
        (DELETE_AFTER_COMMIT.to_string(), "true".to_string()),
        (
            PREVIOUS_VERSIONS_MAX.to_string(),
            DEFAULT_PREVIOUS_VERSIONS.to_string(),
        ),
    ]
}

/// The metadata files a commit from `before` to `after` dropped from the
/// log, when `after` asks for them to be deleted (Java's
/// `deleteRemovedMetadataFiles`). Never `after`'s own file nor one its log
/// still lists.
pub fn dropped(before: &Table, after: &Table) -> Vec<String> {
    let enabled = after
        .metadata()
        .properties()
        .get(DELETE_AFTER_COMMIT)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if !enabled {
        return Vec::new();
    }
    let kept: std::collections::HashSet<&str> = after
        .metadata()
        .metadata_log()
        .iter()
        .map(|l| l.metadata_file.as_str())
        .chain(after.metadata_location())
        .collect();
    before
        .metadata()
        .metadata_log()
        .iter()
        .map(|l| l.metadata_file.as_str())
        .filter(|f| !kept.contains(f))
        .map(str::to_string)
        .collect()
}

/// Deletes what [`dropped`] lists. A file that cannot be deleted is
/// logged and left (the orphan sweep finds it later); the commit stands.
pub async fn delete_dropped(before: &Table, after: &Table) -> usize {
    let mut deleted = 0;
    let location = after.metadata().location();
    for file in dropped(before, after) {
        if !super::owned::owns(location, &file) {
            warn!(table = %after.identifier(), file, "an old metadata file outside the table's location: left where it is");
            continue;
        }
        match after.file_io().delete(&file).await {
            Ok(()) => deleted += 1,
            Err(e) => {
                warn!(table = %after.identifier(), file, error = %e, "could not delete an old metadata file")
            }
        }
    }
    if deleted > 0 {
        info!(table = %after.identifier(), deleted, "deleted old metadata files");
    }
    deleted
}
