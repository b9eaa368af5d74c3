//! The REST API on axum: tenants, limits, policies, app deploys
//! with versions and rollback, variables and custom domains. Every refusal is
//! a JSON `{"error":{"code","message"}}`; no record changes until a request
//! has passed every check against the record as it is when it is written.

use crate::auth::{generate_token, hash_token, token_matches};
use crate::bundle::{self, BundleLimits};
use crate::error::{ApiError, ErrorBody, ErrorDetail};
use crate::hostnames::{app_hosts, default_host, host_key, normalize_domain};
use crate::kv_api;
use crate::model::{AppRecord, OPERATOR_TENANT, TenantRecord, VersionRecord, validate_name};
use crate::openapi_schemas::{BundleBytes, PolicyBody, VariableValues};
use crate::quotas::Quotas;
use crate::store::{Rejection, Store};
use crate::validate::{BundleSummary, BundleValidator, check_tenant_policy, structural_check};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State as Extract};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tenant_config::Limits;
use utoipa::{OpenApi, ToSchema};

/// How the API behaves; every field has an operator flag.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Default hostnames are `{app}.{tenant}.{base_domain}`.
    pub base_domain: String,
    /// SHA-256 of the admin token.
    pub admin_token_hash: String,
    /// Largest upload (the compressed bundle), in bytes.
    pub max_bundle_bytes: usize,
    /// Caps on what an uploaded bundle may unpack to.
    pub bundle_limits: BundleLimits,
    /// How long the deep validation (compiling components) may take.
    pub validation_timeout: Duration,
    /// Hostnames the operator serves itself (`--app`, `--reserved-host`), as
    /// [`host_key`]s: no tenant may claim one, as a domain or a default host.
    pub reserved_hosts: BTreeSet<String>,
    /// What each tenant may keep in the store.
    pub quotas: Quotas,
    /// The operator's `[limits]`: a tenant's limits start from these, and a
    /// `PUT …/limits` that leaves a key out keeps the operator's value.
    pub default_limits: Limits,
    /// The port end users reach apps on, for the URLs a deploy answers with.
    pub public_port: u16,
    /// The store is shared by a cluster (Redis): apps that keep node-local
    /// data (SQLite databases) are refused, since every gateway would hold
    /// a different copy.
    pub shared_store: bool,
    /// Apps' key-value data, which `…/kv/…` reads and writes; `None`: those
    /// endpoints answer 503.
    pub key_value: Option<okra_kv::KeyValue>,
}

/// What a gateway reports about an app it builds, when the API runs inside one.
pub trait StatusSource: Send + Sync {
    /// The app's state on this gateway, or `None` if it knows nothing of the app.
    fn status(&self, tenant: &str, app: &str) -> Option<AppStatus>;
}

/// An app's state on the gateway that embeds the API.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppStatus {
    /// The version being served, if any.
    pub serving: Option<u64>,
    /// Why the latest version could not be built, if it could not.
    pub error: Option<String>,
    /// The version `error` is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_version: Option<u64>,
}

/// The API's shared state.
pub struct Api {
    store: Arc<dyn Store>,
    validator: Arc<dyn BundleValidator>,
    status: Option<Arc<dyn StatusSource>>,
    config: ApiConfig,
    /// Deep validations (compiles) running at once, over all tenants.
    validations: Arc<tokio::sync::Semaphore>,
    /// Each tenant's turn to validate: one runs at a time, a few wait.
    validating: TenantTurns,
}

/// Each tenant's validation turn, by tenant name; an entry lives while a
/// validation of the tenant runs or waits.
type TenantTurns = Arc<std::sync::Mutex<BTreeMap<String, TenantTurn>>>;

/// One tenant's turn: a single permit, and how many validations run or
/// wait for it.
struct TenantTurn {
    permit: Arc<tokio::sync::Semaphore>,
    users: usize,
}

/// How many validations of one tenant may wait behind the one running;
/// more are refused with 429. Each holds its unpacked bundle while it
/// waits, so the queue is short, and no wait outlasts the validation
/// timeout.
pub const VALIDATIONS_WAITING_PER_TENANT: usize = 2;

/// How many deep validations (compiles) may run at once: each may take a
/// core and a few hundred MB, on a machine that also serves requests.
pub const VALIDATIONS_AT_ONCE: usize = 2;

impl Api {
    /// The API over `store`, checking deploys with `validator`; `status` is
    /// the embedding gateway's report on each app, if there is one.
    pub fn new(
        store: Arc<dyn Store>,
        validator: Arc<dyn BundleValidator>,
        status: Option<Arc<dyn StatusSource>>,
        config: ApiConfig,
    ) -> Self {
        Api {
            store,
            validator,
            status,
            config,
            validations: Arc::new(tokio::sync::Semaphore::new(VALIDATIONS_AT_ONCE)),
            validating: Arc::default(),
        }
    }
}

/// A tenant's one validation in progress; the tenant's next one starts
/// once this is dropped (when the validation has really ended).
struct Validating {
    tenant: String,
    tenants: TenantTurns,
    /// Held once the turn has come; `None` while waiting for it.
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for Validating {
    fn drop(&mut self) {
        self.permit.take();
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(turn) = tenants.get_mut(&self.tenant) {
            turn.users -= 1;
            if turn.users == 0 {
                tenants.remove(&self.tenant);
            }
        }
    }
}

type Shared = Extract<Arc<Api>>;
type ApiResult<T> = Result<T, ApiError>;

/// The OpenAPI 3 document, generated from the handlers and their types.
#[derive(OpenApi)]
#[openapi(
    info(title = "Okra API", description = "Tenants, apps, versions, variables, domains and key-value data of an Okra gateway"),
    paths(create_tenant, list_tenants, show_tenant, delete_tenant, set_limits, set_policy, list_apps, show_app, deploy, rollback, delete_app, set_variables, list_variables, unset_variable, add_domain, remove_domain, kv_api::list_keys, kv_api::get_value, kv_api::put_value, kv_api::delete_value),
    components(schemas(ErrorBody, ErrorDetail, AppStatus, Limits, kv_api::KvKeys)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// Declares the bearer-token scheme every endpoint uses.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

async fn openapi() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}

/// The router for every `/v1` endpoint.
pub fn router(api: Arc<Api>) -> Router {
    let bundle_limit = api.config.max_bundle_bytes;
    let key_value = Arc::new(kv_api::KvState {
        store: api.store.clone(),
        admin_token_hash: api.config.admin_token_hash.clone(),
        key_value: api.config.key_value.clone(),
    });
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/tenants", post(create_tenant).get(list_tenants))
        .route(
            "/v1/tenants/{tenant}",
            get(show_tenant).delete(delete_tenant),
        )
        .route("/v1/tenants/{tenant}/limits", put(set_limits))
        .route("/v1/tenants/{tenant}/policy", put(set_policy))
        .route("/v1/tenants/{tenant}/apps", get(list_apps))
        .route(
            "/v1/tenants/{tenant}/apps/{app}",
            put(deploy)
                .get(show_app)
                .delete(delete_app)
                .layer(DefaultBodyLimit::max(bundle_limit.saturating_add(1))),
        )
        .route("/v1/tenants/{tenant}/apps/{app}/rollback", post(rollback))
        .route(
            "/v1/tenants/{tenant}/apps/{app}/variables",
            put(set_variables).get(list_variables),
        )
        .route(
            "/v1/tenants/{tenant}/apps/{app}/variables/{name}",
            axum::routing::delete(unset_variable),
        )
        .route(
            "/v1/tenants/{tenant}/apps/{app}/domains/{domain}",
            put(add_domain).delete(remove_domain),
        )
        .fallback(|| async { ApiError::not_found("no such API endpoint; see /v1/openapi.json") })
        .with_state(api)
        .merge(kv_api::router(key_value))
}

// ---- auth ----

impl Api {
    /// Admin only.
    fn admin(&self, headers: &HeaderMap) -> ApiResult<()> {
        let token = crate::auth::bearer(headers)?;
        if token_matches(token, &self.config.admin_token_hash) {
            Ok(())
        } else {
            Err(ApiError::forbidden("this needs the admin token"))
        }
    }

    /// Checks that the caller is the admin or `tenant` with its own token,
    /// and returns the tenant's record (one read serves both). A token of
    /// another tenant, or for a tenant that does not exist, is refused the
    /// same way, so tokens reveal nothing about other tenants; only the
    /// admin learns that a tenant does not exist.
    async fn tenant_for(&self, headers: &HeaderMap, tenant: &str) -> ApiResult<TenantRecord> {
        crate::auth::tenant_access(&*self.store, &self.config.admin_token_hash, headers, tenant)
            .await
    }

    /// Applies `change` to tenant `tenant`'s record, which must exist, and
    /// returns the record as written.
    async fn change_tenant(
        &self,
        tenant: &str,
        mut change: impl FnMut(&mut TenantRecord) -> Result<(), Rejection> + Send,
    ) -> ApiResult<TenantRecord> {
        let written = self
            .store
            .update_tenant(tenant, &mut |record: &mut Option<TenantRecord>| {
                let record = record
                    .as_mut()
                    .ok_or_else(|| Rejection::NotFound(format!("no tenant {tenant:?}")))?;
                change(record)
            })
            .await?;
        written.ok_or_else(|| ApiError::internal("the tenant vanished while it was changed"))
    }

    /// Refuses a hostname the operator has reserved.
    fn check_not_reserved(&self, host: &str) -> ApiResult<()> {
        if self.config.reserved_hosts.contains(&host_key(host)) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "host_reserved",
                format!("the hostname {host:?} is reserved by the operator of this gateway"),
            ));
        }
        Ok(())
    }

    fn hosts(&self, tenant: &str, app: &AppRecord) -> Vec<String> {
        app_hosts(tenant, app, &self.config.base_domain)
    }

    /// Every public route on every host of the app, as a URL.
    fn urls(&self, tenant: &str, app: &AppRecord, routes: &[String]) -> Vec<String> {
        let origin = |host: &str| match self.config.public_port {
            80 => format!("http://{host}"),
            443 => format!("https://{host}"),
            port => format!("http://{host}:{port}"),
        };
        // A route declared twice (one shadowing the other) is one URL.
        let mut paths: Vec<String> = routes
            .iter()
            .map(|route| tenant_config::routes::RoutePattern::parse(route).normalized())
            .collect();
        let mut seen = BTreeSet::new();
        paths.retain(|path| seen.insert(path.clone()));
        let mut urls = Vec::new();
        for host in self.hosts(tenant, app) {
            let origin = origin(&host);
            urls.extend(paths.iter().map(|path| format!("{origin}{path}")));
        }
        urls
    }

    fn app_view(&self, tenant: &str, app: &AppRecord) -> AppView {
        // With a gateway, always a status: `serving: null` until it has
        // built the app (so a client waiting for a deploy keeps waiting).
        let status = self
            .status
            .as_ref()
            .map(|s| s.status(tenant, &app.name).unwrap_or_default());
        AppView {
            name: app.name.clone(),
            current: app.current,
            hosts: if app.current.is_some() {
                self.hosts(tenant, app)
            } else {
                Vec::new()
            },
            domains: app.domains.iter().cloned().collect(),
            variables: app.variables.keys().cloned().collect(),
            versions: app
                .versions
                .values()
                .map(|v| VersionView {
                    version: v.version,
                    created_unix: v.created_unix,
                    routes: v.routes.clone(),
                })
                .collect(),
            status,
        }
    }
}

impl Api {
    /// Everything a version must pass to be served with `variables`: the
    /// structural checks, then the validator (compiling the components)
    /// within the configured time.
    async fn check_app(
        &self,
        tenant: &TenantRecord,
        files: &bundle::BundleFiles,
        variables: &BTreeMap<String, String>,
    ) -> ApiResult<BundleSummary> {
        let (mut busy, turn) = {
            let mut tenants = self.validating.lock().unwrap_or_else(|e| e.into_inner());
            let turn = tenants
                .entry(tenant.name.clone())
                .or_insert_with(|| TenantTurn {
                    permit: Arc::new(tokio::sync::Semaphore::new(1)),
                    users: 0,
                });
            // Besides this one: the one running and those waiting.
            if turn.users > VALIDATIONS_WAITING_PER_TENANT {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "validation_busy",
                    format!(
                        "{VALIDATIONS_WAITING_PER_TENANT} deploys or variables changes of this tenant are already waiting to be checked; retry when they are done"
                    ),
                ));
            }
            turn.users += 1;
            let guard = Validating {
                tenant: tenant.name.clone(),
                tenants: self.validating.clone(),
                permit: None,
            };
            (guard, turn.permit.clone())
        };
        let timeout = self.config.validation_timeout;
        let waited_too_long = || {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "validation_busy",
                format!("no check of this deploy could start within {timeout:?}; retry later"),
            )
        };
        busy.permit = Some(
            tokio::time::timeout(timeout, turn.acquire_owned())
                .await
                .map_err(|_| waited_too_long())?
                .map_err(|e| ApiError::internal(format!("validation turn: {e}")))?,
        );
        let dir = tempfile::tempdir().map_err(|e| ApiError::internal(format!("temp dir: {e}")))?;
        bundle::write_files(files, dir.path())
            .map_err(|e| ApiError::internal(format!("unpacking: {e}")))?;
        let summary = structural_check(dir.path(), variables)?;
        if self.config.shared_store
            && let Some(component) = summary.sqlite_components.first()
        {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "node_local_data",
                format!(
                    "component `{component}` lists sqlite_databases, but SQLite databases are files on one gateway and this cluster shares its store in Redis: each gateway would answer from a different database. Use an outbound database (PostgreSQL, Redis) instead"
                ),
            ));
        }
        let manifest = dir.path().join(bundle::MANIFEST);
        let slot = tokio::time::timeout(timeout, self.validations.clone().acquire_owned())
            .await
            .map_err(|_| waited_too_long())?
            .map_err(|e| ApiError::internal(format!("validation slots: {e}")))?;
        // The compile runs on its own task, holding the slot, the tenant's
        // turn and the files until it ends, even past the timeout.
        let (validator, tenant, variables) =
            (self.validator.clone(), tenant.clone(), variables.clone());
        let validation = tokio::spawn(async move {
            let result = validator.validate(&tenant, &manifest, &variables).await;
            drop((slot, busy, dir));
            result
        });
        match tokio::time::timeout(timeout, validation).await {
            Ok(Ok(Ok(()))) => Ok(summary),
            Ok(Err(e)) => Err(ApiError::internal(format!("the validation failed: {e}"))),
            Ok(Ok(Err(message))) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_component",
                message,
            )),
            Err(_) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_timeout",
                format!(
                    "compiling the app took longer than {timeout:?}; make its components smaller"
                ),
            )),
        }
    }

    /// The files of a stored version.
    async fn version_files(&self, version: &VersionRecord) -> ApiResult<bundle::BundleFiles> {
        let mut files = bundle::BundleFiles::new();
        for (path, blob) in &version.files {
            files.insert(path.clone(), self.store.get_blob(blob).await?);
        }
        Ok(files)
    }
}

/// What a check of apps depended on: the tenant's policy and limits, and
/// for each app checked, the version it serves and its variables. A change
/// is written only if none of it changed while the check ran; otherwise it
/// is refused (409, to retry) instead of being written unchecked.
#[derive(PartialEq)]
struct CheckedAgainst {
    policy: Option<String>,
    limits: Option<Limits>,
    apps: Vec<(String, Option<u64>, BTreeMap<String, String>)>,
    with_current: bool,
    /// False for a check of a new policy, which replaces whatever is there.
    with_policy: bool,
}

impl CheckedAgainst {
    /// `apps` as `record` has them; `with_current` also compares the
    /// version each serves (not for a deploy, which adds a version).
    fn of(record: &TenantRecord, apps: &[&str], with_current: bool) -> Self {
        CheckedAgainst {
            policy: record.policy.clone(),
            limits: record.limits.clone(),
            apps: apps
                .iter()
                .map(|name| {
                    let app = record.apps.get(*name);
                    (
                        name.to_string(),
                        app.and_then(|a| a.current).filter(|_| with_current),
                        app.map(|a| a.variables.clone()).unwrap_or_default(),
                    )
                })
                .collect(),
            with_current,
            with_policy: true,
        }
    }

    /// Refuses the change when `record` is no longer what was checked.
    fn still_holds(&self, record: &TenantRecord, what: &str) -> Result<(), Rejection> {
        let names: Vec<&str> = self.apps.iter().map(|(name, ..)| name.as_str()).collect();
        let mut now = CheckedAgainst::of(record, &names, self.with_current);
        if !self.with_policy {
            now.policy = None;
        }
        now.with_policy = self.with_policy;
        // A new policy was checked against every app: an app added since
        // was not.
        let same_apps = self.with_policy || record.apps.keys().map(String::as_str).eq(names);
        if same_apps && now == *self {
            Ok(())
        } else {
            Err(Rejection::Conflict(format!(
                "the tenant's policy, limits or apps changed while {what} was being checked; retry it"
            )))
        }
    }
}

fn app_ref<'a>(record: &'a TenantRecord, app: &str) -> ApiResult<&'a AppRecord> {
    record
        .apps
        .get(app)
        .ok_or_else(|| ApiError::not_found(format!("tenant {:?} has no app {app:?}", record.name)))
}

fn app_mut<'a>(record: &'a mut TenantRecord, app: &str) -> Result<&'a mut AppRecord, Rejection> {
    let tenant = record.name.clone();
    record
        .apps
        .get_mut(app)
        .ok_or_else(|| Rejection::NotFound(format!("tenant {tenant:?} has no app {app:?}")))
}

/// Makes `version` the app's newest and current one (creating the app if
/// need be), drops versions past `versions_kept`, and checks every quota it
/// touches; returns the version's number and the app as it now is.
fn add_version(
    tenant: &mut TenantRecord,
    app: &str,
    mut version: VersionRecord,
    quotas: &Quotas,
) -> Result<(u64, AppRecord), Rejection> {
    let record = app_or_new(tenant, app, quotas)?;
    let number = record.next_version.max(1);
    record.next_version = number + 1;
    version.version = number;
    record.versions.insert(number, version);
    record.current = Some(number);
    quotas.prune_versions(record);
    let record = record.clone();
    quotas.check_stored(tenant)?;
    Ok((number, record))
}

/// The app's record, created (with no version) if the tenant has none yet
/// and its quota of apps allows one more.
fn app_or_new<'a>(
    record: &'a mut TenantRecord,
    app: &str,
    quotas: &Quotas,
) -> Result<&'a mut AppRecord, Rejection> {
    if !record.apps.contains_key(app) {
        record.apps.insert(
            app.to_string(),
            AppRecord {
                name: app.to_string(),
                id: crate::model::new_id(),
                ..AppRecord::default()
            },
        );
        quotas.check_apps(record)?;
    }
    app_mut(record, app)
}

fn json<T: DeserializeOwned>(body: &Bytes, what: &str) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("{what}: {e}")))
}

fn names(tenant: &str, app: Option<&str>) -> ApiResult<()> {
    validate_name("tenant", tenant).map_err(|m| ApiError::bad_request("invalid_name", m))?;
    if let Some(app) = app {
        validate_name("app", app).map_err(|m| ApiError::bad_request("invalid_name", m))?;
    }
    Ok(())
}

// ---- views ----

/// A path naming a tenant (for the OpenAPI document).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TenantPath {
    /// Tenant name: a DNS label of lowercase letters, digits and `-`.
    #[param(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub tenant: String,
}

/// A path naming an app of a tenant.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AppPath {
    /// Tenant name: a DNS label of lowercase letters, digits and `-`.
    #[param(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub tenant: String,
    /// App name: a DNS label of lowercase letters, digits and `-`.
    #[param(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub app: String,
}

/// A path naming a custom domain of an app.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DomainPath {
    /// Tenant name: a DNS label of lowercase letters, digits and `-`.
    #[param(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub tenant: String,
    /// App name: a DNS label of lowercase letters, digits and `-`.
    #[param(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub app: String,
    /// A fully qualified hostname, not an IP address, with no port or
    /// wildcard, and not under the gateway's base domain. Unicode names are
    /// accepted too (compared after UTS #46 normalisation); the pattern
    /// gives their ASCII form.
    #[param(
        min_length = 3,
        max_length = 253,
        pattern = r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
    )]
    pub domain: String,
}

/// The body of a request to create a tenant.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// A DNS label of lowercase letters, digits and `-`.
    #[schema(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub name: String,
}

/// A tenant just created, with its bearer token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedTenant {
    /// The tenant's name, as requested.
    pub name: String,
    /// Shown only once: the store keeps only its hash.
    pub token: String,
}

/// A tenant as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantView {
    /// The tenant's name, unique among tenants.
    pub name: String,
    /// The names of the tenant's apps, deployed or not, sorted.
    pub apps: Vec<String>,
    /// The tenant's own limits, if set with `PUT …/limits`; `null` means the
    /// operator's defaults apply.
    pub limits: Option<Limits>,
    /// Whether the tenant has a tenant-wide outbound policy (`PUT …/policy`).
    pub has_policy: bool,
}

/// An app as the API shows it, with the versions it keeps.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AppView {
    /// The app's name, unique within its tenant.
    pub name: String,
    /// The version being served; `null` when the app is not deployed.
    pub current: Option<u64>,
    /// The hostnames the app answers on: its default one, then its custom
    /// domains. Empty when the app is not deployed.
    pub hosts: Vec<String>,
    /// The app's custom domains, normalised (lowercase ASCII).
    pub domains: Vec<String>,
    /// Names only: values are write-only.
    pub variables: Vec<String>,
    /// The versions kept (the newest few, and the one served), oldest first.
    pub versions: Vec<VersionView>,
    /// What the embedding gateway serves, when the API runs in one (absent
    /// in the `control-plane` binary, which cannot tell).
    pub status: Option<AppStatus>,
}

/// One deployed version of an app.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionView {
    /// The version's number; each deploy of the app gets the next one.
    pub version: u64,
    /// When the version was deployed, in seconds since the Unix epoch.
    pub created_unix: u64,
    /// The public routes its manifest declares, as written there.
    pub routes: Vec<String>,
}

/// The version a deploy or rollback made current.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Deployed {
    /// The number of the version now being served.
    pub version: u64,
    /// The hostnames the app answers on: its default one, then its custom domains.
    pub hosts: Vec<String>,
    /// The public routes the version's manifest declares, as written there.
    pub routes: Vec<String>,
    /// Where each public route is reached on each host, e.g.
    /// `http://web.acme.example.com:8080/api/...` (a route ending in `/...`
    /// takes any path under it); `https://` when apps are reached on 443.
    #[serde(default)]
    pub urls: Vec<String>,
    /// What the deployed manifest asks for that Okra accepts but does not
    /// serve (other trigger types, shadowed routes); empty on a rollback.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// The body of a rollback request.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// The version to serve again; it must be one the app still keeps.
    #[serde(deserialize_with = "tenant_config::whole::number")]
    pub version: u64,
}

// ---- tenants ----

#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", request_body = NewTenant, responses((status = 201, body = CreatedTenant), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn create_tenant(
    Extract(api): Shared,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    api.admin(&headers)?;
    let NewTenant { name } = json(&body, "body {\"name\"}")?;
    names(&name, None)?;
    if name == OPERATOR_TENANT {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!("tenant name {name:?} is reserved for the operator's own apps"),
        ));
    }
    let token =
        generate_token("okt").map_err(|e| ApiError::internal(format!("no randomness: {e}")))?;
    let token_hash = hash_token(&token);
    api.store
        .update_tenant(&name, &mut |record: &mut Option<TenantRecord>| {
            if record.is_some() {
                return Err(Rejection::Conflict(format!(
                    "tenant {name:?} already exists"
                )));
            }
            *record = Some(TenantRecord {
                name: name.clone(),
                token_hash: token_hash.clone(),
                id: crate::model::new_id(),
                ..TenantRecord::default()
            });
            Ok(())
        })
        .await?;
    tracing::info!(tenant = %name, "tenant created");
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedTenant { name, token }),
    )
        .into_response())
}

fn tenant_view(tenant: &TenantRecord) -> TenantView {
    TenantView {
        name: tenant.name.clone(),
        apps: tenant.apps.keys().cloned().collect(),
        limits: tenant.limits.clone(),
        has_policy: tenant.policy.is_some(),
    }
}

#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", responses((status = 200, body = Vec<TenantView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn list_tenants(
    Extract(api): Shared,
    headers: HeaderMap,
) -> ApiResult<axum::Json<Vec<TenantView>>> {
    api.admin(&headers)?;
    let state = api.store.load().await?;
    Ok(axum::Json(
        state.tenants.values().map(tenant_view).collect(),
    ))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}", tag = "tenants", params(TenantPath), responses((status = 200, body = TenantView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn show_tenant(
    Extract(api): Shared,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> ApiResult<axum::Json<TenantView>> {
    let record = api.tenant_for(&headers, &tenant).await?;
    Ok(axum::Json(tenant_view(&record)))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}", tag = "tenants", params(TenantPath), responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn delete_tenant(
    Extract(api): Shared,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> ApiResult<StatusCode> {
    api.admin(&headers)?;
    let mut data_id = None;
    api.store
        .update_tenant(&tenant, &mut |record: &mut Option<TenantRecord>| {
            // Its domains are released with it.
            let gone = record
                .take()
                .ok_or_else(|| Rejection::NotFound(format!("no tenant {tenant:?}")))?;
            data_id = Some(gone.data_id().to_string());
            Ok(())
        })
        .await?;
    tracing::info!(%tenant, "tenant deleted");
    if let (Some(kv), Some(id)) = (&api.config.key_value, data_id)
        && let Err(e) = kv.forget_tenant(&id).await
    {
        tracing::warn!(%tenant, "the deleted tenant's key-value data stays: {e}");
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/v1/tenants/{tenant}/limits", tag = "tenants", params(TenantPath), request_body = Limits, responses((status = 200, body = Limits), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn set_limits(
    Extract(api): Shared,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    body: Bytes,
) -> ApiResult<axum::Json<Limits>> {
    api.admin(&headers)?;
    // Parsed once as limits (unknown keys and wrong types are refused with
    // their names), then laid over the operator's defaults key by key.
    json::<Limits>(&body, "limits")?;
    let given: serde_json::Map<String, serde_json::Value> = json(&body, "limits")?;
    let mut merged = match serde_json::to_value(&api.config.default_limits) {
        Ok(serde_json::Value::Object(defaults)) => defaults,
        _ => serde_json::Map::new(),
    };
    merged.extend(given);
    let limits: Limits = serde_json::from_value(serde_json::Value::Object(merged))
        .map_err(|e| ApiError::bad_request("invalid_json", format!("limits: {e}")))?;
    limits
        .check()
        .map_err(|why| ApiError::bad_request("invalid_limits", why))?;
    api.change_tenant(&tenant, |record| {
        record.limits = Some(limits.clone());
        Ok(())
    })
    .await?;
    Ok(axum::Json(limits))
}

#[utoipa::path(put, path = "/v1/tenants/{tenant}/policy", tag = "tenants", params(TenantPath), request_body(content = PolicyBody, description = "okra.json policy document"), responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn set_policy(
    Extract(api): Shared,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let record = api.tenant_for(&headers, &tenant).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("invalid_policy", "the policy must be UTF-8 JSON"))?
        .to_string();
    api.config.quotas.check_policy(&text)?;
    check_tenant_policy(&tenant, &text)?;
    // Every app being served must still load under it (its injected
    // headers' variables, for one), or nothing changes.
    let candidate = TenantRecord {
        policy: Some(text.clone()),
        ..record.clone()
    };
    let served: Vec<&str> = record.apps.keys().map(String::as_str).collect();
    let mut checked = CheckedAgainst::of(&record, &served, true);
    // Another policy written meanwhile is simply replaced.
    checked.policy = None;
    checked.with_policy = false;
    for app in record.apps.values() {
        if let Some(current) = app.current_version() {
            let files = api.version_files(current).await?;
            api.check_app(&candidate, &files, &app.variables)
                .await
                .map_err(|e| match e.status {
                    StatusCode::UNPROCESSABLE_ENTITY => ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_policy",
                        format!(
                            "app {:?} would not load under this policy: {}",
                            app.name, e.message
                        ),
                    ),
                    _ => e,
                })?;
        }
    }
    api.change_tenant(&tenant, |record| {
        checked.still_holds(record, "this policy")?;
        record.policy = Some(text.clone());
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- apps ----

#[utoipa::path(get, path = "/v1/tenants/{tenant}/apps", tag = "apps", params(TenantPath), responses((status = 200, body = Vec<AppView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn list_apps(
    Extract(api): Shared,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> ApiResult<axum::Json<Vec<AppView>>> {
    let record = api.tenant_for(&headers, &tenant).await?;
    Ok(axum::Json(
        record
            .apps
            .values()
            .map(|a| api.app_view(&tenant, a))
            .collect(),
    ))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/apps/{app}", tag = "apps", params(AppPath), responses((status = 200, body = AppView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn show_app(
    Extract(api): Shared,
    headers: HeaderMap,
    Path((tenant, app)): Path<(String, String)>,
) -> ApiResult<axum::Json<AppView>> {
    let record = api.tenant_for(&headers, &tenant).await?;
    Ok(axum::Json(api.app_view(&tenant, app_ref(&record, &app)?)))
}

#[utoipa::path(put, path = "/v1/tenants/{tenant}/apps/{app}", tag = "apps", params(AppPath), request_body(content = BundleBytes, content_type = "application/octet-stream", description = ".tar.gz of the app directory"), responses((status = 201, body = Deployed), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn deploy(
    Extract(api): Shared,
    headers: HeaderMap,
    Path((tenant, app)): Path<(String, String)>,
    body: Body,
) -> ApiResult<Response> {
    let tenant_record = api.tenant_for(&headers, &tenant).await?;
    names(&tenant, Some(&app))?;
    api.check_not_reserved(&default_host(&app, &tenant, &api.config.base_domain))?;
    let limit = api.config.max_bundle_bytes;
    let archive = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "bundle_too_large",
            format!("the bundle is larger than {limit} bytes compressed"),
        )
    })?;
    let limits = api.config.bundle_limits;
    let files = tokio::task::spawn_blocking(move || bundle::unpack(&archive, limits))
        .await
        .map_err(|e| ApiError::internal(format!("unpacking failed: {e}")))?
        .map_err(|e| match e {
            bundle::BundleError::TooLarge { .. } | bundle::BundleError::TooManyFiles { .. } => {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "bundle_too_large",
                    e.to_string(),
                )
            }
            _ => ApiError::bad_request("invalid_bundle", e.to_string()),
        })?;

    let variables = tenant_record
        .apps
        .get(&app)
        .map(|a| a.variables.clone())
        .unwrap_or_default();
    let quotas = &api.config.quotas;
    let bytes: u64 = files.values().map(|f| f.len() as u64).sum();
    let created_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let new_version = |files: BTreeMap<String, String>, routes: Vec<String>| VersionRecord {
        version: 0,
        files,
        created_unix,
        routes,
        bytes,
    };
    // The quotas first, on what the store holds now, so a deploy past one
    // stores no blobs at all.
    let placeholders = files.keys().map(|k| (k.clone(), String::new())).collect();
    add_version(
        &mut tenant_record.clone(),
        &app,
        new_version(placeholders, Vec::new()),
        quotas,
    )?;
    let checked = CheckedAgainst::of(&tenant_record, &[&app], false);
    let summary = api.check_app(&tenant_record, &files, &variables).await?;

    let mut stored = BTreeMap::new();
    for (path, bytes) in &files {
        stored.insert(path.clone(), api.store.put_blob(bytes).await?);
    }
    let mut deployed = None;
    api.change_tenant(&tenant, |tenant_record| {
        checked.still_holds(tenant_record, "this deploy")?;
        let version = new_version(stored.clone(), summary.routes.clone());
        deployed = Some(add_version(tenant_record, &app, version, quotas)?);
        Ok(())
    })
    .await?;
    let (version, record) = deployed.ok_or_else(|| ApiError::internal("deploy lost"))?;
    tracing::info!(%tenant, %app, version, warnings = summary.warnings.len(), "app deployed");
    let reply = Deployed {
        version,
        urls: api.urls(&tenant, &record, &summary.routes),
        hosts: api.hosts(&tenant, &record),
        routes: summary.routes,
        warnings: summary.warnings,
    };
    Ok((StatusCode::CREATED, axum::Json(reply)).into_response())
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/apps/{app}/rollback", tag = "apps", params(AppPath), request_body = Rollback, responses((status = 200, body = Deployed), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn rollback(
    Extract(api): Shared,
    headers: HeaderMap,
    Path((tenant, app)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<axum::Json<Deployed>> {
    api.tenant_for(&headers, &tenant).await?;
    let Rollback { version } = json(&body, "body {\"version\"}")?;
    let kept = api.config.quotas.versions_kept;
    let mut done = None;
    api.change_tenant(&tenant, |tenant_record| {
        let record = app_mut(tenant_record, &app)?;
        let Some(target) = record.versions.get(&version) else {
            let known: Vec<u64> = record.versions.keys().copied().collect();
            return Err(Rejection::NotFound(format!(
                "app {app:?} has no version {version}; it has {known:?} (the newest {kept} are kept)"
            )));
        };
        let routes = target.routes.clone();
        record.current = Some(version);
        done = Some((record.clone(), routes));
        Ok(())
    })
    .await?;
    let (record, routes) = done.ok_or_else(|| ApiError::internal("rollback lost"))?;
    tracing::info!(%tenant, %app, version, "app rolled back");
    Ok(axum::Json(Deployed {
        version,
        urls: api.urls(&tenant, &record, &routes),
        hosts: api.hosts(&tenant, &record),
        routes,
        warnings: Vec::new(),
    }))
}

/// How `DELETE .../apps/{app}` deletes.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteApp {
    /// Remove the app altogether (its versions and variables too, so it no
    /// longer counts towards `max_apps`), not just stop serving it.
    #[serde(default)]
    pub purge: bool,
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/apps/{app}", tag = "apps", params(AppPath, DeleteApp), responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn delete_app(
    Extract(api): Shared,
    headers: HeaderMap,
    Path((tenant, app)): Path<(String, String)>,
    query: Result<Query<DeleteApp>, QueryRejection>,
) -> ApiResult<StatusCode> {
    api.tenant_for(&headers, &tenant).await?;
    let Query(DeleteApp { purge }) =
        query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let mut purged = None;
    api.change_tenant(&tenant, |tenant_record| {
        if purge {
            // Its domains go with it.
            let gone = tenant_record.apps.remove(&app).ok_or_else(|| {
                Rejection::NotFound(format!("tenant {tenant:?} has no app {app:?}"))
            })?;
            purged = Some(okra_kv::Scope {
                tenant: tenant_record.data_id().to_string(),
                app: gone.data_id().to_string(),
            });
            return Ok(());
        }
        let record = app_mut(tenant_record, &app)?;
        if record.current.is_none() {
            return Err(Rejection::NotFound(format!(
                "app {app:?} is not deployed; to remove what it keeps (variables, old versions) too, delete it with ?purge=true (okra apps delete --purge)"
            )));
        }
        // Versions stay (numbers are never reused; rollback redeploys);
        // the domains are released.
        record.current = None;
        record.domains.clear();
        Ok(())
    })
    .await?;
    tracing::info!(%tenant, %app, purge, "app deleted");
    // A purged app's key-value data would be unreachable, yet counted.
    if let (Some(kv), Some(scope)) = (&api.config.key_value, purged)
        && let Err(e) = kv.forget_app(&scope).await
    {
        tracing::warn!(%tenant, %app, "the purged app's key-value data stays: {e}");
    }
    Ok(StatusCode::NO_CONTENT)
}

// ---- variables and domains ----

/// The names of an app's variables; their values are never shown.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VariableNames {
    /// Every variable set on the app, sorted by name.
    pub names: Vec<String>,
    /// Of the names just set, those the version served does not declare:
    /// they do nothing until a version that declares them is deployed.
    /// Left out when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undeclared: Vec<String>,
}

#[utoipa::path(put, path = "/v1/tenants/{tenant}/apps/{app}/variables", tag = "apps", params(AppPath), request_body(content = VariableValues, description = "variable name to value"), responses((status = 200, body = VariableNames), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn set_variables(
    Extract(api): Shared,
    headers: HeaderMap,
    Path((tenant, app)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<axum::Json<VariableNames>> {
    let tenant_record = api.tenant_for(&headers, &tenant).await?;
    names(&tenant, Some(&app))?;
    let values: BTreeMap<String, String> = json(&body, "body {\"name\":\"value\"}")?;
    for name in values.keys() {
        tenant_config::variables::validate_variable_name(name).map_err(|why| {
            ApiError::bad_request(
                "invalid_variable",
                format!("{name:?} is not a variable name: {why}"),
            )
        })?;
    }
    let checked = CheckedAgainst::of(&tenant_record, &[&app], true);
    let mut undeclared = Vec::new();
    // The version being served must still load with the new values.
    if let Some(record) = tenant_record.apps.get(&app) {
        let mut merged = record.clone();
        merged
            .variables
            .extend(values.iter().map(|(k, v)| (k.clone(), v.clone())));
        api.config.quotas.check_variables(&merged)?;
        if let Some(current) = record.current_version() {
            let files = api.version_files(current).await?;
            let summary = api
                .check_app(&tenant_record, &files, &merged.variables)
                .await?;
            undeclared = values
                .keys()
                .filter(|name| !summary.variables.contains(name))
                .cloned()
                .collect();
        }
    }
    let quotas = &api.config.quotas;
    let mut result = Vec::new();
    api.change_tenant(&tenant, |tenant_record| {
        checked.still_holds(tenant_record, "this variables change")?;
        // Variables may be set before the first deploy (required ones must be).
        let record = app_or_new(tenant_record, &app, quotas)?;
        record
            .variables
            .extend(values.iter().map(|(k, v)| (k.clone(), v.clone())));
        quotas.check_variables(record)?;
        result = record.variables.keys().cloned().collect();
        Ok(())
    })
    .await?;
    Ok(axum::Json(VariableNames {
        names: result,
        undeclared,
    }))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/apps/{app}/variables", tag = "apps", params(AppPath), responses((status = 200, body = VariableNames), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn list_variables(
    Extract(api): Shared,
    headers: HeaderMap,
    Path((tenant, app)): Path<(String, String)>,
) -> ApiResult<axum::Json<VariableNames>> {
    let record = api.tenant_for(&headers, &tenant).await?;
    Ok(axum::Json(VariableNames {
        names: app_ref(&record, &app)?.variables.keys().cloned().collect(),
        undeclared: Vec::new(),
    }))
}

/// A path naming one of an app's variables.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct VariablePath {
    /// Tenant name: a DNS label of lowercase letters, digits and `-`.
    #[param(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub tenant: String,
    /// App name: a DNS label of lowercase letters, digits and `-`.
    #[param(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub app: String,
    /// Variable name: lowercase letters, digits and single underscores,
    /// starting with a letter and ending with a letter or digit.
    #[param(pattern = r"^[a-z]([a-z0-9]|_[a-z0-9])*$")]
    pub name: String,
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/apps/{app}/variables/{name}", tag = "apps", params(VariablePath), responses((status = 200, body = VariableNames), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn unset_variable(
    Extract(api): Shared,
    headers: HeaderMap,
    Path((tenant, app, name)): Path<(String, String, String)>,
) -> ApiResult<axum::Json<VariableNames>> {
    let tenant_record = api.tenant_for(&headers, &tenant).await?;
    names(&tenant, Some(&app))?;
    tenant_config::variables::validate_variable_name(&name).map_err(|why| {
        ApiError::bad_request(
            "invalid_variable",
            format!("{name:?} is not a variable name: {why}"),
        )
    })?;
    let record = app_ref(&tenant_record, &app)?;
    if !record.variables.contains_key(&name) {
        return Err(ApiError::not_found(format!(
            "app {app:?} has no value for variable {name:?}"
        )));
    }
    let checked = CheckedAgainst::of(&tenant_record, &[&app], true);
    // The version being served must still load without the value (it may
    // be required, with no default).
    if let Some(current) = record.current_version() {
        let mut remaining = record.variables.clone();
        remaining.remove(&name);
        let files = api.version_files(current).await?;
        api.check_app(&tenant_record, &files, &remaining).await?;
    }
    let mut result = Vec::new();
    api.change_tenant(&tenant, |tenant_record| {
        checked.still_holds(tenant_record, "this variables change")?;
        let record = app_mut(tenant_record, &app)?;
        record.variables.remove(&name);
        result = record.variables.keys().cloned().collect();
        Ok(())
    })
    .await?;
    Ok(axum::Json(VariableNames {
        names: result,
        undeclared: Vec::new(),
    }))
}

#[utoipa::path(put, path = "/v1/tenants/{tenant}/apps/{app}/domains/{domain}", tag = "domains", params(DomainPath), responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn add_domain(
    Extract(api): Shared,
    headers: HeaderMap,
    Path((tenant, app, domain)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    api.tenant_for(&headers, &tenant).await?;
    let domain = normalize_domain(&domain, &api.config.base_domain)
        .map_err(|m| ApiError::bad_request("invalid_domain", m))?;
    api.check_not_reserved(&domain)?;
    let quotas = &api.config.quotas;
    // Another tenant's hold on the domain is refused by the store itself.
    api.change_tenant(&tenant, |tenant_record| {
        if tenant_record
            .apps
            .values()
            .any(|other| other.name != app && other.domains.contains(&domain))
        {
            return Err(Rejection::Conflict(format!(
                "domain {domain:?} is already taken"
            )));
        }
        app_mut(tenant_record, &app)?.domains.insert(domain.clone());
        quotas.check_domains(tenant_record)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/apps/{app}/domains/{domain}", tag = "domains", params(DomainPath), responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn remove_domain(
    Extract(api): Shared,
    headers: HeaderMap,
    Path((tenant, app, domain)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    api.tenant_for(&headers, &tenant).await?;
    let domain = normalize_domain(&domain, &api.config.base_domain)
        .map_err(|m| ApiError::bad_request("invalid_domain", m))?;
    api.change_tenant(&tenant, |tenant_record| {
        if app_mut(tenant_record, &app)?.domains.remove(&domain) {
            Ok(())
        } else {
            Err(Rejection::NotFound(format!(
                "app {app:?} has no domain {domain:?}"
            )))
        }
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::bearer;

    #[test]
    fn a_missing_token_and_a_malformed_one_are_told_apart() {
        let mut headers = HeaderMap::new();
        let missing = bearer(&headers).unwrap_err();
        assert!(
            missing.message.starts_with("no token"),
            "{}",
            missing.message
        );
        assert!(
            missing.message.contains("OKRA_TOKEN"),
            "{}",
            missing.message
        );
        headers.insert(http::header::AUTHORIZATION, "Basic eDp5".parse().unwrap());
        let malformed = bearer(&headers).unwrap_err();
        assert!(
            malformed.message.contains("holds no bearer token"),
            "{}",
            malformed.message
        );
        headers.insert(http::header::AUTHORIZATION, "Bearer okt_1".parse().unwrap());
        assert_eq!(bearer(&headers).ok(), Some("okt_1"));
    }

    /// A validator that holds every check until it is let go.
    struct Held(Arc<tokio::sync::Semaphore>);

    #[async_trait::async_trait]
    impl BundleValidator for Held {
        async fn validate(
            &self,
            _: &TenantRecord,
            _: &std::path::Path,
            _: &BTreeMap<String, String>,
        ) -> Result<(), String> {
            let _ = self.0.acquire().await.map_err(|e| e.to_string())?;
            Ok(())
        }
    }

    fn static_files() -> bundle::BundleFiles {
        let manifest = "spin_manifest_version = 2\n[application]\nname = \"web\"\n[[trigger.http]]\nroute = \"/...\"\nstatic_response = { status_code = 200, body = \"hi\" }\n";
        bundle::BundleFiles::from([(bundle::MANIFEST.to_string(), manifest.as_bytes().to_vec())])
    }

    #[test]
    fn a_change_checked_against_an_older_record_is_refused() {
        let app = |current: Option<u64>, variable: &str| AppRecord {
            current,
            variables: BTreeMap::from([("v".to_string(), variable.to_string())]),
            ..AppRecord::default()
        };
        let record = TenantRecord {
            name: "acme".into(),
            policy: Some("{}".into()),
            apps: BTreeMap::from([("web".to_string(), app(Some(1), "a"))]),
            ..TenantRecord::default()
        };
        let changed = |edit: &dyn Fn(&mut TenantRecord)| {
            let mut later = record.clone();
            edit(&mut later);
            later
        };
        // A deploy depends on the policy, limits and the app's variables,
        // not on the version it replaces.
        let deploy = CheckedAgainst::of(&record, &["web"], false);
        assert!(deploy.still_holds(&record, "it").is_ok());
        let redeployed = changed(&|r| r.apps.get_mut("web").unwrap().current = Some(2));
        assert!(deploy.still_holds(&redeployed, "it").is_ok());
        let other_policy = changed(&|r| r.policy = Some("{\"x\":1}".into()));
        assert!(deploy.still_holds(&other_policy, "it").is_err());
        let no_policy = changed(&|r| r.policy = None);
        assert!(deploy.still_holds(&no_policy, "it").is_err());
        let other_values = changed(&|r| {
            r.apps
                .insert("web".into(), app(Some(1), "b"))
                .map(drop)
                .unwrap()
        });
        assert!(deploy.still_holds(&other_values, "it").is_err());
        // Variables depend on the version served too.
        let variables = CheckedAgainst::of(&record, &["web"], true);
        assert!(variables.still_holds(&redeployed, "it").is_err());
        // A new policy does not depend on the old one, but on every app.
        let mut policy = CheckedAgainst::of(&record, &["web"], true);
        policy.policy = None;
        policy.with_policy = false;
        assert!(policy.still_holds(&other_policy, "it").is_ok());
        assert!(policy.still_holds(&redeployed, "it").is_err());
        let another_app = changed(&|r| {
            r.apps
                .insert("api".into(), app(Some(1), "a"))
                .map(drop)
                .unwrap_or(())
        });
        assert!(policy.still_holds(&another_app, "it").is_err());
    }

    #[tokio::test]
    async fn a_tenant_s_checks_wait_their_turn_and_a_flood_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&format!("file:{}", dir.path().display()))
            .await
            .unwrap();
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let config = ApiConfig {
            base_domain: "okra.test".into(),
            admin_token_hash: String::new(),
            max_bundle_bytes: 1 << 20,
            bundle_limits: BundleLimits::default(),
            validation_timeout: Duration::from_secs(600),
            reserved_hosts: BTreeSet::new(),
            quotas: Quotas::default(),
            default_limits: Limits::default(),
            public_port: 80,
            shared_store: false,
            key_value: None,
        };
        let api = Arc::new(Api::new(store, Arc::new(Held(gate.clone())), None, config));
        let tenant = |name: &str| TenantRecord {
            name: name.into(),
            ..TenantRecord::default()
        };
        // One running and the most that may wait.
        let mut checks = Vec::new();
        for _ in 0..=VALIDATIONS_WAITING_PER_TENANT {
            let (api, acme) = (api.clone(), tenant("acme"));
            checks.push(tokio::spawn(async move {
                api.check_app(&acme, &static_files(), &BTreeMap::new())
                    .await
            }));
        }
        let registered = || api.validating.lock().unwrap().get("acme").map(|t| t.users);
        while registered() != Some(VALIDATIONS_WAITING_PER_TENANT + 1) {
            tokio::task::yield_now().await;
        }
        let refused = api
            .check_app(&tenant("acme"), &static_files(), &BTreeMap::new())
            .await
            .unwrap_err();
        assert_eq!(
            (refused.status.as_u16(), refused.code),
            (429, "validation_busy")
        );
        // A client that gives up while waiting frees its place.
        let gave_up = checks.pop().unwrap();
        gave_up.abort();
        let _ = gave_up.await;
        assert_eq!(registered(), Some(VALIDATIONS_WAITING_PER_TENANT));
        let (api2, acme) = (api.clone(), tenant("acme"));
        checks.push(tokio::spawn(async move {
            api2.check_app(&acme, &static_files(), &BTreeMap::new())
                .await
        }));
        while registered() != Some(VALIDATIONS_WAITING_PER_TENANT + 1) {
            tokio::task::yield_now().await;
        }
        // Another tenant is not refused for acme's queue (it waits only for
        // a node-wide slot).
        let other = {
            let api = api.clone();
            tokio::spawn(async move {
                api.check_app(&tenant("other"), &static_files(), &BTreeMap::new())
                    .await
            })
        };
        gate.add_permits(1000);
        for check in checks {
            assert!(check.await.unwrap().is_ok());
        }
        assert!(other.await.unwrap().is_ok());
        assert!(
            api.validating.lock().unwrap().is_empty(),
            "turns are forgotten once nobody waits"
        );
    }
}
