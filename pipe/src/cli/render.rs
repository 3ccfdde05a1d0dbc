//! How the management commands print the server's answers
//! ([`crate::wire`]): tables of streams, sinks and pipelines, one
//! definition's details, and what a change did.

use std::fmt::Display;

use pipe_schemas::{FieldDef, FieldType};

use crate::wire::{
    PipelineList, PipelineUpdated, PipelineView, Reloaded, SinkList, SinkUpdated, SinkView,
    StreamDeleted, StreamList, StreamUpdated, StreamView, Updated,
};

/// What `pipe streams update` says of the server's answer.
pub(crate) fn stream_update_summary(name: &str, v: &StreamUpdated) -> String {
    let Some(c) = v.change() else {
        return format!("Stream '{name}' already is so; nothing changed.\n");
    };
    let dry = v.is_dry_run();
    let mut out = match dry {
        true => format!("Dry run: stream '{name}' can change:\n"),
        false => format!("Changed stream '{name}':\n"),
    };
    for line in &c.schema_changes {
        out.push_str(&format!("  {line}\n"));
    }
    if !c.settings.is_empty() {
        out.push_str(&format!(
            "  settings {}: the next request is handled with them\n",
            c.settings.join(", ")
        ));
    }
    for p in &c.pipelines {
        let at = match p.switched_after_offset {
            Some(offset) => format!("switched after offset {offset}"),
            None if dry => format!(
                "would first commit {} record(s) under the old schema",
                p.records_through_old_definition
            ),
            None => "switched before its first commit".to_string(),
        };
        out.push_str(&format!("  pipeline '{}': {at}\n", p.pipeline));
    }
    out
}

/// What `pipe sinks update` says of the server's answer.
pub(crate) fn sink_update_summary(name: &str, v: &SinkUpdated) -> String {
    let Some(c) = v.change() else {
        return format!("Sink '{name}' already has those settings; nothing changed.\n");
    };
    let writer = match c {
        None => "no pipeline writes it".to_string(),
        Some(c) => format!("pipeline '{}' ", c.pipeline),
    };
    let view = match v {
        Updated::Applied { view, .. } => view,
        _ => {
            return match c {
                None => format!("Dry run: sink '{name}' can change; {writer}.\n"),
                Some(c) => format!(
                    "Dry run: sink '{name}' can change; {writer}would first commit the {} record(s) it has not committed with the old settings.\n",
                    c.records_through_old_definition
                ),
            }
        }
    };
    let at = match c.as_ref().map(|c| c.switched_after_offset) {
        None => writer,
        Some(Some(offset)) => format!("{writer}wrote events through offset {offset} with the old settings, every later one with the new"),
        Some(None) => format!("{writer}writes every event with the new settings"),
    };
    format!("Changed sink '{name}': {at}.\n{}", sink_details(view))
}

/// What `pipe pipelines update` says of the server's answer.
pub(crate) fn pipeline_update_summary(name: &str, v: &PipelineUpdated) -> String {
    let Some(c) = v.change() else {
        return format!("Pipeline '{name}' already has that definition; nothing changed.\n");
    };
    let definitions = format!(
        "definition {} → {}",
        c.definition_before, c.definition_after
    );
    if v.is_dry_run() {
        return format!(
            "Dry run: pipeline '{name}' can change ({definitions}). The current SQL would first commit the {} record(s) it has not committed; every later event would go through the new SQL.\n",
            c.records_through_old_definition
        );
    }
    let at = match c.switched_after_offset {
        Some(offset) => format!("events through offset {offset} went through the old SQL, every later one goes through the new"),
        None => "every event goes through the new SQL".to_string(),
    };
    format!("Changed pipeline '{name}' ({definitions}): {at}.\n")
}

/// A value that may be unknown, for people: `-` when it is.
pub(crate) fn text(v: Option<impl Display>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// A unit variant as the server names it (its serde name).
pub(crate) fn name_of(v: &impl serde::Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(name)) => name,
        _ => "-".into(),
    }
}

pub(crate) fn yes_no(v: bool) -> String {
    if v {
        "Yes".into()
    } else {
        "No".into()
    }
}

pub(crate) fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

pub(crate) fn header(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Columns padded to their widest cell, two spaces apart.
pub(crate) fn aligned(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A table with box-drawing borders, as wrangler prints a schema.
pub(crate) fn boxed(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let rule = |l: &str, m: &str, r: &str| {
        let parts: Vec<String> = widths.iter().map(|w| "─".repeat(w + 2)).collect();
        format!("{l}{}{r}\n", parts.join(m))
    };
    let mut out = rule("┌", "┬", "┐");
    for (i, r) in rows.iter().enumerate() {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!(" {cell:<w$} "))
            .collect();
        out.push_str(&format!("│{}│\n", cells.join("│")));
        if i + 1 < rows.len() {
            out.push_str(&rule("├", "┼", "┤"));
        }
    }
    out.push_str(&rule("└", "┴", "┘"));
    out
}

/// The rows of a schema: nested fields as `parent.child`, list items as
/// their type.
pub(crate) fn schema_rows(fields: &[FieldDef], prefix: &str, rows: &mut Vec<Vec<String>>) {
    for f in fields {
        let name = format!("{prefix}{}", f.name);
        let detail = match &f.ty {
            FieldType::Timestamp { unit } => name_of(unit),
            FieldType::List { items } => items.ty.name().to_string(),
            _ => String::new(),
        };
        rows.push(vec![
            name.clone(),
            f.ty.name().to_string(),
            detail,
            yes_no(f.required),
        ]);
        match &f.ty {
            FieldType::Struct { fields } => schema_rows(fields, &format!("{name}."), rows),
            FieldType::List { items } => {
                if let FieldType::Struct { fields } = &items.ty {
                    schema_rows(fields, &format!("{name}[]."), rows);
                }
            }
            _ => {}
        }
    }
}

pub(crate) fn schema_summary(s: &StreamView) -> String {
    match &s.schema {
        Some(schema) if s.json_schema => format!("JSON Schema ({} fields)", schema.fields.len()),
        Some(schema) => format!("{} fields", schema.fields.len()),
        None => "unstructured".into(),
    }
}

/// Where a definition is stored, for people.
fn defined_in(origin: Option<crate::wire::Origin>) -> &'static str {
    match origin {
        Some(crate::wire::Origin::File) => "the definitions file",
        _ => "the admin API (definitions.toml)",
    }
}

/// `pipe streams get` (and create) for people, in the layout of wrangler's
/// creation summary.
pub fn stream_details(s: &StreamView) -> String {
    let mut out = format!(
        "General:\n  Name: {}\n  Defined in: {}\nHTTP Ingest:\n  Enabled: {}\n  Authentication: {}\n  Endpoint: {}\n  CORS Origins: {}\n",
        s.stream,
        defined_in(s.origin),
        yes_no(s.http.enabled),
        yes_no(s.http.auth),
        s.endpoint,
        match list(&s.http.cors_origins).as_str() {
            "-" => "None".to_string(),
            other => other.to_string(),
        },
    );
    out.push_str(&format!(
        "Events:\n  Invalid events: {}{}\n  Unknown fields: {}\n",
        s.invalid_events,
        match &s.quarantine_table {
            Some(t) => format!(" (into {t})"),
            None => String::new(),
        },
        name_of(&s.unknown_fields),
    ));
    if let Some(buffer) = &s.buffer {
        out.push_str(&format!(
            "Buffer:\n  On disk: {}\n  Not yet committed: {} request(s)\n",
            pipe_query::human_bytes(buffer.bytes as usize),
            buffer.unprocessed_records,
        ));
    }
    if let Some(stats) = &s.stats {
        out.push_str(&format!(
            "Since start:\n  Requests: {}\n  Events accepted: {}\n  Bytes in: {}\n  Decode errors: {}\n",
            stats.requests, stats.records_in, stats.bytes_in, stats.decode_errors,
        ));
    }
    out.push_str(&format!("Pipelines: {}\n", list(&s.pipelines)));
    if let Some(schema) = &s.schema {
        out.push_str(if s.json_schema {
            "Input Schema (from a JSON Schema document):\n"
        } else {
            "Input Schema:\n"
        });
        let mut rows = vec![header(&["Field Name", "Type", "Unit/Items", "Required"])];
        schema_rows(&schema.fields, "", &mut rows);
        out.push_str(&boxed(&rows));
    } else {
        out.push_str("Input Schema: none (unstructured: any JSON object, kept as `value`)\n");
    }
    out
}

pub(crate) fn destination(s: &SinkView) -> String {
    text(s.table.as_ref().or(s.path.as_ref()))
}

/// `pipe sinks get` for people.
pub fn sink_details(s: &SinkView) -> String {
    let list_of = |items: &Option<Vec<String>>| list(items.as_deref().unwrap_or_default());
    let mut out = format!(
        "General:\n  Name: {}\n  Type: {}\n  Defined in: {}\n",
        s.sink,
        s.kind,
        defined_in(s.origin),
    );
    if let Some(table) = &s.table {
        out.push_str(&format!(
            "Destination:\n  Table: {table}\n  Partitioned by: {}\n  Bloom filters: {}\n  Sorted by: {}\n  Target file size: {}\n",
            list_of(&s.partition_by),
            list_of(&s.bloom_filter_columns),
            match &s.sort_by {
                None => "the table's own order".into(),
                Some(c) if c.is_empty() => "unsorted".into(),
                Some(c) => list(c),
            },
            match s.target_file_size_mb {
                Some(mb) => format!("{mb} MB"),
                None => "the table's, else 512 MB".into(),
            },
        ));
    } else {
        out.push_str(&format!(
            "Destination:\n  Path: {}\n  Folders: {}\n",
            text(s.path.as_ref()),
            text(s.partitioning.as_ref()),
        ));
    }
    out.push_str(&format!(
        "Format:\n  Type: {}\n  Compression: {}\n  Row group: {} rows\nBatching:\n  Roll interval: {} s\n  Roll size: {} MB\n  Roll rows: {}\nPipeline: {}\n",
        s.format,
        name_of(&s.compression),
        s.row_group_rows,
        s.roll_interval_secs,
        s.roll_size_mb,
        text(s.roll_rows),
        text(s.pipeline.as_ref()),
    ));
    out
}

/// How long ago `ms` (since the epoch) was, for people.
pub(crate) fn ago(ms: u64) -> String {
    if ms == 0 {
        return "never".into();
    }
    let now = pipe_schemas::now_micros().max(0) as u64 / 1000;
    let secs = now.saturating_sub(ms) / 1000;
    match secs {
        0..=119 => format!("{secs} s ago"),
        120..=7199 => format!("{} min ago", secs / 60),
        _ => format!("{} h ago", secs / 3600),
    }
}

/// `pipe streams list` for people.
pub(crate) fn streams_table(all: &StreamList) -> String {
    let mut rows = vec![header(&[
        "STREAM",
        "ORIGIN",
        "HTTP",
        "AUTH",
        "SCHEMA",
        "UNPROCESSED",
        "PIPELINES",
        "ENDPOINT",
    ])];
    for s in &all.streams {
        rows.push(vec![
            s.stream.clone(),
            text(s.origin.as_ref().map(name_of)),
            yes_no(s.http.enabled),
            yes_no(s.http.auth),
            schema_summary(s),
            text(s.buffer.as_ref().map(|b| b.unprocessed_records)),
            list(&s.pipelines),
            s.endpoint.clone(),
        ]);
    }
    aligned(&rows)
}

/// `pipe sinks list` for people.
pub(crate) fn sinks_table(all: &SinkList) -> String {
    let mut rows = vec![header(&[
        "SINK",
        "ORIGIN",
        "TYPE",
        "DESTINATION",
        "COMPRESSION",
        "ROLL",
        "PIPELINE",
    ])];
    for s in &all.sinks {
        rows.push(vec![
            s.sink.clone(),
            text(s.origin.as_ref().map(name_of)),
            s.kind.clone(),
            destination(s),
            name_of(&s.compression),
            format!("{} s / {} MB", s.roll_interval_secs, s.roll_size_mb),
            text(s.pipeline.as_ref()),
        ]);
    }
    aligned(&rows)
}

/// `pipe pipelines list` as a table.
pub fn pipelines_table(all: &PipelineList) -> String {
    let mut rows = vec![header(&[
        "PIPELINE",
        "STATE",
        "STREAM",
        "SINK",
        "COMMITTED",
        "ROWS",
        "FAILED",
        "FILES",
        "LAST COMMIT",
        "ERRORS",
    ])];
    for p in &all.pipelines {
        rows.push(vec![
            p.pipeline.clone(),
            p.health.state.as_str().to_string(),
            p.stream.clone(),
            p.sink.clone(),
            text(p.committed_through),
            p.rows_committed.to_string(),
            p.failed_rows_committed.to_string(),
            p.files_committed.to_string(),
            ago(p.last_commit_unix_ms),
            p.recent_errors.len().to_string(),
        ]);
    }
    aligned(&rows)
}

/// `pipe pipelines get` for people.
pub fn pipeline_details(p: &PipelineView) -> String {
    let mut out = format!(
        "pipeline          {}\nstream            {}\nsink              {} ({})\nquarantine table  {}\nsql               {}\ncommitted through offset {}\n",
        p.pipeline,
        p.stream,
        p.sink,
        p.sink_kind,
        text(p.quarantine_table.as_ref()),
        text(p.sql.as_deref().map(str::trim)),
        text(p.committed_through),
    );
    let health = &p.health;
    out.push_str(&format!("state             {}", health.state.as_str()));
    if let Some(reason) = &health.reason {
        let tries = match health.attempts {
            0 => String::new(),
            n => format!(", {n} tries"),
        };
        out.push_str(&format!(" since {}{tries}: {reason}", health.since));
    }
    out.push('\n');
    out.push_str(&format!(
        "since start: {} rows, {} failed rows, {} files, {} bytes ({} before compression), {} row groups, {} commits, last {}\n",
        p.rows_committed,
        p.failed_rows_committed,
        p.files_committed,
        p.bytes_committed,
        p.uncompressed_bytes_committed,
        p.row_groups_committed,
        p.commits,
        ago(p.last_commit_unix_ms),
    ));
    if p.recent_errors.is_empty() {
        out.push_str("recent errors: none\n");
    } else {
        out.push_str("recent errors:\n");
        for e in &p.recent_errors {
            out.push_str(&format!("  {}  {}\n", e.at, e.error));
        }
    }
    out
}

/// What `pipe streams delete` says it took with the stream.
pub(crate) fn deleted_with(d: &StreamDeleted) -> String {
    let mut out = String::new();
    for p in &d.pipelines_deleted {
        out.push_str(&format!("Deleted pipeline '{p}' with it.\n"));
    }
    if d.unprocessed_records_dropped > 0 {
        out.push_str(&format!(
            "Dropped {} accepted request(s) no pipeline had committed.\n",
            d.unprocessed_records_dropped
        ));
    }
    out
}

// ---- setup ----

/// What `pipe reload` says of the server's answer.
pub(crate) fn reload_summary(v: &Reloaded) -> String {
    let names = |names: &[String]| names.join(", ");
    let streams_changed: Vec<&str> = v.streams_changed.iter().map(|c| &*c.stream).collect();
    let pipelines_changed: Vec<&str> = v.pipelines_changed.iter().map(|c| &*c.pipeline).collect();
    let mut out = String::new();
    for (list, what) in [
        (names(&v.streams_added), "streams started"),
        (streams_changed.join(", "), "streams changed"),
        (
            names(&v.streams_removed),
            "streams stopped (their buffers stay)",
        ),
        (names(&v.sinks_added), "sinks added"),
        (names(&v.sinks_changed), "sinks changed"),
        (names(&v.sinks_removed), "sinks removed"),
        (names(&v.pipelines_added), "pipelines started"),
        (
            pipelines_changed.join(", "),
            "pipelines switched at an offset",
        ),
        (
            names(&v.pipelines_removed),
            "pipelines stopped after their last commit",
        ),
        (
            names(&v.pipelines_revived),
            "pipelines run again (their last stop could not commit)",
        ),
    ] {
        if !list.is_empty() {
            out.push_str(&format!("  {what}: {list}\n"));
        }
    }
    if v.admin_changed {
        out.push_str("  admin tokens changed\n");
    }
    match (out.is_empty(), v.dry_run) {
        (true, _) => "pipe.toml changes nothing the server runs.\n".to_string(),
        (false, true) => format!("Dry run: reloading pipe.toml would change:\n{out}"),
        (false, false) => format!("Reloaded pipe.toml:\n{out}"),
    }
}
