//! `pipe tables maintain|maintenance`: table maintenance of a running
//! server from the command line, over the admin API
//! (`crate::server::tables_api`).

use clap::Subcommand;
use pipe_sink::maintenance::run::TableState;
use serde_json::json;

use crate::cli::manage::{call, parse, Target};
use crate::wire::{MaintenanceRuns, RunRecord};
use crate::{Error, ErrorKind, Result};

/// What `pipe tables` does.
#[derive(Debug, Subcommand)]
pub enum TablesAction {
    /// Run maintenance of a table now: compact every small file, merge
    /// manifests, expire snapshots, sweep orphan files (each can be left
    /// out). Prints what the run did and the table before and after.
    Maintain {
        /// `namespace.table`.
        #[arg(value_parser = table_arg)]
        table: String,
        /// Change nothing; say what would be done.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        no_compact: bool,
        #[arg(long)]
        no_merge: bool,
        #[arg(long)]
        no_expire: bool,
        #[arg(long)]
        no_sweep: bool,
        /// The sweep spares files younger than this many seconds
        /// (default 3 days, at least an hour).
        #[arg(long)]
        older_than_secs: Option<u64>,
        #[command(flatten)]
        target: Target,
    },
    /// The last maintenance runs of a table (on demand or by its sink).
    Maintenance {
        /// `namespace.table`.
        #[arg(value_parser = table_arg)]
        table: String,
        #[command(flatten)]
        target: Target,
    },
}

/// `namespace.table`: name characters and dots, one URL path segment.
fn table_arg(s: &str) -> std::result::Result<String, String> {
    let ok = s.contains('.')
        && !s.starts_with('.')
        && !s.ends_with('.')
        && s.chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '.');
    match ok {
        true => Ok(s.to_string()),
        false => Err(format!(
            "`{s}`: expected `namespace.table` (letters, digits, `_`, `-`)"
        )),
    }
}

pub async fn tables(action: TablesAction) -> Result<()> {
    match action {
        TablesAction::Maintain {
            table,
            dry_run,
            no_compact,
            no_merge,
            no_expire,
            no_sweep,
            older_than_secs,
            target,
        } => {
            let mut body = json!({
                "dry_run": dry_run,
                "compact": !no_compact,
                "merge": !no_merge,
                "expire": !no_expire,
                "sweep": !no_sweep,
            });
            if let Some(secs) = older_than_secs {
                body["older_than_secs"] = json!(secs);
            }
            let answer = call(
                reqwest::Method::POST,
                &target,
                &format!("/v1/tables/{table}/maintain"),
                Some(&body),
            )
            .await?;
            let record: RunRecord = parse(&answer)?;
            match target.json {
                true => println!("{answer}"),
                false => print!("{}", describe(&record)),
            }
            match record.outcome.as_str() {
                "ok" => Ok(()),
                other => Err(Error::Remote(other.to_string(), ErrorKind::Unavailable)),
            }
        }
        TablesAction::Maintenance { table, target } => {
            let answer = call(
                reqwest::Method::GET,
                &target,
                &format!("/v1/tables/{table}/maintenance"),
                None,
            )
            .await?;
            if target.json {
                println!("{answer}");
                return Ok(());
            }
            let answer: MaintenanceRuns = parse(&answer)?;
            if answer.runs.is_empty() {
                println!("no maintenance run of `{table}` on record since the server started");
            }
            for run in &answer.runs {
                println!("{}", describe(run));
            }
            Ok(())
        }
    }
}

/// A run's record, for people.
pub fn describe(r: &RunRecord) -> String {
    let mb = |bytes: u64| bytes as f64 / 1e6;
    let mut out = format!(
        "{} {} ({}{}, {} ms): {}\n",
        r.started_at,
        r.table,
        r.trigger,
        if r.dry_run { ", dry run" } else { "" },
        r.duration_ms,
        r.outcome,
    );
    let state = |s: &TableState| {
        format!(
            "{} data files, {:.1} MB, {} rows, {} snapshots",
            s.data_files,
            mb(s.data_bytes),
            s.records,
            s.snapshots
        )
    };
    out += &format!(
        "  before: {}\n  after:  {}\n",
        state(&r.before),
        state(&r.after)
    );
    if let Some(c) = &r.compacted {
        out += &format!(
            "  compacted: {} files ({:.1} MB) into {} ({:.1} MB) in {} partitions\n",
            c.files_removed,
            mb(c.bytes_removed),
            c.files_added,
            mb(c.bytes_added),
            c.partitions
        );
    }
    if let Some(m) = &r.merged {
        out += &format!(
            "  manifests: {} into {}\n",
            m.manifests_before, m.manifests_after
        );
    }
    if let Some(e) = &r.expired {
        out += &format!(
            "  expired: {} snapshots, {} files deleted\n",
            e.snapshots, e.files_deleted
        );
    }
    if let Some(p) = &r.planned {
        out += &format!(
            "  would compact {} files ({:.1} MB), expire {} snapshots\n",
            p.compact_files,
            mb(p.compact_bytes),
            p.expire_snapshots
        );
    }
    if let Some(s) = &r.swept {
        let (verb, count) = match r.dry_run {
            true => ("would delete", s.orphans),
            false => ("deleted", s.deleted),
        };
        out += &format!(
            "  orphans: {} of {} files listed ({:.1} MB), {verb} {count}; {} spared (too young, or in a write ledger)\n",
            s.orphans,
            s.listed,
            mb(s.orphan_bytes),
            s.spared
        );
        for f in &s.files {
            out += &format!("    {} ({} bytes)\n", f.path, f.bytes);
        }
    }
    out += &format!("  next: {}\n", r.next);
    out
}
