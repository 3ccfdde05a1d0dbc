//! Compaction: replace snapshots, concurrent appends, time travel,
//! expiry of what it replaced, refs, and the background triggers.

use super::*;

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
    let on_disk = crate::data_files_on_disk(dir.path()).len();
    // A second compaction planned on the same old state finds its files
    // gone: it commits nothing and deletes what it wrote.
    assert_eq!(compact_all(dir.path(), &planned_on).await, None);
    assert_eq!(crate::data_files_on_disk(dir.path()).len(), on_disk);
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
    assert_eq!(crate::data_files_on_disk(dir.path()).len(), 12);
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

/// The ids of a local data file, in the order they are stored.
fn ids_in_file(path: &str) -> Vec<i64> {
    use arrow::array::AsArray;
    let file = std::fs::File::open(path.trim_start_matches("file://")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let column = batch.column_by_name("id").unwrap();
        ids.extend(
            column
                .as_primitive::<arrow::datatypes::Int64Type>()
                .values()
                .iter(),
        );
    }
    ids
}

/// The sort order id each live data file records.
async fn sort_order_ids(table: &Table) -> Vec<Option<i32>> {
    live_data_files(table)
        .await
        .iter()
        .map(|f| f.sort_order_id())
        .collect()
}

#[tokio::test]
async fn compaction_writes_files_in_the_sinks_sort_order() {
    let dir = tempfile::tempdir().unwrap();
    let committer =
        pipe_sink::maintenance::Committer::open(&pipe_sink::CatalogSettings::local(dir.path()))
            .await
            .unwrap();
    let sorted = |sort_by: Option<&[&str]>| WriteOptions {
        committer: Some(committer.clone()),
        compact: false,
        sort_by: sort_by.map(|s| s.iter().map(|c| c.parse().unwrap()).collect()),
        ..WriteOptions::default()
    };
    let mut sink = open_with(dir.path(), "p", sorted(Some(&["id DESC"]))).await;
    commit_n(&mut sink, 0, 30).await;
    let table = load_table(dir.path(), &sink).await;
    let order = table.metadata().default_sort_order();
    assert_eq!(order.fields.len(), 1);
    assert_eq!(
        order.fields[0].direction,
        iceberg::spec::SortDirection::Descending
    );
    // The sink's own files are written as they come.
    assert!(sort_order_ids(&table).await.iter().all(Option::is_none));
    let done = compact_all(dir.path(), &table).await.unwrap();
    assert_eq!(
        (done.files_removed, done.files_added, done.rows),
        (60, 2, 300)
    );
    let table = load_table(dir.path(), &sink).await;
    assert_eq!(scanned_rows(&table).await, 300);
    assert_eq!(
        sort_order_ids(&table).await,
        vec![Some(order.order_id as i32); 2]
    );
    let mut all = Vec::new();
    for path in live_files(&table).await {
        let ids = ids_in_file(&path);
        assert_eq!(ids.len(), 150);
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "{path}: {ids:?}");
        all.extend(ids);
    }
    all.sort();
    assert_eq!(all, (0..300).collect::<Vec<i64>>(), "every row once");
    drop(sink);

    // A sink without `sort_by` leaves the table's order; an empty one
    // makes the table unsorted, and compaction then writes files as they
    // come.
    let sink = open_with(dir.path(), "p", sorted(None)).await;
    let table = load_table(dir.path(), &sink).await;
    assert_eq!(table.metadata().default_sort_order().fields.len(), 1);
    drop(sink);
    let mut sink = open_with(dir.path(), "p", sorted(Some(&[]))).await;
    let table = load_table(dir.path(), &sink).await;
    assert!(table.metadata().default_sort_order().is_unsorted());
    commit_n(&mut sink, 30, 10).await;
    let table = load_table(dir.path(), &sink).await;
    compact_all(dir.path(), &table).await.unwrap();
    let table = load_table(dir.path(), &sink).await;
    assert_eq!(scanned_rows(&table).await, 400);
    assert_eq!(sort_order_ids(&table).await, vec![None; 2]);
}

#[tokio::test]
async fn a_sort_column_the_rows_lack_is_refused_before_the_table_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let options = WriteOptions {
        sort_by: Some(vec!["missing".parse().unwrap()]),
        ..WriteOptions::default()
    };
    let e = crate::refused(dir.path(), options).await;
    assert!(e.contains("sort column `missing`"), "{e}");
    let catalog = pipe_sink::open_catalog(&pipe_sink::CatalogSettings::local(dir.path()))
        .await
        .unwrap();
    let ident = iceberg::TableIdent::from_strs(["default", "events"]).unwrap();
    assert!(!iceberg::Catalog::table_exists(catalog.as_ref(), &ident)
        .await
        .unwrap());
}

/// A maintenance step that holds the table's commit step too long (slow
/// storage) is not waited for past `LOCK_WAIT`: the sink commits beside
/// it, the compare-and-swap keeping both right.
#[tokio::test]
async fn a_commit_waits_for_a_stuck_maintenance_step_only_so_long() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = compactable_sink(dir.path(), None).await;
    commit_n(&mut sink, 0, 2).await;
    let table = load_table(dir.path(), &sink).await;
    let lock = pipe_sink::maintenance::lock::TableLock::of(&table);
    let held = lock.lock().await;
    let at = std::time::Instant::now();
    tokio::time::timeout(pipe_sink::table::LOCK_WAIT * 3, commit_n(&mut sink, 2, 1))
        .await
        .expect("the commit does not wait for the lock for ever");
    assert!(at.elapsed() >= pipe_sink::table::LOCK_WAIT);
    drop(held);
    assert_eq!(scanned_rows(&load_table(dir.path(), &sink).await).await, 30);
    // The compaction that held it commits on the table as it is now.
    let done = compact_all(dir.path(), &table).await.unwrap();
    assert_eq!(done.files_removed, 4);
    assert_eq!(scanned_rows(&load_table(dir.path(), &sink).await).await, 30);
}

/// A sink's target file size is the table's `write.target-file-size-bytes`
/// (set at creation, and when it differs); without one the sink keeps the
/// table's.
#[tokio::test]
async fn the_sinks_target_file_size_is_the_tables_property() {
    let dir = tempfile::tempdir().unwrap();
    let property = |table: &Table| {
        table
            .metadata()
            .properties()
            .get("write.target-file-size-bytes")
            .cloned()
    };
    let with = |bytes: Option<usize>| WriteOptions {
        target_file_bytes: bytes,
        ..WriteOptions::default()
    };
    let sink = open_with(dir.path(), "p", with(Some(64 << 20))).await;
    let table = load_table(dir.path(), &sink).await;
    assert_eq!(property(&table).as_deref(), Some("67108864"));
    drop(sink);
    let sink = open_with(dir.path(), "p", with(None)).await;
    assert_eq!(
        property(&load_table(dir.path(), &sink).await).as_deref(),
        Some("67108864")
    );
    drop(sink);
    let sink = open_with(dir.path(), "p", with(Some(8 << 20))).await;
    let table = load_table(dir.path(), &sink).await;
    assert_eq!(property(&table).as_deref(), Some("8388608"));
    let policy = CompactionPolicy::of(&table, &WriteOptions::default().layout());
    assert_eq!(policy.target_bytes, 8 << 20);
}

/// The rewrite rolls its files at the size the plan counts small files
/// by (the table's), not the caller's layout: otherwise files come out
/// "small" again and every full compaction rewrites them once more. From
/// the hostile review of the maintenance changes.
#[tokio::test]
async fn a_compacted_table_is_not_compacted_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = compactable_sink(dir.path(), None).await;
    commit_n(&mut sink, 0, 40).await;
    super::set_property(dir.path(), "write.target-file-size-bytes", "1048576").await;
    let settings = pipe_sink::CatalogSettings::local(dir.path());
    let committer = pipe_sink::maintenance::Committer::open(&settings)
        .await
        .unwrap();
    let catalog = pipe_sink::open_catalog(&settings).await.unwrap();
    // A caller whose layout rolls files far below the table's target.
    let mut layout = WriteOptions {
        row_group_rows: 20,
        ..WriteOptions::default()
    }
    .layout();
    layout.target_file_bytes = 2000;
    let mut done = Vec::new();
    for _ in 0..3 {
        let table = load_table(dir.path(), &sink).await;
        let policy = CompactionPolicy::of(&table, &layout).full();
        let run = compact(&committer, &catalog, &table, &layout, &policy)
            .await
            .unwrap()
            .map(|(_, c)| (c.files_removed, c.files_added));
        done.push(run);
    }
    assert_eq!(done, vec![Some((80, 2)), None, None]);
    assert_eq!(
        scanned_rows(&load_table(dir.path(), &sink).await).await,
        400
    );
}

/// A target size another engine set that is not a size stops the sink at
/// open with what to do (iceberg-rust would refuse every commit to the
/// table); a tiny one is raised to 1 MiB.
#[tokio::test]
async fn a_bad_target_size_on_the_table_is_said_at_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(open_with(dir.path(), "p", WriteOptions::default()).await);
    super::set_property(dir.path(), "write.target-file-size-bytes", "1").await;
    let sink = open_with(dir.path(), "p", WriteOptions::default()).await;
    let table = load_table(dir.path(), &sink).await;
    let policy = CompactionPolicy::of(&table, &WriteOptions::default().layout());
    assert_eq!(policy.target_bytes, 1 << 20);
    drop(sink);
    super::set_property(dir.path(), "write.target-file-size-bytes", "garbage").await;
    let e = crate::refused(dir.path(), WriteOptions::default()).await;
    assert!(
        e.contains("`write.target-file-size-bytes` = `garbage`") && e.contains("remove it"),
        "{e}"
    );
}

/// A compaction writes its manifests before it takes the table's lock
/// and holds it only to move them onto `main` and swap, so a slow
/// storage makes the step slow without making the sink wait (or, past
/// `LOCK_WAIT`, the sink commit beside it and the compaction lose every
/// try, as the second hostile review showed when the whole try held it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_prepares_without_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = compactable_sink(dir.path(), None).await;
    commit_n(&mut sink, 0, 6).await;
    let table = load_table(dir.path(), &sink).await;
    let manifests = |dir: &std::path::Path| {
        std::fs::read_dir(dir.join("warehouse/default/events/metadata"))
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                let name = name.to_string_lossy();
                name.ends_with(".avro") && !name.starts_with("snap-")
            })
            .count()
    };
    let before = manifests(dir.path());
    let lock = pipe_sink::maintenance::lock::TableLock::of(&table);
    let held = lock.lock().await;
    let path = dir.path().to_path_buf();
    let planned = table.clone();
    let compaction = tokio::spawn(async move { compact_all(&path, &planned).await });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while manifests(dir.path()) <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "the compaction wrote nothing while the lock was held"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!compaction.is_finished());
    drop(held);
    let done = compaction.await.unwrap().unwrap();
    assert_eq!(done.files_removed, 12);
    assert_eq!(scanned_rows(&load_table(dir.path(), &sink).await).await, 60);
    commit_n(&mut sink, 6, 1).await;
    assert_eq!(scanned_rows(&load_table(dir.path(), &sink).await).await, 70);
}

/// Compaction keeps the bloom filters the table's properties ask for,
/// whoever runs it: an on-demand run builds its layout from the
/// configuration, which may not list them. From the re-read of the change.
#[tokio::test]
async fn compaction_keeps_the_bloom_filters_the_table_asks_for() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = compactable_sink(dir.path(), None).await;
    super::set_property(
        dir.path(),
        &format!("{}name", pipe_sink::BLOOM_FILTER_PROPERTY),
        "true",
    )
    .await;
    commit_n(&mut sink, 0, 4).await;
    // `compact_all` uses the default layout: no bloom filter columns.
    compact_all(dir.path(), &load_table(dir.path(), &sink).await)
        .await
        .unwrap();
    let files = live_files(&load_table(dir.path(), &sink).await).await;
    assert_eq!(files.len(), 2);
    for path in files {
        let file = std::fs::File::open(path.trim_start_matches("file://")).unwrap();
        let reader = parquet::file::serialized_reader::SerializedFileReader::new(file).unwrap();
        use parquet::file::reader::FileReader;
        let meta = reader.metadata();
        let schema = meta.file_metadata().schema_descr();
        let name = (0..schema.num_columns())
            .find(|&i| schema.column(i).name() == "name")
            .unwrap();
        assert!(
            meta.row_group(0)
                .column(name)
                .bloom_filter_offset()
                .is_some(),
            "{path} has no bloom filter on `name`"
        );
    }
}
