//! Crash points, for the tests that prove exactly-once.
//!
//! `PIPE_CRASH_AT=<point>` in the environment makes the process abort, as
//! abruptly as a SIGKILL (no destructors, no flushing, no shutdown), the
//! first time it reaches that point. A SIGKILL from outside lands at a
//! random instant; these land between two specific steps of the commit
//! protocol, which a test could otherwise hit only by luck. Unset, a crash
//! point costs one comparison.
//!
//! Hand-written rather than the `fail` crate: its actions (panic, return,
//! sleep) do not end the process, and a panic inside a tokio task would only
//! end that task.

use std::sync::OnceLock;

/// The point between committing a range's failed rows to the pipeline's
/// quarantine table and committing its rows to the sink table.
pub const AFTER_FAILED_ROWS_COMMIT: &str = "after-failed-rows-commit";

/// Aborts the process if `PIPE_CRASH_AT` names `point`.
pub fn point(point: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    if AT
        .get_or_init(|| std::env::var("PIPE_CRASH_AT").ok())
        .as_deref()
        == Some(point)
    {
        eprintln!("PIPE_CRASH_AT: crash point `{point}` reached; aborting");
        std::process::abort();
    }
}
