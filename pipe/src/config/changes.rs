//! What changed when: every stored change of the API's definitions is
//! appended to `<data_dir>/changes.log`, one JSON line each, with what it
//! created, updated and deleted (found by comparing the definitions before
//! and after, so no caller can forget to say). A change put back after a
//! failure shows as the change that undid it. `GET /v1/changes` answers
//! the newest; the file keeps about the last [`KEEP`] lines.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{json, Value};

use super::definitions::ApiDefinitions;
use crate::{Error, Result};

/// The file, in the data directory.
pub const CHANGES_FILE: &str = "changes.log";
/// About this many changes are kept.
pub const KEEP: usize = 1000;

/// The log of one data directory.
#[derive(Debug, Clone)]
pub struct ChangeLog {
    path: PathBuf,
}

impl ChangeLog {
    pub fn new(data_dir: &Path) -> ChangeLog {
        ChangeLog {
            path: data_dir.join(CHANGES_FILE),
        }
    }

    /// Appends the change from `before` to `after` (nothing if none).
    pub fn record(&self, before: &ApiDefinitions, after: &ApiDefinitions) -> Result<()> {
        let mut entry = json!({ "at": chrono::Utc::now().to_rfc3339() });
        let mut any = false;
        for (action, names) in [
            ("created", diff(before, after, Diff::Created)),
            ("updated", diff(before, after, Diff::Updated)),
            ("deleted", diff(before, after, Diff::Deleted)),
        ] {
            if !names.is_empty() {
                any = true;
                entry[action] = json!(names);
            }
        }
        if !any {
            return Ok(());
        }
        let io = |e: std::io::Error| {
            Error::Internal(format!(
                "recording a change in `{}`: {e}",
                self.path.display()
            ))
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        // A line cut short by a crash is ended first, so it costs only
        // itself, not the record after it.
        let torn = {
            use std::io::{Read, Seek, SeekFrom};
            let mut last = [b'\n'];
            let mut reader = std::fs::File::open(&self.path).map_err(io)?;
            if reader.metadata().map_err(io)?.len() > 0 {
                reader.seek(SeekFrom::End(-1)).map_err(io)?;
                reader.read_exact(&mut last).map_err(io)?;
            }
            last[0] != b'\n'
        };
        if torn {
            writeln!(file).map_err(io)?;
        }
        writeln!(file, "{entry}").map_err(io)?;
        file.sync_data().map_err(io)?;
        if file.metadata().map_err(io)?.len() > (KEEP as u64) * 1024 {
            let kept = self.newest(KEEP);
            let text: String = kept.iter().rev().map(|e| format!("{e}\n")).collect();
            super::definitions::write_durably(&self.path, text.as_bytes())?;
        }
        Ok(())
    }

    /// The newest `n` changes, newest first.
    pub fn newest(&self, n: usize) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        text.lines()
            .rev()
            .filter_map(|l| serde_json::from_str(l).ok())
            .take(n)
            .collect()
    }
}

#[derive(Clone, Copy)]
enum Diff {
    Created,
    Updated,
    Deleted,
}

/// `kind name` of each definition `which` names between the two.
fn diff(before: &ApiDefinitions, after: &ApiDefinitions, which: Diff) -> Vec<String> {
    let mut out = Vec::new();
    kinds(&mut out, "stream", &before.streams, &after.streams, which);
    kinds(&mut out, "sink", &before.sinks, &after.sinks, which);
    kinds(
        &mut out,
        "pipeline",
        &before.pipelines,
        &after.pipelines,
        which,
    );
    out
}

fn kinds<T: Serialize>(
    out: &mut Vec<String>,
    kind: &str,
    before: &BTreeMap<String, T>,
    after: &BTreeMap<String, T>,
    which: Diff,
) {
    let as_json = |t: &T| serde_json::to_value(t).unwrap_or(Value::Null);
    match which {
        Diff::Created => out.extend(
            after
                .keys()
                .filter(|k| !before.contains_key(*k))
                .map(|k| format!("{kind} {k}")),
        ),
        Diff::Deleted => out.extend(
            before
                .keys()
                .filter(|k| !after.contains_key(*k))
                .map(|k| format!("{kind} {k}")),
        ),
        Diff::Updated => out.extend(
            after
                .iter()
                .filter(|(k, v)| before.get(*k).is_some_and(|b| as_json(b) != as_json(v)))
                .map(|(k, _)| format!("{kind} {k}")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PipelineFile;

    fn pipeline(sql: &str) -> PipelineFile {
        PipelineFile {
            sql: sql.into(),
            quarantine_table: None,
            start: None,
        }
    }

    #[test]
    fn each_stored_change_is_one_line_saying_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let log = ChangeLog::new(dir.path());
        let empty = ApiDefinitions::default();
        let mut one = ApiDefinitions::default();
        one.pipelines.insert("p".into(), pipeline("a"));
        let mut two = one.clone();
        two.pipelines.insert("p".into(), pipeline("b"));
        two.pipelines.insert("q".into(), pipeline("c"));
        log.record(&empty, &one).unwrap();
        log.record(&one, &one).unwrap();
        log.record(&one, &two).unwrap();
        log.record(&two, &empty).unwrap();
        let newest = log.newest(10);
        assert_eq!(newest.len(), 3, "no line for no change: {newest:?}");
        assert_eq!(newest[0]["deleted"], json!(["pipeline p", "pipeline q"]));
        assert_eq!(newest[1]["created"], json!(["pipeline q"]));
        assert_eq!(newest[1]["updated"], json!(["pipeline p"]));
        assert_eq!(newest[2]["created"], json!(["pipeline p"]));
        assert!(newest[2]["at"].is_string());
        // A torn last line costs only itself.
        let text = std::fs::read_to_string(dir.path().join(CHANGES_FILE)).unwrap();
        std::fs::write(dir.path().join(CHANGES_FILE), &text[..text.len() - 10]).unwrap();
        log.record(&empty, &one).unwrap();
        let newest = log.newest(10);
        assert_eq!(newest.len(), 3, "{newest:?}");
        assert_eq!(newest[0]["created"], json!(["pipeline p"]));
    }
}
