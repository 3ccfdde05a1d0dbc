//! Snapshots that iceberg-rust's transactions cannot make (a rewrite of
//! manifests, a replace of data files), and their commit.
//!
//! iceberg-rust 0.10 commits only what its own actions produce (its
//! `TableCommit` cannot be built outside the crate). A maintenance
//! snapshot is therefore built here with the public writers (manifests,
//! manifest list) and committed by [`Committer`] the way the SQL catalog
//! commits: load the table as the catalog has it, check the requirements
//! against it (`main` is still the snapshot the work was planned on),
//! apply the updates, write the new `metadata.json`, and swap the
//! catalog's pointer with a compare-and-swap on the old location. A
//! concurrent commit makes the swap (or the check) fail with a conflict
//! (`CatalogCommitConflicts`, retryable): the caller plans again on the
//! new state, so nothing another writer committed is lost. Through a REST
//! catalog the same requirements and updates go to the server's commit
//! endpoint instead (`super::rest`), which applies them atomically.
//!
//! A crash before the swap leaves files nothing references (the orphan
//! sweep's); after it, the commit stands. A swap whose answer is lost
//! (an error, no answer in time) is settled from the catalog: done if
//! the row points at the new metadata, or at a later one whose log lists
//! it or which holds the new snapshot; anything else is unknown (a
//! statement cut off may still land), and every file stays. Only a swap
//! that matched no row is "not done", and lets the caller delete what it
//! wrote.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use iceberg::spec::{
    FormatVersion, ManifestFile, ManifestListWriter, ManifestWriter, ManifestWriterBuilder,
    Operation, Snapshot, SnapshotReference, SnapshotRetention, Summary, MAIN_BRANCH,
};
use iceberg::table::Table;
use iceberg::{Catalog, MetadataLocation, TableIdent, TableRequirement, TableUpdate};
use sqlx::any::{install_default_drivers, AnyPoolOptions};
use sqlx::AnyPool;

pub use super::swap::{Failed, Swap};
use crate::catalog::{CatalogKind, CatalogSettings, S3Options};
use crate::{Error, Result};
use tracing::warn;

/// Commits maintenance snapshots to the tables of one catalog, and
/// reaches the warehouse's storage to list it (the orphan sweep).
#[derive(Debug, Clone)]
pub struct Committer {
    inner: Arc<Inner>,
    s3: S3Options,
}

#[derive(Debug)]
enum Inner {
    /// The SQL catalog's table of tables, reached with a pool of our own.
    Sql {
        pool: AnyPool,
        catalog: String,
        dollar: bool,
    },
    /// An Iceberg REST catalog, which applies commits itself.
    Rest(Box<super::rest::RestCommitter>),
}

impl Committer {
    /// A committer for the catalog `settings` describe.
    pub async fn open(settings: &CatalogSettings) -> Result<Committer> {
        let inner = match &settings.kind {
            CatalogKind::Sql { uri } => {
                install_default_drivers();
                let pool = AnyPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(SWAP_TIMEOUT)
                    .connect(uri)
                    .await
                    .map_err(|e| {
                        Error::Config(format!(
                            "opening the SQL catalog at `{uri}` for maintenance: {e}"
                        ))
                    })?;
                Inner::Sql {
                    pool,
                    catalog: settings.name.clone(),
                    dollar: uri.starts_with("postgres"),
                }
            }
            CatalogKind::Rest(rest) => {
                Inner::Rest(Box::new(super::rest::RestCommitter::new(rest.clone())))
            }
        };
        Ok(Committer {
            inner: Arc::new(inner),
            s3: settings.warehouse.s3.clone(),
        })
    }

    /// An operator rooted at `location` (a table's), with the warehouse's
    /// S3 settings.
    pub fn store_for(&self, location: &str) -> Result<opendal::Operator> {
        crate::storage::operator(location.trim_end_matches('/'), &self.s3)
    }

    /// Applies `updates` to `ident` as the catalog now has it, if
    /// `requirements` hold there, and returns the table after. A failed
    /// requirement or a lost swap is a conflict (see the module doc).
    /// An error says whether the swap happened: if it did, the files the
    /// updates name are the table's and must stay.
    pub async fn commit(
        &self,
        catalog: &Arc<dyn Catalog>,
        ident: &TableIdent,
        requirements: &[TableRequirement],
        updates: Vec<TableUpdate>,
    ) -> std::result::Result<Table, Failed> {
        if let Inner::Rest(rest) = self.inner.as_ref() {
            crate::crash::point(crate::crash::MAINTENANCE_BEFORE_SWAP);
            rest.commit(catalog, ident, requirements, updates).await?;
            crate::crash::point(crate::crash::MAINTENANCE_AFTER_SWAP);
            // The server wrote the metadata file, and deletes old ones.
            return catalog.load_table(ident).await.map_err(|e| Failed {
                error: Error::Catalog {
                    action: format!(
                        "loading `{ident}` after a maintenance commit that went through"
                    ),
                    source: Box::new(e),
                },
                swap: Swap::Done,
            });
        }
        let before = self.swap(catalog, ident, requirements, updates).await?;
        crate::crash::point(crate::crash::MAINTENANCE_AFTER_SWAP);
        let after = catalog.load_table(ident).await.map_err(|e| Failed {
            error: Error::Catalog {
                action: format!("loading `{ident}` after a maintenance commit that went through"),
                source: Box::new(e),
            },
            swap: Swap::Done,
        })?;
        // This process wrote the new metadata file: it deletes what the
        // commit dropped from the log, as the sink does after its own.
        super::metadata_files::delete_dropped(&before, &after).await;
        Ok(after)
    }

    /// Returns the table as it was just before the swap.
    async fn swap(
        &self,
        catalog: &Arc<dyn Catalog>,
        ident: &TableIdent,
        requirements: &[TableRequirement],
        updates: Vec<TableUpdate>,
    ) -> std::result::Result<Table, Failed> {
        let not_done = |error| Failed {
            error,
            swap: Swap::NotDone,
        };
        let (pool, name, dollar) = match self.inner.as_ref() {
            Inner::Sql {
                pool,
                catalog,
                dollar,
            } => (pool, catalog, *dollar),
            Inner::Rest(_) => unreachable!("REST commits are sent by `commit`"),
        };
        let added_snapshot = updates.iter().find_map(|u| match u {
            TableUpdate::AddSnapshot { snapshot } => Some(snapshot.snapshot_id()),
            _ => None,
        });
        let (current, next) = self
            .write_next(catalog, ident, requirements, updates)
            .await
            .map_err(not_done)?;
        crate::crash::point(crate::crash::MAINTENANCE_BEFORE_SWAP);
        let location = current
            .metadata_location()
            .expect("write_next checked it")
            .to_string();
        let sql =
            "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ? \
                   WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? \
                   AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL) AND metadata_location = ?";
        let sql = match dollar {
            true => numbered(sql),
            false => sql.to_string(),
        };
        let namespace = ident.namespace().join(".");
        let update = sqlx::query(&sql)
            .bind(&next)
            .bind(&location)
            .bind(name)
            .bind(&namespace)
            .bind(ident.name())
            .bind(&location)
            .execute(pool);
        let answer = match tokio::time::timeout(SWAP_TIMEOUT, update).await {
            Ok(Ok(_)) if crate::crash::fault(crate::crash::LOSE_MAINTENANCE_SWAP_ANSWER) => {
                // As an answer that takes its time before it is lost:
                // others may commit on top meanwhile.
                tokio::time::sleep(crate::crash::fault_delay()).await;
                Err("PIPE_FAULT: the swap went through but its answer was lost".to_string())
            }
            Ok(Ok(done)) => Ok(done.rows_affected()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} s", SWAP_TIMEOUT.as_secs())),
        };
        let swapped = match answer {
            Ok(rows) => rows > 0,
            // The statement may have gone through, or may still go through
            // (a statement cut off is not a statement undone): only proof
            // that it landed settles it; without that, every file stays.
            Err(why) => {
                if self
                    .landed(pool, name, dollar, ident, &current, &next, added_snapshot)
                    .await
                {
                    warn!(table = %ident, error = %why, "the answer to a maintenance swap was lost; the catalog shows it went through");
                    true
                } else {
                    return Err(Failed {
                        error: Error::Catalog {
                            action: format!("swapping the metadata of `{ident}`"),
                            source: Box::new(iceberg::Error::new(
                                iceberg::ErrorKind::Unexpected,
                                format!("{why}; whether the swap went through is unknown, so every file it would reference is kept (the orphan sweep takes them if it did not)"),
                            )),
                        },
                        swap: Swap::Unknown,
                    });
                }
            }
        };
        if !swapped {
            // Nobody will reference the file written above.
            let _ = current.file_io().delete(&next).await;
            return Err(not_done(conflict(
                ident,
                "the table changed while the metadata was written",
            )));
        }
        Ok(current)
    }

    /// Whether a swap to `next` whose answer was lost provably landed: the
    /// catalog's row points at `next`, or at a later metadata file whose
    /// log lists `next` or which holds `added_snapshot` (writers may have
    /// committed on top of it since).
    #[allow(clippy::too_many_arguments)]
    async fn landed(
        &self,
        pool: &AnyPool,
        name: &str,
        dollar: bool,
        ident: &TableIdent,
        current: &Table,
        next: &str,
        added_snapshot: Option<i64>,
    ) -> bool {
        let Some(now) = self.pointer(pool, name, dollar, ident).await else {
            return false;
        };
        if now == next {
            return true;
        }
        let Ok(metadata) = iceberg::spec::TableMetadata::read_from(current.file_io(), &now).await
        else {
            return false;
        };
        metadata
            .metadata_log()
            .iter()
            .any(|l| l.metadata_file == next)
            || added_snapshot.is_some_and(|id| metadata.snapshot_by_id(id).is_some())
    }

    /// Where the catalog's row of `ident` points now, read back after a
    /// swap whose answer was lost (a few tries); `None` if it cannot be
    /// read.
    async fn pointer(
        &self,
        pool: &AnyPool,
        name: &str,
        dollar: bool,
        ident: &TableIdent,
    ) -> Option<String> {
        for attempt in 0..5u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
            if let Some(location) = read_pointer(pool, name, dollar, ident, SWAP_TIMEOUT).await {
                return Some(location);
            }
        }
        None
    }

    /// The metadata file the catalog's row of `ident` names now, read in
    /// one cheap query: readers that kept a table loaded from that file
    /// know it is still current without reading the file again. `None`
    /// when it cannot be told cheaply (a REST catalog, which answers only
    /// with the whole metadata) or the row cannot be read within
    /// `PROBE_TIMEOUT`; the caller then loads the table as usual.
    pub async fn current_location(&self, ident: &TableIdent) -> Option<String> {
        match &*self.inner {
            Inner::Sql {
                pool,
                catalog,
                dollar,
            } => read_pointer(pool, catalog, *dollar, ident, PROBE_TIMEOUT).await,
            Inner::Rest(_) => None,
        }
    }

    /// Checks `requirements` on `ident` as the catalog has it now, applies
    /// `updates`, and writes the new metadata file; returns the table it
    /// was built on and the new file's location.
    async fn write_next(
        &self,
        catalog: &Arc<dyn Catalog>,
        ident: &TableIdent,
        requirements: &[TableRequirement],
        updates: Vec<TableUpdate>,
    ) -> Result<(Table, String)> {
        let current = catalog
            .load_table(ident)
            .await
            .map_err(|e| catalog_error(ident, "loading", e))?;
        for requirement in requirements {
            requirement
                .check(Some(current.metadata()))
                .map_err(|e| conflict(ident, &e.to_string()))?;
        }
        let location = current
            .metadata_location_result()
            .map_err(|e| catalog_error(ident, "locating the metadata of", e))?
            .to_string();
        let mut builder = current
            .metadata()
            .clone()
            .into_builder(Some(location.clone()));
        for update in updates {
            builder = update
                .apply(builder)
                .map_err(|e| catalog_error(ident, "applying a maintenance update to", e))?;
        }
        let metadata = builder
            .build()
            .map_err(|e| catalog_error(ident, "building the metadata of", e))?
            .metadata;
        let next = MetadataLocation::from_str(&location)
            .map_err(|e| catalog_error(ident, "reading the metadata location of", e))?
            .with_next_version()
            .with_new_metadata(&metadata);
        metadata
            .write_to(current.file_io(), &next)
            .await
            .map_err(|e| catalog_error(ident, "writing the metadata of", e))?;
        Ok((current, next.to_string()))
    }
}

/// How long the swap (and each read back of the row) may take.
const SWAP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`Committer::current_location`] waits for the catalog's row
/// before the caller falls back to loading the table.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One read of the metadata file the catalog's row of `ident` names.
async fn read_pointer(
    pool: &AnyPool,
    catalog: &str,
    dollar: bool,
    ident: &TableIdent,
    timeout: Duration,
) -> Option<String> {
    let sql = "SELECT metadata_location FROM iceberg_tables \
               WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?";
    let sql = match dollar {
        true => numbered(sql),
        false => sql.to_string(),
    };
    let read = sqlx::query_scalar::<_, String>(&sql)
        .bind(catalog)
        .bind(ident.namespace().join("."))
        .bind(ident.name())
        .fetch_one(pool);
    tokio::time::timeout(timeout, read).await.ok()?.ok()
}

fn catalog_error(ident: &TableIdent, action: &str, e: iceberg::Error) -> Error {
    Error::Catalog {
        action: format!("{action} `{ident}`"),
        source: Box::new(e),
    }
}

pub(crate) fn conflict(ident: &TableIdent, why: &str) -> Error {
    Error::Catalog {
        action: format!("committing to `{ident}`"),
        source: Box::new(
            iceberg::Error::new(iceberg::ErrorKind::CatalogCommitConflicts, why.to_string())
                .with_retryable(true),
        ),
    }
}

/// Whether `e` is a conflict: plan again on the table as it is now.
pub fn is_conflict(e: &Error) -> bool {
    matches!(e, Error::Catalog { source, .. } if source.kind() == iceberg::ErrorKind::CatalogCommitConflicts)
}

/// `?` placeholders as PostgreSQL's `$1`, `$2`, ….
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// A new snapshot of `main`: its id, and the files it writes under the
/// table's metadata folder. Its manifests are written on `base` (its
/// schema and specs); its manifest list and commit on the table as it is
/// when it is finished, which may be newer than `base` (see
/// [`rebase`]).
pub struct NewSnapshot {
    pub base: Table,
    pub snapshot_id: i64,
    commit_uuid: uuid::Uuid,
    manifests: usize,
}

impl NewSnapshot {
    /// Starts a snapshot on `base` (format version 2 only: version 1 has
    /// no sequence numbers, version 3 row lineage is not written here).
    pub fn start(base: &Table) -> Result<NewSnapshot> {
        if base.metadata().format_version() != FormatVersion::V2 {
            return Err(Error::Config(format!(
                "`{}` is an Iceberg format version {} table; maintenance rewrites version 2 tables only",
                base.identifier(),
                base.metadata().format_version()
            )));
        }
        let metadata = base.metadata();
        let snapshot_id = loop {
            let (a, b) = uuid::Uuid::new_v4().as_u64_pair();
            let id = ((a ^ b) >> 1) as i64;
            if id != 0 && metadata.snapshot_by_id(id).is_none() {
                break id;
            }
        };
        Ok(NewSnapshot {
            base: base.clone(),
            snapshot_id,
            commit_uuid: uuid::Uuid::new_v4(),
            manifests: 0,
        })
    }

    /// A writer of a data manifest of this snapshot, in the table's
    /// current schema and the partition spec `spec_id`.
    pub fn manifest_writer(&mut self, spec_id: i32) -> Result<ManifestWriter> {
        let metadata = self.base.metadata();
        let spec = metadata.partition_spec_by_id(spec_id).ok_or_else(|| {
            Error::Corrupt(format!(
                "`{}` lists a manifest of partition spec {spec_id}, which its metadata lacks",
                self.base.identifier()
            ))
        })?;
        self.manifests += 1;
        let path = format!(
            "{}/metadata/{}-m{}.avro",
            metadata.location(),
            self.commit_uuid,
            self.manifests
        );
        let output = self
            .base
            .file_io()
            .new_output(path)
            .map_err(|e| self.err("creating a manifest of", e))?;
        Ok(ManifestWriterBuilder::new(
            output,
            Some(self.snapshot_id),
            metadata.current_schema().clone(),
            spec.as_ref().clone(),
        )
        .build_v2_data())
    }

    /// Writes the manifest list of `manifests` and returns the table
    /// updates and requirements that make the snapshot the child of
    /// `current`'s `main` (the table as it is now: `base` or newer), with
    /// `summary` (operation and properties).
    pub async fn finish(
        self,
        current: &Table,
        manifests: Vec<ManifestFile>,
        operation: Operation,
        properties: HashMap<String, String>,
    ) -> Result<(Vec<TableRequirement>, Vec<TableUpdate>)> {
        let metadata = current.metadata();
        if metadata.snapshot_by_id(self.snapshot_id).is_some() {
            return Err(conflict(
                current.identifier(),
                "another writer committed a snapshot with the same id",
            ));
        }
        let parent = metadata.current_snapshot_id();
        let sequence = metadata.next_sequence_number();
        let list_path = format!(
            "{}/metadata/snap-{}-0-{}.avro",
            metadata.location(),
            self.snapshot_id,
            self.commit_uuid
        );
        let writer = self
            .base
            .file_io()
            .new_output(&list_path)
            .map_err(|e| self.err("creating the manifest list of", e))?
            .writer()
            .await
            .map_err(|e| self.err("creating the manifest list of", e))?;
        let mut list = ManifestListWriter::v2(writer, self.snapshot_id, parent, sequence);
        let written = match list.add_manifests(manifests.into_iter()) {
            Ok(()) => list
                .close()
                .await
                .map_err(|e| self.err("writing the manifest list of", e)),
            Err(e) => Err(self.err("listing the manifests of", e)),
        };
        if let Err(e) = written {
            // Whatever part of it was written, nothing will reference it.
            let _ = self.base.file_io().delete(&list_path).await;
            return Err(e);
        }
        let snapshot = Snapshot::builder()
            .with_manifest_list(list_path)
            .with_snapshot_id(self.snapshot_id)
            .with_parent_snapshot_id(parent)
            .with_sequence_number(sequence)
            .with_summary(Summary {
                operation,
                additional_properties: properties,
            })
            .with_schema_id(metadata.current_schema_id())
            .with_timestamp_ms(chrono::Utc::now().timestamp_millis())
            .build();
        let updates = vec![
            TableUpdate::AddSnapshot { snapshot },
            TableUpdate::SetSnapshotRef {
                ref_name: MAIN_BRANCH.to_string(),
                reference: SnapshotReference::new(
                    self.snapshot_id,
                    SnapshotRetention::branch(None, None, None),
                ),
            },
        ];
        let requirements = vec![
            TableRequirement::UuidMatch {
                uuid: metadata.uuid(),
            },
            TableRequirement::RefSnapshotIdMatch {
                r#ref: MAIN_BRANCH.to_string(),
                snapshot_id: parent,
            },
        ];
        Ok((requirements, updates))
    }

    fn err(&self, what: &str, e: iceberg::Error) -> Error {
        Error::Catalog {
            action: format!(
                "{what} a maintenance snapshot of `{}`",
                self.base.identifier()
            ),
            source: Box::new(e),
        }
    }
}

/// A snapshot's manifests moved onto `main` as it is now.
pub struct Rebased {
    /// The manifest list of `current`'s `main`.
    pub current: Vec<ManifestFile>,
    /// The new snapshot's manifests: `current` without the replaced ones,
    /// and the ones written.
    pub manifests: Vec<ManifestFile>,
}

/// The manifests of a snapshot prepared on an older `main` that replaces
/// the manifests `replaced` (paths) by `written`, moved onto `current`'s
/// `main`: its list without the replaced ones, plus the written ones.
/// Manifests are never changed in place, so a replaced manifest still
/// listed still holds exactly what the snapshot read from it, and
/// whatever else was committed meanwhile (appends) is kept as listed.
/// `None` when a replaced manifest is no longer listed (another writer
/// rewrote it: merged it, compacted or deleted its files): the snapshot
/// must be prepared again. Reads `current`'s manifest list only, so it is
/// cheap enough to run holding the table's lock.
pub async fn rebase(
    current: &Table,
    replaced: &HashSet<String>,
    written: &[ManifestFile],
) -> Result<Option<Rebased>> {
    let Some(list) = main_manifests(current).await? else {
        return Ok(None);
    };
    let listed: HashSet<&str> = list.iter().map(|m| m.manifest_path.as_str()).collect();
    if replaced.iter().any(|p| !listed.contains(p.as_str())) {
        return Ok(None);
    }
    let manifests = list
        .iter()
        .filter(|m| !replaced.contains(&m.manifest_path))
        .cloned()
        .chain(written.iter().cloned())
        .collect();
    Ok(Some(Rebased {
        current: list,
        manifests,
    }))
}

/// Manifests of a new `main` snapshot, written (without the table's lock)
/// on the table as it was: they replace the manifests `replaced` of its
/// `main` by `written`. [`Prepared::land`] commits them on `main` as it is
/// by then.
pub struct Prepared {
    pub new: NewSnapshot,
    pub replaced: HashSet<String>,
    pub written: Vec<ManifestFile>,
}

/// What [`Prepared::land`] committed on.
pub struct Landed {
    pub table: Table,
    /// Manifests `main` listed before and after.
    pub manifests_before: usize,
    pub manifests_after: usize,
}

impl Prepared {
    pub fn new(new: NewSnapshot) -> Prepared {
        Prepared {
            new,
            replaced: HashSet::new(),
            written: Vec::new(),
        }
    }

    /// Deletes what was written: nothing references it.
    pub async fn delete(&self) {
        let paths: Vec<String> = self
            .written
            .iter()
            .map(|m| m.manifest_path.clone())
            .collect();
        delete_paths(&self.new.base, &paths).await;
    }

    /// Holding the table's lock: moves the manifests onto `current`'s
    /// `main` ([`rebase`]; a replaced manifest no longer listed is a
    /// conflict: prepare again), lets `refuse` decline on `main`'s list
    /// (`Ok(None)`: nothing committed), and commits a `replace` snapshot
    /// with the summary `properties` makes from that list. Whatever it wrote is deleted
    /// unless the swap may have happened.
    pub async fn land(
        self,
        committer: &Committer,
        catalog: &Arc<dyn Catalog>,
        current: &Table,
        refuse: impl FnOnce(&[ManifestFile]) -> bool,
        properties: impl FnOnce(&[ManifestFile]) -> HashMap<String, String>,
    ) -> std::result::Result<Option<Landed>, Failed> {
        let not_done = |error| Failed {
            error,
            swap: Swap::NotDone,
        };
        let rebased = match rebase(current, &self.replaced, &self.written).await {
            Ok(Some(rebased)) => rebased,
            Ok(None) => {
                self.delete().await;
                return Err(not_done(conflict(
                    current.identifier(),
                    "a manifest this snapshot replaces was replaced meanwhile",
                )));
            }
            Err(e) => {
                self.delete().await;
                return Err(not_done(e));
            }
        };
        if refuse(&rebased.current) {
            self.delete().await;
            return Ok(None);
        }
        let (manifests_before, manifests_after) = (rebased.current.len(), rebased.manifests.len());
        let properties = properties(&rebased.current);
        let base = self.new.base.clone();
        let mut written: Vec<String> = self
            .written
            .iter()
            .map(|m| m.manifest_path.clone())
            .collect();
        let finished = self
            .new
            .finish(current, rebased.manifests, Operation::Replace, properties)
            .await;
        let (requirements, updates) = match finished {
            Ok(done) => done,
            Err(e) => {
                delete_paths(&base, &written).await;
                return Err(not_done(e));
            }
        };
        written.extend(updates.iter().find_map(|u| match u {
            TableUpdate::AddSnapshot { snapshot } => Some(snapshot.manifest_list().to_string()),
            _ => None,
        }));
        match committer
            .commit(catalog, current.identifier(), &requirements, updates)
            .await
        {
            Ok(table) => Ok(Some(Landed {
                table,
                manifests_before,
                manifests_after,
            })),
            Err(failed) => {
                if failed.not_done() {
                    delete_paths(&base, &written).await;
                }
                Err(failed)
            }
        }
    }
}

/// Deletes `paths` under `table`; a file that cannot be deleted is left
/// for the orphan sweep.
pub async fn delete_paths(table: &Table, paths: &[String]) {
    for p in paths {
        let _ = table.file_io().delete(p).await;
    }
}

/// The manifests `table`'s current snapshot lists; `None` before its
/// first snapshot.
pub async fn main_manifests(table: &Table) -> Result<Option<Vec<ManifestFile>>> {
    let Some(snapshot) = table.metadata().current_snapshot() else {
        return Ok(None);
    };
    let list = table
        .manifest_list_reader(snapshot)
        .load()
        .await
        .map_err(|e| Error::Catalog {
            action: format!("reading the manifest list of `{}`", table.identifier()),
            source: Box::new(e),
        })?;
    Ok(Some(list.entries().to_vec()))
}

/// The summary totals of `base`'s current snapshot, which a snapshot that
/// only reorganises its files keeps.
pub fn totals_of(base: &Table) -> HashMap<String, String> {
    base.metadata()
        .current_snapshot()
        .map(|s| {
            s.summary()
                .additional_properties
                .iter()
                .filter(|(k, _)| k.starts_with("total-"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}
