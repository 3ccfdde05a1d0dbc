//! Sessions under [`Limits`]: a query past the memory pool spills when it
//! may and completes, and fails with a clear error when it may not.

use pipe_query::{Caches, Error, Limits, QueryEngine, Reader, Spill};
use pipe_sink::{open_catalog, CatalogSettings};

/// Three million groups: some 100 MB of hash table, far over the pool.
const MANY_GROUPS: &str =
    "SELECT count(*) AS n FROM (SELECT value % 3000000 AS k, count(*) FROM range(6000000) GROUP BY k)";

async fn engine(dir: &std::path::Path, limits: &Limits) -> QueryEngine {
    let catalog = open_catalog(&CatalogSettings::local(dir)).await.unwrap();
    let caches = Caches::with_limits(limits).unwrap();
    QueryEngine::with_caches(catalog, Reader::default(), &caches)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_aggregation_spills_within_its_limits() {
    let dir = tempfile::tempdir().unwrap();
    let spill = dir.path().join("spill");
    std::fs::create_dir_all(&spill).unwrap();
    let limits = Limits {
        memory_bytes: 32 << 20,
        spill: Some(Spill {
            dir: spill,
            max_bytes: 2 << 30,
        }),
        max_value_bytes: 64 << 20,
    };
    let out = engine(dir.path(), &limits)
        .await
        .sql(MANY_GROUPS)
        .await
        .unwrap();
    assert_eq!(
        pipe_query::render(&out, pipe_query::OutputFormat::Json).unwrap(),
        r#"[{"n":3000000}]"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_spilling_or_past_the_spill_limit_the_query_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let spill = dir.path().join("spill");
    std::fs::create_dir_all(&spill).unwrap();
    for spill in [
        None,
        Some(Spill {
            dir: spill,
            max_bytes: 1 << 20,
        }),
    ] {
        let limits = Limits {
            memory_bytes: 32 << 20,
            spill,
            max_value_bytes: 64 << 20,
        };
        let e = engine(dir.path(), &limits)
            .await
            .sql(MANY_GROUPS)
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::ResourcesExhausted(_)),
            "{limits:?}: {e:?}"
        );
        assert_eq!(e.kind(), pipe_query::ErrorKind::Unavailable);
    }
}

/// A function that makes a huge value from a small query (`repeat('x',
/// 1.5e9)` allocates 1.5 GB outside the memory pool), or a constant copied
/// into every row of a batch past the cap, fails with 400 naming the
/// setting; the same within the cap runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_values_from_small_queries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        memory_bytes: 32 << 20,
        spill: None,
        max_value_bytes: 1 << 20,
    };
    let engine = engine(dir.path(), &limits).await;
    let e = engine
        .read_only("SELECT repeat('x', 1500000000) AS v", 10)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), pipe_query::ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("max_value_bytes"), "{e}");
    // A constant copied into every row of a batch: folded at planning
    // (600 KB, within the cap per call), or written as a literal.
    let literal = format!("SELECT '{}' AS v FROM range(3)", "x".repeat(20_000));
    for sql in [
        "SELECT repeat('x', 600000) AS v FROM range(10)",
        literal.as_str(),
        // Not an output column: an aggregate's argument is copied per row too.
        "SELECT length(max(repeat('x', 600000))) AS n FROM range(20000)",
    ] {
        let e = engine.read_only(sql, 10).await.unwrap_err();
        assert_eq!(e.kind(), pipe_query::ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains("copied into each"), "{e}");
    }
    let (answer, _) = engine
        .read_only("SELECT 'abc' AS v FROM range(3)", 10)
        .await
        .unwrap();
    assert_eq!(pipe_query::row_count(&answer.batches), 3);
    // A long pattern or operand in a filter is never copied per row: it
    // runs (review 4 finding I).
    let long = "x".repeat(20_000);
    for sql in [
        format!("SELECT value FROM range(3) WHERE CAST(value AS VARCHAR) LIKE '%{long}%'"),
        format!("SELECT value FROM range(3) WHERE CAST(value AS VARCHAR) <> '{long}'"),
        format!("SELECT value FROM range(3) WHERE CAST(value AS VARCHAR) IN ('{long}', '1')"),
    ] {
        let (answer, _) = engine.read_only(&sql, 10).await.unwrap();
        assert!(pipe_query::row_count(&answer.batches) <= 3, "{sql}");
    }
    let (answer, _) = engine
        .read_only("SELECT length(repeat('x', 1000)) AS n", 10)
        .await
        .unwrap();
    assert_eq!(
        pipe_query::render(&answer.batches, pipe_query::OutputFormat::Json).unwrap(),
        r#"[{"n":1000}]"#
    );
}

/// An answer is held whole (and rendered): its batches count against the
/// pool as they arrive, so many rows of large values fail with the pool's
/// error instead of outgrowing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_answer_counts_against_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        memory_bytes: 32 << 20,
        spill: None,
        max_value_bytes: 64 << 20,
    };
    let engine = engine(dir.path(), &limits).await;
    let sql = "SELECT repeat(CAST(value AS VARCHAR), 1000) AS v FROM range(100000)";
    let e = engine.read_only(sql, 100_000).await.unwrap_err();
    assert!(matches!(e, Error::ResourcesExhausted(_)), "{e:?}");
    let (answer, truncated) = engine.read_only(sql, 100).await.unwrap();
    assert_eq!(
        (pipe_query::row_count(&answer.batches), truncated),
        (100, true)
    );
}
