//! The durable write-ahead buffer of one stream.
//!
//! Every accepted request becomes one *record* holding its events as an Arrow
//! IPC stream. Records get consecutive *offsets* (0, 1, 2, …) and live in
//! segment files (layout in [`segment`]). The HTTP layer acks a request only
//! after its record is on disk.
//!
//! ```text
//!   handlers ──(payload, oneshot)──► bounded queue ──► writer (one per stream)
//!                                                       │ take all queued (group)
//!                                                       │ write + fdatasync once
//!                                                       ▼
//!                                        durable_next (watch) ──► readers
//!                                        oneshots answered Ok(offset)
//! ```
//!
//! - **Group commit**: the writer takes everything queued while the previous
//!   fsync ran, writes it with one `write` and one `fdatasync`, then answers
//!   every waiting handler. Concurrent requests share fsyncs.
//! - **Backpressure**: the queue is bounded in requests and in bytes, and the
//!   segment files in bytes (a disk quota). When either is full,
//!   [`Appender::append`] fails at once with [`Error::Busy`] or [`Error::Full`]
//!   (HTTP 503 + Retry-After); nothing accepted is ever dropped.
//! - **Readers** see only records below `durable_next`, so a pipeline never
//!   processes an event that could still vanish.
//! - **Recovery** ([`Buffer::open`]): segments are listed by name; the last one
//!   is scanned and a torn tail (a record cut short by a crash, or with a bad
//!   CRC) is truncated away.
//! - **Write failures**: a failed `write` (a full disk) is undone: the file
//!   is cut back to its length before the group and synced, the group's
//!   requests get a retryable error, and the writer goes on, so a disk that
//!   fills up and later frees costs 503s, not a restart. A failed `fsync`,
//!   or a failed undo, poisons the writer: it answers every later append
//!   with an error instead of guessing what the page cache kept, and
//!   [`Buffer::failure`] says why (a restart recovers from disk). A new
//!   segment that cannot be created leaves the writer on the current one.
//!   A bad record with valid records after it is not a torn tail but
//!   damage to acknowledged events: opening refuses it, naming the file and
//!   what to do, instead of cutting the good records away.
//! - **Release**: [`Buffer::release_through`] deletes whole segments once every
//!   consumer has committed past them; the active segment is never deleted,
//!   so the next offset survives restarts.
//! - **Identity**: the file `id` holds a random id made when the buffer is
//!   first created. Sinks record it with each commit, so offsets of one
//!   buffer are never taken for offsets of another (another stream, a
//!   buffer wiped and made again, another process).
//! - **Gaps**: a buffer opened behind what its consumers committed (restored
//!   from an older copy) starts its next segment past their offsets. The
//!   skipped range is written to `gaps.log` first, and readers step over
//!   exactly the ranges listed there; any other hole between segments is
//!   damage, reported as such.

pub mod segment;

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

use crate::{Error, Result};
use segment::Next;

/// Tunables of a buffer.
#[derive(Debug, Clone)]
pub struct BufferOptions {
    /// A segment is closed and a new one started past this many bytes.
    pub segment_bytes: u64,
    /// Requests that may wait for the writer before appends are refused.
    pub queue_depth: usize,
    /// Most bytes one group commit writes before it fsyncs.
    pub max_group_bytes: usize,
    /// Most bytes the segment files may hold; appends past it are refused
    /// (503) until pipelines commit and segments are released.
    pub max_disk_bytes: u64,
    /// Most payload bytes waiting for the writer; bounds memory under overload.
    pub max_queued_bytes: usize,
}

impl Default for BufferOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
            queue_depth: 1024,
            max_group_bytes: 16 << 20,
            max_disk_bytes: 8 << 30,
            max_queued_bytes: 64 << 20,
        }
    }
}

/// One record read back from the buffer.
#[derive(Debug, Clone)]
pub struct Record {
    pub offset: u64,
    pub payload: Vec<u8>,
}

/// A stream's buffer on disk.
#[derive(Debug)]
pub struct Buffer {
    dir: PathBuf,
    options: BufferOptions,
    durable_next: watch::Sender<u64>,
    /// The active segment, until the writer is started.
    active: Option<ActiveSegment>,
    /// Bytes in segment files now.
    disk_bytes: Arc<AtomicU64>,
    /// This buffer's identity (see the module doc).
    id: String,
    /// Ranges of offsets no segment holds, on purpose (`gaps.log`).
    gaps: Arc<Vec<Gap>>,
    /// Why the writer stopped, once it has.
    failure: Arc<std::sync::Mutex<Option<String>>>,
    /// Failed writes undone so far: bytes a reader read ahead from the
    /// file may have been cut away and written anew since.
    undone: Arc<AtomicU64>,
}

/// Offsets `from..to` that are in no segment on purpose: the buffer was
/// opened behind its consumers' committed offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub from: u64,
    pub to: u64,
}

#[derive(Debug)]
struct ActiveSegment {
    file: File,
    len: u64,
}

impl Buffer {
    /// Opens (creating if needed) the buffer in `dir`, recovering from a crash.
    ///
    /// `min_next_offset` is the lowest offset new records may take: the sinks'
    /// committed offsets + 1, so a wiped buffer never reuses committed offsets.
    pub fn open(dir: &Path, options: BufferOptions, min_next_offset: u64) -> Result<Buffer> {
        let id = Buffer::identity(dir)?;
        let mut gaps = read_gaps(dir)?;
        let mut segments = list_segments(dir)?;
        // A segment whose header never reached the disk is an interrupted roll.
        while let Some(&last) = segments.last() {
            let path = dir.join(segment::file_name(last));
            let mut header = [0u8; segment::HEADER_LEN];
            let n = read_prefix(&path, &mut header)?;
            match segment::decode_header(&header[..n]) {
                Ok(first) if first == last => break,
                Ok(_) | Err(segment::HeaderError::BadMagic | segment::HeaderError::Version(_))
                    if n == segment::HEADER_LEN =>
                {
                    return Err(Error::Corrupt(format!(
                        "`{}` is not a buffer segment of this version",
                        path.display()
                    )))
                }
                _ => {
                    warn!(segment = %path.display(), "removing a segment whose header was cut short");
                    fs::remove_file(&path).map_err(|e| Error::io(&path, "removing", e))?;
                    segments.pop();
                }
            }
        }
        let (active, next) = match segments.last() {
            None => (create_segment(dir, min_next_offset)?, min_next_offset),
            Some(&first) => {
                let path = dir.join(segment::file_name(first));
                let (len, next) = recover_tail(&path, first)?;
                let file = OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(|e| Error::io(&path, "opening", e))?;
                if next < min_next_offset {
                    warn!(buffer = %dir.display(), next, min_next_offset, "the buffer ends before offsets its consumers have committed (restored from an older copy?): offsets {next}..{} are not in it; consumers that had not committed them go on after them", min_next_offset - 1);
                    let gap = Gap {
                        from: next,
                        to: min_next_offset,
                    };
                    record_gap(dir, gap)?;
                    gaps.push(gap);
                    (create_segment(dir, min_next_offset)?, min_next_offset)
                } else {
                    (ActiveSegment { file, len }, next)
                }
            }
        };
        let (durable_next, _) = watch::channel(next);
        info!(buffer = %dir.display(), next_offset = next, "buffer opened");
        let disk_bytes = Arc::new(AtomicU64::new(segments_bytes(dir)?));
        Ok(Buffer {
            dir: dir.to_path_buf(),
            options,
            durable_next,
            active: Some(active),
            disk_bytes,
            id,
            gaps: Arc::new(gaps),
            failure: Arc::default(),
            undone: Arc::default(),
        })
    }

    /// Why the writer stopped taking appends, if it has.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().expect("never poisoned").clone()
    }

    /// The identity of the buffer in `dir`, made (and the folder created)
    /// if it has none yet. See the module doc.
    pub fn identity(dir: &Path) -> Result<String> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, "creating the buffer folder", e))?;
        let path = dir.join("id");
        match fs::read_to_string(&path) {
            Ok(text) => {
                let id = text.trim();
                if id.len() == ID_LEN && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Ok(id.to_string());
                }
                Err(Error::Corrupt(format!(
                    "`{}` should hold a buffer id of {ID_LEN} hex digits, not `{}`",
                    path.display(),
                    id.escape_debug()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = uuid::Uuid::new_v4().simple().to_string()[..ID_LEN].to_string();
                write_durably(dir, "id", format!("{id}\n").as_bytes())?;
                info!(buffer = %dir.display(), id, "new buffer");
                Ok(id)
            }
            Err(e) => Err(Error::io(&path, "reading", e)),
        }
    }

    /// This buffer's identity.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How many records offsets `from..to` hold: the range less the
    /// offsets of recorded gaps in it.
    pub fn records_in(&self, from: u64, to: u64) -> u64 {
        let gaps: u64 = self
            .gaps
            .iter()
            .map(|g| g.to.min(to).saturating_sub(g.from.max(from)))
            .sum();
        to.saturating_sub(from).saturating_sub(gaps)
    }

    /// The offset the next appended record will get, once durable.
    pub fn next_offset(&self) -> u64 {
        *self.durable_next.borrow()
    }

    /// The oldest offset still in the buffer (the next offset when empty).
    pub fn first_offset(&self) -> u64 {
        list_segments(&self.dir)
            .ok()
            .and_then(|s| s.first().copied())
            .unwrap_or_else(|| self.next_offset())
    }

    /// Starts the writer on the blocking pool. It runs until every
    /// [`Appender`] is dropped, then finishes what is queued and returns.
    pub fn start_writer(&mut self) -> (Appender, tokio::task::JoinHandle<Result<()>>) {
        let active = self
            .active
            .take()
            .expect("start_writer is called once per buffer");
        let (tx, rx) = mpsc::channel(self.options.queue_depth);
        let writer = Writer {
            dir: self.dir.clone(),
            options: self.options.clone(),
            active,
            next: self.next_offset(),
            durable_next: self.durable_next.clone(),
            disk_bytes: self.disk_bytes.clone(),
            failure: self.failure.clone(),
            undone: self.undone.clone(),
        };
        let handle = tokio::task::spawn_blocking(move || writer.run(rx));
        let appender = Appender {
            tx,
            queued: Arc::new(Semaphore::new(self.options.max_queued_bytes)),
            max_queued: self.options.max_queued_bytes,
            disk_bytes: self.disk_bytes.clone(),
            max_disk_bytes: self.options.max_disk_bytes,
        };
        (appender, handle)
    }

    /// A reader positioned at `from` (which must still be in the buffer).
    pub fn reader(&self, from: u64) -> BufferReader {
        BufferReader {
            dir: self.dir.clone(),
            durable: self.durable_next.subscribe(),
            next: from,
            file: None,
            gaps: self.gaps.clone(),
            undone: self.undone.clone(),
            seen_undone: self.undone.load(Ordering::Acquire),
        }
    }

    /// Deletes every segment all of whose records are at or below `offset`.
    /// `before_delete` sees each such segment's records first (to keep what
    /// must outlive them, such as idempotency keys); an error stops the
    /// release with that segment still in place. Returns how many segments
    /// were removed.
    pub fn release_through(
        &self,
        offset: u64,
        mut before_delete: impl FnMut(&[Record]) -> Result<()>,
    ) -> Result<usize> {
        let segments = list_segments(&self.dir)?;
        let mut removed = 0;
        // A segment is done when the one after it starts at or below offset + 1.
        for pair in segments.windows(2) {
            if pair[1] <= offset + 1 {
                let path = self.dir.join(segment::file_name(pair[0]));
                before_delete(&read_segment(&path, pair[0])?)?;
                let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&path).map_err(|e| Error::io(&path, "removing", e))?;
                self.disk_bytes.fetch_sub(
                    size.min(self.disk_bytes.load(Ordering::Relaxed)),
                    Ordering::Relaxed,
                );
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Bytes the buffer holds on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes.load(Ordering::Relaxed)
    }
}

/// Sends records to a buffer's writer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Appender {
    tx: mpsc::Sender<AppendRequest>,
    /// Payload bytes allowed to wait for the writer.
    queued: Arc<Semaphore>,
    max_queued: usize,
    disk_bytes: Arc<AtomicU64>,
    max_disk_bytes: u64,
}

#[derive(Debug)]
struct AppendRequest {
    payload: Vec<u8>,
    ack: oneshot::Sender<Result<u64>>,
    /// Held until the record is written: the queue's byte budget.
    _permit: OwnedSemaphorePermit,
}

impl Appender {
    /// Appends one record and waits until it is durable; returns its offset.
    pub async fn append(&self, payload: Vec<u8>) -> Result<u64> {
        let used = self.disk_bytes.load(Ordering::Relaxed);
        if used + payload.len() as u64 > self.max_disk_bytes {
            return Err(Error::Full {
                used,
                limit: self.max_disk_bytes,
            });
        }
        let bytes = payload.len().clamp(1, self.max_queued) as u32;
        let permit = self
            .queued
            .clone()
            .try_acquire_many_owned(bytes)
            .map_err(|_| Error::Busy)?;
        let (ack, done) = oneshot::channel();
        self.tx
            .try_send(AppendRequest {
                payload,
                ack,
                _permit: permit,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => Error::Busy,
                mpsc::error::TrySendError::Closed(_) => Error::Closed,
            })?;
        done.await.map_err(|_| Error::Closed)?
    }
}

struct Writer {
    failure: Arc<std::sync::Mutex<Option<String>>>,
    undone: Arc<AtomicU64>,
    disk_bytes: Arc<AtomicU64>,
    dir: PathBuf,
    options: BufferOptions,
    active: ActiveSegment,
    next: u64,
    durable_next: watch::Sender<u64>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<AppendRequest>) -> Result<()> {
        let mut bytes = Vec::new();
        let mut group: Vec<AppendRequest> = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            bytes.clear();
            group.push(first);
            let mut size = group[0].payload.len();
            while size < self.options.max_group_bytes {
                match rx.try_recv() {
                    Ok(req) => {
                        size += req.payload.len();
                        group.push(req);
                    }
                    Err(_) => break,
                }
            }
            let start = self.next;
            for (i, req) in group.iter().enumerate() {
                segment::encode_record(&mut bytes, start + i as u64, &req.payload);
            }
            match self.persist(&bytes) {
                Ok(()) => {}
                Err(Persist::Undone(e)) => {
                    // Before any later write can land where this one was.
                    self.undone.fetch_add(1, Ordering::Release);
                    warn!(buffer = %self.dir.display(), error = %e, requests = group.len(), "buffer write failed and was undone; these requests are refused (503)");
                    for req in group.drain(..) {
                        let _ = req.ack.send(Err(Error::WriteFailed(e.to_string())));
                    }
                    continue;
                }
                Err(Persist::Unknown(e)) => {
                    let message =
                        format!("buffer write failed, refusing appends until restart: {e}");
                    tracing::error!(buffer = %self.dir.display(), error = %e, "buffer write failed; the writer stops");
                    *self.failure.lock().expect("never poisoned") = Some(message.clone());
                    for req in group.drain(..) {
                        let _ = req.ack.send(Err(Error::Poisoned(message.clone())));
                    }
                    // Refuse everything else queued or yet to come.
                    rx.close();
                    while let Ok(req) = rx.try_recv() {
                        let _ = req.ack.send(Err(Error::Poisoned(message.clone())));
                    }
                    return Err(e);
                }
            }
            self.next = start + group.len() as u64;
            self.durable_next.send_replace(self.next);
            for (i, req) in group.drain(..).enumerate() {
                let _ = req.ack.send(Ok(start + i as u64));
            }
            if self.active.len >= self.options.segment_bytes {
                match create_segment(&self.dir, self.next) {
                    Ok(active) => {
                        self.active = active;
                        self.disk_bytes
                            .fetch_add(segment::HEADER_LEN as u64, Ordering::Relaxed);
                    }
                    // The current segment takes the next groups; the roll
                    // is tried again after each. (A header that did get
                    // written is an empty segment named by the next offset:
                    // recovery removes it or writes into it.)
                    Err(e) => {
                        warn!(buffer = %self.dir.display(), error = %e, "could not start a new buffer segment; the current one goes on");
                        let _ = fs::remove_file(self.dir.join(segment::file_name(self.next)));
                    }
                }
            }
        }
        Ok(())
    }

    fn persist(&mut self, bytes: &[u8]) -> Result<(), Persist> {
        let path = || self.dir.join("active segment");
        if let Err(e) = self.active.file.write_all(bytes) {
            // Whatever part of the group reached the file goes, durably:
            // no record its client was told failed may come back.
            // (The file position goes back too: a segment made by a roll
            // is not opened in append mode.)
            let len = self.active.len;
            let file = &mut self.active.file;
            let undo = file
                .set_len(len)
                .and_then(|_| file.seek(SeekFrom::Start(len)))
                .and_then(|_| file.sync_data());
            let failed = Error::io(&path(), "appending to", e);
            return Err(match undo {
                Ok(()) => Persist::Undone(failed),
                Err(undo) => {
                    Persist::Unknown(Error::io(&path(), "undoing a failed append to", undo))
                }
            });
        }
        // After a failed fsync nothing is known of what the page cache
        // kept (Linux may drop the dirty pages): never retried.
        self.active
            .file
            .sync_data()
            .map_err(|e| Persist::Unknown(Error::io(&path(), "syncing", e)))?;
        self.active.len += bytes.len() as u64;
        self.disk_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// How a group's write failed.
enum Persist {
    /// Nothing of it is on disk; the writer goes on.
    Undone(Error),
    /// What is on disk is not known; the writer stops.
    Unknown(Error),
}

/// Reads records in offset order, never past what is durable.
#[derive(Debug)]
pub struct BufferReader {
    dir: PathBuf,
    durable: watch::Receiver<u64>,
    next: u64,
    /// The open segment: its first offset and the file, at `next`.
    file: Option<(u64, BufReader<File>)>,
    gaps: Arc<Vec<Gap>>,
    /// The buffer's count of undone writes, and its value when `file` was
    /// opened: when they differ, what `file` read ahead may be stale.
    undone: Arc<AtomicU64>,
    seen_undone: u64,
}

impl BufferReader {
    /// The offset of the next record this reader returns.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The offset after the newest durable record.
    pub fn durable_end(&self) -> u64 {
        *self.durable.borrow()
    }

    /// Waits until at least one record at or past the position is durable,
    /// or `timeout` passes. Returns whether records are available.
    pub async fn wait(&mut self, timeout: std::time::Duration) -> bool {
        let next = self.next;
        let available = tokio::time::timeout(timeout, self.durable.wait_for(|d| *d > next)).await;
        matches!(available, Ok(Ok(_)))
    }

    /// Reads up to `max_records` durable records, stopping early past `max_bytes`.
    pub fn read(&mut self, max_records: usize, max_bytes: usize) -> Result<Vec<Record>> {
        let durable = *self.durable.borrow();
        // Read after `durable`: an undo happens before the writes that made
        // the records now durable, so it is seen here.
        let undone = self.undone.load(Ordering::Acquire);
        if undone != self.seen_undone {
            self.file = None;
            self.seen_undone = undone;
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        while self.next < durable && out.len() < max_records && bytes < max_bytes {
            if self.file.is_none() {
                self.file = Some(self.open_at(self.next)?);
            }
            let (first, file) = self.file.as_mut().expect("opened above");
            let first = *first;
            let path = || self.dir.join(segment::file_name(first));
            match segment::read_record(file, self.next)
                .map_err(|e| Error::io(&path(), "reading", e))?
            {
                Next::Record { offset, payload } => {
                    debug_assert_eq!(offset, self.next, "offsets are consecutive");
                    bytes += payload.len();
                    out.push(Record { offset, payload });
                    self.next += 1;
                }
                // The segment ended before a durable offset: it goes on in
                // the next segment, maybe after a recorded gap.
                Next::End => self.file = Some(self.next_segment(first)?),
                Next::Invalid(reason) => return Err(damaged(&path(), self.next, reason)),
            }
        }
        Ok(out)
    }

    /// Opens the segment after the one starting at `current`, which ended
    /// at `self.next`, stepping over a gap only if `gaps.log` lists it.
    fn next_segment(&mut self, current: u64) -> Result<(u64, BufReader<File>)> {
        let segments = list_segments(&self.dir)?;
        let Some(&after) = segments.iter().find(|s| **s > current) else {
            return Err(Error::Corrupt(format!(
                "record {} is durable, but `{}` ends before it and no segment follows",
                self.next,
                self.dir.join(segment::file_name(current)).display()
            )));
        };
        if after != self.next {
            let gap = Gap {
                from: self.next,
                to: after,
            };
            if after < self.next || !self.gaps.contains(&gap) {
                return Err(Error::Corrupt(format!(
                    "records {}..{} of `{}` are missing: `{}` ends at {} and the next segment starts at {after}; a segment file was removed or damaged outside pipe",
                    self.next,
                    after.saturating_sub(1),
                    self.dir.display(),
                    segment::file_name(current),
                    self.next
                )));
            }
            warn!(buffer = %self.dir.display(), from = gap.from, to = gap.to, "stepping over offsets the buffer never held (see gaps.log)");
            self.next = after;
        }
        let path = self.dir.join(segment::file_name(after));
        let mut file =
            BufReader::new(File::open(&path).map_err(|e| Error::io(&path, "opening", e))?);
        file.seek(SeekFrom::Start(segment::HEADER_LEN as u64))
            .map_err(|e| Error::io(&path, "seeking", e))?;
        Ok((after, file))
    }

    /// Opens the segment holding `offset` and skips to that record (or, for
    /// an offset inside a recorded gap, to the first record after it).
    fn open_at(&mut self, offset: u64) -> Result<(u64, BufReader<File>)> {
        let segments = list_segments(&self.dir)?;
        let first = segments
            .iter()
            .rev()
            .find(|s| **s <= offset)
            .copied()
            .ok_or_else(|| {
                Error::Corrupt(format!(
                    "offset {offset} is no longer in the buffer `{}` (released)",
                    self.dir.display()
                ))
            })?;
        let path = self.dir.join(segment::file_name(first));
        let mut file =
            BufReader::new(File::open(&path).map_err(|e| Error::io(&path, "opening", e))?);
        file.seek(SeekFrom::Start(segment::HEADER_LEN as u64))
            .map_err(|e| Error::io(&path, "seeking", e))?;
        for expected in first..offset {
            match segment::read_record(&mut file, expected)
                .map_err(|e| Error::io(&path, "reading", e))?
            {
                Next::Record { .. } => {}
                Next::End
                    if self
                        .gaps
                        .iter()
                        .any(|g| g.from == expected && g.to > offset) =>
                {
                    self.next = expected;
                    let opened = self.next_segment(first)?;
                    debug_assert!(self.next > offset);
                    return Ok(opened);
                }
                Next::End => {
                    return Err(Error::Corrupt(format!(
                        "`{}` ends at offset {expected}, before offset {offset}",
                        path.display()
                    )))
                }
                Next::Invalid(reason) => return Err(damaged(&path, expected, reason)),
            }
        }
        Ok((first, file))
    }
}

/// The error for a record that is not what was written.
fn damaged(path: &Path, offset: u64, reason: &str) -> Error {
    Error::Corrupt(format!(
        "record {offset} in `{}` is damaged ({reason}): its events cannot be read. Restore the file from a backup; or, to go on without the events of this segment from offset {offset}, stop pipe, move the file out of the buffer folder and start again",
        path.display()
    ))
}

/// Length of a buffer id, in hex digits.
const ID_LEN: usize = 16;

/// Writes `dir/name` whole or not at all, and durably.
fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, "creating", e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(&tmp, "writing", e))?;
    fs::rename(&tmp, &path).map_err(|e| Error::io(&path, "writing", e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, "syncing", e))
}

/// The gaps recorded in `dir/gaps.log` (`<from> <to>` lines).
fn read_gaps(dir: &Path) -> Result<Vec<Gap>> {
    let path = dir.join("gaps.log");
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&path, "reading", e)),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut parts = line.split_whitespace().map(str::parse::<u64>);
            match (parts.next(), parts.next(), parts.next()) {
                (Some(Ok(from)), Some(Ok(to)), None) if from < to => Ok(Gap { from, to }),
                _ => Err(Error::Corrupt(format!(
                    "`{}` has a line that is not `<from> <to>`: `{}`",
                    path.display(),
                    line.escape_debug()
                ))),
            }
        })
        .collect()
}

/// Adds `gap` to `dir/gaps.log`, durably, before the segment after it exists.
fn record_gap(dir: &Path, gap: Gap) -> Result<()> {
    let mut gaps = read_gaps(dir)?;
    gaps.push(gap);
    let text: String = gaps
        .iter()
        .map(|g| format!("{} {}\n", g.from, g.to))
        .collect();
    write_durably(dir, "gaps.log", text.as_bytes())
}

/// Every record of the segment file `path`, which starts at `first`.
fn read_segment(path: &Path, first: u64) -> Result<Vec<Record>> {
    let mut file = BufReader::new(File::open(path).map_err(|e| Error::io(path, "opening", e))?);
    file.seek(SeekFrom::Start(segment::HEADER_LEN as u64))
        .map_err(|e| Error::io(path, "seeking", e))?;
    let mut out = Vec::new();
    let mut next = first;
    loop {
        match segment::read_record(&mut file, next).map_err(|e| Error::io(path, "reading", e))? {
            Next::Record { offset, payload } => {
                out.push(Record { offset, payload });
                next += 1;
            }
            Next::End => return Ok(out),
            Next::Invalid(reason) => return Err(damaged(path, next, reason)),
        }
    }
}

fn segments_bytes(dir: &Path) -> Result<u64> {
    Ok(list_segments(dir)?
        .iter()
        .filter_map(|s| fs::metadata(dir.join(segment::file_name(*s))).ok())
        .map(|m| m.len())
        .sum())
}

fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, "listing", e))? {
        let entry = entry.map_err(|e| Error::io(dir, "listing", e))?;
        if let Some(first) = entry
            .file_name()
            .to_str()
            .and_then(segment::parse_file_name)
        {
            out.push(first);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn read_prefix(path: &Path, buf: &mut [u8]) -> Result<usize> {
    use std::io::Read;
    let mut file = File::open(path).map_err(|e| Error::io(path, "opening", e))?;
    let mut n = 0;
    while n < buf.len() {
        match file
            .read(&mut buf[n..])
            .map_err(|e| Error::io(path, "reading", e))?
        {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Scans a segment and cuts a torn tail; returns (valid length, next offset).
fn recover_tail(path: &Path, first: u64) -> Result<(u64, u64)> {
    let file = File::open(path).map_err(|e| Error::io(path, "opening", e))?;
    let total = file
        .metadata()
        .map_err(|e| Error::io(path, "reading", e))?
        .len();
    let mut r = BufReader::new(file);
    r.seek(SeekFrom::Start(segment::HEADER_LEN as u64))
        .map_err(|e| Error::io(path, "seeking", e))?;
    let mut next = first;
    let mut valid = segment::HEADER_LEN as u64;
    loop {
        match segment::read_record(&mut r, next).map_err(|e| Error::io(path, "reading", e))? {
            Next::Record { payload, .. } => {
                valid += (segment::FRAME_LEN + payload.len()) as u64;
                next += 1;
            }
            Next::End => break,
            Next::Invalid(reason) => {
                if valid_record_follows(path, valid, next)? {
                    return Err(Error::Corrupt(format!(
                        "record {next} in `{}` is damaged ({reason}) and valid records follow it: this is not the torn tail a crash leaves but damage to acknowledged events, and pipe will not cut them away. Restore the file from a backup; or, to go on without the events of this segment from offset {next}, stop pipe, move the file out of the buffer folder and start again",
                        path.display()
                    )));
                }
                warn!(segment = %path.display(), reason, cut_bytes = total - valid, next_offset = next, "cutting a torn buffer tail");
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| Error::io(path, "opening", e))?;
                f.set_len(valid)
                    .map_err(|e| Error::io(path, "truncating", e))?;
                f.sync_all().map_err(|e| Error::io(path, "syncing", e))?;
                break;
            }
        }
    }
    Ok((valid, next))
}

/// Whether a valid record of offset `next` or later starts anywhere after
/// byte `from` of the segment (past its first byte: the record at `from`
/// is the bad one).
fn valid_record_follows(path: &Path, from: u64, next: u64) -> Result<bool> {
    use std::io::Read;
    let mut file = File::open(path).map_err(|e| Error::io(path, "opening", e))?;
    file.seek(SeekFrom::Start(from))
        .map_err(|e| Error::io(path, "seeking", e))?;
    let mut rest = Vec::new();
    file.read_to_end(&mut rest)
        .map_err(|e| Error::io(path, "reading", e))?;
    Ok((1..rest.len()).any(|at| segment::valid_frame_at(&rest[at..], next)))
}

fn create_segment(dir: &Path, first: u64) -> Result<ActiveSegment> {
    let path = dir.join(segment::file_name(first));
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, "creating", e))?;
    file.write_all(&segment::encode_header(first))
        .and_then(|_| file.sync_all())
        .map_err(|e| Error::io(&path, "writing the header of", e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, "syncing", e))?;
    Ok(ActiveSegment {
        file,
        len: segment::HEADER_LEN as u64,
    })
}

#[cfg(test)]
mod tests;
