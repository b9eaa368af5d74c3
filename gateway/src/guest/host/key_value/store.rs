//! What every key-value interface shares: the stores a guest has open
//! (`OpenStore`, counted per instance), opening one only if the component
//! lists its label, and get/set/delete on the backend (`okra_kv`, which
//! checks every limit and quota).

use super::grant::KeyValueSession;
use crate::guest::state::GuestState;
use okra_kv::{Failure, KeyValue, Scope};
use wasmtime::bail;
use wasmtime::component::Resource;

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

    /// Runs `call` on the backend for the store `store`; a failure comes
    /// back as the text every interface's `other` carries.
    pub(super) async fn on_store<T, Call>(
        &mut self,
        store: &Resource<OpenStore>,
        call: impl FnOnce(KeyValue, Scope, String) -> Call,
    ) -> wasmtime::Result<Result<T, String>>
    where
        Call: Future<Output = Result<T, Failure>>,
    {
        let (kv, scope, label) = self.store_target(store)?;
        let answer = call(kv, scope, label).await;
        Ok(answer.map_err(|failure| failure.to_string()))
    }

    /// What a call on the open store `store` needs, copied out so that no
    /// borrow of the state outlives it (async-ABI calls await without one).
    pub(super) fn store_target(
        &mut self,
        store: &Resource<OpenStore>,
    ) -> wasmtime::Result<(KeyValue, Scope, String)> {
        let label = self.table.get(store)?.label.clone();
        let grant = &self.key_value()?.grant;
        Ok(((*grant.backend).clone(), grant.scope.clone(), label))
    }
}

/// The operations both interfaces share; the backend checks every limit.
impl GuestState {
    pub(super) async fn kv_get(
        &mut self,
        store: &Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, String>> {
        self.on_store(store, |kv, scope, label| async move {
            kv.get(&scope, &label, &key).await
        })
        .await
    }

    pub(super) async fn kv_set(
        &mut self,
        store: &Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        self.on_store(store, |kv, scope, label| async move {
            kv.set(&scope, &label, &key, &value).await
        })
        .await
    }

    pub(super) async fn kv_delete(
        &mut self,
        store: &Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), String>> {
        self.on_store(store, |kv, scope, label| async move {
            kv.delete(&scope, &label, &key).await
        })
        .await
    }
}
