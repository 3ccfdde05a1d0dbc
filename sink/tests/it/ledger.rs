//! The sink's write ledger: files of attempts that never committed are
//! deleted, files of commits that landed are kept, across crashes.

use crate::*;

pub(crate) fn ledger_text(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("sinks/p@default.events.ledger")).unwrap()
}

/// Writes the ledger as `listed` followed by the commit line of `range`
/// (the format is documented in `sink/src/ledger.rs`).
pub(crate) fn write_ledger_with_commit(
    dir: &std::path::Path,
    listed: &str,
    range: OffsetRange,
    files: &[iceberg::spec::DataFile],
) {
    let commit = serde_json::json!({"commit": {"first": range.first, "last": range.last, "files": paths(files)}});
    std::fs::write(
        dir.join("sinks/p@default.events.ledger"),
        format!("{listed}{commit}\n"),
    )
    .unwrap();
}

pub(crate) fn paths(files: &[iceberg::spec::DataFile]) -> std::collections::BTreeSet<String> {
    files.iter().map(|f| f.file_path().to_string()).collect()
}

/// Every Parquet file under the table's data folder.
pub(crate) fn data_files_on_disk(dir: &std::path::Path) -> std::collections::BTreeSet<String> {
    fn walk(d: &std::path::Path, out: &mut std::collections::BTreeSet<String>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.insert(format!("file://{}", p.display()));
            }
        }
    }
    let mut out = Default::default();
    walk(&dir.join("warehouse/default/events/data"), &mut out);
    out
}

#[tokio::test]
async fn files_of_an_attempt_already_committed_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = open(dir.path(), "p").await;
    first.write(&rows(0..6)).await.unwrap();
    let committed = first.close_files().await.unwrap();
    let range = OffsetRange { first: 0, last: 2 };
    first.commit(range, &committed).await.unwrap();

    // A replay after a crash wrote the same range again, into new files.
    let mut replay = open(dir.path(), "p").await;
    replay.write(&rows(0..6)).await.unwrap();
    let again = replay.close_files().await.unwrap();
    let local = |f: &iceberg::spec::DataFile| {
        std::path::PathBuf::from(f.file_path().strip_prefix("file://").unwrap())
    };
    assert!(again.iter().all(|f| local(f).exists()));
    assert_eq!(
        replay
            .commit(OffsetRange { first: 0, last: 1 }, &again)
            .await
            .unwrap(),
        CommitOutcome::AlreadyCommitted
    );
    assert!(again.iter().all(|f| !local(f).exists()), "deleted");
    assert!(
        committed.iter().all(|f| local(f).exists()),
        "the committed files stay"
    );
    assert_eq!(row_count(&replay, dir.path()).await, 6);
}

#[tokio::test]
async fn files_a_crash_left_uncommitted_are_deleted_on_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open_ledgered(dir.path()).await;
    sink.write(&rows(0..6)).await.unwrap();
    let written = sink.close_files().await.unwrap();
    assert_eq!(data_files_on_disk(dir.path()), paths(&written));
    // The process dies before the commit.
    drop(sink);
    let _sink = open_ledgered(dir.path()).await;
    assert!(data_files_on_disk(dir.path()).is_empty(), "orphans deleted");
}

#[tokio::test]
async fn a_commit_that_landed_before_the_crash_keeps_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open_ledgered(dir.path()).await;
    sink.write(&rows(0..6)).await.unwrap();
    let files = sink.close_files().await.unwrap();
    let listed = ledger_text(dir.path());
    let range = OffsetRange { first: 0, last: 4 };
    sink.commit(range, &files).await.unwrap();
    drop(sink);
    // As the ledger stood when the process died between the commit and
    // the ledger's reset: the files, then the commit line.
    write_ledger_with_commit(dir.path(), &listed, range, &files);
    let mut sink = open_ledgered(dir.path()).await;
    assert_eq!(data_files_on_disk(dir.path()), paths(&files));
    assert_eq!(row_count(&sink, dir.path()).await, 6);
    assert_eq!(sink.last_committed().await.unwrap().unwrap().range, range);
}

#[tokio::test]
async fn an_aborted_attempt_is_deleted_by_the_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open_ledgered(dir.path()).await;
    sink.write(&rows(0..6)).await.unwrap();
    // A failure mid-write: the range is read again into new files.
    sink.abort();
    let aborted = data_files_on_disk(dir.path());
    assert!(!aborted.is_empty(), "the aborted writer created files");
    sink.write(&rows(0..6)).await.unwrap();
    let files = sink.close_files().await.unwrap();
    sink.commit(OffsetRange { first: 0, last: 2 }, &files)
        .await
        .unwrap();
    assert_eq!(data_files_on_disk(dir.path()), paths(&files));
    assert_eq!(row_count(&sink, dir.path()).await, 6);
}

#[tokio::test]
async fn a_commit_sent_but_never_landed_is_swept() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open_ledgered(dir.path()).await;
    sink.write(&rows(0..6)).await.unwrap();
    let files = sink.close_files().await.unwrap();
    drop(sink);
    // The process died while the commit was in flight, and the catalog
    // never took it.
    let listed = ledger_text(dir.path());
    write_ledger_with_commit(
        dir.path(),
        &listed,
        OffsetRange { first: 0, last: 4 },
        &files,
    );
    let mut sink = open_ledgered(dir.path()).await;
    assert!(data_files_on_disk(dir.path()).is_empty(), "orphans deleted");
    assert_eq!(sink.last_committed().await.unwrap(), None);
}
