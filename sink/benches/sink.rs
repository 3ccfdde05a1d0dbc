//! Sink figures on a local warehouse (SQLite catalog, folder), one core:
//!
//! - throughput: fraud-detection events (decoded once, not timed) written
//!   by `TableSink` (write, close, commit) as JSON MB/s in and Parquet MB/s
//!   out, beside the parquet crate writing the same batches straight to a
//!   file with the same settings, and the ratio (medians of 5 interleaved
//!   rounds);
//! - commit latency at snapshot 50 and at snapshot 5,000 of one table;
//! - files and bytes per commit for a default-size roll (128 MB read).
//!
//! A program that prints figures, not a test: it asserts nothing.
//!
//! ```sh
//! cargo bench -p pipe-sink --bench sink -- [COMMITS]
//! ```

use std::time::Instant;

use arrow::record_batch::RecordBatch;
use pipe_schemas::{BodyFormat, Decoded, EventDecoder, StreamSchema};
use pipe_sink::{open_catalog, CatalogSettings, OffsetRange, TableSink, WriteOptions};

#[path = "../../benches/fraud_events.rs"]
mod fraud_events;
use fraud_events::SCHEMA;

const EVENTS: usize = 1_000_000;
const PER_BODY: usize = 1000;

fn body(seq: usize) -> String {
    fraud_events::body(PER_BODY, seq, fraud_events::event)
}

async fn open(
    dir: &std::path::Path,
    table: &str,
    schema: &arrow::datatypes::SchemaRef,
    options: WriteOptions,
) -> TableSink {
    let catalog = open_catalog(&CatalogSettings::local(dir))
        .await
        .expect("catalog");
    TableSink::open(catalog, "bench", table, "bench", "sink", schema, options)
        .await
        .expect("table")
}

/// Writes `batches` into a new table through `TableSink`, closes and
/// commits; returns the Parquet bytes.
async fn write_all(
    dir: &std::path::Path,
    table: &str,
    schema: &arrow::datatypes::SchemaRef,
    options: WriteOptions,
    batches: &[RecordBatch],
) -> u64 {
    let mut sink = open(dir, table, schema, options).await;
    for b in batches {
        sink.write(b).await.expect("write");
    }
    let files = sink.close_files().await.expect("close");
    sink.commit(OffsetRange { first: 0, last: 0 }, &files)
        .await
        .expect("commit");
    files.iter().map(|f| f.file_size_in_bytes()).sum()
}

fn parquet_direct(path: &std::path::Path, batches: &[RecordBatch]) -> u64 {
    let options = WriteOptions::default();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .set_max_row_group_row_count(Some(options.row_group_rows))
        .build();
    let file = std::fs::File::create(path).expect("file");
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batches[0].schema(), Some(props))
        .expect("writer");
    for b in batches {
        writer.write(b).expect("write");
    }
    writer.close().expect("close");
    std::fs::metadata(path).expect("size").len()
}

fn main() {
    let commits: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(5000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let decoder = EventDecoder::new(Some(StreamSchema::from_json(SCHEMA).expect("schema")));
    let mut json_bytes = 0;
    let mut ipc_bytes = 0;
    let batches: Vec<RecordBatch> = (0..EVENTS / PER_BODY)
        .map(|seq| {
            let b = body(seq);
            json_bytes += b.len();
            let Ok(Decoded::Batch { batch, .. }) = decoder.decode(b.as_bytes(), BodyFormat::Json)
            else {
                panic!("valid events")
            };
            let batch =
                pipe_schemas::stamp_ingest_ts(&batch, 1_795_000_000_000_000).expect("stamp");
            ipc_bytes += batch.get_array_memory_size();
            batch
        })
        .collect();
    let schema = batches[0].schema();
    let dir = tempfile::tempdir().expect("dir");

    // Throughput: the sink against the parquet crate alone, interleaved,
    // 5 rounds; each figure is its median.
    const ROUNDS: usize = 5;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let unpartitioned = WriteOptions {
        partition_by: Vec::new(),
        ..WriteOptions::default()
    };
    let (mut sink_times, mut flat_times, mut direct_times) = (vec![], vec![], vec![]);
    let (mut sink_bytes, mut direct_bytes) = (0, 0);
    for round in 0..ROUNDS {
        let t = Instant::now();
        sink_bytes = rt.block_on(write_all(
            dir.path(),
            &format!("throughput_{round}"),
            &schema,
            WriteOptions::default(),
            &batches,
        ));
        sink_times.push(t.elapsed().as_secs_f64());
        // The same without partitioning: what the partition split costs.
        let t = Instant::now();
        rt.block_on(write_all(
            dir.path(),
            &format!("unpartitioned_{round}"),
            &schema,
            unpartitioned.clone(),
            &batches,
        ));
        flat_times.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        direct_bytes = parquet_direct(&dir.path().join("direct.parquet"), &batches);
        direct_times.push(t.elapsed().as_secs_f64());
    }
    let (t_sink, t_unpartitioned, t_direct) =
        (median(sink_times), median(flat_times), median(direct_times));
    let mb = |bytes: f64, secs: f64| bytes / secs / 1e6;
    println!(
        "sink bench: {EVENTS} fraud events, {:.0} MB of JSON",
        json_bytes as f64 / 1e6
    );
    println!(
        "TableSink (write + close + commit): {:.0} JSON MB/s in, {:.1} Parquet MB/s out ({:.1} MB, {:.2} s)",
        mb(json_bytes as f64, t_sink),
        mb(sink_bytes as f64, t_sink),
        sink_bytes as f64 / 1e6,
        t_sink
    );
    println!(
        "TableSink on an unpartitioned table: {:.0} JSON MB/s in ({:.2} s)",
        mb(json_bytes as f64, t_unpartitioned),
        t_unpartitioned
    );
    println!(
        "parquet crate alone, same batches and settings: {:.0} JSON MB/s, {:.1} Parquet MB/s ({:.1} MB, {:.2} s); ratio sink / parquet = {:.2}",
        mb(json_bytes as f64, t_direct),
        mb(direct_bytes as f64, t_direct),
        direct_bytes as f64 / 1e6,
        t_direct,
        t_direct / t_sink
    );

    // Files and bytes per commit at the default roll size (128 MB read).
    let per_event = ipc_bytes as f64 / EVENTS as f64;
    let roll_events = (128.0 * 1024.0 * 1024.0 / per_event) as u64;
    println!(
        "a default 128 MB roll holds ~{roll_events} events: 1 data file per day partition touched, ~{:.1} MB of Parquet",
        sink_bytes as f64 / EVENTS as f64 * roll_events as f64 / 1e6
    );

    // Commit latency as the table's history grows (mostly empty ranges:
    // the commit path alone), with all history kept, then with expiry
    // keeping the newest 100 snapshots (the default keeps a day, and at
    // least 100: a long-running table is in this steady state).
    let small = &batches[..1];
    for (label, retention) in [
        ("all history kept", None),
        (
            "expiry keeping 100",
            Some(pipe_sink::SnapshotRetention {
                max_age: std::time::Duration::ZERO,
                retain_last: 100,
                max_count: 100,
            }),
        ),
    ] {
        let table = format!("history_{}", retention.map_or(0, |r| r.retain_last));
        let (lat, metadata_bytes) = rt.block_on(async {
            let options = WriteOptions {
                retention,
                ..WriteOptions::default()
            };
            let mut sink = open(dir.path(), &table, &schema, options).await;
            let mut lat = Vec::with_capacity(commits);
            for i in 0..commits as u64 {
                let files = if i % 100 == 0 {
                    sink.write(&small[0]).await.expect("write");
                    sink.close_files().await.expect("close")
                } else {
                    Vec::new()
                };
                let t = Instant::now();
                sink.commit(OffsetRange { first: i, last: i }, &files)
                    .await
                    .expect("commit");
                lat.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let catalog = open_catalog(&CatalogSettings::local(dir.path()))
                .await
                .expect("catalog");
            let loaded = catalog.load_table(sink.ident()).await.expect("load");
            let location = loaded.metadata_location().expect("metadata location");
            let bytes = std::fs::metadata(location.trim_start_matches("file://"))
                .map(|m| m.len())
                .unwrap_or(0);
            (lat, bytes)
        });
        let around = |n: usize| {
            let from = n.saturating_sub(10).min(lat.len().saturating_sub(20));
            let mut w: Vec<f64> = lat[from..(from + 20).min(lat.len())].to_vec();
            w.sort_by(f64::total_cmp);
            w[w.len() / 2]
        };
        let (at50, atn) = (around(50), around(commits));
        println!(
            "commit latency, {label} (median of 20): at snapshot 50 {at50:.1} ms, at snapshot {commits} {atn:.1} ms; ratio {:.2}; metadata JSON at the end {:.0} KB",
            atn / at50,
            metadata_bytes as f64 / 1e3
        );
    }
}
