//! `GET /metrics`: the server's figures in the Prometheus text format.
//!
//! The metric set follows the hosted service's (operator, sink and user
//! error metrics), per stream and per pipeline, plus what an operator of a
//! self-hosted server needs: buffer depth, the age of the oldest event not
//! yet committed, commit latency and the time of the last commit. Every
//! figure counts since the server started (counters) or is read at scrape
//! time (gauges); nothing is sampled in between.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `pipe_stream_requests_total` | stream | requests that reached the stream |
//! | `pipe_stream_bytes_in_total` | stream | body bytes decoded (`bytesIn`) |
//! | `pipe_stream_records_in_total` | stream | events accepted, on disk (`recordsIn`) |
//! | `pipe_stream_decode_errors_total` | stream | events refused or quarantined (`decodeErrors`) |
//! | `pipe_stream_user_errors_total` | stream, error_family, error_type | problems by type (`missing_field`, …) |
//! | `pipe_stream_buffer_bytes` | stream | the buffer's size on disk |
//! | `pipe_stream_buffer_records` | stream | records in the buffer (appended, not yet released) |
//! | `pipe_stream_writer_failed` | stream | 1 once the stream's buffer writer has stopped (it takes no events), else 0 |
//! | `pipe_pipeline_state` | pipeline, state | 1 for the pipeline's state (`running`, `retrying`, `failed`), 0 for the others |
//! | `pipe_pipeline_lag_records` | pipeline, stream | durable records the pipeline has not committed |
//! | `pipe_pipeline_oldest_unprocessed_age_seconds` | pipeline, stream | age of the oldest of them (0 when none): how much older than a fresh read the table is |
//! | `pipe_pipeline_newest_committed_age_seconds` | pipeline, stream | age of the newest event it committed (absent before its first commit) |
//! | `pipe_pipeline_failed_rows_total` | pipeline | rows the SQL failed on, committed to the quarantine table |
//! | `pipe_sink_records_written_total` | pipeline, sink | rows committed (`recordsWritten`) |
//! | `pipe_sink_files_written_total` | pipeline, sink | data files committed (`filesWritten`) |
//! | `pipe_sink_bytes_written_total` | pipeline, sink | their size, compressed (`bytesWritten`) |
//! | `pipe_sink_uncompressed_bytes_written_total` | pipeline, sink | before compression (`uncompressedBytesWritten`) |
//! | `pipe_sink_row_groups_written_total` | pipeline, sink | Parquet row groups (`rowGroupsWritten`) |
//! | `pipe_sink_commit_seconds_total`, `pipe_sink_commits_total` | pipeline, sink | time spent committing, and commits: their ratio is the mean commit latency |
//! | `pipe_sink_last_commit_timestamp_seconds` | pipeline, sink | when the last commit landed (0: none yet) |
//! | `pipe_table_maintenance_runs_recorded` | table | maintenance runs kept on record (the last 20; see `pipe tables maintenance`) |
//! | `pipe_table_maintenance_last_run_timestamp_seconds`, `…_last_run_seconds`, `…_last_run_failed` | table | the last recorded run: when, how long, 1 if it failed |
//! | `pipe_table_data_files` | table | live data files after the last recorded run |

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use pipe_ingest::http::StreamStats;
use pipe_ingest::log::StreamLog;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::running::pipeline::PipelineStats;

/// One stream's sources of figures.
#[derive(Debug, Clone)]
pub struct StreamSource {
    pub name: String,
    pub stats: Arc<StreamStats>,
    pub log: Arc<StreamLog>,
}

/// One pipeline's sources of figures.
#[derive(Debug, Clone)]
pub struct PipelineSource {
    pub name: String,
    pub stream: String,
    /// `namespace.table` or the files' location.
    pub sink: String,
    pub stats: Arc<PipelineStats>,
    pub log: Arc<StreamLog>,
}

/// Everything `/metrics` reports.
#[derive(Debug, Default)]
pub struct Metrics {
    pub streams: Vec<StreamSource>,
    pub pipelines: Vec<PipelineSource>,
}

/// The sources of a running server, which change as streams and pipelines
/// are created and deleted.
#[derive(Debug, Default, Clone)]
pub struct SharedMetrics(Arc<RwLock<Metrics>>);

impl SharedMetrics {
    /// The registry to encode on each scrape.
    pub fn registry(&self) -> Registry {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        registry
    }

    pub fn add_stream(&self, source: StreamSource) {
        self.0.write().expect("never poisoned").streams.push(source);
    }

    pub fn add_pipeline(&self, source: PipelineSource) {
        self.0
            .write()
            .expect("never poisoned")
            .pipelines
            .push(source);
    }

    /// Forgets a deleted stream's figures.
    pub fn remove_stream(&self, name: &str) {
        self.0
            .write()
            .expect("never poisoned")
            .streams
            .retain(|s| s.name != name);
    }

    /// Forgets a deleted pipeline's figures.
    pub fn remove_pipeline(&self, name: &str) {
        self.0
            .write()
            .expect("never poisoned")
            .pipelines
            .retain(|p| p.name != name);
    }
}

impl Collector for SharedMetrics {
    fn encode(&self, e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.read().expect("never poisoned").encode(e)
    }
}

/// The last maintenance run of each table (see
/// `pipe_sink::maintenance::run`): kept records, its time, how long it
/// took, whether it failed, and the table's data files after it.
fn maintenance(e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    use pipe_sink::maintenance::run;
    let runs = run::summary();
    let per = |f: &dyn Fn(usize, &run::RunRecord) -> f64| -> Vec<(Labels, f64)> {
        runs.iter()
            .map(|(table, n, last)| (vec![("table", table.clone())], f(*n, last)))
            .collect()
    };
    family(
        e,
        "pipe_table_maintenance_runs_recorded",
        "Maintenance runs of the table kept on record (the last 20).",
        MetricType::Gauge,
        per(&|n, _| n as f64),
    )?;
    family(
        e,
        "pipe_table_maintenance_last_run_timestamp_seconds",
        "When the table's last recorded maintenance run started.",
        MetricType::Gauge,
        per(&|_, r| {
            chrono::DateTime::parse_from_rfc3339(&r.started_at)
                .map_or(0.0, |t| t.timestamp() as f64)
        }),
    )?;
    family(
        e,
        "pipe_table_maintenance_last_run_seconds",
        "How long the table's last recorded maintenance run took.",
        MetricType::Gauge,
        per(&|_, r| r.duration_ms as f64 / 1e3),
    )?;
    family(
        e,
        "pipe_table_maintenance_last_run_failed",
        "1 if the table's last recorded maintenance run failed, else 0.",
        MetricType::Gauge,
        per(&|_, r| f64::from(u8::from(r.outcome != "ok"))),
    )?;
    family(
        e,
        "pipe_table_data_files",
        "Live data files of the table after its last recorded maintenance run.",
        MetricType::Gauge,
        per(&|_, r| r.after.data_files as f64),
    )
}

/// Encodes the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)
        .expect("writing to a String cannot fail");
    out
}

type Labels = Vec<(&'static str, String)>;

/// One metric family: a name, help, type, and its labeled values.
fn family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    values: Vec<(Labels, f64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in values {
        let child = metric.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(value).encode(child)?,
            _ => ConstGauge::new(value).encode(child)?,
        }
    }
    Ok(())
}

impl Collector for Metrics {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let stream = |s: &StreamSource| vec![("stream", s.name.clone())];
        let per_stream = |f: &dyn Fn(&StreamSource) -> f64| -> Vec<(Labels, f64)> {
            self.streams.iter().map(|s| (stream(s), f(s))).collect()
        };
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed) as f64;
        family(
            &mut e,
            "pipe_stream_requests",
            "Requests that reached the stream.",
            Counter,
            per_stream(&|s| load(&s.stats.requests)),
        )?;
        family(
            &mut e,
            "pipe_stream_bytes_in",
            "Body bytes decoded (bytesIn).",
            Counter,
            per_stream(&|s| load(&s.stats.bytes_in)),
        )?;
        family(
            &mut e,
            "pipe_stream_records_in",
            "Events accepted and on disk (recordsIn).",
            Counter,
            per_stream(&|s| load(&s.stats.records_in)),
        )?;
        family(
            &mut e,
            "pipe_stream_decode_errors",
            "Events refused or quarantined for not fitting the schema (decodeErrors).",
            Counter,
            per_stream(&|s| load(&s.stats.decode_errors)),
        )?;
        let user_errors = self
            .streams
            .iter()
            .flat_map(|s| {
                s.stats.user_errors().into_iter().map(|(kind, n)| {
                    let labels = vec![
                        ("stream", s.name.clone()),
                        ("error_family", "deserialization".to_string()),
                        ("error_type", kind),
                    ];
                    (labels, n as f64)
                })
            })
            .collect();
        family(
            &mut e,
            "pipe_stream_user_errors",
            "Problems found in events, by error type.",
            Counter,
            user_errors,
        )?;
        family(
            &mut e,
            "pipe_stream_buffer_bytes",
            "The stream buffer's size on disk.",
            Gauge,
            per_stream(&|s| s.log.disk_bytes() as f64),
        )?;
        family(
            &mut e,
            "pipe_stream_buffer_records",
            "Records in the stream buffer, appended and not yet released.",
            Gauge,
            per_stream(&|s| s.log.next_offset().saturating_sub(s.log.first_offset()) as f64),
        )?;

        family(
            &mut e,
            "pipe_stream_writer_failed",
            "1 once the stream's buffer writer has stopped: it takes no events until a restart.",
            Gauge,
            per_stream(&|s| f64::from(u8::from(s.log.failure().is_some()))),
        )?;
        let states: Vec<(Labels, f64)> = self
            .pipelines
            .iter()
            .flat_map(|p| {
                let now = p.stats.health().state;
                crate::running::pipeline::State::ALL.map(|state| {
                    (
                        vec![
                            ("pipeline", p.name.clone()),
                            ("state", state.as_str().to_string()),
                        ],
                        f64::from(u8::from(state == now)),
                    )
                })
            })
            .collect();
        family(
            &mut e,
            "pipe_pipeline_state",
            "1 for the pipeline's state (running, retrying, failed), 0 for the others.",
            Gauge,
            states,
        )?;
        let pipeline =
            |p: &PipelineSource| vec![("pipeline", p.name.clone()), ("stream", p.stream.clone())];
        let sink =
            |p: &PipelineSource| vec![("pipeline", p.name.clone()), ("sink", p.sink.clone())];
        let lags: Vec<_> = self.pipelines.iter().map(|p| p.stats.lag(&p.log)).collect();
        let per = |labels: &dyn Fn(&PipelineSource) -> Labels,
                   f: &dyn Fn(usize, &PipelineSource) -> f64|
         -> Vec<(Labels, f64)> {
            self.pipelines
                .iter()
                .enumerate()
                .map(|(i, p)| (labels(p), f(i, p)))
                .collect()
        };
        family(
            &mut e,
            "pipe_pipeline_lag_records",
            "Durable records the pipeline has not committed yet.",
            Gauge,
            per(&pipeline, &|i, _| lags[i].records as f64),
        )?;
        family(
            &mut e,
            "pipe_pipeline_oldest_unprocessed_age_seconds",
            "Age of the oldest record the pipeline has not committed (0 when none).",
            Gauge,
            per(&pipeline, &|i, _| lags[i].oldest_age_secs),
        )?;
        family(
            &mut e,
            "pipe_pipeline_newest_committed_age_seconds",
            "Age of the newest event the pipeline has committed since the server started: what other engines read is that old (absent until its first commit).",
            Gauge,
            self.pipelines
                .iter()
                .zip(&lags)
                .filter_map(|(p, lag)| Some((pipeline(p), lag.newest_committed_age_secs?)))
                .collect(),
        )?;
        family(
            &mut e,
            "pipe_pipeline_failed_rows",
            "Rows the SQL failed on, committed to the quarantine table.",
            Counter,
            per(&pipeline, &|_, p| load(&p.stats.failed_rows_committed)),
        )?;
        family(
            &mut e,
            "pipe_sink_records_written",
            "Rows committed to the sink (recordsWritten).",
            Counter,
            per(&sink, &|_, p| load(&p.stats.rows_committed)),
        )?;
        family(
            &mut e,
            "pipe_sink_files_written",
            "Data files committed (filesWritten).",
            Counter,
            per(&sink, &|_, p| load(&p.stats.files_committed)),
        )?;
        family(
            &mut e,
            "pipe_sink_bytes_written",
            "Bytes of committed data files, compressed (bytesWritten).",
            Counter,
            per(&sink, &|_, p| load(&p.stats.bytes_committed)),
        )?;
        family(
            &mut e,
            "pipe_sink_uncompressed_bytes_written",
            "Bytes of committed data files before compression (uncompressedBytesWritten).",
            Counter,
            per(&sink, &|_, p| load(&p.stats.uncompressed_bytes_committed)),
        )?;
        family(
            &mut e,
            "pipe_sink_row_groups_written",
            "Parquet row groups committed (rowGroupsWritten).",
            Counter,
            per(&sink, &|_, p| load(&p.stats.row_groups_committed)),
        )?;
        family(
            &mut e,
            "pipe_sink_last_commit_timestamp_seconds",
            "When the last commit landed, seconds since the epoch (0: none yet).",
            Gauge,
            per(&sink, &|_, p| load(&p.stats.last_commit_unix_ms) / 1e3),
        )?;
        // Commit latency as a sum and a count (rate(sum) / rate(count) is
        // the mean over any window).
        family(
            &mut e,
            "pipe_sink_commit_seconds",
            "Time spent committing: closing data files to a known commit.",
            Counter,
            per(&sink, &|_, p| load(&p.stats.commit_micros) / 1e6),
        )?;
        family(
            &mut e,
            "pipe_sink_commits",
            "Commits made.",
            Counter,
            per(&sink, &|_, p| load(&p.stats.commits)),
        )?;
        maintenance(&mut e)?;
        Ok(())
    }
}
