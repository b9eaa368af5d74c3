//! Spin's own key-value interface, `fermyon:spin/key-value@2.0.0` (spin-sdk
//! 2 to 5), over the shared stores (`super::store`).

use super::store::OpenRefusal;
use crate::guest::state::GuestState;
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
        "fermyon:spin/key-value.store": super::store::OpenStore,
    },
});

use super::store::OpenStore;
use fermyon::spin::key_value::{Error, Host, HostStore};

/// The import this module serves.
pub(super) const INTERFACE: &str = "fermyon:spin/key-value@2.0.0";

/// Links the interface.
pub(super) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    fermyon::spin::key_value::add_to_linker::<_, HasSelf<GuestState>>(linker, |s| s)
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
            .on_store(&store, |kv, scope, label| async move {
                kv.keys(&scope, &label).await
            })
            .await?;
        Ok(keys.map_err(Error::Other))
    }

    async fn drop(&mut self, store: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.close_store(store)
    }
}
