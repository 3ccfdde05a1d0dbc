//! `StreamSchema::from_json`: a stream's schema file (Pipelines field
//! format), as `pipe.toml` and the admin API take it.
//!
//! Checks: no panic; a schema that parses maps to Arrow, survives a write
//! and a read, and its decoder accepts an event that sets every field
//! (nested ones too) to a valid value, by the fast and the slow path alike.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipe_fuzz::{decode_both, sample_event};
use pipe_schemas::{EventDecoder, StreamSchema, UnknownFields};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(schema) = StreamSchema::from_json(text) else {
        return;
    };
    let _ = schema.arrow_schema();
    let written = serde_json::to_string(&schema).unwrap();
    let again = StreamSchema::from_json(&written)
        .unwrap_or_else(|e| panic!("`{written}` does not read back: {e}"));
    assert_eq!(again, schema);

    let event = sample_event(&schema.fields);
    // With a bad event after it, the good one takes the slow path.
    let bodies = [
        format!("{event}"),
        format!("[{event},{event}]"),
        format!("[{event},1]"),
    ];
    for policy in [UnknownFields::Reject, UnknownFields::Keep] {
        let Ok(decoder) = EventDecoder::new(Some(schema.clone())).with_unknown_fields(policy)
        else {
            assert!(schema.fields.iter().any(|f| f.name == "_extra"));
            continue;
        };
        assert_eq!(
            decode_both(&decoder, bodies[0].as_bytes()),
            Some(1),
            "{event}"
        );
        assert_eq!(
            decode_both(&decoder, bodies[1].as_bytes()),
            Some(2),
            "{event}"
        );
        let split = decoder
            .decode_split(bodies[2].as_bytes(), pipe_schemas::BodyFormat::Json)
            .unwrap();
        assert_eq!(split.batch.map(|b| b.num_rows()), Some(1));
        assert_eq!(split.quarantined.len(), 1);
        decode_both(&decoder, b"{}");
    }
});
