//! Queries over a table whose schema evolved: files written before a
//! column was widened or added are read, and never pruned by mistake.

use std::sync::Arc;

use arrow::array::{Array, Int32Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use pipe_query::QueryEngine;
use pipe_sink::maintenance::Committer;
use pipe_sink::{open_catalog, CatalogSettings, OffsetRange, TableSink, WriteOptions};

use crate::{timestamps, ts_field};

async fn commit(dir: &std::path::Path, schema: &SchemaRef, columns: Vec<Arc<dyn Array>>, at: u64) {
    let settings = CatalogSettings::local(dir);
    let catalog = open_catalog(&settings).await.unwrap();
    let options = WriteOptions {
        committer: Some(Committer::open(&settings).await.unwrap()),
        // One column's identity partitions: pruning by partition too.
        partition_by: vec!["n".parse().unwrap()],
        ..WriteOptions::default()
    };
    let mut sink = TableSink::open(catalog, "default", "events", "p", "s", schema, options)
        .await
        .unwrap();
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    sink.write(&batch).await.unwrap();
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

#[tokio::test]
async fn filters_on_widened_and_added_columns_keep_the_older_files() {
    let dir = tempfile::tempdir().unwrap();
    let v1: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("n", DataType::Int32, true),
        ts_field(),
    ]));
    commit(
        dir.path(),
        &v1,
        vec![
            Arc::new(Int32Array::from((0..10).collect::<Vec<i32>>())),
            timestamps([1_700_000_000_000_000; 10]),
        ],
        0,
    )
    .await;
    let v2: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("n", DataType::Int64, true),
        ts_field(),
        Field::new("tag", DataType::Utf8, true),
    ]));
    commit(
        dir.path(),
        &v2,
        vec![
            Arc::new(Int64Array::from((0..10).collect::<Vec<i64>>())),
            timestamps([1_700_000_000_000_000; 10]),
            Arc::new(StringArray::from(vec![Some("new"); 10])),
        ],
        1,
    )
    .await;

    let catalog = open_catalog(&CatalogSettings::local(dir.path()))
        .await
        .unwrap();
    let engine = QueryEngine::new(catalog).await.unwrap();
    for (filter, expected) in [
        ("true", 20),
        ("n >= 0", 20),
        ("n < 5", 10),
        ("n = 3", 2),
        ("n BETWEEN 0 AND 100", 20),
        ("tag IS NULL", 10),
        ("tag = 'new'", 10),
        ("tag = 'new' OR n < 5", 15),
    ] {
        let sql = format!("SELECT count(*) AS c FROM default.events WHERE {filter}");
        let (answer, _) = engine.read_only(&sql, 10).await.unwrap();
        let csv = pipe_query::render(&answer.batches, pipe_query::OutputFormat::Csv).unwrap();
        assert_eq!(csv, format!("c\n{expected}\n"), "{filter}");
    }
}
