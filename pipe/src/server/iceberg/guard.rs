//! What a client of the catalog may not do to the files and tables pipe
//! owns: names that are paths, locations it chose itself, write paths
//! pointed elsewhere by a property, the `pipe.` properties and snapshot
//! summaries that hold pipelines' positions, tables a pipeline writes (its
//! table, its quarantine tables), and a purge that would delete files
//! another table (or nobody in the warehouse) owns.
//!
//! Locations are pipe's to choose: a table made through the catalog lies
//! at `<warehouse>/<namespace levels>/<name>` (with `-` and 8 hex digits
//! when that folder is taken), a location a client names must be that one,
//! a table's location does not move, and neither a namespace's `location`
//! nor a table's `write.*.path` properties are set through the catalog.
//! So a client cannot spell its way into another table's folder; what it
//! can still name (a registered table's metadata, the files of a purge) is
//! compared with symlinks resolved (`pipe_sink::maintenance::owned`, which
//! maintenance uses too).

use std::collections::HashMap;

use axum::http::StatusCode;
use iceberg::{NamespaceIdent, TableIdent, TableUpdate};
use pipe_sink::maintenance::owned::{overlap, owns};

use super::error::{RestError, RestResult};
use super::IcebergState;
use crate::config::SinkTarget;

/// Properties naming where a table's writers put files.
const PATH_PROPERTIES: [&str; 4] = [
    "write.data.path",
    "write.metadata.path",
    "write.object-storage.path",
    "write.folder-storage.path",
];

/// Namespace levels at most.
const MAX_DEPTH: usize = 16;

/// Characters that change how a name reads without being seen:
/// zero-width ones and bidirectional overrides.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// Refuses a namespace level or table name that is empty or blank, has
/// spaces around it, is long, holds a control or invisible character, a
/// path separator or a `.` (the SQL catalog and `namespace.table` names
/// join levels with it), or is `.` or `..` (names become folders of the
/// warehouse).
pub fn check_name(what: &str, name: &str) -> RestResult<()> {
    let bad = name.trim().is_empty()
        || name.trim() != name
        || name.contains('.')
        || name.len() > 255
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c.is_control() || invisible(c) || c == '/' || c == '\\');
    match bad {
        true => Err(RestError::bad_request(format!(
            "{what} `{}`: a name is 1 to 255 bytes, not blank and without spaces around it, without `.`, `/`, `\\`, control or invisible characters",
            name.escape_debug()
        ))),
        false => Ok(()),
    }
}

/// Refuses a name in a request's path that cannot name a folder of the
/// warehouse (empty, long, a path separator or control character, `.` or
/// `..`). Looser than [`check_name`], which new names meet: a table or
/// namespace made under older rules stays reachable.
pub fn check_path_name(what: &str, name: &str) -> RestResult<()> {
    let bad = name.is_empty()
        || name.len() > 255
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\');
    match bad {
        true => Err(RestError::bad_request(format!(
            "{what} `{}`: not a name",
            name.escape_debug()
        ))),
        false => Ok(()),
    }
}

/// [`check_name`] for every level of `namespace` (at least one, at most
/// 16), and no `.` in a level: the SQL catalog joins levels with `.`, so
/// `["a.b"]` would read as `["a", "b"]`.
pub fn check_namespace(namespace: &NamespaceIdent) -> RestResult<()> {
    let levels = namespace.as_ref();
    if levels.is_empty() || levels.len() > MAX_DEPTH {
        return Err(RestError::bad_request(format!(
            "a namespace has 1 to {MAX_DEPTH} levels"
        )));
    }
    levels
        .iter()
        .try_for_each(|level| check_name("namespace level (send levels as a list)", level))
}

/// Refuses a location outside the warehouse (a client would make the
/// server write or delete files anywhere its user may).
pub fn in_warehouse(state: &IcebergState, key: &str, location: &str) -> RestResult<()> {
    let config = state.supervisor.config();
    crate::config::sink_paths::FileSinkRoots::new(
        &config.catalog.warehouse.location,
        &[],
        std::path::Path::new("/"),
    )
    .and_then(|w| w.in_warehouse(key, location))
    .map_err(|e| RestError::forbidden(e.to_string()))
}

/// A table as the SQL catalog keys it: its namespace's levels joined by
/// `.` (so `["a.b"]` and `["a", "b"]` are the same table), then its name.
fn key_of(namespace: &str, table: &str) -> String {
    format!("{namespace}.{table}")
}

/// The tables this server's configuration writes, as the SQL catalog keys
/// them, each with what writes it: sinks' tables, streams' quarantine
/// tables, pipelines' tables for the rows their SQL fails on (made when
/// first needed).
fn written_tables(state: &IcebergState) -> Vec<(String, String)> {
    let config = state.supervisor.config();
    let mut written: Vec<(String, String)> = Vec::new();
    for sink in &config.sinks {
        if let SinkTarget::Table { namespace, table } = &sink.target {
            written.push((key_of(namespace, table), format!("sink `{}`", sink.name)));
        }
    }
    for s in &config.streams {
        if let Some((ns, t)) = &s.quarantine {
            written.push((
                key_of(ns, t),
                format!("stream `{}` (its quarantine)", s.name),
            ));
        }
    }
    for p in &config.pipelines {
        let (ns, t) = &p.quarantine;
        written.push((
            key_of(ns, t),
            format!("pipeline `{}` (rows its SQL fails on)", p.name),
        ));
    }
    written
}

/// Refuses to drop or rename a table this server's configuration writes
/// (see [`written_tables`]).
pub fn not_written(state: &IcebergState, ident: &TableIdent, what: &str) -> RestResult<()> {
    let wanted = key_of(&ident.namespace().join("."), ident.name());
    match written_tables(state)
        .into_iter()
        .find(|(k, _)| *k == wanted)
    {
        Some((_, by)) => Err(RestError::new(
            StatusCode::CONFLICT,
            "CommitFailedException",
            format!(
                "table `{ident}` is written by {by}: {what} it once nothing pipe runs writes it"
            ),
        )),
        None => Ok(()),
    }
}

/// Refuses a change of the `pipe.` table properties (pipelines'
/// positions) and of the properties naming where writers put files.
/// `current`: the table's properties now (a key set to the value it has
/// is no change).
pub fn check_properties(
    current: &HashMap<String, String>,
    set: &HashMap<String, String>,
    removed: &[String],
) -> RestResult<()> {
    let changed = set
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .chain(removed.iter().filter(|k| current.contains_key(*k)));
    for key in changed {
        if key.starts_with("pipe.") {
            return Err(RestError::forbidden(format!(
                "`{key}`: the `pipe.` table properties hold pipe's pipeline positions and are not changed through the catalog"
            )));
        }
        if PATH_PROPERTIES.contains(&key.as_str()) {
            return Err(RestError::forbidden(format!(
                "`{key}`: a table's files lie under its location, which pipe chooses; this property is not set through the catalog"
            )));
        }
    }
    Ok(())
}

/// Checks a commit's updates against the table's properties and
/// `location` now: [`check_properties`], no move, and no snapshot whose
/// summary speaks for a pipeline (`pipe.` keys: pipelines find their
/// positions there).
pub fn check_updates(
    ident: &TableIdent,
    current: &HashMap<String, String>,
    location: &str,
    updates: &[TableUpdate],
) -> RestResult<()> {
    for update in updates {
        match update {
            TableUpdate::SetProperties { updates } => check_properties(current, updates, &[])?,
            TableUpdate::RemoveProperties { removals } => {
                check_properties(current, &HashMap::new(), removals)?
            }
            TableUpdate::SetLocation { location: to } if spelled(to) != spelled(location) => {
                return Err(RestError::forbidden(format!(
                    "table `{ident}` lies at `{location}`: a table's location does not move (pipe chooses it)"
                )));
            }
            TableUpdate::AddSnapshot { snapshot } => {
                if let Some(key) = snapshot
                    .summary()
                    .additional_properties
                    .keys()
                    .find(|k| k.starts_with("pipe."))
                {
                    return Err(RestError::forbidden(format!(
                        "snapshot summary key `{key}`: `pipe.` keys record pipelines' commits and are written by pipe alone"
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Refuses a namespace's `location` property: tables made through the
/// catalog lie where pipe chooses (see the module doc).
pub fn no_namespace_location(set: &HashMap<String, String>, removed: &[String]) -> RestResult<()> {
    match set.contains_key("location") || removed.iter().any(|k| k == "location") {
        true => Err(RestError::forbidden(
            "a namespace's `location` is not set through the catalog: pipe puts a table at `<warehouse>/<namespace levels>/<name>`",
        )),
        false => Ok(()),
    }
}

/// Refuses registering metadata whose snapshots speak for a pipeline
/// (`pipe.` summary keys): pipelines find their positions there.
pub fn no_pipe_summaries(table: &iceberg::table::Table) -> RestResult<()> {
    let speaks = table.metadata().snapshots().any(|s| {
        s.summary()
            .additional_properties
            .keys()
            .any(|k| k.starts_with("pipe."))
    });
    match speaks {
        true => Err(RestError::forbidden(
            "the metadata holds snapshots with `pipe.` summary keys (a pipeline's commits): register it through pipe's own catalog settings instead",
        )),
        false => Ok(()),
    }
}

/// Every table of the catalog and its location.
async fn all_tables(state: &IcebergState) -> RestResult<Vec<(TableIdent, String)>> {
    Ok(pipe_sink::table::placed::locations(&state.supervisor.catalog()).await?)
}

/// A location as one spelling, without looking at the file system:
/// `file://` + the path, or `s3://bucket/…` (`s3a` as `s3`), without empty
/// or `.` segments or a trailing `/`; `None` for one with `..` (a name for
/// somewhere else). Where two locations may be one folder (symlinks
/// resolved), [`overlap`] and [`owns`] decide: maintenance uses them too.
fn spelled(location: &str) -> Option<String> {
    let (scheme, rest) = match location.split_once("://") {
        Some((s, r)) if s.eq_ignore_ascii_case("s3") || s.eq_ignore_ascii_case("s3a") => {
            ("s3://", r)
        }
        Some((s, r)) if s.eq_ignore_ascii_case("file") => ("file:///", r),
        Some(_) => return Some(location.to_string()),
        None => (
            "file:///",
            location.strip_prefix("file:").unwrap_or(location),
        ),
    };
    let mut parts = Vec::new();
    for segment in rest.split('/') {
        match segment {
            "" | "." => {}
            ".." => return None,
            s => parts.push(s),
        }
    }
    Some(format!("{scheme}{}", parts.join("/")))
}

/// Refuses a location that another table's is, holds, or lies in (its
/// maintenance would take the other's files for its own orphans, a purge
/// would delete them). `except`: the table itself.
pub async fn location_free(
    state: &IcebergState,
    location: &str,
    except: Option<&TableIdent>,
) -> RestResult<()> {
    for (ident, theirs) in all_tables(state).await? {
        if Some(&ident) != except && overlap(location, &theirs) {
            return Err(RestError::forbidden(format!(
                "`{location}` overlaps the location of table `{ident}` (`{theirs}`): a table's files are its own"
            )));
        }
    }
    // Where pipe will make the tables its configuration writes and has
    // not made yet (a quarantine table is made when first needed).
    let warehouse = state.supervisor.config().catalog.warehouse.location.clone();
    let except = except.map(|i| key_of(&i.namespace().join("."), i.name()));
    for (key, by) in written_tables(state) {
        let Some((ns, table)) = key.rsplit_once('.') else {
            continue;
        };
        let theirs = format!(
            "{}/{}/{table}",
            warehouse.trim_end_matches('/'),
            ns.replace('.', "/")
        );
        if except.as_deref() != Some(key.as_str()) && overlap(location, &theirs) {
            return Err(RestError::forbidden(format!(
                "`{location}` overlaps `{theirs}`, where pipe makes the table of {by}"
            )));
        }
    }
    Ok(())
}

/// Where pipe puts table `ident` when that folder is free:
/// `<warehouse>/<namespace levels>/<name>`.
pub fn natural_location(state: &IcebergState, ident: &TableIdent) -> String {
    let warehouse = state.supervisor.config().catalog.warehouse.location.clone();
    format!(
        "{}/{}/{}",
        warehouse.trim_end_matches('/'),
        ident.namespace().join("/"),
        ident.name()
    )
}

/// Refuses a location a client named for a new table unless it is one pipe
/// would choose: [`natural_location`], or it with `-` and 8 hex digits
/// (what a staged creation was answered with when that folder was taken).
pub fn chosen_by_pipe(
    state: &IcebergState,
    ident: &TableIdent,
    location: &str,
) -> RestResult<String> {
    let raw = natural_location(state, ident);
    let (Some(named), Some(natural)) = (spelled(location), spelled(&raw)) else {
        return Err(RestError::forbidden(format!(
            "`{location}`: `..` in a location"
        )));
    };
    // Kept as pipe spells it, whatever the client's spelling.
    if named == natural {
        return Ok(raw);
    }
    match named
        .strip_prefix(&natural)
        .and_then(|rest| rest.strip_prefix('-'))
        .filter(|hex| hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        Some(hex) => Ok(format!("{raw}-{}", hex.to_ascii_lowercase())),
        None => Err(RestError::forbidden(format!(
            "`{location}`: pipe chooses where tables lie (`{natural}` for `{ident}`); leave `location` out"
        ))),
    }
}

/// Refuses to purge a table unless every file it names lies in its own
/// location, which no other table's overlaps.
pub async fn purge_safe(state: &IcebergState, table: &iceberg::table::Table) -> RestResult<()> {
    let location = table.metadata().location().to_string();
    location_free(state, &location, Some(table.identifier())).await?;
    let files = pipe_sink::maintenance::orphans::referenced(table)
        .await
        .map_err(|e| RestError::of_pipe(&e.into()))?;
    if let Some(outside) = files.iter().find(|f| !owns(&location, f)) {
        return Err(RestError::forbidden(format!(
            "table `{}` names `{outside}`, outside its location `{location}`: a purge deletes only a table's own files; drop it without `purgeRequested`",
            table.identifier()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_folder_is_one_spelling() {
        assert_eq!(spelled("file:///w//a/./t/"), spelled("/w/a/t"));
        assert_eq!(spelled("file:/w/a/t"), Some("file:///w/a/t".into()));
        assert_eq!(spelled("s3a://b//x/./y"), spelled("s3://b/x/y"));
        assert_eq!(spelled("file:///w/a/../b"), None);
    }

    #[test]
    fn names_are_not_paths() {
        for bad in [
            "",
            " ",
            ".",
            "..",
            "a/b",
            "a\\b",
            "a\u{0}b",
            "a\u{202E}b",
            &"x".repeat(256),
        ] {
            assert!(check_name("table", bad).is_err(), "{bad:?}");
        }
        check_name("table", "orders_2026-11").unwrap();
    }
}
