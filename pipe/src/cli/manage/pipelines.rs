//! `pipe pipelines create|list|get|update|delete`.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{json, Map, Value};

use super::{confirm, create, name_arg, read_file, remove, set, show, update, Target};
use crate::cli::render::{pipeline_details, pipeline_update_summary, pipelines_table};
use crate::wire::PipelineDeleted;
use crate::{Error, Result};

/// `pipe pipelines …`.
#[derive(Debug, Subcommand)]
pub enum PipelinesAction {
    /// Create a pipeline: `INSERT INTO sink SELECT … FROM stream`.
    Create {
        #[arg(value_parser = name_arg)]
        name: String,
        /// The SQL.
        #[arg(
            long,
            conflicts_with = "sql_file",
            required_unless_present = "sql_file"
        )]
        sql: Option<String>,
        /// A file holding the SQL.
        #[arg(long)]
        sql_file: Option<PathBuf>,
        /// Where rows the SQL fails on go, `namespace.table`.
        #[arg(long)]
        quarantine_table: Option<String>,
        /// Where it starts in its stream: `earliest` (every event the
        /// buffer holds; the default), `end` (events accepted from now
        /// on), `offset:N`, or `time:RFC3339`.
        #[arg(long)]
        start: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Every pipeline, one line each.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// One pipeline: its stream, sink and SQL, what it committed since the
    /// server started, and its recent errors with their reasons.
    Get {
        #[arg(value_parser = name_arg)]
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Change a running pipeline's SQL in place: the old SQL commits every
    /// event accepted so far, the new one takes every later event; none is
    /// skipped or read twice. The stream and the sink stay.
    Update {
        #[arg(value_parser = name_arg)]
        name: String,
        /// The new SQL.
        #[arg(long, conflicts_with = "sql_file")]
        sql: Option<String>,
        /// A file holding the new SQL.
        #[arg(long)]
        sql_file: Option<PathBuf>,
        /// Where rows the SQL fails on go from now on, `namespace.table`.
        #[arg(long)]
        quarantine_table: Option<String>,
        /// Check the change and say what it would do; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a pipeline after it commits what it has read.
    Delete {
        #[arg(value_parser = name_arg)]
        name: String,
        #[arg(long, short = 'y')]
        force: bool,
        /// Delete it even though an earlier delete could not commit its
        /// last events: they are given up.
        #[arg(long)]
        discard_uncommitted: bool,
        #[command(flatten)]
        target: Target,
    },
}

/// Runs `pipe pipelines …`.
pub async fn pipelines(action: PipelinesAction) -> Result<()> {
    match action {
        PipelinesAction::Create {
            name,
            sql,
            sql_file,
            quarantine_table,
            start,
            target,
        } => {
            let sql = match (sql, sql_file) {
                (Some(sql), _) => sql,
                (None, Some(path)) => read_file(&path, "SQL file")?,
                (None, None) => return Err(Error::Config("--sql or --sql-file".into())),
            };
            let mut body = Map::new();
            body.insert("name".into(), json!(name));
            body.insert("sql".into(), json!(sql));
            set(
                &mut body,
                "quarantine_table",
                quarantine_table.map(Value::from),
            );
            set(&mut body, "start", start.map(Value::from));
            create(&target, "pipeline", &name, body, pipeline_details).await?;
        }
        PipelinesAction::Update {
            name,
            sql,
            sql_file,
            quarantine_table,
            dry_run,
            target,
        } => {
            let sql = match (sql, sql_file) {
                (Some(sql), _) => Some(sql),
                (None, Some(path)) => Some(read_file(&path, "SQL file")?),
                (None, None) => None,
            };
            if sql.is_none() && quarantine_table.is_none() {
                return Err(Error::Config(
                    "nothing to change: give --sql, --sql-file or --quarantine-table".into(),
                ));
            }
            let mut body = Map::new();
            set(&mut body, "sql", sql.map(Value::from));
            set(
                &mut body,
                "quarantine_table",
                quarantine_table.map(Value::from),
            );
            update(
                &target,
                "pipeline",
                &name,
                body,
                dry_run,
                pipeline_update_summary,
            )
            .await?;
        }
        PipelinesAction::List { target } => {
            show(&target, "/v1/pipelines", pipelines_table).await?;
        }
        PipelinesAction::Get { name, target } => {
            show(&target, &format!("/v1/pipelines/{name}"), pipeline_details).await?;
        }
        PipelinesAction::Delete {
            name,
            force,
            discard_uncommitted,
            target,
        } => {
            confirm(
                &format!("Delete pipeline '{name}'? (It commits what it has read first.)"),
                force,
            )?;
            let path = format!("/v1/pipelines/{name}?force={discard_uncommitted}");
            remove(&target, &path, "pipeline", &name, |_: &PipelineDeleted| {
                String::new()
            })
            .await?;
        }
    }
    Ok(())
}
