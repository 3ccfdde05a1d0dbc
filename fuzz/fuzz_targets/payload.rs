//! `pipe_ingest::payload`: a buffer record's payload (header, then the
//! events and the quarantined events as Arrow IPC streams) on any bytes.
//!
//! The buffer's CRC keeps damaged records away from this code, so what it
//! guards against is a record written by another version or a bug; still,
//! it must refuse, never panic or allocate without bound. (Panics inside
//! arrow are caught by `payload` and become errors: see below.) Checks: no
//! panic; `decode_meta` agrees with `decode`; what decodes encodes back to
//! the same header and batches.
#![no_main]

use std::sync::Once;

use libfuzzer_sys::fuzz_target;
use pipe_ingest::payload;

/// Arrow's IPC decoding panics on some malformed input; `payload` catches
/// those panics and refuses the record. libfuzzer-sys's panic hook would
/// abort the process before the catch, so it is skipped for panics inside
/// arrow. One that `payload` does not catch still aborts (libfuzzer-sys
/// catches every panic that leaves the target and aborts).
fn let_payload_catch_arrow_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let fuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_arrow = info
                .location()
                .is_some_and(|l| l.file().contains("/arrow-"));
            if !in_arrow {
                fuzzer_hook(info)
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    let_payload_catch_arrow_panics();
    let parts = payload::decode(data);
    let meta = payload::decode_meta(data);
    let events = payload::decode_batches(data);
    let quarantine = payload::decode_quarantine(data);
    let Ok(parts) = parts else {
        assert!(meta.is_err() && events.is_err() && quarantine.is_err());
        return;
    };
    let meta = meta.expect("decode succeeded");
    assert_eq!(meta, parts.meta);
    assert_eq!(
        parts.events.len() + parts.quarantine.len() + 4 + 24,
        data.len() - meta.key.as_ref().map_or(0, |k| k.len())
    );
    let (Ok(events), Ok(quarantine)) = (events, quarantine) else {
        return;
    };
    // One batch per part is what `encode` writes; more come only from
    // other writers, and encode takes one.
    if events.len() > 1 || quarantine.len() > 1 {
        return;
    }
    let Ok(bytes) = payload::encode(&meta, events.first(), quarantine.first()) else {
        return;
    };
    // The first trip may normalise what arrow's writer cannot say (an
    // empty time zone is written as none); the rows stay, and a second
    // trip changes nothing.
    let trip = |bytes: &[u8]| {
        (
            payload::decode_meta(bytes).unwrap(),
            payload::decode_batches(bytes).unwrap(),
            payload::decode_quarantine(bytes).unwrap(),
        )
    };
    let once = trip(&bytes);
    assert_eq!(once.0, meta);
    let rows = |batches: &[arrow::record_batch::RecordBatch]| {
        batches
            .iter()
            .map(|b| (b.num_rows(), b.num_columns()))
            .collect::<Vec<_>>()
    };
    assert_eq!(rows(&once.1), rows(&events));
    assert_eq!(rows(&once.2), rows(&quarantine));
    let again = payload::encode(&once.0, once.1.first(), once.2.first()).unwrap();
    assert_eq!(trip(&again), once);
});
