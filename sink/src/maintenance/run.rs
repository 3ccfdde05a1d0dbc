//! One maintenance run of a table, started by the sink's triggers or on
//! demand (`pipe tables maintain`, `POST /v1/tables/{table}/maintain`),
//! and the record of the last runs of each table in this process.
//!
//! A run does, in order and each only if asked: compaction, manifest
//! merging, snapshot expiry, and the orphan sweep. A dry run changes
//! nothing and reports what each step would do. Every run is recorded
//! (the last [`KEPT_RUNS`] per table): what it did, the table before and
//! after, how long it took and how it ended; with [`keep_records_in`],
//! also in a file of JSON lines that outlives the process.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use iceberg::table::Table;
use iceberg::{Catalog, TableIdent};
use serde::{Deserialize, Serialize};

use super::compact::{self, Compacted, CompactionPolicy};
use super::expire::{self, Expired, SnapshotRetention};
use super::manifests::{self, Merged};
use super::orphans::{self, Orphan};
use super::snapshot::Committer;
use crate::table::Layout;
use crate::{Error, Result};

/// Runs kept per table.
pub const KEPT_RUNS: usize = 20;
/// Orphans a record lists by path (all are counted).
pub const LISTED_ORPHANS: usize = 100;

/// What a run does.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Compact small files; `full`: every small file now (on demand),
    /// else as the tiered trigger would.
    pub compact: bool,
    pub full: bool,
    /// Merge manifests if enough gathered.
    pub merge: bool,
    /// Expire snapshots past this retention.
    pub expire: Option<SnapshotRetention>,
    /// Sweep orphans older than this.
    pub sweep: Option<Duration>,
    /// Files write ledgers list, never swept.
    pub ledgered: HashSet<String>,
    /// Change nothing; report what would be done.
    pub dry_run: bool,
    /// This process writes the table's metadata files (see
    /// [`super::metadata_files`]).
    pub owns_metadata_files: bool,
    /// What started the run, for its record.
    pub trigger: &'static str,
    /// When the next run is due, for its record.
    pub next: String,
}

/// The trigger of a run asked for by a user.
pub const ON_DEMAND: &str = "on demand";
/// The trigger of a run the sink starts every few commits. Such a run
/// is recorded only if it did something or failed.
pub const AFTER_COMMITS: &str = "after commits";

/// A table's size, before or after a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableState {
    pub snapshots: usize,
    pub data_files: u64,
    pub data_bytes: u64,
    pub records: u64,
}

impl TableState {
    fn of(table: &Table) -> TableState {
        let summary = table
            .metadata()
            .current_snapshot()
            .map(|s| s.summary().additional_properties.clone())
            .unwrap_or_default();
        let total = |key: &str| summary.get(key).and_then(|v| v.parse().ok()).unwrap_or(0);
        TableState {
            snapshots: table.metadata().snapshots().count(),
            data_files: total("total-data-files"),
            data_bytes: total("total-files-size"),
            records: total("total-records"),
        }
    }
}

/// What the sweep found, in a record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepRecord {
    pub listed: usize,
    pub orphans: usize,
    pub orphan_bytes: u64,
    pub deleted: usize,
    pub spared: usize,
    pub failed: usize,
    /// The first [`LISTED_ORPHANS`] orphans.
    pub files: Vec<OrphanRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrphanRecord {
    pub path: String,
    pub bytes: u64,
    pub age_secs: u64,
}

impl From<&Orphan> for OrphanRecord {
    fn from(o: &Orphan) -> Self {
        OrphanRecord {
            path: o.path.clone(),
            bytes: o.bytes,
            age_secs: o.age.as_secs(),
        }
    }
}

/// What a dry run found to do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Planned {
    /// Files compaction would rewrite, and their bytes.
    pub compact_files: usize,
    pub compact_bytes: u64,
    /// Snapshots expiry would remove.
    pub expire_snapshots: usize,
}

/// The record of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub table: String,
    pub trigger: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub duration_ms: u64,
    /// `ok`, or the error that ended the run.
    pub outcome: String,
    pub dry_run: bool,
    pub before: TableState,
    pub after: TableState,
    pub compacted: Option<Compacted>,
    pub merged: Option<Merged>,
    pub expired: Option<Expired>,
    pub swept: Option<SweepRecord>,
    pub planned: Option<Planned>,
    /// When the next run is due.
    pub next: String,
}

impl RunRecord {
    /// Whether the run changed or found anything, or failed.
    pub fn eventful(&self) -> bool {
        self.outcome != "ok"
            || self.compacted.is_some()
            || self.merged.is_some()
            || self.expired.is_some()
            || self.swept.as_ref().is_some_and(|s| s.orphans > 0)
            || self.planned.is_some()
    }
}

/// Runs maintenance of `ident` as `options` say, records the run, and
/// returns its record (an error ends the run and is its outcome).
pub async fn run(
    committer: &Committer,
    catalog: &Arc<dyn Catalog>,
    ident: &TableIdent,
    layout: &Layout,
    options: &RunOptions,
) -> RunRecord {
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let clock = Instant::now();
    let mut record = RunRecord {
        table: ident.to_string(),
        trigger: options.trigger.to_string(),
        started_at,
        duration_ms: 0,
        outcome: "ok".into(),
        dry_run: options.dry_run,
        before: TableState::default(),
        after: TableState::default(),
        compacted: None,
        merged: None,
        expired: None,
        swept: None,
        planned: None,
        next: options.next.clone(),
    };
    match steps(committer, catalog, ident, layout, options, &mut record).await {
        Ok(table) => record.after = TableState::of(&table),
        Err(e) => {
            record.outcome = format!("error: {e}");
            if let Ok(table) = catalog.load_table(ident).await {
                record.after = TableState::of(&table);
            }
        }
    }
    record.duration_ms = clock.elapsed().as_millis() as u64;
    if options.trigger != AFTER_COMMITS || record.eventful() {
        remember(record.clone());
    }
    record
}

async fn steps(
    committer: &Committer,
    catalog: &Arc<dyn Catalog>,
    ident: &TableIdent,
    layout: &Layout,
    options: &RunOptions,
    record: &mut RunRecord,
) -> Result<Table> {
    let load = |e| Error::Catalog {
        action: format!("loading `{ident}`"),
        source: Box::new(e),
    };
    let mut table = catalog.load_table(ident).await.map_err(load)?;
    record.before = TableState::of(&table);
    let mut policy = CompactionPolicy::of(&table, layout);
    if options.full {
        policy = policy.full();
    }
    if options.dry_run {
        let mut planned = Planned::default();
        if options.compact {
            (planned.compact_files, planned.compact_bytes) =
                compact::planned(&table, &policy).await?;
        }
        if let Some(retention) = &options.expire {
            planned.expire_snapshots =
                expire::plan(&table, retention, chrono::Utc::now().timestamp_millis()).len();
        }
        record.planned = Some(planned);
    } else {
        if options.compact {
            if let Some((after, compacted)) =
                compact::compact(committer, catalog, &table, layout, &policy).await?
            {
                table = after;
                record.compacted = Some(compacted);
            }
        }
        if options.merge {
            if let Some((after, merged)) =
                manifests::merge_manifests(committer, catalog, &table, 3).await?
            {
                table = after;
                record.merged = Some(merged);
            }
        }
        if let Some(retention) = &options.expire {
            // Expiry commits through iceberg: fresh, so its reload finds
            // no change it would have to re-plan around.
            table = catalog.load_table(ident).await.map_err(load)?;
            let lock = super::lock::TableLock::of(&table);
            let guard = lock.lock().await;
            let expired = expire::expire(
                catalog,
                &table,
                retention,
                true,
                options.owns_metadata_files,
            )
            .await?;
            if let Some((after, expired)) = expired {
                lock.bump();
                table = after;
                record.expired = Some(expired);
            }
            drop(guard);
        }
    }
    if let Some(guard_age) = options.sweep {
        let store = committer.store_for(table.metadata().location())?;
        let swept = orphans::sweep(
            &store,
            &table,
            guard_age,
            &options.ledgered,
            options.dry_run,
        )
        .await?;
        record.swept = Some(SweepRecord {
            listed: swept.listed,
            orphans: swept.orphans.len(),
            orphan_bytes: swept.orphans.iter().map(|o| o.bytes).sum(),
            deleted: swept.deleted,
            spared: swept.spared,
            failed: swept.failed,
            files: swept
                .orphans
                .iter()
                .take(LISTED_ORPHANS)
                .map(OrphanRecord::from)
                .collect(),
        });
    }
    Ok(table)
}

static HISTORY: LazyLock<Mutex<HashMap<String, VecDeque<RunRecord>>>> =
    LazyLock::new(Default::default);

/// Where records are kept across restarts, once [`keep_records_in`] set it.
static RECORD_FILE: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Records are appended to the file; past this size it is rewritten with
/// only the kept runs.
const RECORD_FILE_MAX: u64 = 1 << 20;

/// Keeps the records of runs in `path` (JSON lines) from now on, and
/// loads those it already holds (the last [`KEPT_RUNS`] per table). A
/// line that does not parse is skipped: records are a history, not data.
pub fn keep_records_in(path: &Path) -> std::io::Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    {
        let mut history = HISTORY.lock().unwrap_or_else(|p| p.into_inner());
        for record in text
            .lines()
            .filter_map(|l| serde_json::from_str::<RunRecord>(l).ok())
        {
            keep(&mut history, record);
        }
    }
    *RECORD_FILE.lock().unwrap_or_else(|p| p.into_inner()) = Some(path.to_path_buf());
    Ok(())
}

fn keep(history: &mut HashMap<String, VecDeque<RunRecord>>, record: RunRecord) {
    let runs = history.entry(record.table.clone()).or_default();
    if runs.len() == KEPT_RUNS {
        runs.pop_front();
    }
    runs.push_back(record);
}

fn remember(record: RunRecord) {
    let line = serde_json::to_string(&record).ok();
    let mut history = HISTORY.lock().unwrap_or_else(|p| p.into_inner());
    keep(&mut history, record);
    let file = RECORD_FILE.lock().unwrap_or_else(|p| p.into_inner());
    if let (Some(path), Some(line)) = (file.as_ref(), line) {
        if let Err(e) = append_record(path, &line, &history) {
            tracing::warn!(file = %path.display(), error = %e, "could not keep a maintenance record on disk");
        }
    }
}

fn append_record(
    path: &Path,
    line: &str,
    history: &HashMap<String, VecDeque<RunRecord>>,
) -> std::io::Result<()> {
    use std::io::Write;
    let big = std::fs::metadata(path).is_ok_and(|m| m.len() > RECORD_FILE_MAX);
    if big {
        // Only the kept runs, written whole, then swapped in.
        let mut text = String::new();
        for runs in history.values() {
            for r in runs {
                text.push_str(&serde_json::to_string(r).unwrap_or_default());
                text.push('\n');
            }
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        return std::fs::rename(tmp, path);
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "{line}")
}

/// The last runs of `table` (`namespace.name`) in this process, oldest
/// first.
pub fn history(table: &str) -> Vec<RunRecord> {
    let history = HISTORY.lock().unwrap_or_else(|p| p.into_inner());
    history
        .get(table)
        .map(|runs| runs.iter().cloned().collect())
        .unwrap_or_default()
}

/// Every table's runs in this process: `(table, runs, last run)`, by name.
pub fn summary() -> Vec<(String, usize, RunRecord)> {
    let history = HISTORY.lock().unwrap_or_else(|p| p.into_inner());
    let mut out: Vec<_> = history
        .iter()
        .filter_map(|(t, runs)| Some((t.clone(), runs.len(), runs.back()?.clone())))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(table: &str, n: u64) -> RunRecord {
        RunRecord {
            table: table.to_string(),
            trigger: ON_DEMAND.to_string(),
            started_at: "2026-11-30T00:00:00Z".into(),
            duration_ms: n,
            outcome: "ok".into(),
            dry_run: false,
            before: TableState::default(),
            after: TableState::default(),
            compacted: None,
            merged: None,
            expired: None,
            swept: None,
            planned: None,
            // Padding, so the file passes its size bound soon.
            next: "x".repeat(4096),
        }
    }

    /// The only test in this binary that touches the records (they are
    /// process-wide).
    #[test]
    fn records_are_kept_in_a_bounded_file_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.jsonl");
        std::fs::write(&path, "not json\n").unwrap();
        keep_records_in(&path).unwrap();
        for n in 0..400 {
            remember(record(if n % 2 == 0 { "a.t" } else { "b.t" }, n));
        }
        // 400 records of 4 KiB passed the 1 MiB bound: the file was
        // rewritten with the kept runs, then appended to.
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(
            size < RECORD_FILE_MAX + (KEPT_RUNS as u64 * 2 + 1) * 5000,
            "{size}"
        );
        assert_eq!(history("a.t").len(), KEPT_RUNS);
        assert_eq!(history("a.t").last().unwrap().duration_ms, 398);
        // A new process reads them back (here: the same, cleared).
        HISTORY.lock().unwrap().clear();
        keep_records_in(&path).unwrap();
        assert_eq!(history("b.t").len(), KEPT_RUNS);
        assert_eq!(history("b.t").last().unwrap().duration_ms, 399);
    }
}
