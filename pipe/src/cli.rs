//! The command line: `pipe serve`, `pipe query`, `pipe flush`.
//!
//! Flags may also come from `PIPE_*` environment variables (`PIPE_CONFIG`,
//! `PIPE_LISTEN`, `PIPE_DATA_DIR`, `PIPE_SERVER`); a flag on the command line
//! wins over the variable, which wins over the file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use pipe_query::{render, OutputFormat, QueryEngine};

use crate::config::{Config, Overrides};
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
    },
    /// Run SQL over the tables of a definitions file's catalog.
    Query {
        /// The definitions file.
        #[arg(long, short, env = "PIPE_CONFIG")]
        config: PathBuf,
        /// Folder for the default warehouse and catalog.
        #[arg(long, env = "PIPE_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// The statement, e.g. `SELECT * FROM default.ecommerce LIMIT 10`.
        sql: String,
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
        stream: String,
        /// The input file; `-` or nothing for standard input.
        file: Option<PathBuf>,
    },
    /// Ask a running server to roll and commit a pipeline now.
    Flush {
        /// The server's address.
        #[arg(long, env = "PIPE_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
        /// The pipeline.
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
    init_logging(&args.log, args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("starting the runtime: {e}")))?;
    runtime.block_on(async move {
        match args.command {
            Command::Serve {
                config,
                listen,
                data_dir,
            } => {
                let config = Config::load(&config, &Overrides { listen, data_dir })?;
                crate::server::serve(config, shutdown_signal()).await
            }
            Command::Query {
                config,
                data_dir,
                format,
                sql,
            } => {
                let config = Config::load(
                    &config,
                    &Overrides {
                        listen: None,
                        data_dir,
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
                let started = std::time::Instant::now();
                let catalog = pipe_sink::open_catalog(&config.catalog).await?;
                let engine = QueryEngine::new(catalog).await?;
                let batches = engine.sql(&sql).await?;
                let format = match format {
                    Format::Table => OutputFormat::Table,
                    Format::Json => OutputFormat::Json,
                    Format::Csv => OutputFormat::Csv,
                    Format::Ndjson => OutputFormat::NdJson,
                };
                let text = render(&batches, format)?;
                if format == OutputFormat::NdJson {
                    print!("{text}");
                } else {
                    println!("{text}");
                }
                // The stats line goes to standard error: standard output
                // stays the results alone.
                eprintln!(
                    "{} rows in {:.1} ms",
                    pipe_query::row_count(&batches),
                    started.elapsed().as_secs_f64() * 1e3
                );
                Ok(())
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
                let options = crate::send::SendOptions {
                    server,
                    stream,
                    token,
                    batch_events,
                    batch_bytes,
                    concurrency,
                    progress: true,
                };
                let summary = crate::send::send(input, options).await?;
                print!("{summary}");
                if summary.rejected > 0 {
                    return Err(Error::Remote(
                        format!("{} events were rejected", summary.rejected),
                        ErrorKind::InvalidInput,
                    ));
                }
                Ok(())
            }
            Command::Flush { server, pipeline } => {
                let body = flush(&server, &pipeline).await?;
                println!("{body}");
                Ok(())
            }
        }
    })
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

/// Asks a running server to flush `pipeline`; returns its JSON report.
async fn flush(server: &str, pipeline: &str) -> Result<String> {
    let url = format!(
        "{}/v1/pipelines/{pipeline}/flush",
        server.trim_end_matches('/')
    );
    let response = reqwest::Client::new()
        .post(&url)
        .send()
        .await
        .map_err(|e| Error::Remote(format!("calling `{url}`: {e}"), ErrorKind::Unavailable))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| {
        Error::Remote(
            format!("reading the answer of `{url}`: {e}"),
            ErrorKind::Unavailable,
        )
    })?;
    let kind = match status.as_u16() {
        200..=299 => return Ok(body),
        404 => ErrorKind::NotFound,
        400..=499 => ErrorKind::InvalidInput,
        _ => ErrorKind::Unavailable,
    };
    Err(Error::Remote(format!("{status}: {body}"), kind))
}
