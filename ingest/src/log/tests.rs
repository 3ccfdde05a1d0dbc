use std::sync::Arc;

use arrow::array::Int64Array;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

use super::*;
use crate::idempotency::Begin;
use crate::payload::RequestMeta;

fn options() -> LogOptions {
    LogOptions {
        buffer: BufferOptions {
            segment_bytes: 600,
            ..BufferOptions::default()
        },
        idempotency_window: Duration::from_secs(3600),
        max_keys: crate::idempotency::DEFAULT_MAX_KEYS,
        committed_floor: 0,
        legacy_positions: Default::default(),
    }
}

fn payload(key: &str) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1]))]).unwrap();
    let meta = RequestMeta {
        key: Some(key.into()),
        accepted: 1,
        dropped_fields: 0,
        quarantined: 0,
        at_micros: pipe_schemas::now_micros(),
    };
    payload::encode(&meta, Some(&batch), None).unwrap()
}

/// The identity of the log in `dir`, kept.
fn id(dir: &Path) -> Identity {
    let identity = StreamLog::identity(dir, &[]).unwrap();
    identity.keep(dir).unwrap();
    identity
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Opens the log, appends one keyed record per key, and closes it.
fn open_and_append(dir: &Path, consumers: &[(&str, Option<u64>)], keys: &[&str]) -> Arc<StreamLog> {
    rt().block_on(async {
        let consumers = consumers.iter().map(|(n, c)| (n.to_string(), *c));
        let opened = StreamLog::open("s", dir, id(dir), options(), consumers).unwrap();
        for key in keys {
            opened.appender.append(payload(key)).await.unwrap();
        }
        drop(opened.appender);
        opened.writer.await.unwrap().unwrap();
        opened.log
    })
}

#[test]
fn release_waits_for_every_consumer_and_keeps_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let log = open_and_append(dir.path(), &[("a", None), ("b", None)], &keys);
    assert_eq!(log.attach("a", None), 0);
    assert_eq!(log.unprocessed(), 20);
    log.committed("a", 19);
    assert_eq!(log.first_offset(), 0, "b holds everything");
    log.committed("b", 15);
    assert!(
        log.first_offset() > 0,
        "segments both committed are released"
    );
    assert!(log.first_offset() <= 16, "b's uncommitted records are kept");
    assert_eq!(log.unprocessed(), 4);
    drop(log);
    // The released records' keys are still known after a restart.
    let log = open_and_append(dir.path(), &[("a", Some(19)), ("b", Some(15))], &[]);
    assert!(matches!(log.keys().begin("k0"), Begin::Replay(_)));
    assert!(matches!(log.keys().begin("k19"), Begin::Replay(_)));
    assert!(matches!(log.keys().begin("new"), Begin::New(_)));
}

#[test]
fn a_pin_keeps_what_its_consumer_had_not_committed() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let log = open_and_append(dir.path(), &[("a", None)], &keys);
    log.attach("a", Some(2));
    let pin = log.pin("a");
    assert_eq!(pin.from(), 3);
    log.committed("a", 19);
    let records = log.reader(3).read(100, usize::MAX).unwrap();
    assert_eq!(records.len(), 17, "offsets 3..=19 are all still there");
    assert!(log.first_offset() <= 3);
    // A second pin taken after the commit keeps nothing more.
    let later = log.pin("a");
    assert_eq!(later.from(), 20);
    drop(pin);
    assert!(log.first_offset() <= 3, "dropping a pin releases nothing");
    log.committed("a", 19);
    assert!(log.first_offset() > 3, "the next commit does");
    drop(later);
    // A pin for a consumer that committed nothing keeps everything.
    let none = log.pin("unknown");
    assert_eq!(none.from(), 0);
    let first = log.first_offset();
    log.committed("a", 19);
    assert_eq!(log.first_offset(), first);
}

#[test]
fn a_consumer_attached_after_a_release_starts_at_the_oldest_record() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let log = open_and_append(dir.path(), &[("a", None)], &keys);
    log.committed("a", 19);
    let first = log.first_offset();
    assert!(first > 3);
    assert_eq!(log.attach("late", Some(2)), first);
    assert_eq!(log.attach("fresh", None), first);
    assert_eq!(log.attach("a", Some(19)), 20);
    assert_eq!(log.consumers(), vec!["a", "fresh", "late"]);
    log.detach("late");
    log.detach("fresh");
    assert_eq!(log.consumers(), vec!["a"]);
}

#[test]
fn a_log_restored_from_an_older_copy_goes_on_past_its_consumers() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_and_append(dir.path(), &[("a", None)], &["k0", "k1"]);
    let id = log.id().to_string();
    drop(log);
    // The sink says `a` committed through 9: the copy is older than that.
    let log = open_and_append(dir.path(), &[("a", Some(9)), ("b", Some(0))], &["k2"]);
    assert_eq!(log.id(), id, "a restored copy keeps its identity");
    assert_eq!(log.next_offset(), 11);
    assert_eq!(log.attach("b", Some(0)), 1);
    let mut reader = log.reader(1);
    let offsets: Vec<u64> = reader
        .read(100, usize::MAX)
        .unwrap()
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(offsets, vec![1, 10]);
}

/// Each open is a new run, starting at the log's next offset; a log marked
/// forked (another process appends to a copy of it) is not opened again
/// until an operator has chosen, and the error says how.
#[test]
fn each_open_is_a_new_run_and_a_forked_log_stays_closed() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_and_append(dir.path(), &[("p", None)], &["a", "b"]);
    let first = log.run().0.to_string();
    assert_eq!(log.run().1, 0);
    drop(log);
    let log = open_and_append(dir.path(), &[("p", None)], &["c"]);
    assert_ne!(log.run().0, first);
    assert_eq!(log.run().1, 2);
    drop(log);
    let rt = rt();
    rt.block_on(async {
        let opened = StreamLog::open(
            "s",
            dir.path(),
            id(dir.path()),
            options(),
            [("p".to_string(), None)],
        )
        .unwrap();
        opened
            .log
            .mark_forked("table `t` holds offsets 2..=9 committed by another process")
            .unwrap();
        // From then on the stream takes no events, and says why.
        assert!(opened.log.failure().unwrap().contains("takes no events"));
        let refused = opened.appender.append(payload("d")).await.unwrap_err();
        assert!(refused.to_string().contains("another server"), "{refused}");
        drop(opened.appender);
        opened.writer.await.unwrap().unwrap();
    });
    let _in_rt = rt.enter();
    let err = StreamLog::open(
        "s",
        dir.path(),
        id(dir.path()),
        options(),
        [("p".to_string(), None)],
    )
    .err()
    .expect("a forked log is refused")
    .to_string();
    assert!(
        err.contains("appended to by two servers")
            && err.contains("offsets 2..=9")
            && err.contains("from offset 3 on")
            && err.contains("/forked`"),
        "{err}"
    );
    std::fs::remove_file(dir.path().join("forked")).unwrap();
    assert!(StreamLog::open(
        "s",
        dir.path(),
        id(dir.path()),
        options(),
        [("p".to_string(), None)]
    )
    .is_ok());
}

/// Offsets committed elsewhere (a failed-rows table ahead of its main
/// table after a crash between their commits) move the next offset past
/// them too, as consumers' own commits do.
#[test]
fn the_next_offset_is_past_the_committed_floor() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let _in_rt = rt.enter();
    let options = LogOptions {
        committed_floor: 10,
        ..options()
    };
    let opened = StreamLog::open(
        "s",
        dir.path(),
        id(dir.path()),
        options,
        [("p".to_string(), Some(3))],
    )
    .unwrap();
    assert_eq!(opened.log.next_offset(), 10);
    assert_eq!(opened.log.run().1, 10);
}

/// A buffer written before logs had ids: it gets one at the next start,
/// with the consumers reading it then, written once kept. A new buffer
/// has no legacy consumers.
#[test]
fn a_buffer_without_an_id_records_its_consumers_when_it_gets_one() {
    let dir = tempfile::tempdir().unwrap();
    drop(open_and_append(dir.path(), &[], &["a", "b", "c"]));
    std::fs::remove_file(dir.path().join("id")).unwrap();
    let first = StreamLog::identity(dir.path(), &["p", "q"]).unwrap();
    assert_eq!(first.legacy_consumers, ["p", "q"].map(String::from).into());
    assert!(!dir.path().join("id").exists(), "not written before kept");
    first.keep(dir.path()).unwrap();
    // Kept: a later start with other consumers does not change it.
    let again = StreamLog::identity(dir.path(), &["r"]).unwrap();
    assert_eq!(again, first);

    // A new buffer's identity is written at once: an open that then fails
    // (leaving an empty segment) does not make it look like an old one's
    // (review 6 finding 5).
    let fresh = tempfile::tempdir().unwrap();
    let made = StreamLog::identity(fresh.path(), &["p"]).unwrap();
    assert!(made.legacy_consumers.is_empty());
    assert!(fresh.path().join("id").exists());
}

/// A position from commits that name no log is trusted below the log's
/// end; at or past it (the pipeline read another stream before the
/// upgrade) the open is refused, saying what to do, and leaves the buffer
/// as it was: no gap that would skip this log's events, no id, so the
/// start the operator tries next decides again.
#[test]
fn a_legacy_position_past_the_log_end_refuses_the_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(open_and_append(dir.path(), &[], &["a", "b", "c"]));
    std::fs::remove_file(dir.path().join("id")).unwrap();
    let rt = rt();
    let _in_rt = rt.enter();
    let legacy = LogOptions {
        legacy_positions: ["p".to_string()].into(),
        ..options()
    };
    let identity = StreamLog::identity(dir.path(), &["p"]).unwrap();
    let Err(err) = StreamLog::open(
        "s",
        dir.path(),
        identity.clone(),
        legacy.clone(),
        [("p".to_string(), Some(7))],
    ) else {
        panic!("a legacy position past the end was taken");
    };
    let err = err.to_string();
    assert!(
        err.contains("offset 7")
            && err.contains("ends at offset 3")
            && err.contains("legacy-consumers"),
        "{err}"
    );
    for left_alone in ["gaps.log", "id", "legacy-consumers"] {
        assert!(!dir.path().join(left_alone).exists(), "{left_alone}");
    }
    // The message's third way: a legacy-consumers file without `p` is
    // taken as the decision (review 6 finding 4: it was ignored).
    std::fs::write(dir.path().join("legacy-consumers"), "").unwrap();
    let decided = StreamLog::identity(dir.path(), &["p"]).unwrap();
    assert!(decided.legacy_consumers.is_empty());
    std::fs::remove_file(dir.path().join("legacy-consumers")).unwrap();

    let opened = StreamLog::open(
        "s",
        dir.path(),
        identity,
        legacy,
        [("p".to_string(), Some(1))],
    )
    .unwrap();
    assert_eq!(opened.log.next_offset(), 3);
    assert_eq!(opened.log.attach("p", Some(1)), 2);
    opened.log.keep_identity().unwrap();
    let kept = StreamLog::identity(dir.path(), &[]).unwrap();
    assert_eq!(kept.legacy_consumers, ["p".to_string()].into());
    assert_eq!(kept.id, opened.log.id());
}
