//! R2 SQL's discovery statements, answered from the Iceberg catalog:
//!
//! - `SHOW DATABASES` / `SHOW NAMESPACES`: one row per namespace;
//! - `SHOW TABLES IN ns` (or `FROM ns`): one row per table of `ns`;
//! - `DESCRIBE ns.table` (or `DESC`, `DESCRIBE TABLE`): the table's columns
//!   with their Iceberg types and whether they are required, then its
//!   partition fields, then facts about the table (format version,
//!   location, current snapshot, its time, row and data-file counts), as
//!   rows of `section, name, value`.
//!
//! Anything else (including DataFusion's own `SHOW TABLES` without `IN`)
//! is left to DataFusion.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use iceberg::{Catalog, NamespaceIdent, TableIdent};

use crate::{Error, Result};

/// A statement this module answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    Namespaces,
    Tables(String),
    Describe(String),
}

impl Discovery {
    /// Recognizes a discovery statement (case-insensitive, an optional
    /// trailing `;`); `None` for anything else.
    pub fn parse(sql: &str) -> Option<Discovery> {
        let sql = sql.trim().trim_end_matches(';').trim();
        let words: Vec<&str> = sql.split_whitespace().collect();
        let lower: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
        let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
        match lower.as_slice() {
            ["show", "databases" | "namespaces"] => Some(Discovery::Namespaces),
            ["show", "tables", "in" | "from", _] => Some(Discovery::Tables(unquote(words[3]))),
            ["describe" | "desc", name] if name.contains('.') => {
                Some(Discovery::Describe(unquote(words[1])))
            }
            ["describe" | "desc", "table", name] if name.contains('.') => {
                Some(Discovery::Describe(unquote(words[2])))
            }
            _ => None,
        }
    }

    /// Answers the statement from `catalog`.
    pub async fn run(&self, catalog: &Arc<dyn Catalog>) -> Result<RecordBatch> {
        match self {
            Discovery::Namespaces => {
                let mut names: Vec<String> = catalog
                    .list_namespaces(None)
                    .await
                    .map_err(unavailable("listing namespaces"))?
                    .iter()
                    .map(|ns| ns.join("."))
                    .collect();
                names.sort();
                batch(&["namespace"], vec![names])
            }
            Discovery::Tables(ns) => {
                let ident = namespace(ns)?;
                if !catalog
                    .namespace_exists(&ident)
                    .await
                    .map_err(unavailable("looking up the namespace"))?
                {
                    return Err(Error::Sql(format!("no namespace `{ns}`")));
                }
                let mut tables: Vec<String> = catalog
                    .list_tables(&ident)
                    .await
                    .map_err(unavailable("listing tables"))?
                    .iter()
                    .map(|t| t.name().to_string())
                    .collect();
                tables.sort();
                let namespaces = vec![ns.clone(); tables.len()];
                batch(&["namespace", "table_name"], vec![namespaces, tables])
            }
            Discovery::Describe(name) => describe(catalog, name).await,
        }
    }
}

fn unquote(s: &str) -> String {
    s.split('.')
        .map(|part| part.trim_matches('"').trim_matches('`'))
        .collect::<Vec<_>>()
        .join(".")
}

fn namespace(ns: &str) -> Result<NamespaceIdent> {
    NamespaceIdent::from_strs(ns.split('.'))
        .map_err(|e| Error::Sql(format!("namespace `{ns}`: {e}")))
}

fn unavailable(action: &'static str) -> impl Fn(iceberg::Error) -> Error {
    move |e| Error::Unavailable(format!("{action}: {e}"))
}

fn batch(names: &[&str], columns: Vec<Vec<String>>) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let arrays: Vec<ArrayRef> = columns
        .into_iter()
        .map(|c| Arc::new(StringArray::from(c)) as ArrayRef)
        .collect();
    RecordBatch::try_new(schema, arrays).map_err(|e| Error::Render(e.to_string()))
}

async fn describe(catalog: &Arc<dyn Catalog>, name: &str) -> Result<RecordBatch> {
    let (ns, table) = name
        .rsplit_once('.')
        .ok_or_else(|| Error::Sql(format!("expected `namespace.table`, got `{name}`")))?;
    let ident = TableIdent::new(namespace(ns)?, table.to_string());
    if !catalog
        .table_exists(&ident)
        .await
        .map_err(unavailable("looking up the table"))?
    {
        return Err(Error::Sql(format!("no table `{name}`")));
    }
    let loaded = catalog
        .load_table(&ident)
        .await
        .map_err(unavailable("loading the table"))?;
    let metadata = loaded.metadata();
    let schema = metadata.current_schema();
    let mut rows: Vec<(String, String, String)> = Vec::new();
    for field in schema.as_struct().fields() {
        let required = if field.required { " NOT NULL" } else { "" };
        rows.push((
            "column".into(),
            field.name.clone(),
            format!("{}{required}", field.field_type),
        ));
    }
    for field in metadata.default_partition_spec().fields() {
        let source = schema
            .field_by_id(field.source_id)
            .map_or_else(|| format!("field {}", field.source_id), |f| f.name.clone());
        rows.push((
            "partition".into(),
            field.name.clone(),
            format!("{}({source})", field.transform),
        ));
    }
    let mut facts = vec![
        (
            "format_version",
            format!("{}", metadata.format_version() as u8),
        ),
        ("location", metadata.location().to_string()),
    ];
    match metadata.current_snapshot() {
        Some(s) => {
            let summary = &s.summary().additional_properties;
            let get = |k: &str| summary.get(k).cloned().unwrap_or_else(|| "?".into());
            facts.push(("current_snapshot", s.snapshot_id().to_string()));
            facts.push((
                "snapshot_time",
                chrono::DateTime::from_timestamp_millis(s.timestamp_ms())
                    .map_or_else(|| s.timestamp_ms().to_string(), |t| t.to_rfc3339()),
            ));
            facts.push(("row_count", get("total-records")));
            facts.push(("data_files", get("total-data-files")));
            facts.push(("size_bytes", get("total-files-size")));
        }
        None => facts.push(("current_snapshot", "none (empty table)".into())),
    }
    facts.push(("snapshots_kept", metadata.snapshots().count().to_string()));
    for (name, value) in facts {
        rows.push(("table".into(), name.into(), value));
    }
    let (sections, (names, values)): (Vec<String>, (Vec<String>, Vec<String>)) =
        rows.into_iter().map(|(a, b, c)| (a, (b, c))).unzip();
    batch(&["section", "name", "value"], vec![sections, names, values])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_recognized() {
        use Discovery::*;
        for (sql, want) in [
            ("SHOW DATABASES", Some(Namespaces)),
            ("show namespaces;", Some(Namespaces)),
            ("SHOW TABLES IN shop", Some(Tables("shop".into()))),
            ("show tables from \"shop\" ;", Some(Tables("shop".into()))),
            (
                "DESCRIBE default.events",
                Some(Describe("default.events".into())),
            ),
            ("desc TABLE a.b", Some(Describe("a.b".into()))),
            ("SHOW TABLES", None),
            ("DESCRIBE events", None),
            ("SELECT 1", None),
        ] {
            assert_eq!(Discovery::parse(sql), want, "{sql}");
        }
    }
}
