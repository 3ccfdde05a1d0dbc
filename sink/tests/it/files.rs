//! Parquet and NDJSON file sinks on a local folder.

use super::*;
use pipe_sink::{FileFormat, FileSink, FileSinkSettings, S3Options};

fn settings(dir: &std::path::Path, format: FileFormat) -> FileSinkSettings {
    FileSinkSettings {
        location: format!("file://{}/out", dir.display()),
        s3: S3Options::default(),
        format,
        partitioning: pipe_sink::files::DEFAULT_PARTITIONING.into(),
    }
}

const PARQUET: FileFormat = FileFormat::Parquet {
    codec: pipe_sink::Codec::Zstd,
    row_group_rows: 1000,
};

const SOURCE: &str = "feedfacecafebeef";

async fn open_parquet(dir: &std::path::Path) -> FileSink {
    open_file_sink(dir, "p", Some(SOURCE)).await
}

async fn open_file_sink(dir: &std::path::Path, pipeline: &str, source: Option<&str>) -> FileSink {
    FileSink::open(&settings(dir, PARQUET), pipeline, source, false, &output())
        .await
        .unwrap()
}

async fn open_in_run(dir: &std::path::Path, run: &str, from: u64) -> FileSink {
    let run = pipe_sink::Run {
        id: run.into(),
        from,
    };
    let mut sink = open_file_sink(dir, "p", Some(SOURCE)).await;
    sink.set_run(run);
    sink
}

async fn commit_files(
    sink: &mut FileSink,
    first: u64,
    last: u64,
) -> pipe_sink::Result<CommitOutcome> {
    sink.write(&rows(0..3)).await.unwrap();
    let staged = sink.close_files().await.unwrap();
    sink.commit(OffsetRange { first, last }, &staged).await
}

/// A copied data directory run beside its original (see the table test of
/// the same name): a commit record of the same range by the other run is
/// a fork, not "already committed".
#[tokio::test]
async fn a_copy_of_a_log_appending_beside_it_is_refused_not_merged() {
    let dir = tempfile::tempdir().unwrap();
    let mut original = open_in_run(dir.path(), "original", 10).await;
    let mut copy = open_in_run(dir.path(), "copy", 10).await;
    commit_files(&mut original, 10, 14).await.unwrap();
    let err = commit_files(&mut copy, 10, 14).await.unwrap_err();
    assert!(matches!(err, pipe_sink::Error::Forked(_)), "{err}");
    // Other ranges, so other record names: still a fork.
    let err = commit_files(&mut copy, 10, 12).await.unwrap_err();
    assert!(matches!(err, pipe_sink::Error::Forked(_)), "{err}");
    // Reopened, the copy sees the other's newest commit and refuses too.
    let mut copy = open_in_run(dir.path(), "copy", 10).await;
    let err = commit_files(&mut copy, 15, 16).await.unwrap_err();
    assert!(matches!(err, pipe_sink::Error::Forked(_)), "{err}");
    // The original's own files stay; a restarted original goes on.
    let mut restarted = open_in_run(dir.path(), "restarted", 15).await;
    assert!(matches!(
        commit_files(&mut restarted, 15, 16).await.unwrap(),
        CommitOutcome::Committed { .. }
    ));
    assert_eq!(published(dir.path()).len(), 4, "{:?}", tree(dir.path()));
}

/// Every file under `dir/out`, relative, sorted.
fn tree(dir: &std::path::Path) -> Vec<String> {
    fn walk(root: &std::path::Path, d: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(&dir.join("out"), &dir.join("out"), &mut out);
    out.sort();
    out
}

fn published(dir: &std::path::Path) -> Vec<String> {
    tree(dir)
        .into_iter()
        .filter(|p| !p.starts_with("_pipe/"))
        .collect()
}

#[tokio::test]
async fn a_commit_publishes_deterministic_names_per_day() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open_parquet(dir.path()).await;
    sink.write(&rows(0..6)).await.unwrap();
    let staged = sink.close_files().await.unwrap();
    assert_eq!(staged.len(), 2, "two days, two files");
    assert!(
        published(dir.path()).is_empty(),
        "nothing visible before the commit"
    );
    assert_eq!(staged.iter().map(|f| f.rows).sum::<u64>(), 6);
    assert!(staged
        .iter()
        .all(|f| f.uncompressed_bytes > 0 && f.bytes > 0));
    let range = OffsetRange { first: 0, last: 7 };
    let outcome = sink.commit(range, &staged).await.unwrap();
    assert!(matches!(outcome, CommitOutcome::Committed { .. }));
    assert_eq!(
        published(dir.path()),
        [
            "year=2023/month=11/day=14/p-feedfacecafebeef-00000000000000000000-00000000000000000007-0000.parquet",
            "year=2023/month=11/day=15/p-feedfacecafebeef-00000000000000000000-00000000000000000007-0001.parquet",
        ]
    );
    assert_eq!(
        tree(dir.path())
            .iter()
            .filter(|p| p.starts_with("_pipe/"))
            .collect::<Vec<_>>(),
        ["_pipe/p@feedfacecafebeef/commits/00000000000000000007.commit"],
        "no staging file left"
    );
    // The same range again (a replay): nothing is added.
    sink.write(&rows(0..6)).await.unwrap();
    let again = sink.close_files().await.unwrap();
    assert_eq!(
        sink.commit(range, &again).await.unwrap(),
        CommitOutcome::AlreadyCommitted
    );
    assert_eq!(published(dir.path()).len(), 2);
    let reopened = open_parquet(dir.path()).await;
    assert_eq!(reopened.last_committed().unwrap().range, range);
    assert_eq!(tree(dir.path()).len(), 3, "{:?}", tree(dir.path()));
}

#[tokio::test]
async fn old_commit_records_are_pruned_and_recovery_still_finds_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open_parquet(dir.path()).await;
    for i in 0..40u64 {
        sink.write(&rows(i as i64 * 2..i as i64 * 2 + 2))
            .await
            .unwrap();
        let staged = sink.close_files().await.unwrap();
        sink.commit(OffsetRange { first: i, last: i }, &staged)
            .await
            .unwrap();
    }
    let records: Vec<String> = tree(dir.path())
        .into_iter()
        .filter(|p| p.ends_with(".commit"))
        .collect();
    assert!((16..=32).contains(&records.len()), "{records:?}");
    assert!(records
        .last()
        .unwrap()
        .ends_with("00000000000000000039.commit"));
    let reopened = open_parquet(dir.path()).await;
    assert_eq!(reopened.last_committed().unwrap().range.last, 39);
}

#[tokio::test]
async fn staging_files_of_a_crash_are_deleted_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open_parquet(dir.path()).await;
    sink.write(&rows(0..6)).await.unwrap();
    sink.close_files().await.unwrap();
    assert_eq!(tree(dir.path()).len(), 2, "two staging files");
    drop(sink);
    let sink = open_parquet(dir.path()).await;
    assert!(tree(dir.path()).is_empty(), "{:?}", tree(dir.path()));
    assert_eq!(sink.last_committed(), None);
}

#[tokio::test]
async fn a_commit_cut_short_mid_publish_is_finished_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open_parquet(dir.path()).await;
    sink.write(&rows(0..6)).await.unwrap();
    let staged = sink.close_files().await.unwrap();
    sink.commit(OffsetRange { first: 0, last: 3 }, &staged)
        .await
        .unwrap();
    let done = published(dir.path());
    let out = dir.path().join("out");
    let bytes = |files: &[String]| -> Vec<Vec<u8>> {
        files
            .iter()
            .map(|f| std::fs::read(out.join(f)).unwrap())
            .collect()
    };
    let before = bytes(&done);
    // Put the second published file back as its staging file: what a
    // crash between the two moves leaves. (The record pairs files in
    // partition order, as `published` lists them.)
    let mut sorted = staged.clone();
    sorted.sort_by(|a, b| a.partition.cmp(&b.partition));
    std::fs::rename(out.join(&done[1]), out.join(&sorted[1].staging)).unwrap();
    let sink = open_parquet(dir.path()).await;
    assert_eq!(published(dir.path()), done);
    assert_eq!(bytes(&done), before, "each file back under its own name");
    assert_eq!(sink.last_committed().unwrap().range.last, 3);
}

#[tokio::test]
async fn gzip_json_files_hold_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = FileSink::open(
        &FileSinkSettings {
            partitioning: String::new(),
            ..settings(dir.path(), FileFormat::Json { gzip: true })
        },
        "p",
        None,
        false,
        &output(),
    )
    .await
    .unwrap();
    sink.write(&rows(0..5)).await.unwrap();
    let staged = sink.close_files().await.unwrap();
    sink.commit(OffsetRange { first: 0, last: 0 }, &staged)
        .await
        .unwrap();
    let files = published(dir.path());
    assert_eq!(
        files,
        ["p-00000000000000000000-00000000000000000000-0000.json.gz"]
    );
    let gz = std::fs::read(dir.path().join("out").join(&files[0])).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[3]["id"], 3);
    assert_eq!(lines[3]["name"], "n3");
    assert_eq!(staged[0].uncompressed_bytes, text.len() as u64);
    assert_eq!(staged[0].bytes, gz.len() as u64);
}

/// Commits rows `ids` as offsets `first..=last`.
async fn commit_rows(
    sink: &mut FileSink,
    ids: std::ops::Range<i64>,
    first: u64,
    last: u64,
) -> CommitOutcome {
    sink.write(&rows(ids)).await.unwrap();
    let staged = sink.close_files().await.unwrap();
    sink.commit(OffsetRange { first, last }, &staged)
        .await
        .unwrap()
}

/// Two pipelines writing one folder (or one pipeline run from two logs)
/// committed the same final names, and one replaced the other's files
/// (issue 16, item 5): each now publishes under names of its own.
#[tokio::test]
async fn writers_sharing_a_folder_never_replace_each_others_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = open_file_sink(dir.path(), "p", Some(SOURCE)).await;
    let mut q = open_file_sink(dir.path(), "q", Some(SOURCE)).await;
    let mut p2 = open_file_sink(dir.path(), "p", Some("0000000000000002")).await;
    for sink in [&mut p, &mut q, &mut p2] {
        assert!(matches!(
            commit_rows(sink, 0..6, 0, 3).await,
            CommitOutcome::Committed { .. }
        ));
    }
    assert_eq!(
        published(dir.path()).len(),
        6,
        "{:?}",
        published(dir.path())
    );
    assert_eq!(
        open_parquet(dir.path())
            .await
            .last_committed()
            .unwrap()
            .range
            .last,
        3
    );
    // A file already at a final name is never replaced.
    let mut r = open_file_sink(dir.path(), "r", Some(SOURCE)).await;
    let taken = "year=2023/month=11/day=14/r-feedfacecafebeef-00000000000000000000-00000000000000000001-0000.parquet";
    std::fs::write(dir.path().join("out").join(taken), b"someone else's").unwrap();
    r.write(&rows(0..6)).await.unwrap();
    let staged = r.close_files().await.unwrap();
    let err = r
        .commit(OffsetRange { first: 0, last: 1 }, &staged)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("would replace"), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("out").join(taken)).unwrap(),
        b"someone else's"
    );
}

/// A sink written before sources were recorded is recovered from its
/// old folder and goes on from its last commit.
#[tokio::test]
async fn records_of_a_sink_without_a_source_are_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let mut old = open_file_sink(dir.path(), "p", None).await;
    commit_rows(&mut old, 0..6, 0, 3).await;
    old.write(&rows(0..2)).await.unwrap();
    old.close_files().await.unwrap();
    drop(old);
    // A log the pipeline did not read when they were made (its log says
    // so) does not take them.
    let foreign = FileSink::open(
        &settings(dir.path(), PARQUET),
        "p",
        Some("0000000000000008"),
        true,
        &output(),
    )
    .await
    .unwrap();
    assert_eq!(foreign.last_committed(), None);
    drop(foreign);
    let mut new = open_parquet(dir.path()).await;
    assert_eq!(new.last_committed().unwrap().range.last, 3);
    assert!(
        !tree(dir.path()).iter().any(|p| p.ends_with(".inprogress")),
        "the old run's staging files are deleted: {:?}",
        tree(dir.path())
    );
    assert_eq!(
        commit_rows(&mut new, 0..6, 0, 3).await,
        CommitOutcome::AlreadyCommitted
    );
    assert!(matches!(
        commit_rows(&mut new, 6..8, 4, 4).await,
        CommitOutcome::Committed { .. }
    ));
    assert_eq!(published(dir.path()).len(), 4, "two days, twice");
    // Another log does not inherit the old records once one with a source
    // has landed; the one that went on from them still finds its own.
    let other = open_file_sink(dir.path(), "p", Some("0000000000000009")).await;
    assert_eq!(other.last_committed(), None);
    assert_eq!(
        open_parquet(dir.path())
            .await
            .last_committed()
            .unwrap()
            .range
            .last,
        4
    );
}

/// The sink's folder fills up while a commit record is written: the commit
/// fails and leaves no record, so once space is back the same range
/// commits. Before, OpenDAL's create-then-write left an empty record that
/// every later attempt (and every start) refused as corrupt. Mounts a
/// tmpfs (the test command runs as root).
#[tokio::test]
async fn a_full_disk_while_writing_a_record_leaves_none() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(mounted.success(), "mounting a tmpfs (the test needs root)");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(out.clone());
    let mut sink = open_parquet(dir.path()).await;
    sink.write(&rows(0..50)).await.unwrap();
    let staged = sink.close_files().await.unwrap();
    // Every byte left taken.
    let mut filler = std::fs::File::create(out.join("filler")).unwrap();
    let block = vec![0u8; 4096];
    while std::io::Write::write_all(&mut filler, &block).is_ok() {}
    let _ = std::io::Write::write_all(&mut filler, &[0u8; 1]);
    drop(filler);
    let range = OffsetRange { first: 0, last: 4 };
    assert!(sink.commit(range, &staged).await.is_err());
    let records: Vec<String> = tree(dir.path())
        .into_iter()
        .filter(|p| p.contains("/commits/"))
        .collect();
    assert_eq!(
        records,
        Vec::<String>::new(),
        "no record, not even an empty one"
    );
    std::fs::remove_file(out.join("filler")).unwrap();
    assert!(matches!(
        sink.commit(range, &staged).await.unwrap(),
        CommitOutcome::Committed { .. }
    ));
    let sink = open_parquet(dir.path()).await;
    assert_eq!(sink.last_committed().unwrap().range, range);
}

/// A rewind drops the open staging files: the next commit deletes them
/// (before, only a restart did; on S3 each was an upload left behind).
#[tokio::test]
async fn staging_files_of_an_aborted_attempt_go_with_the_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open_parquet(dir.path()).await;
    sink.write(&rows(0..5)).await.unwrap();
    sink.abort();
    sink.write(&rows(0..5)).await.unwrap();
    let staged = sink.close_files().await.unwrap();
    sink.commit(OffsetRange { first: 0, last: 0 }, &staged)
        .await
        .unwrap();
    let staging: Vec<String> = tree(dir.path())
        .into_iter()
        .filter(|p| p.contains("/staging/"))
        .collect();
    assert_eq!(staging, Vec::<String>::new());
}

/// A commit record holds its last record's checksum.
#[tokio::test]
async fn a_commit_record_holds_its_last_records_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open_parquet(dir.path()).await;
    sink.write(&rows(0..3)).await.unwrap();
    let staged = sink.close_files().await.unwrap();
    sink.commit_with(OffsetRange { first: 0, last: 2 }, Some(0xfeed), &staged)
        .await
        .unwrap();
    assert_eq!(sink.last_committed().unwrap().last_crc, Some(0xfeed));
    let reopened = open_parquet(dir.path()).await;
    assert_eq!(reopened.last_committed().unwrap().last_crc, Some(0xfeed));
}
