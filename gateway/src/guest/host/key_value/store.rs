//! What every key-value interface shares: the limits, the stores a guest
//! has open (`OpenStore`, counted per instance), opening one only if the
//! component lists its label, and get/set/delete with the limits checked,
//! run on the backend off the executor.

use super::backend::{
    KeyValueBackend, KeyValueFailure, KeyValueScope, KeyValueSession, MAX_KEYS_PER_STORE,
};
use crate::guest::state::GuestState;
use wasmtime::bail;
use wasmtime::component::Resource;

/// Keys one batch call may name.
pub(super) const MAX_BATCH_KEYS: usize = 1000;
/// The longest key accepted, in bytes.
pub(super) const MAX_KEY_BYTES: usize = 1024;
/// The largest value accepted, in bytes.
pub(super) const MAX_VALUE_BYTES: usize = 1 << 20;
/// Stores one instance may have open at once.
pub(super) const MAX_OPEN_STORES: usize = 64;

/// A store a guest opened.
#[expect(
    unreachable_pub,
    reason = "bindgen! re-exports the resource's type from the module it generates"
)]
pub struct OpenStore {
    pub(super) label: String,
}

/// Why a store could not be opened, before it becomes an interface's error.
pub(crate) enum OpenRefusal {
    /// The component does not list the label.
    AccessDenied,
    /// The instance has [`MAX_OPEN_STORES`] open.
    TableFull,
}

impl GuestState {
    fn key_value(&mut self) -> wasmtime::Result<&mut KeyValueSession> {
        match &mut self.key_value {
            Some(session) => Ok(session),
            None => bail!("a key-value store is open, but the component has no key-value grant"),
        }
    }

    /// Opens store `label` if the component lists it (for every interface).
    pub(super) fn open_store(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<OpenStore>, OpenRefusal>> {
        // A component that lists no store opens none.
        let Some(session) = self.key_value.as_mut() else {
            return Ok(Err(OpenRefusal::AccessDenied));
        };
        if !session.grant.stores.contains(&label) {
            return Ok(Err(OpenRefusal::AccessDenied));
        }
        if session.open >= MAX_OPEN_STORES {
            return Ok(Err(OpenRefusal::TableFull));
        }
        session.open += 1;
        Ok(Ok(self.table.push(OpenStore { label })?))
    }

    /// Closes a store the guest dropped.
    pub(super) fn close_store(&mut self, store: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        let session = self.key_value()?;
        session.open = session.open.saturating_sub(1);
        Ok(())
    }

    /// Runs `call` on the backend off the executor, for the store `store`;
    /// a failure comes back as the text every interface's `other` carries.
    pub(super) async fn on_store<T: Send + 'static>(
        &mut self,
        store: &Resource<OpenStore>,
        call: impl FnOnce(&KeyValueBackend, &KeyValueScope, &str) -> Result<T, KeyValueFailure>
        + Send
        + 'static,
    ) -> wasmtime::Result<Result<T, String>> {
        let label = self.table.get(store)?.label.clone();
        let grant = self.key_value()?.grant.clone();
        let answer =
            tokio::task::spawn_blocking(move || call(&grant.backend, &grant.scope, &label)).await?;
        Ok(answer.map_err(describe))
    }
}

/// The operations both interfaces share, with every limit checked; a
/// failure is the text each interface's `other` carries.
impl GuestState {
    pub(super) async fn kv_get(
        &mut self,
        store: &Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, String>> {
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        self.on_store(store, move |kv, scope, label| kv.get(scope, label, &key))
            .await
    }

    pub(super) async fn kv_set(
        &mut self,
        store: &Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        if let Err(e) = check_key(&key).and_then(|()| check_value(&value)) {
            return Ok(Err(e));
        }
        self.on_store(store, move |kv, scope, label| {
            kv.set(scope, label, &key, &value)
        })
        .await
    }

    pub(super) async fn kv_delete(
        &mut self,
        store: &Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), String>> {
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        self.on_store(store, move |kv, scope, label| kv.delete(scope, label, &key))
            .await
    }
}

/// What the guest is told of a backend failure.
fn describe(failure: KeyValueFailure) -> String {
    match failure {
        KeyValueFailure::StoreFull => {
            format!("the store holds {MAX_KEYS_PER_STORE} keys, the most it may; delete some first")
        }
        KeyValueFailure::Refused(why) => why,
        KeyValueFailure::Unavailable => "key-value storage is unavailable; try again".to_string(),
    }
}

/// Refuses a key over [`MAX_KEY_BYTES`], naming the limit.
pub(super) fn check_key(key: &str) -> Result<(), String> {
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "a key of {} bytes is over the {MAX_KEY_BYTES}-byte limit",
            key.len()
        ));
    }
    Ok(())
}

/// Refuses a value over [`MAX_VALUE_BYTES`], naming the limit.
pub(super) fn check_value(value: &[u8]) -> Result<(), String> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "a value of {} bytes is over the {MAX_VALUE_BYTES}-byte limit",
            value.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_over_the_limit_is_the_interfaces_error_naming_it() {
        assert!(check_key(&"k".repeat(MAX_KEY_BYTES)).is_ok());
        match check_key(&"k".repeat(MAX_KEY_BYTES + 1)) {
            Err(why) => assert!(why.contains("1024-byte limit"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
