//! Tables kept between queries, and the probe that tells whether a kept
//! table is still the catalog's current one.

use std::sync::Arc;

use arrow::array::StringArray;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use pipe_query::{Caches, QueryEngine, Reader};
use pipe_sink::maintenance::Committer;
use pipe_sink::{open_catalog, CatalogSettings, OffsetRange, TableSink, WriteOptions};

use crate::{timestamps, ts_field};

async fn count(catalog: &Arc<dyn iceberg::Catalog>, caches: &Caches) -> pipe_query::Result<i64> {
    let engine = QueryEngine::with_caches(catalog.clone(), Reader::default(), caches).await?;
    let (answer, _) = engine
        .read_only("SELECT count(*) AS n FROM default.events", 10)
        .await?;
    let rendered = pipe_query::render(&answer.batches, pipe_query::OutputFormat::Csv)?;
    Ok(rendered.lines().nth(1).unwrap().parse().unwrap())
}

#[tokio::test]
async fn a_probed_table_is_read_again_only_when_the_catalog_moved() {
    let dir = tempfile::tempdir().unwrap();
    let settings = CatalogSettings::local(dir.path());
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        ts_field(),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
            timestamps([1_700_000_000_000_000; 3]),
        ],
    )
    .unwrap();
    let catalog = open_catalog(&settings).await.unwrap();
    let mut sink = TableSink::open(
        catalog.clone(),
        "default",
        "events",
        "fixture",
        "s",
        &schema,
        WriteOptions::default(),
    )
    .await
    .unwrap();
    let commit = |at: u64| OffsetRange {
        first: at,
        last: at,
    };
    sink.write(&batch).await.unwrap();
    let files = sink.close_files().await.unwrap();
    sink.commit(commit(0), &files).await.unwrap();

    let probed = Caches::default().probing(Committer::open(&settings).await.unwrap());
    assert_eq!(count(&catalog, &probed).await.unwrap(), 3);

    // With the metadata file gone, only a session that does not read it
    // again can answer: the probed one, from the table it kept.
    let ident = iceberg::TableIdent::from_strs(["default", "events"]).unwrap();
    let current = catalog.load_table(&ident).await.unwrap();
    let file = current
        .metadata_location()
        .unwrap()
        .trim_start_matches("file://")
        .to_string();
    std::fs::rename(&file, format!("{file}.away")).unwrap();
    assert_eq!(count(&catalog, &probed).await.unwrap(), 3);
    assert!(
        count(&catalog, &Caches::default()).await.is_err(),
        "an unprobed session reads the metadata file for every query"
    );
    std::fs::rename(format!("{file}.away"), &file).unwrap();

    // A commit moves the catalog's row: the next query loads the new table.
    sink.write(&batch).await.unwrap();
    let files = sink.close_files().await.unwrap();
    sink.commit(commit(1), &files).await.unwrap();
    assert_eq!(count(&catalog, &probed).await.unwrap(), 6);
}
