//! The size data files aim for: Iceberg's `write.target-file-size-bytes`,
//! which the sink records and compaction plans by.

use iceberg::table::Table;

use crate::{Error, Result};

/// Iceberg's table property: the size data files aim for.
pub const TARGET_FILE_SIZE: &str = "write.target-file-size-bytes";

/// The smallest target size pipe writes and compacts to, whatever the
/// table says: a byte-sized target would make a file of every write and
/// leave nothing small enough to compact.
pub const MIN_TARGET_FILE_BYTES: u64 = 1 << 20;

/// `table`'s `write.target-file-size-bytes`, if it sets one (raised to
/// [`MIN_TARGET_FILE_BYTES`]); an error if it is not a positive number
/// of bytes (another engine's, by hand): iceberg-rust then refuses every
/// commit to the table, this sink's included, so the sink says so at
/// open rather than failing each commit.
pub fn table_target_file_bytes(table: &Table) -> Result<Option<u64>> {
    let Some(value) = table.metadata().properties().get(TARGET_FILE_SIZE) else {
        return Ok(None);
    };
    match value.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(Some(n.max(MIN_TARGET_FILE_BYTES))),
        _ => Err(Error::Config(format!(
            "table `{}` has `{TARGET_FILE_SIZE}` = `{value}`, not a positive number of bytes, and iceberg refuses every commit to it: set it right or remove it with the engine that set it (PyIceberg: `table.transaction()` … `remove_properties`)",
            table.identifier()
        ))),
    }
}
