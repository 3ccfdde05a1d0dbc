//! `pipe sinks create|list|get|update|delete`.

use clap::Subcommand;
use serde_json::{json, Map, Value};

use super::{confirm, create, name_arg, remove, set, show, update, SetKeys, Target};
use crate::cli::render::{sink_details, sink_update_summary, sinks_table};
use crate::wire::SinkDeleted;
use crate::{Error, Result};

/// `pipe sinks …`.
// Parsed once per process: the size of the `create` variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum SinksAction {
    /// Create a sink: an Iceberg table, or Parquet / NDJSON files.
    Create {
        #[arg(value_parser = name_arg)]
        name: String,
        /// `iceberg`, `parquet` or `json`.
        #[arg(long = "type", default_value = "iceberg")]
        kind: String,
        /// Iceberg namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Iceberg table.
        #[arg(long)]
        table: Option<String>,
        /// Where files go (file sinks): a folder of the warehouse, or a path
        /// under the server's `file_sink_roots`.
        #[arg(long)]
        path: Option<String>,
        /// A partition field of the table, e.g. `day(__ingest_ts)`; repeatable.
        #[arg(long)]
        partition_by: Vec<String>,
        #[command(flatten)]
        settings: SinkSettings,
        #[command(flatten)]
        target: Target,
    },
    /// Change a sink's settings; the pipeline writing it switches to them
    /// after its last commit, losing and doubling nothing. Its table or
    /// folder stays.
    Update {
        #[arg(value_parser = name_arg)]
        name: String,
        #[command(flatten)]
        settings: SinkSettings,
        #[command(flatten)]
        set: SetKeys,
        /// Check the change and say what it would do; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Every sink, one line each.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// One sink: its table or folder, partitioning, sort order and roll
    /// settings.
    Get {
        #[arg(value_parser = name_arg)]
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a sink's definition (its table or files stay).
    Delete {
        #[arg(value_parser = name_arg)]
        name: String,
        #[arg(long, short = 'y')]
        force: bool,
        #[command(flatten)]
        target: Target,
    },
}

/// A sink's settings that `create` sets and `update` changes.
#[derive(Debug, clap::Args)]
pub struct SinkSettings {
    /// Folder template of file sinks (strftime on `__ingest_ts`).
    #[arg(long)]
    partitioning: Option<String>,
    /// A column that gets a bloom filter, for lookups by id; repeatable.
    #[arg(long)]
    bloom_filter_column: Vec<String>,
    /// A column of the table's sort order, which compaction rewrites
    /// files in: `id`, `amount DESC`, `name ASC NULLS LAST`; repeatable.
    #[arg(long)]
    sort_by: Vec<String>,
    /// zstd, snappy, gzip, lz4, none.
    #[arg(long)]
    compression: Option<String>,
    /// Commit at least this often, in seconds.
    #[arg(long)]
    roll_interval: Option<u64>,
    /// Commit once this many MB were read.
    #[arg(long)]
    roll_size: Option<u64>,
    /// Commit once this many rows were written.
    #[arg(long)]
    roll_rows: Option<u64>,
    /// Largest Parquet row group, in rows.
    #[arg(long)]
    target_row_group_size: Option<usize>,
    /// The size data files and compaction aim for, in MB (Iceberg).
    #[arg(long)]
    target_file_size: Option<u64>,
}

impl SinkSettings {
    /// Puts the settings given into `body`, under the API's keys.
    fn into_body(self, body: &mut Map<String, Value>) {
        set(body, "partitioning", self.partitioning.map(Value::from));
        if !self.bloom_filter_column.is_empty() {
            body.insert(
                "bloom_filter_columns".into(),
                json!(self.bloom_filter_column),
            );
        }
        if !self.sort_by.is_empty() {
            body.insert("sort_by".into(), json!(self.sort_by));
        }
        set(body, "compression", self.compression.map(Value::from));
        set(
            body,
            "roll_interval_secs",
            self.roll_interval.map(Value::from),
        );
        set(body, "roll_size_mb", self.roll_size.map(Value::from));
        set(body, "roll_rows", self.roll_rows.map(Value::from));
        set(
            body,
            "row_group_rows",
            self.target_row_group_size.map(Value::from),
        );
        set(
            body,
            "target_file_size_mb",
            self.target_file_size.map(Value::from),
        );
    }
}

/// Runs `pipe sinks …`.
pub async fn sinks(action: SinksAction) -> Result<()> {
    match action {
        SinksAction::Create {
            name,
            kind,
            namespace,
            table,
            path,
            partition_by,
            settings,
            target,
        } => {
            let mut body = Map::new();
            body.insert("name".into(), json!(name));
            body.insert("type".into(), json!(kind));
            set(&mut body, "namespace", namespace.map(Value::from));
            set(&mut body, "table", table.map(Value::from));
            set(&mut body, "path", path.map(Value::from));
            if !partition_by.is_empty() {
                body.insert("partition_by".into(), json!(partition_by));
            }
            settings.into_body(&mut body);
            create(&target, "sink", &name, body, sink_details).await?;
        }
        SinksAction::Update {
            name,
            settings,
            set: keys,
            dry_run,
            target,
        } => {
            let mut body = Map::new();
            settings.into_body(&mut body);
            keys.into_body(&mut body)?;
            if body.is_empty() {
                return Err(Error::Config(
                    "nothing to change: give a setting to change (see --help)".into(),
                ));
            }
            update(&target, "sink", &name, body, dry_run, sink_update_summary).await?;
        }
        SinksAction::List { target } => {
            show(&target, "/v1/sinks", sinks_table).await?;
        }
        SinksAction::Get { name, target } => {
            show(&target, &format!("/v1/sinks/{name}"), sink_details).await?;
        }
        SinksAction::Delete {
            name,
            force,
            target,
        } => {
            confirm(
                &format!("Delete sink '{name}'? (Its table or files stay.)"),
                force,
            )?;
            let path = format!("/v1/sinks/{name}");
            remove(&target, &path, "sink", &name, |_: &SinkDeleted| {
                String::new()
            })
            .await?;
        }
    }
    Ok(())
}
