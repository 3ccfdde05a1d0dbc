//! Creating a sink's table from the pipeline's output, and checking that
//! an existing one fits it: schema, partition spec, bloom filter columns,
//! and the properties that delete old metadata files.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema as ArrowSchema, SchemaRef};
use iceberg::arrow::arrow_schema_to_schema_auto_assign_ids;
use iceberg::spec::UnboundPartitionSpec;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog, TableCreation, TableIdent};
use tracing::info;

use super::partition::{describe, spec_fields, PARTITION_BY_PROPERTY};
use super::target_size::TARGET_FILE_SIZE;
use super::{Codec, WriteOptions, BLOOM_FILTER_PROPERTY};
use crate::maintenance::metadata_files;
use crate::{Error, Result};

pub(super) fn table_creation(
    name: &str,
    output: &SchemaRef,
    options: &WriteOptions,
) -> Result<TableCreation> {
    // Arrow fields carry no Iceberg ids yet: strip any and assign fresh ones.
    let plain = ArrowSchema::new(
        output
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_metadata(HashMap::new()))
            .collect::<Vec<_>>(),
    );
    let schema = arrow_schema_to_schema_auto_assign_ids(&plain)
        .map_err(|e| Error::Schema(format!("mapping the pipeline output to Iceberg types: {e}")))?;
    // Spec and field ids spelled out (0, and 1000 up, what a catalog would
    // assign): some REST catalogs echo the request's spec back verbatim.
    let mut spec = UnboundPartitionSpec::builder().with_spec_id(0);
    for (n, mut field) in spec_fields(&schema, &options.partition_by)?
        .into_iter()
        .enumerate()
    {
        field.field_id = Some(1000 + n as i32);
        let name = field.name.clone();
        spec = spec
            .add_partition_fields([field])
            .map_err(|e| Error::Schema(format!("partition field `{name}`: {e}")))?;
    }
    let spec = spec.build();
    let codec = match options.codec {
        Codec::Zstd => "zstd",
        Codec::Snappy => "snappy",
        Codec::Gzip => "gzip",
        Codec::Lz4 => "lz4",
        Codec::None => "uncompressed",
    };
    let mut properties = HashMap::from([
        (
            "write.parquet.compression-codec".to_string(),
            codec.to_string(),
        ),
        ("write.format.default".to_string(), "parquet".to_string()),
        (
            PARTITION_BY_PROPERTY.to_string(),
            describe(&options.partition_by),
        ),
    ]);
    for column in &options.bloom_filter_columns {
        properties.insert(format!("{BLOOM_FILTER_PROPERTY}{column}"), "true".into());
    }
    if options.owns_metadata_files {
        properties.extend(metadata_files::default_properties());
    }
    if let Some(bytes) = options.target_file_bytes {
        properties.insert(TARGET_FILE_SIZE.into(), bytes.to_string());
    }
    let sort_order =
        super::sort_by::sort_order(&schema, options.sort_by.as_deref().unwrap_or_default())?;
    Ok(TableCreation::builder()
        .name(name.to_string())
        .schema(schema)
        .partition_spec(spec)
        .sort_order(sort_order)
        .properties(properties)
        .build())
}

/// Sets the properties that delete old metadata files on a table that
/// has neither (see [`metadata_files`]), in a commit of its own.
pub(super) async fn adopt_metadata_properties(
    catalog: &Arc<dyn Catalog>,
    table: Table,
) -> Result<Table> {
    let adopt = metadata_files::properties_to_adopt(&table);
    if adopt.is_empty() {
        return Ok(table);
    }
    let tx = Transaction::new(&table);
    let mut update = tx.update_table_properties();
    for (key, value) in adopt {
        update = update.set(key, value);
    }
    let err = |e| Error::Catalog {
        action: format!(
            "setting `{}` on `{}`",
            metadata_files::DELETE_AFTER_COMMIT,
            table.identifier()
        ),
        source: Box::new(e),
    };
    let tx = update.apply(tx).map_err(err)?;
    let adopted = tx.commit(catalog.as_ref()).await.map_err(err)?;
    info!(table = %adopted.identifier(), "old metadata files of this table are deleted from now on");
    Ok(adopted)
}

/// Records the sink's target file size as the table's
/// `write.target-file-size-bytes` when it differs, in a commit of its
/// own; `None` leaves the table's property alone.
pub(super) async fn adopt_target_file_size(
    catalog: &Arc<dyn Catalog>,
    table: Table,
    bytes: Option<usize>,
) -> Result<Table> {
    let Some(bytes) = bytes else {
        return Ok(table);
    };
    let set = table.metadata().properties().get(TARGET_FILE_SIZE);
    if set.map(|v| v.trim()) == Some(bytes.to_string().as_str()) {
        return Ok(table);
    }
    let tx = Transaction::new(&table);
    let update = tx
        .update_table_properties()
        .set(TARGET_FILE_SIZE.into(), bytes.to_string());
    let err = |e| Error::Catalog {
        action: format!("setting `{TARGET_FILE_SIZE}` on `{}`", table.identifier()),
        source: Box::new(e),
    };
    let tx = update.apply(tx).map_err(err)?;
    let adopted = tx.commit(catalog.as_ref()).await.map_err(err)?;
    info!(table = %adopted.identifier(), bytes, "the table's target file size is now the sink's");
    Ok(adopted)
}

/// Checks that each column asked for is a top-level column of the rows
/// written, of a type a bloom filter can hold (not a list, map or struct).
pub(super) fn check_bloom_filter_columns(
    ident: &TableIdent,
    output: &SchemaRef,
    asked: &[String],
) -> Result<()> {
    for column in asked {
        let field = output.field_with_name(column).map_err(|_| {
            Error::Config(format!(
                "bloom filter column `{column}`: the rows written to `{ident}` have no such column"
            ))
        })?;
        if field.data_type().is_nested() {
            return Err(Error::Config(format!(
                "bloom filter column `{column}`: a bloom filter holds single values, not {}",
                field.data_type()
            )));
        }
    }
    Ok(())
}

/// The columns that get bloom filters: those the sink asks for (checked by
/// [`check_bloom_filter_columns`]) and those the table's properties name.
/// A property naming what is not a top-level primitive column of the table
/// (another writer's, or a column since dropped) is skipped with a warning.
pub(crate) fn bloom_filter_columns(table: &Table, asked: &[String]) -> Vec<String> {
    let metadata = table.metadata();
    let schema = metadata.current_schema();
    let mut columns: Vec<String> = asked.to_vec();
    for (key, value) in metadata.properties() {
        let Some(column) = key.strip_prefix(BLOOM_FILTER_PROPERTY) else {
            continue;
        };
        if !value.eq_ignore_ascii_case("true") || columns.iter().any(|c| c == column) {
            continue;
        }
        let primitive = schema
            .as_struct()
            .fields()
            .iter()
            .any(|f| f.name == column && f.field_type.is_primitive());
        if primitive {
            columns.push(column.to_string());
        } else {
            tracing::warn!(table = %table.identifier(), property = %key, "no top-level column of a single-value type has this name; no bloom filter is written for it");
        }
    }
    columns
}

/// Every output column must exist in the table with a castable type.
pub(super) fn check_compatible(
    ident: &TableIdent,
    output: &SchemaRef,
    table: &SchemaRef,
) -> Result<()> {
    for field in output.fields() {
        match table.field_with_name(field.name()) {
            Err(_) => {
                return Err(Error::Schema(format!(
                    "table `{ident}` has no column `{}` (columns: {})",
                    field.name(),
                    table
                        .fields()
                        .iter()
                        .map(|f| format!("`{}`", f.name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
            Ok(t) if !fits(field.data_type(), t.data_type()) => {
                return Err(Error::Schema(format!(
                    "column `{}` of table `{ident}` is {}, the pipeline produces {}",
                    field.name(),
                    t.data_type(),
                    field.data_type()
                )))
            }
            Ok(_) => {}
        }
    }
    for t in table.fields() {
        if !t.is_nullable() && output.field_with_name(t.name()).is_err() {
            return Err(Error::Schema(format!(
                "required column `{}` of table `{ident}` is not produced by the pipeline",
                t.name()
            )));
        }
    }
    Ok(())
}

/// Whether values of `from` go into a column of `to` without loss: the same
/// type (field names and ids aside), or a widening Iceberg allows.
pub(crate) fn fits(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    from.equals_datatype(to)
        || matches!(
            (from, to),
            (Int8 | Int16 | Int32, Int32 | Int64)
                | (Int64, Int64)
                | (UInt8 | UInt16, Int32 | Int64)
                | (UInt32, Int64)
                | (Float32, Float64)
                | (Utf8 | LargeUtf8 | Utf8View, Utf8 | LargeUtf8)
                | (Binary | LargeBinary | BinaryView, Binary | LargeBinary)
                | (Timestamp(_, _), Timestamp(_, _))
        )
}
