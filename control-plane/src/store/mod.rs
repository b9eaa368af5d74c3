//! Where the configuration lives: the [`Store`] trait, its two backends
//! ([`file`] for a single node, [`redis`] for a cluster) and opening one from
//! a `--store` URL.
//!
//! A store keeps one [`State`] document under a global version plus
//! content-addressed blobs. `update` is an atomic read-modify-write that bumps
//! the version and announces it on the change feed (`subscribe`).

pub mod file;
pub mod redis;

use crate::error::ApiError;
use crate::model::State;
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;

/// A store that could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Io(String),
    #[error("redis: {0}")]
    Redis(String),
    #[error("the stored state is corrupt: {0}")]
    Corrupt(String),
    #[error("blob {0} is missing from the store")]
    MissingBlob(String),
    #[error("{0}")]
    BadUrl(String),
}

/// Why an update did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The change was refused; nothing was written.
    #[error(transparent)]
    Rejected(#[from] ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<UpdateError> for ApiError {
    fn from(e: UpdateError) -> Self {
        match e {
            UpdateError::Rejected(e) => e,
            UpdateError::Store(e) => e.into(),
        }
    }
}

/// A change to the state: refuse it with an [`ApiError`] and nothing changes.
/// It may run more than once (Redis retries on a concurrent write), so it must
/// only look at the state it is given.
pub type Change<'a> = &'a mut (dyn FnMut(&mut State) -> Result<(), ApiError> + Send);

/// The configuration store.
#[async_trait]
pub trait Store: Send + Sync {
    /// The current state.
    async fn load(&self) -> Result<State, StoreError>;
    /// The current global version, cheaply.
    async fn version(&self) -> Result<u64, StoreError>;
    /// Applies `change` atomically, bumps the version and announces it;
    /// returns the new state.
    async fn update(&self, change: Change<'_>) -> Result<State, UpdateError>;
    /// Stores bytes under their SHA-256 (hex) and returns it; storing the
    /// same bytes again is free.
    async fn put_blob(&self, bytes: &[u8]) -> Result<String, StoreError>;
    async fn get_blob(&self, hash: &str) -> Result<Vec<u8>, StoreError>;
    /// The change feed: the latest version this process has heard of. A
    /// subscriber must still compare versions (messages can be missed).
    fn subscribe(&self) -> watch::Receiver<u64>;
    /// What this store is, for logs (`file:./okra-data`, `redis://...`).
    fn describe(&self) -> String;
}

/// The SHA-256 of a blob, as stores name it.
pub fn blob_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether `hash` could be a blob name (so it is safe as a file name or key).
pub fn is_blob_hash(hash: &str) -> bool {
    hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Opens `file:PATH` (or a bare path) or `redis://HOST:PORT[/DB]`.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        Ok(Arc::new(redis::RedisStore::open(url).await?))
    } else {
        let path = url.strip_prefix("file:").unwrap_or(url);
        if path.is_empty() {
            return Err(StoreError::BadUrl(format!(
                "--store {url:?}: give file:PATH or redis://HOST:PORT"
            )));
        }
        Ok(Arc::new(file::FileStore::open(Path::new(path))?))
    }
}

/// Increments the version and returns the state to write.
fn next_state(mut state: State, change: Change<'_>) -> Result<State, ApiError> {
    change(&mut state)?;
    state.version += 1;
    Ok(state)
}

fn decode_state(bytes: &[u8]) -> Result<State, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode_state(state: &State) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(state).map_err(|e| StoreError::Corrupt(e.to_string()))
}
