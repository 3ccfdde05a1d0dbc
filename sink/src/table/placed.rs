//! Where tables lie: every table of a catalog with its location, and the
//! folder a new table takes. A table renamed away keeps its folder, so the
//! catalog's usual location for a new table of that name (the namespace's
//! folder and the name) may be another table's: maintenance of either
//! would take the other's files for orphans. The sink chooses a new
//! table's location before making it: that folder, or when it is another
//! table's, a folder of its own beside it (`<location>-<8 hex digits>`).

use std::collections::HashSet;
use std::sync::Arc;

use iceberg::{Catalog, NamespaceIdent, TableIdent};
use tracing::warn;

use crate::maintenance::owned::overlap;

/// Every table of `catalog` and its location (a table that fails to load
/// is left out, and said so in the log).
pub async fn locations(catalog: &Arc<dyn Catalog>) -> iceberg::Result<Vec<(TableIdent, String)>> {
    let mut namespaces = catalog.list_namespaces(None).await?;
    let mut tables = Vec::new();
    // A SQL catalog lists every descendant of a namespace, not only its
    // children: each is visited once.
    let mut seen: HashSet<NamespaceIdent> = HashSet::new();
    while let Some(ns) = namespaces.pop() {
        if !seen.insert(ns.clone()) {
            continue;
        }
        let children = catalog.list_namespaces(Some(&ns)).await.unwrap_or_default();
        namespaces.extend(children.into_iter().filter(|n| !seen.contains(n)));
        // A SQL catalog lists `a` when only `a.b` was made; listing `a`'s
        // tables then fails. A namespace that cannot be listed has no
        // table to compare with.
        let listed = match catalog.list_tables(&ns).await {
            Ok(listed) => listed,
            Err(e) => {
                warn!(namespace = ?ns, error = %e, "a namespace whose tables cannot be listed is left out of the location check");
                continue;
            }
        };
        for t in listed {
            match catalog.load_table(&t).await {
                Ok(table) => tables.push((t, table.metadata().location().to_string())),
                Err(e) => {
                    warn!(table = %t, error = %e, "a table that does not load is left out of the location check")
                }
            }
        }
    }
    Ok(tables)
}

/// The other table whose location is `location`, holds it or lies in it.
pub async fn overlapping(
    catalog: &Arc<dyn Catalog>,
    ident: &TableIdent,
    location: &str,
) -> iceberg::Result<Option<(TableIdent, String)>> {
    Ok(locations(catalog)
        .await?
        .into_iter()
        .find(|(other, theirs)| other != ident && overlap(location, theirs)))
}

/// A folder of its own beside `location`.
pub fn suffixed(location: &str) -> String {
    format!(
        "{}-{}",
        location.trim_end_matches('/'),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}
