//! Positions per log: commits record the log (`pipe.source`) and its run,
//! so two logs, a copy of a log, and commits from before sources stay apart.

use crate::*;

pub(crate) fn from_source(source: &str) -> WriteOptions {
    WriteOptions {
        source: Some(source.into()),
        ..WriteOptions::default()
    }
}

/// Commits rows `ids` as offsets `first..=last`; returns the outcome.
pub(crate) async fn commit_rows(
    sink: &mut TableSink,
    ids: std::ops::Range<i64>,
    first: u64,
    last: u64,
) -> CommitOutcome {
    sink.write(&rows(ids)).await.unwrap();
    let files = sink.close_files().await.unwrap();
    sink.commit(OffsetRange { first, last }, &files)
        .await
        .unwrap()
}

/// The same pipeline name run by two processes (two stream logs) into one
/// table: each commits its own events. Before sources were recorded, the
/// second's commit of 0..=1 was taken for "already committed" behind the
/// first's 0..=2 and its rows deleted (issue 16, item 6).
#[tokio::test]
async fn one_pipeline_from_two_logs_keeps_both_logs_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = open_with(dir.path(), "p", from_source("aaaaaaaaaaaaaaaa")).await;
    let mut b = open_with(dir.path(), "p", from_source("bbbbbbbbbbbbbbbb")).await;
    assert!(matches!(
        commit_rows(&mut a, 0..3, 0, 2).await,
        CommitOutcome::Committed { .. }
    ));
    assert!(matches!(
        commit_rows(&mut b, 10..12, 0, 1).await,
        CommitOutcome::Committed { .. }
    ));
    assert_eq!(row_count(&a, dir.path()).await, 5);
    let last = |c: Option<pipe_sink::Committed>| c.map(|c| (c.range.last, c.source));
    assert_eq!(
        last(a.last_committed().await.unwrap()),
        Some((2, Some("aaaaaaaaaaaaaaaa".into())))
    );
    assert_eq!(
        last(b.last_committed().await.unwrap()),
        Some((1, Some("bbbbbbbbbbbbbbbb".into())))
    );
    // A replay is still recognised within each log: nothing is added.
    commit_rows(&mut b, 10..12, 0, 1).await;
    commit_rows(&mut a, 1..3, 1, 2).await;
    // A log with no commit of its own starts from nothing.
    let mut c = open_with(dir.path(), "p", from_source("cccccccccccccccc")).await;
    assert_eq!(c.last_committed().await.unwrap(), None);
    assert_eq!(row_count(&a, dir.path()).await, 5);
}

/// Commits made before sources were recorded count as the pipeline's own.
pub(crate) fn in_run(source: &str, run: &str, from: u64) -> WriteOptions {
    WriteOptions {
        run: Some(pipe_sink::Run {
            id: run.into(),
            from,
        }),
        ..from_source(source)
    }
}

/// A data directory copied and run beside its original: two processes
/// append to one log id, so offsets from the copy on hold different events
/// in each. Before runs were recorded, the second to commit took the
/// other's commit for its own ("already committed", or the same commit
/// id) and dropped its events. Now it is refused as a fork; a later run of
/// the same process (offsets from past what was committed) and the one
/// that committed go on.
#[tokio::test]
async fn a_copy_of_a_log_appending_beside_it_is_refused_not_merged() {
    let dir = tempfile::tempdir().unwrap();
    let mut original = open_with(dir.path(), "p", in_run("log1", "original", 10)).await;
    let mut copy = open_with(dir.path(), "p", in_run("log1", "copy", 10)).await;
    // Shared history (appended before the copy was made) dedupes as before:
    // the copy finds that range's commit id.
    commit_rows(&mut original, 0..3, 0, 9).await;
    commit_rows(&mut copy, 0..3, 0, 9).await;
    assert_eq!(row_count(&original, dir.path()).await, 3);
    // Past the copy point, each appended its own events.
    commit_rows(&mut original, 10..13, 10, 14).await;
    for (first, last) in [(10, 14), (10, 12)] {
        copy.write(&rows(100..103)).await.unwrap();
        let files = copy.close_files().await.unwrap();
        let err = copy
            .commit(OffsetRange { first, last }, &files)
            .await
            .unwrap_err();
        assert!(matches!(err, pipe_sink::Error::Forked(_)), "{err}");
        assert!(err.to_string().contains("another process"), "{err}");
    }
    assert_eq!(row_count(&original, dir.path()).await, 6);
    // The original goes on; so does a restart of it (a new run, from past
    // everything committed).
    commit_rows(&mut original, 13..14, 15, 15).await;
    let mut restarted = open_with(dir.path(), "p", in_run("log1", "restarted", 16)).await;
    assert!(matches!(
        commit_rows(&mut restarted, 14..15, 16, 16).await,
        CommitOutcome::Committed { .. }
    ));
    assert_eq!(row_count(&restarted, dir.path()).await, 8);
}

#[tokio::test]
async fn commits_without_a_source_count_as_the_pipelines_own() {
    let dir = tempfile::tempdir().unwrap();
    let mut old = open(dir.path(), "p").await;
    commit_rows(&mut old, 0..3, 0, 4).await;
    drop(old);
    // A log the pipeline did not read when they were made (its log says
    // so) does not take them.
    let foreign = WriteOptions {
        unsourced_ended: true,
        ..from_source("cccccccccccccccc")
    };
    let mut foreign = open_with(dir.path(), "p", foreign).await;
    assert_eq!(foreign.last_committed().await.unwrap(), None);
    drop(foreign);
    let mut new = open_with(dir.path(), "p", from_source("aaaaaaaaaaaaaaaa")).await;
    assert_eq!(new.last_committed().await.unwrap().unwrap().range.last, 4);
    assert_eq!(
        commit_rows(&mut new, 0..3, 3, 4).await,
        CommitOutcome::AlreadyCommitted
    );
    commit_rows(&mut new, 3..5, 5, 6).await;
    assert_eq!(new.last_committed().await.unwrap().unwrap().range.last, 6);
    assert_eq!(row_count(&new, dir.path()).await, 5);
    // Another log (the pipeline's FROM changed, a second process) does not
    // inherit the old offsets once a commit with a source has landed: it
    // starts from nothing instead of skipping its first events.
    let mut other = open_with(dir.path(), "p", from_source("bbbbbbbbbbbbbbbb")).await;
    assert_eq!(other.last_committed().await.unwrap(), None);
    assert!(matches!(
        commit_rows(&mut other, 10..12, 0, 1).await,
        CommitOutcome::Committed { .. }
    ));
    assert_eq!(row_count(&new, dir.path()).await, 7);
}

/// A commit records its last record's checksum, found again with the
/// commit in the snapshot and in the table's properties.
#[tokio::test]
async fn a_commit_records_its_last_records_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open_with(dir.path(), "p", from_source("aaaaaaaaaaaaaaaa")).await;
    sink.write(&rows(0..3)).await.unwrap();
    let files = sink.close_files().await.unwrap();
    sink.commit_with(OffsetRange { first: 0, last: 2 }, Some(0xfeed), &files)
        .await
        .unwrap();
    let found = sink.last_committed().await.unwrap().unwrap();
    assert_eq!((found.range.last, found.last_crc), (2, Some(0xfeed)));
    drop(sink);
    let mut reopened = open_with(dir.path(), "p", from_source("aaaaaaaaaaaaaaaa")).await;
    let found = reopened.last_committed().await.unwrap().unwrap();
    assert_eq!(found.last_crc, Some(0xfeed));

    // A version that does not record it (a downgrade) moves the position
    // in the properties: the stale checksum is not paired with the new
    // offset (a false fork otherwise).
    use iceberg::transaction::{ApplyTransactionAction, Transaction};
    let catalog = open_catalog(&CatalogSettings::local(dir.path()))
        .await
        .unwrap();
    let table = catalog.load_table(reopened.ident()).await.unwrap();
    let tx = Transaction::new(&table);
    let tx = tx
        .update_table_properties()
        .set(
            "pipe.p@aaaaaaaaaaaaaaaa.commit-id".into(),
            "p/sink/aaaaaaaaaaaaaaaa/3-5".into(),
        )
        .set("pipe.p@aaaaaaaaaaaaaaaa.offset-first".into(), "3".into())
        .set("pipe.p@aaaaaaaaaaaaaaaa.offset-last".into(), "5".into())
        .apply(tx)
        .unwrap();
    tx.commit(catalog.as_ref()).await.unwrap();
    drop(reopened);
    let mut downgraded = open_with(dir.path(), "p", from_source("aaaaaaaaaaaaaaaa")).await;
    let found = downgraded.last_committed().await.unwrap().unwrap();
    assert_eq!((found.range.last, found.last_crc), (5, None));
}
