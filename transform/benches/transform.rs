//! Transform overhead on the fraud-detection event shape (plus a `tags`
//! list to unnest), one core. Prints events/s for each stage of a pipeline
//! step, as the server runs it, and the transform's share of the whole:
//!
//! - decode: `EventDecoder` on 1,000-event JSON bodies (validation included);
//! - `SELECT *`, and a filter + 5 expressions + UNNEST, over the decoded
//!   batches, 100 requests' worth per run (`PipelinePlan::run_isolating`);
//! - Parquet: the output written with zstd, as the sink does.
//!
//! A program that prints figures, not a test: it asserts nothing.
//!
//! ```sh
//! cargo bench -p pipe-transform --bench transform
//! ```

use std::collections::HashMap;
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use pipe_schemas::{BodyFormat, Decoded, EventDecoder, StreamSchema};
use pipe_transform::PipelinePlan;

#[path = "../../benches/fraud_events.rs"]
mod fraud_events;

const HEAVY: &str = "INSERT INTO out SELECT transaction_id, upper(location) AS loc, \
    amount * 1.1 AS with_tax, date_trunc('hour', CAST(transaction_timestamp AS TIMESTAMP)) AS hour, \
    md5(transaction_id) AS digest, CASE WHEN amount > 1000 THEN 'high' ELSE 'low' END AS band, \
    UNNEST(tags) AS tag FROM tx WHERE is_fraud = false OR amount > 100";

const REQUESTS: usize = 100;
const EVENTS: usize = 1000;

fn body(seq: usize) -> String {
    fraud_events::body(EVENTS, seq, fraud_events::event_with_tags)
}

/// Best of three: seconds for one pass of `f`, and its result.
fn best<T>(mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::MAX;
    let mut out = None;
    for _ in 0..3 {
        let t = Instant::now();
        out = Some(f());
        best = best.min(t.elapsed().as_secs_f64());
    }
    (best, out.expect("ran"))
}

fn parquet(batches: &[RecordBatch]) -> usize {
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(Vec::new(), batches[0].schema(), Some(props))
            .expect("a writer");
    for b in batches {
        writer.write(b).expect("write");
    }
    writer.into_inner().expect("close").len()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let decoder = EventDecoder::new(Some(
        StreamSchema::from_json(&fraud_events::schema_with_tags()).expect("schema"),
    ));
    let bodies: Vec<String> = (0..REQUESTS).map(body).collect();
    let n = (REQUESTS * EVENTS) as f64;

    let (t_decode, input) = best(|| {
        bodies
            .iter()
            .map(|b| match decoder.decode(b.as_bytes(), BodyFormat::Json) {
                Ok(Decoded::Batch { batch, .. }) => {
                    pipe_schemas::stamp_ingest_ts(&batch, 1_700_000_000_000_000).expect("stamp")
                }
                _ => panic!("the bench's events are valid"),
            })
            .collect::<Vec<_>>()
    });
    let streams = HashMap::from([("tx".to_string(), decoder.table_schema())]);
    let sinks = ["out".to_string()];
    let plan = |sql: &str| {
        runtime
            .block_on(PipelinePlan::new("bench", sql, &streams, &sinks))
            .expect("plans")
    };
    let star = plan("INSERT INTO out SELECT * FROM tx");
    let heavy = plan(HEAVY);
    let run = |p: &PipelinePlan| {
        runtime
            .block_on(p.run_isolating(input.clone()))
            .expect("runs")
            .output
    };
    let (t_star, star_out) = best(|| run(&star));
    let (t_heavy, heavy_out) = best(|| run(&heavy));
    let (t_pq_star, star_bytes) = best(|| parquet(&star_out));
    let (t_pq_heavy, _) = best(|| parquet(&heavy_out));
    let rows = |o: &[RecordBatch]| o.iter().map(|b| b.num_rows()).sum::<usize>();

    println!(
        "transform bench: {n} events (~{} B of JSON each), one core",
        bodies[0].len() / EVENTS
    );
    println!(
        "decode (validating):               {:>10.0} events/s",
        n / t_decode
    );
    println!(
        "SELECT *:                          {:>10.0} events/s ({} rows out)",
        n / t_star,
        rows(&star_out)
    );
    println!(
        "filter + 5 expressions + UNNEST:   {:>10.0} events/s ({} rows out)",
        n / t_heavy,
        rows(&heavy_out)
    );
    println!(
        "Parquet (zstd) of SELECT * output: {:>10.0} events/s ({:.1} MB)",
        n / t_pq_star,
        star_bytes as f64 / 1e6
    );
    let share = |t: f64, pq: f64| 100.0 * t / (t_decode + t + pq);
    println!(
        "transform share of decode + transform + Parquet: SELECT * {:.1}%, heavy {:.1}% (heavy takes {:.1}x the time of SELECT *)",
        share(t_star, t_pq_star),
        share(t_heavy, t_pq_heavy),
        t_heavy / t_star
    );
}
