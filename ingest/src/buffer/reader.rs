//! Reading a buffer: records in offset order, never past what is durable,
//! across segments and recorded gaps (see the parent module).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;
use tracing::warn;

use super::segment::{self, Next};
use super::{list_segments, Buffer, Gap, Record};
use crate::{Error, Result};

impl Buffer {
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
}

/// Reads records in offset order, never past what is durable.
#[derive(Debug)]
pub struct BufferReader {
    dir: PathBuf,
    durable: watch::Receiver<u64>,
    next: u64,
    /// The open segment, at `next`.
    file: Option<OpenSegment>,
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
                // Opening inside a recorded gap steps over it: what is
                // durable is checked again.
                continue;
            }
            let open = self.file.as_mut().expect("opened above");
            let first = open.first;
            let path = || self.dir.join(segment::file_name(first));
            match segment::read_record(&mut open.file, open.salt, self.next)
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
    fn next_segment(&mut self, current: u64) -> Result<OpenSegment> {
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
        OpenSegment::open(&self.dir, after)
    }

    /// Opens the segment holding `offset` and skips to that record (or, for
    /// an offset inside a recorded gap, to the first record after it).
    fn open_at(&mut self, offset: u64) -> Result<OpenSegment> {
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
        let mut open = OpenSegment::open(&self.dir, first)?;
        for expected in first..offset {
            match segment::read_record(&mut open.file, open.salt, expected)
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
        Ok(open)
    }
}

/// A segment open for reading.
#[derive(Debug)]
struct OpenSegment {
    first: u64,
    salt: segment::Salt,
    file: BufReader<File>,
}

impl OpenSegment {
    /// Opens the segment of `dir` starting at `first`, at its first record.
    fn open(dir: &Path, first: u64) -> Result<OpenSegment> {
        let path = dir.join(segment::file_name(first));
        let (header, file) = segment::open(&path)
            .map_err(|e| Error::io(&path, "opening", e))?
            .map_err(|e| {
                Error::Corrupt(format!("`{}`: bad segment header ({e:?})", path.display()))
            })?;
        Ok(OpenSegment {
            first,
            salt: header.salt,
            file,
        })
    }
}

/// The error for a record that is not what was written.
pub(super) fn damaged(path: &Path, offset: u64, reason: &str) -> Error {
    let file = path.display();
    let cut = match byte_of(path, offset) {
        Some(at) => format!("cut it to {at} bytes (`truncate -s {at} {file}`)"),
        None => format!("cut it where record {offset} begins"),
    };
    // A segment after this one: the offsets the cut removes become a gap,
    // which readers step over only when `gaps.log` lists it.
    let dir = path.parent().unwrap_or(Path::new("."));
    let first = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(segment::parse_file_name);
    let after = list_segments(dir)
        .ok()
        .and_then(|all| all.into_iter().find(|s| first.is_some_and(|f| *s > f)));
    let gap = match after {
        Some(after) => format!(
            ", then add the line `{offset} {after}` to `{}`",
            dir.join("gaps.log").display()
        ),
        // The writer may roll to one before pipe is stopped.
        None => format!(
            ", then, if a segment after it exists once pipe has stopped, add the line `{offset} <that segment's first offset>` to `{}`",
            dir.join("gaps.log").display()
        ),
    };
    Error::Corrupt(format!(
        "record {offset} in `{file}` is damaged ({reason}): its events cannot be read. Restore the file from a backup; or, to go on without the events of this segment from offset {offset} on (the records before it are kept): stop pipe, keep a copy of the file, {cut}{gap}, and start again"
    ))
}

/// Where record `offset` begins in the segment file `path`, if the records
/// before it read back.
fn byte_of(path: &Path, offset: u64) -> Option<u64> {
    let (header, mut file) = segment::open(path).ok()?.ok()?;
    let mut at = header.size() as u64;
    for expected in header.first..offset {
        match segment::read_record(&mut file, header.salt, expected).ok()? {
            Next::Record { payload, .. } => at += (segment::FRAME_LEN + payload.len()) as u64,
            _ => return None,
        }
    }
    Some(at)
}

/// Every record of the segment file `path`, which starts at `first`.
pub(super) fn read_segment(path: &Path, first: u64) -> Result<Vec<Record>> {
    let (header, mut file) = segment::open(path)
        .map_err(|e| Error::io(path, "opening", e))?
        .map_err(|e| Error::Corrupt(format!("`{}`: bad segment header ({e:?})", path.display())))?;
    let mut out = Vec::new();
    let mut next = first;
    loop {
        match segment::read_record(&mut file, header.salt, next)
            .map_err(|e| Error::io(path, "reading", e))?
        {
            Next::Record { offset, payload } => {
                out.push(Record { offset, payload });
                next += 1;
            }
            Next::End => return Ok(out),
            Next::Invalid(reason) => return Err(damaged(path, next, reason)),
        }
    }
}
