//! `pipe_ingest::http::gunzip`: inflating a `Content-Encoding: gzip` body
//! under the stream's limit.
//!
//! Input: 8 bytes of limit (LE; reduced to a few KiB but for the top
//! values, so both small limits and `usize::MAX` are tried), then the body.
//! Checks: no panic; a body is never inflated past its limit; an accepted
//! body is exactly what a plain multi-member decoder makes of it (nothing
//! dropped); a refusal for size happens only when the body does inflate
//! past the limit.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use pipe_ingest::http::{gunzip, gunzip_within, GunzipError};

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (limit, body) = data.split_at(8);
    let raw = u64::from_le_bytes(limit.try_into().unwrap());
    let limit = if raw > u64::MAX - 16 {
        raw as usize
    } else {
        (raw % 8192) as usize
    };
    // What the body holds, read by flate2 alone, up to one byte past the
    // limit (and a cap for the huge limits; fuzz inputs are small).
    let cap = (limit as u64).saturating_add(1).min(1 << 26);
    let mut reference = Vec::new();
    let plain = flate2::read::MultiGzDecoder::new(body)
        .take(cap)
        .read_to_end(&mut reference);
    match gunzip(body, limit) {
        Ok(out) => {
            assert!(out.len() <= limit);
            assert!(!body.is_empty());
            assert!(plain.is_ok(), "accepted a body a decoder refuses");
            assert_eq!(out, reference, "accepted a body but not all of it");
        }
        Err(GunzipError::TooLarge(l)) => {
            assert_eq!(l, limit);
            assert!(
                reference.len() > limit,
                "refused for size at {} bytes",
                reference.len()
            );
        }
        Err(GunzipError::Invalid(_)) => {}
        Err(GunzipError::OverBudget) => panic!("gunzip has no budget to exceed"),
    }
    // With a budget: never more granted than it holds, refused only when
    // the output needs more, and otherwise the same answer.
    let budget = limit / 2;
    let mut granted = 0usize;
    let within = gunzip_within(body, limit, |n| {
        if granted + n > budget {
            return false;
        }
        granted += n;
        true
    });
    assert!(granted <= budget);
    match (within, gunzip(body, limit)) {
        (Err(GunzipError::OverBudget), _) => {
            assert!(reference.len() > budget, "refused within the budget")
        }
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(GunzipError::TooLarge(a)), Err(GunzipError::TooLarge(b))) => assert_eq!(a, b),
        (Err(GunzipError::Invalid(_)), Err(GunzipError::Invalid(_))) => {}
        (a, b) => panic!("with a budget {a:?}, without {b:?}"),
    }
});
