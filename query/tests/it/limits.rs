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
