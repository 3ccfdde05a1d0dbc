//! The definitions file: `toml::from_str::<ConfigFile>` then
//! `Config::resolve`, as `Config::load` does.
//!
//! Schema files named in the input are pointed at two real ones in a
//! scratch folder (`schema.json`, a Pipelines schema, and `js.json`, a JSON
//! Schema): what a fuzzed path names is never read. Checks: no panic; a
//! resolved config's streams build their decoders.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pipe::config::{Config, ConfigFile, Overrides};

const SCHEMA: &str = r#"{"fields":[
    {"name":"user_id","type":"string","required":true},
    {"name":"amount","type":"float64"},
    {"name":"_extra","type":"json"}]}"#;

const JSON_SCHEMA: &str = r#"{"type":"object","properties":{
    "user_id":{"type":"string"},"n":{"type":"integer","minimum":0}},
    "required":["user_id"]}"#;

fn base() -> &'static Path {
    static BASE: OnceLock<tempfile::TempDir> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("schema.json"), SCHEMA).unwrap();
        std::fs::write(dir.path().join("js.json"), JSON_SCHEMA).unwrap();
        dir
    })
    .path()
}

/// Keeps a fuzzed schema path inside the scratch folder: one of the two
/// files there, or a name that does not exist.
fn tame(path: &mut Option<PathBuf>) {
    if let Some(p) = path {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if !matches!(name, "schema.json" | "js.json") {
            *p = PathBuf::from("missing.json");
        } else {
            *p = PathBuf::from(name);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut file) = toml::from_str::<ConfigFile>(text) else {
        return;
    };
    for stream in file.streams.values_mut() {
        tame(&mut stream.schema_file);
        tame(&mut stream.json_schema_file);
    }
    let Ok(config) = Config::resolve(file, base(), &Overrides::default()) else {
        return;
    };
    for stream in &config.streams {
        let _ = stream.decoder();
    }
});
