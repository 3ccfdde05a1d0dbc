//! Compaction: small data files rewritten into files near the target size,
//! per partition, in one Iceberg `replace` snapshot.
//!
//! A partition's files below three quarters of the target
//! (`write.target-file-size-bytes`, else the layout's `target_file_bytes`)
//! are its candidates. Run by the sink's triggers, compaction is tiered
//! so that no byte is rewritten more than about log2(files) times: the
//! largest candidate is left alone while it is larger than all the others
//! together, and the rest are rewritten once there are at least
//! [`CompactionPolicy::min_input_files`]. Run on demand
//! ([`CompactionPolicy::full`]), every candidate is rewritten. The new
//! files are written with the sink's layout (codec, row groups, bloom
//! filters) and must hold exactly the rows of the files they replace; in
//! the table's default sort order, if it has one ([`super::sort`]).
//!
//! The commit is the same for every writer sharing the table:
//!
//! ```text
//!  plan on snapshot S ─► read + write new files (no lock)
//!    ─► on main as it is then (no lock): every file to remove still live?
//!       no: give up, delete the new files (another writer replaced them);
//!       manifests holding a removed file rewritten (it DELETED, the rest
//!       EXISTING), one manifest of the new files ADDED
//!    ─► take the table lock ─► on main as it is now: every rewritten
//!       manifest still listed? (manifests never change in place) no:
//!       prepare again; yes: main's list without them, plus the new ones
//!       ─► swap with main required to be that snapshot
//! ```
//!
//! So an append by the sink, another process or another engine is never
//! lost nor doubled (its manifests are carried into the replace
//! snapshot), the lock is held for one read of the manifest list and the
//! swap, and a conflict costs one more commit step, not the rewrite.
//! The removed files stay on storage for older snapshots (time travel
//! reads them) until those expire; expiry deletes them then. A crash
//! before the swap leaves new files nothing references, for the orphan
//! sweep. Tables with delete files are left alone.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures::TryStreamExt;
use iceberg::scan::FileScanTask;
use iceberg::spec::{DataFile, ManifestContentType, ManifestFile, ManifestStatus};
use iceberg::table::Table;
use iceberg::Catalog;
use tracing::info;

use super::lock::TableLock;
use super::snapshot::{
    delete_paths, is_conflict, main_manifests, Committer, Failed, NewSnapshot, Prepared,
};
use super::sort::{in_order, spill_parent, ExternalSort, SortKey, SORT_MEMORY_BYTES};
pub use crate::table::target_size::TARGET_FILE_SIZE;
use crate::table::target_size::{table_target_file_bytes, MIN_TARGET_FILE_BYTES};
use crate::table::{DataWriter, Layout};
use crate::{Error, Result};

/// Which files are rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// New files roll past this size; files below three quarters of it
    /// are candidates.
    pub target_bytes: u64,
    /// A partition is compacted once it has this many files to rewrite.
    pub min_input_files: usize,
    /// Leave the largest candidates alone while each is larger than the
    /// rest together (see the module doc).
    pub tiered: bool,
}

/// A sink's default: compact a partition once 10 small files gathered.
pub const DEFAULT_MIN_INPUT_FILES: usize = 10;

impl CompactionPolicy {
    /// The policy for `table` written with `layout`: the table's
    /// `write.target-file-size-bytes` if set (see
    /// [`table_target_file_bytes`]), else the layout's target.
    pub fn of(table: &Table, layout: &Layout) -> CompactionPolicy {
        let target = table_target_file_bytes(table)
            .ok()
            .flatten()
            .unwrap_or(layout.target_file_bytes as u64);
        CompactionPolicy {
            target_bytes: target.max(MIN_TARGET_FILE_BYTES),
            min_input_files: DEFAULT_MIN_INPUT_FILES,
            tiered: true,
        }
    }

    /// Every small file of every partition, now.
    pub fn full(self) -> CompactionPolicy {
        CompactionPolicy {
            min_input_files: 2,
            tiered: false,
            ..self
        }
    }

    fn small(&self, bytes: u64) -> bool {
        bytes < self.target_bytes / 4 * 3
    }
}

/// A live data file of the current snapshot, as its manifest has it.
#[derive(Debug, Clone)]
struct Live {
    file: DataFile,
    spec_id: i32,
}

/// What [`compact`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Compacted {
    pub partitions: usize,
    pub files_removed: usize,
    pub files_added: usize,
    pub bytes_removed: u64,
    pub bytes_added: u64,
    pub rows: u64,
}

/// Compacts `table` (see the module doc). Returns the table after the
/// replace commit, or `None` when nothing was due (or another writer
/// replaced the same files first).
pub async fn compact(
    committer: &Committer,
    catalog: &Arc<dyn Catalog>,
    table: &Table,
    layout: &Layout,
    policy: &CompactionPolicy,
) -> Result<Option<(Table, Compacted)>> {
    let Some(base) = table.metadata().current_snapshot() else {
        return Ok(None);
    };
    // Before any work: a table this cannot commit to is left alone.
    if table.metadata().format_version() != iceberg::spec::FormatVersion::V2 {
        return Ok(None);
    }
    let (live, has_deletes) = live_files(table).await?;
    if has_deletes {
        info!(table = %table.identifier(), "the table has delete files; compaction leaves it alone");
        return Ok(None);
    }
    let bins = plan(live, policy, table.metadata().default_partition_spec_id());
    if bins.is_empty() {
        return Ok(None);
    }
    let started = std::time::Instant::now();
    crate::crash::point(crate::crash::MAINTENANCE_BEFORE_WRITE);
    let removed: Vec<DataFile> = bins.iter().flatten().map(|l| l.file.clone()).collect();
    // The new files roll at the size the plan counts small files by, and
    // get the bloom filters the table's properties ask for as well as the
    // caller's (an on-demand run's layout comes from the configuration).
    let layout = Layout {
        target_file_bytes: policy.target_bytes as usize,
        bloom_filter_columns: crate::table::bloom_filter_columns(
            table,
            &layout.bloom_filter_columns,
        ),
        ..layout.clone()
    };
    let mut writer = DataWriter::new(table, layout, "compact", None)?;
    let order = SortKey::of(table);
    let order_id = order.as_ref().map(SortKey::order_id);
    let mut added = rewrite(table, base.snapshot_id(), &bins, order, &mut writer).await?;
    if let Some(order_id) = order_id {
        let spec_id = table.metadata().default_partition_spec_id();
        let recorded: Result<Vec<DataFile>> = added
            .iter()
            .map(|f| in_order(f.clone(), spec_id, order_id))
            .collect();
        added = match recorded {
            Ok(files) => files,
            Err(e) => {
                delete_files(table, &added).await;
                return Err(e);
            }
        };
    }
    let rows_in: u64 = removed.iter().map(|f| f.record_count()).sum();
    let rows_out: u64 = added.iter().map(|f| f.record_count()).sum();
    if rows_in != rows_out {
        delete_files(table, &added).await;
        return Err(Error::Corrupt(format!(
            "compacting `{}`: {} files held {rows_in} rows, their rewrite {rows_out}; nothing was committed",
            table.identifier(),
            removed.len()
        )));
    }
    let compacted = Compacted {
        // A partition may be rewritten in more than one bin.
        partitions: bins
            .iter()
            .map(|b| format!("{:?}", b[0].file.partition()))
            .collect::<HashSet<_>>()
            .len(),
        files_removed: removed.len(),
        files_added: added.len(),
        bytes_removed: removed.iter().map(|f| f.file_size_in_bytes()).sum(),
        bytes_added: added.iter().map(|f| f.file_size_in_bytes()).sum(),
        rows: rows_in,
    };
    let base_sequence = base.sequence_number();
    match commit_replace(
        committer,
        catalog,
        table,
        base_sequence,
        &removed,
        &added,
        5,
    )
    .await
    {
        Ok(Some(after)) => {
            info!(table = %after.identifier(), files_removed = compacted.files_removed, files_added = compacted.files_added, bytes_removed = compacted.bytes_removed, bytes_added = compacted.bytes_added, secs = started.elapsed().as_secs_f64(), "compacted");
            Ok(Some((after, compacted)))
        }
        Ok(None) => {
            delete_files(table, &added).await;
            Ok(None)
        }
        Err(failed) => {
            // Swapped: the new files are the table's now.
            if failed.not_done() {
                delete_files(table, &added).await;
            }
            Err(failed.error)
        }
    }
}

/// The files [`compact`] would rewrite now, and their bytes.
pub async fn planned(table: &Table, policy: &CompactionPolicy) -> Result<(usize, u64)> {
    let (live, has_deletes) = live_files(table).await?;
    if has_deletes {
        return Ok((0, 0));
    }
    let bins = plan(live, policy, table.metadata().default_partition_spec_id());
    let files: Vec<&Live> = bins.iter().flatten().collect();
    Ok((
        files.len(),
        files.iter().map(|l| l.file.file_size_in_bytes()).sum(),
    ))
}

/// The live data files of `table`'s current snapshot, and whether it has
/// delete files.
async fn live_files(table: &Table) -> Result<(Vec<Live>, bool)> {
    let Some(list) = main_manifests(table).await? else {
        return Ok((Vec::new(), false));
    };
    let mut live = Vec::new();
    let mut has_deletes = false;
    for m in &list {
        if m.content == ManifestContentType::Deletes {
            has_deletes |= m.has_added_files() || m.has_existing_files();
            continue;
        }
        let manifest = m
            .load_manifest(table.file_io())
            .await
            .map_err(|e| read_error(table, "a manifest", e))?;
        for e in manifest.entries() {
            if e.is_alive() {
                live.push(Live {
                    file: e.data_file.clone(),
                    spec_id: m.partition_spec_id,
                });
            }
        }
    }
    Ok((live, has_deletes))
}

/// The files to rewrite, in bins of about the target size, each bin
/// within one partition of the default spec.
fn plan(live: Vec<Live>, policy: &CompactionPolicy, default_spec: i32) -> Vec<Vec<Live>> {
    let mut partitions: BTreeMap<String, Vec<Live>> = BTreeMap::new();
    for l in live {
        if l.spec_id == default_spec && policy.small(l.file.file_size_in_bytes()) {
            partitions
                .entry(format!("{:?}", l.file.partition()))
                .or_default()
                .push(l);
        }
    }
    let mut bins = Vec::new();
    for (_, mut files) in partitions {
        files.sort_by_key(|l| std::cmp::Reverse(l.file.file_size_in_bytes()));
        if policy.tiered {
            let mut rest: u64 = files.iter().map(|l| l.file.file_size_in_bytes()).sum();
            while let Some(largest) = files.first() {
                let size = largest.file.file_size_in_bytes();
                rest -= size;
                if size <= rest {
                    break;
                }
                files.remove(0);
            }
        }
        if files.len() < policy.min_input_files {
            continue;
        }
        // Largest first, each into the first bin it fits.
        let mut packed: Vec<(u64, Vec<Live>)> = Vec::new();
        for l in files {
            let size = l.file.file_size_in_bytes();
            match packed
                .iter_mut()
                .find(|(bytes, _)| bytes + size <= policy.target_bytes)
            {
                Some((bytes, bin)) => {
                    *bytes += size;
                    bin.push(l);
                }
                None => packed.push((size, vec![l])),
            }
        }
        bins.extend(packed.into_iter().map(|(_, b)| b).filter(|b| b.len() > 1));
    }
    bins
}

/// Reads the rows of the files in `bins` as snapshot `snapshot_id` has
/// them and writes them through `writer`; returns the files written. In
/// `order`, if there is one, bin by bin (each bin's rows sorted together,
/// into files of their own); a failure deletes what was written.
async fn rewrite(
    table: &Table,
    snapshot_id: i64,
    bins: &[Vec<Live>],
    order: Option<SortKey>,
    writer: &mut DataWriter,
) -> Result<Vec<DataFile>> {
    let mut added = Vec::new();
    let written = rewrite_into(table, snapshot_id, bins, order, writer, &mut added).await;
    let closed = match written {
        Ok(()) => writer.close().await,
        Err(e) => {
            writer.abort();
            Err(e)
        }
    };
    match closed {
        Ok(files) => {
            added.extend(files);
            Ok(added)
        }
        Err(e) => {
            delete_files(table, &added).await;
            Err(e)
        }
    }
}

async fn rewrite_into(
    table: &Table,
    snapshot_id: i64,
    bins: &[Vec<Live>],
    order: Option<SortKey>,
    writer: &mut DataWriter,
    added: &mut Vec<DataFile>,
) -> Result<()> {
    let err = |e| read_error(table, "the files to compact", e);
    let paths: HashSet<String> = bins
        .iter()
        .flatten()
        .map(|l| l.file.file_path().to_string())
        .collect();
    let tasks: Vec<FileScanTask> = table
        .scan()
        .snapshot_id(snapshot_id)
        .select_all()
        .build()
        .map_err(err)?
        .plan_files()
        .await
        .map_err(err)?
        .try_filter(|t| std::future::ready(paths.contains(t.data_file_path())))
        .try_collect()
        .await
        .map_err(err)?;
    let read = |tasks: Vec<FileScanTask>| {
        let tasks = futures::stream::iter(tasks.into_iter().map(Ok));
        table
            .reader_builder()
            .build()
            .read(Box::pin(tasks))
            .map_err(err)
    };
    let Some(order) = order else {
        let mut batches = read(tasks)?.stream();
        while let Some(batch) = batches.try_next().await.map_err(err)? {
            writer.write(&batch).await?;
        }
        return Ok(());
    };
    for bin in bins {
        let in_bin: HashSet<&str> = bin.iter().map(|l| l.file.file_path()).collect();
        let bin_tasks = tasks
            .iter()
            .filter(|t| in_bin.contains(t.data_file_path()))
            .cloned()
            .collect();
        let mut batches = read(bin_tasks)?.stream();
        let mut sort = ExternalSort::new(order.clone(), SORT_MEMORY_BYTES, spill_parent());
        while let Some(batch) = batches.try_next().await.map_err(err)? {
            // In the table's types first: files of other writers may hold
            // other (castable) ones, which one sort cannot mix.
            sort.push(writer.conform(&batch)?)?;
        }
        for batch in sort.finish()? {
            writer.write(&batch?).await?;
        }
        added.extend(writer.close().await?);
    }
    Ok(())
}

/// Commits the replace of `removed` by `added` on `main` as it is now,
/// up to `attempts` tries (another process committing can make one lose).
/// Each try prepares the snapshot's manifests without the table's lock
/// (reading every data manifest), then, holding it, moves them onto
/// `main` as it is by then ([`rebase`]: one read of the manifest list)
/// and swaps: the sink never waits for more than that short step, and
/// an append that landed meanwhile is carried over, not a lost round.
/// `None`: a removed file is no longer live (another writer replaced
/// it), or delete files were committed since the rewrite read (see
/// [`prepare_replace`]): nothing was committed.
async fn commit_replace(
    committer: &Committer,
    catalog: &Arc<dyn Catalog>,
    table: &Table,
    base_sequence: i64,
    removed: &[DataFile],
    added: &[DataFile],
    attempts: u32,
) -> std::result::Result<Option<Table>, Failed> {
    let unswapped = |error| Failed {
        error,
        swap: super::snapshot::Swap::NotDone,
    };
    let load = || async {
        catalog
            .load_table(table.identifier())
            .await
            .map_err(|e| unswapped(read_error(table, "the table", e)))
    };
    let lock = TableLock::of(table);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let planned_on = load().await?;
        // The new files were written with the spec the plan read: a
        // spec changed since does not change theirs.
        let spec_id = table.metadata().default_partition_spec_id();
        let Some(prepared) = prepare_replace(&planned_on, base_sequence, removed, added, spec_id)
            .await
            .map_err(unswapped)?
        else {
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
        let refuse = |list: &[ManifestFile]| new_deletes(&current, list, base_sequence);
        let properties = |_: &[ManifestFile]| summary(&current, removed, added);
        let result = prepared
            .land(committer, catalog, &current, refuse, properties)
            .await;
        match result {
            Ok(Some(landed)) => {
                lock.bump();
                drop(guard);
                return Ok(Some(landed.table));
            }
            Ok(None) => return Ok(None),
            Err(failed) => {
                if !failed.not_done() {
                    lock.bump();
                }
                drop(guard);
                if !(is_conflict(&failed.error) && attempt < attempts) {
                    return Err(failed);
                }
            }
        }
    }
}

/// The manifests of the replace on `current`'s main: each manifest
/// holding a removed file rewritten (it DELETED, the rest EXISTING), and
/// one of the new files ADDED, under the spec they were written with. `None` if a removed file is not live
/// there, or if delete files were committed since the snapshot the
/// rewrite read (sequence number `base_sequence`): they may apply to
/// rows of the removed files, which the new files would bring back
/// (Java's `validateNoNewDeletesForDataFiles`, for any delete).
async fn prepare_replace(
    current: &Table,
    base_sequence: i64,
    removed: &[DataFile],
    added: &[DataFile],
    added_spec_id: i32,
) -> Result<Option<Prepared>> {
    let Some(list) = main_manifests(current).await? else {
        return Ok(None);
    };
    if new_deletes(current, &list, base_sequence) {
        return Ok(None);
    }
    let mut gone: HashMap<&str, bool> = removed.iter().map(|f| (f.file_path(), false)).collect();
    let mut prepared = Prepared::new(NewSnapshot::start(current)?);
    let outcome: Result<bool> = async {
        for m in &list {
            if m.content != ManifestContentType::Data {
                continue;
            }
            let manifest = m
                .load_manifest(current.file_io())
                .await
                .map_err(|e| read_error(current, "a manifest", e))?;
            let touched = manifest
                .entries()
                .iter()
                .any(|e| e.is_alive() && gone.contains_key(e.file_path()));
            if !touched {
                continue;
            }
            let mut writer = prepared.new.manifest_writer(m.partition_spec_id)?;
            for e in manifest.entries() {
                if e.status() == ManifestStatus::Deleted {
                    continue;
                }
                let (Some(snapshot_id), Some(sequence)) = (e.snapshot_id, e.sequence_number) else {
                    return Err(Error::Corrupt(format!(
                        "a manifest of `{}` has an entry without a snapshot id or sequence number",
                        current.identifier()
                    )));
                };
                let add = match gone.get_mut(e.file_path()) {
                    Some(seen) => {
                        *seen = true;
                        writer.add_delete_file(
                            e.data_file.clone(),
                            sequence,
                            e.file_sequence_number,
                        )
                    }
                    None => writer.add_existing_file(
                        e.data_file.clone(),
                        snapshot_id,
                        sequence,
                        e.file_sequence_number,
                    ),
                };
                add.map_err(|e| read_error(current, "a manifest entry", e))?;
            }
            let file = writer
                .write_manifest_file()
                .await
                .map_err(|e| read_error(current, "a rewritten manifest", e))?;
            prepared.replaced.insert(m.manifest_path.clone());
            prepared.written.push(file);
        }
        if gone.values().any(|seen| !seen) {
            return Ok(false);
        }
        let mut writer = prepared.new.manifest_writer(added_spec_id)?;
        for f in added {
            writer
                .add_file(f.clone(), -1)
                .map_err(|e| read_error(current, "a new manifest entry", e))?;
        }
        let file = writer
            .write_manifest_file()
            .await
            .map_err(|e| read_error(current, "the manifest of the new files", e))?;
        prepared.written.push(file);
        Ok(true)
    }
    .await;
    match outcome {
        Ok(true) => Ok(Some(prepared)),
        Ok(false) => {
            prepared.delete().await;
            Ok(None)
        }
        Err(e) => {
            prepared.delete().await;
            Err(e)
        }
    }
}

/// Whether `list` has delete files committed after sequence number
/// `base_sequence`.
fn new_deletes(table: &Table, list: &[ManifestFile], base_sequence: i64) -> bool {
    let found = list.iter().any(|m| {
        m.content == ManifestContentType::Deletes
            && m.sequence_number > base_sequence
            && (m.has_added_files() || m.has_existing_files())
    });
    if found {
        info!(table = %table.identifier(), "delete files were committed while compacting; this compaction gives up");
    }
    found
}

/// The summary of a replace: what was added and removed, and the totals
/// of the previous snapshot moved by them.
fn summary(current: &Table, removed: &[DataFile], added: &[DataFile]) -> HashMap<String, String> {
    let bytes = |files: &[DataFile]| files.iter().map(|f| f.file_size_in_bytes()).sum::<u64>();
    let rows = |files: &[DataFile]| files.iter().map(|f| f.record_count()).sum::<u64>();
    let mut props = super::snapshot::totals_of(current);
    let shift = |props: &mut HashMap<String, String>, key: &str, plus: u64, minus: u64| {
        if let Some(v) = props.get(key).and_then(|v| v.parse::<u64>().ok()) {
            props.insert(key.into(), (v + plus).saturating_sub(minus).to_string());
        }
    };
    shift(
        &mut props,
        "total-data-files",
        added.len() as u64,
        removed.len() as u64,
    );
    shift(&mut props, "total-files-size", bytes(added), bytes(removed));
    shift(&mut props, "total-records", rows(added), rows(removed));
    props.extend([
        ("added-data-files".into(), added.len().to_string()),
        ("deleted-data-files".into(), removed.len().to_string()),
        ("added-records".into(), rows(added).to_string()),
        ("deleted-records".into(), rows(removed).to_string()),
        ("added-files-size".into(), bytes(added).to_string()),
        ("removed-files-size".into(), bytes(removed).to_string()),
    ]);
    props
}

async fn delete_files(table: &Table, files: &[DataFile]) {
    let paths: Vec<String> = files.iter().map(|f| f.file_path().to_string()).collect();
    delete_paths(table, &paths).await;
}

fn read_error(table: &Table, what: &str, e: iceberg::Error) -> Error {
    Error::Catalog {
        action: format!("compacting `{}`: reading {what}", table.identifier()),
        source: Box::new(e),
    }
}
