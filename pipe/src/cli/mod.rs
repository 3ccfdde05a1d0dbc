//! The command line: `pipe serve`, `pipe query`, `pipe send`, `pipe flush`,
//! and the management commands of [`crate::cli::manage`].
//!
//! Flags may also come from `PIPE_*` environment variables (`PIPE_CONFIG`,
//! `PIPE_LISTEN`, `PIPE_DATA_DIR`, `PIPE_SERVER`, `PIPE_ADMIN_TOKEN`); a
//! flag on the command line wins over the variable, which wins over the
//! file.

pub mod manage;
mod query;
mod render;
pub mod send;
mod setup;
pub mod tables;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use pipe_query::OutputFormat;

use query::{local_engine, Session};

use crate::config::Overrides;
use crate::{Error, ErrorKind, Result};

/// Self-hosted streaming ingestion into Iceberg tables.
#[derive(Debug, Parser)]
#[command(name = "pipe", version, about)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
    /// Log filter (`info`, `pipe=debug`, …); also `RUST_LOG`.
    #[arg(long, global = true, env = "PIPE_LOG", default_value = "info")]
    pub log: String,
    /// Log lines as text (default) or as JSON objects, one per line.
    #[arg(long, global = true, env = "PIPE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written (to standard error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: streams, buffers, pipelines and sinks of a definitions file.
    Serve {
        /// The definitions file.
        #[arg(long, short, env = "PIPE_CONFIG")]
        config: PathBuf,
        /// Address to listen on (default 127.0.0.1:8080, or the file's `listen`).
        #[arg(long, env = "PIPE_LISTEN")]
        listen: Option<SocketAddr>,
        /// Folder for the buffer and the default warehouse and catalog.
        #[arg(long, env = "PIPE_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// A bearer token the admin API accepts, besides `[admin]
        /// auth_token_sha256` (the variable keeps it out of `ps`). Required
        /// to listen beyond loopback when the file sets none.
        #[arg(long, env = "PIPE_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
    },
    /// Run SQL over the tables: a running server's (`--server`, which
    /// also reads what pipelines have not committed yet), or a definitions
    /// file's catalog (`--config`, committed snapshots).
    Query {
        /// The definitions file.
        #[arg(
            long,
            short,
            env = "PIPE_CONFIG",
            required_unless_present = "server",
            conflicts_with = "server"
        )]
        config: Option<PathBuf>,
        /// A running server's address: the query runs there.
        #[arg(long)]
        server: Option<String>,
        /// The query endpoint's bearer token (`[query]` or `[admin]`).
        #[arg(
            long,
            env = "PIPE_QUERY_TOKEN",
            hide_env_values = true,
            requires = "server"
        )]
        token: Option<String>,
        /// Read committed snapshots only, as other engines see the tables
        /// (with `--server`; `--config` always does).
        #[arg(long, requires = "server")]
        committed: bool,
        /// Folder for the default warehouse and catalog.
        #[arg(long, env = "PIPE_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// The statement, e.g. `SELECT * FROM default.ecommerce LIMIT 10`;
        /// none: an interactive prompt (statements end with `;`).
        sql: Option<String>,
    },
    /// Print the SHA-256 of a bearer token, for a stream's `auth_token_sha256`.
    HashToken {
        /// The token; read from standard input when absent (keeps it out of shell history).
        token: Option<String>,
    },
    /// Send events from a file (or standard input) to a stream: NDJSON or a
    /// JSON array, in batches, with a summary of what was accepted.
    Send {
        /// The server's address.
        #[arg(long, env = "PIPE_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
        /// Bearer token, for streams that require one.
        #[arg(long, env = "PIPE_TOKEN")]
        token: Option<String>,
        /// Events per request.
        #[arg(long, default_value_t = 1000)]
        batch_events: usize,
        /// Bytes per request (at most).
        #[arg(long, default_value_t = 4 << 20)]
        batch_bytes: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// The stream.
        #[arg(value_parser = crate::cli::manage::name_arg)]
        stream: String,
        /// The input file; `-` or nothing for standard input.
        file: Option<PathBuf>,
    },
    /// A running server's streams: `create`, `list`, `get`, `delete`.
    Streams {
        #[command(subcommand)]
        action: crate::cli::manage::StreamsAction,
    },
    /// A running server's sinks: `create`, `list`, `get`, `delete`.
    Sinks {
        #[command(subcommand)]
        action: crate::cli::manage::SinksAction,
    },
    /// A running server's pipelines: `create`, `list`, `get` (live figures
    /// and recent errors), `delete`.
    Pipelines {
        #[command(subcommand)]
        action: crate::cli::manage::PipelinesAction,
    },
    /// A running server's tables: `maintain` (compact, merge manifests,
    /// expire snapshots, sweep orphans, now) and `maintenance` (the last
    /// runs).
    Tables {
        #[command(subcommand)]
        action: crate::cli::tables::TablesAction,
    },
    /// First use: asks for a stream, a sink and a pipeline, and creates them
    /// on a running server.
    Setup {
        /// The server's address.
        #[arg(long, env = "PIPE_SERVER", default_value = crate::cli::manage::DEFAULT_SERVER)]
        server: String,
    },
    /// Ask a running server to read its pipe.toml again and apply what
    /// changed (as SIGHUP does): new, changed and removed streams, sinks
    /// and pipelines, each changed in place. Everything is checked first.
    Reload {
        /// Check the file and say what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        target: crate::cli::manage::Target,
    },
    /// Ask a running server to roll and commit a pipeline now.
    Flush {
        /// The server's address.
        #[arg(long, env = "PIPE_SERVER", default_value = crate::cli::manage::DEFAULT_SERVER)]
        server: String,
        /// The pipeline.
        #[arg(value_parser = crate::cli::manage::name_arg)]
        pipeline: String,
    },
}

/// Output formats of `pipe query`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Ndjson,
    Csv,
}

/// Runs a parsed command line.
pub fn run(args: Args) -> Result<()> {
    if let Command::HashToken { token } = &args.command {
        let token = match token {
            Some(t) => t.clone(),
            None => {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .map_err(|e| Error::Internal(format!("reading the token: {e}")))?;
                line.trim_end_matches(['\r', '\n']).to_string()
            }
        };
        if token.is_empty() {
            return Err(Error::Config("the token is empty".into()));
        }
        println!("{}", hex::encode(pipe_ingest::http::token_digest(&token)));
        return Ok(());
    }
    if matches!(args.command, Command::Serve { .. }) {
        // SIGHUP reloads pipe.toml once the server runs; until its handler
        // is in place, one must not end the process (its default action).
        ignore_hangups();
    }
    init_logging(&args.log, args.log_format);
    // Room for planning SQL as deep as `pipe_transform::nesting` lets it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(pipe_transform::nesting::STACK_BYTES)
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("starting the runtime: {e}")))?;
    // On a thread of the same stack, not this one: the main thread's is
    // the system's (8 MiB), and a server plans its pipelines as it starts.
    let command = std::thread::Builder::new()
        .name("pipe-main".into())
        .stack_size(pipe_transform::nesting::STACK_BYTES)
        .spawn(move || {
            runtime.block_on(async move {
                match args.command {
                    Command::Serve {
                        config,
                        listen,
                        data_dir,
                        admin_token,
                    } => {
                        let overrides = Overrides {
                            listen,
                            data_dir,
                            admin_token,
                        };
                        // Before the definitions: loading them may rewrite the
                        // API's file in the data directory.
                        let data_dir = crate::config::definitions::Definitions::data_dir_of(
                            &config, &overrides,
                        )?;
                        let lock = crate::server::lock_data_dir(&data_dir)?;
                        let (definitions, config) =
                            crate::config::definitions::Definitions::load(&config, &overrides)?;
                        crate::server::serve(lock, definitions, config, shutdown_signal()).await
                    }
                    Command::Query {
                        config,
                        server,
                        token,
                        committed,
                        data_dir,
                        format,
                        sql,
                    } => {
                        let format = match format {
                            Format::Table => OutputFormat::Table,
                            Format::Json => OutputFormat::Json,
                            Format::Csv => OutputFormat::Csv,
                            Format::Ndjson => OutputFormat::NdJson,
                        };
                        let started = std::time::Instant::now();
                        let session = match (server, config) {
                            (Some(server), _) => {
                                let mut client = crate::Client::new(&server);
                                if let Some(token) = token {
                                    client = client.with_token(token);
                                }
                                Session::Server {
                                    client,
                                    committed_only: committed,
                                }
                            }
                            (None, Some(config)) => Session::Local(
                                local_engine(&config, data_dir, sql.is_none()).await?,
                            ),
                            (None, None) => unreachable!("clap requires --config or --server"),
                        };
                        match sql {
                            Some(sql) => {
                                query::run_statement(&session, &sql, format, started).await
                            }
                            None => query::repl(&session, format).await,
                        }
                    }
                    Command::HashToken { .. } => unreachable!("answered before the runtime starts"),
                    Command::Send {
                        server,
                        token,
                        batch_events,
                        batch_bytes,
                        concurrency,
                        stream,
                        file,
                    } => {
                        let input: Box<dyn std::io::Read + Send> = match file {
                            Some(path) if path.as_os_str() != "-" => {
                                Box::new(std::fs::File::open(&path).map_err(|e| {
                                    Error::Config(format!("opening `{}`: {e}", path.display()))
                                })?)
                            }
                            _ => Box::new(std::io::stdin()),
                        };
                        let options = crate::cli::send::SendOptions {
                            server,
                            stream,
                            token,
                            batch_events,
                            batch_bytes,
                            concurrency,
                            progress: true,
                        };
                        let summary = crate::cli::send::send(input, options).await?;
                        print!("{summary}");
                        if summary.rejected > 0 {
                            return Err(Error::Remote(
                                format!("{} events were rejected", summary.rejected),
                                ErrorKind::InvalidInput,
                            ));
                        }
                        Ok(())
                    }
                    Command::Streams { action } => crate::cli::manage::streams(action).await,
                    Command::Sinks { action } => crate::cli::manage::sinks(action).await,
                    Command::Pipelines { action } => crate::cli::manage::pipelines(action).await,
                    Command::Tables { action } => crate::cli::tables::tables(action).await,
                    Command::Setup { server } => {
                        crate::cli::setup::setup(
                            &crate::cli::manage::Target::at(&server),
                            std::io::stdin().lock(),
                        )
                        .await
                    }
                    Command::Reload { dry_run, target } => {
                        let answer = crate::cli::manage::call(
                            reqwest::Method::POST,
                            &target,
                            &format!("/v1/reload?dry_run={dry_run}"),
                            None,
                        )
                        .await?;
                        if target.json {
                            println!("{answer}");
                        } else {
                            let reloaded: crate::wire::Reloaded =
                                crate::cli::manage::parse(&answer)?;
                            print!("{}", crate::cli::render::reload_summary(&reloaded));
                        }
                        Ok(())
                    }
                    Command::Flush { server, pipeline } => {
                        let body = crate::cli::manage::call(
                            reqwest::Method::POST,
                            &crate::cli::manage::Target::at(&server),
                            &format!("/v1/pipelines/{pipeline}/flush"),
                            None,
                        )
                        .await?;
                        println!("{body}");
                        Ok(())
                    }
                }
            })
        })
        .map_err(|e| Error::Internal(format!("starting the main thread: {e}")))?;
    command
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// SIGHUP ignored (until `server::serve` handles it).
fn ignore_hangups() {
    #[cfg(unix)]
    // SAFETY: sets a signal's disposition to "ignore"; no handler runs, no
    // memory is touched.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
}

fn init_logging(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Resolves on the first SIGINT or SIGTERM: the server then stops taking
/// events, drains and commits. A second signal exits at once: everything
/// acknowledged is in the buffer on disk and is committed on the next start.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        tracing::info!(
            "shutdown requested: draining and committing (signal again to exit at once)"
        );
        tokio::spawn(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            tracing::warn!("second signal: exiting now; acknowledged events stay in the buffer and are committed on the next start");
            std::process::exit(EXIT_INTERRUPTED);
        });
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested");
    }
}

/// The exit code after a second SIGINT/SIGTERM (128 + SIGINT, as shells use).
pub const EXIT_INTERRUPTED: i32 = 130;
