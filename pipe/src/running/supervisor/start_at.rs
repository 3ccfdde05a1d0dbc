//! Where a pipeline starts when it has no position in its stream's log:
//! it is new, its sink now points at a new table, or its stream was made
//! again. `earliest` (the default) reads every event the buffer holds: the
//! whole stream when no other pipeline reads it, else whatever the other
//! pipelines' commits have not released yet. `end`, `offset:N` and
//! `time:…` choose a point instead.
//!
//! With `earliest`, a pipeline new to an Iceberg table that already holds
//! events of this log, committed by another pipeline (it was renamed, or
//! replaces a deleted one), continues after them instead
//! (`Planned::taken_over`): they are in the table already.
//!
//! A chosen point is resolved once, to an offset, and kept in
//! `<data_dir>/starts/<pipeline>.json` with the log's id before the
//! pipeline reads: a restart before its first commit starts at the same
//! offset, not at a new `end` (which would skip what it had not committed
//! yet). Its first commit makes the file moot; deleting the pipeline
//! removes it.

use std::path::{Path, PathBuf};

use pipe_ingest::log::StreamLog;

use crate::config::StartAt;
use crate::{Error, Result};

/// Where a kept start point lives.
pub(super) fn marker(data_dir: &Path, pipeline: &str) -> PathBuf {
    data_dir.join("starts").join(format!("{pipeline}.json"))
}

/// The offset `pipeline` has, in effect, consumed through when it starts
/// at `start` in `log` without a position there (`None`: from the oldest
/// buffered event), resolved now or read from its kept `marker`.
pub(super) fn resolve(start: StartAt, log: &StreamLog, marker: &Path) -> Result<Option<u64>> {
    if start == StartAt::Earliest {
        return Ok(None);
    }
    let spec = format!("{start:?}");
    // Kept for this log and this very start (a start changed before the
    // first commit is resolved again).
    let kept = std::fs::read(marker)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Kept>(&bytes).ok())
        .filter(|k| k.log == log.id() && k.start == spec);
    let at = match kept {
        Some(kept) => kept.offset,
        None => {
            let next = log.next_offset();
            let at = match start {
                StartAt::Earliest => log.first_offset(),
                StartAt::End => next,
                StartAt::Offset(n) if n > next => {
                    return Err(Error::Remote(
                        format!("`start = \"offset:{n}\"` is past the end of the stream (its next offset is {next}): choose an offset it has, or `end`"),
                        crate::ErrorKind::InvalidInput,
                    ))
                }
                StartAt::Offset(n) => n,
                StartAt::Time(micros) if micros > now_micros() => {
                    return Err(Error::Remote(
                        "`start = \"time:…\"` is in the future: choose a time the stream has reached, or `end`".to_string(),
                        crate::ErrorKind::InvalidInput,
                    ))
                }
                StartAt::Time(micros) => log.first_offset_at(micros)?,
            };
            let kept = Kept {
                log: log.id().to_string(),
                start: spec,
                offset: at,
            };
            let bytes = serde_json::to_vec(&kept).map_err(|e| Error::Internal(e.to_string()))?;
            crate::config::definitions::write_durably(marker, &bytes)?;
            at
        }
    };
    Ok((at > log.first_offset()).then(|| at - 1))
}

/// A start point resolved: the offset, in the log of that id.
#[derive(serde::Serialize, serde::Deserialize)]
struct Kept {
    log: String,
    /// The start it was resolved from.
    #[serde(default)]
    start: String,
    offset: u64,
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
