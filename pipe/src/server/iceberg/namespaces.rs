//! Namespaces: list (under a parent), create, load, exists, drop (when
//! empty), and update properties.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use iceberg::NamespaceIdent;
use serde::Deserialize;
use serde_json::json;

use super::error::{RestError, RestResult};
use super::{namespace_of, IcebergState};

pub(super) fn routes() -> Router<IcebergState> {
    Router::new()
        .route("/v1/{prefix}/namespaces", get(list).post(create))
        .route(
            "/v1/{prefix}/namespaces/{namespace}",
            get(load).head(exists).delete(drop_namespace),
        )
        .route(
            "/v1/{prefix}/namespaces/{namespace}/properties",
            post(update_properties),
        )
}

/// A request body as `T`, or a 400 saying what is wrong with it.
pub(super) fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> RestResult<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| RestError::bad_request(format!("the request body: {e}")))
}

#[derive(Debug, Deserialize)]
struct ListParams {
    parent: Option<String>,
}

async fn list(
    State(state): State<IcebergState>,
    Path(prefix): Path<String>,
    Query(params): Query<ListParams>,
    headers: HeaderMap,
) -> RestResult<Json<serde_json::Value>> {
    state.reading(&headers, &prefix)?;
    let parent = params
        .parent
        .filter(|p| !p.is_empty())
        .map(|p| namespace_of(&p))
        .transpose()?;
    let catalog = state.supervisor.catalog();
    if let Some(parent) = &parent {
        if !catalog.namespace_exists(parent).await? {
            return Err(RestError::no_namespace(&parent.join(".")));
        }
    }
    let namespaces = catalog.list_namespaces(parent.as_ref()).await?;
    Ok(Json(json!({ "namespaces": namespaces })))
}

#[derive(Debug, Deserialize)]
struct CreateRequest {
    namespace: NamespaceIdent,
    #[serde(default)]
    properties: HashMap<String, String>,
}

async fn create(
    State(state): State<IcebergState>,
    Path(prefix): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let request = json!(["create namespace", String::from_utf8_lossy(&bytes)]).to_string();
    let run = async {
        let request: CreateRequest = body(&bytes)?;
        super::guard::check_namespace(&request.namespace)?;
        let catalog = state.supervisor.catalog();
        if let Some(parent) = request.namespace.parent() {
            if !catalog.namespace_exists(&parent).await? {
                return Err(RestError::no_namespace(&parent.join(".")));
            }
        }
        super::guard::no_namespace_location(&request.properties, &[])?;
        let made = catalog
            .create_namespace(&request.namespace, request.properties)
            .await?;
        Ok::<_, RestError>(Json(json!({
            "namespace": made.name(),
            "properties": made.properties(),
        })))
    };
    state.once(&headers, &prefix, request, run).await
}

async fn load(
    State(state): State<IcebergState>,
    Path((prefix, namespace)): Path<(String, String)>,
    headers: HeaderMap,
) -> RestResult<Json<serde_json::Value>> {
    state.reading(&headers, &prefix)?;
    let ident = namespace_of(&namespace)?;
    let found = state.supervisor.catalog().get_namespace(&ident).await?;
    Ok(Json(json!({
        "namespace": found.name(),
        "properties": found.properties(),
    })))
}

async fn exists(
    State(state): State<IcebergState>,
    Path((prefix, namespace)): Path<(String, String)>,
    headers: HeaderMap,
) -> RestResult<StatusCode> {
    state.reading(&headers, &prefix)?;
    let ident = namespace_of(&namespace)?;
    match state.supervisor.catalog().namespace_exists(&ident).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(RestError::no_namespace(&ident.join("."))),
    }
}

async fn drop_namespace(
    State(state): State<IcebergState>,
    Path((prefix, namespace)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let request = json!(["drop namespace", namespace]).to_string();
    let run = async {
        let ident = namespace_of(&namespace)?;
        let catalog = state.supervisor.catalog();
        if !catalog.namespace_exists(&ident).await? {
            return Err(RestError::no_namespace(&ident.join(".")));
        }
        let tables = catalog.list_tables(&ident).await?;
        let children = catalog.list_namespaces(Some(&ident)).await?;
        if !tables.is_empty() || !children.is_empty() {
            return Err(RestError::new(
                StatusCode::CONFLICT,
                "NamespaceNotEmptyException",
                format!(
                    "namespace `{}` holds {} table(s) and {} namespace(s): drop them first",
                    ident.join("."),
                    tables.len(),
                    children.len()
                ),
            ));
        }
        catalog.drop_namespace(&ident).await?;
        Ok(StatusCode::NO_CONTENT)
    };
    state.once(&headers, &prefix, request, run).await
}

#[derive(Debug, Deserialize)]
struct PropertiesRequest {
    #[serde(default)]
    removals: Vec<String>,
    #[serde(default)]
    updates: HashMap<String, String>,
}

async fn update_properties(
    State(state): State<IcebergState>,
    Path((prefix, namespace)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let request = json!([
        "namespace properties",
        namespace,
        String::from_utf8_lossy(&bytes)
    ])
    .to_string();
    let run = async {
        let ident = namespace_of(&namespace)?;
        let change: PropertiesRequest = body(&bytes)?;
        if let Some(both) = change
            .removals
            .iter()
            .find(|k| change.updates.contains_key(*k))
        {
            return Err(RestError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "UnprocessableEntityException",
                format!("`{both}` is both removed and updated"),
            ));
        }
        let catalog = state.supervisor.catalog();
        super::guard::no_namespace_location(&change.updates, &change.removals)?;
        let mut properties = catalog.get_namespace(&ident).await?.properties().clone();
        let mut removed = Vec::new();
        let mut missing = Vec::new();
        for key in change.removals {
            match properties.remove(&key) {
                Some(_) => removed.push(key),
                None => missing.push(key),
            }
        }
        let updated: Vec<String> = change.updates.keys().cloned().collect();
        properties.extend(change.updates);
        catalog.update_namespace(&ident, properties).await?;
        Ok::<_, RestError>(Json(json!({
            "updated": updated,
            "removed": removed,
            "missing": missing,
        })))
    };
    state.once(&headers, &prefix, request, run).await
}
