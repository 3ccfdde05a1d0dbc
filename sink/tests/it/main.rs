//! Integration tests of the Iceberg sink on a local warehouse.

use std::sync::Arc;

use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use pipe_sink::{
    open_catalog, CatalogSettings, CommitOutcome, OffsetRange, TableSink, WriteOptions,
};

mod evolution;
mod files;
mod ledger;
mod maintenance;
mod sources;

pub(crate) use ledger::data_files_on_disk;

pub(crate) fn output() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new(
            "__ingest_ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            false,
        ),
    ]))
}

pub(crate) fn rows(ids: std::ops::Range<i64>) -> RecordBatch {
    let n = ids.clone().count();
    RecordBatch::try_new(
        output(),
        vec![
            Arc::new(Int64Array::from_iter_values(ids.clone())),
            Arc::new(StringArray::from_iter_values(ids.map(|i| format!("n{i}")))),
            // Two days, so two partitions.
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(
                    (0..n as i64).map(|i| 1_700_000_000_000_000 + (i % 2) * 86_400_000_000),
                )
                .with_timezone("+00:00"),
            ),
        ],
    )
    .unwrap()
}

pub(crate) async fn open(dir: &std::path::Path, pipeline: &str) -> TableSink {
    open_with(dir, pipeline, WriteOptions::default()).await
}

pub(crate) async fn open_with(
    dir: &std::path::Path,
    pipeline: &str,
    options: WriteOptions,
) -> TableSink {
    let catalog = open_catalog(&CatalogSettings::local(dir)).await.unwrap();
    TableSink::open(
        catalog,
        "default",
        "events",
        pipeline,
        "sink",
        &output(),
        options,
    )
    .await
    .unwrap()
}

/// The error opening the sink with `options` gives.
pub(crate) async fn refused(dir: &std::path::Path, options: WriteOptions) -> String {
    let catalog = open_catalog(&CatalogSettings::local(dir)).await.unwrap();
    TableSink::open(
        catalog,
        "default",
        "events",
        "p",
        "sink",
        &output(),
        options,
    )
    .await
    .unwrap_err()
    .to_string()
}

/// A sink that keeps its write ledger in `dir/sinks`.
pub(crate) async fn open_ledgered(dir: &std::path::Path) -> TableSink {
    let options = WriteOptions {
        ledger_dir: Some(dir.join("sinks")),
        ..WriteOptions::default()
    };
    open_with(dir, "p", options).await
}

/// The sink's table as the catalog has it now.
pub(crate) async fn load_table(dir: &std::path::Path, sink: &TableSink) -> iceberg::table::Table {
    let catalog = open_catalog(&CatalogSettings::local(dir)).await.unwrap();
    catalog.load_table(sink.ident()).await.unwrap()
}

pub(crate) async fn row_count(sink: &TableSink, dir: &std::path::Path) -> u64 {
    let catalog = open_catalog(&CatalogSettings::local(dir)).await.unwrap();
    let table = catalog.load_table(sink.ident()).await.unwrap();
    table
        .metadata()
        .current_snapshot()
        .and_then(|s| {
            s.summary()
                .additional_properties
                .get("total-records")
                .cloned()
        })
        .map(|v| v.parse().unwrap())
        .unwrap_or(0)
}

#[tokio::test]
async fn write_commit_and_recover_the_last_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open(dir.path(), "p").await;
    assert_eq!(sink.last_committed().await.unwrap(), None);
    sink.write(&rows(0..10)).await.unwrap();
    let files = sink.close_files().await.unwrap();
    assert_eq!(files.len(), 2, "one file per day partition");
    let range = OffsetRange { first: 0, last: 3 };
    assert!(matches!(
        sink.commit(range, &files).await.unwrap(),
        CommitOutcome::Committed { .. }
    ));
    // A replay of the same range (lost response, restart) is recognised.
    assert!(matches!(
        sink.commit(range, &files).await.unwrap(),
        CommitOutcome::Committed { .. }
    ));
    assert_eq!(row_count(&sink, dir.path()).await, 10);

    // An empty range commit (all rows filtered) still records the offsets.
    sink.commit(OffsetRange { first: 4, last: 4 }, &[])
        .await
        .unwrap();
    let mut reopened = open(dir.path(), "p").await;
    let last = reopened.last_committed().await.unwrap().unwrap();
    assert_eq!(last.range, OffsetRange { first: 4, last: 4 });
    assert_eq!(row_count(&reopened, dir.path()).await, 10);
}

#[tokio::test]
async fn a_stale_twin_cannot_commit_the_same_range_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = open(dir.path(), "p").await;
    let mut b = open(dir.path(), "p").await;
    a.write(&rows(0..5)).await.unwrap();
    b.write(&rows(0..5)).await.unwrap();
    let fa = a.close_files().await.unwrap();
    let fb = b.close_files().await.unwrap();
    let range = OffsetRange { first: 0, last: 0 };
    let first = a.commit(range, &fa).await.unwrap();
    // b planned the same range: it must find a's commit, not append again.
    assert_eq!(b.commit(range, &fb).await.unwrap(), first);
    assert_eq!(row_count(&a, dir.path()).await, 5);
    // A twin that is behind (its range ends inside a newer commit) drops its files.
    let mut c = open(dir.path(), "p").await;
    a.commit(OffsetRange { first: 1, last: 4 }, &[])
        .await
        .unwrap();
    assert_eq!(
        c.commit(OffsetRange { first: 1, last: 2 }, &[])
            .await
            .unwrap(),
        CommitOutcome::AlreadyCommitted
    );
}

#[tokio::test]
async fn the_fence_refuses_what_iceberg_would_silently_rebase() {
    use iceberg::transaction::{ApplyTransactionAction, Transaction};
    use pipe_sink::commit::FencedCatalog;

    let dir = tempfile::tempdir().unwrap();
    let mut a = open(dir.path(), "p").await;
    let catalog = open_catalog(&CatalogSettings::local(dir.path()))
        .await
        .unwrap();
    let stale = catalog.load_table(a.ident()).await.unwrap();
    a.write(&rows(0..2)).await.unwrap();
    let files = a.close_files().await.unwrap();
    a.commit(OffsetRange { first: 0, last: 0 }, &files)
        .await
        .unwrap();

    let append = |table: &iceberg::table::Table| {
        let tx = Transaction::new(table);
        tx.fast_append()
            .with_check_duplicate(false)
            .add_data_files(files.clone())
            .apply(tx)
            .unwrap()
    };
    // Through the fence, a transaction planned on the stale view is refused.
    let fenced = FencedCatalog {
        inner: catalog.clone(),
        expected: stale.metadata().current_snapshot_id(),
    };
    let err = append(&stale).commit(&fenced).await.unwrap_err();
    assert!(err.to_string().contains("fence"), "{err}");
    assert_eq!(row_count(&a, dir.path()).await, 2);
    // Without it, iceberg-rust rebases the stale append and duplicates rows.
    append(&stale).commit(catalog.as_ref()).await.unwrap();
    assert_eq!(
        row_count(&a, dir.path()).await,
        4,
        "the trap the fence exists for"
    );
}

#[tokio::test]
async fn two_pipelines_share_a_table_and_keep_their_own_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = open(dir.path(), "a").await;
    let mut b = open(dir.path(), "b").await;
    for (at, use_a) in [(0u64, true), (1, false), (2, true)] {
        let sink = if use_a { &mut a } else { &mut b };
        sink.write(&rows(0..3)).await.unwrap();
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
    assert_eq!(a.last_committed().await.unwrap().unwrap().range.last, 2);
    // b's commit is in main's ancestry behind a's newer one.
    assert_eq!(b.last_committed().await.unwrap().unwrap().range.last, 1);
    assert_eq!(row_count(&a, dir.path()).await, 9);
}

#[tokio::test]
async fn an_incompatible_existing_table_is_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let _ = open(dir.path(), "p").await;
    let catalog = open_catalog(&CatalogSettings::local(dir.path()))
        .await
        .unwrap();
    let other = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new(
            "__ingest_ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            false,
        ),
    ]));
    let err = TableSink::open(
        catalog,
        "default",
        "events",
        "p",
        "sink",
        &other,
        WriteOptions::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("column `id`"), "{err}");
}

/// Bloom filters go where they were asked for, in every row group, hold
/// the values written there, and are recorded on the table so that a
/// sink opened later without the option (or another writer) keeps writing
/// them. A column the rows lack is refused before the table exists.
#[tokio::test]
async fn bloom_filters_are_written_where_asked_and_kept_by_the_table() {
    use parquet::file::properties::ReaderProperties;
    use parquet::file::reader::FileReader;
    use parquet::file::serialized_reader::{ReadOptionsBuilder, SerializedFileReader};

    let dir = tempfile::tempdir().unwrap();
    let options = WriteOptions {
        bloom_filter_columns: vec!["nope".into()],
        ..WriteOptions::default()
    };
    let err = refused(dir.path(), options).await;
    assert!(err.contains("bloom filter column `nope`"), "{err}");

    let options = WriteOptions {
        bloom_filter_columns: vec!["name".into()],
        row_group_rows: 100,
        ..WriteOptions::default()
    };
    let mut sink = open_with(dir.path(), "p", options).await;
    sink.write(&rows(0..1000)).await.unwrap();
    let files = sink.close_files().await.unwrap();
    sink.commit(OffsetRange { first: 0, last: 0 }, &files)
        .await
        .unwrap();
    let table = load_table(dir.path(), &sink).await;
    assert_eq!(
        table
            .metadata()
            .properties()
            .get("write.parquet.bloom-filter-enabled.column.name")
            .map(String::as_str),
        Some("true")
    );

    // Reopened without the option, the table's property still asks.
    let mut later = open(dir.path(), "q").await;
    later.write(&rows(1000..1200)).await.unwrap();
    let more = later.close_files().await.unwrap();
    later
        .commit(OffsetRange { first: 0, last: 0 }, &more)
        .await
        .unwrap();

    let on_disk = data_files_on_disk(dir.path());
    assert_eq!(on_disk.len(), 4, "two days, two commits");
    let mut row_groups = 0;
    for path in &on_disk {
        let file = std::fs::File::open(path.trim_start_matches("file://")).unwrap();
        let reader = SerializedFileReader::new_with_options(
            file,
            ReadOptionsBuilder::new()
                .with_reader_properties(
                    ReaderProperties::builder()
                        .set_read_bloom_filter(true)
                        .build(),
                )
                .build(),
        )
        .unwrap();
        for i in 0..reader.num_row_groups() {
            row_groups += 1;
            let group = reader.get_row_group(i).unwrap();
            assert!(group.get_column_bloom_filter(0).is_none(), "id has none");
            let filter = group.get_column_bloom_filter(1).expect("name has one");
            let first = group.metadata().column(0).statistics().unwrap();
            let id = i64::from_le_bytes(first.min_bytes_opt().unwrap().try_into().unwrap());
            assert!(filter.check(&format!("n{id}").as_str()), "{path}: n{id}");
        }
    }
    assert_eq!(
        row_groups, 12,
        "1000 rows in groups of 100 over 2 days, then 200"
    );
}

/// The one-way mapping of every Pipelines type to Iceberg, as the table is created.
#[tokio::test]
async fn iceberg_mapping_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let schema = pipe_schemas::StreamSchema::from_json(
        r#"{"fields":[
        {"name":"s","type":"string","required":true},
        {"name":"i32","type":"int32"},{"name":"i64","type":"int64"},
        {"name":"f32","type":"float32"},{"name":"f64","type":"float64"},
        {"name":"b","type":"bool"},{"name":"ts","type":"timestamp"},
        {"name":"doc","type":"json"},{"name":"raw","type":"binary"},
        {"name":"tags","type":"list","items":{"type":"int32"}},
        {"name":"meta","type":"struct","fields":[{"name":"k","type":"string","required":true}]}]}"#,
    )
    .unwrap();
    let output = pipe_schemas::EventDecoder::new(Some(schema)).table_schema();
    let catalog = open_catalog(&CatalogSettings::local(dir.path()))
        .await
        .unwrap();
    let sink = TableSink::open(
        catalog.clone(),
        "default",
        "all_types",
        "p",
        "s",
        &output,
        WriteOptions::default(),
    )
    .await
    .unwrap();
    let table = catalog.load_table(sink.ident()).await.unwrap();
    let fields: Vec<String> = table
        .metadata()
        .current_schema()
        .as_struct()
        .fields()
        .iter()
        .map(|f| {
            format!(
                "{}: {} {}",
                f.name,
                f.field_type,
                if f.required { "required" } else { "optional" }
            )
        })
        .collect();
    insta::assert_snapshot!(fields.join("\n"), @r#"
    s: string required
    i32: int optional
    i64: long optional
    f32: float optional
    f64: double optional
    b: boolean optional
    ts: timestamptz optional
    doc: string optional
    raw: binary optional
    tags: list optional
    meta: struct<string> optional
    __ingest_ts: timestamptz required
    "#);
    let spec = table.metadata().default_partition_spec();
    assert_eq!(spec.fields()[0].transform, iceberg::spec::Transform::Day);
}

#[tokio::test]
async fn the_last_range_survives_the_expiry_of_its_snapshot() {
    use iceberg::transaction::{ApplyTransactionAction, Transaction};

    let dir = tempfile::tempdir().unwrap();
    let mut a = open(dir.path(), "a").await;
    a.write(&rows(0..4)).await.unwrap();
    let files = a.close_files().await.unwrap();
    let range = OffsetRange { first: 0, last: 7 };
    a.commit(range, &files).await.unwrap();
    let ours = a.last_committed().await.unwrap().unwrap();
    let ours_snapshot = ours.snapshot_id.expect("in the ancestry");

    // Another pipeline commits after us, then our snapshot is expired.
    let mut b = open(dir.path(), "b").await;
    for at in 0..3 {
        b.commit(
            OffsetRange {
                first: at,
                last: at,
            },
            &[],
        )
        .await
        .unwrap();
    }
    let catalog = open_catalog(&CatalogSettings::local(dir.path()))
        .await
        .unwrap();
    let table = catalog.load_table(a.ident()).await.unwrap();
    let tx = Transaction::new(&table);
    let tx = tx
        .expire_snapshots()
        .expire_snapshot_ids([ours_snapshot])
        .apply(tx)
        .unwrap();
    let table = tx.commit(catalog.as_ref()).await.unwrap();
    assert!(table.metadata().snapshot_by_id(ours_snapshot).is_none());

    // The table properties still know a's last range: no replay, no restart
    // from zero.
    let mut reopened = open(dir.path(), "a").await;
    let last = reopened.last_committed().await.unwrap().unwrap();
    assert_eq!((last.range, last.snapshot_id), (range, None));
    assert_eq!(last.commit_id, ours.commit_id);
    assert!(matches!(
        reopened.commit(range, &files).await.unwrap(),
        CommitOutcome::Committed { snapshot_id: None }
    ));
    assert_eq!(
        reopened
            .commit(OffsetRange { first: 2, last: 5 }, &[])
            .await
            .unwrap(),
        CommitOutcome::AlreadyCommitted
    );
    assert_eq!(row_count(&reopened, dir.path()).await, 4);
    // b's record is its own.
    assert_eq!(b.last_committed().await.unwrap().unwrap().range.last, 2);
}

#[tokio::test]
async fn user_partition_transforms_shape_the_table_and_its_paths() {
    let dir = tempfile::tempdir().unwrap();
    let options = WriteOptions {
        partition_by: vec![
            "bucket(4, id)".parse().unwrap(),
            "day(__ingest_ts)".parse().unwrap(),
        ],
        ..WriteOptions::default()
    };
    let mut sink = open_with(dir.path(), "p", options).await;
    sink.write(&rows(0..40)).await.unwrap();
    let files = sink.close_files().await.unwrap();
    sink.commit(OffsetRange { first: 0, last: 0 }, &files)
        .await
        .unwrap();
    let table = load_table(dir.path(), &sink).await;
    let names: Vec<String> = table
        .metadata()
        .default_partition_spec()
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name, f.transform))
        .collect();
    assert_eq!(names, ["id_bucket_4 bucket[4]", "__ingest_ts_day day"]);
    // 40 ids over 4 buckets and 2 days.
    assert!(files.len() > 2 && files.len() <= 8, "{}", files.len());
    assert!(files
        .iter()
        .all(|f| f.file_path().contains("/id_bucket_4=")
            && f.file_path().contains("/__ingest_ts_day=")));
    assert_eq!(row_count(&sink, dir.path()).await, 40);
}

#[tokio::test]
async fn a_partition_field_that_cannot_apply_is_refused_before_any_data() {
    let dir = tempfile::tempdir().unwrap();
    for (spec, want) in [
        (
            "day(name)",
            "partition field `day(name)`: day does not apply to column `name` of type string",
        ),
        (
            "bucket(4, missing)",
            "partition field `bucket(4, missing)`: the pipeline output has no column `missing`",
        ),
    ] {
        let options = WriteOptions {
            partition_by: vec![spec.parse().unwrap()],
            ..WriteOptions::default()
        };
        assert_eq!(refused(dir.path(), options).await, want);
    }
}

#[tokio::test]
async fn old_snapshots_are_expired_after_commits_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let options = WriteOptions {
        retention: Some(pipe_sink::SnapshotRetention {
            max_age: std::time::Duration::ZERO,
            retain_last: 5,
            max_count: 5,
        }),
        ..WriteOptions::default()
    };
    let mut sink = open_with(dir.path(), "p", options).await;
    for i in 0..20 {
        sink.write(&rows(i * 10..i * 10 + 10)).await.unwrap();
        let files = sink.close_files().await.unwrap();
        sink.commit(
            OffsetRange {
                first: i as u64,
                last: i as u64,
            },
            &files,
        )
        .await
        .unwrap();
    }
    let table = load_table(dir.path(), &sink).await;
    assert_eq!(table.metadata().snapshots().count(), 5);
    assert_eq!(
        row_count(&sink, dir.path()).await,
        200,
        "every row is still there"
    );
    assert_eq!(
        sink.last_committed().await.unwrap().unwrap().range,
        OffsetRange {
            first: 19,
            last: 19
        }
    );
    // A replay of an old range is still known as committed (properties).
    sink.write(&rows(0..10)).await.unwrap();
    let files = sink.close_files().await.unwrap();
    assert_eq!(
        sink.commit(OffsetRange { first: 3, last: 3 }, &files)
            .await
            .unwrap(),
        CommitOutcome::AlreadyCommitted
    );
}

/// The REST catalog's credentials reach the wire: OAuth2 client
/// credentials are exchanged for a token, which every later call carries.
/// (The full round trip against a real REST catalog is in the pipe crate's
/// tests; this server only answers what opening a catalog asks.)
#[tokio::test]
async fn rest_catalog_credentials_are_exchanged_and_sent() {
    use axum::extract::State;
    use axum::http::HeaderMap;
    use axum::routing::{get, post};
    use std::sync::Mutex;

    type Seen = Arc<Mutex<Vec<String>>>;
    async fn token(State(seen): State<Seen>, body: String) -> axum::Json<serde_json::Value> {
        seen.lock().unwrap().push(format!("token request: {body}"));
        axum::Json(serde_json::json!({
            "access_token": "exchanged-token", "token_type": "bearer", "expires_in": 3600,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"
        }))
    }
    async fn config(State(seen): State<Seen>, headers: HeaderMap) -> axum::Json<serde_json::Value> {
        let auth = headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string());
        seen.lock().unwrap().push(format!("config: {auth:?}"));
        axum::Json(serde_json::json!({"defaults": {}, "overrides": {}}))
    }
    async fn namespaces(
        State(seen): State<Seen>,
        headers: HeaderMap,
    ) -> axum::Json<serde_json::Value> {
        let auth = headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string());
        seen.lock().unwrap().push(format!("namespaces: {auth:?}"));
        axum::Json(serde_json::json!({"namespaces": []}))
    }
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route("/v1/oauth/tokens", post(token))
        .route("/v1/config", get(config))
        .route("/v1/namespaces", get(namespaces))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let settings = CatalogSettings {
        name: "r".into(),
        kind: pipe_sink::CatalogKind::Rest(pipe_sink::RestSettings {
            uri: format!("http://{addr}"),
            warehouse: Some("wh".into()),
            credential: Some("client-id:client-secret".into()),
            scope: Some("PRINCIPAL_ROLE:ALL".into()),
            ..Default::default()
        }),
        ..CatalogSettings::local(dir.path())
    };
    open_catalog(&settings).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen[0].starts_with("token request: ")
            && seen[0].contains("grant_type=client_credentials")
            && seen[0].contains("client_id=client-id")
            && seen[0].contains("client_secret=client-secret")
            && seen[0].contains("scope=PRINCIPAL_ROLE%3AALL"),
        "{seen:?}"
    );
    assert!(
        seen[1..]
            .iter()
            .all(|s| s.contains("Some(\"Bearer exchanged-token\")")),
        "{seen:?}"
    );
    assert!(seen.iter().any(|s| s.starts_with("namespaces")), "{seen:?}");

    // A wrong address stops the opening with the catalog named.
    let unreachable = CatalogSettings {
        kind: pipe_sink::CatalogKind::Rest(pipe_sink::RestSettings {
            uri: "http://127.0.0.1:9".into(),
            token: Some("t".into()),
            ..Default::default()
        }),
        ..settings
    };
    let e = open_catalog(&unreachable).await.err().unwrap().to_string();
    assert!(
        e.contains("the REST catalog at `http://127.0.0.1:9`"),
        "{e}"
    );
}

#[tokio::test]
async fn an_unpartitioned_table_takes_rows_too() {
    let dir = tempfile::tempdir().unwrap();
    let options = WriteOptions {
        partition_by: Vec::new(),
        ..WriteOptions::default()
    };
    let mut sink = open_with(dir.path(), "p", options).await;
    sink.write(&rows(0..10)).await.unwrap();
    let files = sink.close_files().await.unwrap();
    assert_eq!(files.len(), 1, "two days of rows, one file");
    sink.commit(OffsetRange { first: 0, last: 0 }, &files)
        .await
        .unwrap();
    let table = load_table(dir.path(), &sink).await;
    assert!(table.metadata().default_partition_spec().is_unpartitioned());
    assert_eq!(row_count(&sink, dir.path()).await, 10);
}

#[tokio::test]
async fn a_batch_in_one_partition_is_written_whole_under_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open(dir.path(), "p").await;
    // Even ids only: every row on the first day (2023-11-14).
    let all = rows(0..20);
    let one_day = arrow::compute::filter_record_batch(
        &all,
        &arrow::array::BooleanArray::from_iter((0..20).map(|i| Some(i % 2 == 0))),
    )
    .unwrap();
    sink.write(&one_day).await.unwrap();
    sink.write(&all).await.unwrap();
    let files = sink.close_files().await.unwrap();
    let mut paths: Vec<(String, u64)> = files
        .iter()
        .map(|f| {
            let day = f
                .file_path()
                .split('/')
                .find(|p| p.starts_with("__ingest_ts_day="))
                .unwrap();
            (day.to_string(), f.record_count())
        })
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            ("__ingest_ts_day=2023-11-14".to_string(), 20),
            ("__ingest_ts_day=2023-11-15".to_string(), 10)
        ],
        "the whole batch and the split one land in the same partitions"
    );
}

#[tokio::test]
async fn uncompressed_bytes_are_read_from_the_data_files_footers() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open(dir.path(), "p").await;
    sink.write(&rows(0..1000)).await.unwrap();
    let files = sink.close_files().await.unwrap();
    let ours = sink.uncompressed_bytes(&files).await.unwrap();
    // The same figure, from the parquet crate's own reader: the file size
    // with each column chunk counted uncompressed.
    let mut theirs = 0;
    for f in &files {
        let path = f.file_path().strip_prefix("file://").unwrap();
        let reader =
            parquet::file::reader::SerializedFileReader::new(std::fs::File::open(path).unwrap())
                .unwrap();
        let meta = parquet::file::reader::FileReader::metadata(&reader);
        let chunks = meta.row_groups().iter().flat_map(|rg| rg.columns());
        let saved: i64 = chunks
            .map(|c| c.uncompressed_size() - c.compressed_size())
            .sum();
        theirs += (std::fs::metadata(path).unwrap().len() as i64 + saved) as u64;
    }
    assert_eq!(ours, theirs);
    let compressed: u64 = files.iter().map(|f| f.file_size_in_bytes()).sum();
    assert!(
        ours > compressed,
        "zstd shrinks 1000 rows: {ours} {compressed}"
    );
}
