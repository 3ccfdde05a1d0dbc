//! The catalog as DataFusion sees it: one schema per namespace, one table
//! per Iceberg table, plus each table's metadata tables.
//!
//! Names are listed once, when the session starts; a table is loaded when
//! a query names it, so each query plans against the table as it is then
//! and a session over a hundred tables does not load a hundred tables.
//! A loaded table is kept while its metadata file stays the catalog's
//! current one: manifests are immutable, so the manifest list and manifests
//! the table has parsed (iceberg-rust's per-table object cache) serve every
//! later query until the next commit replaces the metadata file. With a
//! probe (SQL catalogs, [`crate::Caches::probing`]) a query asks only for
//! the catalog's pointer and skips even the metadata file while it is
//! unchanged; a table keeping 50 snapshots has a 45 KB one.
//!
//! Metadata tables, named `table$kind`:
//!
//! | name | one row per | columns |
//! |---|---|---|
//! | `t$snapshots` | snapshot kept | `committed_at`, `snapshot_id`, `parent_id`, `operation`, `manifest_list`, `summary` (a map holding the commit's `pipe.*` ids and offsets) |
//! | `t$manifests` | manifest of the current snapshot | Iceberg's manifest columns |
//! | `t$files` | data file of the current snapshot | `file_path`, `file_format`, `partition`, `record_count`, `file_size_in_bytes` |
//!
//! They are built in memory when named, so any projection, filter or join
//! works on them.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, MemTable, SchemaProvider, TableProvider};
use datafusion::common::{DataFusionError, Result as DFResult};
use futures::TryStreamExt;
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::table::Table;
use iceberg::{Catalog, NamespaceIdent, TableIdent};
use pipe_sink::maintenance::Committer;

use crate::fresh::{FreshTable, Unflushed};
use crate::scan::{IcebergTable, Reader};

/// The metadata tables every table has, by the suffix after `$`.
pub const METADATA_TABLES: [&str; 3] = ["snapshots", "manifests", "files"];

/// Every namespace of an Iceberg catalog, as DataFusion schemas.
#[derive(Debug)]
pub struct IcebergCatalog {
    schemas: HashMap<String, Arc<dyn SchemaProvider>>,
}

impl IcebergCatalog {
    /// Lists the catalog's namespaces and their tables.
    /// With `fresh`, a table a pipeline writes is read with what that
    /// pipeline has not committed yet (see [`crate::fresh`]).
    pub async fn try_new(
        catalog: Arc<dyn Catalog>,
        reader: Reader,
        loaded: LoadedTables,
        fresh: Option<Arc<dyn Unflushed>>,
    ) -> iceberg::Result<IcebergCatalog> {
        let mut schemas = HashMap::new();
        // Nested namespaces too (`"lake.sub".t`), each once: a SQL catalog
        // lists every descendant of a namespace as its children.
        let mut pending = catalog.list_namespaces(None).await?;
        let mut seen = std::collections::HashSet::new();
        while let Some(namespace) = pending.pop() {
            if !seen.insert(namespace.clone()) {
                continue;
            }
            let children = catalog
                .list_namespaces(Some(&namespace))
                .await
                .unwrap_or_default();
            pending.extend(children.into_iter().filter(|n| !seen.contains(n)));
            // A SQL catalog lists `a` when only `a.b` was made, and then
            // has no namespace `a` to list tables of: it holds none.
            let tables = match catalog.list_tables(&namespace).await {
                Ok(tables) => tables,
                Err(e) if e.kind() == iceberg::ErrorKind::NamespaceNotFound => Vec::new(),
                Err(e) => return Err(e),
            }
            .into_iter()
            .map(|t| t.name().to_string())
            .collect();
            let name = namespace.join(".");
            let provider = Namespace {
                catalog: catalog.clone(),
                namespace,
                tables,
                reader,
                loaded: loaded.clone(),
                fresh: fresh.clone(),
            };
            schemas.insert(name, Arc::new(provider) as Arc<dyn SchemaProvider>);
        }
        Ok(IcebergCatalog { schemas })
    }
}

impl CatalogProvider for IcebergCatalog {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema_names(&self) -> Vec<String> {
        self.schemas.keys().cloned().collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.schemas.get(name).cloned()
    }
}

#[derive(Debug)]
struct Namespace {
    catalog: Arc<dyn Catalog>,
    namespace: NamespaceIdent,
    tables: Vec<String>,
    reader: Reader,
    loaded: LoadedTables,
    fresh: Option<Arc<dyn Unflushed>>,
}

/// The last loaded version of each table, shared by the sessions of one
/// [`crate::Caches`], and how to tell cheaply whether it is still current.
#[derive(Debug, Clone, Default)]
pub struct LoadedTables {
    tables: Arc<Mutex<HashMap<TableIdent, Table>>>,
    /// Reads the catalog's pointer without the metadata file (a SQL
    /// catalog); without it every query loads (reads and parses) the
    /// table's current metadata file, which grows with the snapshots kept.
    probe: Option<Committer>,
}

impl LoadedTables {
    /// Tables kept while `probe` says their metadata file is current.
    pub fn probing(probe: Committer) -> LoadedTables {
        LoadedTables {
            tables: Arc::default(),
            probe: Some(probe),
        }
    }

    fn kept(&self, ident: &TableIdent) -> Option<Table> {
        let tables = self.tables.lock().expect("the table cache lock");
        tables.get(ident).cloned()
    }
}

impl Namespace {
    /// The table as the catalog has it now: the version loaded before if
    /// its metadata file is still the current one (with the manifests it
    /// has parsed), else the new version, kept for the next query.
    async fn load(&self, name: &str) -> DFResult<Table> {
        let ident = TableIdent::new(self.namespace.clone(), name.to_string());
        if let (Some(probe), Some(kept)) = (&self.loaded.probe, self.loaded.kept(&ident)) {
            let now = probe.current_location(&ident).await;
            if now.is_some() && now.as_deref() == kept.metadata_location() {
                return Ok(kept);
            }
        }
        let fresh = self
            .catalog
            .load_table(&ident)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let mut loaded = self.loaded.tables.lock().expect("the table cache lock");
        match loaded.get(&ident) {
            Some(kept)
                if kept.metadata_location().is_some()
                    && kept.metadata_location() == fresh.metadata_location() =>
            {
                Ok(kept.clone())
            }
            _ => {
                loaded.insert(ident, fresh.clone());
                Ok(fresh)
            }
        }
    }
}

#[async_trait]
impl SchemaProvider for Namespace {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        self.tables
            .iter()
            .flat_map(|t| {
                std::iter::once(t.clone()).chain(
                    METADATA_TABLES
                        .iter()
                        .map(move |kind| format!("{t}${kind}")),
                )
            })
            .collect()
    }

    fn table_exist(&self, name: &str) -> bool {
        let (table, kind) = match name.split_once('$') {
            Some((table, kind)) => (table, Some(kind)),
            None => (name, None),
        };
        self.tables.iter().any(|t| t == table) && kind.is_none_or(|k| METADATA_TABLES.contains(&k))
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        let (table, kind) = match name.split_once('$') {
            Some((table, kind)) => (table, Some(kind)),
            None => (name, None),
        };
        if !self.tables.iter().any(|t| t == table) {
            return Ok(None);
        }
        // Pinned before the load (see `crate::fresh`).
        let pinned = match (&self.fresh, kind) {
            (Some(fresh), None) => {
                fresh.pin(&TableIdent::new(self.namespace.clone(), table.to_string()))
            }
            _ => None,
        };
        let loaded = self.load(table).await?;
        match kind {
            None => {
                let committed = IcebergTable::current(loaded.clone())
                    .map(|t| t.with_reader(self.reader))
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                Ok(Some(match pinned {
                    Some(pinned) => Arc::new(FreshTable::new(committed, pinned.tail(&loaded)?)),
                    None => Arc::new(committed),
                }))
            }
            Some(kind) => metadata_table(&loaded, kind).await.map(Some),
        }
    }
}

/// The metadata table `kind` of `table`, in memory.
pub async fn metadata_table(table: &Table, kind: &str) -> DFResult<Arc<dyn TableProvider>> {
    let iceberg = |e: iceberg::Error| DataFusionError::External(Box::new(e));
    let inspect = table.inspect();
    let (schema, batches) = match kind {
        "snapshots" | "manifests" => {
            let (schema, stream) = if kind == "snapshots" {
                let t = inspect.snapshots();
                (t.schema(), t.scan().await)
            } else {
                let t = inspect.manifests();
                (t.schema(), t.scan().await)
            };
            let schema = Arc::new(schema_to_arrow_schema(&schema).map_err(iceberg)?);
            let batches: Vec<RecordBatch> = stream
                .map_err(iceberg)?
                .try_collect()
                .await
                .map_err(iceberg)?;
            (schema, batches)
        }
        "files" => data_files(table).await.map_err(iceberg)?,
        other => {
            return Err(DataFusionError::Plan(format!(
                "there is no metadata table `{other}`; there are {}",
                METADATA_TABLES.map(|k| format!("`${k}`")).join(", ")
            )))
        }
    };
    // Batches built from the metadata may leave out the field metadata the
    // declared schema carries; they are the same columns.
    let batches = batches
        .into_iter()
        .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(MemTable::try_new(schema, vec![batches])?))
}

/// `t$files`: the data files of the current snapshot.
async fn data_files(table: &Table) -> iceberg::Result<(Arc<Schema>, Vec<RecordBatch>)> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("file_path", DataType::Utf8, false),
        Field::new("file_format", DataType::Utf8, false),
        Field::new("partition", DataType::Utf8, true),
        Field::new("record_count", DataType::Int64, true),
        Field::new("file_size_in_bytes", DataType::Int64, false),
    ]));
    let tasks: Vec<_> = match table.metadata().current_snapshot() {
        Some(_) => {
            table
                .scan()
                .select_all()
                .build()?
                .plan_files()
                .await?
                .try_collect()
                .await?
        }
        None => Vec::new(),
    };
    let current = table.metadata().current_schema().clone();
    // Tasks do not carry their file's spec; with one spec it is that one.
    let spec = (table.metadata().partition_specs_iter().len() == 1)
        .then(|| table.metadata().default_partition_spec().clone())
        .filter(|spec| !spec.is_unpartitioned());
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            tasks.iter().map(|t| t.data_file_path.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            tasks.iter().map(|t| t.data_file_format.to_string()),
        )),
        Arc::new(StringArray::from_iter(tasks.iter().map(|t| {
            match (&t.partition, &spec) {
                (Some(p), Some(spec)) => Some(spec.partition_to_path(p, current.clone())),
                _ => None,
            }
        }))),
        Arc::new(Int64Array::from_iter(
            tasks.iter().map(|t| t.record_count.map(|n| n as i64)),
        )),
        Arc::new(Int64Array::from_iter_values(
            tasks.iter().map(|t| t.file_size_in_bytes as i64),
        )),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| iceberg::Error::new(iceberg::ErrorKind::Unexpected, e.to_string()))?;
    Ok((schema, vec![batch]))
}
