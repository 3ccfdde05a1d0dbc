//! What a client of the catalog may not do to the files and tables pipe
//! owns: names that are paths, locations outside the warehouse or inside
//! another table, write paths pointed elsewhere by a property, the `pipe.`
//! properties and snapshot summaries that hold pipelines' positions, tables
//! a pipeline writes (its table, its quarantine tables), and a purge that
//! would delete files another table (or nobody in the warehouse) owns.

use std::collections::HashMap;

use axum::http::StatusCode;
use iceberg::{NamespaceIdent, TableIdent, TableUpdate};

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

/// Refuses a namespace level or table name that is empty, long, holds a
/// control character or a path separator, or is `.` or `..` (names become
/// folders of the warehouse).
pub fn check_name(what: &str, name: &str) -> RestResult<()> {
    let bad = name.is_empty()
        || name.len() > 255
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\');
    match bad {
        true => Err(RestError::bad_request(format!(
            "{what} `{}`: a name is 1 to 255 bytes, without `/`, `\\` or control characters, and not `.` or `..`",
            name.escape_debug()
        ))),
        false => Ok(()),
    }
}

/// [`check_name`] for every level of `namespace` (and at least one).
pub fn check_namespace(namespace: &NamespaceIdent) -> RestResult<()> {
    if namespace.as_ref().is_empty() {
        return Err(RestError::bad_request("an empty namespace"));
    }
    namespace
        .as_ref()
        .iter()
        .try_for_each(|level| check_name("namespace", level))
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
/// positions) and of the properties naming where writers put files to a
/// place outside the warehouse. `current`: the table's properties now (a
/// key set to the value it has is no change).
pub fn check_properties(
    state: &IcebergState,
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
    }
    for key in PATH_PROPERTIES {
        if let Some(path) = set.get(key) {
            in_warehouse(state, key, path)?;
        }
    }
    Ok(())
}

/// Checks a commit's updates against the table's properties now:
/// [`check_properties`], locations in the warehouse and free, and no
/// snapshot whose summary speaks for a pipeline (`pipe.` keys: pipelines
/// find their positions there).
pub async fn check_updates(
    state: &IcebergState,
    ident: &TableIdent,
    current: &HashMap<String, String>,
    updates: &[TableUpdate],
) -> RestResult<()> {
    for update in updates {
        match update {
            TableUpdate::SetProperties { updates } => {
                check_properties(state, current, updates, &[])?
            }
            TableUpdate::RemoveProperties { removals } => {
                check_properties(state, current, &HashMap::new(), removals)?
            }
            TableUpdate::SetLocation { location } => {
                in_warehouse(state, "location", location)?;
                location_free(state, location, Some(ident)).await?;
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

/// Refuses a namespace `location` outside the warehouse or in (or at) a
/// table's: tables made in the namespace without a location go under it.
/// (Tables may lie inside it: that is where they go.)
pub async fn check_namespace_location(state: &IcebergState, location: &str) -> RestResult<()> {
    in_warehouse(state, "location", location)?;
    let Some(ours) = normalized(location) else {
        return Err(RestError::forbidden(format!(
            "`{location}`: `..` in a location"
        )));
    };
    for (ident, theirs) in all_tables(state).await? {
        let Some(theirs) = normalized(&theirs) else {
            continue;
        };
        if ours == theirs || ours.starts_with(&format!("{theirs}/")) {
            return Err(RestError::forbidden(format!(
                "`{location}` lies in the location of table `{ident}`: a table's files are its own"
            )));
        }
    }
    Ok(())
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
    let catalog = state.supervisor.catalog();
    let mut namespaces = catalog.list_namespaces(None).await?;
    let mut tables = Vec::new();
    let mut seen = 0;
    while let Some(ns) = namespaces.pop() {
        seen += 1;
        if seen > 100_000 {
            break;
        }
        namespaces.extend(catalog.list_namespaces(Some(&ns)).await.unwrap_or_default());
        for t in catalog.list_tables(&ns).await? {
            if let Ok(table) = catalog.load_table(&t).await {
                let location = table.metadata().location().to_string();
                tables.push((t, location));
            }
        }
    }
    Ok(tables)
}

/// A location as one spelling: `file://` + the path, or `s3://bucket/…`
/// (`s3a` as `s3`), without empty or `.` segments or a trailing `/`.
/// `None` for one with `..` (a name for somewhere else).
pub fn normalized(location: &str) -> Option<String> {
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

/// Whether one location is the other or inside it (either spelled with
/// `..` counts as overlapping: it cannot be told where it points).
fn overlap(a: &str, b: &str) -> bool {
    let (Some(a), Some(b)) = (normalized(a), normalized(b)) else {
        return true;
    };
    a == b || a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/"))
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

/// Refuses to purge a table unless every file it names lies in its own
/// location, which no other table's overlaps.
pub async fn purge_safe(state: &IcebergState, table: &iceberg::table::Table) -> RestResult<()> {
    let location = table.metadata().location().to_string();
    location_free(state, &location, Some(table.identifier())).await?;
    let own = normalized(&location)
        .ok_or_else(|| RestError::forbidden(format!("`{location}`: `..` in a table's location")))?;
    let files = pipe_sink::maintenance::orphans::referenced(table)
        .await
        .map_err(|e| RestError::of_pipe(&e.into()))?;
    if let Some(outside) = files
        .iter()
        .find(|f| !normalized(f).is_some_and(|f| f.starts_with(&format!("{own}/"))))
    {
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
        let n = |l: &str| normalized(l);
        assert_eq!(n("file:///w//a/./t/"), n("/w/a/t"));
        assert_eq!(n("file:/w/a/t"), Some("file:///w/a/t".into()));
        assert_eq!(n("s3a://b//x/./y"), n("s3://b/x/y"));
        assert_eq!(n("file:///w/a/../b"), None);
        assert!(overlap("file:///w/a/t", "/w//a/t/data"));
        assert!(overlap("s3://b/w/t", "s3a://b/w/t"));
        assert!(!overlap("file:///w/a/t", "file:///w/a/t2"));
        assert!(
            overlap("file:///w/a/t", "file:///w/x/../a/t"),
            "`..`: unknown, refused"
        );
    }

    #[test]
    fn names_are_not_paths() {
        for bad in ["", ".", "..", "a/b", "a\\b", "a\u{0}b", &"x".repeat(256)] {
            assert!(check_name("table", bad).is_err(), "{bad:?}");
        }
        check_name("table", "orders_2026-11").unwrap();
    }
}
