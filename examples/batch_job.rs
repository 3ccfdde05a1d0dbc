//! A batch job on `pipe`'s library: load a day of NDJSON files into an
//! Iceberg table with the same validation, SQL and exactly-once commit the
//! server uses, then query it. Run it as often as you like: the day is one
//! batch (id 20261123), so a second run finds it committed and adds
//! nothing.
//!
//! ```sh
//! cargo run --example batch_job -- [FOLDER]     # default ./batch-demo
//! ```
//!
//! The folder gets `input/` (24 hourly NDJSON files, made on the first run
//! if missing) and `data/` (a SQLite catalog and the warehouse).

use std::path::{Path, PathBuf};

use pipe::batch::{query, BatchJob, BatchJobOptions};
use pipe::schemas::StreamSchema;
use pipe::sink::CatalogSettings;

const DAY: u64 = 20261123;
const PER_HOUR: usize = 1000;

/// Writes the day's 24 hourly files of orders, if not there yet.
fn make_input(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut files = Vec::new();
    for hour in 0..24 {
        let path = dir.join(format!("2026-11-23T{hour:02}.ndjson"));
        if !path.exists() {
            let mut text = String::new();
            for i in 0..PER_HOUR {
                let n = hour * PER_HOUR + i;
                let event = serde_json::json!({
                    "order_id": format!("o-{n:06}"),
                    "customer": format!("c-{:03}", n % 250),
                    "amount": (n % 97) as f64 + 0.5,
                    "ordered_at": format!("2026-11-23T{hour:02}:{:02}:00Z", i % 60),
                });
                text.push_str(&event.to_string());
                text.push('\n');
            }
            std::fs::write(&path, text)?;
        }
        files.push(path);
    }
    Ok(files)
}

#[tokio::main]
async fn main() -> pipe::Result<()> {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "batch-demo".into()),
    );
    let files = make_input(&root.join("input"))
        .map_err(|e| pipe::Error::Config(format!("writing the input files: {e}")))?;
    let schema = StreamSchema::from_json(
        r#"{"fields":[
            {"name":"order_id","type":"string","required":true},
            {"name":"customer","type":"string","required":true},
            {"name":"amount","type":"float64","required":true},
            {"name":"ordered_at","type":"timestamp","required":true}]}"#,
    )?;
    let job = BatchJob::new(BatchJobOptions {
        name: "daily_orders".into(),
        catalog: CatalogSettings::local(&root.join("data")),
        schema: Some(schema),
        sql: "INSERT INTO orders SELECT order_id, customer, amount, ordered_at FROM events".into(),
        namespace: "shop".into(),
        table: "orders".into(),
        write: Default::default(),
    })
    .await?;

    // The day, twice: the second run is a no-op.
    for attempt in 1..=2 {
        let report = job.run_ndjson_files(DAY, &files).await?;
        println!(
            "run {attempt}: batch {} read {} events, committed {} rows{}",
            report.batch_id,
            report.events,
            report.rows,
            if report.already_committed {
                " (already committed: nothing added)"
            } else {
                ""
            }
        );
    }
    let totals = query(
        &job.catalog(),
        "SELECT count(*) AS orders, count(DISTINCT order_id) AS distinct_orders, round(sum(amount), 2) AS revenue FROM shop.orders",
    )
    .await?;
    println!(
        "{}",
        arrow::util::pretty::pretty_format_batches(&totals)
            .map_err(|e| pipe::Error::Internal(e.to_string()))?
    );
    let orders = totals[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .map(|a| a.value(0));
    let distinct = totals[0]
        .column(1)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .map(|a| a.value(0));
    if orders != Some((24 * PER_HOUR) as i64) || orders != distinct {
        return Err(pipe::Error::Internal(format!(
            "expected {} orders once each, found {orders:?} ({distinct:?} distinct)",
            24 * PER_HOUR
        )));
    }
    Ok(())
}
