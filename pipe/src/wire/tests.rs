use super::*;
use crate::running::pipeline::State;

/// Parses `text` as `T` and writes it again: the same text, key for key
/// and in order.
#[track_caller]
fn same_both_ways<T: Serialize + DeserializeOwned>(text: &str) -> T {
    let typed: T = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(serde_json::to_string(&typed).unwrap(), text);
    typed
}

fn pipeline_view() -> PipelineView {
    PipelineView {
        pipeline: "p".into(),
        health: Health {
            state: State::Retrying,
            reason: Some("the catalog is not answering".into()),
            since: "2025-01-02T03:04:05Z".into(),
            attempts: 3,
        },
        stream: "s".into(),
        sink: "default.t".into(),
        sink_kind: "iceberg".into(),
        quarantine_table: None,
        committed_through: None,
        rows_committed: 10,
        failed_rows_committed: 1,
        files_committed: 2,
        bytes_committed: 300,
        uncompressed_bytes_committed: 400,
        row_groups_committed: 2,
        commits: 2,
        last_commit_unix_ms: 1_700_000_000_000,
        commit_ms_mean: 5.5,
        uncommitted_records: 4,
        commit_lag_secs: 2.5,
        newest_committed_age_secs: None,
        sink_metrics: SinkMetrics {
            records_written: 10,
            files_written: 2,
            bytes_written: 300,
            uncompressed_bytes_written: 400,
            row_groups_written: 2,
        },
        recent_errors: vec![RecentError {
            at: "2025-01-02T03:04:05Z".into(),
            error: "commit failed".into(),
        }],
        sql: Some("INSERT INTO k SELECT * FROM s".into()),
        definition: Some("0123456789abcdef".into()),
        origin: PipelineOrigin::Stream,
    }
}

#[test]
fn a_view_and_its_change_round_trip_through_json() {
    let view = pipeline_view();
    let value = serde_json::to_value(&view).unwrap();
    // The health is flat in the view, under its own names; unknowns are null.
    assert_eq!(value["state"], "retrying");
    assert_eq!(value["state_reason"], "the catalog is not answering");
    assert_eq!(value["retry_attempts"], 3);
    assert!(value["committed_through"].is_null(), "{value}");
    assert!(value["quarantine_table"].is_null(), "{value}");
    assert_eq!(value["sink_metrics"]["recordsWritten"], 10);
    assert_eq!(value["origin"], "stream");
    assert_eq!(serde_json::from_value::<PipelineView>(value).unwrap(), view);

    let change = PipelineChange {
        pipeline: "p".into(),
        definition_before: "a".into(),
        definition_after: "b".into(),
        switched_after_offset: Some(7),
        records_through_old_definition: 2,
    };
    for answer in [
        PipelineUpdated::Unchanged { name: "p".into() },
        PipelineUpdated::DryRun {
            name: "p".into(),
            change: change.clone(),
        },
        PipelineUpdated::Applied {
            view: view.clone(),
            change: change.clone(),
        },
    ] {
        let text = serde_json::to_string(&answer).unwrap();
        assert_eq!(
            serde_json::from_str::<PipelineUpdated>(&text).unwrap(),
            answer,
            "{text}"
        );
    }
    // A sink no pipeline writes changes with `"change": null`.
    let text = serde_json::to_string(&SinkUpdated::DryRun {
        name: "k".into(),
        change: None,
    })
    .unwrap();
    assert_eq!(text, r#"{"sink":"k","dry_run":true,"change":null}"#);
    assert!(serde_json::from_str::<SinkUpdated>(r#"{"sink":"k"}"#).is_err());
}

/// Answers as the server wrote them before the views were typed (commit
/// 1513ee9, `json!` in `server::admin`): a key renamed, moved, dropped or
/// turned from `null` to absent breaks this test.
#[test]
fn answers_captured_from_the_server_parse_and_are_written_the_same() {
    let stream: StreamView = same_both_ways(
        r#"{"stream":"ecommerce_stream","origin":"file","endpoint":"http://127.0.0.1:8080/v1/streams/ecommerce_stream","http":{"enabled":true,"auth":false,"cors_origins":[]},"schema":{"fields":[{"name":"user_id","type":"string","required":true},{"name":"ts","type":"timestamp","unit":"s","required":false},{"name":"tags","type":"list","items":{"type":"string"},"required":false}]},"json_schema":false,"unknown_fields":"reject","invalid_events":"reject","quarantine_table":null,"max_request_bytes":5242880,"max_events_per_request":100000,"buffer":{"bytes":1234,"quota_bytes":8589934592,"unprocessed_records":0},"pipelines":["ecommerce"],"stats":{"requests":1,"records_in":3,"bytes_in":321,"decode_errors":1,"errors_by_type":{"missing_field":1},"recent_rejections":[{"at_micros":1700000000000000,"index":2,"field":"user_id","type":"missing_field","message":"missing required field `user_id`"}]}}"#,
    );
    assert_eq!(stream.origin, Some(Origin::File));
    assert_eq!(stream.schema.unwrap().fields.len(), 3);

    let updated: SinkUpdated = same_both_ways(
        r#"{"sink":"k2","origin":"api","type":"parquet","table":null,"path":"file:///tmp/data/warehouse/k2","format":"parquet","compression":"zstd","roll_interval_secs":300,"roll_size_mb":128,"roll_rows":7,"row_group_rows":131072,"partition_by":null,"bloom_filter_columns":null,"target_file_size_mb":null,"sort_by":null,"partitioning":"year=%Y/month=%m/day=%d","pipeline":"p2","change":{"pipeline":"p2","definition_before":"a247a33d08876bb9","definition_after":"a247a33d08876bb9","switched_after_offset":null,"records_through_old_definition":0}}"#,
    );
    let Updated::Applied { view, change } = updated else {
        panic!("applied: {updated:?}")
    };
    assert_eq!(view.pipeline.as_deref(), Some("p2"));
    assert_eq!(change.unwrap().switched_after_offset, None);

    let updated: PipelineUpdated = same_both_ways(
        r#"{"pipeline":"p2","state":"running","state_reason":null,"state_since":"2025-06-01T10:00:00Z","retry_attempts":0,"stream":"s2","sink":"file:///tmp/data/warehouse/k2","sink_kind":"files","quarantine_table":"default.p2_failed","committed_through":null,"rows_committed":0,"failed_rows_committed":0,"files_committed":0,"bytes_committed":0,"uncompressed_bytes_committed":0,"row_groups_committed":0,"commits":0,"last_commit_unix_ms":0,"commit_ms_mean":0.0,"uncommitted_records":0,"commit_lag_secs":0.0,"newest_committed_age_secs":null,"sink_metrics":{"recordsWritten":0,"filesWritten":0,"bytesWritten":0,"uncompressedBytesWritten":0,"rowGroupsWritten":0},"recent_errors":[],"sql":"INSERT INTO k2 SELECT * FROM s2 WHERE true","definition":"a247a33d08876bb9","origin":"api","change":{"pipeline":"p2","definition_before":"419ca143f1c99ad4","definition_after":"a247a33d08876bb9","switched_after_offset":null,"records_through_old_definition":0}}"#,
    );
    assert!(
        matches!(updated, Updated::Applied { ref view, .. } if view.origin == PipelineOrigin::Api)
    );
    let updated: PipelineUpdated = same_both_ways(r#"{"pipeline":"p1","changed":false}"#);
    assert_eq!(updated, Updated::Unchanged { name: "p1".into() });
    let updated: StreamUpdated = same_both_ways(
        r#"{"stream":"s1","dry_run":true,"change":{"stream":"s1","schema_changes":["new field `x`"],"settings":[],"pipelines":[{"pipeline":"p1","definition_before":"a","definition_after":"a","switched_after_offset":null,"records_through_old_definition":1}]}}"#,
    );
    assert!(updated.is_dry_run());

    same_both_ways::<StreamDeleted>(
        r#"{"deleted":"s1","pipelines_deleted":[],"unprocessed_records_dropped":1}"#,
    );
    same_both_ways::<SinkDeleted>(r#"{"deleted":"k1"}"#);
    same_both_ways::<PipelineDeleted>(r#"{"deleted":"p1","committed_through":null}"#);
    same_both_ways::<FlushReport>(
        r#"{"pipeline":"p1","committed_through":0,"rows":0,"failed_rows":0}"#,
    );
    let reloaded: Reloaded = same_both_ways(
        r#"{"dry_run":false,"streams_added":["extra"],"streams_changed":[],"streams_removed":[],"sinks_added":["file_sink"],"sinks_changed":["ecommerce_sink"],"sinks_removed":[],"pipelines_added":[],"pipelines_changed":[{"pipeline":"ecommerce","definition_before":"b38d7c873881888c","definition_after":"b38d7c873881888c","switched_after_offset":0,"records_through_old_definition":0}],"pipelines_removed":[],"pipelines_revived":[],"admin_changed":false}"#,
    );
    assert_eq!(reloaded.pipelines_changed[0].switched_after_offset, Some(0));
    same_both_ways::<MaintenanceRuns>(
        r#"{"table":"default.ecommerce","runs":[{"table":"default.ecommerce","trigger":"on demand","started_at":"2025-06-01T10:00:00Z","duration_ms":11,"outcome":"ok","dry_run":true,"before":{"snapshots":1,"data_files":1,"data_bytes":2287,"records":3},"after":{"snapshots":1,"data_files":1,"data_bytes":2287,"records":3},"compacted":null,"merged":null,"expired":null,"swept":{"listed":5,"orphans":0,"orphan_bytes":0,"deleted":0,"spared":0,"failed":0,"files":[]},"planned":{"compact_files":0,"compact_bytes":0,"expire_snapshots":0},"next":"by the sink's triggers, or on demand"}]}"#,
    );
}
