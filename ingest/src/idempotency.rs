//! Idempotent retries: a request sent again with the same `Idempotency-Key`
//! within the stream's window gets the first answer back and adds nothing.
//!
//! Where keys live, so that a retry is recognised even after a crash:
//!
//! ```text
//!   accepted request ──► buffer record header (key, answer, time)   same fsync
//!   segment released ──► keys.log line {"key","accepted","dropped","at"}
//!                        appended + fsync'd BEFORE the segment is deleted
//!   startup          ──► index = keys.log (unexpired) + every live record
//! ```
//!
//! While a request with a key is being processed, the same key is answered
//! `409 Conflict` (the client may retry once the first one has finished).
//! A request that fails releases its key.
//!
//! Memory: about 190 bytes per remembered key (36-character keys: a
//! million of them took 186 MB in `distinct_keys_past_the_cap_forget_the_oldest`). Keys
//! past their window are pruned as new ones arrive; a stream that takes
//! more distinct keys than `max_keys` within its window forgets its oldest
//! first (a tenth at a time, logged), so memory stays bounded whatever the
//! clients send: a retry of a forgotten key is stored again. Keys of the
//! longest allowed length (255 characters) take about 400 bytes each. The
//! cap holds while `keys.log` is loaded at startup too, and the file is
//! written anew (from the keys remembered) once it holds about twice as
//! many lines, so it does not grow with every key ever released.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::buffer::Record;
use crate::payload::{self, RequestMeta};
use crate::{Error, Result};

/// The answer a request with a key got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub accepted: u32,
    pub dropped: u32,
    #[serde(default)]
    pub quarantined: u32,
    /// When it was accepted, µs since the epoch.
    pub at: i64,
}

#[derive(Debug, Clone, Copy)]
enum Entry {
    InFlight,
    Done(Answer),
}

/// What to do with a request that carries a key.
#[derive(Debug)]
pub enum Begin {
    /// First time seen: process it, then settle the claim.
    New(KeyClaim),
    /// Seen and answered within the window: answer the same.
    Replay(Answer),
    /// The same key is being processed right now.
    InFlight,
}

/// A key being processed by one request. [`KeyClaim::finish`] records the
/// answer; a claim dropped unfinished releases the key, so a retry is
/// processed again. That covers a request that fails and one whose handler
/// is dropped (a client that hangs up): nothing may keep a key "being
/// processed" once no one is processing it.
///
/// Whoever holds the claim when the request's record is handed to the
/// buffer must hold it until the append's outcome is known (the HTTP layer
/// runs that part on its own task for this reason): releasing the key of a
/// record that then becomes durable would let a retry store it twice.
#[derive(Debug)]
pub struct KeyClaim {
    keys: Arc<KeyIndex>,
    key: String,
    finished: bool,
}

impl KeyClaim {
    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The request was accepted with `answer`: retries get it back.
    pub fn finish(mut self, answer: Answer) {
        self.keys.finish(&self.key, answer);
        self.finished = true;
    }
}

impl Drop for KeyClaim {
    fn drop(&mut self) {
        if !self.finished {
            self.keys.abort(&self.key);
        }
    }
}

#[derive(Serialize, Deserialize)]
struct LogLine {
    key: String,
    #[serde(flatten)]
    answer: Answer,
}

/// The keys of one stream.
#[derive(Debug)]
pub struct KeyIndex {
    path: PathBuf,
    window_micros: i64,
    max_keys: usize,
    entries: Mutex<HashMap<String, Entry>>,
    /// Keys finished since expired ones were last pruned.
    since_prune: std::sync::atomic::AtomicUsize,
    /// Lines in `keys.log` (about): past twice the keys remembered, it is
    /// written anew from them.
    log_lines: std::sync::atomic::AtomicUsize,
}

/// The default most keys a stream remembers.
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

use pipe_schemas::now_micros;

impl KeyIndex {
    /// Loads `path` (keys of released records), keeping what is inside
    /// `window`, and rewrites it without the expired lines. At most
    /// `max_keys` are remembered (see the module doc).
    pub fn open(path: &Path, window: Duration, max_keys: usize) -> Result<KeyIndex> {
        let window_micros = window.as_micros().min(i64::MAX as u128) as i64;
        let cutoff = now_micros().saturating_sub(window_micros);
        let index = KeyIndex {
            path: path.to_path_buf(),
            window_micros,
            max_keys: max_keys.max(1),
            entries: Mutex::default(),
            since_prune: Default::default(),
            log_lines: Default::default(),
        };
        let mut lines = 0usize;
        let mut forgotten = 0usize;
        let kept = {
            let mut entries = index.entries.lock().expect("never poisoned");
            if path.exists() {
                let file = File::open(path).map_err(|e| Error::io(path, "opening", e))?;
                for line in BufReader::new(file).lines() {
                    let line = line.map_err(|e| Error::io(path, "reading", e))?;
                    lines += 1;
                    // A line cut by a crash is the last one and was never relied on.
                    let Ok(l) = serde_json::from_str::<LogLine>(&line) else {
                        continue;
                    };
                    if l.answer.at >= cutoff {
                        entries.insert(l.key, Entry::Done(l.answer));
                        // The cap holds while loading too: memory stays
                        // bounded however long the file has grown.
                        if entries.len() > index.max_keys + index.max_keys / 10 {
                            forgotten += index.bound(&mut entries);
                        }
                    }
                }
            }
            forgotten += index.bound(&mut entries);
            entries.len()
        };
        if forgotten > 0 {
            tracing::warn!(path = %path.display(), kept, max_keys = index.max_keys, forgotten, "keys.log holds more distinct idempotency keys than the stream remembers: the oldest were forgotten");
        }
        // Expired, forgotten or repeated lines: the file is written anew.
        if lines > kept {
            index.rewrite()?;
        }
        index
            .log_lines
            .store(kept, std::sync::atomic::Ordering::Relaxed);
        Ok(index)
    }

    fn rewrite(&self) -> Result<()> {
        let mut out = Vec::new();
        for (key, entry) in self.entries.lock().expect("never poisoned").iter() {
            if let Entry::Done(answer) = entry {
                let line = LogLine {
                    key: key.clone(),
                    answer: *answer,
                };
                serde_json::to_writer(&mut out, &line)
                    .map_err(|e| Error::Internal(e.to_string()))?;
                out.push(b'\n');
            }
        }
        let (dir, name) = match (self.path.parent(), self.path.file_name()) {
            (Some(dir), Some(name)) => (dir, name.to_string_lossy()),
            _ => {
                return Err(Error::Internal(format!(
                    "`{}` is not a file path",
                    self.path.display()
                )))
            }
        };
        crate::buffer::write_durably(dir, &name, &out)
    }

    /// Records the key of a live buffer record (at startup).
    pub fn observe(&self, meta: &RequestMeta) {
        if let Some(key) = &meta.key {
            let answer = Answer {
                accepted: meta.accepted,
                dropped: meta.dropped_fields,
                quarantined: meta.quarantined,
                at: meta.at_micros,
            };
            let mut entries = self.entries.lock().expect("never poisoned");
            entries.insert(key.clone(), Entry::Done(answer));
            if entries.len() > self.max_keys {
                self.bound(&mut entries);
            }
        }
    }

    /// Keys remembered now (finished or in flight).
    pub fn len(&self) -> usize {
        self.entries.lock().expect("never poisoned").len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops expired keys, then, over `max_keys`, the oldest finished ones
    /// down to nine tenths of it. Keys in flight are never dropped.
    /// Returns how many unexpired keys were forgotten.
    fn bound(&self, entries: &mut HashMap<String, Entry>) -> usize {
        let cutoff = now_micros().saturating_sub(self.window_micros);
        entries.retain(|_, e| !matches!(e, Entry::Done(a) if a.at < cutoff));
        self.since_prune
            .store(0, std::sync::atomic::Ordering::Relaxed);
        if entries.len() <= self.max_keys {
            return 0;
        }
        let keep = self.max_keys - self.max_keys / 10;
        let mut times: Vec<i64> = entries
            .values()
            .filter_map(|e| match e {
                Entry::Done(a) => Some(a.at),
                Entry::InFlight => None,
            })
            .collect();
        let drop = entries.len().saturating_sub(keep).min(times.len());
        if drop == 0 {
            return 0;
        }
        let (_, &mut newest_dropped, _) = times.select_nth_unstable(drop - 1);
        let before = entries.len();
        let mut left = drop;
        entries.retain(|_, e| match e {
            Entry::Done(a) if left > 0 && a.at <= newest_dropped => {
                left -= 1;
                false
            }
            _ => true,
        });
        before - entries.len()
    }

    /// Starts a request with `key`.
    pub fn begin(self: &Arc<Self>, key: &str) -> Begin {
        let mut entries = self.entries.lock().expect("never poisoned");
        match entries.get(key) {
            Some(Entry::InFlight) => Begin::InFlight,
            Some(Entry::Done(a)) if a.at >= now_micros().saturating_sub(self.window_micros) => {
                Begin::Replay(*a)
            }
            _ => {
                entries.insert(key.to_string(), Entry::InFlight);
                Begin::New(KeyClaim {
                    keys: self.clone(),
                    key: key.to_string(),
                    finished: false,
                })
            }
        }
    }

    /// Keys being processed right now.
    pub fn in_flight(&self) -> usize {
        self.entries
            .lock()
            .expect("never poisoned")
            .values()
            .filter(|e| matches!(e, Entry::InFlight))
            .count()
    }

    /// The request with `key` was accepted with `answer`.
    fn finish(&self, key: &str, answer: Answer) {
        let mut entries = self.entries.lock().expect("never poisoned");
        entries.insert(key.to_string(), Entry::Done(answer));
        // Prune expired keys after an eighth of the map's size in new
        // ones (amortized constant), and at once past the cap.
        let since = self
            .since_prune
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if since >= (entries.len() / 8).max(4096) || entries.len() > self.max_keys {
            let before = entries.len();
            let forgotten = self.bound(&mut entries);
            if forgotten > 0 {
                tracing::warn!(
                    keys = before,
                    max_keys = self.max_keys,
                    forgotten,
                    "more distinct idempotency keys than the stream remembers: forgetting the oldest (a retry of one of them would be stored again)"
                );
            }
        }
    }

    /// The request with `key` failed: a retry may try again.
    fn abort(&self, key: &str) {
        let mut entries = self.entries.lock().expect("never poisoned");
        if matches!(entries.get(key), Some(Entry::InFlight)) {
            entries.remove(key);
        }
    }

    /// Appends the keys of records about to be deleted to the log, durably.
    pub fn retain(&self, records: &[Record]) -> Result<()> {
        let cutoff = now_micros().saturating_sub(self.window_micros);
        let mut out = Vec::new();
        for r in records {
            let meta = payload::decode_meta(&r.payload)?;
            if let (Some(key), true) = (meta.key, meta.at_micros >= cutoff) {
                let answer = Answer {
                    accepted: meta.accepted,
                    dropped: meta.dropped_fields,
                    quarantined: meta.quarantined,
                    at: meta.at_micros,
                };
                serde_json::to_writer(&mut out, &LogLine { key, answer })
                    .map_err(|e| Error::Internal(e.to_string()))?;
                out.push(b'\n');
            }
        }
        if out.is_empty() {
            return Ok(());
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, "opening", e))?;
        f.write_all(&out)
            .and_then(|_| f.sync_data())
            .map_err(|e| Error::io(&self.path, "appending to", e))?;
        // Compaction: the file would otherwise grow with every key ever
        // released. Every line of it is a key the index still remembers
        // (or has let go: expired, or forgotten past the cap).
        let appended = out.iter().filter(|b| **b == b'\n').count();
        let lines = self
            .log_lines
            .fetch_add(appended, std::sync::atomic::Ordering::Relaxed)
            + appended;
        if lines > 2 * self.len().max(self.max_keys / 2).max(1024) {
            let kept = {
                let mut entries = self.entries.lock().expect("never poisoned");
                self.bound(&mut entries);
                entries.len()
            };
            self.rewrite()?;
            self.log_lines
                .store(kept, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;

    use super::*;

    fn record(offset: u64, key: &str, at: i64) -> Record {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1]))]).unwrap();
        let meta = RequestMeta {
            key: Some(key.into()),
            accepted: 1,
            dropped_fields: 0,
            quarantined: 0,
            at_micros: at,
        };
        Record {
            offset,
            payload: payload::encode(&meta, Some(&batch), None).unwrap(),
        }
    }

    #[test]
    fn begin_finish_replay_abort() {
        let dir = tempfile::tempdir().unwrap();
        let index = Arc::new(
            KeyIndex::open(
                &dir.path().join("keys.log"),
                Duration::from_secs(60),
                DEFAULT_MAX_KEYS,
            )
            .unwrap(),
        );
        let Begin::New(claim) = index.begin("k") else {
            panic!("a new key")
        };
        assert!(matches!(index.begin("k"), Begin::InFlight));
        assert_eq!(index.in_flight(), 1);
        let answer = Answer {
            accepted: 3,
            dropped: 0,
            quarantined: 0,
            at: now_micros(),
        };
        claim.finish(answer);
        assert!(matches!(index.begin("k"), Begin::Replay(a) if a == answer));
        // A claim dropped unfinished (a failed request, or a handler dropped
        // when its client hung up) releases its key.
        let Begin::New(claim) = index.begin("other") else {
            panic!("a new key")
        };
        drop(claim);
        assert_eq!(index.in_flight(), 0);
        assert!(matches!(index.begin("other"), Begin::New(_)));
    }

    #[test]
    fn retained_keys_survive_a_reopen_until_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.log");
        let index = KeyIndex::open(&path, Duration::from_secs(3600), DEFAULT_MAX_KEYS).unwrap();
        let now = now_micros();
        let old = now - 2 * 3600 * 1_000_000;
        index
            .retain(&[record(0, "fresh", now), record(1, "stale", old)])
            .unwrap();
        let reopened =
            Arc::new(KeyIndex::open(&path, Duration::from_secs(3600), DEFAULT_MAX_KEYS).unwrap());
        assert!(matches!(reopened.begin("fresh"), Begin::Replay(a) if a.accepted == 1));
        assert!(matches!(reopened.begin("stale"), Begin::New(_)));
        // A torn last line is ignored.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"key\":")
            .unwrap();
        let again =
            Arc::new(KeyIndex::open(&path, Duration::from_secs(3600), DEFAULT_MAX_KEYS).unwrap());
        assert!(matches!(again.begin("fresh"), Begin::Replay(_)));
    }

    /// keys.log grown past the cap (a long run, or a lower cap set since):
    /// opening it holds at most about the cap in memory, keeps the newest,
    /// and writes the file anew; releases later compact it, so it does not
    /// grow with every key ever released. Before, every unexpired line was
    /// loaded first (2.5M lines took 1 GB) and the file only grew.
    #[test]
    fn keys_log_is_bounded_by_the_cap_when_loaded_and_compacted_later() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.log");
        let now = now_micros();
        let mut text = String::new();
        for i in 0..30_000i64 {
            let line = LogLine {
                key: format!("k{i:06}"),
                answer: Answer {
                    accepted: 1,
                    dropped: 0,
                    quarantined: 0,
                    at: now - 30_000 + i,
                },
            };
            text.push_str(&serde_json::to_string(&line).unwrap());
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        let lines = |p: &Path| std::fs::read_to_string(p).unwrap().lines().count();
        let index = Arc::new(KeyIndex::open(&path, Duration::from_secs(3600), 1000).unwrap());
        assert!(index.len() <= 1000, "{}", index.len());
        assert!(
            matches!(index.begin("k029999"), Begin::Replay(_)),
            "the newest are kept"
        );
        assert!(
            matches!(index.begin("k000000"), Begin::New(_)),
            "the oldest forgotten"
        );
        assert_eq!(lines(&path), index.len(), "written anew");
        // Releases append; past about twice what is remembered, compacted.
        for round in 0..20 {
            let records: Vec<Record> = (0..500)
                .map(|i| {
                    let key = format!("r{round:02}-{i:03}");
                    let Begin::New(claim) = index.begin(&key) else {
                        panic!("new")
                    };
                    let at = now_micros();
                    claim.finish(Answer {
                        accepted: 1,
                        dropped: 0,
                        quarantined: 0,
                        at,
                    });
                    record(i, &key, at)
                })
                .collect();
            index.retain(&records).unwrap();
        }
        assert!(lines(&path) <= 2 * 1024 + 500, "{} lines", lines(&path));
        let reopened = Arc::new(KeyIndex::open(&path, Duration::from_secs(3600), 1000).unwrap());
        assert!(matches!(reopened.begin("r19-499"), Begin::Replay(_)));
    }

    /// A million distinct keys and more: the index stays at its cap, keeps
    /// the newest, and its memory is what the module doc says.
    #[test]
    fn distinct_keys_past_the_cap_forget_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let index = Arc::new(
            KeyIndex::open(
                &dir.path().join("keys.log"),
                Duration::from_secs(3600),
                1_000_000,
            )
            .unwrap(),
        );
        let rss = || -> u64 {
            let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
            statm
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
                .unwrap_or(0)
                * 4096
        };
        let before = rss();
        let at = now_micros();
        for i in 0..1_200_000i64 {
            let Begin::New(claim) = index.begin(&format!("{:036}", i)) else {
                panic!("new key {i}")
            };
            claim.finish(Answer {
                accepted: 1,
                dropped: 0,
                quarantined: 0,
                at: at + i,
            });
        }
        assert!(index.len() <= 1_000_000, "{}", index.len());
        assert!(index.len() >= 900_000, "{}", index.len());
        assert!(matches!(
            index.begin(&format!("{:036}", 1_199_999)),
            Begin::Replay(_)
        ));
        assert!(matches!(index.begin(&format!("{:036}", 0)), Begin::New(_)));
        eprintln!(
            "{} keys remembered; resident memory grew by {} MB",
            index.len(),
            rss().saturating_sub(before) >> 20
        );
    }
}
