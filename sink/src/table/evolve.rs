//! A table's schema evolved to take a pipeline's output: columns the
//! output has and the table lacks are added (optional, with fresh field
//! ids), `int` columns the output fills with 64-bit values become `long`,
//! `float` ones `double`, and a required column the output may leave null
//! becomes optional. These are the changes Iceberg allows without
//! rewriting data: old files read the new columns as null and their
//! narrower values widened. Anything else (a column of another type) is
//! left for [`super::create::check_compatible`] to refuse.
//!
//! The sink evolves the table when it opens ([`super::TableSink::open`]),
//! so a stream schema or pipeline SQL changed in place, or in `pipe.toml`
//! before a restart, reaches the table with the first commit of the new
//! definition. Widening and relaxing go through the maintenance
//! [`Committer`] (iceberg-rust's schema action only adds and deletes
//! columns); additions through that action. Both carry a requirement that
//! the table's current schema is still the one they were planned on.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, FieldRef, Schema as ArrowSchema, SchemaRef};
use iceberg::arrow::arrow_schema_to_schema_auto_assign_ids;
use iceberg::spec::{PrimitiveType, Schema, Type};
use iceberg::table::Table;
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
use iceberg::{Catalog, TableRequirement, TableUpdate};
use tracing::info;

use super::create::fits;
use crate::maintenance::Committer;
use crate::{Error, Result};

/// What a table's schema needs to take an output.
#[derive(Debug, Default, PartialEq)]
pub struct Evolution {
    /// Output columns the table lacks.
    pub add: Vec<FieldRef>,
    /// Columns to widen, with their new Arrow type (`Int64`, `Float64`).
    pub widen: Vec<(String, DataType)>,
    /// Required columns to make optional.
    pub relax: Vec<String>,
}

impl Evolution {
    /// What `table` (the Arrow form of a table's schema) needs to take
    /// `output`.
    pub fn plan(table: &SchemaRef, output: &SchemaRef) -> Evolution {
        let mut evolution = Evolution::default();
        for field in output.fields() {
            let Ok(column) = table.field_with_name(field.name()) else {
                evolution.add.push(field.clone());
                continue;
            };
            if !fits(field.data_type(), column.data_type()) {
                match (field.data_type(), column.data_type()) {
                    (DataType::Int64, DataType::Int32) | (DataType::Float64, DataType::Float32) => {
                        evolution
                            .widen
                            .push((field.name().clone(), field.data_type().clone()));
                    }
                    _ => {}
                }
            }
            if field.is_nullable() && !column.is_nullable() {
                evolution.relax.push(field.name().clone());
            }
        }
        evolution
    }

    /// What a writer can do of it: one without a maintenance committer
    /// only adds columns (what else does not fit is then refused by
    /// `check_compatible`, as before evolution).
    pub fn for_writer(mut self, committer: Option<&Committer>) -> Evolution {
        if committer.is_none() {
            self.widen.clear();
            self.relax.clear();
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.widen.is_empty() && self.relax.is_empty()
    }

    /// `table` as it is once evolved (Arrow form).
    pub fn applied_to(&self, table: &SchemaRef) -> SchemaRef {
        let mut fields: Vec<Field> = table
            .fields()
            .iter()
            .map(|f| {
                let mut f = f.as_ref().clone();
                if let Some((_, ty)) = self.widen.iter().find(|(n, _)| n == f.name()) {
                    f = f.with_data_type(ty.clone());
                }
                if self.relax.contains(f.name()) {
                    f = f.with_nullable(true);
                }
                f
            })
            .collect();
        fields.extend(
            self.add
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true)),
        );
        Arc::new(ArrowSchema::new(fields))
    }

    /// One line per change, for the log and for answers.
    pub fn describe(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .add
            .iter()
            .map(|f| format!("add optional column `{}` ({})", f.name(), f.data_type()))
            .collect();
        lines.extend(
            self.widen
                .iter()
                .map(|(n, ty)| format!("widen column `{n}` to {ty}")),
        );
        lines.extend(
            self.relax
                .iter()
                .map(|n| format!("make column `{n}` optional")),
        );
        lines
    }
}

/// Evolves `table`'s schema so it takes `output` (see the module doc);
/// the table as it is then.
pub(super) async fn evolve(
    catalog: &Arc<dyn Catalog>,
    committer: Option<&Committer>,
    table: Table,
    output: &SchemaRef,
) -> Result<Table> {
    let ident = table.identifier().clone();
    let current = table.metadata().current_schema().clone();
    let arrow = Arc::new(
        iceberg::arrow::schema_to_arrow_schema(&current).map_err(|e| Error::Catalog {
            action: format!("reading the schema of `{ident}`"),
            source: Box::new(e),
        })?,
    );
    let evolution = Evolution::plan(&arrow, output).for_writer(committer);
    if evolution.is_empty() {
        return Ok(table);
    }
    let mut table = table;
    if let Some(committer) =
        committer.filter(|_| !evolution.widen.is_empty() || !evolution.relax.is_empty())
    {
        let fields = current
            .as_struct()
            .fields()
            .iter()
            .map(|f| {
                let mut f = f.as_ref().clone();
                if let Some((_, ty)) = evolution.widen.iter().find(|(n, _)| *n == f.name) {
                    f.field_type = Box::new(Type::Primitive(match ty {
                        DataType::Int64 => PrimitiveType::Long,
                        _ => PrimitiveType::Double,
                    }));
                }
                if evolution.relax.contains(&f.name) {
                    f.required = false;
                }
                Arc::new(f)
            })
            .collect::<Vec<_>>();
        let schema = Schema::builder()
            .with_fields(fields)
            .with_identifier_field_ids(current.identifier_field_ids())
            .build()
            .map_err(|e| Error::Schema(format!("the evolved schema of `{ident}`: {e}")))?;
        let requirements = [TableRequirement::CurrentSchemaIdMatch {
            current_schema_id: current.schema_id(),
        }];
        let updates = vec![
            TableUpdate::AddSchema { schema },
            TableUpdate::SetCurrentSchema { schema_id: -1 },
        ];
        table = committer
            .commit(catalog, &ident, &requirements, updates)
            .await
            .map_err(|failed| failed.error)?;
    }
    if !evolution.add.is_empty() {
        let tx = Transaction::new(&table);
        let mut action = tx.update_schema();
        for field in &evolution.add {
            let single = ArrowSchema::new(vec![field
                .as_ref()
                .clone()
                .with_metadata(Default::default())
                .with_nullable(true)]);
            let mapped = arrow_schema_to_schema_auto_assign_ids(&single).map_err(|e| {
                Error::Schema(format!(
                    "column `{}` of the pipeline output in Iceberg types: {e}",
                    field.name()
                ))
            })?;
            let ty = mapped.as_struct().fields()[0].field_type.as_ref().clone();
            action = action.add_column(AddColumn::optional(field.name(), ty));
        }
        let err = |e| Error::Catalog {
            action: format!("adding columns to `{ident}`"),
            source: Box::new(e),
        };
        let tx = action.apply(tx).map_err(err)?;
        table = tx.commit(catalog.as_ref()).await.map_err(err)?;
    }
    info!(table = %ident, changes = ?evolution.describe(), "the table's schema evolved to take the pipeline's output");
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(fields: Vec<Field>) -> SchemaRef {
        Arc::new(ArrowSchema::new(fields))
    }

    #[test]
    fn only_what_iceberg_allows_is_planned() {
        let table = schema(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int32, true),
            Field::new("x", DataType::Float32, false),
            Field::new("s", DataType::Utf8, true),
        ]);
        let output = schema(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
            Field::new("x", DataType::Float64, true),
            Field::new("s", DataType::Int64, true),
            Field::new("new", DataType::Boolean, false),
        ]);
        let e = Evolution::plan(&table, &output);
        assert_eq!(e.add.len(), 1);
        assert_eq!(e.add[0].name(), "new");
        assert_eq!(
            e.widen,
            vec![
                ("n".to_string(), DataType::Int64),
                ("x".to_string(), DataType::Float64)
            ]
        );
        assert_eq!(e.relax, vec!["x".to_string()]);
        // `s` (a string the output fills with numbers) is no evolution.
        let evolved = e.applied_to(&table);
        assert_eq!(
            evolved.field_with_name("s").unwrap().data_type(),
            &DataType::Utf8
        );
        assert!(evolved.field_with_name("new").unwrap().is_nullable());
        assert!(Evolution::plan(&table, &table).is_empty());
    }
}
