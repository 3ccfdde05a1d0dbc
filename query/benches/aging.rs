//! How a table committed every few seconds ages, and what maintenance
//! does about it (issue 17): the same events written into `bench.small`
//! by COMMITS commits of 500 events each (what a 10 s roll makes), and
//! into `bench.big` by one commit, with `TableSink`'s default options and
//! maintenance on as `pipe serve` runs it (old metadata files deleted,
//! snapshots expired by count, manifests merged, compaction in the
//! background), into a fresh local warehouse (SQLite catalog, folder).
//! The sink's hourly full compaction is run every `PIPE_BENCH_FULL_EVERY`
//! commits (default 360: an hour of a 10 s roll; 0 for never), in line
//! between commits since the bench commits back to back (in `pipe serve`
//! it runs in the background like the other runs). Then it prints, once
//! as the sink's own triggers left the table and once more after an
//! on-demand run (every small file compacted, manifests merged,
//! snapshots expired):
//!
//! - each query's time on `small` and on `big` (`QueryEngine`, catalog and
//!   planning included; the median of 9 runs after a warm-up) and the
//!   ratio;
//! - bytes on storage: metadata (metadata.json, manifests, manifest lists)
//!   and data, and metadata ÷ data, for each table;
//! - commit latency of `small`: the median over commits 41..=60 and over
//!   the last 20, each timed once background maintenance finished (the
//!   commit's own cost), and their ratio; and over the other commits,
//!   made while maintenance ran beside them, p50, p99 and the slowest
//!   (what a commit waited at most);
//! - the on-demand compaction's CPU time per GB rewritten.
//!
//! A program that prints figures, not a test.
//!
//! ```sh
//! cargo bench -p pipe-query --bench aging -- [COMMITS]   # 2000 by default
//! ```

use std::path::Path;
use std::time::Instant;

use pipe_query::{Caches, QueryEngine, Reader};
use pipe_sink::maintenance::compact::{compact, CompactionPolicy};
use pipe_sink::maintenance::expire::expire;
use pipe_sink::maintenance::run::{run, RunOptions};
use pipe_sink::maintenance::{Committer, SnapshotRetention};
use pipe_sink::{open_catalog, CatalogSettings, OffsetRange, TableSink, WriteOptions};

#[path = "../../benches/fraud_events.rs"]
mod fraud_events;
mod shop;

const PER_COMMIT: usize = 500;
const RUNS: usize = 9;
const QUERIES: [(&str, &str); 4] = [
    ("count(*)", "SELECT count(*) AS n FROM bench.{t}"),
    (
        "group by location: count, sum",
        "SELECT location, count(*) AS n, sum(amount) AS total FROM bench.{t} GROUP BY location",
    ),
    (
        "lookup of an absent transaction_id",
        "SELECT * FROM bench.{t} WHERE transaction_id = 'absent'",
    ),
    (
        "count(*) where is_fraud",
        "SELECT count(*) AS n FROM bench.{t} WHERE is_fraud",
    ),
];

async fn sink(dir: &Path, table: &str) -> TableSink {
    let settings = CatalogSettings::local(dir);
    let catalog = open_catalog(&settings).await.expect("the catalog");
    let committer = Committer::open(&settings).await.expect("the committer");
    TableSink::open(
        catalog,
        "bench",
        table,
        "bench",
        "sink",
        &shop::events_schema(),
        WriteOptions {
            committer: Some(committer),
            ..WriteOptions::default()
        },
    )
    .await
    .expect("the sink")
}

/// The bench's folder: removed at the end unless kept.
enum Kept {
    Temp(tempfile::TempDir),
    Path(std::path::PathBuf),
}

impl Kept {
    fn path(&self) -> &Path {
        match self {
            Kept::Temp(d) => d.path(),
            Kept::Path(p) => p,
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Bytes of table `table` under `dir`: metadata (and of it: metadata.json
/// files, manifest lists, manifests) and data.
fn storage(dir: &Path, table: &str) -> (u64, u64, [u64; 3]) {
    fn walk(path: &Path, table: &str, inside: bool, sums: &mut (u64, u64, [u64; 3])) {
        let Ok(entries) = std::fs::read_dir(path) else {
            return;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                walk(&p, table, inside || name == table, sums);
            } else if inside {
                let in_metadata = p.components().any(|c| c.as_os_str() == "metadata");
                match in_metadata {
                    true => {
                        sums.0 += meta.len();
                        let kind = if name.ends_with(".metadata.json") {
                            0
                        } else if name.starts_with("snap-") {
                            1
                        } else {
                            2
                        };
                        sums.2[kind] += meta.len();
                    }
                    false => sums.1 += meta.len(),
                }
            }
        }
    }
    let mut sums = (0, 0, [0; 3]);
    walk(dir, table, false, &mut sums);
    sums
}

/// CPU seconds this process has used (user + system).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let after = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

async fn report(engine: &QueryEngine, dir: &Path) {
    println!(
        "{:<36} {:>10} {:>10} {:>8}",
        "query", "small ms", "big ms", "ratio"
    );
    for (name, sql) in QUERIES {
        let mut times = [0.0f64; 2];
        for (i, table) in ["small", "big"].into_iter().enumerate() {
            let sql = sql.replace("{t}", table);
            let mut runs = Vec::new();
            for run in 0..=RUNS {
                let at = Instant::now();
                engine.read_only(&sql, 10).await.expect("the query");
                if run > 0 {
                    runs.push(at.elapsed().as_secs_f64() * 1e3);
                }
            }
            times[i] = median(runs);
        }
        println!(
            "{name:<36} {:>10.1} {:>10.1} {:>7.1}×",
            times[0],
            times[1],
            times[0] / times[1]
        );
    }
    println!(
        "\n{:<8} {:>12} {:>22} {:>9} {:>16}",
        "table", "metadata MB", "(json, lists, manif.)", "data MB", "metadata ÷ data"
    );
    for table in ["small", "big"] {
        let (metadata, data, [json, lists, manifests]) = storage(dir, table);
        let mb = |b: u64| b as f64 / 1e6;
        println!(
            "{table:<8} {:>12.2} {:>22} {:>9.1} {:>16.3}",
            mb(metadata),
            format!("({:.2}, {:.2}, {:.2})", mb(json), mb(lists), mb(manifests)),
            mb(data),
            metadata as f64 / data as f64
        );
    }
}

/// The sink's hourly background run: every small file compacted, then
/// manifests merged.
async fn hourly_run(dir: &Path) {
    let settings = CatalogSettings::local(dir);
    let catalog = open_catalog(&settings).await.expect("the catalog");
    let committer = Committer::open(&settings).await.expect("the committer");
    let ident = iceberg::TableIdent::from_strs(["bench", "small"]).expect("a name");
    let options = RunOptions {
        compact: true,
        full: true,
        merge: true,
        expire: None,
        sweep: None,
        ledgered: Default::default(),
        dry_run: false,
        owns_metadata_files: true,
        trigger: pipe_sink::maintenance::run::AFTER_COMMITS,
        next: String::new(),
    };
    let layout = WriteOptions::default().layout();
    let record = run(&committer, &catalog, &ident, &layout, &options).await;
    assert_eq!(record.outcome, "ok", "the hourly run: {record:?}");
}

#[tokio::main]
async fn main() {
    let commits: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    let total = commits * PER_COMMIT;
    let dir = tempfile::tempdir().expect("a folder");
    // PIPE_BENCH_KEEP=1: leave the warehouse for a look.
    let dir = match std::env::var_os("PIPE_BENCH_KEEP") {
        Some(_) => {
            let kept = dir.keep();
            println!("warehouse kept in {}", kept.display());
            Kept::Path(kept)
        }
        None => Kept::Temp(dir),
    };
    let schema = shop::events_schema();

    let mut small = sink(dir.path(), "small").await;
    let mut latencies = Vec::with_capacity(commits);
    let started = Instant::now();
    // Commits 41..=60 and the last 20 are also timed on a quiet machine
    // (background maintenance finished first, as a 10 s roll would find
    // it), to compare the commit's own cost as the table ages.
    let quiet = |c: usize| (40..60).contains(&c) || c >= commits.saturating_sub(20);
    let mut quiet_latencies = Vec::new();
    let full_every: usize = std::env::var("PIPE_BENCH_FULL_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(360);
    let mut full_runs = Vec::new();
    for c in 0..commits {
        if quiet(c) {
            small.wait_for_maintenance().await.expect("maintenance");
        }
        if full_every > 0 && c > 0 && c % full_every == 0 {
            small.wait_for_maintenance().await.expect("maintenance");
            let at = Instant::now();
            hourly_run(dir.path()).await;
            full_runs.push(at.elapsed().as_secs_f64());
        }
        let from = c * PER_COMMIT;
        let batch = shop::events(&schema, from, from + PER_COMMIT, total);
        small.write(&batch).await.expect("a write");
        let files = small.close_files().await.expect("closing files");
        let at = Instant::now();
        let range = OffsetRange {
            first: c as u64,
            last: c as u64,
        };
        small.commit(range, &files).await.expect("a commit");
        let ms = at.elapsed().as_secs_f64() * 1e3;
        match quiet(c) {
            true => quiet_latencies.push(ms),
            false => latencies.push(ms),
        }
    }
    println!(
        "bench.small: {total} events in {commits} commits of {PER_COMMIT}, {:.0} s",
        started.elapsed().as_secs_f64()
    );
    match full_runs.is_empty() {
        true => println!("no full compaction run (PIPE_BENCH_FULL_EVERY={full_every})"),
        false => println!(
            "{} full compaction runs (every {full_every} commits, as hourly at a 10 s roll), {:.1} s in all, the last at commit {}",
            full_runs.len(),
            full_runs.iter().sum::<f64>(),
            full_runs.len() * full_every
        ),
    }
    // A compaction still running is let finish, as the server would.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    drop(small);
    let mut big = sink(dir.path(), "big").await;
    for from in (0..total).step_by(8192) {
        let batch = shop::events(&schema, from, (from + 8192).min(total), total);
        big.write(&batch).await.expect("a write");
    }
    let files = big.close_files().await.expect("closing files");
    big.commit(OffsetRange { first: 0, last: 0 }, &files)
        .await
        .expect("the commit");
    println!("bench.big: the same events in one commit");

    let settings = CatalogSettings::local(dir.path());
    let catalog = open_catalog(&settings).await.expect("the catalog");
    // As `pipe serve` queries a SQL catalog: tables kept between queries
    // while the catalog's row still names their metadata file.
    let probe = Committer::open(&settings).await.expect("the probe");
    let caches = Caches::default().probing(probe);
    let engine = QueryEngine::with_caches(catalog.clone(), Reader::default(), &caches)
        .await
        .expect("the engine");
    println!("\n## as the sink's own maintenance left bench.small\n");
    report(&engine, dir.path()).await;
    if commits >= 80 {
        let early = median(quiet_latencies[..20].to_vec());
        let late = median(quiet_latencies[20..].to_vec());
        let slowest = latencies.iter().copied().fold(0.0, f64::max);
        let mut sorted = latencies.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let p50 = sorted[sorted.len() / 2];
        let p99 = sorted[sorted.len() * 99 / 100];
        println!(
            "\ncommit latency of bench.small, nothing else running: {early:.1} ms around commit 50, {late:.1} ms over the last 20 (ratio {:.2})",
            late / early
        );
        println!(
            "with maintenance running beside the commits: p50 {p50:.1} ms, p99 {p99:.1} ms, slowest {slowest:.1} ms"
        );
    }

    // On demand: every small file compacted, then manifests merged and
    // snapshots expired by the sink's next commit.
    let committer = Committer::open(&settings).await.expect("the committer");
    let ident = iceberg::TableIdent::from_strs(["bench", "small"]).expect("a name");
    let table = catalog.load_table(&ident).await.expect("the table");
    let layout = WriteOptions::default().layout();
    let policy = CompactionPolicy::of(&table, &layout).full();
    let (cpu, at) = (cpu_secs(), Instant::now());
    let done = compact(&committer, &catalog, &table, &layout, &policy)
        .await
        .expect("the compaction");
    let (cpu, wall) = (cpu_secs() - cpu, at.elapsed().as_secs_f64());
    let table = catalog.load_table(&ident).await.expect("the table");
    let retention = SnapshotRetention::default();
    expire(&catalog, &table, &retention, true, true)
        .await
        .expect("the expiry");
    match done {
        Some((_, c)) => println!(
            "\n## after an on-demand compaction: {} files ({:.1} MB) into {} ({:.1} MB) in {wall:.1} s, {cpu:.1} CPU s = {:.0} CPU s per GB rewritten\n",
            c.files_removed,
            c.bytes_removed as f64 / 1e6,
            c.files_added,
            c.bytes_added as f64 / 1e6,
            cpu / (c.bytes_removed as f64 / 1e9)
        ),
        None => println!("\n## after an on-demand compaction: nothing to do\n"),
    }
    let engine = QueryEngine::with_caches(catalog.clone(), Reader::default(), &caches)
        .await
        .expect("the engine");
    report(&engine, dir.path()).await;
}
