//! Whether a sink could open a table with an output, checked without
//! changing anything: what a change in place checks before it stops the
//! definition in force, and what [`TableSink::open`] checks first.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::{Catalog, NamespaceIdent, TableIdent};

use super::create::{check_bloom_filter_columns, check_compatible};
use super::sort_by::check_sort_columns;
use super::{evolve, TableSink, WriteOptions};
use crate::{Error, Result};

/// The columns `options` name (bloom filters, sort order, partition
/// fields) are in `output`, partition fields with a type their transform
/// takes.
pub(super) fn columns_exist(
    ident: &TableIdent,
    output: &SchemaRef,
    options: &WriteOptions,
) -> Result<()> {
    check_bloom_filter_columns(ident, output, &options.bloom_filter_columns)?;
    let plain = arrow::datatypes::Schema::new(
        output
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_metadata(Default::default()))
            .collect::<Vec<_>>(),
    );
    let schema = iceberg::arrow::arrow_schema_to_schema_auto_assign_ids(&plain).map_err(|e| {
        Error::Schema(format!(
            "mapping the output of `{ident}` to Iceberg types: {e}"
        ))
    })?;
    super::partition::spec_fields(&schema, &options.partition_by)?;
    check_sort_columns(
        ident,
        output,
        options.sort_by.as_deref().unwrap_or_default(),
    )
}

impl TableSink {
    /// Whether a sink writing `output` with `options` could open
    /// `namespace.name`, checked without changing anything (no namespace,
    /// table or property is made): the columns its options name exist,
    /// and an existing table takes `output`. What a change in place checks
    /// before it stops the definition in force.
    pub async fn check(
        catalog: &Arc<dyn Catalog>,
        namespace: &str,
        name: &str,
        output: &SchemaRef,
        options: &WriteOptions,
    ) -> Result<()> {
        let ns = NamespaceIdent::from_strs(namespace.split('.'))
            .map_err(|e| Error::Config(format!("namespace `{namespace}`: {e}")))?;
        let ident = TableIdent::new(ns, name.to_string());
        columns_exist(&ident, output, options)?;
        let catalog_err = |action: String| {
            move |e| Error::Catalog {
                action,
                source: Box::new(e),
            }
        };
        let exists = catalog
            .table_exists(&ident)
            .await
            .map_err(catalog_err(format!("looking up table `{ident}`")))?;
        if !exists {
            return Ok(());
        }
        let table = catalog
            .load_table(&ident)
            .await
            .map_err(catalog_err(format!("loading table `{ident}`")))?;
        let arrow_schema = Arc::new(
            schema_to_arrow_schema(table.metadata().current_schema())
                .map_err(catalog_err(format!("reading the schema of `{ident}`")))?,
        );
        // As the table will be once the sink evolves it when it opens.
        let evolved = evolve::Evolution::plan(&arrow_schema, output).applied_to(&arrow_schema);
        check_compatible(&ident, output, &evolved)
    }
}
