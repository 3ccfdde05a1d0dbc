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
//!   buffer wiped and made again, another process). A buffer written
//!   before buffers had ids (segments, no `id`) gets one at the first start
//!   of a version that records them, and the consumers reading it at that
//!   start are written to `legacy-consumers` before the id: commits they
//!   made without an id (older versions) are positions in this buffer, and
//!   such commits of anyone else are not (a consumer that read another
//!   stream then). See [`Identity`].
//! - **Gaps**: a buffer opened behind what its consumers committed (restored
//!   from an older copy) starts its next segment past their offsets. The
//!   skipped range is written to `gaps.log` first, and readers step over
//!   exactly the ranges listed there; any other hole between segments is
//!   damage, reported as such.

mod crc_span;
mod reader;
pub mod segment;
mod writer;

use reader::read_segment;
pub use reader::BufferReader;
pub use writer::Appender;

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;
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
    /// Bytes kept free on the buffer's filesystem: a group that would
    /// leave less is refused (503) before it is written. The buffer, the
    /// tables and the catalog often share a disk, and a commit needs room
    /// to write the files that free the buffer. `None`: the smaller of
    /// 1 GiB and a fifth of the filesystem.
    pub min_free_disk_bytes: Option<u64>,
}

impl Default for BufferOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
            queue_depth: 1024,
            max_group_bytes: 16 << 20,
            max_disk_bytes: 8 << 30,
            max_queued_bytes: 64 << 20,
            min_free_disk_bytes: None,
        }
    }
}

/// A buffer's identity (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The random id sinks record with each commit.
    pub id: String,
    /// The consumers whose commits recorded without an id (by versions
    /// before buffers had one) are positions in this buffer: those that
    /// read it when it got its id. Empty for a buffer made with an id.
    pub legacy_consumers: BTreeSet<String>,
}

impl Identity {
    /// Writes a new identity to `dir` (its legacy consumers first, then
    /// the id): done once the log opened and its checks passed, so that a
    /// start refused for any stream leaves every id-less buffer as it was.
    pub fn keep(&self, dir: &Path) -> Result<()> {
        if dir.join("id").exists() {
            return Ok(());
        }
        if !list_segments(dir)?.is_empty() {
            let lines: String = self
                .legacy_consumers
                .iter()
                .map(|c| format!("{c}\n"))
                .collect();
            write_durably(dir, LEGACY_CONSUMERS, lines.as_bytes())?;
        }
        write_durably(dir, "id", format!("{}\n", self.id).as_bytes())?;
        info!(buffer = %dir.display(), id = self.id, legacy_consumers = ?self.legacy_consumers, "new buffer id");
        Ok(())
    }
}

/// The file listing a buffer's [`Identity::legacy_consumers`], one per line.
const LEGACY_CONSUMERS: &str = "legacy-consumers";

/// One record read back from the buffer.
#[derive(Debug, Clone)]
pub struct Record {
    pub offset: u64,
    pub payload: Vec<u8>,
}

impl Record {
    /// CRC-32 of the payload: what a commit records of its last record,
    /// so that a copy of this log holding other events under the same
    /// offsets is told apart (`pipe_sink::Committed::last_crc`).
    pub fn payload_crc(&self) -> u32 {
        crc32fast::hash(&self.payload)
    }
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
    identity: Identity,
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
    /// The salt of its record checksums (see [`segment`]).
    salt: segment::Salt,
}

impl Buffer {
    /// Opens (creating if needed) the buffer in `dir`, recovering from a crash.
    ///
    /// `min_next_offset` is the lowest offset new records may take: the sinks'
    /// committed offsets + 1, so a wiped buffer never reuses committed offsets.
    pub fn open(dir: &Path, options: BufferOptions, min_next_offset: u64) -> Result<Buffer> {
        let identity = Buffer::identity(dir, &[])?;
        identity.keep(dir)?;
        Buffer::open_as(dir, identity, options, min_next_offset)
    }

    /// [`Buffer::open`] with the identity read before (see
    /// [`Identity::keep`]).
    pub fn open_as(
        dir: &Path,
        identity: Identity,
        options: BufferOptions,
        min_next_offset: u64,
    ) -> Result<Buffer> {
        check_not_forked(dir)?;
        let mut gaps = read_gaps(dir)?;
        let mut segments = list_segments(dir)?;
        // A segment whose header never reached the disk is an interrupted roll.
        while let Some(&last) = segments.last() {
            let path = dir.join(segment::file_name(last));
            let opened = segment::open(&path).map_err(|e| Error::io(&path, "reading", e))?;
            match opened {
                Ok((header, _)) if header.first == last => break,
                Ok(_) | Err(segment::HeaderError::BadMagic | segment::HeaderError::Version(_)) => {
                    return Err(Error::Corrupt(format!(
                        "`{}` is not a buffer segment of this version",
                        path.display()
                    )))
                }
                Err(segment::HeaderError::Short) => {
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
                let (len, next, salt) = recover_tail(&path, first)?;
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
                } else if salt == segment::Salt::NONE {
                    // A version 1 segment (written before salts) is not
                    // appended to: records a client can forge frames in go
                    // to a salted one (see `segment`). On a full disk the
                    // writer makes that one before its first group.
                    match create_segment(dir, next) {
                        Ok(active) => (active, next),
                        Err(e) => {
                            warn!(buffer = %dir.display(), error = %e, "could not start a version 2 segment; the writer tries again before its first append");
                            (ActiveSegment { file, len, salt }, next)
                        }
                    }
                } else {
                    (ActiveSegment { file, len, salt }, next)
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
            identity,
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
    /// if it has none yet; a made one is written by [`Identity::keep`].
    /// `consumers`: those reading it now, its legacy consumers if it was
    /// written before buffers had ids (see the module doc).
    pub fn identity(dir: &Path, consumers: &[&str]) -> Result<Identity> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, "creating the buffer folder", e))?;
        let path = dir.join("id");
        match fs::read_to_string(&path) {
            Ok(text) => {
                let id = text.trim();
                if id.len() == ID_LEN && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Ok(Identity {
                        id: id.to_string(),
                        legacy_consumers: read_legacy_consumers(dir)?,
                    });
                }
                Err(Error::Corrupt(format!(
                    "`{}` should hold a buffer id of {ID_LEN} hex digits, not `{}`",
                    path.display(),
                    id.escape_debug()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = uuid::Uuid::new_v4().simple().to_string()[..ID_LEN].to_string();
                if list_segments(dir)?.is_empty() {
                    // A new buffer: nothing to decide, written at once (an
                    // open that then fails leaves an empty segment, which
                    // must not look like a buffer of an older version).
                    let identity = Identity {
                        id,
                        legacy_consumers: BTreeSet::new(),
                    };
                    identity.keep(dir)?;
                    return Ok(identity);
                }
                // Written before buffers had ids. A `legacy-consumers` file
                // already there is a decision: an operator's (see
                // `StreamLog::open`), or that of a start that stopped
                // before writing the id.
                let legacy_consumers = match dir.join(LEGACY_CONSUMERS).exists() {
                    true => read_legacy_consumers(dir)?,
                    false => consumers.iter().map(|c| c.to_string()).collect(),
                };
                Ok(Identity {
                    id,
                    legacy_consumers,
                })
            }
            Err(e) => Err(Error::io(&path, "reading", e)),
        }
    }

    /// This buffer's id.
    pub fn id(&self) -> &str {
        &self.identity.id
    }

    /// See [`Identity::legacy_consumers`].
    pub fn legacy_consumers(&self) -> &BTreeSet<String> {
        &self.identity.legacy_consumers
    }

    /// Writes this buffer's identity if it is new (see [`Identity::keep`]).
    pub fn keep_identity(&self) -> Result<()> {
        self.identity.keep(&self.dir)
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

/// Length of a buffer id, in hex digits.
const ID_LEN: usize = 16;

/// Writes `dir/name` whole or not at all, and durably (temp file, fsync,
/// rename, fsync of the folder).
pub(crate) fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
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

/// The file that marks a buffer another process appended to as well.
const FORKED: &str = "forked";

impl Buffer {
    /// Marks this buffer as appended to by another process too (a copy of
    /// it runs elsewhere): it is not opened again until an operator has
    /// decided which copy goes on (see [`check_not_forked`]). `from` is the
    /// first offset whose events may differ between the copies.
    pub fn mark_forked(&self, reason: &str, from: u64) -> Result<()> {
        let text = format!(
            "{reason}\nEvents acknowledged here from offset {from} on that were not committed are only in this buffer.\n"
        );
        warn!(buffer = %self.dir.display(), "{reason}");
        write_durably(&self.dir, FORKED, text.as_bytes())?;
        // Events taken from now on could only wait here: refused instead.
        *self.failure.lock().expect("never poisoned") = Some(format!(
            "this stream takes no events: another server appends to a copy of its log ({reason}); see `{}`",
            self.dir.join(FORKED).display()
        ));
        Ok(())
    }
}

/// Refuses a buffer marked by [`Buffer::mark_forked`], saying what to do.
fn check_not_forked(dir: &Path) -> Result<()> {
    let path = dir.join(FORKED);
    let reason = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&path, "reading", e)),
    };
    Err(Error::Corrupt(format!(
        "the buffer `{}` was appended to by two servers, so its pipelines stopped committing from it: {} To go on, stop the copy that should not run and decide for this one: if it should not run either, delete its data directory (the events above are lost with it); to keep its events, delete `{}` and `{}` and start it: its buffer then counts as a new log, and every event it holds is committed again (events it shares with the other copy land twice)",
        dir.display(),
        reason.trim_end(),
        path.display(),
        dir.join("id").display()
    )))
}

/// The consumers listed in `dir/legacy-consumers` (none if it is absent).
fn read_legacy_consumers(dir: &Path) -> Result<BTreeSet<String>> {
    let path = dir.join(LEGACY_CONSUMERS);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(Error::io(&path, "reading", e)),
    }
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

/// Scans a segment and cuts a torn tail; returns (valid length, next
/// offset, the segment's salt).
fn recover_tail(path: &Path, first: u64) -> Result<(u64, u64, segment::Salt)> {
    let (header, mut r) = segment::open(path)
        .map_err(|e| Error::io(path, "reading", e))?
        .map_err(|e| Error::Corrupt(format!("`{}`: bad segment header ({e:?})", path.display())))?;
    let total = r
        .get_ref()
        .metadata()
        .map_err(|e| Error::io(path, "reading", e))?
        .len();
    let salt = header.salt;
    let mut next = first;
    let mut valid = header.size() as u64;
    loop {
        match segment::read_record(&mut r, salt, next).map_err(|e| Error::io(path, "reading", e))? {
            Next::Record { payload, .. } => {
                valid += (segment::FRAME_LEN + payload.len()) as u64;
                next += 1;
            }
            Next::End => break,
            Next::Invalid(reason) => {
                if valid_record_follows(path, salt, valid, next)? {
                    return Err(Error::Corrupt(format!(
                        "record {next} in `{file}` is damaged ({reason}) and valid records follow it: this is not the torn tail a crash leaves but damage to acknowledged events, and pipe will not cut them away. Restore the file from a backup; or, to go on without the events from offset {next} on (the records before it are kept), stop pipe, keep a copy of the file, cut it to {valid} bytes (`truncate -s {valid} {file}`) and start again",
                        file = path.display()
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
    Ok((valid, next, salt))
}

/// Whether a valid record follows the bad one at byte `from` of the
/// segment (the bad record has offset `next`). Frames are checked with the
/// segment's salt, so a frame a client sent inside its events does not
/// count. First where the bad record's own header says the next record
/// begins (a flipped byte in a payload leaves the header intact), then at
/// every byte for a frame of any later offset (damage can cover several
/// headers: a page of zeros).
///
/// Bytes a client sent can hold a frame-like header every few bytes, each
/// asking for a checksum over the rest of the file: checksums are found
/// from prefix CRCs in constant time each ([`crc_span`]), so recovery is
/// linear in the segment whatever its records hold.
fn valid_record_follows(path: &Path, salt: segment::Salt, from: u64, next: u64) -> Result<bool> {
    use std::io::Read;
    let mut file = File::open(path).map_err(|e| Error::io(path, "opening", e))?;
    file.seek(SeekFrom::Start(from))
        .map_err(|e| Error::io(path, "seeking", e))?;
    let mut rest = Vec::new();
    file.read_to_end(&mut rest)
        .map_err(|e| Error::io(path, "reading", e))?;
    if rest.len() >= segment::FRAME_LEN {
        let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let boundary = segment::FRAME_LEN.saturating_add(len);
        if boundary < rest.len() && segment::valid_frame_at(&rest[boundary..], salt, next + 1) {
            return Ok(true);
        }
    }
    // Every record after the bad one takes a frame at least.
    let last = next + (rest.len() / segment::FRAME_LEN) as u64;
    let spans = crc_span::Spans::new(&rest);
    Ok((1..rest.len()).any(|at| segment::valid_frame_in(&spans, &rest, at, salt, next + 1, last)))
}

/// A new segment whose first record will have offset `first`, made whole
/// or not at all: its header is written to a temporary file, synced, and
/// renamed into place (replacing an empty segment of the same name, a
/// version 1 one with no record).
fn create_segment(dir: &Path, first: u64) -> Result<ActiveSegment> {
    let tmp = dir.join("segment.tmp");
    let path = dir.join(segment::file_name(first));
    let salt = segment::Salt::random();
    let made = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, "creating", e))
        .and_then(|mut file| {
            file.write_all(&segment::encode_header(first, salt))
                .and_then(|_| file.sync_all())
                .map_err(|e| Error::io(&path, "writing the header of", e))?;
            fs::rename(&tmp, &path).map_err(|e| Error::io(&path, "creating", e))?;
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(dir, "syncing", e))?;
            Ok(file)
        });
    match made {
        Ok(file) => Ok(ActiveSegment {
            file,
            len: segment::HEADER_LEN as u64,
            salt,
        }),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests;
