//! Crash points, for the tests that prove exactly-once.
//!
//! `PIPE_CRASH_AT=<point>` in the environment makes the process abort, as
//! abruptly as a SIGKILL (no destructors, no flushing, no shutdown), the
//! first time it reaches that point; `PIPE_CRASH_AT=<point>@<n>` the n-th
//! time. A SIGKILL from outside lands at a random instant; these land
//! between two specific steps of the commit protocol, which a test could
//! otherwise hit only by luck. Unset, a crash point costs one comparison.
//!
//! ```text
//!  read records ─► [before-write] ─► write data files ─► close files ─► [after-files]
//!     ─► commit: catalog update ─► [after-commit] (done, but no answer yet)
//!        (file sinks: commit record written ─► [after-commit] ─► publish
//!         the first file ─► [mid-publish] ─► publish the rest)
//!     ─► commit known ─► [before-release] ─► release buffer space
//!
//!  maintenance: plan ─► [maintenance-before-write] ─► rewrite data files,
//!     write manifests, metadata.json ─► [maintenance-before-swap]
//!     ─► swap the catalog's pointer ─► [maintenance-after-swap]
//!     ─► delete what is no longer referenced
//!  expiry: commit ─► [expiry-before-cleanup] ─► delete the expired files
//!
//!  a pipeline's SQL changed in place: checks ─► store the definition
//!     ─► [change-after-store] ─► the old SQL commits and ends
//!     ─► [change-between-definitions] ─► the new SQL starts
//! ```
//!
//! `PIPE_FAULT=<fault>[@n]` injects a fault that is not a crash, the n-th
//! time its point is reached (`@<n>+`: every time from the n-th on):
//! `lose-commit-answer` (the catalog commit
//! goes through and its caller is told it failed, as when a response is
//! lost on the network), `lose-maintenance-swap-answer` (the same for a
//! maintenance commit's swap or REST commit, the answer held back
//! `PIPE_FAULT_DELAY_MS` first), `pipeline-step-panic` (a pipeline step panics
//! while processing records), `pipeline-task-panic` (a pipeline task
//! panics between steps, ending the task), `slow-fresh-read` (a query's
//! read of uncommitted events waits `PIPE_FAULT_DELAY_MS` before it reads)
//! and `slow-stop` (a pipeline asked to stop waits `PIPE_FAULT_DELAY_MS`
//! before its last commit).
//!
//! Hand-written rather than the `fail` crate: its actions (panic, return,
//! sleep) do not end the process, and a panic inside a tokio task would only
//! end that task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Records read from the buffer, nothing written yet.
pub const BEFORE_WRITE: &str = "before-write";
/// Data files written and closed, not committed.
pub const AFTER_FILES: &str = "after-files";
/// The catalog accepted the commit; the committer has not heard back. The
/// same as a commit whose response was lost.
pub const AFTER_COMMIT: &str = "after-commit";
/// A file sink's commit record is written and its first file published;
/// any other files are still staging files.
pub const MID_PUBLISH: &str = "mid-publish";
/// The commit is known; the buffer space is not released yet.
pub const BEFORE_RELEASE: &str = "before-release";
/// A range's failed rows are committed to the pipeline's quarantine table;
/// its rows are not yet committed to the sink table.
pub const AFTER_FAILED_ROWS_COMMIT: &str = "after-failed-rows-commit";

/// A pipeline's changed SQL is stored; its old SQL still runs.
pub const CHANGE_AFTER_STORE: &str = "change-after-store";
/// The old SQL committed what it read and ended; the new has not started.
pub const CHANGE_BETWEEN_DEFINITIONS: &str = "change-between-definitions";

/// Every crash point, in protocol order.
pub const ALL: [&str; 6] = [
    BEFORE_WRITE,
    AFTER_FILES,
    AFTER_COMMIT,
    MID_PUBLISH,
    BEFORE_RELEASE,
    AFTER_FAILED_ROWS_COMMIT,
];

/// A compaction planned which files to rewrite; it has written nothing.
pub const MAINTENANCE_BEFORE_WRITE: &str = "maintenance-before-write";
/// Table maintenance (see [`crate::maintenance`]) wrote its files and
/// the new `metadata.json`; the catalog's pointer is not swapped yet.
pub const MAINTENANCE_BEFORE_SWAP: &str = "maintenance-before-swap";
/// Table maintenance swapped the catalog's pointer; the files it made
/// unreferenced are not deleted yet.
pub const MAINTENANCE_AFTER_SWAP: &str = "maintenance-after-swap";

/// Snapshots were expired; the files only they referenced are not
/// deleted yet.
pub const EXPIRY_BEFORE_CLEANUP: &str = "expiry-before-cleanup";

/// A maintenance commit's swap goes through and its caller hears it
/// failed (`PIPE_FAULT`).
pub const LOSE_MAINTENANCE_SWAP_ANSWER: &str = "lose-maintenance-swap-answer";

/// A committed update whose caller hears it failed (`PIPE_FAULT`).
pub const LOSE_COMMIT_ANSWER: &str = "lose-commit-answer";
/// A pipeline step panics after reading records (`PIPE_FAULT`).
pub const PIPELINE_STEP_PANIC: &str = "pipeline-step-panic";
/// A pipeline task panics between two steps (`PIPE_FAULT`).
pub const PIPELINE_TASK_PANIC: &str = "pipeline-task-panic";
/// A fresh read waits `PIPE_FAULT_DELAY_MS` between planning and reading
/// the buffer, so a commit can land in between (`PIPE_FAULT`).
pub const SLOW_FRESH_READ: &str = "slow-fresh-read";

/// A pipeline asked to stop waits `PIPE_FAULT_DELAY_MS` before its last
/// commit, so its `draining` state can be seen (`PIPE_FAULT`).
pub const SLOW_STOP: &str = "slow-stop";

/// `PIPE_FAULT_DELAY_MS`: how long a fault that delays holds back.
pub fn fault_delay() -> std::time::Duration {
    let ms = std::env::var("PIPE_FAULT_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    std::time::Duration::from_millis(ms)
}

/// Aborts the process if `PIPE_CRASH_AT` names `point` and this is the hit
/// it names.
pub fn point(point: &str) {
    static AT: OnceLock<Option<(String, u64, bool)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    if hit(&AT, &HITS, "PIPE_CRASH_AT", point) {
        eprintln!("PIPE_CRASH_AT: crash point `{point}` reached; aborting");
        std::process::abort();
    }
}

/// Whether `PIPE_FAULT` names `fault` and this is the hit it names.
pub fn fault(fault: &str) -> bool {
    static AT: OnceLock<Option<(String, u64, bool)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    hit(&AT, &HITS, "PIPE_FAULT", fault)
}

/// `<name>`, `<name>@<n>` (the n-th hit) or `<name>@<n>+` (every hit from
/// the n-th on).
fn hit(
    at: &OnceLock<Option<(String, u64, bool)>>,
    hits: &AtomicU64,
    var: &str,
    name: &str,
) -> bool {
    let at = at.get_or_init(|| {
        let spec = std::env::var(var).ok()?;
        Some(match spec.split_once('@') {
            Some((p, n)) => {
                let (n, on) = match n.strip_suffix('+') {
                    Some(n) => (n, true),
                    None => (n, false),
                };
                (p.to_string(), n.parse().unwrap_or(1), on)
            }
            None => (spec, 1, false),
        })
    });
    match at {
        Some((wanted, nth, on)) if wanted == name => {
            let hit = hits.fetch_add(1, Ordering::Relaxed) + 1;
            hit == *nth || (*on && hit > *nth)
        }
        _ => false,
    }
}
