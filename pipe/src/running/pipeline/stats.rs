//! A pipeline's live figures and health, kept by its task and read by the
//! admin API, `/metrics` and `/readyz`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Live figures of one pipeline, shared with the admin API.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Rows committed to the sink table since the server started.
    pub rows_committed: AtomicU64,
    /// Rows the SQL failed on, committed to the quarantine table since the
    /// server started.
    pub failed_rows_committed: AtomicU64,
    /// Data files committed to the sink table since the server started.
    pub files_committed: AtomicU64,
    /// Their size on storage (compressed).
    pub bytes_committed: AtomicU64,
    /// Their size before compression (Parquet pages before the codec,
    /// NDJSON text before gzip).
    pub uncompressed_bytes_committed: AtomicU64,
    /// Their Parquet row groups.
    pub row_groups_committed: AtomicU64,
    /// Commits made, and the time they took (µs, closing files to a known
    /// outcome).
    pub commits: AtomicU64,
    pub commit_micros: AtomicU64,
    /// When the last commit landed, ms since the epoch (0: none yet).
    pub last_commit_unix_ms: AtomicU64,
    /// When the newest request this server committed was accepted, µs
    /// since the epoch (0: none yet): what other engines see is that old.
    pub newest_committed_micros: AtomicI64,
    /// The latest problems, newest last (at most [`RECENT_ERRORS`]).
    recent_errors: Mutex<std::collections::VecDeque<RecentError>>,
    /// The last committed buffer offset plus one (0: nothing yet).
    committed_next: AtomicU64,
    /// The first offset the task read (a `start` may skip older events).
    started_at: AtomicU64,
    /// What it is doing.
    health: Mutex<Health>,
}

/// What a pipeline is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Reading, writing and committing.
    Running,
    /// Its last step failed; it tries again with backoff.
    Retrying,
    /// Its task ended on an error or a panic: nothing is read or
    /// committed until it is restarted (a restart of the server, or a
    /// delete and create).
    Failed,
    /// It was asked to stop (a delete, a change of its definition, or the
    /// server's shutdown) and commits what it has read before it ends.
    Draining,
}

impl State {
    /// Every state, for one-hot metrics.
    pub const ALL: [State; 4] = [
        State::Running,
        State::Retrying,
        State::Failed,
        State::Draining,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Retrying => "retrying",
            State::Failed => "failed",
            State::Draining => "draining",
        }
    }
}

/// A pipeline's state, with why and since when; in a pipeline's view
/// (`pipe::wire::PipelineView`) under the keys `state`, `state_reason`,
/// `state_since` and `retry_attempts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub state: State,
    /// The error that put it in this state (none while running).
    #[serde(rename = "state_reason")]
    pub reason: Option<String>,
    /// When it entered this state, RFC 3339.
    #[serde(rename = "state_since")]
    pub since: String,
    /// Failed steps in a row (retrying).
    #[serde(rename = "retry_attempts")]
    pub attempts: u32,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            state: State::Running,
            reason: None,
            attempts: 0,
            since: now_rfc3339(),
        }
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Problems a pipeline keeps for `pipe pipelines get`.
pub const RECENT_ERRORS: usize = 20;

/// One problem a pipeline met: a failed step or commit (retried), or rows
/// its SQL failed on (in the quarantine table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecentError {
    /// When, RFC 3339.
    pub at: String,
    pub error: String,
}

impl PipelineStats {
    /// Keeps `error` among the recent problems.
    pub fn record_error(&self, error: impl std::fmt::Display) {
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut recent = self.recent_errors.lock().expect("never poisoned");
        if recent.len() == RECENT_ERRORS {
            recent.pop_front();
        }
        recent.push_back(RecentError {
            at,
            error: error.to_string(),
        });
    }

    /// What the pipeline is doing.
    pub fn health(&self) -> Health {
        self.health.lock().expect("never poisoned").clone()
    }

    /// A step went through.
    pub(super) fn set_running(&self) {
        let mut health = self.health.lock().expect("never poisoned");
        match health.state {
            State::Running => {}
            // Still stopping; the failure it retried is over.
            State::Draining => {
                health.reason = None;
                health.attempts = 0;
            }
            _ => *health = Health::default(),
        }
    }

    /// A step failed with `reason`; returns how many failed in a row.
    pub(super) fn set_retrying(&self, reason: &str) -> u32 {
        let mut health = self.health.lock().expect("never poisoned");
        let attempts = match health.state {
            State::Retrying | State::Draining if health.reason.is_some() => health.attempts + 1,
            _ => 1,
        };
        let since = match health.state {
            State::Retrying | State::Draining => health.since.clone(),
            _ => now_rfc3339(),
        };
        *health = Health {
            // A stop's last commits that fail still show as a stop.
            state: match health.state {
                State::Draining => State::Draining,
                _ => State::Retrying,
            },
            reason: Some(reason.to_string()),
            attempts,
            since,
        };
        attempts
    }

    /// The task was asked to stop: it commits what it has and ends.
    pub fn set_draining(&self) {
        *self.health.lock().expect("never poisoned") = Health {
            state: State::Draining,
            reason: None,
            attempts: 0,
            since: now_rfc3339(),
        };
    }

    /// The task ended with `reason`.
    pub fn set_failed(&self, reason: &str) {
        *self.health.lock().expect("never poisoned") = Health {
            state: State::Failed,
            reason: Some(reason.to_string()),
            attempts: 0,
            since: now_rfc3339(),
        };
        self.record_error(format!("the pipeline stopped: {reason}"));
    }

    /// The recent problems, oldest first.
    pub fn recent_errors(&self) -> Vec<RecentError> {
        self.recent_errors
            .lock()
            .expect("never poisoned")
            .iter()
            .cloned()
            .collect()
    }

    /// Stats of a pipeline that has committed through `committed` and
    /// reads from offset `started_at`.
    pub fn new(committed: Option<u64>, started_at: u64) -> Self {
        let stats = PipelineStats::default();
        stats.set_committed(committed);
        stats.started_at.store(started_at, Ordering::Relaxed);
        stats
    }

    pub(super) fn set_committed(&self, committed: Option<u64>) {
        self.committed_next
            .store(committed.map_or(0, |c| c + 1), Ordering::Relaxed);
    }

    /// The last committed buffer offset.
    pub fn committed_through(&self) -> Option<u64> {
        self.committed_next.load(Ordering::Relaxed).checked_sub(1)
    }
}

/// How far a pipeline's table is behind its stream (see
/// [`PipelineStats::lag`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lag {
    /// Durable records (accepted requests) not committed yet.
    pub records: u64,
    /// Age in seconds of the oldest of them (0 when none): how much older
    /// than a fresh read the table is for other engines.
    pub oldest_age_secs: f64,
    /// Age in seconds of the newest request committed by this server, if
    /// any.
    pub newest_committed_age_secs: Option<f64>,
}

impl PipelineStats {
    /// The pipeline's lag in `log`, its stream's: the oldest uncommitted
    /// record's accept time is read from the buffer.
    pub fn lag(&self, log: &pipe_ingest::log::StreamLog) -> Lag {
        let now = pipe_schemas::now_micros();
        let age = |micros: i64| (now - micros).max(0) as f64 / 1e6;
        let newest = self.newest_committed_micros.load(Ordering::Relaxed);
        let newest_committed_age_secs = (newest > 0).then(|| age(newest));
        let first_uncommitted = self.committed_through().map_or(0, |c| c + 1);
        let from = first_uncommitted
            .max(self.started_at.load(Ordering::Relaxed))
            .max(log.first_offset());
        let mut reader = log.reader(from);
        let end = reader.durable_end();
        if end <= from {
            return Lag {
                records: 0,
                oldest_age_secs: 0.0,
                newest_committed_age_secs,
            };
        }
        let oldest_age_secs = reader
            .read(1, usize::MAX)
            .ok()
            .and_then(|records| records.into_iter().next())
            .and_then(|r| pipe_ingest::payload::decode_meta(&r.payload).ok())
            .map_or(0.0, |meta| age(meta.at_micros));
        Lag {
            records: log.records_in(from, end),
            oldest_age_secs,
            newest_committed_age_secs,
        }
    }
}
