//! The write ledger: which data files a sink has created and not yet
//! resolved, so that files a crash left uncommitted are found and deleted.
//!
//! Object stores cannot be asked "which files did I write and never
//! commit?" cheaply (listing a table's data folder is slow on S3 and
//! unavailable through iceberg's `FileIO`), so the sink writes it down
//! itself, on local disk beside the buffer, one JSON line per fact:
//!
//! ```text
//!   {"file":"s3://b/w/default/t/data/__ingest_ts_day=2026-11-23/p-…-00000.parquet"}
//!   {"file":"…-00001.parquet"}
//!   {"commit":{"first":120,"last":139,"files":["…-00000.parquet","…-00001.parquet"]}}
//! ```
//!
//! - A `file` line is appended and fsynced *before* the data file is
//!   created, so every file that can exist is listed.
//! - A `commit` line is appended and fsynced *before* the commit is sent,
//!   naming the offset range and the files it references.
//! - Once the commit's outcome is known (committed, or found already
//!   committed) every listed file the table does not reference is deleted
//!   and the ledger is rewritten with only the files that could not be
//!   deleted (tried again next time).
//!
//! On open, a sink resolves a leftover ledger against the table: if the
//! pipeline's last committed range in the table reaches the `commit` line's
//! last offset, the commit landed and its files stay; every other listed
//! file was never referenced and is deleted. Any doubt keeps a file: an
//! orphan costs bytes, a wrongly deleted file would lose data. A torn last
//! line (a crash while appending) is ignored: the file it was about to list
//! had not been created yet.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::OffsetRange;

/// One line of the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Line {
    File(String),
    Commit(CommitLine),
}

/// A commit about to be sent: its range and the files it references.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CommitLine {
    pub first: u64,
    pub last: u64,
    pub files: Vec<String>,
}

/// What a ledger holds: every file listed, and the last commit line.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Entries {
    pub files: Vec<String>,
    pub commit: Option<CommitLine>,
}

/// Every file the ledgers in folder `dir` list (read only; a missing
/// folder lists none): files sinks wrote and have not resolved yet, which
/// the orphan sweep must never take.
pub fn listed_in(dir: &Path) -> io::Result<std::collections::HashSet<String>> {
    let mut files = std::collections::HashSet::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "ledger") {
            let parsed = parse(&std::fs::read(&path)?);
            files.extend(parsed.files);
            files.extend(parsed.commit.into_iter().flat_map(|c| c.files));
        }
    }
    Ok(files)
}

/// An append-only list of created data files and commits, fsynced per line.
#[derive(Debug)]
pub(crate) struct Ledger {
    path: PathBuf,
    file: Mutex<File>,
    /// Every file listed since the last reset.
    files: Mutex<Vec<String>>,
    /// The first append that failed since the last [`Ledger::take_error`].
    error: Mutex<Option<io::Error>>,
    /// A failed append may have left part of its line that could not be
    /// cut away: the next line starts with a newline of its own.
    torn: std::sync::atomic::AtomicBool,
}

impl Ledger {
    /// Opens (creating) the ledger at `path` and returns what it holds.
    pub fn open(path: &Path) -> io::Result<(Ledger, Entries)> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let read = match std::fs::read(path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let entries = read.as_deref().map(parse).unwrap_or_default();
        // Rewrite what was read so a torn tail never precedes new lines.
        // On a full disk (no room for the copy), cut the torn tail in
        // place instead: a start must not fail for want of a few bytes,
        // since the commits it would make are what frees the disk.
        let file = match rewrite(path, &entries) {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!(ledger = %path.display(), error = %e, "could not rewrite the write ledger; going on with it as it is, its torn tail cut");
                let _ = std::fs::remove_file(path.with_extension("tmp"));
                // Read again: the rewrite may have failed after its rename.
                let now = match std::fs::read(path) {
                    Ok(bytes) => bytes,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                    Err(e) => return Err(e),
                };
                cut_torn_tail(path, &now)?
            }
        };
        let ledger = Ledger {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            files: Mutex::new(entries.files.clone()),
            error: Mutex::new(None),
            torn: std::sync::atomic::AtomicBool::new(false),
        };
        Ok((ledger, entries))
    }

    /// Lists a data file about to be created. Called from iceberg's location
    /// generator, which cannot fail: an error is kept for
    /// [`Ledger::take_error`], and the file is at worst an orphan nobody
    /// sweeps.
    pub fn record_file(&self, location: &str) {
        self.files
            .lock()
            .expect("never poisoned")
            .push(location.to_string());
        if let Err(e) = self.append(&Line::File(location.to_string())) {
            let mut error = self.error.lock().expect("never poisoned");
            error.get_or_insert(e);
        }
    }

    /// Writes down the commit about to be sent.
    pub fn record_commit(&self, range: OffsetRange, files: &[String]) -> io::Result<()> {
        self.append(&Line::Commit(CommitLine {
            first: range.first,
            last: range.last,
            files: files.to_vec(),
        }))
    }

    /// Every file listed since the last reset.
    pub fn files(&self) -> Vec<String> {
        self.files.lock().expect("never poisoned").clone()
    }

    /// An append that failed since the last call, if any.
    pub fn take_error(&self) -> Option<io::Error> {
        self.error.lock().expect("never poisoned").take()
    }

    /// Replaces the ledger with just `files` (those still to delete).
    pub fn reset(&self, files: &[String]) -> io::Result<()> {
        let entries = Entries {
            files: files.to_vec(),
            commit: None,
        };
        let mut file = self.file.lock().expect("never poisoned");
        *file = rewrite(&self.path, &entries)?;
        *self.files.lock().expect("never poisoned") = entries.files;
        Ok(())
    }

    /// Appends one line. A write that fails part-way (a full disk) is cut
    /// back, so a later line is never glued to half of it: the open would
    /// read neither, losing a commit line, and the sweep would then delete
    /// files that commit references.
    fn append(&self, line: &Line) -> io::Result<()> {
        use std::sync::atomic::Ordering;
        let mut text = Vec::new();
        if self.torn.load(Ordering::Acquire) {
            text.push(b'\n');
        }
        serde_json::to_writer(&mut text, line).map_err(io::Error::other)?;
        text.push(b'\n');
        let mut file = self.file.lock().expect("never poisoned");
        let len = file.metadata()?.len();
        match file.write_all(&text).and_then(|_| file.sync_data()) {
            Ok(()) => {
                self.torn.store(false, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                if file.set_len(len).and_then(|_| file.sync_data()).is_err() {
                    self.torn.store(true, Ordering::Release);
                }
                Err(e)
            }
        }
    }
}

/// Reads ledger lines, ignoring unparseable ones: a torn last line, or
/// part of a line a failed append left that could not be cut away (the
/// line after it starts on a line of its own).
fn parse(bytes: &[u8]) -> Entries {
    let mut entries = Entries::default();
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<Line>(line) {
            Ok(Line::File(f)) => entries.files.push(f),
            Ok(Line::Commit(c)) => entries.commit = Some(c),
            Err(_) => continue,
        }
    }
    entries
}

/// The ledger at `path` (holding `bytes`) open for appending, cut after
/// its last whole line.
fn cut_torn_tail(path: &Path, bytes: &[u8]) -> io::Result<File> {
    let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    if whole < bytes.len() {
        file.set_len(whole as u64)?;
        file.sync_data()?;
    }
    Ok(file)
}

/// Atomically replaces the ledger with `entries` and returns it open for
/// appending.
fn rewrite(path: &Path, entries: &Entries) -> io::Result<File> {
    let tmp = path.with_extension("tmp");
    {
        let mut out = File::create(&tmp)?;
        let mut text = Vec::new();
        for f in &entries.files {
            serde_json::to_writer(&mut text, &Line::File(f.clone())).map_err(io::Error::other)?;
            text.push(b'\n');
        }
        if let Some(c) = &entries.commit {
            serde_json::to_writer(&mut text, &Line::Commit(c.clone())).map_err(io::Error::other)?;
            text.push(b'\n');
        }
        out.write_all(&text)?;
        out.sync_data()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    OpenOptions::new().append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn range(first: u64, last: u64) -> OffsetRange {
        OffsetRange { first, last }
    }

    #[test]
    fn lines_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sinks/p@default.t.ledger");
        let (ledger, entries) = Ledger::open(&path).unwrap();
        assert_eq!(entries, Entries::default());
        ledger.record_file("file:///w/a.parquet");
        ledger.record_file("file:///w/b.parquet");
        ledger
            .record_commit(range(3, 9), &["file:///w/a.parquet".into()])
            .unwrap();
        assert!(ledger.take_error().is_none());
        drop(ledger);
        let (ledger, entries) = Ledger::open(&path).unwrap();
        assert_eq!(
            entries.files,
            ["file:///w/a.parquet", "file:///w/b.parquet"]
        );
        let commit = entries.commit.unwrap();
        assert_eq!((commit.first, commit.last), (3, 9));
        assert_eq!(commit.files, ["file:///w/a.parquet"]);
        ledger.reset(&["file:///w/b.parquet".into()]).unwrap();
        drop(ledger);
        let (_, entries) = Ledger::open(&path).unwrap();
        assert_eq!(entries.files, ["file:///w/b.parquet"]);
        assert_eq!(entries.commit, None);
    }

    #[test]
    fn a_torn_tail_is_dropped_and_not_followed_by_new_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.ledger");
        std::fs::write(&path, b"{\"file\":\"a\"}\n{\"file\":\"b").unwrap();
        let (ledger, entries) = Ledger::open(&path).unwrap();
        assert_eq!(entries.files, ["a"]);
        ledger.record_file("c");
        drop(ledger);
        let (_, entries) = Ledger::open(&path).unwrap();
        assert_eq!(entries.files, ["a", "c"]);
    }

    /// Part of a line a failed append could not cut away, then the next
    /// line on a line of its own: everything else is read. Before, reading
    /// stopped at the bad line, so a commit line after it was lost and the
    /// open's sweep deleted files that commit references (review 8).
    #[test]
    fn a_bad_line_in_the_middle_does_not_hide_the_lines_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.ledger");
        std::fs::write(
            &path,
            b"{\"file\":\"a\"}\n{\"commit\":{\"fi\n{\"commit\":{\"first\":1,\"last\":2,\"files\":[\"a\"]}}\n",
        )
        .unwrap();
        let (_, entries) = Ledger::open(&path).unwrap();
        assert_eq!(entries.files, ["a"]);
        let commit = entries.commit.unwrap();
        assert_eq!(
            (commit.first, commit.last, commit.files),
            (1, 2, vec!["a".to_string()])
        );
    }

    /// No room for the rewritten copy (a full disk; here its temporary
    /// name is taken by a folder): the ledger opens anyway, its torn tail
    /// cut in place. Before, the open failed, and with it the start of
    /// every stream (review 6 finding 3).
    #[test]
    fn a_ledger_that_cannot_be_rewritten_is_cut_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.ledger");
        std::fs::write(&path, b"{\"file\":\"a\"}\n{\"file\":\"b").unwrap();
        std::fs::create_dir(path.with_extension("tmp")).unwrap();
        let (ledger, entries) = Ledger::open(&path).unwrap();
        assert_eq!(entries.files, ["a"]);
        ledger.record_file("c");
        drop(ledger);
        std::fs::remove_dir(path.with_extension("tmp")).unwrap();
        let (_, entries) = Ledger::open(&path).unwrap();
        assert_eq!(entries.files, ["a", "c"]);
    }

    proptest! {
        /// Cutting the ledger anywhere keeps exactly the lines written in
        /// full before the cut, in order.
        #[test]
        fn any_prefix_parses_to_the_whole_lines_before_it(
            names in proptest::collection::vec("[a-z0-9/:=._-]{1,40}", 1..12),
            commit_at in 0usize..12,
            cut in 0usize..2000,
        ) {
            let mut lines = Vec::new();
            for (i, n) in names.iter().enumerate() {
                lines.push(Line::File(n.clone()));
                if i == commit_at {
                    lines.push(Line::Commit(CommitLine { first: i as u64, last: 2 * i as u64, files: names[..=i].to_vec() }));
                }
            }
            let mut bytes = Vec::new();
            let mut ends = Vec::new();
            for l in &lines {
                bytes.extend(serde_json::to_vec(l).unwrap());
                bytes.push(b'\n');
                ends.push(bytes.len());
            }
            let cut = cut.min(bytes.len());
            let whole = ends.iter().filter(|e| **e <= cut).count();
            let mut expected = Entries::default();
            for l in &lines[..whole] {
                match l {
                    Line::File(f) => expected.files.push(f.clone()),
                    Line::Commit(c) => expected.commit = Some(c.clone()),
                }
            }
            // A cut just before a newline leaves a whole line without its
            // newline: it parses, and that is right (it was fully written).
            let got = parse(&bytes[..cut]);
            if got != expected {
                let mut one_more = expected;
                match &lines[whole] {
                    Line::File(f) => one_more.files.push(f.clone()),
                    Line::Commit(c) => one_more.commit = Some(c.clone()),
                }
                prop_assert_eq!(got, one_more);
                prop_assert_eq!(cut + 1, ends[whole]);
            }
        }
    }
}
