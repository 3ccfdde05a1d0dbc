//! SQL over `pipe`'s Iceberg tables.
//!
//! [`QueryEngine`] is a DataFusion session whose default catalog is the
//! Iceberg catalog the sinks write to, so `SELECT … FROM default.ecommerce`
//! reads the table `ecommerce` in namespace `default`. R2 SQL's discovery
//! statements (`SHOW DATABASES`, `SHOW TABLES IN ns`, `DESCRIBE ns.t`) are
//! answered from the catalog ([`discovery`]); `SHOW TABLES` and
//! `information_schema` work as in DataFusion. The approximate aggregates
//! are R2 SQL's: DataFusion's `approx_distinct`, `approx_median`,
//! `approx_percentile_cont(_with_weight)`, and our `approx_top_k`
//! ([`top_k`]). `table_at('ns.t', snapshot id or timestamp)` reads a table
//! as of a snapshot ([`time_travel`]). [`render`] prints results as a
//! table, JSON (an array of row objects) or CSV. Sessions that share
//! [`Caches::with_limits`] share one memory pool and spill folder
//! ([`Limits`]); a query past them fails with [`Error::ResourcesExhausted`].
//!
//! ```no_run
//! # async fn demo(catalog: std::sync::Arc<dyn iceberg::Catalog>) -> pipe_query::Result<()> {
//! use pipe_query::{render, OutputFormat, QueryEngine};
//! let engine = QueryEngine::new(catalog).await?;
//! let batches = engine.sql("SELECT count(*) FROM default.ecommerce").await?;
//! println!("{}", render(&batches, OutputFormat::Table)?);
//! # Ok(()) }
//! ```

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::execution::runtime_env::RuntimeEnv;
use iceberg::Catalog;
pub use pipe_sink::ErrorKind;

pub mod discovery;
pub mod fresh;
pub mod provider;
pub mod scan;
pub mod time_travel;
pub mod top_k;
pub mod value_caps;

pub use scan::{Reader, ScanStats};

use discovery::Discovery;

/// The name the Iceberg catalog has inside DataFusion.
pub const CATALOG_NAME: &str = "pipe";

/// Errors of the query crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The statement is not valid SQL, or names what does not exist.
    #[error("{0}")]
    Sql(String),
    /// Reading the catalog or the data failed.
    #[error("{0}")]
    Unavailable(String),
    /// Results could not be rendered.
    #[error("rendering results: {0}")]
    Render(String),
    /// The query needed more memory (or spill space) than its [`Limits`].
    #[error("{0}")]
    ResourcesExhausted(String),
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Sql(_) => ErrorKind::InvalidInput,
            Error::Unavailable(_) | Error::ResourcesExhausted(_) => ErrorKind::Unavailable,
            Error::Render(_) => ErrorKind::Internal,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What sessions keep between queries, all of it keyed so that it can
/// never be stale: loaded tables (each with the manifests it parsed), kept
/// while their metadata file is the catalog's current one; and the footers
/// and page indexes of data files, which Iceberg never rewrites (in the
/// runtime's file metadata cache, bounded by
/// `datafusion.runtime.metadata_cache_limit`). Cloning shares them.
#[derive(Clone, Default)]
pub struct Caches {
    runtime: Arc<RuntimeEnv>,
    tables: provider::LoadedTables,
    /// See [`Limits::max_value_bytes`]; `None`: no cap.
    max_value_bytes: Option<usize>,
}

/// How much memory and disk the queries sharing one [`Caches`] may use,
/// all of them together.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes DataFusion's operators may hold at once (its memory pool, a
    /// `FairSpillPool`: operators that can spill share it evenly). An
    /// operator past its share spills, or fails the query with
    /// [`Error::ResourcesExhausted`].
    pub memory_bytes: usize,
    /// Where operators spill, and how much; `None`: they cannot, and the
    /// query fails instead.
    pub spill: Option<Spill>,
    /// The most bytes one call of a function that makes large values
    /// (`repeat`, `lpad`, …) may make for one batch ([`value_caps`]).
    pub max_value_bytes: usize,
}

/// Spill files of sorts, aggregations and joins past their memory.
#[derive(Debug, Clone)]
pub struct Spill {
    /// The folder (which must exist); files go in a temporary folder in it.
    pub dir: std::path::PathBuf,
    /// Bytes of spill files at most; past it the query fails with
    /// [`Error::ResourcesExhausted`].
    pub max_bytes: u64,
}

impl Caches {
    /// Caches whose sessions run within `limits`. (The default caches have
    /// no memory limit and spill to the system's temporary folder.)
    pub fn with_limits(limits: &Limits) -> Result<Caches> {
        use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
        use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
        let disk = match &limits.spill {
            Some(spill) => DiskManagerBuilder::default()
                .with_mode(DiskManagerMode::Directories(vec![spill.dir.clone()]))
                .with_max_temp_directory_size(spill.max_bytes),
            None => DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        };
        // The error of a query past the pool names its biggest consumers.
        let top = std::num::NonZeroUsize::new(3).expect("3 is not zero");
        let pool = TrackConsumersPool::new(FairSpillPool::new(limits.memory_bytes), top);
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(pool))
            .with_disk_manager_builder(disk)
            .build_arc()
            .map_err(|e| Error::Unavailable(format!("setting up query limits: {e}")))?;
        Ok(Caches {
            runtime,
            tables: provider::LoadedTables::default(),
            max_value_bytes: Some(limits.max_value_bytes),
        })
    }
}

impl Caches {
    /// These caches, asking `probe` whether a kept table is still current
    /// instead of loading it again (see [`provider`]): a SQL catalog
    /// answers from its row, without the metadata file.
    pub fn probing(self, probe: pipe_sink::maintenance::Committer) -> Caches {
        Caches {
            tables: provider::LoadedTables::probing(probe),
            ..self
        }
    }
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches").finish_non_exhaustive()
    }
}

/// A SQL session over the catalog's tables.
pub struct QueryEngine {
    ctx: SessionContext,
    catalog: Arc<dyn Catalog>,
    /// See [`Limits::max_value_bytes`].
    max_value_bytes: Option<usize>,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine").finish_non_exhaustive()
    }
}

impl QueryEngine {
    /// A session over every table in `catalog` as it is now.
    pub async fn new(catalog: Arc<dyn Catalog>) -> Result<QueryEngine> {
        Self::with_reader(catalog, Reader::default()).await
    }

    /// A session whose table scans use `reader` ([`Reader::Iceberg`] to
    /// compare results with iceberg-datafusion's own scan).
    pub async fn with_reader(catalog: Arc<dyn Catalog>, reader: Reader) -> Result<QueryEngine> {
        Self::with_caches(catalog, reader, &Caches::default()).await
    }

    /// A session that keeps what it reads in `caches`, and finds there what
    /// earlier sessions over the same tables read: a server that opens a
    /// session per request passes the same caches to each.
    pub async fn with_caches(
        catalog: Arc<dyn Catalog>,
        reader: Reader,
        caches: &Caches,
    ) -> Result<QueryEngine> {
        Self::fresh(catalog, reader, caches, None).await
    }

    /// A session like [`QueryEngine::with_caches`] that, given `unflushed`,
    /// reads each table a pipeline writes together with the rows that
    /// pipeline has acknowledged and not committed yet ([`fresh`]).
    pub async fn fresh(
        catalog: Arc<dyn Catalog>,
        reader: Reader,
        caches: &Caches,
        unflushed: Option<Arc<dyn fresh::Unflushed>>,
    ) -> Result<QueryEngine> {
        let provider = provider::IcebergCatalog::try_new(
            catalog.clone(),
            reader,
            caches.tables.clone(),
            unflushed,
        )
        .await
        .map_err(|e| Error::Unavailable(format!("listing the catalog's tables: {e}")))?;
        // DATAFUSION_* variables tune the session (e.g.
        // DATAFUSION_EXECUTION_TARGET_PARTITIONS).
        let mut config = SessionConfig::from_env()
            .map_err(|e| Error::Sql(format!("DATAFUSION_* settings: {e}")))?
            .with_default_catalog_and_schema(CATALOG_NAME, "default")
            .with_information_schema(true);
        // Where in the statement an error is ([`at_position`]).
        config.options_mut().sql_parser.collect_spans = true;
        let mut ctx = SessionContext::new_with_config_rt(config, caches.runtime.clone());
        ctx.register_catalog(CATALOG_NAME, Arc::new(provider));
        // The functions pipeline SQL has (JSON ones, …), so a column is
        // queried the way it was transformed.
        pipe_transform::functions::register(&mut ctx)
            .map_err(|e| Error::Sql(format!("registering SQL functions: {e}")))?;
        ctx.register_udaf(top_k::approx_top_k());
        if let Some(max) = caches.max_value_bytes {
            value_caps::register(&ctx, max);
        }
        ctx.register_udtf(
            "table_at",
            Arc::new(time_travel::TableAt {
                catalog: catalog.clone(),
            }),
        );
        Ok(QueryEngine {
            ctx,
            catalog,
            max_value_bytes: caches.max_value_bytes,
        })
    }

    /// Runs one statement that only reads (a query, `SHOW`, `DESCRIBE`,
    /// `EXPLAIN`): anything that would change data or definitions (DDL,
    /// DML, `SET`, transactions) is refused before it runs. Returns at most
    /// `max_rows` rows, and whether more were there.
    pub async fn read_only(&self, sql: &str, max_rows: usize) -> Result<(Answer, bool)> {
        pipe_transform::nesting::check(sql).map_err(Error::Sql)?;
        if let Some(statement) = Discovery::parse(sql) {
            let batch = statement.run(&self.catalog).await?;
            let truncated = batch.num_rows() > max_rows;
            return Ok((
                Answer {
                    batches: vec![batch.slice(0, batch.num_rows().min(max_rows))],
                    scan: ScanStats::default(),
                },
                truncated,
            ));
        }
        let options = datafusion::execution::context::SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = self.ctx.sql_with_options(sql, options).await.map_err(|e| {
            let position = at_position(&e);
            match classify(e) {
                Error::Sql(m) if m.contains(" not supported") => {
                    Error::Sql(format!("read-only endpoint: {m}"))
                }
                Error::Sql(m) => Error::Sql(format!("{m}{position}")),
                other => other,
            }
        })?;
        // One row past the limit tells whether the result was cut (and a
        // huge limit must not overflow the optimizer's arithmetic).
        let max_rows = max_rows.min(1 << 40);
        let explains = matches!(
            df.logical_plan(),
            datafusion::logical_expr::LogicalPlan::Explain(_)
                | datafusion::logical_expr::LogicalPlan::Analyze(_)
        );
        let df = if explains {
            df
        } else {
            df.limit(0, Some(max_rows + 1)).map_err(classify)?
        };
        let Answer { mut batches, scan } = execute(df, self.max_value_bytes).await?;
        let mut left = max_rows;
        let mut truncated = false;
        for b in &mut batches {
            if b.num_rows() > left {
                *b = b.slice(0, left);
                truncated = true;
            }
            left -= b.num_rows();
        }
        // Keep one (empty) batch when no row is left: it carries the schema.
        let empty = batches.first().map(|b| b.slice(0, 0));
        batches.retain(|b| b.num_rows() > 0);
        if batches.is_empty() {
            batches.extend(empty);
        }
        Ok((Answer { batches, scan }, truncated))
    }

    /// Runs one statement and collects its result.
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        Ok(self.query(sql).await?.batches)
    }

    /// Runs one statement and collects its result, with what its scans
    /// read.
    pub async fn query(&self, sql: &str) -> Result<Answer> {
        if let Some(statement) = Discovery::parse(sql) {
            return Ok(Answer {
                batches: vec![statement.run(&self.catalog).await?],
                scan: ScanStats::default(),
            });
        }
        let df = self.ctx.sql(sql).await.map_err(classify)?;
        execute(df, self.max_value_bytes).await
    }
}

/// A statement's result and what reading it took.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The rows.
    pub batches: Vec<RecordBatch>,
    /// Files and bytes the table scans read.
    pub scan: ScanStats,
}

impl Answer {
    /// The stats line: rows, files read and skipped, bytes read, time.
    pub fn summary(&self, elapsed: std::time::Duration) -> String {
        let rows = row_count(&self.batches);
        let mut line = format!(
            "{rows} row{} in {:.1} ms",
            if rows == 1 { "" } else { "s" },
            elapsed.as_secs_f64() * 1e3
        );
        let s = &self.scan;
        if s.files_total > 0 || s.bytes_read > 0 {
            line.push_str(&format!(
                "; read {} from {} of {} files ({} skipped)",
                human_bytes(s.bytes_read),
                s.files_planned,
                s.files_total,
                s.files_skipped()
            ));
        }
        if s.buffer_records > 0 {
            line.push_str(&format!(
                "; {} row{} from {} buffered request{} not committed yet",
                s.buffer_rows,
                if s.buffer_rows == 1 { "" } else { "s" },
                s.buffer_records,
                if s.buffer_records == 1 { "" } else { "s" },
            ));
        }
        line
    }
}

/// `1.5 MB`, `870 B`: decimal units, as R2 SQL prints them.
pub fn human_bytes(n: usize) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Plans, runs and collects a query, then reads its scans' counters.
async fn execute(
    df: datafusion::dataframe::DataFrame,
    max_value_bytes: Option<usize>,
) -> Result<Answer> {
    let task_ctx = Arc::new(df.task_ctx());
    if let Some(max) = max_value_bytes {
        let rows = task_ctx.session_config().batch_size();
        let optimized = df.clone().into_optimized_plan().map_err(classify)?;
        value_caps::check_constants(&optimized, rows, max).map_err(Error::Sql)?;
    }
    let plan = df.create_physical_plan().await.map_err(classify)?;
    // The answer is held whole (and rendered, about as large again): its
    // batches are counted against the memory pool as they arrive, so a
    // query returning large values fails instead of outgrowing it.
    use datafusion::execution::memory_pool::MemoryConsumer;
    use futures::StreamExt;
    let held = MemoryConsumer::new("query answer").register(task_ctx.memory_pool());
    let mut stream =
        datafusion::physical_plan::execute_stream(plan.clone(), task_ctx).map_err(classify)?;
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(classify)?;
        held.try_grow(2 * batch.get_array_memory_size())
            .map_err(classify)?;
        batches.push(batch);
    }
    Ok(Answer {
        scan: ScanStats::of(&plan),
        batches,
    })
}

/// A DataFusion error as this crate's, by whose fault it is (one rule
/// with pipeline SQL: `pipe_transform::fault`).
/// Where in the statement planning failed, as the SQL parser says it
/// (" at Line: L, Column: C", which the console and people can find), when
/// the error knows and its message does not say so already.
fn at_position(e: &datafusion::error::DataFusionError) -> String {
    let Some(span) = e.diagnostic().and_then(|d| d.span) else {
        return String::new();
    };
    if span.start.line == 0 || e.to_string().contains(" at Line: ") {
        return String::new();
    }
    format!(
        " at Line: {}, Column: {}",
        span.start.line, span.start.column
    )
}

fn classify(e: datafusion::error::DataFusionError) -> Error {
    use pipe_transform::fault::{fault, Fault};
    match fault(&e) {
        Fault::Statement | Fault::Data => Error::Sql(e.to_string()),
        Fault::Resources => Error::ResourcesExhausted(e.to_string()),
        Fault::Machine => Error::Unavailable(e.to_string()),
    }
}

/// How [`render`] prints results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// A bordered text table.
    #[default]
    Table,
    /// A JSON array of row objects.
    Json,
    /// CSV with a header row.
    Csv,
    /// One JSON object per row, one per line.
    NdJson,
}

/// Rows in `batches`, for the stats line.
pub fn row_count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// Renders results as [`OutputFormat::Table`] when that table fits in
/// `width` columns of text; when it does not, as one block per row with
/// each column on a line of its own (`psql`'s expanded display), so a wide
/// result stays readable in a terminal.
pub fn render_table(batches: &[RecordBatch], width: usize) -> Result<String> {
    let table = render(batches, OutputFormat::Table)?;
    let table_width = table.lines().next().map_or(0, |l| l.chars().count());
    if table_width <= width {
        return Ok(table);
    }
    let render_err = |e: arrow::error::ArrowError| Error::Render(e.to_string());
    let Some(schema) = batches.first().map(RecordBatch::schema) else {
        return Ok(table);
    };
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let name_width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let options = arrow::util::display::FormatOptions::default();
    let mut out = String::new();
    let mut row = 0;
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(render_err)?;
        for i in 0..batch.num_rows() {
            row += 1;
            let title = format!("-[ row {row} ]");
            out.push_str(&title);
            out.push_str(&"-".repeat((name_width + 3).saturating_sub(title.len()).max(1)));
            out.push('\n');
            for (name, f) in names.iter().zip(&formatters) {
                out.push_str(&format!("{name:<name_width$} | {}\n", f.value(i)));
            }
        }
    }
    Ok(out.trim_end().to_string())
}

/// Renders query results.
pub fn render(batches: &[RecordBatch], format: OutputFormat) -> Result<String> {
    let render_err = |e: arrow::error::ArrowError| Error::Render(e.to_string());
    match format {
        OutputFormat::Table => Ok(arrow::util::pretty::pretty_format_batches(batches)
            .map_err(render_err)?
            .to_string()),
        OutputFormat::Json => {
            let mut w = arrow::json::ArrayWriter::new(Vec::new());
            for b in batches {
                w.write(b).map_err(render_err)?;
            }
            w.finish().map_err(render_err)?;
            let mut out =
                String::from_utf8(w.into_inner()).map_err(|e| Error::Render(e.to_string()))?;
            if out.is_empty() {
                out.push_str("[]");
            }
            Ok(out)
        }
        OutputFormat::NdJson => {
            let mut w = arrow::json::LineDelimitedWriter::new(Vec::new());
            for b in batches {
                w.write(b).map_err(render_err)?;
            }
            w.finish().map_err(render_err)?;
            String::from_utf8(w.into_inner()).map_err(|e| Error::Render(e.to_string()))
        }
        OutputFormat::Csv => {
            let mut buf = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut buf);
                for b in batches {
                    w.write(b).map_err(render_err)?;
                }
            }
            String::from_utf8(buf).map_err(|e| Error::Render(e.to_string()))
        }
    }
}
