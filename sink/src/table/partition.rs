//! A table's partitioning: the partition fields a sink is configured
//! with (`partition_by`), the spec they make, and its evolution when the
//! configuration changes.
//!
//! A table `pipe` makes records the `partition_by` it was made with in
//! the property `pipe.partition-by`. When a sink opens a table whose
//! recorded `partition_by` differs from its own, the sink's configuration
//! changed: the table gets a new partition spec for new data (Iceberg
//! partition evolution: `AddSpec` + `SetDefaultSpec`, field ids of fields
//! kept reused; files written before keep their spec and stay readable
//! and prunable by it). A table whose spec differs from what it records
//! was changed by another engine, and one that records nothing was made
//! by one (or by an older `pipe`): both keep their spec, with a warning.
//! A table whose spec is the sink's but records nothing gets the record.
//!
//! A spec changed under an open sink (another writer evolved it) makes
//! the sink's files of the old spec uncommittable: the commit answers
//! `Error::Respec`, the sink makes its writer anew, and the pipeline
//! writes the range again. Sinks of one table in several processes should
//! share one `partition_by`: the last to open with a changed one sets the
//! spec. Widths of `bucket` and `truncate` fit Iceberg's 32-bit field.

use iceberg::spec::{Schema, Transform, UnboundPartitionField, UnboundPartitionSpec};
use iceberg::table::Table;
use iceberg::{Catalog, TableRequirement, TableUpdate};
use std::sync::Arc;
use tracing::{info, warn};

use crate::maintenance::Committer;
use crate::{Error, Result};

/// The table property recording the `partition_by` `pipe` last gave the
/// table's spec.
pub const PARTITION_BY_PROPERTY: &str = "pipe.partition-by";

/// One partition field of a table: a transform of an output column,
/// written as in Iceberg's SQL: `day(__ingest_ts)`, `bucket(16, user_id)`,
/// `truncate(4, sku)`, `identity(country)` (or just `country`), `year(ts)`,
/// `month(ts)`, `hour(ts)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionField {
    pub transform: Transform,
    pub column: String,
}

impl PartitionField {
    /// `day(__ingest_ts)`, the default partitioning.
    pub fn ingest_day() -> Self {
        PartitionField {
            transform: Transform::Day,
            column: pipe_schemas::INGEST_TS_COLUMN.to_string(),
        }
    }

    /// The partition field's name in the spec (and in data file paths):
    /// the column for identity, else `<column>_<transform>`.
    pub fn name(&self) -> String {
        let suffix = match self.transform {
            Transform::Identity => return self.column.clone(),
            Transform::Year => "year".to_string(),
            Transform::Month => "month".to_string(),
            Transform::Day => "day".to_string(),
            Transform::Hour => "hour".to_string(),
            Transform::Bucket(n) => format!("bucket_{n}"),
            Transform::Truncate(w) => format!("trunc_{w}"),
            Transform::Void | Transform::Unknown => "void".to_string(),
        };
        format!("{}_{suffix}", self.column)
    }
}

impl std::str::FromStr for PartitionField {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::Config(format!(
                "partition field `{spec}`: {why} (expected e.g. `day(ts)`, `bucket(16, id)`, `truncate(4, name)`, `identity(col)`)"
            ))
        };
        let spec_trimmed = spec.trim();
        let Some((func, rest)) = spec_trimmed.split_once('(') else {
            if spec_trimmed.is_empty() || !is_column_name(spec_trimmed) {
                return Err(bad("not a column or a transform"));
            }
            return Ok(PartitionField {
                transform: Transform::Identity,
                column: spec_trimmed.to_string(),
            });
        };
        let args = rest.strip_suffix(')').ok_or_else(|| bad("missing `)`"))?;
        let args: Vec<&str> = args.split(',').map(str::trim).collect();
        // Iceberg stores the width as a signed 32-bit number.
        let number = |s: &str| -> Result<u32> {
            s.parse()
                .ok()
                .filter(|n| *n > 0 && *n <= i32::MAX as u32)
                .ok_or_else(|| {
                    bad("the first argument must be a whole number from 1 to 2147483647")
                })
        };
        let (transform, column) = match (func.trim().to_ascii_lowercase().as_str(), args.as_slice())
        {
            ("identity", [c]) => (Transform::Identity, *c),
            ("year" | "years", [c]) => (Transform::Year, *c),
            ("month" | "months", [c]) => (Transform::Month, *c),
            ("day" | "days", [c]) => (Transform::Day, *c),
            ("hour" | "hours", [c]) => (Transform::Hour, *c),
            ("bucket", [n, c]) => (Transform::Bucket(number(n)?), *c),
            ("truncate", [w, c]) => (Transform::Truncate(number(w)?), *c),
            (
                "identity" | "year" | "years" | "month" | "months" | "day" | "days" | "hour"
                | "hours",
                _,
            ) => return Err(bad("this transform takes one column")),
            ("bucket" | "truncate", _) => {
                return Err(bad("this transform takes a number and a column"))
            }
            _ => return Err(bad("unknown transform")),
        };
        if !is_column_name(column) {
            return Err(bad("not a column name"));
        }
        Ok(PartitionField {
            transform,
            column: column.to_string(),
        })
    }
}

impl std::fmt::Display for PartitionField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.transform {
            Transform::Bucket(n) => write!(f, "bucket({n}, {})", self.column),
            Transform::Truncate(w) => write!(f, "truncate({w}, {})", self.column),
            t => write!(f, "{t}({})", self.column),
        }
    }
}

fn is_column_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// How `partition_by` is recorded (`day(__ingest_ts), bucket(16, id)`).
pub(super) fn describe(partition_by: &[PartitionField]) -> String {
    partition_by
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The spec fields of `partition_by` over `schema` (no field ids): each
/// column exists and takes its transform.
pub(super) fn spec_fields(
    schema: &Schema,
    partition_by: &[PartitionField],
) -> Result<Vec<UnboundPartitionField>> {
    partition_by
        .iter()
        .map(|field| {
            let source = schema.field_by_name(&field.column).ok_or_else(|| {
                Error::Schema(format!(
                    "partition field `{field}`: the pipeline output has no column `{}`",
                    field.column
                ))
            })?;
            field
                .transform
                .result_type(&source.field_type)
                .map_err(|_| {
                    Error::Schema(format!(
                        "partition field `{field}`: {} does not apply to column `{}` of type {}",
                        field.transform, field.column, source.field_type
                    ))
                })?;
            Ok(UnboundPartitionField {
                source_id: source.id,
                field_id: None,
                name: field.name(),
                transform: field.transform,
            })
        })
        .collect::<Result<Vec<_>>>()
        .and_then(|fields| {
            // The spec as a whole: no field twice, none redundant with
            // another (`year` and `month` of one column).
            iceberg::spec::PartitionSpec::builder(schema.clone())
                .add_unbound_fields(fields.clone())
                .and_then(|b| b.build())
                .map_err(|e| {
                    Error::Schema(format!("partition_by {}: {e}", describe(partition_by)))
                })?;
            Ok(fields)
        })
}

/// Gives `table` the partition spec of `partition_by` for new data if the
/// sink's configuration changed it (see the module doc); the table as it
/// is then. Commits through `committer`, serialized with the table's
/// other commits; without one the table keeps its spec.
pub(super) async fn respec(
    catalog: &Arc<dyn Catalog>,
    committer: Option<&Committer>,
    table: Table,
    partition_by: &[PartitionField],
) -> Result<Table> {
    let ident = table.identifier().clone();
    let metadata = table.metadata();
    let wanted = spec_fields(metadata.current_schema(), partition_by)?;
    let spec = metadata.default_partition_spec();
    let same = spec.fields().len() == wanted.len()
        && spec.fields().iter().zip(&wanted).all(|(have, want)| {
            have.source_id == want.source_id && have.transform == want.transform
        });
    let described = describe(partition_by);
    let recorded = metadata.properties().get(PARTITION_BY_PROPERTY).cloned();
    let have: Vec<String> = spec.fields().iter().map(|f| f.name.clone()).collect();
    let record = || TableUpdate::SetProperties {
        updates: [(PARTITION_BY_PROPERTY.to_string(), described.clone())].into(),
    };
    let updates = match (same, recorded.as_deref()) {
        (true, Some(r)) if r == described => return Ok(table),
        // Made with this spec by an older `pipe` (or by a catalog that
        // keeps no properties at creation): record it, as the sink's own
        // commits change properties. Only a record: if it fails, the next
        // open tries again.
        (true, _) => {
            use iceberg::transaction::{ApplyTransactionAction, Transaction};
            let tx = Transaction::new(&table);
            let set = tx
                .update_table_properties()
                .set(PARTITION_BY_PROPERTY.to_string(), described.clone());
            let recorded = match set.apply(tx) {
                Ok(tx) => tx.commit(catalog.as_ref()).await,
                Err(e) => Err(e),
            };
            return Ok(match recorded {
                Ok(after) => after,
                Err(e) => {
                    warn!(table = %ident, error = %e, "could not record the table's partition_by; going on");
                    table
                }
            });
        }
        // The sink's `partition_by` changed: the table follows, for new data.
        (false, Some(r)) if r != described => {
            let mut unbound = UnboundPartitionSpec::builder();
            unbound = unbound
                .add_partition_fields(wanted)
                .map_err(|e| Error::Schema(format!("the new partition spec of `{ident}`: {e}")))?;
            vec![
                TableUpdate::AddSpec {
                    spec: unbound.build(),
                },
                TableUpdate::SetDefaultSpec { spec_id: -1 },
                record(),
            ]
        }
        (false, _) => {
            warn!(table = %ident, partitioned_by = ?have, configured = %described, "the table's partition spec was not made by this sink's `partition_by` (another engine set it, or made the table): it keeps its spec");
            return Ok(table);
        }
    };
    let Some(committer) = committer else {
        return Ok(table);
    };
    let requirements = [TableRequirement::DefaultSpecIdMatch {
        default_spec_id: spec.spec_id(),
    }];
    let committed = committer
        .commit(catalog, &ident, &requirements, updates)
        .await;
    match committed {
        Ok(after) => {
            info!(table = %ident, from = ?have, to = %described, spec_id = after.metadata().default_partition_spec_id(), "the table's partition spec evolved: new data is partitioned by the sink's `partition_by`");
            Ok(after)
        }
        Err(failed) => Err(failed.error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_fields_parse_and_print() {
        for (spec, transform, column, name) in [
            (
                "day(__ingest_ts)",
                Transform::Day,
                "__ingest_ts",
                "__ingest_ts_day",
            ),
            (
                "bucket(16, user_id)",
                Transform::Bucket(16),
                "user_id",
                "user_id_bucket_16",
            ),
            (
                "truncate( 4 ,sku )",
                Transform::Truncate(4),
                "sku",
                "sku_trunc_4",
            ),
            (
                "identity(country)",
                Transform::Identity,
                "country",
                "country",
            ),
            ("country", Transform::Identity, "country", "country"),
            ("HOUR(ts)", Transform::Hour, "ts", "ts_hour"),
            ("months(ts)", Transform::Month, "ts", "ts_month"),
            ("year(ts)", Transform::Year, "ts", "ts_year"),
        ] {
            let field: PartitionField = spec.parse().unwrap();
            assert_eq!(field.transform, transform, "{spec}");
            assert_eq!(field.column, column, "{spec}");
            assert_eq!(field.name(), name, "{spec}");
            assert_eq!(field.to_string().parse::<PartitionField>().unwrap(), field);
        }
        for (spec, why) in [
            ("bucket(user_id)", "takes a number and a column"),
            ("bucket(0, user_id)", "whole number from 1"),
            ("day(a, b)", "takes one column"),
            ("zorder(a)", "unknown transform"),
            ("day(a", "missing `)`"),
            ("a-b", "not a column"),
        ] {
            let e = spec.parse::<PartitionField>().unwrap_err().to_string();
            assert!(e.contains(why), "{spec}: {e}");
        }
    }

    #[test]
    fn a_spec_is_checked_whole_and_widths_fit_iceberg() {
        use iceberg::spec::{NestedField, PrimitiveType, Type};
        let schema = Schema::builder()
            .with_fields(vec![
                NestedField::required(1, "ts", Type::Primitive(PrimitiveType::Timestamptz)).into(),
                NestedField::required(2, "id", Type::Primitive(PrimitiveType::String)).into(),
            ])
            .build()
            .unwrap();
        let fields = |specs: &[&str]| -> Vec<PartitionField> {
            specs.iter().map(|s| s.parse().unwrap()).collect()
        };
        spec_fields(&schema, &fields(&["day(ts)", "bucket(4, id)"])).unwrap();
        let e = spec_fields(&schema, &fields(&["year(ts)", "month(ts)"])).unwrap_err();
        assert!(e.to_string().contains("partition_by"), "{e}");
        let e = spec_fields(&schema, &fields(&["id", "identity(id)"])).unwrap_err();
        assert!(e.to_string().contains("partition_by"), "{e}");
        spec_fields(&schema, &fields(&[])).unwrap();
        for wide in ["bucket(2147483648, id)", "truncate(4294967295, id)"] {
            let e = wide.parse::<PartitionField>().unwrap_err().to_string();
            assert!(e.contains("2147483647"), "{wide}: {e}");
        }
        "bucket(2147483647, id)".parse::<PartitionField>().unwrap();
    }
}
