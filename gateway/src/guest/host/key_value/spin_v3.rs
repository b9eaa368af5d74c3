//! Spin's key-value interface as spin-sdk 6 and 7 import it,
//! `spin:key-value/key-value@3.0.0`: the same stores, data and limits as
//! 2.0 (`super::store`), with every function on the component model's async
//! ABI and `get-keys` answering a stream of keys and a future of the
//! outcome. Async functions link only where concurrency is on (wasi:http
//! 0.3 components), so this is linked for the components that import it.

use super::store::{OpenRefusal, OpenStore};
use crate::guest::state::GuestState;
use okra_kv::Failure;
use wasmtime::component::{Accessor, FutureReader, HasData, Linker, Resource, StreamReader};

wasmtime::component::bindgen!({
    inline: "
        package spin:key-value@3.0.0;

        interface key-value {
            resource store {
                open: static async func(label: string) -> result<store, error>;
                get: async func(key: string) -> result<option<list<u8>>, error>;
                set: async func(key: string, value: list<u8>) -> result<_, error>;
                delete: async func(key: string) -> result<_, error>;
                exists: async func(key: string) -> result<bool, error>;
                get-keys: async func() -> tuple<stream<string>, future<result<_, error>>>;
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
    imports: { default: trappable },
    with: {
        "spin:key-value/key-value.store": super::store::OpenStore,
    },
});

use spin::key_value::key_value::{Error, Host, HostStore, HostStoreWithStore};

/// The import this module serves.
pub(super) const INTERFACE: &str = "spin:key-value/key-value@3.0.0";

/// The host side of the interface: the calls reach [`GuestState`].
struct SpinKeyValue3;

impl HasData for SpinKeyValue3 {
    type Data<'a> = &'a mut GuestState;
}

/// Links the interface (only onto a linker with concurrency on).
pub(super) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    spin::key_value::key_value::add_to_linker::<_, SpinKeyValue3>(linker, |s| s)
}

impl From<OpenRefusal> for Error {
    fn from(refusal: OpenRefusal) -> Self {
        match refusal {
            OpenRefusal::AccessDenied => Error::AccessDenied,
            OpenRefusal::TableFull => Error::StoreTableFull,
        }
    }
}

fn other(failure: Failure) -> Error {
    Error::Other(failure.to_string())
}

impl Host for GuestState {}

impl HostStore for GuestState {
    fn drop(&mut self, store: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.close_store(store)
    }
}

impl<T> HostStoreWithStore<T> for SpinKeyValue3 {
    async fn open(
        accessor: &Accessor<T, Self>,
        label: String,
    ) -> wasmtime::Result<Result<Resource<OpenStore>, Error>> {
        Ok(accessor
            .with(|mut access| access.get().open_store(label))?
            .map_err(Error::from))
    }

    async fn get(
        accessor: &Accessor<T, Self>,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let (kv, scope, label) = accessor.with(|mut access| access.get().store_target(&store))?;
        Ok(kv.get(&scope, &label, &key).await.map_err(other))
    }

    async fn set(
        accessor: &Accessor<T, Self>,
        store: Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let (kv, scope, label) = accessor.with(|mut access| access.get().store_target(&store))?;
        Ok(kv.set(&scope, &label, &key, &value).await.map_err(other))
    }

    async fn delete(
        accessor: &Accessor<T, Self>,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        let (kv, scope, label) = accessor.with(|mut access| access.get().store_target(&store))?;
        Ok(kv.delete(&scope, &label, &key).await.map_err(other))
    }

    async fn exists(
        accessor: &Accessor<T, Self>,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        let (kv, scope, label) = accessor.with(|mut access| access.get().store_target(&store))?;
        let value = kv.get(&scope, &label, &key).await;
        Ok(value.map(|v| v.is_some()).map_err(other))
    }

    /// Every key at once (a store holds at most `okra_kv::MAX_KEYS_PER_STORE`),
    /// then the outcome; on a failure the stream is empty and the future
    /// carries the error.
    async fn get_keys(
        accessor: &Accessor<T, Self>,
        store: Resource<OpenStore>,
    ) -> wasmtime::Result<(StreamReader<String>, FutureReader<Result<(), Error>>)> {
        let (kv, scope, label) = accessor.with(|mut access| access.get().store_target(&store))?;
        let (keys, outcome) = match kv.keys(&scope, &label).await {
            Ok(keys) => (keys, Ok(())),
            Err(failure) => (Vec::new(), Err(other(failure))),
        };
        accessor.with(|mut access| {
            let keys = StreamReader::new(&mut access, keys)?;
            let outcome =
                FutureReader::new(
                    &mut access,
                    async move { wasmtime::Result::<_>::Ok(outcome) },
                )?;
            Ok((keys, outcome))
        })
    }
}
