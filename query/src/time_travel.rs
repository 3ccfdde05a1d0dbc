//! Time travel: `table_at('ns.table', <snapshot id | timestamp>)` is a
//! table function reading a table as it was at a snapshot.
//!
//! ```sql
//! SELECT count(*) FROM table_at('shop.orders', 3264275085254747383);
//! SELECT count(*) FROM table_at('shop.orders', '2026-11-23T05:00:00Z');
//! ```
//!
//! A timestamp (RFC 3339) picks the snapshot that was current then, from
//! the table's snapshot log; a time before the first snapshot, or a snapshot
//! id the table does not have (or no longer has, after expiry), is an error
//! that says so. The snapshots and their commit ids are in `t$snapshots`
//! and in `DESCRIBE`.

use std::sync::Arc;

use datafusion::catalog::{TableFunctionImpl, TableProvider};
use datafusion::common::{plan_err, DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::Expr;
use iceberg::{Catalog, NamespaceIdent, TableIdent};

use crate::scan::IcebergTable;

/// The `table_at` table function over `catalog`.
#[derive(Debug)]
pub struct TableAt {
    pub catalog: Arc<dyn Catalog>,
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(value, _) => Some(value),
        _ => None,
    }
}

impl TableFunctionImpl for TableAt {
    fn call(&self, args: &[Expr]) -> Result<Arc<dyn TableProvider>> {
        let usage = "table_at('namespace.table', snapshot_id or 'RFC 3339 timestamp')";
        let (Some(name), Some(at)) = (
            args.first().and_then(literal),
            args.get(1).and_then(literal),
        ) else {
            return plan_err!("expected {usage}");
        };
        let ScalarValue::Utf8(Some(name)) = name else {
            return plan_err!("expected {usage}: the table name is a string");
        };
        let (ns, table) = name.rsplit_once('.').ok_or_else(|| {
            DataFusionError::Plan(format!("expected `namespace.table`, got `{name}`"))
        })?;
        let ident = TableIdent::new(
            NamespaceIdent::from_strs(ns.split('.'))
                .map_err(|e| DataFusionError::Plan(format!("namespace `{ns}`: {e}")))?,
            table.to_string(),
        );
        let catalog = self.catalog.clone();
        // Table functions are planned synchronously; loading is not.
        let loaded = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(catalog.load_table(&ident))
        })
        .map_err(|e| DataFusionError::Plan(format!("table `{name}`: {e}")))?;
        let metadata = loaded.metadata();
        let snapshot_id = match at {
            ScalarValue::Int64(Some(id)) => *id,
            ScalarValue::Utf8(Some(ts)) => {
                let t = chrono::DateTime::parse_from_rfc3339(ts)
                    .map_err(|e| {
                        DataFusionError::Plan(format!("`{ts}` is not an RFC 3339 timestamp: {e}"))
                    })?
                    .timestamp_millis();
                match metadata
                    .history()
                    .iter()
                    .rev()
                    .find(|s| s.timestamp_ms <= t)
                {
                    Some(entry) => entry.snapshot_id,
                    None => return plan_err!("`{name}` has no snapshot at or before {ts}"),
                }
            }
            other => return plan_err!("expected {usage}, got {other}"),
        };
        if metadata.snapshot_by_id(snapshot_id).is_none() {
            return plan_err!(
                "`{name}` has no snapshot {snapshot_id} (it may have been expired); see `{name}$snapshots`"
            );
        }
        let provider = IcebergTable::at_snapshot(loaded, snapshot_id).map_err(|e| {
            DataFusionError::Plan(format!("table `{name}` at snapshot {snapshot_id}: {e}"))
        })?;
        Ok(Arc::new(provider))
    }
}
