//! A sink's `sort_by`: the table's default Iceberg sort order, which
//! compaction writes its files in ([`crate::maintenance::sort`]) and
//! which other engines honour too (Spark's `WRITE ORDERED BY` sets the
//! same). The sink sets it when it creates the table, and replaces the
//! table's order with it when they differ; a sink without `sort_by`
//! leaves the table's order (another engine's, or none) as it is, and an
//! empty `sort_by` makes the table unsorted.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use iceberg::spec::{NullOrder, Schema, SortDirection, SortField, SortOrder, Transform};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog, TableIdent};
use tracing::info;

use crate::{Error, Result};

/// One column of a sort order: `col`, `col DESC`, `col ASC NULLS LAST`…
/// (nulls first when ascending and last when descending unless said, as
/// in Spark and Iceberg's Java API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortColumn {
    pub column: String,
    pub descending: bool,
    pub nulls_first: bool,
}

impl std::str::FromStr for SortColumn {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::Config(format!(
                "sort column `{spec}`: {why} (expected e.g. `id`, `amount DESC`, `name ASC NULLS LAST`)"
            ))
        };
        // The column is what is left once the direction and null order
        // are taken off the end, so any name a stream allows works (a
        // name ending in such a word goes in double quotes).
        let mut words: Vec<&str> = spec.split_whitespace().collect();
        let upper = |w: &str| w.to_ascii_uppercase();
        let mut nulls = None;
        if words.len() >= 3 && upper(words[words.len() - 2]) == "NULLS" {
            nulls = Some(upper(words[words.len() - 1]));
            words.truncate(words.len() - 2);
        }
        let mut descending = false;
        if words.len() >= 2 {
            match upper(words[words.len() - 1]).as_str() {
                "ASC" => {
                    words.pop();
                }
                "DESC" => {
                    descending = true;
                    words.pop();
                }
                _ => {}
            }
        }
        let column = words.join(" ");
        let column = match column.strip_prefix('"').and_then(|c| c.strip_suffix('"')) {
            Some(quoted) => quoted.to_string(),
            None => column,
        };
        if column.is_empty() {
            return Err(bad("no column"));
        }
        if column.contains(char::is_whitespace) && !spec.contains('"') {
            return Err(bad(
                "after the column: ASC or DESC, then NULLS FIRST or LAST",
            ));
        }
        let nulls_first = match nulls.as_deref() {
            None => !descending,
            Some("FIRST") => true,
            Some("LAST") => false,
            Some(_) => return Err(bad("NULLS is FIRST or LAST")),
        };
        Ok(SortColumn {
            column,
            descending,
            nulls_first,
        })
    }
}

impl std::fmt::Display for SortColumn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let direction = if self.descending { "DESC" } else { "ASC" };
        let nulls = if self.nulls_first { "FIRST" } else { "LAST" };
        match self.column.contains(char::is_whitespace) {
            true => write!(f, "\"{}\" {direction} NULLS {nulls}", self.column),
            false => write!(f, "{} {direction} NULLS {nulls}", self.column),
        }
    }
}

/// Checks that each column is a top-level column of the rows written, of
/// a type that orders (not a list, map or struct).
pub(super) fn check_sort_columns(
    ident: &TableIdent,
    output: &SchemaRef,
    asked: &[SortColumn],
) -> Result<()> {
    for c in asked {
        let field = output.field_with_name(&c.column).map_err(|_| {
            Error::Config(format!(
                "sort column `{}`: the rows written to `{ident}` have no such column",
                c.column
            ))
        })?;
        if field.data_type().is_nested() {
            return Err(Error::Config(format!(
                "sort column `{}`: rows are sorted by single values, not {}",
                c.column,
                field.data_type()
            )));
        }
    }
    Ok(())
}

/// The sort order of `columns` on `schema` (unsorted for none).
pub(super) fn sort_order(schema: &Schema, columns: &[SortColumn]) -> Result<SortOrder> {
    let mut fields = Vec::new();
    for c in columns {
        let source = schema.field_by_name(&c.column).ok_or_else(|| {
            Error::Config(format!(
                "sort column `{}`: the table has no such column",
                c.column
            ))
        })?;
        fields.push(SortField {
            source_id: source.id,
            transform: Transform::Identity,
            direction: match c.descending {
                true => SortDirection::Descending,
                false => SortDirection::Ascending,
            },
            null_order: match c.nulls_first {
                true => NullOrder::First,
                false => NullOrder::Last,
            },
        });
    }
    if fields.is_empty() {
        return Ok(SortOrder::unsorted_order());
    }
    SortOrder::builder()
        .with_order_id(1)
        .with_fields(fields)
        .build(schema)
        .map_err(|e| Error::Config(format!("sort order: {e}")))
}

/// Makes `columns` the default sort order of `table` if it is not, in a
/// commit of its own; `None` leaves the table's order alone.
pub(super) async fn adopt_sort_order(
    catalog: &Arc<dyn Catalog>,
    table: Table,
    columns: Option<&[SortColumn]>,
) -> Result<Table> {
    let Some(columns) = columns else {
        return Ok(table);
    };
    let wanted = sort_order(table.metadata().current_schema(), columns)?;
    if table.metadata().default_sort_order().fields == wanted.fields {
        return Ok(table);
    }
    let tx = Transaction::new(&table);
    let mut replace = tx.replace_sort_order();
    for c in columns {
        let nulls = match c.nulls_first {
            true => NullOrder::First,
            false => NullOrder::Last,
        };
        replace = match c.descending {
            true => replace.desc(&c.column, nulls),
            false => replace.asc(&c.column, nulls),
        };
    }
    let err = |e| Error::Catalog {
        action: format!("setting the sort order of `{}`", table.identifier()),
        source: Box::new(e),
    };
    let tx = replace.apply(tx).map_err(err)?;
    let adopted = tx.commit(catalog.as_ref()).await.map_err(err)?;
    let said: Vec<String> = columns.iter().map(ToString::to_string).collect();
    info!(table = %adopted.identifier(), sort_by = ?said, "the table's sort order is now the sink's");
    Ok(adopted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_columns_parse_as_spark_spells_them() {
        let parse = |s: &str| s.parse::<SortColumn>().map(|c| c.to_string());
        assert_eq!(parse("id").unwrap(), "id ASC NULLS FIRST");
        assert_eq!(parse("amount desc").unwrap(), "amount DESC NULLS LAST");
        assert_eq!(parse("a ASC NULLS LAST").unwrap(), "a ASC NULLS LAST");
        assert_eq!(parse("a DESC NULLS FIRST").unwrap(), "a DESC NULLS FIRST");
        assert_eq!(parse("a nulls last").unwrap(), "a ASC NULLS LAST");
        assert_eq!(parse("user-id DESC").unwrap(), "user-id DESC NULLS LAST");
        assert_eq!(parse("\"desc\" DESC").unwrap(), "desc DESC NULLS LAST");
        assert_eq!(parse("\"a b\"").unwrap(), "\"a b\" ASC NULLS FIRST");
        assert_eq!(
            parse("\"a b\" ASC NULLS FIRST").unwrap(),
            "\"a b\" ASC NULLS FIRST"
        );
        for (bad, why) in [
            ("", "no column"),
            ("  ", "no column"),
            ("a DOWN", "after the column"),
            ("a NULLS MIDDLE", "NULLS is FIRST or LAST"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
