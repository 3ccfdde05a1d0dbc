//! How the management commands print the server's answers: tables of
//! streams, sinks and pipelines, one definition's details, and what a
//! change did.

use serde_json::{json, Value};

/// What `pipe streams update` says of the server's answer.
pub(crate) fn stream_update_summary(name: &str, v: &Value) -> String {
    if v["changed"] == json!(false) {
        return format!("Stream '{name}' already is so; nothing changed.\n");
    }
    let c = &v["change"];
    let mut out = match v["dry_run"] == json!(true) {
        true => format!("Dry run: stream '{name}' can change:\n"),
        false => format!("Changed stream '{name}':\n"),
    };
    for line in c["schema_changes"].as_array().into_iter().flatten() {
        out.push_str(&format!("  {}\n", text(line)));
    }
    let settings: Vec<&str> = c["settings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !settings.is_empty() {
        out.push_str(&format!(
            "  settings {}: the next request is handled with them\n",
            settings.join(", ")
        ));
    }
    for p in c["pipelines"].as_array().into_iter().flatten() {
        let at = match p["switched_after_offset"].as_u64() {
            Some(offset) => format!("switched after offset {offset}"),
            None if v["dry_run"] == json!(true) => format!(
                "would first commit {} record(s) under the old schema",
                text(&p["records_through_old_definition"])
            ),
            None => "switched before its first commit".to_string(),
        };
        out.push_str(&format!("  pipeline '{}': {at}\n", text(&p["pipeline"])));
    }
    out
}

/// What `pipe sinks update` says of the server's answer.
pub(crate) fn sink_update_summary(name: &str, v: &Value) -> String {
    if v["changed"] == json!(false) {
        return format!("Sink '{name}' already has those settings; nothing changed.\n");
    }
    let c = &v["change"];
    let writer = match c.is_null() {
        true => "no pipeline writes it".to_string(),
        false => format!("pipeline '{}' ", text(&c["pipeline"])),
    };
    if v["dry_run"] == json!(true) {
        return match c.is_null() {
            true => format!("Dry run: sink '{name}' can change; {writer}.\n"),
            false => format!(
                "Dry run: sink '{name}' can change; {writer}would first commit the {} record(s) it has not committed with the old settings.\n",
                text(&c["records_through_old_definition"])
            ),
        };
    }
    let at = match (c.is_null(), c["switched_after_offset"].as_u64()) {
        (true, _) => writer,
        (false, Some(offset)) => format!("{writer}wrote events through offset {offset} with the old settings, every later one with the new"),
        (false, None) => format!("{writer}writes every event with the new settings"),
    };
    format!("Changed sink '{name}': {at}.\n{}", sink_details(v))
}

/// What `pipe pipelines update` says of the server's answer.
pub(crate) fn update_summary(v: &Value) -> String {
    let name = text(&v["pipeline"]);
    if v["changed"] == json!(false) {
        return format!("Pipeline '{name}' already has that definition; nothing changed.\n");
    }
    let c = &v["change"];
    let definitions = format!(
        "definition {} → {}",
        text(&c["definition_before"]),
        text(&c["definition_after"])
    );
    if v["dry_run"] == json!(true) {
        return format!(
            "Dry run: pipeline '{name}' can change ({definitions}). The current SQL would first commit the {} record(s) it has not committed; every later event would go through the new SQL.\n",
            text(&c["records_through_old_definition"])
        );
    }
    let at = match c["switched_after_offset"].as_u64() {
        Some(offset) => format!("events through offset {offset} went through the old SQL, every later one goes through the new"),
        None => "every event goes through the new SQL".to_string(),
    };
    format!("Changed pipeline '{name}' ({definitions}): {at}.\n")
}

/// A value for people: strings bare, null as `-`.
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

pub(crate) fn yes_no(v: &Value) -> String {
    if v.as_bool().unwrap_or(false) {
        "Yes".into()
    } else {
        "No".into()
    }
}

pub(crate) fn list(v: &Value) -> String {
    let items: Vec<String> = v.as_array().into_iter().flatten().map(text).collect();
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
pub(crate) fn schema_rows(fields: &Value, prefix: &str, rows: &mut Vec<Vec<String>>) {
    for f in fields.as_array().into_iter().flatten() {
        let name = format!("{prefix}{}", text(&f["name"]));
        let ty = text(&f["type"]);
        let detail = match ty.as_str() {
            "timestamp" => text(&f["unit"]),
            "list" => text(&f["items"]["type"]),
            _ => String::new(),
        };
        rows.push(vec![
            name.clone(),
            ty.clone(),
            detail,
            yes_no(&f["required"]),
        ]);
        if ty == "struct" {
            schema_rows(&f["fields"], &format!("{name}."), rows);
        }
        if ty == "list" && f["items"]["type"] == "struct" {
            schema_rows(&f["items"]["fields"], &format!("{name}[]."), rows);
        }
    }
}

pub(crate) fn schema_summary(s: &Value) -> String {
    match s["schema"]["fields"].as_array() {
        Some(fields) if s["json_schema"] == true => {
            format!("JSON Schema ({} fields)", fields.len())
        }
        Some(fields) => format!("{} fields", fields.len()),
        None => "unstructured".into(),
    }
}

/// `pipe streams get` (and create) for people, in the layout of wrangler's
/// creation summary.
pub fn stream_details(s: &Value) -> String {
    let mut out = format!(
        "General:\n  Name: {}\n  Defined in: {}\nHTTP Ingest:\n  Enabled: {}\n  Authentication: {}\n  Endpoint: {}\n  CORS Origins: {}\n",
        text(&s["stream"]),
        match s["origin"].as_str() {
            Some("file") => "the definitions file",
            _ => "the admin API (definitions.toml)",
        },
        yes_no(&s["http"]["enabled"]),
        yes_no(&s["http"]["auth"]),
        text(&s["endpoint"]),
        match list(&s["http"]["cors_origins"]).as_str() {
            "-" => "None".to_string(),
            other => other.to_string(),
        },
    );
    out.push_str(&format!(
        "Events:\n  Invalid events: {}{}\n  Unknown fields: {}\n",
        text(&s["invalid_events"]),
        match &s["quarantine_table"] {
            Value::String(t) => format!(" (into {t})"),
            _ => String::new(),
        },
        text(&s["unknown_fields"]),
    ));
    if s["buffer"].is_object() {
        out.push_str(&format!(
            "Buffer:\n  On disk: {}\n  Not yet committed: {} request(s)\n",
            pipe_query::human_bytes(s["buffer"]["bytes"].as_u64().unwrap_or(0) as usize),
            text(&s["buffer"]["unprocessed_records"]),
        ));
    }
    if s["stats"].is_object() {
        out.push_str(&format!(
            "Since start:\n  Requests: {}\n  Events accepted: {}\n  Bytes in: {}\n  Decode errors: {}\n",
            text(&s["stats"]["requests"]),
            text(&s["stats"]["records_in"]),
            text(&s["stats"]["bytes_in"]),
            text(&s["stats"]["decode_errors"]),
        ));
    }
    out.push_str(&format!("Pipelines: {}\n", list(&s["pipelines"])));
    if s["schema"].is_object() {
        out.push_str(if s["json_schema"] == true {
            "Input Schema (from a JSON Schema document):\n"
        } else {
            "Input Schema:\n"
        });
        let mut rows = vec![header(&["Field Name", "Type", "Unit/Items", "Required"])];
        schema_rows(&s["schema"]["fields"], "", &mut rows);
        out.push_str(&boxed(&rows));
    } else {
        out.push_str("Input Schema: none (unstructured: any JSON object, kept as `value`)\n");
    }
    out
}

pub(crate) fn destination(s: &Value) -> String {
    match (&s["table"], &s["path"]) {
        (Value::String(t), _) => t.clone(),
        (_, Value::String(p)) => p.clone(),
        _ => "-".into(),
    }
}

/// `pipe sinks get` for people.
pub fn sink_details(s: &Value) -> String {
    let mut out = format!(
        "General:\n  Name: {}\n  Type: {}\n  Defined in: {}\n",
        text(&s["sink"]),
        text(&s["type"]),
        match s["origin"].as_str() {
            Some("file") => "the definitions file",
            _ => "the admin API (definitions.toml)",
        },
    );
    if s["table"].is_string() {
        out.push_str(&format!(
            "Destination:\n  Table: {}\n  Partitioned by: {}\n  Bloom filters: {}\n  Sorted by: {}\n  Target file size: {}\n",
            text(&s["table"]),
            list(&s["partition_by"]),
            list(&s["bloom_filter_columns"]),
            match s["sort_by"].as_array() {
                None => "the table's own order".into(),
                Some(c) if c.is_empty() => "unsorted".into(),
                Some(_) => list(&s["sort_by"]),
            },
            match s["target_file_size_mb"].as_u64() {
                Some(mb) => format!("{mb} MB"),
                None => "the table's, else 512 MB".into(),
            },
        ));
    } else {
        out.push_str(&format!(
            "Destination:\n  Path: {}\n  Folders: {}\n",
            text(&s["path"]),
            text(&s["partitioning"]),
        ));
    }
    out.push_str(&format!(
        "Format:\n  Type: {}\n  Compression: {}\n  Row group: {} rows\nBatching:\n  Roll interval: {} s\n  Roll size: {} MB\n  Roll rows: {}\nPipeline: {}\n",
        text(&s["format"]),
        text(&s["compression"]),
        text(&s["row_group_rows"]),
        text(&s["roll_interval_secs"]),
        text(&s["roll_size_mb"]),
        text(&s["roll_rows"]),
        text(&s["pipeline"]),
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
pub(crate) fn streams_table(all: &Value) -> String {
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
    for s in all["streams"].as_array().into_iter().flatten() {
        rows.push(vec![
            text(&s["stream"]),
            text(&s["origin"]),
            yes_no(&s["http"]["enabled"]),
            yes_no(&s["http"]["auth"]),
            schema_summary(s),
            text(&s["buffer"]["unprocessed_records"]),
            list(&s["pipelines"]),
            text(&s["endpoint"]),
        ]);
    }
    aligned(&rows)
}

/// `pipe sinks list` for people.
pub(crate) fn sinks_table(all: &Value) -> String {
    let mut rows = vec![header(&[
        "SINK",
        "ORIGIN",
        "TYPE",
        "DESTINATION",
        "COMPRESSION",
        "ROLL",
        "PIPELINE",
    ])];
    for s in all["sinks"].as_array().into_iter().flatten() {
        rows.push(vec![
            text(&s["sink"]),
            text(&s["origin"]),
            text(&s["type"]),
            destination(s),
            text(&s["compression"]),
            format!(
                "{} s / {} MB",
                text(&s["roll_interval_secs"]),
                text(&s["roll_size_mb"])
            ),
            text(&s["pipeline"]),
        ]);
    }
    aligned(&rows)
}

/// `pipe pipelines list` as a table.
pub fn pipelines_table(all: &Value) -> String {
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
    for p in all["pipelines"].as_array().into_iter().flatten() {
        rows.push(vec![
            text(&p["pipeline"]),
            text(&p["state"]),
            text(&p["stream"]),
            text(&p["sink"]),
            text(&p["committed_through"]),
            text(&p["rows_committed"]),
            text(&p["failed_rows_committed"]),
            text(&p["files_committed"]),
            ago(p["last_commit_unix_ms"].as_u64().unwrap_or(0)),
            p["recent_errors"]
                .as_array()
                .map_or(0, Vec::len)
                .to_string(),
        ]);
    }
    aligned(&rows)
}

/// `pipe pipelines get` for people.
pub fn pipeline_details(p: &Value) -> String {
    let field = |k: &str| text(&p[k]);
    let mut out = format!(
        "pipeline          {}\nstream            {}\nsink              {} ({})\nquarantine table  {}\nsql               {}\ncommitted through offset {}\n",
        field("pipeline"),
        field("stream"),
        field("sink"),
        field("sink_kind"),
        field("quarantine_table"),
        field("sql").trim(),
        field("committed_through"),
    );
    out.push_str(&format!("state             {}", field("state")));
    if let Some(reason) = p["state_reason"].as_str() {
        let attempts = p["retry_attempts"].as_u64().unwrap_or(0);
        let tries = if attempts > 0 {
            format!(", {attempts} tries")
        } else {
            String::new()
        };
        out.push_str(&format!(" since {}{tries}: {reason}", field("state_since")));
    }
    out.push('\n');
    out.push_str(&format!(
        "since start: {} rows, {} failed rows, {} files, {} bytes ({} before compression), {} row groups, {} commits, last {}\n",
        field("rows_committed"),
        field("failed_rows_committed"),
        field("files_committed"),
        field("bytes_committed"),
        field("uncompressed_bytes_committed"),
        field("row_groups_committed"),
        field("commits"),
        ago(p["last_commit_unix_ms"].as_u64().unwrap_or(0)),
    ));
    let errors = p["recent_errors"].as_array().cloned().unwrap_or_default();
    if errors.is_empty() {
        out.push_str("recent errors: none\n");
    } else {
        out.push_str("recent errors:\n");
        for e in errors {
            out.push_str(&format!("  {}  {}\n", text(&e["at"]), text(&e["error"])));
        }
    }
    out
}

// ---- setup ----

/// What `pipe reload` says of the server's answer.
pub(crate) fn reload_summary(v: &Value) -> String {
    let names = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| match n.as_str() {
                Some(s) => s.to_string(),
                None => text(
                    n["stream"]
                        .as_str()
                        .map_or(&n["pipeline"], |_| &n["stream"]),
                ),
            })
            .collect()
    };
    let dry = v["dry_run"] == json!(true);
    let mut out = String::new();
    for (key, what) in [
        ("streams_added", "streams started"),
        ("streams_changed", "streams changed"),
        ("streams_removed", "streams stopped (their buffers stay)"),
        ("sinks_added", "sinks added"),
        ("sinks_changed", "sinks changed"),
        ("sinks_removed", "sinks removed"),
        ("pipelines_added", "pipelines started"),
        ("pipelines_changed", "pipelines switched at an offset"),
        (
            "pipelines_removed",
            "pipelines stopped after their last commit",
        ),
        (
            "pipelines_revived",
            "pipelines run again (their last stop could not commit)",
        ),
    ] {
        let list = names(key);
        if !list.is_empty() {
            out.push_str(&format!("  {what}: {}\n", list.join(", ")));
        }
    }
    if v["admin_changed"] == json!(true) {
        out.push_str("  admin tokens changed\n");
    }
    match (out.is_empty(), dry) {
        (true, _) => "pipe.toml changes nothing the server runs.\n".to_string(),
        (false, true) => format!("Dry run: reloading pipe.toml would change:\n{out}"),
        (false, false) => format!("Reloaded pipe.toml:\n{out}"),
    }
}
