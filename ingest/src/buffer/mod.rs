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
//!   CRC) is truncated away. An fsync or write failure poisons the writer: it
//!   answers every later append with an error instead of guessing what the
//!   page cache kept (a restart recovers from disk).
//! - **Release**: [`Buffer::release_through`] deletes whole segments once every
//!   consumer has committed past them; the active segment is never deleted,
//!   so the next offset survives restarts.

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
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, "creating the buffer folder", e))?;
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
                    warn!(buffer = %dir.display(), next, min_next_offset, "buffer is behind the committed offsets; starting a new segment");
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
        })
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
                let mut reader = self.reader(pair[0]);
                let records = reader.read((pair[1] - pair[0]) as usize, usize::MAX)?;
                before_delete(&records)?;
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
            if let Err(e) = self.persist(&bytes) {
                let message = format!("buffer write failed, refusing appends until restart: {e}");
                tracing::error!(buffer = %self.dir.display(), error = %e, "buffer write failed; the writer stops");
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
            self.next = start + group.len() as u64;
            self.durable_next.send_replace(self.next);
            for (i, req) in group.drain(..).enumerate() {
                let _ = req.ack.send(Ok(start + i as u64));
            }
            if self.active.len >= self.options.segment_bytes {
                self.active = create_segment(&self.dir, self.next)?;
                self.disk_bytes
                    .fetch_add(segment::HEADER_LEN as u64, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    fn persist(&mut self, bytes: &[u8]) -> Result<()> {
        let path = || self.dir.join("active segment");
        self.active
            .file
            .write_all(bytes)
            .map_err(|e| Error::io(&path(), "appending to", e))?;
        self.active
            .file
            .sync_data()
            .map_err(|e| Error::io(&path(), "syncing", e))?;
        self.active.len += bytes.len() as u64;
        self.disk_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Reads records in offset order, never past what is durable.
#[derive(Debug)]
pub struct BufferReader {
    dir: PathBuf,
    durable: watch::Receiver<u64>,
    next: u64,
    file: Option<BufReader<File>>,
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
        let mut out = Vec::new();
        let mut bytes = 0;
        while self.next < durable && out.len() < max_records && bytes < max_bytes {
            if self.file.is_none() {
                self.file = Some(self.open_at(self.next)?);
            }
            let file = self.file.as_mut().expect("opened above");
            match segment::read_record(file, self.next)
                .map_err(|e| Error::io(&self.dir, "reading", e))?
            {
                Next::Record { offset, payload } => {
                    bytes += payload.len();
                    out.push(Record { offset, payload });
                    self.next += 1;
                }
                // The segment ended before a durable offset: it continues in
                // the segment named by that offset.
                Next::End | Next::Invalid(_) => {
                    let path = self.dir.join(segment::file_name(self.next));
                    let file = File::open(&path).map_err(|e| {
                        Error::Corrupt(format!(
                            "record {} is durable but neither in the current segment nor in `{}`: {e}",
                            self.next,
                            path.display()
                        ))
                    })?;
                    let mut file = BufReader::new(file);
                    file.seek(SeekFrom::Start(segment::HEADER_LEN as u64))
                        .map_err(|e| Error::io(&path, "seeking", e))?;
                    self.file = Some(file);
                }
            }
        }
        Ok(out)
    }

    /// Opens the segment holding `offset` and skips to that record.
    fn open_at(&self, offset: u64) -> Result<BufReader<File>> {
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
                _ => {
                    return Err(Error::Corrupt(format!(
                        "`{}` ends before offset {offset}",
                        path.display()
                    )))
                }
            }
        }
        Ok(file)
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
