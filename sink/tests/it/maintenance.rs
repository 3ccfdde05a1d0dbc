//! Maintenance that runs with the sink's commits: old metadata files
//! deleted, snapshots expired by age and count, and the files only expired
//! snapshots referenced deleted.

use futures::TryStreamExt;
use iceberg::table::Table;
use pipe_sink::maintenance::metadata_files::{DELETE_AFTER_COMMIT, PREVIOUS_VERSIONS_MAX};
use pipe_sink::{OffsetRange, SnapshotRetention, TableSink, WriteOptions};

use super::{load_table, open_with, rows};

/// Commits `n` ranges of 10 rows each, from offset `from`.
async fn commit_n(sink: &mut TableSink, from: u64, n: u64) {
    for i in from..from + n {
        let first = i as i64 * 10;
        sink.write(&rows(first..first + 10)).await.unwrap();
        let files = sink.close_files().await.unwrap();
        sink.commit(OffsetRange { first: i, last: i }, &files)
            .await
            .unwrap();
    }
}

/// Rows of the table's current snapshot, read from its data files.
async fn scanned_rows(table: &Table) -> usize {
    let batches: Vec<_> = table
        .scan()
        .build()
        .unwrap()
        .to_arrow()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    batches.iter().map(|b| b.num_rows()).sum()
}

/// Files in the table's metadata folder: (metadata.json files, manifest
/// lists, manifests).
fn metadata_folder(dir: &std::path::Path) -> (usize, usize, usize) {
    let mut counts = (0, 0, 0);
    for e in std::fs::read_dir(dir.join("warehouse/default/events/metadata")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".metadata.json") {
            counts.0 += 1;
        } else if name.starts_with("snap-") {
            counts.1 += 1;
        } else if name.ends_with(".avro") {
            counts.2 += 1;
        }
    }
    counts
}

fn keep_all() -> WriteOptions {
    WriteOptions {
        retention: None,
        ..WriteOptions::default()
    }
}

#[tokio::test]
async fn old_metadata_files_are_deleted_keeping_the_newest_ten() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open_with(dir.path(), "p", keep_all()).await;
    commit_n(&mut sink, 0, 30).await;
    let table = load_table(dir.path(), &sink).await;
    let props = table.metadata().properties();
    assert_eq!(props.get(DELETE_AFTER_COMMIT).unwrap(), "true");
    assert_eq!(props.get(PREVIOUS_VERSIONS_MAX).unwrap(), "10");
    assert_eq!(table.metadata().metadata_log().len(), 10);
    // The current file and the ten the log lists; every snapshot kept.
    assert_eq!(metadata_folder(dir.path()), (11, 30, 30));
    for log in table.metadata().metadata_log() {
        let path = log.metadata_file.strip_prefix("file://").unwrap();
        assert!(std::path::Path::new(path).exists(), "{path} is listed");
    }
    assert_eq!(scanned_rows(&table).await, 300);
}

#[tokio::test]
async fn a_table_that_keeps_its_metadata_files_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    // Made by a writer that does not delete them (a REST catalog's, or
    // pipe before it did), then told to keep them all.
    let foreign = WriteOptions {
        owns_metadata_files: false,
        ..keep_all()
    };
    let mut sink = open_with(dir.path(), "p", foreign).await;
    commit_n(&mut sink, 0, 3).await;
    let table = load_table(dir.path(), &sink).await;
    assert!(!table
        .metadata()
        .properties()
        .contains_key(DELETE_AFTER_COMMIT));
    let catalog = pipe_sink::open_catalog(&pipe_sink::CatalogSettings::local(dir.path()))
        .await
        .unwrap();
    use iceberg::transaction::{ApplyTransactionAction, Transaction};
    let tx = Transaction::new(&table);
    let tx = tx
        .update_table_properties()
        .set(PREVIOUS_VERSIONS_MAX.into(), "2".into())
        .apply(tx)
        .unwrap();
    tx.commit(catalog.as_ref()).await.unwrap();
    // pipe opens it: a property is set, so it changes nothing.
    let mut sink = open_with(dir.path(), "p", keep_all()).await;
    commit_n(&mut sink, 3, 10).await;
    let table = load_table(dir.path(), &sink).await;
    assert!(!table
        .metadata()
        .properties()
        .contains_key(DELETE_AFTER_COMMIT));
    // The log keeps 2; all 15 files stay (create, 3 + 1 + 10 commits).
    assert_eq!(metadata_folder(dir.path()).0, 15);
}

#[tokio::test]
async fn a_table_without_the_properties_is_adopted_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = WriteOptions {
        owns_metadata_files: false,
        ..keep_all()
    };
    let mut sink = open_with(dir.path(), "p", foreign).await;
    commit_n(&mut sink, 0, 20).await;
    assert_eq!(metadata_folder(dir.path()).0, 21);
    let mut sink = open_with(dir.path(), "p", keep_all()).await;
    commit_n(&mut sink, 20, 1).await;
    let table = load_table(dir.path(), &sink).await;
    assert_eq!(
        table
            .metadata()
            .properties()
            .get(DELETE_AFTER_COMMIT)
            .unwrap(),
        "true"
    );
    // Files the log had dropped before the adoption are the orphan
    // sweep's; from the adoption on, each commit deletes what it drops.
    let before = metadata_folder(dir.path()).0;
    commit_n(&mut sink, 21, 5).await;
    assert_eq!(metadata_folder(dir.path()).0, before);
    assert_eq!(
        scanned_rows(&load_table(dir.path(), &sink).await).await,
        260
    );
}

#[tokio::test]
async fn snapshots_are_expired_by_count_and_their_manifest_lists_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let options = WriteOptions {
        retention: Some(SnapshotRetention {
            max_age: std::time::Duration::from_secs(3600),
            retain_last: 2,
            max_count: 5,
        }),
        ..WriteOptions::default()
    };
    let mut sink = open_with(dir.path(), "p", options).await;
    commit_n(&mut sink, 0, 20).await;
    let table = load_table(dir.path(), &sink).await;
    assert_eq!(table.metadata().snapshots().count(), 5);
    // One manifest list per kept snapshot; every manifest is still listed
    // by the current snapshot (fast appends carry them along).
    let (metadata, lists, manifests) = metadata_folder(dir.path());
    assert_eq!((lists, manifests), (5, 20));
    assert!(metadata <= 11, "{metadata} metadata files");
    assert_eq!(scanned_rows(&table).await, 200);
    assert_eq!(super::data_files_on_disk(dir.path()).len(), 40);
}

/// A sink that merges manifests once there are `min_count`, and keeps
/// `retention`.
async fn merging_sink(
    dir: &std::path::Path,
    min_count: usize,
    retention: Option<SnapshotRetention>,
) -> TableSink {
    let settings = pipe_sink::CatalogSettings::local(dir);
    let committer = pipe_sink::maintenance::Committer::open(&settings)
        .await
        .unwrap();
    // The table exists first, so the property can be set on it.
    drop(open_with(dir, "p", keep_all()).await);
    set_property(dir, MIN_COUNT_TO_MERGE, &min_count.to_string()).await;
    let options = WriteOptions {
        retention,
        committer: Some(committer),
        compact: false,
        ..WriteOptions::default()
    };
    open_with(dir, "p", options).await
}

async fn set_property(dir: &std::path::Path, key: &str, value: &str) {
    use iceberg::transaction::{ApplyTransactionAction, Transaction};
    let catalog = pipe_sink::open_catalog(&pipe_sink::CatalogSettings::local(dir))
        .await
        .unwrap();
    let ident = iceberg::TableIdent::from_strs(["default", "events"]).unwrap();
    let table = catalog.load_table(&ident).await.unwrap();
    let tx = Transaction::new(&table);
    let tx = tx
        .update_table_properties()
        .set(key.into(), value.into())
        .apply(tx)
        .unwrap();
    tx.commit(catalog.as_ref()).await.unwrap();
}

/// The manifests `table`'s current snapshot lists.
async fn manifest_count(table: &Table) -> usize {
    let current = table.metadata().current_snapshot().unwrap();
    table
        .manifest_list_reader(current)
        .load()
        .await
        .unwrap()
        .entries()
        .len()
}

/// Every file a kept snapshot of `table` references (manifest lists,
/// manifests, data files) exists.
async fn nothing_referenced_is_missing(table: &Table) {
    for snapshot in table.metadata().snapshots() {
        let path = snapshot.manifest_list();
        assert!(table.file_io().exists(path).await.unwrap(), "{path}");
        let list = table.manifest_list_reader(snapshot).load().await.unwrap();
        for m in list.entries() {
            assert!(
                table.file_io().exists(&m.manifest_path).await.unwrap(),
                "{}",
                m.manifest_path
            );
            let manifest = m.load_manifest(table.file_io()).await.unwrap();
            for e in manifest.entries() {
                if e.is_alive() {
                    assert!(table.file_io().exists(e.file_path()).await.unwrap());
                }
            }
        }
    }
}

use pipe_sink::maintenance::manifests::MIN_COUNT_TO_MERGE;

#[tokio::test]
async fn manifests_are_merged_in_replace_snapshots_and_every_row_stays_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = merging_sink(dir.path(), 5, None).await;
    for n in 0..4 {
        commit_n(&mut sink, n * 10, 10).await;
        sink.wait_for_maintenance().await.unwrap();
    }
    let table = load_table(dir.path(), &sink).await;
    // Looked at every 10 commits: each look merges what gathered.
    assert!(
        manifest_count(&table).await <= 2,
        "{}",
        manifest_count(&table).await
    );
    assert_eq!(scanned_rows(&table).await, 400);
    let operations: Vec<String> = table
        .metadata()
        .snapshots()
        .map(|s| s.summary().operation.as_str().to_string())
        .collect();
    assert_eq!(operations.iter().filter(|o| *o == "replace").count(), 4);
    // Totals carried over; the pipeline's position is unchanged.
    let summary = &table.metadata().current_snapshot().unwrap().summary();
    assert_eq!(summary.additional_properties["total-records"], "400");
    assert_eq!(
        sink.last_committed().await.unwrap().unwrap().range,
        OffsetRange {
            first: 39,
            last: 39
        }
    );
    // A snapshot from before the first merge reads what it read then.
    let early = table
        .metadata()
        .snapshots()
        .filter(|s| s.summary().operation.as_str() == "append")
        .min_by_key(|s| s.sequence_number())
        .unwrap()
        .snapshot_id();
    let batches: Vec<_> = table
        .scan()
        .snapshot_id(early)
        .build()
        .unwrap()
        .to_arrow()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 10);
    nothing_referenced_is_missing(&table).await;
    // More commits go on top of the merged manifests.
    commit_n(&mut sink, 40, 5).await;
    assert_eq!(
        scanned_rows(&load_table(dir.path(), &sink).await).await,
        450
    );
}

#[tokio::test]
async fn expiry_deletes_the_manifests_merges_replaced_once_unreferenced() {
    let dir = tempfile::tempdir().unwrap();
    let retention = SnapshotRetention {
        max_age: std::time::Duration::from_secs(3600),
        retain_last: 2,
        max_count: 3,
    };
    let mut sink = merging_sink(dir.path(), 5, Some(retention)).await;
    for n in 0..6 {
        commit_n(&mut sink, n * 10, 10).await;
        sink.wait_for_maintenance().await.unwrap();
    }
    let table = load_table(dir.path(), &sink).await;
    assert!(table.metadata().snapshots().count() <= 4);
    let (_, lists, manifests) = metadata_folder(dir.path());
    assert_eq!(lists, table.metadata().snapshots().count());
    // Only what kept snapshots list is left (a merged manifest or two and
    // the few appended since).
    assert!(manifests <= 15, "{manifests} manifests on disk");
    nothing_referenced_is_missing(&table).await;
    assert_eq!(scanned_rows(&table).await, 600);
    assert_eq!(super::data_files_on_disk(dir.path()).len(), 120);
}

#[tokio::test]
async fn a_maintenance_commit_planned_on_an_old_state_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open_with(dir.path(), "p", keep_all()).await;
    commit_n(&mut sink, 0, 3).await;
    let old = load_table(dir.path(), &sink).await;
    commit_n(&mut sink, 3, 1).await;
    let settings = pipe_sink::CatalogSettings::local(dir.path());
    let committer = pipe_sink::maintenance::Committer::open(&settings)
        .await
        .unwrap();
    let catalog = pipe_sink::open_catalog(&settings).await.unwrap();
    let mut snapshot = pipe_sink::maintenance::snapshot::NewSnapshot::start(&old).unwrap();
    let writer = snapshot.manifest_writer(0).unwrap();
    let manifest = writer.write_manifest_file().await.unwrap();
    let (requirements, updates) = snapshot
        .finish(
            vec![manifest],
            iceberg::spec::Operation::Replace,
            Default::default(),
        )
        .await
        .unwrap();
    let before = metadata_folder(dir.path()).0;
    let err = committer
        .commit(&catalog, old.identifier(), &requirements, updates)
        .await
        .unwrap_err();
    assert!(err.not_done());
    let err = err.error;
    assert!(pipe_sink::maintenance::snapshot::is_conflict(&err), "{err}");
    assert_eq!(
        metadata_folder(dir.path()).0,
        before,
        "no metadata file written"
    );
    let table = load_table(dir.path(), &sink).await;
    assert_eq!(scanned_rows(&table).await, 40);
}

use pipe_sink::maintenance::compact::{compact, CompactionPolicy};

/// The live data files of the current snapshot.
async fn live_files(table: &Table) -> Vec<String> {
    let current = table.metadata().current_snapshot().unwrap();
    let list = table.manifest_list_reader(current).load().await.unwrap();
    let mut out = Vec::new();
    for m in list.entries() {
        for e in m.load_manifest(table.file_io()).await.unwrap().entries() {
            if e.is_alive() {
                out.push(e.file_path().to_string());
            }
        }
    }
    out.sort();
    out
}

/// A sink with a committer that compacts only when told.
async fn compactable_sink(
    dir: &std::path::Path,
    retention: Option<SnapshotRetention>,
) -> TableSink {
    let settings = pipe_sink::CatalogSettings::local(dir);
    let committer = pipe_sink::maintenance::Committer::open(&settings)
        .await
        .unwrap();
    let options = WriteOptions {
        retention,
        committer: Some(committer),
        compact: false,
        ..WriteOptions::default()
    };
    open_with(dir, "p", options).await
}

/// Compacts every small file of the table as `table` has it.
async fn compact_all(
    dir: &std::path::Path,
    table: &Table,
) -> Option<pipe_sink::maintenance::compact::Compacted> {
    let settings = pipe_sink::CatalogSettings::local(dir);
    let committer = pipe_sink::maintenance::Committer::open(&settings)
        .await
        .unwrap();
    let catalog = pipe_sink::open_catalog(&settings).await.unwrap();
    let layout = WriteOptions::default().layout();
    let policy = CompactionPolicy::of(table, &layout).full();
    compact(&committer, &catalog, table, &layout, &policy)
        .await
        .unwrap()
        .map(|(_, c)| c)
}

#[tokio::test]
async fn compaction_replaces_small_files_and_time_travel_still_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = compactable_sink(dir.path(), None).await;
    commit_n(&mut sink, 0, 30).await;
    let before = load_table(dir.path(), &sink).await;
    assert_eq!(
        live_files(&before).await.len(),
        60,
        "two partitions a commit"
    );
    let done = compact_all(dir.path(), &before).await.unwrap();
    assert_eq!(
        (
            done.partitions,
            done.files_removed,
            done.files_added,
            done.rows
        ),
        (2, 60, 2, 300)
    );
    let after = load_table(dir.path(), &sink).await;
    assert_eq!(live_files(&after).await.len(), 2);
    assert_eq!(scanned_rows(&after).await, 300);
    let current = after.metadata().current_snapshot().unwrap();
    assert_eq!(current.summary().operation.as_str(), "replace");
    let totals = &current.summary().additional_properties;
    assert_eq!(totals["total-records"], "300");
    assert_eq!(totals["total-data-files"], "2");
    assert_eq!(totals["deleted-data-files"], "60");
    // Time travel to before the compaction reads the old files.
    let old = before.metadata().current_snapshot_id().unwrap();
    let batches: Vec<_> = after
        .scan()
        .snapshot_id(old)
        .build()
        .unwrap()
        .to_arrow()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 300);
    // The pipeline's position is untouched and it goes on.
    assert_eq!(sink.last_committed().await.unwrap().unwrap().range.last, 29);
    commit_n(&mut sink, 30, 2).await;
    let table = load_table(dir.path(), &sink).await;
    assert_eq!(scanned_rows(&table).await, 320);
    assert_eq!(live_files(&table).await.len(), 6);
    nothing_referenced_is_missing(&table).await;
    // Nothing to do twice.
    assert_eq!(
        compact_all(dir.path(), &load_table(dir.path(), &sink).await)
            .await
            .unwrap()
            .files_removed,
        6
    );
}

#[tokio::test]
async fn an_append_that_lands_during_a_compaction_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = compactable_sink(dir.path(), None).await;
    commit_n(&mut sink, 0, 10).await;
    // Compaction planned on this state; the sink appends before it commits.
    let planned_on = load_table(dir.path(), &sink).await;
    commit_n(&mut sink, 10, 1).await;
    let done = compact_all(dir.path(), &planned_on).await.unwrap();
    assert_eq!(done.files_removed, 20);
    let table = load_table(dir.path(), &sink).await;
    assert_eq!(scanned_rows(&table).await, 110, "the append is there, once");
    assert_eq!(live_files(&table).await.len(), 4);
    assert_eq!(sink.last_committed().await.unwrap().unwrap().range.last, 10);
    nothing_referenced_is_missing(&table).await;
}

#[tokio::test]
async fn files_another_compaction_replaced_are_not_replaced_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = compactable_sink(dir.path(), None).await;
    commit_n(&mut sink, 0, 10).await;
    let planned_on = load_table(dir.path(), &sink).await;
    assert!(compact_all(dir.path(), &planned_on).await.is_some());
    let on_disk = super::data_files_on_disk(dir.path()).len();
    // A second compaction planned on the same old state finds its files
    // gone: it commits nothing and deletes what it wrote.
    assert_eq!(compact_all(dir.path(), &planned_on).await, None);
    assert_eq!(super::data_files_on_disk(dir.path()).len(), on_disk);
    let table = load_table(dir.path(), &sink).await;
    assert_eq!(scanned_rows(&table).await, 100);
}

#[tokio::test]
async fn expiry_deletes_the_files_compaction_replaced_once_no_snapshot_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let retention = SnapshotRetention {
        max_age: std::time::Duration::from_secs(3600),
        retain_last: 2,
        max_count: 3,
    };
    let mut sink = compactable_sink(dir.path(), Some(retention)).await;
    commit_n(&mut sink, 0, 10).await;
    compact_all(dir.path(), &load_table(dir.path(), &sink).await)
        .await
        .unwrap();
    commit_n(&mut sink, 10, 5).await;
    let table = load_table(dir.path(), &sink).await;
    nothing_referenced_is_missing(&table).await;
    assert_eq!(scanned_rows(&table).await, 150);
    // The 20 small files are gone: 2 compacted + 10 appended since.
    assert_eq!(super::data_files_on_disk(dir.path()).len(), 12);
}

#[tokio::test]
async fn the_sink_compacts_in_the_background_as_it_commits() {
    let dir = tempfile::tempdir().unwrap();
    let settings = pipe_sink::CatalogSettings::local(dir.path());
    let committer = pipe_sink::maintenance::Committer::open(&settings)
        .await
        .unwrap();
    let options = WriteOptions {
        committer: Some(committer),
        ..WriteOptions::default()
    };
    let mut sink = open_with(dir.path(), "p", options).await;
    let mut compacted = 0;
    for round in 0..6 {
        commit_n(&mut sink, round * 10, 10).await;
        if let Some(done) = sink.wait_for_maintenance().await.unwrap() {
            assert_eq!(done.outcome, "ok");
            compacted += done.compacted.map_or(0, |c| c.files_removed);
        }
    }
    assert!(compacted > 0);
    // Maintenance commits delete the metadata files they drop too.
    let (metadata_files, _, _) = metadata_folder(dir.path());
    assert!(metadata_files <= 11, "{metadata_files} metadata files");
    let table = load_table(dir.path(), &sink).await;
    assert_eq!(scanned_rows(&table).await, 600);
    let live = live_files(&table).await.len();
    assert!(live < 60, "{live} live files after 60 commits of 2");
    nothing_referenced_is_missing(&table).await;
    assert_eq!(sink.last_committed().await.unwrap().unwrap().range.last, 59);
}

#[tokio::test]
async fn a_tagged_snapshot_and_its_files_outlive_expiry_and_compaction() {
    use iceberg::spec::{SnapshotReference, SnapshotRetention as RefRetention};
    let dir = tempfile::tempdir().unwrap();
    let retention = SnapshotRetention {
        max_age: std::time::Duration::from_secs(3600),
        retain_last: 2,
        max_count: 3,
    };
    let mut sink = compactable_sink(dir.path(), Some(retention)).await;
    commit_n(&mut sink, 0, 1).await;
    let first = load_table(dir.path(), &sink).await;
    let tagged = first.metadata().current_snapshot_id().unwrap();
    let settings = pipe_sink::CatalogSettings::local(dir.path());
    let committer = pipe_sink::maintenance::Committer::open(&settings)
        .await
        .unwrap();
    let catalog = pipe_sink::open_catalog(&settings).await.unwrap();
    committer
        .commit(
            &catalog,
            first.identifier(),
            &[],
            vec![iceberg::TableUpdate::SetSnapshotRef {
                ref_name: "audit".into(),
                reference: SnapshotReference::new(
                    tagged,
                    RefRetention::Tag {
                        max_ref_age_ms: None,
                    },
                ),
            }],
        )
        .await
        .unwrap();
    // The sink's copy is stale now; it reloads on the fence and goes on.
    commit_n(&mut sink, 1, 9).await;
    compact_all(dir.path(), &load_table(dir.path(), &sink).await)
        .await
        .unwrap();
    commit_n(&mut sink, 10, 10).await;
    let table = load_table(dir.path(), &sink).await;
    assert!(table.metadata().snapshot_by_id(tagged).is_some());
    // The tag keeps its snapshot, and `main` is still bounded by count
    // (young as its snapshots are; before, a tag lifted the limit): 3, the
    // tag's, and a background merge's since the last expiry at most.
    let count = table.metadata().snapshots().count();
    assert!(count <= 5, "{count} snapshots kept");
    nothing_referenced_is_missing(&table).await;
    let batches: Vec<_> = table
        .scan()
        .snapshot_id(tagged)
        .build()
        .unwrap()
        .to_arrow()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 10);
    assert_eq!(scanned_rows(&table).await, 200);
}

use pipe_sink::maintenance::orphans;

/// Sets a file's modification time `secs` seconds back (every file
/// under it, for a folder).
fn age(path: &std::path::Path, secs: u64) {
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap().flatten() {
            age(&e.path(), secs);
        }
        return;
    }
    let when = std::time::SystemTime::now() - std::time::Duration::from_secs(secs);
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(when).unwrap();
}

#[tokio::test]
async fn the_orphan_sweep_takes_only_old_unreferenced_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = compactable_sink(dir.path(), None).await;
    commit_n(&mut sink, 0, 5).await;
    let table = load_table(dir.path(), &sink).await;
    let root = dir.path().join("warehouse/default/events");
    // Leftovers: an old data file and manifest nothing references, a
    // young one, an old one a write ledger lists; and every referenced
    // file made old too.
    let old_data = root.join("data/stray-old.parquet");
    let young_data = root.join("data/stray-young.parquet");
    let ledgered = root.join("data/stray-ledgered.parquet");
    let old_manifest = root.join("metadata/stray-m0.avro");
    for (p, secs) in [
        (&old_data, 10 * 86_400),
        (&young_data, 60),
        (&ledgered, 10 * 86_400),
        (&old_manifest, 10 * 86_400),
    ] {
        std::fs::write(p, b"x").unwrap();
        age(p, secs);
    }
    let referenced = orphans::referenced(&table).await.unwrap();
    for file in &referenced {
        age(
            std::path::Path::new(file.strip_prefix("file://").unwrap()),
            10 * 86_400,
        );
    }
    let settings = pipe_sink::CatalogSettings::local(dir.path());
    let committer = pipe_sink::maintenance::Committer::open(&settings)
        .await
        .unwrap();
    let store = committer.store_for(table.metadata().location()).unwrap();
    let listed: std::collections::HashSet<String> =
        [format!("file://{}", ledgered.display())].into();
    // A dry run lists, and deletes nothing.
    let dry = orphans::sweep(&store, &table, orphans::DEFAULT_GUARD, &listed, true)
        .await
        .unwrap();
    let mut found: Vec<&str> = dry.orphans.iter().map(|o| o.path.as_str()).collect();
    found.sort();
    assert_eq!(
        found,
        [
            format!("file://{}", old_data.display()),
            format!("file://{}", old_manifest.display())
        ]
    );
    assert_eq!((dry.deleted, dry.spared), (0, 2));
    assert!(old_data.exists());
    let swept = orphans::sweep(&store, &table, orphans::DEFAULT_GUARD, &listed, false)
        .await
        .unwrap();
    assert_eq!(swept.deleted, 2);
    assert!(!old_data.exists() && !old_manifest.exists());
    assert!(young_data.exists() && ledgered.exists());
    for file in &referenced {
        assert!(
            std::path::Path::new(file.strip_prefix("file://").unwrap()).exists(),
            "{file}"
        );
    }
    let table = load_table(dir.path(), &sink).await;
    nothing_referenced_is_missing(&table).await;
    assert_eq!(scanned_rows(&table).await, 50);
}

#[tokio::test]
async fn an_on_demand_run_compacts_expires_and_is_recorded() {
    use pipe_sink::maintenance::run::{history, run, RunOptions, ON_DEMAND};
    let dir = tempfile::tempdir().unwrap();
    let mut sink = compactable_sink(dir.path(), None).await;
    commit_n(&mut sink, 0, 12).await;
    sink.wait_for_maintenance().await.unwrap();
    let settings = pipe_sink::CatalogSettings::local(dir.path());
    let committer = pipe_sink::maintenance::Committer::open(&settings)
        .await
        .unwrap();
    let catalog = pipe_sink::open_catalog(&settings).await.unwrap();
    let mut options = RunOptions {
        compact: true,
        full: true,
        merge: true,
        expire: Some(SnapshotRetention {
            max_age: std::time::Duration::from_secs(3600),
            retain_last: 1,
            max_count: 1,
        }),
        sweep: Some(orphans::DEFAULT_GUARD),
        ledgered: Default::default(),
        dry_run: true,
        owns_metadata_files: true,
        trigger: ON_DEMAND,
        next: "on demand".into(),
    };
    let ident = sink.ident().clone();
    let layout = WriteOptions::default().layout();
    let dry = run(&committer, &catalog, &ident, &layout, &options).await;
    assert_eq!(dry.outcome, "ok");
    let planned = dry.planned.clone().unwrap();
    // 12 appends, and the merge the sink's own maintenance made at the
    // 10th; all but the current one go.
    let snapshots = load_table(dir.path(), &sink)
        .await
        .metadata()
        .snapshots()
        .count();
    assert_eq!(
        (planned.compact_files, planned.expire_snapshots),
        (24, snapshots - 1)
    );
    assert_eq!(dry.before, dry.after, "a dry run changes nothing");
    options.dry_run = false;
    let done = run(&committer, &catalog, &ident, &layout, &options).await;
    assert_eq!(done.outcome, "ok", "{done:?}");
    assert_eq!(done.compacted.as_ref().unwrap().files_removed, 24);
    assert_eq!((done.before.data_files, done.after.data_files), (24, 2));
    assert_eq!(done.after.records, 120);
    // Only the last snapshot is kept: the files compaction replaced are
    // referenced by none, and go.
    assert_eq!(done.after.snapshots, 1);
    // (Other tests' sinks record their runs under the same name.)
    let runs: Vec<_> = history("default.events")
        .into_iter()
        .filter(|r| r.trigger == ON_DEMAND)
        .collect();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1], done);
    let table = load_table(dir.path(), &sink).await;
    nothing_referenced_is_missing(&table).await;
    assert_eq!(scanned_rows(&table).await, 120);
    assert_eq!(super::data_files_on_disk(dir.path()).len(), 2);
    // The sink goes on after the table changed under it.
    commit_n(&mut sink, 12, 1).await;
    assert_eq!(
        scanned_rows(&load_table(dir.path(), &sink).await).await,
        130
    );
}

#[tokio::test]
async fn the_sweep_leaves_tables_nested_in_the_folder_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = compactable_sink(dir.path(), None).await;
    commit_n(&mut sink, 0, 2).await;
    // Namespace `default.events` puts its tables' folders inside table
    // `default.events`'s own: `data` lands exactly on its data folder,
    // `metadata` on its metadata folder.
    let settings = pipe_sink::CatalogSettings::local(dir.path());
    let mut nested = Vec::new();
    for name in ["data", "metadata"] {
        let catalog = pipe_sink::open_catalog(&settings).await.unwrap();
        let mut other = TableSink::open(
            catalog,
            "default.events",
            name,
            "q",
            "sink",
            &super::output(),
            WriteOptions::default(),
        )
        .await
        .unwrap();
        other.write(&rows(0..10)).await.unwrap();
        let files = other.close_files().await.unwrap();
        other
            .commit(OffsetRange { first: 0, last: 0 }, &files)
            .await
            .unwrap();
        nested.push(other);
    }
    age(&dir.path().join("warehouse"), 10 * 86_400);
    let table = load_table(dir.path(), &sink).await;
    let committer = pipe_sink::maintenance::Committer::open(&settings)
        .await
        .unwrap();
    let store = committer.store_for(table.metadata().location()).unwrap();
    let swept = orphans::sweep(
        &store,
        &table,
        orphans::DEFAULT_GUARD,
        &Default::default(),
        false,
    )
    .await
    .unwrap();
    assert_eq!(swept.deleted, 0, "{swept:?}");
    for other in &nested {
        let t = load_table(dir.path(), other).await;
        assert_eq!(scanned_rows(&t).await, 10);
    }
    assert_eq!(scanned_rows(&table).await, 20);
}

/// Live data files after one big commit, nine small ones and the
/// background run the tenth commit starts, with `full_compaction_every`.
async fn live_after_background_run(every: std::time::Duration) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let settings = pipe_sink::CatalogSettings::local(dir.path());
    let committer = pipe_sink::maintenance::Committer::open(&settings)
        .await
        .unwrap();
    let options = WriteOptions {
        committer: Some(committer),
        full_compaction_every: every,
        ..WriteOptions::default()
    };
    let mut sink = open_with(dir.path(), "p", options).await;
    sink.write(&rows(0..20_000)).await.unwrap();
    let files = sink.close_files().await.unwrap();
    sink.commit(OffsetRange { first: 0, last: 0 }, &files)
        .await
        .unwrap();
    commit_n(&mut sink, 1, 9).await;
    sink.wait_for_maintenance().await.unwrap();
    let table = load_table(dir.path(), &sink).await;
    assert_eq!(scanned_rows(&table).await, 20_090);
    live_files(&table).await.len()
}

#[tokio::test]
async fn the_background_compaction_takes_every_small_file_once_an_interval_passed() {
    // Tiered: each partition's big file stays, and its 9 small ones are
    // too few to rewrite yet.
    assert_eq!(
        live_after_background_run(std::time::Duration::from_secs(3600)).await,
        20
    );
    // Once the interval passed: every small file, one per partition.
    assert_eq!(
        live_after_background_run(std::time::Duration::ZERO).await,
        2
    );
}
