//! `pipe query`: one statement, or a prompt, over the tables. With
//! `--config` it opens the catalog itself and reads committed snapshots;
//! with `--server` it asks a running server (`POST /v1/query`), which also
//! reads the events its pipelines have acknowledged and not committed yet
//! (unless `--committed`). The stats line on standard error says which.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use pipe_query::{render, Answer, OutputFormat, QueryEngine};
use serde_json::Value;

use crate::config::{Config, Overrides};
use crate::wire::{QueryAnswer, QueryRequest};
use crate::{Client, Error, ErrorKind, Result};

/// Where statements run.
pub enum Session {
    /// This process, over the catalog: committed snapshots.
    Local(QueryEngine),
    /// A running server.
    Server {
        client: Client,
        committed_only: bool,
    },
}

/// What one statement answered, as printed.
enum Printed {
    Local(Answer),
    Server(QueryAnswer),
}

impl Session {
    async fn answer(&self, sql: &str) -> Result<Printed> {
        match self {
            Session::Local(engine) => Ok(Printed::Local(engine.query(sql).await?)),
            Session::Server {
                client,
                committed_only,
            } => {
                let request = QueryRequest {
                    committed_only: *committed_only,
                    ..QueryRequest::new(sql)
                };
                Ok(Printed::Server(client.query_with(&request).await?))
            }
        }
    }
}

/// A session over the catalog of the definitions file `config`. `prompt`:
/// it will run many statements, so a SQL catalog is asked only whether a
/// table changed before it is loaded again.
pub async fn local_engine(
    config: &Path,
    data_dir: Option<PathBuf>,
    prompt: bool,
) -> Result<QueryEngine> {
    let config = Config::load(
        config,
        &Overrides {
            data_dir,
            ..Overrides::default()
        },
    )?;
    let sqlite = match &config.catalog.kind {
        pipe_sink::CatalogKind::Sql { uri } => pipe_sink::catalog::sqlite_path(uri),
        pipe_sink::CatalogKind::Rest(_) => None,
    };
    if let Some(path) = sqlite {
        if !path.exists() {
            return Err(Error::Remote(
                format!(
                    "no catalog at `{}` yet: `pipe serve` creates it when it starts",
                    path.display()
                ),
                ErrorKind::NotFound,
            ));
        }
    }
    let catalog = pipe_sink::open_catalog(&config.catalog).await?;
    let caches = match prompt && config.catalog.owns_metadata_files() {
        true => pipe_query::Caches::default()
            .probing(pipe_sink::maintenance::Committer::open(&config.catalog).await?),
        false => pipe_query::Caches::default(),
    };
    Ok(QueryEngine::with_caches(catalog, pipe_query::Reader::default(), &caches).await?)
}

/// Runs one statement and prints its result, then the stats line on
/// standard error (standard output stays the results alone).
pub async fn run_statement(
    session: &Session,
    sql: &str,
    format: OutputFormat,
    started: Instant,
) -> Result<()> {
    let printed = session.answer(sql).await?;
    let text = match &printed {
        Printed::Local(answer) => text(&answer.batches, format)?,
        Printed::Server(answer) => match format {
            OutputFormat::Json => serde_json::to_string(&answer.rows)
                .map_err(|e| Error::Internal(format!("the rows: {e}")))?,
            OutputFormat::NdJson => answer.rows.iter().map(|r| format!("{r}\n")).collect(),
            _ => text(&[as_text(answer)?], format)?,
        },
    };
    if format == OutputFormat::NdJson {
        print!("{text}");
    } else {
        println!("{text}");
    }
    let elapsed = started.elapsed();
    let line = match printed {
        Printed::Local(answer) => format!(
            "{}; committed snapshots only (`--server` also reads what pipelines have not committed)",
            answer.summary(elapsed)
        ),
        Printed::Server(answer) => {
            let scan = answer.scan();
            let mut line = Answer {
                batches: vec![as_text(&answer)?],
                scan,
            }
            .summary(elapsed);
            if answer.truncated {
                line.push_str(&format!("; cut at {} rows", answer.row_count));
            }
            if answer.committed_only {
                line.push_str("; committed snapshots only");
            }
            line
        }
    };
    eprintln!("{line}");
    Ok(())
}

fn text(batches: &[RecordBatch], format: OutputFormat) -> Result<String> {
    Ok(match terminal_width() {
        Some(width) if format == OutputFormat::Table => pipe_query::render_table(batches, width)?,
        _ => render(batches, format)?,
    })
}

/// A server's rows as text columns (strings as they are, other values as
/// JSON, nulls as nulls), for the table and CSV formats.
fn as_text(answer: &QueryAnswer) -> Result<RecordBatch> {
    let fields: Vec<Field> = answer
        .columns
        .iter()
        .map(|c| Field::new(c, DataType::Utf8, true))
        .collect();
    let columns: Vec<ArrayRef> = answer
        .columns
        .iter()
        .map(|c| {
            Arc::new(StringArray::from_iter(answer.rows.iter().map(
                |row| match row.get(c) {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(other) => Some(other.to_string()),
                },
            ))) as ArrayRef
        })
        .collect();
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(answer.rows.len())),
    )
    .map_err(|e| Error::Internal(format!("the server's rows: {e}")))
}

/// The width of the terminal standard output is, if it is one: a table
/// wider than that is printed a row at a time. Piped output is never
/// reshaped.
fn terminal_width() -> Option<usize> {
    terminal_size::terminal_size_of(std::io::stdout())
        .map(|(w, _)| usize::from(w.0))
        .filter(|&w| w > 0)
}

/// `pipe query` without SQL: a prompt with line editing and history
/// (`~/.pipe_history`). A statement may span lines and ends with `;`; an
/// error is printed and the prompt goes on; `exit`, `quit` or Ctrl-D leave.
pub async fn repl(session: &Session, format: OutputFormat) -> Result<()> {
    let mut editor = rustyline::DefaultEditor::new()
        .map_err(|e| Error::Internal(format!("starting the prompt: {e}")))?;
    let history = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pipe_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    let mut statement = String::new();
    loop {
        let prompt = if statement.is_empty() {
            "pipe> "
        } else {
            "  ... "
        };
        let line = match tokio::task::block_in_place(|| editor.readline(prompt)) {
            Ok(line) => line,
            Err(rustyline::error::ReadlineError::Interrupted) => {
                statement.clear();
                continue;
            }
            Err(_) => break, // end of input
        };
        let trimmed = line.trim();
        if statement.is_empty() && matches!(trimmed, "exit" | "quit" | "\\q") {
            break;
        }
        if trimmed.is_empty() && statement.is_empty() {
            continue;
        }
        statement.push_str(&line);
        statement.push('\n');
        if !trimmed.ends_with(';') {
            continue;
        }
        let sql = std::mem::take(&mut statement);
        let _ = editor.add_history_entry(sql.trim());
        if let Err(e) = run_statement(session, &sql, format, Instant::now()).await {
            eprintln!("error: {e}");
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(())
}
