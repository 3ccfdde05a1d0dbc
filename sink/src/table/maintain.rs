//! The sink's side of table maintenance (see [`crate::maintenance`]):
//! expiry after its commits, and the background runs it starts every
//! [`MAINTAIN_EVERY`] commits.

use super::{TableSink, MAINTAIN_EVERY, SWEEP_EVERY};
use crate::maintenance::run::{RunOptions, RunRecord};
use crate::{Error, Result};

/// A maintenance task, aborted when dropped.
pub(super) struct Background(tokio::task::JoinHandle<RunRecord>);

impl Drop for Background {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl TableSink {
    /// Expires snapshots past the retention (once enough are due, see
    /// [`crate::maintenance::expire::expire`]), and deletes the files only
    /// they referenced. A failure is logged: the
    /// data commit already succeeded, and the next commit tries again.
    pub(super) async fn expire_snapshots(&mut self) {
        let Some(retention) = self.options.retention else {
            return;
        };
        match crate::maintenance::expire::expire(
            &self.catalog,
            &self.table,
            &retention,
            false,
            self.options.owns_metadata_files,
        )
        .await
        {
            Ok(Some((table, _))) => self.table = table,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(table = %self.ident, error = %e, "could not expire old snapshots; trying again after a later commit")
            }
        }
    }

    /// Waits for the maintenance running in the background, if any, and
    /// returns its record.
    pub async fn wait_for_maintenance(&mut self) -> Result<Option<RunRecord>> {
        let Some(mut running) = self.maintenance.take() else {
            return Ok(None);
        };
        match (&mut running.0).await {
            Ok(done) => Ok(Some(done)),
            Err(e) => Err(Error::Corrupt(format!(
                "table maintenance of `{}` ended: {e}",
                self.ident
            ))),
        }
    }

    /// Every [`MAINTAIN_EVERY`] commits, starts maintenance of the table
    /// in the background if none is running: a compaction (see
    /// [`crate::maintenance::compact`]; unless turned off), then a merge
    /// of its manifests if enough gathered (see
    /// [`crate::maintenance::manifests`]), as Iceberg's merge-append would
    /// after its commits. Neither holds the table's lock but to commit
    /// when racing the sink has failed.
    pub(super) fn maintain_in_background(&mut self) {
        if let Some(running) = &self.maintenance {
            if !running.0.is_finished() {
                return;
            }
            let mut done = self.maintenance.take().expect("checked above");
            match futures::FutureExt::now_or_never(&mut done.0) {
                Some(Ok(record)) if record.outcome != "ok" => {
                    tracing::warn!(table = %self.ident, outcome = %record.outcome, "table maintenance failed; it is tried again later")
                }
                Some(Err(e)) if e.is_panic() => {
                    tracing::error!(table = %self.ident, error = %e, "table maintenance panicked; it is tried again later")
                }
                _ => {}
            }
        }
        let Some(committer) = self.options.committer.clone() else {
            return;
        };
        self.commits_since_maintenance += 1;
        if self.commits_since_maintenance < MAINTAIN_EVERY {
            return;
        }
        self.commits_since_maintenance = 0;
        let catalog = self.catalog.clone();
        let ident = self.ident.clone();
        let layout = self.options.layout();
        let sweep = self.last_sweep.elapsed() >= SWEEP_EVERY;
        if sweep {
            self.last_sweep = std::time::Instant::now();
        }
        let next_sweep = chrono::Utc::now() + SWEEP_EVERY.saturating_sub(self.last_sweep.elapsed());
        // Once every `full_compaction_every`, every small file (as the
        // hosted service's hourly compaction): the tiered trigger alone
        // leaves up to ten per partition between its runs.
        let full = self.last_full.elapsed() >= self.options.full_compaction_every;
        if full {
            self.last_full = std::time::Instant::now();
        }
        let mut options = RunOptions {
            compact: self.options.compact,
            full,
            merge: true,
            expire: None,
            sweep: sweep.then_some(crate::maintenance::orphans::DEFAULT_GUARD),
            ledgered: Default::default(),
            dry_run: false,
            owns_metadata_files: self.options.owns_metadata_files,
            trigger: crate::maintenance::run::AFTER_COMMITS,
            next: format!(
                "after {MAINTAIN_EVERY} more commits; orphan sweep at {}",
                next_sweep.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        };
        let ledger_dir = self.options.ledger_dir.clone();
        let task = tokio::spawn(async move {
            if options.sweep.is_some() {
                // Files sinks wrote and have not resolved are never swept;
                // if the ledgers cannot be read, nothing is. (A sink without
                // a ledger, a batch job, resolves its files before it
                // returns: none are pending between commits.)
                match ledger_dir.map(|d| crate::ledger::listed_in(&d)).transpose() {
                    Ok(listed) => options.ledgered = listed.unwrap_or_default(),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read the write ledgers; no orphan sweep this time");
                        options.sweep = None;
                    }
                }
            }
            crate::maintenance::run::run(&committer, &catalog, &ident, &layout, &options).await
        });
        self.maintenance = Some(Background(task));
    }
}
