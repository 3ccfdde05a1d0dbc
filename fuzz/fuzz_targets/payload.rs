//! `pipe_ingest::payload`: a buffer record's payload (header, then the
//! events and the quarantined events as Arrow IPC streams) on any bytes.
//!
//! The buffer's CRC keeps damaged records away from this code, so what it
//! guards against is a record written by another version or a bug; still,
//! it must refuse, never panic or allocate without bound. Checks: no
//! panic; `decode_meta` agrees with `decode`; what decodes encodes back to
//! the same header and batches.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipe_ingest::payload;

fuzz_target!(|data: &[u8]| {
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
    assert_eq!(payload::decode_meta(&bytes).unwrap(), meta);
    assert_eq!(payload::decode_batches(&bytes).unwrap(), events);
    assert_eq!(payload::decode_quarantine(&bytes).unwrap(), quarantine);
});
