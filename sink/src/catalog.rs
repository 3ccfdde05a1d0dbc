//! Where tables live: the warehouse (a local folder or an S3-compatible
//! bucket) and the catalog that tracks each table's current metadata.
//!
//! The catalog is iceberg-rust's SQL catalog. On SQLite (the default) it is
//! the same tables PyIceberg's `SqlCatalog` reads, so any Iceberg reader can
//! open what `pipe` writes; on PostgreSQL several processes share it. An
//! Iceberg REST catalog (bearer token or OAuth2 client credentials) serves
//! hosted catalogs such as R2 Data Catalog. Storage goes through iceberg's OpenDAL factory,
//! which picks the backend from the URL scheme (`file://`, `s3://`).

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::{Catalog, CatalogBuilder};
use iceberg_catalog_rest::{
    RestCatalogBuilder, REST_CATALOG_PROP_URI, REST_CATALOG_PROP_WAREHOUSE,
};
use iceberg_catalog_sql::{SqlBindStyle, SqlCatalogBuilder};
use iceberg_storage_opendal::OpenDalResolvingStorageFactory;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Connection settings for an S3-compatible store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Options {
    /// Endpoint URL, e.g. `http://127.0.0.1:4566`; empty means AWS.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Region name (`auto` for R2).
    #[serde(default)]
    pub region: Option<String>,
    /// Access key id.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Secret access key.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Session token of temporary credentials.
    #[serde(default)]
    pub session_token: Option<String>,
    /// Address buckets as `endpoint/bucket` instead of `bucket.endpoint`.
    #[serde(default)]
    pub path_style: bool,
}

/// The warehouse: where data and metadata files are written.
#[derive(Debug, Clone, PartialEq)]
pub struct Warehouse {
    /// `file:///absolute/folder` or `s3://bucket/prefix`.
    pub location: String,
    /// Settings for `s3://` locations.
    pub s3: S3Options,
}

/// Which catalog tracks the tables.
#[derive(Debug, Clone, PartialEq)]
pub enum CatalogKind {
    /// iceberg-rust's SQL catalog, e.g. `sqlite:/path/catalog.db?mode=rwc`,
    /// or `postgres://user:password@host:5432/db` when several `pipe`
    /// processes (on one machine or many) share tables.
    Sql { uri: String },
    /// An Iceberg REST catalog (R2 Data Catalog, Polaris, Lakekeeper, S3
    /// Tables, …) at `uri`.
    Rest(RestSettings),
}

/// How to reach an Iceberg REST catalog.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestSettings {
    /// Base URI, e.g. `https://catalog.cloudflarestorage.com/<account>/<bucket>`.
    pub uri: String,
    /// The warehouse the catalog serves (R2: `<account>_<bucket>`; S3
    /// Tables: the table bucket ARN).
    pub warehouse: Option<String>,
    /// A bearer token (R2 Data Catalog's API token).
    pub token: Option<String>,
    /// OAuth2 client credentials, `client_id:client_secret`, exchanged for
    /// a token at `oauth2_server_uri` (default: the catalog's
    /// `v1/oauth/tokens`).
    pub credential: Option<String>,
    pub oauth2_server_uri: Option<String>,
    /// OAuth2 scope (default `catalog`).
    pub scope: Option<String>,
}

/// Everything needed to open the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogSettings {
    /// The catalog's name; PyIceberg must use the same one to see the tables.
    pub name: String,
    pub kind: CatalogKind,
    pub warehouse: Warehouse,
}

impl CatalogSettings {
    /// The embedded default under one folder: a SQLite catalog named `pipe`
    /// in `dir/catalog.db` and the warehouse folder `dir/warehouse`.
    pub fn local(dir: &std::path::Path) -> Self {
        CatalogSettings {
            name: "pipe".into(),
            kind: CatalogKind::Sql {
                uri: format!("sqlite:{}/catalog.db?mode=rwc", dir.display()),
            },
            warehouse: Warehouse {
                location: format!("file://{}/warehouse", dir.display()),
                s3: S3Options::default(),
            },
        }
    }

    /// Whether this process writes the tables' metadata files (a SQL
    /// catalog) rather than the catalog's server (REST).
    pub fn owns_metadata_files(&self) -> bool {
        matches!(self.kind, CatalogKind::Sql { .. })
    }

    /// The FileIO properties for the warehouse (the `s3.*` keys).
    pub fn storage_props(&self) -> HashMap<String, String> {
        let mut props = HashMap::new();
        let s3 = &self.warehouse.s3;
        if self.warehouse.location.starts_with("s3") {
            let mut set = |k: &str, v: &Option<String>| {
                if let Some(v) = v {
                    props.insert(k.to_string(), v.clone());
                }
            };
            set("s3.endpoint", &s3.endpoint);
            set("s3.region", &s3.region);
            set("s3.access-key-id", &s3.access_key_id);
            set("s3.secret-access-key", &s3.secret_access_key);
            set("s3.session-token", &s3.session_token);
            props.insert("s3.path-style-access".into(), s3.path_style.to_string());
        }
        props
    }
}

/// The file of a `sqlite:` catalog URI.
pub fn sqlite_path(uri: &str) -> Option<std::path::PathBuf> {
    let rest = uri.strip_prefix("sqlite:")?.trim_start_matches("//");
    let path = rest.split_once('?').map_or(rest, |(p, _)| p);
    (!path.is_empty() && path != ":memory:").then(|| path.into())
}

/// Opens the catalog described by `settings`.
pub async fn open_catalog(settings: &CatalogSettings) -> Result<Arc<dyn Catalog>> {
    match &settings.kind {
        CatalogKind::Rest(rest) => {
            let mut props = settings.storage_props();
            props.insert(REST_CATALOG_PROP_URI.into(), rest.uri.clone());
            let optional = [
                (REST_CATALOG_PROP_WAREHOUSE, &rest.warehouse),
                ("token", &rest.token),
                ("credential", &rest.credential),
                ("oauth2-server-uri", &rest.oauth2_server_uri),
                ("scope", &rest.scope),
            ];
            for (key, value) in optional {
                if let Some(v) = value {
                    props.insert(key.into(), v.clone());
                }
            }
            let catalog = RestCatalogBuilder::default()
                .with_storage_factory(Arc::new(OpenDalResolvingStorageFactory::new()))
                .load(&settings.name, props)
                .await
                .map_err(|e| Error::Catalog {
                    action: format!("opening the REST catalog at `{}`", rest.uri),
                    source: Box::new(e),
                })?;
            // The catalog's configuration is fetched lazily; ask once now so
            // a wrong address or credential stops startup here.
            catalog
                .list_namespaces(None)
                .await
                .map_err(|e| Error::Catalog {
                    action: format!("reaching the REST catalog at `{}`", rest.uri),
                    source: Box::new(e),
                })?;
            Ok(Arc::new(catalog))
        }
        CatalogKind::Sql { uri } => {
            if let Some(path) = sqlite_path(uri) {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        Error::Config(format!(
                            "creating the catalog folder `{}`: {e}",
                            parent.display()
                        ))
                    })?;
                }
            }
            let mut props = settings.storage_props();
            props.insert("uri".into(), uri.clone());
            props.insert("warehouse".into(), settings.warehouse.location.clone());
            // SQLite takes `?` parameters, PostgreSQL `$1`.
            let style = if uri.starts_with("postgres") {
                SqlBindStyle::DollarNumeric
            } else {
                SqlBindStyle::QMark
            };
            props.insert("sql_bind_style".into(), style.to_string());
            // Opening makes the catalog's tables if missing (`CREATE TABLE
            // IF NOT EXISTS`). On PostgreSQL two processes opening a new
            // database at once can collide in that ("duplicate key value
            // violates unique constraint"); the tables then exist, and a
            // second try opens them.
            let mut tries = 0;
            let catalog = loop {
                tries += 1;
                let opened = SqlCatalogBuilder::default()
                    .with_storage_factory(Arc::new(OpenDalResolvingStorageFactory::new()))
                    .load(&settings.name, props.clone())
                    .await;
                match opened {
                    Err(e) if tries < 5 && e.to_string().contains("duplicate key value") => {
                        tokio::time::sleep(std::time::Duration::from_millis(100 * tries)).await;
                    }
                    other => {
                        break other.map_err(|e| Error::Catalog {
                            action: format!("opening the SQL catalog at `{uri}`"),
                            source: Box::new(e),
                        })?
                    }
                }
            };
            Ok(Arc::new(catalog))
        }
    }
}
