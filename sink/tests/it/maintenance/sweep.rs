//! The orphan sweep, and on-demand runs with their records.

use super::*;

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
    assert_eq!(crate::data_files_on_disk(dir.path()).len(), 2);
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
            &crate::output(),
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
