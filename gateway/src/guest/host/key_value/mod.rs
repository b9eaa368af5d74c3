//! Spin's key-value interface, `fermyon:spin/key-value@2.0.0` (spin-sdk
//! 2 to 5): a guest opens only the stores its component lists in
//! `key_value_stores` (others are `access-denied`), and a store is its app's
//! own, kept in the gateway's embedded backend (`backend`).
//!
//! Not here yet: `spin:key-value@3.0.0`, `wasi:keyvalue`, a Redis backend,
//! per-tenant quotas on key count and bytes, and the REST API over the data.

pub(crate) mod backend;
mod wasi;

use crate::guest::state::GuestState;
use backend::{
    KeyValueBackend, KeyValueFailure, KeyValueScope, KeyValueSession, MAX_KEYS_PER_STORE,
};
use wasmtime::bail;
use wasmtime::component::{HasSelf, Linker, Resource};

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

/// Keys one batch call may name.
const MAX_BATCH_KEYS: usize = 1000;
/// The longest key accepted, in bytes.
const MAX_KEY_BYTES: usize = 1024;
/// The largest value accepted, in bytes.
const MAX_VALUE_BYTES: usize = 1 << 20;
/// Stores one instance may have open at once.
const MAX_OPEN_STORES: usize = 64;

/// True when `interface` (an import name, with version) is served here.
pub(crate) fn provides(interface: &str) -> bool {
    interface == INTERFACE || wasi::provides(interface)
}

/// Links Spin's key-value interface and wasi:keyvalue's three.
pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    fermyon::spin::key_value::add_to_linker::<_, HasSelf<GuestState>>(linker, |s| s)?;
    wasi::add_to_linker(linker)
}

/// A store a guest opened.
#[expect(
    unreachable_pub,
    reason = "bindgen! re-exports the resource's type from the module it generates"
)]
pub struct OpenStore {
    label: String,
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
    fn open_store(
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
    fn close_store(&mut self, store: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        let session = self.key_value()?;
        session.open = session.open.saturating_sub(1);
        Ok(())
    }

    /// Runs `call` on the backend off the executor, for the store `store`;
    /// a failure comes back as the text every interface's `other` carries.
    async fn on_store<T: Send + 'static>(
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
    async fn kv_get(
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

    async fn kv_set(
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

    async fn kv_delete(
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
fn check_key(key: &str) -> Result<(), String> {
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "a key of {} bytes is over the {MAX_KEY_BYTES}-byte limit",
            key.len()
        ));
    }
    Ok(())
}

/// Refuses a value over [`MAX_VALUE_BYTES`], naming the limit.
fn check_value(value: &[u8]) -> Result<(), String> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "a value of {} bytes is over the {MAX_VALUE_BYTES}-byte limit",
            value.len()
        ));
    }
    Ok(())
}

impl From<OpenRefusal> for Error {
    fn from(refusal: OpenRefusal) -> Self {
        match refusal {
            OpenRefusal::AccessDenied => Error::AccessDenied,
            OpenRefusal::TableFull => Error::StoreTableFull,
        }
    }
}

impl Host for GuestState {}

impl HostStore for GuestState {
    async fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<OpenStore>, Error>> {
        Ok(self.open_store(label)?.map_err(Error::from))
    }

    async fn get(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(self.kv_get(&store, key).await?.map_err(Error::Other))
    }

    async fn set(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(self.kv_set(&store, key, value).await?.map_err(Error::Other))
    }

    async fn delete(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(self.kv_delete(&store, key).await?.map_err(Error::Other))
    }

    async fn exists(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        let value = self.kv_get(&store, key).await?;
        Ok(value.map(|v| v.is_some()).map_err(Error::Other))
    }

    async fn get_keys(
        &mut self,
        store: Resource<OpenStore>,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        let keys = self
            .on_store(&store, |kv, scope, label| kv.keys(scope, label))
            .await?;
        Ok(keys.map_err(Error::Other))
    }

    async fn drop(&mut self, store: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.close_store(store)
    }
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
