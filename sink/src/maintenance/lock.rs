//! One writer at a time per table, inside this process.
//!
//! The sink's commits and maintenance commits (expiry, merged manifests,
//! compaction) to the same table take its [`TableLock`] for the commit
//! step only, so they never race each other into a conflict; work that
//! takes long (rewriting data files) runs without it. Each maintenance
//! commit bumps the lock's generation: a sink that sees a generation it
//! did not make reloads the table before planning its commit, instead of
//! planning against a stale copy and losing a round to the fence.
//! Commits of other processes are still caught by the fence and the
//! catalog's compare-and-swap, and so are this process's when the sink
//! stops waiting for a maintenance step that holds the lock longer than
//! [`crate::table::LOCK_WAIT`] (slow storage): the lock saves lost
//! rounds, correctness does not depend on it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use iceberg::table::Table;

/// The lock of one table (see the module doc).
#[derive(Debug, Default)]
pub struct TableLock {
    mutex: tokio::sync::Mutex<()>,
    generation: AtomicU64,
}

impl TableLock {
    /// The lock of `table` (by its uuid, which no other table shares).
    pub fn of(table: &Table) -> Arc<TableLock> {
        static LOCKS: LazyLock<Mutex<HashMap<String, Arc<TableLock>>>> =
            LazyLock::new(Default::default);
        let key = table.metadata().uuid().to_string();
        let mut locks = LOCKS.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(key).or_default().clone()
    }

    /// Waits for the table's commit step.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.mutex.lock().await
    }

    /// How many maintenance commits were made (in this process).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Records a maintenance commit (call while holding the lock).
    pub fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}
