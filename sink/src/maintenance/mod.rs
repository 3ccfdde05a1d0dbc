//! Table maintenance: what keeps a table that is committed every few
//! seconds small and fast for months.
//!
//! - [`metadata_files`]: old `metadata.json` files are deleted after each
//!   commit, keeping the newest few (Iceberg's
//!   `write.metadata.delete-after-commit.enabled` and
//!   `write.metadata.previous-versions-max`).
//! - [`expire`]: snapshots are expired by age *and* count, and the
//!   manifest lists, manifests and data files only they referenced are
//!   deleted.
//! - [`manifests`]: once a table has many small manifests, they are merged
//!   in a `replace` snapshot, committed by [`snapshot::Committer`] (iceberg-rust
//!   cannot commit such snapshots itself).
//! - [`compact`]: small data files are rewritten into files near the
//!   target size in a `replace` snapshot that keeps other writers' appends,
//!   in the table's sort order if it has one ([`sort`]).
//! - [`orphans`]: files no metadata references, older than a guard age,
//!   are deleted (or listed, on a dry run).
//! - [`lock`]: the sink's and maintenance's commits to one table take turns.
//! - [`run`]: one run of the steps (by the sink's triggers or on demand),
//!   and the record of the last runs of each table.
//!
//! The sink runs both after its commits ([`crate::TableSink`]).

pub mod compact;
pub mod expire;
pub mod lock;
pub mod manifests;
pub mod metadata_files;
pub mod orphans;
pub mod owned;
mod rest;
pub mod run;
pub mod snapshot;
pub mod sort;
pub mod swap;

pub use expire::{Expired, SnapshotRetention};
pub use manifests::{ManifestPolicy, Merged};
pub use snapshot::Committer;
