//! How the sqllogictest suites print Arrow results (included with `#[path]`
//! by `transform/tests/slt` and `query/tests/it/slt.rs`): integers and
//! floats typed as such, NULL as `NULL`, an empty string as `(empty)`.

use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use sqllogictest::DefaultColumnType;

/// The sqllogictest type letter of a column.
pub fn column_type(t: &DataType) -> DefaultColumnType {
    if t.is_integer() {
        DefaultColumnType::Integer
    } else if t.is_floating() {
        DefaultColumnType::FloatingPoint
    } else {
        DefaultColumnType::Text
    }
}

/// The first `columns` columns of `batch`, row by row, as text.
pub fn format_rows(
    batch: &RecordBatch,
    columns: usize,
) -> Result<Vec<Vec<String>>, arrow::error::ArrowError> {
    let options = FormatOptions::default().with_null("NULL");
    let formatters = batch.columns()[..columns]
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((0..batch.num_rows())
        .map(|row| {
            formatters
                .iter()
                .map(|f| match f.value(row).to_string() {
                    s if s.is_empty() => "(empty)".to_string(),
                    s => s,
                })
                .collect()
        })
        .collect())
}
