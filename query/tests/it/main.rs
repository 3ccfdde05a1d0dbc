//! Queries over a table written by the sink, on a local warehouse, and the
//! sqllogictest files (`slt`).

mod pruning;
mod slt;

use std::sync::Arc;

use arrow::array::{Float64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use pipe_query::{render, OutputFormat, QueryEngine};
use pipe_sink::{open_catalog, CatalogSettings, OffsetRange, TableSink, WriteOptions};

#[tokio::test]
async fn select_show_and_render() {
    let dir = tempfile::tempdir().unwrap();
    let settings = CatalogSettings::local(dir.path());
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, true),
        Field::new(
            "__ingest_ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            false,
        ),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["a", "b", "a"])),
            Arc::new(Float64Array::from(vec![Some(1.5), None, Some(2.0)])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![1_700_000_000_000_000; 3])
                    .with_timezone("+00:00"),
            ),
        ],
    )
    .unwrap();
    let catalog = open_catalog(&settings).await.unwrap();
    let mut sink = TableSink::open(
        catalog.clone(),
        "default",
        "ecommerce",
        "p",
        "s",
        &schema,
        WriteOptions::default(),
    )
    .await
    .unwrap();
    sink.write(&batch).await.unwrap();
    let files = sink.close_files().await.unwrap();
    sink.commit(OffsetRange { first: 0, last: 0 }, &files)
        .await
        .unwrap();

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
