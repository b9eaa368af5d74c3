//! The REST API over apps' key-value data, like `spin cloud kv`: read,
//! write, delete and page through one store of one app, as its tenant or the
//! admin. The data is the one the app's guests see (`okra_kv`, keyed by the
//! tenant's and app's ids), under the same limits and quotas.

use crate::auth::tenant_access;
use crate::error::{ApiError, ErrorBody};
use crate::store::Store;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, StatusCode, header};
use okra_kv::{Failure, KeyValue, Scope};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// What the key-value endpoints need.
pub(crate) struct KvState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) admin_token_hash: String,
    /// `None` where the data is not reachable (a test API with no backend).
    pub(crate) key_value: Option<KeyValue>,
}

/// The key-value endpoints.
pub(crate) fn router(state: Arc<KvState>) -> Router {
    let value_limit = state
        .key_value
        .as_ref()
        .map_or(0, |kv| kv.quota().max_value_bytes);
    Router::new()
        .route("/v1/tenants/{tenant}/apps/{app}/kv/{store}", get(list_keys))
        .route(
            "/v1/tenants/{tenant}/apps/{app}/kv/{store}/{key}",
            get(get_value)
                .put(put_value)
                .delete(delete_value)
                .layer(DefaultBodyLimit::max(value_limit.saturating_add(1))),
        )
        .with_state(state)
}

/// Keys in a page when `limit` is not given.
const DEFAULT_PAGE: usize = 100;

/// A path naming one of an app's key-value stores.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KvStorePath {
    /// Tenant name.
    #[param(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub tenant: String,
    /// App name.
    #[param(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub app: String,
    /// The store's label, as in the component's `key_value_stores`.
    #[param(pattern = r"^[ -~]{1,64}$")]
    pub store: String,
}

/// A path naming one key of an app's key-value store.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KvKeyPath {
    /// Tenant name.
    #[param(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub tenant: String,
    /// App name.
    #[param(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub app: String,
    /// The store's label, as in the component's `key_value_stores`.
    #[param(pattern = r"^[ -~]{1,64}$")]
    pub store: String,
    /// The key (percent-encoded in the URL): at most the operator's
    /// `max_kv_key_bytes` bytes of UTF-8 (1024 by default).
    #[param(min_length = 1)]
    pub key: String,
}

/// Which keys of a store to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct KvListQuery {
    /// Only keys starting with this.
    #[serde(default)]
    pub prefix: String,
    /// Only keys after this one (the `next` of the page before).
    pub after: Option<String>,
    /// Keys in the page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// One page of a store's keys, sorted.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KvKeys {
    /// The keys.
    pub keys: Vec<String>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// What a failure of the backend answers.
fn failure(f: Failure) -> ApiError {
    let message = f.to_string();
    match f {
        Failure::StoreFull | Failure::OverQuota(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "quota_exceeded", message)
        }
        Failure::Refused(_) => ApiError::bad_request("invalid_key_value", message),
        Failure::Unavailable => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "key_value_unavailable",
            message,
        ),
    }
}

impl KvState {
    /// The backend, and whose data `tenant`/`app` is, if the caller may
    /// act on the tenant and the app exists.
    async fn scope(
        &self,
        headers: &HeaderMap,
        tenant: &str,
        app: &str,
        store: &str,
    ) -> Result<(&KeyValue, Scope), ApiError> {
        let record = tenant_access(&*self.store, &self.admin_token_hash, headers, tenant).await?;
        let app_record = record
            .apps
            .get(app)
            .ok_or_else(|| ApiError::not_found(format!("tenant {tenant:?} has no app {app:?}")))?;
        okra_kv::check_store_label(store)
            .map_err(|why| ApiError::bad_request("invalid_store", why.to_string()))?;
        let kv = self.key_value.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "key_value_unavailable",
                "this server keeps no key-value data",
            )
        })?;
        let scope = Scope {
            tenant: record.data_id().to_string(),
            app: app_record.data_id().to_string(),
        };
        Ok((kv, scope))
    }
}

type Kv = State<Arc<KvState>>;

#[utoipa::path(get, path = "/v1/tenants/{tenant}/apps/{app}/kv/{store}", tag = "key-value", params(KvStorePath, KvListQuery), responses((status = 200, body = KvKeys), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn list_keys(
    State(kv): Kv,
    headers: HeaderMap,
    Path((tenant, app, store)): Path<(String, String, String)>,
    query: Result<Query<KvListQuery>, QueryRejection>,
) -> Result<axum::Json<KvKeys>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=okra_kv::MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit is 1 to {}", okra_kv::MAX_PAGE),
        ));
    }
    let (backend, scope) = kv.scope(&headers, &tenant, &app, &store).await?;
    let page = backend
        .list(&scope, &store, &query.prefix, query.after.as_deref(), limit)
        .await
        .map_err(failure)?;
    Ok(axum::Json(KvKeys {
        keys: page.keys,
        next: page.next,
    }))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/apps/{app}/kv/{store}/{key}", tag = "key-value", params(KvKeyPath), responses((status = 200, description = "The value's bytes", content_type = "application/octet-stream", body = Vec<u8>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn get_value(
    State(kv): Kv,
    headers: HeaderMap,
    Path((tenant, app, store, key)): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    let (backend, scope) = kv.scope(&headers, &tenant, &app, &store).await?;
    match backend.get(&scope, &store, &key).await.map_err(failure)? {
        Some(value) => {
            Ok(([(header::CONTENT_TYPE, "application/octet-stream")], value).into_response())
        }
        None => Err(ApiError::not_found(format!(
            "store {store:?} of app {app:?} has no key {key:?}"
        ))),
    }
}

#[utoipa::path(put, path = "/v1/tenants/{tenant}/apps/{app}/kv/{store}/{key}", tag = "key-value", params(KvKeyPath), request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The value's bytes"), responses((status = 204, description = "Set"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn put_value(
    State(kv): Kv,
    headers: HeaderMap,
    Path((tenant, app, store, key)): Path<(String, String, String, String)>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let (backend, scope) = kv.scope(&headers, &tenant, &app, &store).await?;
    let limit = backend.quota().max_value_bytes;
    let value = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "value_too_large",
            format!("a value is at most {limit} bytes"),
        )
    })?;
    backend
        .set(&scope, &store, &key, &value)
        .await
        .map_err(failure)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/apps/{app}/kv/{store}/{key}", tag = "key-value", params(KvKeyPath), responses((status = 204, description = "Deleted, or was not there"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn delete_value(
    State(kv): Kv,
    headers: HeaderMap,
    Path((tenant, app, store, key)): Path<(String, String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let (backend, scope) = kv.scope(&headers, &tenant, &app, &store).await?;
    backend
        .delete(&scope, &store, &key)
        .await
        .map_err(failure)?;
    Ok(StatusCode::NO_CONTENT)
}
