//! Queries over a table written by the sink, on a local warehouse, and the
//! sqllogictest files (`slt`).

mod caches;
mod evolution;
mod limits;
mod pruning;
mod slt;

use std::sync::Arc;

use arrow::array::{Float64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use pipe_query::{render, OutputFormat, QueryEngine};
use pipe_sink::{open_catalog, CatalogSettings, OffsetRange, TableSink, WriteOptions};

/// The `__ingest_ts` column sinks add.
pub(crate) fn ts_field() -> Field {
    Field::new(
        "__ingest_ts",
        DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        false,
    )
}

/// Values of an `__ingest_ts` column, in microseconds.
pub(crate) fn timestamps(values: impl IntoIterator<Item = i64>) -> Arc<TimestampMicrosecondArray> {
    Arc::new(TimestampMicrosecondArray::from_iter_values(values).with_timezone("+00:00"))
}

/// Writes `namespace.table` through the sink: each slice of `commits` is
/// one commit (one snapshot), at buffer offsets 0, 1, ….
pub(crate) async fn write_table(
    catalog: Arc<dyn iceberg::Catalog>,
    namespace: &str,
    table: &str,
    schema: &SchemaRef,
    commits: &[&[RecordBatch]],
) {
    write_table_with(
        catalog,
        namespace,
        table,
        schema,
        commits,
        WriteOptions::default(),
    )
    .await
}

/// [`write_table`] with the sink's `options`.
pub(crate) async fn write_table_with(
    catalog: Arc<dyn iceberg::Catalog>,
    namespace: &str,
    table: &str,
    schema: &SchemaRef,
    commits: &[&[RecordBatch]],
    options: WriteOptions,
) {
    let mut sink = TableSink::open(catalog, namespace, table, "fixture", "s", schema, options)
        .await
        .unwrap();
    for (at, batches) in (0u64..).zip(commits) {
        for b in batches.iter() {
            sink.write(b).await.unwrap();
        }
        let files = sink.close_files().await.unwrap();
        sink.commit(
            OffsetRange {
                first: at,
                last: at,
            },
            &files,
        )
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn select_show_and_render() {
    let dir = tempfile::tempdir().unwrap();
    let settings = CatalogSettings::local(dir.path());
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, true),
        ts_field(),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["a", "b", "a"])),
            Arc::new(Float64Array::from(vec![Some(1.5), None, Some(2.0)])),
            timestamps([1_700_000_000_000_000; 3]),
        ],
    )
    .unwrap();
    let catalog = open_catalog(&settings).await.unwrap();
    write_table(
        catalog.clone(),
        "default",
        "ecommerce",
        &schema,
        &[&[batch]],
    )
    .await;

    let engine = QueryEngine::new(catalog).await.unwrap();
    let out = engine
        .sql("SELECT user_id, sum(amount) AS total FROM default.ecommerce GROUP BY user_id ORDER BY user_id")
        .await
        .unwrap();
    assert_eq!(
        render(&out, OutputFormat::Json).unwrap(),
        r#"[{"user_id":"a","total":3.5},{"user_id":"b"}]"#
    );
    assert_eq!(
        render(&out, OutputFormat::Csv).unwrap(),
        "user_id,total\na,3.5\nb,\n"
    );
    assert_eq!(
        render(&out, OutputFormat::NdJson).unwrap(),
        "{\"user_id\":\"a\",\"total\":3.5}\n{\"user_id\":\"b\"}\n"
    );
    assert_eq!(pipe_query::row_count(&out), 2);
    assert!(render(&out, OutputFormat::Table)
        .unwrap()
        .contains("| a       | 3.5   |"));
    // A table that fits is the same table; one that does not, a row at a
    // time.
    assert_eq!(
        pipe_query::render_table(&out, 80).unwrap(),
        render(&out, OutputFormat::Table).unwrap()
    );
    assert_eq!(
        pipe_query::render_table(&out, 10).unwrap(),
        "-[ row 1 ]-\nuser_id | a\ntotal   | 3.5\n-[ row 2 ]-\nuser_id | b\ntotal   | ".trim_end()
    );

    let tables = engine.sql("SHOW TABLES").await.unwrap();
    assert!(render(&tables, OutputFormat::Csv)
        .unwrap()
        .contains("default,ecommerce"));

    let err = engine
        .sql("SELECT nope FROM default.ecommerce")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), pipe_query::ErrorKind::InvalidInput, "{err}");
    let err = engine
        .sql("SELECT * FROM default.missing")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), pipe_query::ErrorKind::InvalidInput, "{err}");
    // A literal that does not parse is the query's fault too.
    let err = engine
        .sql("SELECT count(*) FROM default.ecommerce WHERE __ingest_ts > 'notatime'")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), pipe_query::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("notatime"), "{err}");
}
