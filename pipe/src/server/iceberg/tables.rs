//! Tables: list, create (also staged, `stage-create`, made by the commit
//! that ends the transaction), load (`snapshots=all|refs`), exists, commit,
//! rename, drop (`purgeRequested`), register, and metrics reports
//! (accepted, not kept). A commit goes through the sinks' `Committer`
//! under the table's lock (see the module doc of `super`); a table a
//! pipeline writes is neither dropped nor renamed from here.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use iceberg::spec::TableMetadataBuilder;
use iceberg::table::Table;
use iceberg::{TableCreation, TableIdent, TableUpdate};
use iceberg_catalog_rest::{CommitTableRequest, CreateTableRequest, RegisterTableRequest};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{RestError, RestResult};
use super::namespaces::body;
use super::{guard, namespace_of, table_of, IcebergState};
use pipe_sink::maintenance::lock::TableLock;
use pipe_sink::maintenance::swap::Swap;

pub(super) fn routes() -> Router<IcebergState> {
    Router::new()
        .route(
            "/v1/{prefix}/namespaces/{namespace}/tables",
            get(list).post(create),
        )
        .route(
            "/v1/{prefix}/namespaces/{namespace}/tables/{table}",
            get(load).head(exists).post(commit).delete(drop_table),
        )
        .route(
            "/v1/{prefix}/namespaces/{namespace}/register",
            post(register),
        )
        .route(
            "/v1/{prefix}/namespaces/{namespace}/tables/{table}/metrics",
            post(metrics),
        )
        .route("/v1/{prefix}/tables/rename", post(rename))
}

async fn list(
    State(state): State<IcebergState>,
    Path((prefix, namespace)): Path<(String, String)>,
    headers: HeaderMap,
) -> RestResult<Json<Value>> {
    state.reading(&headers, &prefix)?;
    let ident = namespace_of(&namespace)?;
    let catalog = state.supervisor.catalog();
    if !catalog.namespace_exists(&ident).await? {
        return Err(RestError::no_namespace(&ident.join(".")));
    }
    let tables = catalog.list_tables(&ident).await?;
    let identifiers: Vec<Value> = tables
        .iter()
        .map(|t| json!({"namespace": t.namespace(), "name": t.name()}))
        .collect();
    Ok(Json(json!({ "identifiers": identifiers })))
}

/// How a client reaches the table's files: for an S3 warehouse the
/// endpoint, region and addressing, and the keys when the client asks for
/// vended credentials and `[iceberg] vend_credentials` allows it.
fn storage_config(state: &IcebergState, headers: &HeaderMap) -> HashMap<String, String> {
    let config = state.supervisor.config();
    let warehouse = &config.catalog.warehouse;
    let mut out = HashMap::new();
    if !warehouse.location.starts_with("s3://") {
        return out;
    }
    let s3 = &warehouse.s3;
    if let Some(e) = &s3.endpoint {
        out.insert("s3.endpoint".into(), e.clone());
    }
    if let Some(r) = &s3.region {
        out.insert("s3.region".into(), r.clone());
        out.insert("client.region".into(), r.clone());
    }
    out.insert("s3.path-style-access".into(), s3.path_style.to_string());
    let asked = headers
        .get("x-iceberg-access-delegation")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|d| d.trim() == "vended-credentials"));
    // The warehouse's own keys write: a read-only caller brings its own.
    let writes = state.allow(headers, super::auth::Access::Write).is_ok();
    if asked && config.iceberg.vend_credentials && writes {
        if let Some(k) = &s3.access_key_id {
            out.insert("s3.access-key-id".into(), k.clone());
        }
        if let Some(k) = &s3.secret_access_key {
            out.insert("s3.secret-access-key".into(), k.clone());
        }
        if let Some(t) = &s3.session_token {
            out.insert("s3.session-token".into(), t.clone());
        }
    }
    out
}

/// A `LoadTableResult` of `table`; with `refs_only`, its snapshots cut to
/// those a branch or tag names.
fn loaded(table: &Table, config: HashMap<String, String>, refs_only: bool) -> RestResult<Value> {
    let mut metadata = serde_json::to_value(table.metadata()).map_err(|e| {
        RestError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            e.to_string(),
        )
    })?;
    if refs_only {
        let referenced: Vec<i64> = metadata["refs"]
            .as_object()
            .into_iter()
            .flat_map(|refs| refs.values())
            .filter_map(|r| r["snapshot-id"].as_i64())
            .collect();
        if let Some(Value::Array(snapshots)) = metadata.get_mut("snapshots") {
            snapshots.retain(|s| {
                s["snapshot-id"]
                    .as_i64()
                    .is_some_and(|id| referenced.contains(&id))
            });
        }
    }
    Ok(json!({
        "metadata-location": table.metadata_location(),
        "metadata": metadata,
        "config": config,
    }))
}

#[derive(Debug, Deserialize)]
struct LoadParams {
    snapshots: Option<String>,
}

async fn load(
    State(state): State<IcebergState>,
    Path((prefix, namespace, table)): Path<(String, String, String)>,
    Query(params): Query<LoadParams>,
    headers: HeaderMap,
) -> RestResult<Json<Value>> {
    state.reading(&headers, &prefix)?;
    let ident = table_of(&namespace, &table)?;
    let refs_only = match params.snapshots.as_deref() {
        None | Some("all") => false,
        Some("refs") => true,
        Some(other) => {
            return Err(RestError::bad_request(format!(
                "`snapshots={other}`: expected `all` or `refs`"
            )))
        }
    };
    let loaded_table = load_table(&state, &ident).await?;
    Ok(Json(loaded(
        &loaded_table,
        storage_config(&state, &headers),
        refs_only,
    )?))
}

async fn load_table(state: &IcebergState, ident: &TableIdent) -> RestResult<Table> {
    let catalog = state.supervisor.catalog();
    if !catalog.table_exists(ident).await? {
        return Err(RestError::no_table(&ident.to_string()));
    }
    Ok(catalog.load_table(ident).await?)
}

async fn exists(
    State(state): State<IcebergState>,
    Path((prefix, namespace, table)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> RestResult<StatusCode> {
    state.reading(&headers, &prefix)?;
    let ident = table_of(&namespace, &table)?;
    match state.supervisor.catalog().table_exists(&ident).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(RestError::no_table(&ident.to_string())),
    }
}

async fn create(
    State(state): State<IcebergState>,
    Path((prefix, namespace)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let request = json!(["create", namespace, String::from_utf8_lossy(&bytes)]).to_string();
    let run = async {
        let ns = namespace_of(&namespace)?;
        // A table is made only in a namespace whose name meets the rules.
        guard::check_namespace(&ns)?;
        let request: CreateTableRequest = body(&bytes)?;
        guard::check_name("table", &request.name)?;
        guard::check_properties(&HashMap::new(), &request.properties, &[])?;
        let staged = request.stage_create == Some(true);
        let catalog = state.supervisor.catalog();
        if !catalog.namespace_exists(&ns).await? {
            return Err(RestError::no_namespace(&ns.join(".")));
        }
        let ident = TableIdent::new(ns.clone(), request.name.clone());
        guard::not_written(&state, &ident, "make")?;
        if catalog.table_exists(&ident).await? {
            return Err(RestError::new(
                StatusCode::CONFLICT,
                "AlreadyExistsException",
                format!("table `{ident}` already exists"),
            ));
        }
        let _places = state.places.lock().await;
        let location = match request.location {
            Some(l) => guard::chosen_by_pipe(&state, &ident, &l)?,
            None => default_location(&state, &ident).await?,
        };
        guard::location_free(&state, &location, None).await?;
        let creation = TableCreation::builder()
            .name(request.name.clone())
            .location(location)
            .schema(request.schema)
            .partition_spec_opt(request.partition_spec)
            .sort_order_opt(request.write_order)
            .properties(request.properties)
            .build();
        if staged {
            // Nothing is made: the commit that ends the transaction makes
            // the table (see `create_by_commit`).
            let metadata = TableMetadataBuilder::from_table_creation(creation)?
                .build()?
                .metadata;
            let uuid = state.stage(&ident, metadata.uuid());
            let metadata = match uuid == metadata.uuid() {
                true => metadata,
                false => {
                    TableMetadataBuilder::new_from_metadata(metadata, None)
                        .assign_uuid(uuid)
                        .build()?
                        .metadata
                }
            };
            return Ok(Json(json!({
                "metadata-location": null,
                "metadata": metadata,
                "config": storage_config(&state, &headers),
            })));
        }
        let table = catalog.create_table(&ns, creation).await?;
        // A stage of this name waiting for its commit is over: its commit
        // will find the table made.
        state.unstage(&ident);
        Ok(Json(loaded(
            &table,
            storage_config(&state, &headers),
            false,
        )?))
    };
    state.once(&headers, &prefix, request, run).await
}

/// Where a table made without a location goes (see `guard`'s module doc).
async fn default_location(state: &IcebergState, ident: &TableIdent) -> RestResult<String> {
    let natural = guard::natural_location(state, ident);
    // Taken (a table renamed away keeps its folder): a folder of its own.
    match guard::location_free(state, &natural, None).await {
        Ok(()) => Ok(natural),
        Err(_) => Ok(format!(
            "{natural}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )),
    }
}

/// The commit that ends a staged creation (`assert-create`): the table
/// is made from the updates that describe it (schema, spec, sort order,
/// location, properties, format), then the rest (a first snapshot, say)
/// is committed on it. Two steps, not one swap: if the second fails the
/// table stays, made and empty.
async fn create_by_commit(
    state: &IcebergState,
    ident: &TableIdent,
    updates: Vec<TableUpdate>,
) -> RestResult<Table> {
    let mut schemas = Vec::new();
    let (mut current, mut spec, mut order, mut location) = (None, None, None, None);
    let mut properties = HashMap::new();
    let mut format = iceberg::spec::FormatVersion::V2;
    let mut rest = Vec::new();
    // The table takes the uuid its staged creation was answered with.
    let mut uuid = state.staged_uuid(ident);
    for update in updates {
        match update {
            TableUpdate::AddSchema { schema } => schemas.push(schema),
            TableUpdate::SetCurrentSchema { schema_id } => current = Some(schema_id),
            TableUpdate::AddSpec { spec: s } => spec = Some(s),
            TableUpdate::AddSortOrder { sort_order } => order = Some(sort_order),
            TableUpdate::SetLocation { location: l } => location = Some(l),
            TableUpdate::SetProperties { updates } => properties.extend(updates),
            TableUpdate::UpgradeFormatVersion { format_version } => format = format_version,
            TableUpdate::AssignUuid { uuid: u } => uuid = Some(u),
            TableUpdate::SetDefaultSpec { .. } | TableUpdate::SetDefaultSortOrder { .. } => {}
            other => rest.push(other),
        }
    }
    let schema = match current {
        Some(id) if id >= 0 => schemas.iter().find(|s| s.schema_id() == id).cloned(),
        _ => schemas.last().cloned(),
    }
    .ok_or_else(|| RestError::bad_request("a create commit names no schema (`add-schema`)"))?;
    guard::not_written(state, ident, "make")?;
    guard::check_properties(&HashMap::new(), &properties, &[])?;
    let catalog = state.supervisor.catalog();
    let _places = state.places.lock().await;
    let location = match location {
        Some(l) => guard::chosen_by_pipe(state, ident, &l)?,
        None => default_location(state, ident).await?,
    };
    guard::check_updates(ident, &HashMap::new(), &location, &rest)?;
    guard::location_free(state, &location, None).await?;
    let creation = TableCreation::builder()
        .name(ident.name().to_string())
        .location(location)
        .schema(schema)
        .partition_spec_opt(spec)
        .sort_order_opt(order)
        .properties(properties)
        .format_version(format)
        .build();
    let made = catalog.create_table(ident.namespace(), creation).await?;
    // Made: a later creation of this name is not this stage's.
    state.unstage(ident);
    if let Some(uuid) = uuid.filter(|u| *u != made.metadata().uuid()) {
        rest.insert(0, TableUpdate::AssignUuid { uuid });
    }
    if rest.is_empty() {
        return Ok(made);
    }
    let lock = TableLock::of(&made);
    let _guard = lock.lock().await;
    state
        .supervisor
        .committer()
        .commit(&catalog, ident, &[], rest)
        .await
        .map_err(|failed| {
            RestError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "CommitStateUnknownException",
                format!(
                    "table `{ident}` was made, but its first commit failed: {}",
                    failed.error
                ),
            )
        })
}

async fn commit(
    State(state): State<IcebergState>,
    Path((prefix, namespace, table)): Path<(String, String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let request = json!(["commit", namespace, table, String::from_utf8_lossy(&bytes)]).to_string();
    let run = async {
        let ident = table_of(&namespace, &table)?;
        let request: CommitTableRequest = body(&bytes)?;
        if let Some(named) = &request.identifier {
            if *named != ident {
                return Err(RestError::bad_request(format!(
                    "the body names table `{named}`, the path `{ident}`"
                )));
            }
        }
        let creates = request
            .requirements
            .iter()
            .any(|r| matches!(r, iceberg::TableRequirement::NotExist));
        if creates {
            // A new name meets the rules for new names.
            guard::check_namespace(ident.namespace())?;
            guard::check_name("table", ident.name())?;
            if state.supervisor.catalog().table_exists(&ident).await? {
                return Err(RestError::commit_failed(format!(
                    "table `{ident}` already exists (`assert-create`)"
                )));
            }
            let made = create_by_commit(&state, &ident, request.updates).await?;
            return Ok(Json(json!({
                "metadata-location": made.metadata_location(),
                "metadata": made.metadata(),
            })));
        }
        let lock = TableLock::of(&load_table(&state, &ident).await?);
        let guard = lock.lock().await;
        // Checked on the table as it is under the lock: a property set
        // again to the value it has is no change (clients copy them back).
        let current = load_table(&state, &ident).await?;
        guard::check_updates(
            &ident,
            current.metadata().properties(),
            current.metadata().location(),
            &request.updates,
        )?;
        let catalog = state.supervisor.catalog();
        let committed = state
            .supervisor
            .committer()
            .commit(&catalog, &ident, &request.requirements, request.updates)
            .await;
        // A sink of this process plans its next commit on the new table.
        match &committed {
            Err(failed) if matches!(failed.swap, Swap::NotDone) => {}
            _ => lock.bump(),
        }
        drop(guard);
        match committed {
            Ok(after) => Ok(Json(json!({
                "metadata-location": after.metadata_location(),
                "metadata": after.metadata(),
            }))),
            Err(failed) => Err(match failed.swap {
                Swap::Unknown => RestError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "CommitStateUnknownException",
                    failed.error.to_string(),
                ),
                _ if pipe_sink::maintenance::snapshot::is_conflict(&failed.error) => {
                    RestError::commit_failed(failed.error.to_string())
                }
                _ => RestError::of_pipe(&failed.error.into()),
            }),
        }
    };
    state.once(&headers, &prefix, request, run).await
}

#[derive(Debug, Deserialize)]
struct DropParams {
    /// `true` in any case (PyIceberg sends `True`).
    #[serde(rename = "purgeRequested", default)]
    purge_requested: Option<String>,
}

async fn drop_table(
    State(state): State<IcebergState>,
    Path((prefix, namespace, table)): Path<(String, String, String)>,
    Query(params): Query<DropParams>,
    headers: HeaderMap,
) -> Response {
    let request = json!(["drop", namespace, table, params.purge_requested]).to_string();
    let run = async {
        let ident = table_of(&namespace, &table)?;
        guard::not_written(&state, &ident, "drop")?;
        let catalog = state.supervisor.catalog();
        if !catalog.table_exists(&ident).await? {
            return Err(RestError::no_table(&ident.to_string()));
        }
        let purge = params
            .purge_requested
            .is_some_and(|p| p.eq_ignore_ascii_case("true"));
        match purge {
            true => {
                // Checked and purged with nothing committing or moving in
                // between.
                let _places = state.places.lock().await;
                let table = catalog.load_table(&ident).await?;
                let lock = TableLock::of(&table);
                let _commits = lock.lock().await;
                guard::purge_safe(&state, &catalog.load_table(&ident).await?).await?;
                catalog.purge_table(&ident).await?
            }
            false => catalog.drop_table(&ident).await?,
        }
        Ok(StatusCode::NO_CONTENT)
    };
    state.once(&headers, &prefix, request, run).await
}

async fn register(
    State(state): State<IcebergState>,
    Path((prefix, namespace)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let request = json!(["register", namespace, String::from_utf8_lossy(&bytes)]).to_string();
    let run = async {
        let ns = namespace_of(&namespace)?;
        guard::check_namespace(&ns)?;
        let request: RegisterTableRequest = body(&bytes)?;
        let ident = TableIdent::new(ns, request.name.clone());
        guard::check_name("table", &request.name)?;
        guard::not_written(&state, &ident, "register another table as")?;
        guard::in_warehouse(&state, "metadata-location", &request.metadata_location)?;
        if request.overwrite == Some(true) {
            return Err(RestError::new(
                StatusCode::NOT_ACCEPTABLE,
                "UnsupportedOperationException",
                "registering over an existing table (`overwrite`) is not served",
            ));
        }
        let catalog = state.supervisor.catalog();
        let _places = state.places.lock().await;
        let at = request.metadata_location.clone();
        let table = catalog
            .register_table(&ident, request.metadata_location)
            .await
            .map_err(|e| match e.to_string().contains("NotFound") {
                true => RestError::bad_request(format!("no metadata file at `{at}`")),
                false => e.into(),
            })?;
        // Its files are its own, or it is not registered: another table's
        // metadata under a second name would let maintenance or a purge of
        // one take the other's files.
        let location = table.metadata().location().to_string();
        let free = async {
            guard::in_warehouse(&state, "location", &location)?;
            guard::location_free(&state, &location, Some(&ident)).await?;
            guard::no_pipe_summaries(&table)
        };
        if let Err(e) = free.await {
            catalog.drop_table(&ident).await?;
            return Err(e);
        }
        Ok(Json(loaded(
            &table,
            storage_config(&state, &headers),
            false,
        )?))
    };
    state.once(&headers, &prefix, request, run).await
}

async fn metrics(
    State(state): State<IcebergState>,
    Path((prefix, _namespace, _table)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> RestResult<StatusCode> {
    state.reading(&headers, &prefix)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct RenameRequest {
    source: TableIdent,
    destination: TableIdent,
}

async fn rename(
    State(state): State<IcebergState>,
    Path(prefix): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let request = json!(["rename", String::from_utf8_lossy(&bytes)]).to_string();
    let run = async {
        let request: RenameRequest = body(&bytes)?;
        guard::not_written(&state, &request.source, "rename")?;
        guard::not_written(&state, &request.destination, "rename another table to")?;
        guard::check_namespace(request.destination.namespace())?;
        guard::check_name("table", request.destination.name())?;
        let catalog = state.supervisor.catalog();
        if !catalog.table_exists(&request.source).await? {
            return Err(RestError::no_table(&request.source.to_string()));
        }
        if !catalog
            .namespace_exists(request.destination.namespace())
            .await?
        {
            return Err(RestError::no_namespace(
                &request.destination.namespace().join("."),
            ));
        }
        catalog
            .rename_table(&request.source, &request.destination)
            .await?;
        Ok(StatusCode::NO_CONTENT)
    };
    state.once(&headers, &prefix, request, run).await
}
