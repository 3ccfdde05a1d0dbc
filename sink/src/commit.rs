//! The exactly-once commit protocol between a stream's buffer and an Iceberg
//! table.
//!
//! A pipeline reads buffer records in offset order, writes their rows into
//! data files, and commits those files together with the offset range they
//! cover. Every acknowledged event ends up in the table once:
//!
//! ```text
//!   planned a..=b ──write files──► files written ──fenced append──► committed
//!        ▲                               │ crash: files are listed in   │
//!        │                               │ the ledger, deleted on open, │
//!        │                               │ never referenced             │
//!        └─ restart: walk the snapshot ancestry of `main` for this ─────┘
//!           pipeline's newest commit; resume at its last offset + 1
//! ```
//!
//! What is stored where:
//! - Each commit is one fast append whose snapshot summary holds
//!   `pipe.pipeline`, `pipe.source`, `pipe.commit-id`, `pipe.offset-first`,
//!   `pipe.offset-last`. The *source* is the identity of the stream log the
//!   offsets count records of (`StreamLog::id` in the ingest crate): offsets
//!   of one log mean nothing in another (another stream after a change of
//!   the pipeline's `FROM`, the same stream wiped and made again, another
//!   process that runs a pipeline of the same name). The commit id is
//!   derived from (pipeline, sink, source, first, last), so a replay of the
//!   same range has the same id.
//! - It also holds `pipe.run`, the [`Run`] of the log that appended the
//!   offsets, so that a copy of a log appending beside it is refused, not
//!   merged.
//! - The same commit also sets table properties
//!   `pipe.<pipeline>@<source>.commit-id`, `….offset-first`,
//!   `….offset-last` and `….run` (one transaction, one metadata swap: both
//!   or neither).
//!   Snapshots can be expired; properties stay.
//! - A pipeline's position is per source: [`last_committed`] only looks at
//!   commits of its own source. Commits written before sources were
//!   recorded (no `pipe.source`, properties `pipe.<pipeline>.…`) count as
//!   the pipeline's own until its first commit with a source lands; from
//!   then on they belong to that log only. So two processes running
//!   a pipeline of the same name into one table each commit their own
//!   events, and neither takes the other's ranges for its own.
//! - [`last_committed`] walks `main`'s ancestry (not just the current snapshot:
//!   other writers and other pipelines may have committed since) and also
//!   reads the properties, and takes the later of the two. After snapshot
//!   expiry the properties still know the pipeline's last range, so a
//!   restart neither replays committed offsets nor starts over. (A rollback
//!   of the table to an older snapshot is an operator's decision; the
//!   pipeline does not re-deliver the ranges rolled back.)
//!
//! The fence: iceberg-rust's `Transaction::commit` reloads the table and
//! re-applies an append on top of whatever was committed meanwhile ("silent
//! rebase"), so two writers that planned the same range would both succeed.
//! [`FencedCatalog`] wraps the catalog and refuses, with a non-retryable
//! conflict, the reload `Transaction::commit` does when `main` is no longer
//! the snapshot the commit was planned against. What it loaded carries the
//! append's requirement that `main` is that snapshot; the SQL catalog checks
//! it and swaps the metadata location atomically, so nothing lands between
//! the fence's check and the swap.
//!
//! Cost: a commit plans against the table its previous commit returned (no
//! load of its own; a stale copy is a conflict, then every try reloads), so
//! a commit reads the metadata twice (iceberg's reload and the SQL
//! catalog's) and writes it once. Snapshot expiry ([`expire_snapshots`])
//! keeps that metadata from growing with the table's history.
//!
//! After any failure whose outcome is unknown (timeout, lost response,
//! conflict) [`commit_range`] reloads the table and looks for its own commit
//! id before retrying; if the range was committed (by us or a twin), it reports
//! [`CommitOutcome::AlreadyCommitted`] and the caller deletes its files
//! (`TableSink::commit` does): they are never referenced. Files of an
//! attempt that a crash cut short before its commit are found through the
//! sink's write ledger ([`crate::ledger`]) and deleted on the next open.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use iceberg::spec::DataFile;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog, Namespace, NamespaceIdent, TableCommit, TableCreation, TableIdent};
use tracing::{info, warn};

use crate::{Error, Result};

/// Snapshot summary key: the pipeline that made the commit.
pub const PROP_PIPELINE: &str = "pipe.pipeline";
/// Snapshot summary key: the identity of the log the offsets come from.
pub const PROP_SOURCE: &str = "pipe.source";
/// Snapshot summary key: the run of the log that appended the offsets
/// (see [`Run`]).
pub const PROP_RUN: &str = "pipe.run";
/// Snapshot summary key: the deterministic commit id.
pub const PROP_COMMIT_ID: &str = "pipe.commit-id";
/// Snapshot summary key: first buffer offset the commit covers.
pub const PROP_OFFSET_FIRST: &str = "pipe.offset-first";
/// Snapshot summary key: last buffer offset the commit covers.
pub const PROP_OFFSET_LAST: &str = "pipe.offset-last";
/// Snapshot summary key: CRC-32 of the payload of the last record the
/// commit covers (see [`Committed::last_crc`]).
pub const PROP_LAST_CRC: &str = "pipe.last-crc";
/// Snapshot summary key: the definition (a digest of the pipeline's SQL)
/// that made the commit's rows.
pub const PROP_DEFINITION: &str = "pipe.definition";

/// A contiguous range of buffer offsets, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetRange {
    pub first: u64,
    pub last: u64,
}

/// Who commits: a pipeline, through one of its sinks, offsets of one log.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub pipeline: &'a str,
    pub sink: &'a str,
    /// The identity of the log the offsets come from; `None` for writers
    /// with no log (batch jobs), which only see commits without a source.
    pub source: Option<&'a str>,
    /// This run of the log, when it has one.
    pub run: Option<&'a Run>,
    /// Commits without a source no longer count (see [`last_committed`]).
    pub unsourced_ended: bool,
    /// Recorded as [`PROP_DEFINITION`] when set.
    pub definition: Option<&'a str>,
}

/// One run of a log: the log opened once, by one process. Its id is
/// random, made at each open; `from` is the first offset this run
/// appended (the log's next offset when it was opened).
///
/// A log's id is on disk, so a data directory copied and run beside its
/// original gives two processes one log id: both append offsets `from`
/// on, different events under the same numbers, and each would take the
/// other's commits for its own (one side's events silently dropped).
/// Commits record their run. A commit of another run of the same log that
/// holds offsets at or past our `from` cannot come from an earlier run of
/// ours (every offset an earlier run committed was written before this
/// run opened, so it is below `from`): the log has forked, and the commit
/// is refused with [`Error::Forked`] instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: String,
    pub from: u64,
}

impl Run {
    /// The error when `theirs` (a commit of this log) shows another
    /// process appending to it; `None` when it does not.
    pub fn forked_by(&self, theirs: &Committed, what: &str) -> Option<Error> {
        let other = theirs.run.as_deref()?;
        if other == self.id || theirs.range.last < self.from {
            return None;
        }
        Some(Error::Forked(format!(
            "{what} holds offsets {}..={} of this stream's log committed by another process (run {other}; this one is run {}, which appended offsets from {} on): two servers append to copies of one log, so the same offsets hold different events in each; a data directory was copied and both copies run. Nothing more is committed from this log here",
            theirs.range.first,
            theirs.range.last,
            self.id,
            self.from
        )))
    }
}

/// The deterministic id of a commit.
pub fn commit_id(origin: &Origin, range: OffsetRange) -> String {
    match origin.source {
        Some(source) => format!(
            "{}/{}/{source}/{}-{}",
            origin.pipeline, origin.sink, range.first, range.last
        ),
        None => format!(
            "{}/{}/{}-{}",
            origin.pipeline, origin.sink, range.first, range.last
        ),
    }
}

/// A pipeline's newest commit found in a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub commit_id: String,
    pub range: OffsetRange,
    /// The snapshot of the commit; `None` when only the table properties
    /// still record it (its snapshot was expired).
    pub snapshot_id: Option<i64>,
    /// The log its offsets come from; `None` for commits that recorded none.
    pub source: Option<String>,
    /// The run of that log that appended them; `None` for commits that
    /// recorded none.
    pub run: Option<String>,
    /// CRC-32 of the payload of the range's last record, as the log held
    /// it. A log that holds a different record at that offset is not the
    /// one committed from: a copy of it appended other events under the
    /// same offsets and committed them while this one was down (runs
    /// cannot tell: such a commit looks like one of an earlier run of
    /// this log). `None` for commits that recorded none.
    pub last_crc: Option<u32>,
}

/// Table property key of a pipeline's last commit from `source`:
/// `pipe.<pipeline>@<source>.<what>` (`pipe.<pipeline>.<what>` without a
/// source, as written before sources were recorded).
pub fn table_prop(pipeline: &str, source: Option<&str>, what: &str) -> String {
    match source {
        Some(source) => format!("pipe.{pipeline}@{source}.{what}"),
        None => format!("pipe.{pipeline}.{what}"),
    }
}

/// The newest commit made by `pipeline` from `source` (or with no source
/// recorded), if any: the later of what `main`'s snapshot ancestry and the
/// table properties record.
pub fn last_committed(
    table: &Table,
    pipeline: &str,
    source: Option<&str>,
    unsourced_ended: bool,
) -> Result<Option<Committed>> {
    // Commits without a source (written before sources were recorded) are
    // the pipeline's own only until a commit with a source lands: after
    // that they belong to the log that went on from them, never to
    // another one (another stream after a change of FROM, another
    // process). `unsourced_ended`: such a commit landed in another table
    // of the same pipeline (its failed-rows table follows its main one).
    let unsourced_count =
        source.is_none() || (!unsourced_ended && !has_sourced_commits(table, pipeline));
    let mut found = last_in_ancestry(table, pipeline, source, unsourced_count)?;
    let in_props = [
        match unsourced_count {
            true => last_in_properties(table, pipeline, None)?,
            false => None,
        },
        match source {
            Some(_) => last_in_properties(table, pipeline, source)?,
            None => None,
        },
    ];
    for p in in_props.into_iter().flatten() {
        if found.as_ref().is_none_or(|f| p.range.last > f.range.last) {
            found = Some(p);
        }
    }
    Ok(found)
}

/// Whether `pipeline` has made a commit that recorded its source (each
/// leaves `pipe.<pipeline>@<source>.*` table properties, which stay).
pub fn has_sourced_commits(table: &Table, pipeline: &str) -> bool {
    let prefix = format!("pipe.{pipeline}@");
    table
        .metadata()
        .properties()
        .keys()
        .any(|k| k.starts_with(&prefix))
}

fn last_in_properties(
    table: &Table,
    pipeline: &str,
    source: Option<&str>,
) -> Result<Option<Committed>> {
    let props = table.metadata().properties();
    let Some(commit_id) = props.get(&table_prop(pipeline, source, "commit-id")) else {
        return Ok(None);
    };
    let offset = |what: &str| -> Result<u64> {
        let key = table_prop(pipeline, source, what);
        props.get(&key).and_then(|v| v.parse().ok()).ok_or_else(|| {
            Error::Corrupt(format!(
                "table `{}` records a commit of pipeline `{pipeline}` but has no valid `{key}`",
                table.identifier()
            ))
        })
    };
    let last = offset("offset-last")?;
    Ok(Some(Committed {
        commit_id: commit_id.clone(),
        range: OffsetRange {
            first: offset("offset-first")?,
            last,
        },
        snapshot_id: None,
        source: source.map(str::to_string),
        run: props.get(&table_prop(pipeline, source, "run")).cloned(),
        // `<offset>:<crc>`: a version that does not know it (a downgrade)
        // moves offset-last and leaves this one stale.
        last_crc: props
            .get(&table_prop(pipeline, source, "last-crc"))
            .and_then(|v| v.split_once(':'))
            .filter(|(at, _)| at.parse() == Ok(last))
            .and_then(|(_, crc)| crc.parse().ok()),
    }))
}

/// The newest commit in `table` from log `source`, whoever made it: the
/// pipeline and its last offset. The newest of `main`'s ancestry if it
/// holds one (the order commits landed in); else, snapshots expired, the
/// highest position the table properties record
/// (`pipe.<pipeline>@<source>.offset-last`, which outlive expiry).
pub fn newest_from_source(table: &Table, source: &str) -> Option<(String, u64)> {
    let in_ancestry = ancestry(table).find_map(|(_, props)| {
        (props.get(PROP_SOURCE).map(String::as_str) == Some(source))
            .then(|| {
                Some((
                    props.get(PROP_PIPELINE)?.clone(),
                    props.get(PROP_OFFSET_LAST)?.parse::<u64>().ok()?,
                ))
            })
            .flatten()
    });
    if in_ancestry.is_some() {
        return in_ancestry;
    }
    let suffix = format!("@{source}.offset-last");
    table
        .metadata()
        .properties()
        .iter()
        .filter_map(|(k, v)| {
            let pipeline = k.strip_prefix("pipe.")?.strip_suffix(&suffix)?;
            Some((pipeline.to_string(), v.parse::<u64>().ok()?))
        })
        .max_by_key(|(_, last)| *last)
}

/// Whether `pipeline` has committed through `last` from any source: a
/// snapshot in `main`'s ancestry or a table property says so.
pub fn committed_from_any_source(table: &Table, pipeline: &str, last: u64) -> bool {
    let in_ancestry = ancestry(table).any(|(_, props)| {
        props.get(PROP_PIPELINE).map(String::as_str) == Some(pipeline)
            && props
                .get(PROP_OFFSET_LAST)
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|l| l >= last)
    });
    if in_ancestry {
        return true;
    }
    let metadata = table.metadata();
    let legacy = format!("pipe.{pipeline}.offset-last");
    let sourced = format!("pipe.{pipeline}@");
    metadata.properties().iter().any(|(k, v)| {
        (k == &legacy || (k.starts_with(&sourced) && k.ends_with(".offset-last")))
            && v.parse::<u64>().is_ok_and(|l| l >= last)
    })
}

/// Walks `main`'s ancestry from the current snapshot and returns the newest
/// commit made by `pipeline` from `source` (or with no source), if any.
fn last_in_ancestry(
    table: &Table,
    pipeline: &str,
    source: Option<&str>,
    unsourced_count: bool,
) -> Result<Option<Committed>> {
    for (id, props) in ancestry(table) {
        let theirs = props.get(PROP_SOURCE).map(String::as_str);
        if props.get(PROP_PIPELINE).map(String::as_str) == Some(pipeline)
            && ((theirs.is_none() && unsourced_count) || (theirs.is_some() && theirs == source))
        {
            let offset = |key: &str| -> Result<u64> {
                props
                    .get(key)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| Error::Corrupt(format!(
                        "snapshot {id} of `{}` names pipeline `{pipeline}` but has no valid `{key}`",
                        table.identifier()
                    )))
            };
            return Ok(Some(Committed {
                commit_id: props.get(PROP_COMMIT_ID).cloned().unwrap_or_default(),
                range: OffsetRange {
                    first: offset(PROP_OFFSET_FIRST)?,
                    last: offset(PROP_OFFSET_LAST)?,
                },
                snapshot_id: Some(id),
                source: theirs.map(str::to_string),
                run: props.get(PROP_RUN).cloned(),
                last_crc: props.get(PROP_LAST_CRC).and_then(|v| v.parse().ok()),
            }));
        }
    }
    Ok(None)
}

/// `main`'s snapshots from the current one back, each with its summary's
/// properties, until the ancestry was expired (nothing older is known).
fn ancestry(table: &Table) -> impl Iterator<Item = (i64, &HashMap<String, String>)> + '_ {
    let metadata = table.metadata();
    let mut next = metadata.current_snapshot_id();
    std::iter::from_fn(move || {
        let snapshot = metadata.snapshot_by_id(next?)?;
        next = snapshot.parent_snapshot_id();
        Some((
            snapshot.snapshot_id(),
            &snapshot.summary().additional_properties,
        ))
    })
}

/// What [`commit_range`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Our append is now `main`'s snapshot `snapshot_id` (or in its
    /// ancestry; `None` when that snapshot has been expired since).
    Committed { snapshot_id: Option<i64> },
    /// The range (or a later one) was already committed by this pipeline; the
    /// files written for it must not be referenced again.
    AlreadyCommitted,
}

/// Tunables of the commit retry loop.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 8,
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Commits `files` for `range` of `origin`'s log into `table`, exactly once,
/// and returns what happened with the table as it now is. `last_crc`: see
/// [`Committed::last_crc`].
///
/// `table` is the caller's latest copy (typically what its previous commit
/// returned): the first attempt plans against it, and the fence turns a
/// copy that is out of date into a conflict, after which every attempt
/// reloads. `files` may be empty: the snapshot then only records that the
/// range was processed (a WHERE clause kept none of its rows).
pub async fn commit_range(
    catalog: &Arc<dyn Catalog>,
    table: &Table,
    origin: &Origin<'_>,
    range: OffsetRange,
    last_crc: Option<u32>,
    files: &[DataFile],
    retry: &RetryPolicy,
) -> Result<(CommitOutcome, Table)> {
    let pipeline = origin.pipeline;
    let id = commit_id(origin, range);
    let ident = table.identifier();
    let mut backoff = retry.first_backoff;
    let mut attempt = 0;
    let mut cached = Some(table.clone());
    loop {
        attempt += 1;
        let table = match cached.take() {
            Some(t) => t,
            None => load(catalog, ident).await?,
        };
        // Resolve what is already in the table before (re)trying.
        let found = last_committed(&table, pipeline, origin.source, origin.unsourced_ended)?;
        if let (Some(run), Some(c)) = (origin.run, &found) {
            if let Some(forked) = run.forked_by(c, &format!("table `{ident}`")) {
                return Err(forked);
            }
        }
        match found {
            Some(c) if c.commit_id == id => {
                return Ok((
                    CommitOutcome::Committed {
                        snapshot_id: c.snapshot_id,
                    },
                    table,
                ))
            }
            Some(c) if c.range.last >= range.first => {
                if c.range.last >= range.last {
                    warn!(pipeline, commit_id = %id, found = %c.commit_id, "range already committed; dropping this attempt's files");
                    return Ok((CommitOutcome::AlreadyCommitted, table));
                }
                return Err(Error::Corrupt(format!(
                    "pipeline `{pipeline}` is committing offsets {}..={} but `{ident}` already holds {}..={} (commit `{}`): overlapping ranges",
                    range.first, range.last, c.range.first, c.range.last, c.commit_id
                )));
            }
            _ => {}
        }
        let expected = table.metadata().current_snapshot_id();
        let mut props = HashMap::from([
            (PROP_PIPELINE.to_string(), pipeline.to_string()),
            (PROP_COMMIT_ID.to_string(), id.clone()),
            (PROP_OFFSET_FIRST.to_string(), range.first.to_string()),
            (PROP_OFFSET_LAST.to_string(), range.last.to_string()),
        ]);
        if let Some(source) = origin.source {
            props.insert(PROP_SOURCE.to_string(), source.to_string());
        }
        if let Some(run) = origin.run {
            props.insert(PROP_RUN.to_string(), run.id.clone());
        }
        if let Some(crc) = last_crc {
            props.insert(PROP_LAST_CRC.to_string(), crc.to_string());
        }
        if let Some(definition) = origin.definition {
            props.insert(PROP_DEFINITION.to_string(), definition.to_string());
        }
        let source = origin.source;
        let tx = Transaction::new(&table);
        let append = tx
            .fast_append()
            .with_check_duplicate(false)
            .add_data_files(files.iter().cloned())
            .set_snapshot_properties(props);
        let mut record = tx.update_table_properties();
        if let Some(run) = origin.run {
            record = record.set(table_prop(pipeline, source, "run"), run.id.clone());
        }
        if let Some(crc) = last_crc {
            record = record.set(
                table_prop(pipeline, source, "last-crc"),
                format!("{}:{crc}", range.last),
            );
        }
        let record = record
            .set(table_prop(pipeline, source, "commit-id"), id.clone())
            .set(
                table_prop(pipeline, source, "offset-first"),
                range.first.to_string(),
            )
            .set(
                table_prop(pipeline, source, "offset-last"),
                range.last.to_string(),
            );
        let tx = append
            .apply(tx)
            .and_then(|tx| record.apply(tx))
            .map_err(|e| Error::Catalog {
                action: format!("preparing commit `{id}`"),
                source: Box::new(e),
            })?;
        let fenced = FencedCatalog {
            inner: catalog.clone(),
            expected,
        };
        match tx.commit(&fenced).await {
            // Iceberg refuses a snapshot stamped more than a minute before
            // the table's last one: this machine's clock is behind (stepped
            // back, or another writer's is ahead). Retrying soon cannot
            // help; the pipeline retries with its backoff until it can.
            Err(e) if e.message().contains("Invalid snapshot timestamp") => {
                return Err(Error::ClockBehind(format!(
                    "committing `{id}`: this machine's clock is behind the last commit of `{ident}` by more than the minute Iceberg allows ({}); commits go on once the clock has caught up: check its time source (NTP)",
                    e.message()
                )))
            }
            Ok(table) => {
                let snapshot_id = table.metadata().current_snapshot_id();
                info!(pipeline, commit_id = %id, files = files.len(), snapshot_id = ?snapshot_id, "committed");
                return Ok((CommitOutcome::Committed { snapshot_id }, table));
            }
            Err(e) if attempt < retry.attempts => {
                // Unknown outcome or a conflict: the next turn re-reads the
                // table and looks for our id before trying again.
                warn!(pipeline, commit_id = %id, attempt, error = %e, "commit failed; re-checking the table");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(retry.max_backoff);
            }
            Err(e) => {
                return Err(Error::Catalog {
                    action: format!("committing `{id}` after {attempt} attempts"),
                    source: Box::new(e),
                })
            }
        }
    }
}

async fn load(catalog: &Arc<dyn Catalog>, ident: &TableIdent) -> Result<Table> {
    catalog.load_table(ident).await.map_err(|e| Error::Catalog {
        action: format!("loading table `{ident}`"),
        source: Box::new(e),
    })
}

/// A catalog that refuses a table update unless `main` still points at the
/// snapshot the update was planned against. Everything else is delegated.
#[derive(Debug)]
pub struct FencedCatalog {
    pub inner: Arc<dyn Catalog>,
    /// `main`'s snapshot when the commit was planned (`None`: empty table).
    pub expected: Option<i64>,
}

#[async_trait]
impl Catalog for FencedCatalog {
    /// `Transaction::commit` reloads the table and re-applies its actions
    /// to what it loaded: this is where a moved `main` is refused. From
    /// here on the commit carries a requirement that `main` is this very
    /// snapshot, which the SQL catalog checks and swaps atomically.
    async fn load_table(&self, table: &TableIdent) -> iceberg::Result<Table> {
        let current = self.inner.load_table(table).await?;
        let now = current.metadata().current_snapshot_id();
        if now != self.expected {
            return Err(iceberg::Error::new(
                iceberg::ErrorKind::CatalogCommitConflicts,
                format!(
                    "fence: `{table}` moved from snapshot {:?} to {:?} since the commit was planned",
                    self.expected, now
                ),
            )
            .with_retryable(false));
        }
        Ok(current)
    }

    async fn update_table(&self, commit: TableCommit) -> iceberg::Result<Table> {
        let table = self.inner.update_table(commit).await?;
        crate::crash::point(crate::crash::AFTER_COMMIT);
        if crate::crash::fault(crate::crash::LOSE_COMMIT_ANSWER) {
            return Err(iceberg::Error::new(
                iceberg::ErrorKind::Unexpected,
                "PIPE_FAULT: the commit went through but its answer was lost",
            ));
        }
        Ok(table)
    }

    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> iceberg::Result<Vec<NamespaceIdent>> {
        self.inner.list_namespaces(parent).await
    }
    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<Namespace> {
        self.inner.create_namespace(namespace, properties).await
    }
    async fn get_namespace(&self, namespace: &NamespaceIdent) -> iceberg::Result<Namespace> {
        self.inner.get_namespace(namespace).await
    }
    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> iceberg::Result<bool> {
        self.inner.namespace_exists(namespace).await
    }
    async fn update_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<()> {
        self.inner.update_namespace(namespace, properties).await
    }
    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> iceberg::Result<()> {
        self.inner.drop_namespace(namespace).await
    }
    async fn list_tables(&self, namespace: &NamespaceIdent) -> iceberg::Result<Vec<TableIdent>> {
        self.inner.list_tables(namespace).await
    }
    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> iceberg::Result<Table> {
        self.inner.create_table(namespace, creation).await
    }
    async fn drop_table(&self, table: &TableIdent) -> iceberg::Result<()> {
        self.inner.drop_table(table).await
    }
    async fn purge_table(&self, table: &TableIdent) -> iceberg::Result<()> {
        self.inner.purge_table(table).await
    }
    async fn table_exists(&self, table: &TableIdent) -> iceberg::Result<bool> {
        self.inner.table_exists(table).await
    }
    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> iceberg::Result<()> {
        self.inner.rename_table(src, dest).await
    }
    async fn register_table(
        &self,
        table: &TableIdent,
        metadata_location: String,
    ) -> iceberg::Result<Table> {
        self.inner.register_table(table, metadata_location).await
    }
}
