//! `JsonSchema::from_json`: a stream defined by a JSON Schema document.
//!
//! Checks: no panic; a document that compiles maps to a valid stream
//! schema, and decoding with it never ends in an internal error (an event
//! the document and the column checks both accept always decodes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipe_fuzz::{decode_both, sample_event};
use pipe_schemas::{EventDecoder, JsonSchema, UnknownFields};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(js) = JsonSchema::from_json(text) else {
        return;
    };
    js.schema
        .check()
        .expect("a mapped schema is a valid stream schema");
    let event = sample_event(&js.schema.fields);
    for policy in [UnknownFields::Reject, UnknownFields::Drop] {
        let decoder = EventDecoder::new(None)
            .with_json_schema(js.clone())
            .with_unknown_fields(policy)
            .unwrap();
        decode_both(&decoder, format!("{event}").as_bytes());
        decode_both(&decoder, format!("[{event},{{}},1]").as_bytes());
        decode_both(&decoder, b"{}");
    }
});
