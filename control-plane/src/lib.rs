//! Okra's management plane, as a library: the tenant/app model ([`model`]),
//! app bundles ([`bundle`]), the stores with their change feed ([`store`]),
//! what each tenant may keep in them ([`quotas`]),
//! bearer-token auth ([`auth`]) and the REST API ([`api`], with apps'
//! key-value data in [`kv_api`]). The `okra` CLI,
//! the API's client, is the `okra` crate's.
//!
//! Nothing here runs wasm: the gateway plugs its compiler in through
//! [`validate::BundleValidator`], so a deploy is refused before it is stored
//! if its components would not load.

#![warn(unreachable_pub, missing_docs)]

pub mod api;
pub mod auth;
pub mod bundle;
pub mod error;
pub mod health;
pub mod hostnames;
pub mod kv_api;
pub mod model;
pub mod openapi_schemas;
pub mod quotas;
pub mod store;
pub mod validate;

pub use error::ApiError;
pub use model::{AppRecord, State, TenantRecord, VersionRecord};
pub use store::{Store, StoreError};
