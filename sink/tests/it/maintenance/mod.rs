//! Maintenance that runs with the sink's commits: old metadata files
//! deleted, snapshots expired by age and count, and the files only expired
//! snapshots referenced deleted. Compaction is in `compaction.rs`, the
//! orphan sweep and on-demand runs in `sweep.rs`.

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
            &old,
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

/// The live data files of the current snapshot, as its manifests list
/// them.
async fn live_data_files(table: &Table) -> Vec<iceberg::spec::DataFile> {
    let current = table.metadata().current_snapshot().unwrap();
    let list = table.manifest_list_reader(current).load().await.unwrap();
    let mut out = Vec::new();
    for m in list.entries() {
        for e in m.load_manifest(table.file_io()).await.unwrap().entries() {
            if e.is_alive() {
                out.push(e.data_file.clone());
            }
        }
    }
    out
}

/// The paths of the live data files of the current snapshot, sorted.
async fn live_files(table: &Table) -> Vec<String> {
    let mut out: Vec<String> = live_data_files(table)
        .await
        .iter()
        .map(|f| f.file_path().to_string())
        .collect();
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

mod compaction;
mod sweep;
