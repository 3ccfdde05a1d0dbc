//! Tests of pipeline plans: running, isolating failing rows, errors.

use arrow::array::{Float64Array, StringArray};
use arrow::datatypes::{DataType, TimeUnit};

use super::*;

/// A stream's table schema (shared with the `conform` tests).
pub(crate) fn stream_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, true),
        Field::new(
            INGEST_TS_COLUMN,
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            false,
        ),
    ]))
}

#[test]
fn errors_say_whose_fault_they_are() {
    use datafusion::error::DataFusionError;
    use pipe_schemas::ErrorKind;
    let run = |source| Error::Execution {
        pipeline: "p".into(),
        source,
    };
    let io = std::io::Error::other("disk gone");
    assert_eq!(
        run(DataFusionError::IoError(io)).kind(),
        ErrorKind::Unavailable
    );
    let cast = arrow::error::ArrowError::CastError("'x' is not a number".into());
    assert_eq!(
        run(DataFusionError::ArrowError(Box::new(cast), None)).kind(),
        ErrorKind::InvalidInput
    );
    let sql = Error::InvalidSql {
        pipeline: "p".into(),
        message: "no".into(),
    };
    assert_eq!(sql.kind(), ErrorKind::InvalidInput);
}

fn streams() -> HashMap<String, SchemaRef> {
    HashMap::from([("ecommerce_stream".to_string(), stream_schema())])
}

fn batch(users: &[&str], amounts: &[Option<f64>], ts: i64) -> RecordBatch {
    RecordBatch::try_new(
        stream_schema(),
        vec![
            Arc::new(StringArray::from(users.to_vec())),
            Arc::new(Float64Array::from(amounts.to_vec())),
            Arc::new(
                TimestampMicrosecondArray::from(vec![ts; users.len()]).with_timezone("+00:00"),
            ),
        ],
    )
    .unwrap()
}

async fn plan(sql: &str) -> Result<PipelinePlan> {
    PipelinePlan::new("p", sql, &streams(), &["ecommerce_sink".to_string()]).await
}

#[tokio::test]
async fn select_star_keeps_schema_and_rows() {
    let p = plan("INSERT INTO ecommerce_sink SELECT * FROM ecommerce_stream;")
        .await
        .unwrap();
    assert_eq!(p.stream(), "ecommerce_stream");
    assert_eq!(p.sink(), "ecommerce_sink");
    assert_eq!(p.output_schema().fields().len(), 3);
    let out = p
        .run(vec![batch(&["a", "b"], &[Some(1.0), None], 5)])
        .await
        .unwrap();
    assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    // The slot is reusable: a second run sees only its own input.
    let out = p.run(vec![batch(&["c"], &[None], 6)]).await.unwrap();
    assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_runs_beside_its_plan() {
    let p = plan(
        "INSERT INTO ecommerce_sink SELECT user_id FROM ecommerce_stream \
         WHERE user_id IN (SELECT user_id FROM ecommerce_stream WHERE amount > 0)",
    )
    .await
    .unwrap();
    let fork = p.fork().unwrap();
    let run = |plan: PipelinePlan, users: &'static [&'static str]| {
        tokio::spawn(async move {
            let amounts = vec![Some(1.0); users.len()];
            for _ in 0..50 {
                let out = plan.run(vec![batch(users, &amounts, 5)]).await.unwrap();
                assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), users.len());
            }
        })
    };
    let (a, b) = tokio::join!(run(p, &["a", "b"]), run(fork, &["c", "d", "e"]));
    a.unwrap();
    b.unwrap();
}

#[tokio::test]
async fn projection_filter_expression_and_ingest_ts_added_back() {
    let p = plan(
        "INSERT INTO ecommerce_sink SELECT upper(user_id) AS who, amount * 2 AS doubled \
         FROM ecommerce_stream WHERE amount > 1",
    )
    .await
    .unwrap();
    let names: Vec<_> = p
        .output_schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, vec!["who", "doubled", INGEST_TS_COLUMN]);
    let out = p
        .run(vec![batch(
            &["a", "b", "c"],
            &[Some(1.0), Some(2.5), None],
            42,
        )])
        .await
        .unwrap();
    let out = arrow::compute::concat_batches(p.output_schema(), &out).unwrap();
    assert_eq!(out.num_rows(), 1);
    assert_eq!(out.column(0).as_string::<i32>().value(0), "B");
    assert_eq!(
        out.column(1)
            .as_primitive::<arrow::datatypes::Float64Type>()
            .value(0),
        5.0
    );
    assert_eq!(
        out.column(2)
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        42
    );
}

#[tokio::test]
async fn failing_rows_are_set_aside_and_the_rest_goes_on() {
    let p = plan(
        "INSERT INTO ecommerce_sink SELECT CAST(user_id AS INT) AS n, amount FROM ecommerce_stream",
    )
    .await
    .unwrap();
    let input = vec![
        batch(&["1", "2", "x"], &[Some(1.0), None, Some(3.0)], 7),
        batch(&["4", "y", "6", "7"], &[None; 4], 8),
    ];
    assert!(p.run(input.clone()).await.is_err(), "the whole run fails");
    let out = p.run_isolating(input).await.unwrap();
    let good = arrow::compute::concat_batches(p.output_schema(), &out.output).unwrap();
    let n = good.column(0).as_primitive::<arrow::datatypes::Int32Type>();
    assert_eq!(n.values().to_vec(), vec![1, 2, 4, 6, 7], "input order kept");
    let failed: Vec<(usize, &str, i64)> = out
        .failed
        .iter()
        .map(|f| (f.index, f.event.as_str(), f.ingest_ts))
        .collect();
    assert_eq!(
        failed,
        vec![
            (
                2,
                r#"{"user_id":"x","amount":3.0,"__ingest_ts":"1970-01-01T00:00:00.000007Z"}"#,
                7
            ),
            (
                4,
                r#"{"user_id":"y","__ingest_ts":"1970-01-01T00:00:00.000008Z"}"#,
                8
            ),
        ]
    );
    assert!(
        out.failed[0].error.contains("Cannot cast string 'x'"),
        "{}",
        out.failed[0].error
    );
    let table = failed_rows_batch(&out.failed);
    assert_eq!(table.num_rows(), 2);
    assert_eq!(table.schema(), failed_rows_schema());

    // A run without bad rows is one plain run.
    let out = p
        .run_isolating(vec![batch(&["5"], &[None], 1)])
        .await
        .unwrap();
    assert!(out.failed.is_empty());
    assert_eq!(out.output.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
}

#[tokio::test]
async fn bad_sql_fails_at_plan_time_with_the_reason() {
    for (sql, want) in [
        ("SELECT * FROM ecommerce_stream", "expected `INSERT INTO"),
        (
            "INSERT INTO nope SELECT * FROM ecommerce_stream",
            "unknown sink `nope`",
        ),
        ("INSERT INTO ecommerce_sink SELECT * FROM other", "other"),
        (
            "INSERT INTO ecommerce_sink SELECT missing FROM ecommerce_stream",
            "missing",
        ),
        (
            "INSERT INTO ecommerce_sink SELEC * FROM ecommerce_stream",
            "SELEC",
        ),
        (
            "INSERT INTO ecommerce_sink SELECT 1 AS one",
            "reads no stream",
        ),
    ] {
        let err = plan(sql).await.unwrap_err().to_string();
        assert!(err.contains(want), "{sql}: {err}");
    }
}

/// A stream or sink named with capitals or `-` is named quoted and found
/// as named; unquoted, the name is lowercased as SQL does, and the answer
/// is an error, not the panic it was (review 17).
#[tokio::test]
async fn names_with_capitals_are_found_quoted_and_refused_unquoted() {
    let streams = HashMap::from([("Views".to_string(), stream_schema())]);
    let sinks = vec!["Out-Sink".to_string()];
    let plan = PipelinePlan::new(
        "p",
        r#"INSERT INTO "Out-Sink" SELECT * FROM "Views""#,
        &streams,
        &sinks,
    )
    .await
    .unwrap();
    assert_eq!(plan.sink(), "Out-Sink");
    let error = PipelinePlan::new(
        "p",
        r#"INSERT INTO "Out-Sink" SELECT * FROM Views"#,
        &streams,
        &sinks,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(error.contains("views"), "{error}");
}
