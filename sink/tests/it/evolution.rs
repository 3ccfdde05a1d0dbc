//! A table's schema evolves when a sink opens with an output that adds
//! columns, widens numbers or lets a required column be null.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Float64Array, Int32Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use iceberg::spec::{PrimitiveType, Type};
use pipe_sink::maintenance::Committer;
use pipe_sink::{open_catalog, CatalogSettings, OffsetRange, TableSink, WriteOptions};

fn ts() -> (Field, Arc<dyn Array>, Arc<dyn Array>) {
    let field = Field::new(
        "__ingest_ts",
        DataType::Timestamp(
            arrow::datatypes::TimeUnit::Microsecond,
            Some("+00:00".into()),
        ),
        false,
    );
    let values = |n: usize| -> Arc<dyn Array> {
        Arc::new(
            arrow::array::TimestampMicrosecondArray::from(vec![1_700_000_000_000_000; n])
                .with_timezone("+00:00"),
        )
    };
    (field, values(3), values(2))
}

async fn open(dir: &std::path::Path, output: &SchemaRef) -> pipe_sink::Result<TableSink> {
    let settings = CatalogSettings::local(dir);
    let catalog = open_catalog(&settings).await.unwrap();
    let options = WriteOptions {
        committer: Some(Committer::open(&settings).await.unwrap()),
        ..WriteOptions::default()
    };
    TableSink::open(catalog, "default", "events", "p", "sink", output, options).await
}

async fn commit(sink: &mut TableSink, batch: &RecordBatch, at: u64) {
    sink.write(batch).await.unwrap();
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
async fn added_columns_wider_numbers_and_optional_columns_evolve_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let (ts_field, three, two) = ts();
    let v1: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("name", DataType::Utf8, false),
        ts_field.clone(),
    ]));
    let mut sink = open(dir.path(), &v1).await.unwrap();
    let batch = RecordBatch::try_new(
        v1.clone(),
        vec![
            Arc::new(Int32Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
            three,
        ],
    )
    .unwrap();
    commit(&mut sink, &batch, 0).await;
    let before = sink_table(dir.path()).await;
    let ids = |t: &iceberg::table::Table, name: &str| {
        t.metadata()
            .current_schema()
            .field_by_name(name)
            .unwrap()
            .id
    };
    drop(sink);

    let v2: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("score", DataType::Float64, true),
        ts_field.clone(),
    ]));
    let mut sink = open(dir.path(), &v2).await.unwrap();
    let batch = RecordBatch::try_new(
        v2.clone(),
        vec![
            Arc::new(Int64Array::from(vec![5_000_000_000, 5])),
            Arc::new(StringArray::from(vec![None, Some("e")])),
            Arc::new(Float64Array::from(vec![Some(0.5), None])),
            two,
        ],
    )
    .unwrap();
    commit(&mut sink, &batch, 1).await;
    drop(sink);

    let after = sink_table(dir.path()).await;
    let schema = after.metadata().current_schema();
    let id = schema.field_by_name("id").unwrap();
    assert_eq!(*id.field_type, Type::Primitive(PrimitiveType::Long));
    assert!(!schema.field_by_name("name").unwrap().required);
    let score = schema.field_by_name("score").unwrap();
    assert_eq!(*score.field_type, Type::Primitive(PrimitiveType::Double));
    assert_eq!(ids(&before, "id"), ids(&after, "id"), "field ids are kept");
    assert_eq!(ids(&before, "name"), ids(&after, "name"));

    // iceberg-rust's own reader, by field id: the old file's ints widened,
    // its missing `score` null.
    let batches: Vec<RecordBatch> = after
        .scan()
        .select(["id", "score"])
        .build()
        .unwrap()
        .to_arrow()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut rows: Vec<(i64, Option<f64>)> = batches
        .iter()
        .flat_map(|b| {
            let ids = b.column(0).as_primitive::<Int64Type>().clone();
            let scores = b
                .column(1)
                .as_primitive::<arrow::datatypes::Float64Type>()
                .clone();
            (0..b.num_rows())
                .map(|i| (ids.value(i), (!scores.is_null(i)).then(|| scores.value(i))))
                .collect::<Vec<_>>()
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    assert_eq!(
        rows,
        vec![
            (1, None),
            (2, None),
            (3, None),
            (5, None),
            (5_000_000_000, Some(0.5))
        ]
    );

    // A column of another type is no evolution: refused, and nothing of
    // the table changes, not even the column it could have added.
    let v3: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Int64, true),
        Field::new("extra", DataType::Boolean, true),
        ts_field,
    ]));
    let err = open(dir.path(), &v3).await.unwrap_err().to_string();
    assert!(err.contains("column `name`"), "{err}");
    let unchanged = sink_table(dir.path()).await;
    assert_eq!(
        unchanged.metadata().current_schema_id(),
        after.metadata().current_schema_id()
    );
}

async fn sink_table(dir: &std::path::Path) -> iceberg::table::Table {
    let catalog = open_catalog(&CatalogSettings::local(dir)).await.unwrap();
    let ident = iceberg::TableIdent::from_strs(["default", "events"]).unwrap();
    catalog.load_table(&ident).await.unwrap()
}

async fn open_partitioned(
    dir: &std::path::Path,
    output: &SchemaRef,
    partition_by: &[&str],
) -> pipe_sink::Result<TableSink> {
    let settings = CatalogSettings::local(dir);
    let catalog = open_catalog(&settings).await.unwrap();
    let options = WriteOptions {
        committer: Some(Committer::open(&settings).await.unwrap()),
        partition_by: partition_by.iter().map(|p| p.parse().unwrap()).collect(),
        ..WriteOptions::default()
    };
    TableSink::open(catalog, "default", "events", "p", "sink", output, options).await
}

/// A sink's `partition_by` changed: the table gets a new default spec for
/// new data (field ids of kept fields reused), files of both specs are
/// read; the same configuration again changes nothing, and a spec that
/// another engine set is kept.
#[tokio::test]
async fn a_changed_partition_by_evolves_the_spec_for_new_data() {
    let dir = tempfile::tempdir().unwrap();
    let (ts_field, three, two) = ts();
    let output: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("kind", DataType::Utf8, false),
        ts_field,
    ]));
    let batch = |kinds: Vec<&str>, ts: Arc<dyn Array>| {
        RecordBatch::try_new(output.clone(), vec![Arc::new(StringArray::from(kinds)), ts]).unwrap()
    };
    let mut sink = open_partitioned(dir.path(), &output, &["day(__ingest_ts)"])
        .await
        .unwrap();
    commit(&mut sink, &batch(vec!["a", "b", "a"], three), 0).await;
    drop(sink);
    let before = sink_table(dir.path()).await;
    assert_eq!(before.metadata().default_partition_spec_id(), 0);
    assert_eq!(
        before.metadata().properties()["pipe.partition-by"],
        "day(__ingest_ts)"
    );

    // A column the output lacks is refused before anything changes.
    let Err(e) = open_partitioned(dir.path(), &output, &["day(__ingest_ts)", "nope"]).await else {
        panic!("a partition field on a missing column is refused");
    };
    assert!(e.to_string().contains("no column `nope`"), "{e}");
    assert_eq!(
        sink_table(dir.path())
            .await
            .metadata()
            .default_partition_spec_id(),
        0
    );

    let wanted = ["day(__ingest_ts)", "identity(kind)"];
    let mut sink = open_partitioned(dir.path(), &output, &wanted)
        .await
        .unwrap();
    commit(&mut sink, &batch(vec!["a", "b"], two), 1).await;
    drop(sink);
    let after = sink_table(dir.path()).await;
    let spec = after.metadata().default_partition_spec();
    assert_eq!(spec.spec_id(), 1);
    let names: Vec<&str> = spec.fields().iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["__ingest_ts_day", "kind"]);
    let day_id = |s: &iceberg::spec::PartitionSpec| s.fields()[0].field_id;
    assert_eq!(
        day_id(spec),
        day_id(before.metadata().default_partition_spec()),
        "the kept field keeps its id"
    );
    let rows: usize = after
        .scan()
        .build()
        .unwrap()
        .to_arrow()
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .iter()
        .map(RecordBatch::num_rows)
        .sum();
    assert_eq!(rows, 5, "files of both specs");

    // Again: nothing to change.
    drop(
        open_partitioned(dir.path(), &output, &wanted)
            .await
            .unwrap(),
    );
    let again = sink_table(dir.path()).await;
    assert_eq!(again.metadata().partition_specs_iter().count(), 2);
    assert_eq!(again.metadata().default_partition_spec_id(), 1);

    // Another engine's spec (the table no longer records ours) is kept.
    let catalog = open_catalog(&CatalogSettings::local(dir.path()))
        .await
        .unwrap();
    let tx = iceberg::transaction::Transaction::new(&again);
    let tx = iceberg::transaction::ApplyTransactionAction::apply(
        tx.update_table_properties()
            .remove("pipe.partition-by".to_string()),
        tx,
    )
    .unwrap();
    tx.commit(catalog.as_ref()).await.unwrap();
    drop(
        open_partitioned(dir.path(), &output, &["day(__ingest_ts)"])
            .await
            .unwrap(),
    );
    let kept = sink_table(dir.path()).await;
    assert_eq!(kept.metadata().default_partition_spec_id(), 1, "kept");
}

/// Evolving to no partitioning: the files of the new (unpartitioned)
/// spec are committed under its id, not iceberg's default 0.
#[tokio::test]
async fn evolving_to_no_partitioning_writes_files_of_that_spec() {
    let dir = tempfile::tempdir().unwrap();
    let (ts_field, three, two) = ts();
    let output: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("kind", DataType::Utf8, false),
        ts_field,
    ]));
    let batch = |kinds: Vec<&str>, ts: Arc<dyn Array>| {
        RecordBatch::try_new(output.clone(), vec![Arc::new(StringArray::from(kinds)), ts]).unwrap()
    };
    let mut sink = open_partitioned(dir.path(), &output, &["day(__ingest_ts)"])
        .await
        .unwrap();
    commit(&mut sink, &batch(vec!["a", "b", "a"], three), 0).await;
    drop(sink);
    let mut sink = open_partitioned(dir.path(), &output, &[]).await.unwrap();
    commit(&mut sink, &batch(vec!["c", "d"], two), 1).await;
    let table = sink_table(dir.path()).await;
    assert_eq!(table.metadata().default_partition_spec_id(), 1);
    assert!(table.metadata().default_partition_spec().is_unpartitioned());
    assert_eq!(rows_of(&table).await, 5);
}

async fn rows_of(table: &iceberg::table::Table) -> usize {
    table
        .scan()
        .build()
        .unwrap()
        .to_arrow()
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .iter()
        .map(RecordBatch::num_rows)
        .sum()
}

/// Another writer evolves the spec under a sink that is open: its next
/// commit is refused as `Respec` (its files are of the old spec), its
/// writer is made anew, and the range written again commits.
#[tokio::test]
async fn a_spec_changed_by_another_writer_is_written_again_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ts_field, three, two) = ts();
    let output: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("kind", DataType::Utf8, false),
        ts_field,
    ]));
    let batch = |kinds: Vec<&str>, ts: Arc<dyn Array>| {
        RecordBatch::try_new(output.clone(), vec![Arc::new(StringArray::from(kinds)), ts]).unwrap()
    };
    let mut sink = open_partitioned(dir.path(), &output, &["day(__ingest_ts)"])
        .await
        .unwrap();
    commit(&mut sink, &batch(vec!["a", "b", "a"], three.clone()), 0).await;
    // Another writer (a second sink, as another server would) evolves it.
    drop(
        open_partitioned(dir.path(), &output, &["day(__ingest_ts)", "kind"])
            .await
            .unwrap(),
    );
    sink.write(&batch(vec!["c", "d"], two.clone()))
        .await
        .unwrap();
    let files = sink.close_files().await.unwrap();
    let range = OffsetRange { first: 1, last: 1 };
    let refused = sink.commit(range, &files).await.unwrap_err();
    assert!(matches!(refused, pipe_sink::Error::Respec(_)), "{refused}");
    commit(&mut sink, &batch(vec!["c", "d"], two), 1).await;
    let table = sink_table(dir.path()).await;
    assert_eq!(table.metadata().default_partition_spec_id(), 1);
    assert_eq!(rows_of(&table).await, 5);
}
