//! Spin's key-value interface, `fermyon:spin/key-value@2.0.0` (spin-sdk
//! 2 to 5): a guest opens only the stores its component lists in
//! `key_value_stores` (others are `access-denied`), and a store is its app's
//! own, kept in the gateway's embedded backend (`backend`).
//!
//! Not here yet: `spin:key-value@3.0.0`, `wasi:keyvalue`, a Redis backend,
//! per-tenant quotas on key count and bytes, and the REST API over the data.

pub(crate) mod backend;

use crate::guest::state::GuestState;
use backend::{
    KeyValueBackend, KeyValueFailure, KeyValueScope, KeyValueSession, MAX_KEYS_PER_STORE,
};
use wasmtime::component::{Component, HasSelf, Linker, Resource};
use wasmtime::{Engine, bail};

wasmtime::component::bindgen!({
    inline: "
        package fermyon:spin@2.0.0;

        interface key-value {
            resource store {
                open: static func(label: string) -> result<store, error>;
                get: func(key: string) -> result<option<list<u8>>, error>;
                set: func(key: string, value: list<u8>) -> result<_, error>;
                delete: func(key: string) -> result<_, error>;
                exists: func(key: string) -> result<bool, error>;
                get-keys: func() -> result<list<string>, error>;
            }
            variant error {
                store-table-full,
                no-such-store,
                access-denied,
                other(string),
            }
        }

        world key-value-host {
            import key-value;
        }
    ",
    imports: { default: async | trappable },
    with: {
        "fermyon:spin/key-value.store": OpenStore,
    },
});

use fermyon::spin::key_value::{Error, Host, HostStore};

/// The import this module serves.
const INTERFACE: &str = "fermyon:spin/key-value@2.0.0";

/// The longest key accepted, in bytes.
const MAX_KEY_BYTES: usize = 1024;
/// The largest value accepted, in bytes.
const MAX_VALUE_BYTES: usize = 1 << 20;
/// Stores one instance may have open at once.
const MAX_OPEN_STORES: usize = 64;

/// True when `interface` (an import name, with version) is served here.
pub(crate) fn provides(interface: &str) -> bool {
    interface == INTERFACE
}

/// Links the key-value interface when `component` imports it.
pub(crate) fn define(
    linker: &mut Linker<GuestState>,
    engine: &Engine,
    component: &Component,
) -> wasmtime::Result<()> {
    let imports = component.component_type();
    if imports.imports(engine).any(|(name, _)| provides(name)) {
        fermyon::spin::key_value::add_to_linker::<_, HasSelf<GuestState>>(linker, |s| s)?;
    }
    Ok(())
}

/// A store a guest opened.
#[expect(
    unreachable_pub,
    reason = "bindgen! re-exports the resource's type from the module it generates"
)]
pub struct OpenStore {
    label: String,
}

impl GuestState {
    fn key_value(&mut self) -> wasmtime::Result<&mut KeyValueSession> {
        match &mut self.key_value {
            Some(session) => Ok(session),
            None => bail!("a key-value store is open, but the component has no key-value grant"),
        }
    }

    /// Runs `call` on the backend off the executor, for the store `store`.
    async fn on_store<T: Send + 'static>(
        &mut self,
        store: &Resource<OpenStore>,
        call: impl FnOnce(&KeyValueBackend, &KeyValueScope, &str) -> Result<T, KeyValueFailure>
        + Send
        + 'static,
    ) -> wasmtime::Result<Result<T, Error>> {
        let label = self.table.get(store)?.label.clone();
        let grant = self.key_value()?.grant.clone();
        let answer =
            tokio::task::spawn_blocking(move || call(&grant.backend, &grant.scope, &label)).await?;
        Ok(answer.map_err(|failure| match failure {
            KeyValueFailure::StoreFull => Error::Other(format!(
                "the store holds {MAX_KEYS_PER_STORE} keys, the most it may; delete some first"
            )),
            KeyValueFailure::Unavailable => {
                Error::Other("key-value storage is unavailable; try again".to_string())
            }
        }))
    }
}

fn check_key(key: &str) -> Result<(), Error> {
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::Other(format!(
            "a key of {} bytes is over the {MAX_KEY_BYTES}-byte limit",
            key.len()
        )));
    }
    Ok(())
}

impl Host for GuestState {}

impl HostStore for GuestState {
    async fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<OpenStore>, Error>> {
        // A component that lists no store opens none.
        let Some(session) = self.key_value.as_mut() else {
            return Ok(Err(Error::AccessDenied));
        };
        if !session.grant.stores.contains(&label) {
            return Ok(Err(Error::AccessDenied));
        }
        if session.open >= MAX_OPEN_STORES {
            return Ok(Err(Error::StoreTableFull));
        }
        session.open += 1;
        Ok(Ok(self.table.push(OpenStore { label })?))
    }

    async fn get(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        self.on_store(&store, move |kv, scope, label| kv.get(scope, label, &key))
            .await
    }

    async fn set(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Ok(Err(Error::Other(format!(
                "a value of {} bytes is over the {MAX_VALUE_BYTES}-byte limit",
                value.len()
            ))));
        }
        self.on_store(&store, move |kv, scope, label| {
            kv.set(scope, label, &key, &value)
        })
        .await
    }

    async fn delete(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        self.on_store(&store, move |kv, scope, label| {
            kv.delete(scope, label, &key)
        })
        .await
    }

    async fn exists(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        self.on_store(&store, move |kv, scope, label| {
            kv.get(scope, label, &key).map(|v| v.is_some())
        })
        .await
    }

    async fn get_keys(
        &mut self,
        store: Resource<OpenStore>,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        self.on_store(&store, |kv, scope, label| kv.keys(scope, label))
            .await
    }

    async fn drop(&mut self, store: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        let session = self.key_value()?;
        session.open = session.open.saturating_sub(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_over_the_limit_is_the_interfaces_error_naming_it() {
        assert!(check_key(&"k".repeat(MAX_KEY_BYTES)).is_ok());
        match check_key(&"k".repeat(MAX_KEY_BYTES + 1)) {
            Err(Error::Other(why)) => assert!(why.contains("1024-byte limit"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
