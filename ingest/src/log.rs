//! One stream's log: the single owner of a stream's durability.
//!
//! A [`StreamLog`] holds the stream's [`Buffer`] (records on disk), its
//! [`KeyIndex`] (idempotency keys) and its consumers (the pipelines that
//! read it, with the last offset each has committed). Everything that
//! decides when an event may be forgotten happens here, so the rules
//! between those parts live in one place:
//!
//! ```text
//!   open ──► recover the buffer (cut a torn tail, refuse damage, record a gap)
//!        ──► rebuild the keys from keys.log + every live record
//!        ──► attach the consumers at their committed offsets
//!
//!   HTTP ──claim key──► Appender ──► writer: write + fsync ──► durable_next
//!                                                                │
//!   consumer ◄── reader(from) ◄──────────────────────────────────┘
//!      │ commits a..=b into its sink
//!      └──► committed(consumer, b) ──► min over consumers ──► release:
//!                keys of each segment appended to keys.log (fsync), then
//!                the segment deleted
//! ```
//!
//! Invariants (checked with `debug_assert!` where they are kept):
//! 1. Offsets are consecutive: each record's offset is the previous one's
//!    plus one, within a segment and across segments, except across a gap
//!    listed in `gaps.log` before the segment after it was created.
//! 2. A reader sees only records below `durable_next`: nothing a consumer
//!    processes can vanish in a crash.
//! 3. The next offset is past every offset any consumer has committed from
//!    this log, so an offset is never given to two records a sink could
//!    confuse (a buffer restored from an older copy starts past them, with
//!    a recorded gap).
//! 4. A consumer's committed offset only grows, and never reaches the next
//!    offset (it cannot commit what was not written).
//! 5. A segment is deleted only once every attached consumer has committed
//!    its last record; the active segment is never deleted. A consumer is
//!    attached before it reads, so no release passes it.
//! 6. The keys of a segment's records are appended to `keys.log` and
//!    fsync'd before the segment is deleted, so a key is known from its
//!    request's ack until its window ends, across restarts.
//! 7. A key is "being processed" only while a request holds its
//!    [`KeyClaim`](crate::idempotency::KeyClaim): a claim dropped unfinished
//!    frees it.
//! 8. A [`ReadPin`] keeps every record past the position its consumer had
//!    committed when it was taken: no segment holding one is deleted while
//!    the pin lives (a query reading what is not committed yet).
//!
//! Sinks record [`StreamLog::id`] with every commit: offsets of this log
//! are never taken for offsets of another one (another stream, this stream
//! wiped and made again, another process sharing the catalog).
//!
//! Commits made before logs had ids name no log. They count as a
//! consumer's position only in the log it read when the log got its id
//! ([`Identity::legacy_consumers`]), and only below the log's end: such a
//! position at or past the end (the consumer's FROM changed in the same
//! start, or the buffer is an older copy) refuses the open instead of
//! recording a gap, since old versions never left one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{info, warn};

use crate::buffer::{Appender, Buffer, BufferOptions, BufferReader, Identity};
use crate::idempotency::KeyIndex;
use crate::payload;
use crate::{Error, Result};

/// How a stream's log behaves.
#[derive(Debug, Clone)]
pub struct LogOptions {
    pub buffer: BufferOptions,
    /// How long idempotency keys are remembered.
    pub idempotency_window: Duration,
    /// The most keys remembered (see [`crate::idempotency`]).
    pub max_keys: usize,
    /// Offsets below this were committed from this log somewhere besides
    /// the consumers' own positions (a pipeline's failed-rows table, which
    /// commits a range before its main table): the next offset is past
    /// them too, so a buffer restored from an older copy never hands them
    /// out again.
    pub committed_floor: u64,
    /// Consumers whose committed offset comes from commits that name no
    /// log (see the module doc): it is trusted only below the log's end.
    pub legacy_positions: BTreeSet<String>,
}

/// What opening a log hands out besides the log: the one way to append,
/// and the writer task (it ends once every [`Appender`] is dropped).
pub struct Opened {
    pub log: Arc<StreamLog>,
    pub appender: Appender,
    pub writer: tokio::task::JoinHandle<Result<()>>,
}

/// One stream's buffer, keys and consumers. See the module doc.
#[derive(Debug)]
pub struct StreamLog {
    name: String,
    buffer: Buffer,
    keys: Arc<KeyIndex>,
    /// Each consumer's last committed offset (`None`: nothing yet), and
    /// the read pins.
    consumers: Mutex<Consumers>,
    /// This run of the log: a random id made at open, and the first
    /// offset it appends (see [`StreamLog::run`]).
    run: (String, u64),
}

impl StreamLog {
    /// The identity of the log in `dir`, made if it has none yet: what
    /// sinks record with each commit. Cheap; read before [`StreamLog::open`]
    /// so that consumers can look up what they committed from this log.
    /// `consumers`: the pipelines that read it now (see the module doc).
    /// A made identity is written by [`StreamLog::keep_identity`].
    pub fn identity(dir: &Path, consumers: &[&str]) -> Result<Identity> {
        Buffer::identity(dir, consumers)
    }

    /// Writes a new log's identity, once every log a start opens has
    /// opened (see [`Identity::keep`]).
    pub fn keep_identity(&self) -> Result<()> {
        self.buffer.keep_identity()
    }

    /// Opens (creating if needed) stream `name`'s log in `dir`, recovering
    /// from a crash, and starts its writer. `identity`: read before with
    /// [`StreamLog::identity`]. `consumers` are the pipelines that read it,
    /// each with the last offset it committed from this log.
    pub fn open(
        name: &str,
        dir: &Path,
        identity: Identity,
        options: LogOptions,
        consumers: impl IntoIterator<Item = (String, Option<u64>)>,
    ) -> Result<Opened> {
        let consumers: BTreeMap<String, Option<u64>> = consumers.into_iter().collect();
        let min_next = consumers
            .iter()
            .filter(|(name, _)| !options.legacy_positions.contains(*name))
            .filter_map(|(_, c)| c.map(|c| c + 1))
            .max()
            .unwrap_or(0)
            .max(options.committed_floor);
        let mut buffer = Buffer::open_as(dir, identity, options.buffer, min_next)?;
        for consumer in &options.legacy_positions {
            debug_assert!(buffer.legacy_consumers().contains(consumer));
            let Some(&Some(last)) = consumers.get(consumer) else {
                continue;
            };
            let next = buffer.next_offset();
            if last >= next {
                return Err(Error::Refused(format!(
                    "`{consumer}` recorded commits through offset {last} before logs had ids (an older version of pipe), but the log of stream `{name}` ends at offset {next}: those commits are not from this log. If the FROM of `{consumer}` changed in this upgrade, start once with its old FROM (its next commit records the log it reads), then change it; if `{dir}` was restored from an older copy, put the newer one back. To start `{consumer}` at this log's oldest event instead (events it committed before may be written again), write the pipelines whose earlier commits are this log's to `{legacy}`, one per line, without `{consumer}` (an empty file for none)",
                    dir = dir.display(),
                    legacy = dir.join("legacy-consumers").display(),
                )));
            }
        }
        let keys = Arc::new(KeyIndex::open(
            &dir.join("keys.log"),
            options.idempotency_window,
            options.max_keys,
        )?);
        let mut reader = buffer.reader(buffer.first_offset());
        loop {
            let records = reader.read(4096, 64 << 20)?;
            if records.is_empty() {
                break;
            }
            for r in &records {
                keys.observe(&payload::decode_meta(&r.payload)?);
            }
        }
        let (appender, writer) = buffer.start_writer();
        debug_assert!(buffer.next_offset() >= min_next, "invariant 3");
        let run = (
            uuid::Uuid::new_v4().simple().to_string()[..16].to_string(),
            buffer.next_offset(),
        );
        Ok(Opened {
            log: Arc::new(StreamLog {
                name: name.to_string(),
                buffer,
                keys,
                consumers: Mutex::new(Consumers {
                    committed: consumers,
                    pins: BTreeMap::new(),
                    next_pin: 0,
                }),
                run,
            }),
            appender,
            writer,
        })
    }

    /// This log's identity (see [`StreamLog::identity`]).
    pub fn id(&self) -> &str {
        self.buffer.id()
    }

    /// This run of the log: an id made at each open, and the first offset
    /// this run appends. Sinks record the run with each commit; a commit
    /// of another run holding offsets at or past that first offset means
    /// another process appends to a copy of this log (a copied data
    /// directory), and the pipeline reports it with
    /// [`StreamLog::mark_forked`].
    pub fn run(&self) -> (&str, u64) {
        (&self.run.0, self.run.1)
    }

    /// Records that another process appends to a copy of this log:
    /// nothing more is committed from it, and it is not opened again until
    /// an operator decides which copy goes on (the error says how).
    pub fn mark_forked(&self, reason: &str) -> Result<()> {
        self.buffer.mark_forked(reason, self.run.1)
    }

    /// [`StreamLog::mark_forked`], where the copies' events may differ from
    /// offset `from` on.
    pub fn mark_forked_from(&self, reason: &str, from: u64) -> Result<()> {
        self.buffer.mark_forked(reason, from)
    }

    /// CRC-32 of the payload of the record at `offset`, if the log holds
    /// it (see `Record::payload_crc`).
    pub fn payload_crc_at(&self, offset: u64) -> Result<Option<u32>> {
        if offset < self.first_offset() || offset >= self.next_offset() {
            return Ok(None);
        }
        let records = self.buffer.reader(offset).read(1, usize::MAX)?;
        Ok(records
            .first()
            .filter(|r| r.offset == offset)
            .map(|r| r.payload_crc()))
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stream's idempotency keys, for the HTTP endpoint.
    pub fn keys(&self) -> Arc<KeyIndex> {
        self.keys.clone()
    }

    /// A reader from `from` (see [`Buffer::reader`]).
    pub fn reader(&self, from: u64) -> BufferReader {
        self.buffer.reader(from)
    }

    /// The oldest offset still held (the next offset when empty).
    pub fn first_offset(&self) -> u64 {
        self.buffer.first_offset()
    }

    /// The offset the next record will get.
    pub fn next_offset(&self) -> u64 {
        self.buffer.next_offset()
    }

    /// Bytes the buffer holds on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.buffer.disk_bytes()
    }

    /// Why the stream takes no events any more, if its writer stopped.
    pub fn failure(&self) -> Option<String> {
        self.buffer.failure()
    }

    /// See [`Identity::legacy_consumers`].
    pub fn legacy_consumers(&self) -> &BTreeSet<String> {
        self.buffer.legacy_consumers()
    }

    /// Attaches a consumer that committed through `committed` (from this
    /// log) and returns where it starts reading: after its last commit, or
    /// at the oldest record held when what followed it was released while
    /// no consumer of that name was attached.
    pub fn attach(&self, consumer: &str, committed: Option<u64>) -> u64 {
        debug_assert!(
            committed.is_none_or(|c| c < self.next_offset()),
            "invariant 3: `{consumer}` committed {committed:?} past the next offset {}",
            self.next_offset()
        );
        self.consumers
            .lock()
            .expect("never poisoned")
            .committed
            .insert(consumer.to_string(), committed);
        let first = self.first_offset();
        match committed {
            Some(c) if c + 1 < first => {
                warn!(stream = %self.name, consumer, committed_through = c, first_offset = first, "events after this consumer's last commit were released while it was not attached; it starts at the oldest event the buffer holds");
                first
            }
            Some(c) => c + 1,
            None => first,
        }
    }

    /// The first offset whose request was accepted at or after `micros`
    /// (µs since the epoch), among the records the buffer still holds;
    /// the next offset when none was. Reads each record's header once.
    pub fn first_offset_at(&self, micros: i64) -> Result<u64> {
        let mut reader = self.reader(self.first_offset());
        loop {
            let records = reader.read(256, 64 << 20)?;
            let Some(last) = records.last() else {
                return Ok(self.next_offset());
            };
            let last = last.offset;
            for r in &records {
                if payload::decode_meta(&r.payload)?.at_micros >= micros {
                    return Ok(r.offset);
                }
            }
            if last + 1 >= self.next_offset() {
                return Ok(self.next_offset());
            }
        }
    }

    /// A consumer deleted: it no longer holds anything. With no consumer
    /// left, the log keeps every record until one is attached.
    pub fn detach(&self, consumer: &str) {
        let through = {
            let mut consumers = self.consumers.lock().expect("never poisoned");
            consumers.committed.remove(consumer);
            consumers.releasable()
        };
        self.release_through(consumer, through);
    }

    /// `consumer` has committed everything through `last`: records every
    /// consumer has committed are released.
    pub fn committed(&self, consumer: &str, last: u64) {
        debug_assert!(
            last < self.next_offset(),
            "invariant 4: {last} was never written"
        );
        let through = {
            let mut consumers = self.consumers.lock().expect("never poisoned");
            let before = consumers
                .committed
                .insert(consumer.to_string(), Some(last))
                .flatten();
            debug_assert!(
                before.is_none_or(|b| b <= last),
                "invariant 4: `{consumer}` went back from {before:?} to {last}"
            );
            consumers.releasable()
        };
        self.release_through(consumer, through);
    }

    /// The consumers, by name.
    pub fn consumers(&self) -> Vec<String> {
        self.consumers
            .lock()
            .expect("never poisoned")
            .committed
            .keys()
            .cloned()
            .collect()
    }

    /// Records (one per accepted request) that some consumer has not
    /// committed yet: all of them when there is no consumer.
    pub fn unprocessed(&self) -> u64 {
        let through = self
            .consumers
            .lock()
            .expect("never poisoned")
            .committed
            .values()
            .copied()
            .min()
            .flatten();
        let from = through.map_or(0, |c| c + 1).max(self.first_offset());
        self.buffer.records_in(from, self.next_offset())
    }

    /// How many records offsets `from..to` hold (offsets in a recorded gap
    /// hold none).
    pub fn records_in(&self, from: u64, to: u64) -> u64 {
        self.buffer.records_in(from, to)
    }

    /// Keeps every record past what `consumer` has committed (all of them
    /// when it has committed nothing or is not attached) until the pin is
    /// dropped (invariant 8). Take it before reading where the consumer's
    /// sink says it is: the sink is never behind the log's record of it.
    pub fn pin(self: &Arc<Self>, consumer: &str) -> ReadPin {
        let mut consumers = self.consumers.lock().expect("never poisoned");
        let from = consumers
            .committed
            .get(consumer)
            .copied()
            .flatten()
            .map_or(0, |c| c + 1);
        let id = consumers.next_pin;
        consumers.next_pin += 1;
        consumers.pins.insert(id, from);
        ReadPin {
            log: self.clone(),
            id,
            from,
        }
    }

    fn release_through(&self, consumer: &str, through: Option<u64>) {
        let Some(through) = through else { return };
        // Invariant 6: the keys go to keys.log before the segment goes.
        match self
            .buffer
            .release_through(through, |records| self.keys.retain(records))
        {
            Ok(0) => {}
            Ok(n) => {
                info!(stream = %self.name, consumer, through, segments = n, "released buffer segments")
            }
            Err(e) => {
                warn!(stream = %self.name, consumer, error = %e, "could not release buffer segments")
            }
        }
    }
}

/// The consumers of a log and the pins on it.
#[derive(Debug)]
struct Consumers {
    committed: BTreeMap<String, Option<u64>>,
    /// Each live [`ReadPin`] by id: the first offset it keeps.
    pins: BTreeMap<u64, u64>,
    next_pin: u64,
}

impl Consumers {
    /// The offset through which records may be released: what every
    /// consumer has committed, short of every pin (invariants 5 and 8).
    fn releasable(&self) -> Option<u64> {
        let committed = self.committed.values().copied().min().flatten()?;
        match self.pins.values().min() {
            Some(0) => None,
            Some(&from) => Some(committed.min(from - 1)),
            None => Some(committed),
        }
    }
}

/// Keeps a log's records past a consumer's committed position while it
/// lives (see [`StreamLog::pin`]). What a commit could release while it
/// lived is released by the next commit after it is dropped.
#[derive(Debug)]
pub struct ReadPin {
    log: Arc<StreamLog>,
    id: u64,
    from: u64,
}

impl ReadPin {
    /// The first offset the pin keeps.
    pub fn from(&self) -> u64 {
        self.from
    }

    /// The log it pins.
    pub fn log(&self) -> &Arc<StreamLog> {
        &self.log
    }
}

impl Drop for ReadPin {
    fn drop(&mut self) {
        let mut consumers = self.log.consumers.lock().expect("never poisoned");
        consumers.pins.remove(&self.id);
    }
}

#[cfg(test)]
mod tests;
