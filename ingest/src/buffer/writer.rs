//! Writing a buffer: appends queued by handlers, written and fsync'd a
//! group at a time by one writer per stream (see the parent module).

use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tracing::warn;

use super::{create_segment, segment, ActiveSegment, Buffer, BufferOptions};
use crate::{Error, Result};

impl Buffer {
    /// Starts the writer on the blocking pool. It runs until every
    /// [`Appender`] is dropped, then finishes what is queued and returns.
    pub fn start_writer(&mut self) -> (Appender, tokio::task::JoinHandle<Result<()>>) {
        let active = self
            .active
            .take()
            .expect("start_writer is called once per buffer");
        let (tx, rx) = mpsc::channel(self.options.queue_depth);
        let writer = Writer {
            roll_bytes: roll_bytes(&self.dir, &self.options),
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
            failure: self.failure.clone(),
        };
        (appender, handle)
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
    /// Why the buffer takes no more records, once it does not.
    failure: Arc<std::sync::Mutex<Option<String>>>,
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
        if let Some(why) = self.failure.lock().expect("never poisoned").clone() {
            return Err(Error::Poisoned(why));
        }
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
    /// A new segment is started past this many bytes (see [`roll_bytes`]).
    roll_bytes: u64,
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
            if let Some((free, reserve)) = self.disk_low(size as u64) {
                warn!(buffer = %self.dir.display(), free, reserve, requests = group.len(), "the buffer's disk is nearly full; requests refused (503)");
                for req in group.drain(..) {
                    let _ = req.ack.send(Err(Error::DiskLow { free, reserve }));
                }
                continue;
            }
            // Never appended to: a version 1 segment left active because
            // the open could not start a salted one (a full disk).
            if self.active.salt == segment::Salt::NONE {
                if let Err(e) = self.roll() {
                    warn!(buffer = %self.dir.display(), error = %e, requests = group.len(), "could not start a version 2 segment; requests refused (503)");
                    for req in group.drain(..) {
                        let _ = req.ack.send(Err(Error::WriteFailed(e.to_string())));
                    }
                    continue;
                }
            }
            let start = self.next;
            for (i, req) in group.iter().enumerate() {
                segment::encode_record(
                    &mut bytes,
                    self.active.salt,
                    start + i as u64,
                    &req.payload,
                );
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
            if self.active.len >= self.roll_bytes {
                // The current segment takes the next groups; the roll is
                // tried again after each.
                if let Err(e) = self.roll() {
                    warn!(buffer = %self.dir.display(), error = %e, "could not start a new buffer segment; the current one goes on");
                }
            }
        }
        Ok(())
    }

    /// Starts a new segment at the next offset (made whole or not at all).
    fn roll(&mut self) -> Result<()> {
        self.active = create_segment(&self.dir, self.next)?;
        self.disk_bytes
            .fetch_add(segment::HEADER_LEN as u64, Ordering::Relaxed);
        Ok(())
    }

    /// `(free, reserve)` when a group of `bytes` would leave less free
    /// space on the buffer's filesystem than the reserve (see
    /// [`BufferOptions::min_free_disk_bytes`]); `None` when it fits or the
    /// filesystem cannot say.
    fn disk_low(&self, bytes: u64) -> Option<(u64, u64)> {
        let space = free_space(&self.dir)?;
        let reserve = reserve(&self.options, &space)?;
        let needed = bytes + (segment::FRAME_LEN as u64) * 64 + reserve;
        (space.free < needed).then_some((space.free, reserve))
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

/// Sizes of a filesystem, in bytes.
struct Space {
    total: u64,
    /// Free for an unprivileged writer.
    free: u64,
}

/// The filesystem holding `dir`; `None` if it cannot say.
fn free_space(dir: &std::path::Path) -> Option<Space> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain old data; all zeroes is a valid value.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `stat` a writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let unit = stat.f_frsize as u64;
    Some(Space {
        total: stat.f_blocks as u64 * unit,
        free: stat.f_bavail as u64 * unit,
    })
}

/// The space kept free on the buffer's filesystem (see
/// [`BufferOptions::min_free_disk_bytes`]); `None`: no reserve (0, the
/// check is off: a write that does not fit fails and is undone).
fn reserve(options: &BufferOptions, space: &Space) -> Option<u64> {
    match options.min_free_disk_bytes {
        Some(0) => None,
        Some(bytes) => Some(bytes),
        None => Some((space.total / 5).min(1 << 30)),
    }
}

/// The size past which the writer starts a new segment: the configured
/// one, but at most half the disk reserve (a tenth of the filesystem with
/// the reserve off). Space is freed a whole segment at a time and the
/// active segment never is, so a segment larger than the reserve (or,
/// with none, filling the disk) could keep the disk full with every
/// record committed, refusing every request for good (review 3 finding F,
/// review 5 finding 3).
fn roll_bytes(dir: &std::path::Path, options: &BufferOptions) -> u64 {
    let Some(space) = free_space(dir) else {
        return options.segment_bytes;
    };
    let cap = match reserve(options, &space) {
        Some(reserve) => reserve / 2,
        None => space.total / 10,
    };
    options.segment_bytes.min(cap.max(64 << 10))
}
