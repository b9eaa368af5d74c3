//! `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2` (spin-sdk 3 to 5,
//! componentize-py and the JavaScript SDK import them) over the same
//! stores as Spin's own interface: the same labels open, the same data,
//! the same limits. `bucket` is the same resource in all three interfaces,
//! as the WIT says.
//!
//! - `increment` and `swap` are atomic (one backend transaction each), so
//!   concurrent requests never lose an update. Counters are 8-byte
//!   little-endian integers, as Spin keeps them.
//! - A `cas` remembers the value it last saw: when it is made, and at each
//!   `current`. `swap` writes only over that value, and otherwise answers
//!   `cas-failed` with a fresh `cas` that has read the latest value.
//! - `list-keys` answers every key (up to the store's key cap) with no
//!   cursor, as Spin does; a cursor it was given lists the keys after it.

use super::store::{MAX_OPEN_STORES, OpenRefusal, OpenStore};
use crate::guest::state::GuestState;
use okra_kv::{KeyAndValue, MAX_KEYS_PER_STORE, value_digest};
use wasmtime::component::{HasSelf, Linker, Resource};

wasmtime::component::bindgen!({
    inline: "
        package wasi:keyvalue@0.2.0-draft2;

        interface store {
            variant error {
                no-such-store,
                access-denied,
                other(string)
            }
            record key-response {
                keys: list<string>,
                cursor: option<string>
            }
            open: func(identifier: string) -> result<bucket, error>;
            resource bucket {
                get: func(key: string) -> result<option<list<u8>>, error>;
                set: func(key: string, value: list<u8>) -> result<_, error>;
                delete: func(key: string) -> result<_, error>;
                exists: func(key: string) -> result<bool, error>;
                list-keys: func(cursor: option<string>) -> result<key-response, error>;
            }
        }

        interface atomics {
            use store.{bucket, error};
            variant cas-error {
                store-error(error),
                cas-failed(cas),
            }
            resource cas {
                new: static func(bucket: borrow<bucket>, key: string) -> result<cas, error>;
                current: func() -> result<option<list<u8>>, error>;
            }
            increment: func(bucket: borrow<bucket>, key: string, delta: s64) -> result<s64, error>;
            swap: func(cas: cas, value: list<u8>) -> result<_, cas-error>;
        }

        interface batch {
            use store.{bucket, error};
            get-many: func(bucket: borrow<bucket>, keys: list<string>) -> result<list<tuple<string, option<list<u8>>>>, error>;
            set-many: func(bucket: borrow<bucket>, key-values: list<tuple<string, list<u8>>>) -> result<_, error>;
            delete-many: func(bucket: borrow<bucket>, keys: list<string>) -> result<_, error>;
        }

        world keyvalue-host {
            import store;
            import atomics;
            import batch;
        }
    ",
    imports: { default: async | trappable },
    with: {
        "wasi:keyvalue/store.bucket": super::store::OpenStore,
        "wasi:keyvalue/atomics.cas": OpenCas,
    },
});

use wasi::keyvalue::atomics::CasError;
use wasi::keyvalue::store::{Error, KeyResponse};

/// The interfaces this module serves.
const INTERFACES: [&str; 3] = [
    "wasi:keyvalue/store@0.2.0-draft2",
    "wasi:keyvalue/atomics@0.2.0-draft2",
    "wasi:keyvalue/batch@0.2.0-draft2",
];

/// True when `interface` (an import name, with version) is served here.
pub(crate) fn provides(interface: &str) -> bool {
    INTERFACES.contains(&interface)
}

/// Links all three interfaces (they share `bucket`, so they go together).
pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    wasi::keyvalue::store::add_to_linker::<_, HasSelf<GuestState>>(linker, |s| s)?;
    wasi::keyvalue::atomics::add_to_linker::<_, HasSelf<GuestState>>(linker, |s| s)?;
    wasi::keyvalue::batch::add_to_linker::<_, HasSelf<GuestState>>(linker, |s| s)?;
    Ok(())
}

/// A compare-and-swap in progress: the store, the key, and the digest of
/// the value it last saw (`None`: the key was missing), not the value, so
/// open ones cost the host little.
#[expect(
    unreachable_pub,
    reason = "bindgen! re-exports the resource's type from the module it generates"
)]
pub struct OpenCas {
    store: Resource<OpenStore>,
    key: String,
    seen: Option<[u8; 32]>,
}

impl From<OpenRefusal> for Error {
    fn from(refusal: OpenRefusal) -> Self {
        match refusal {
            OpenRefusal::AccessDenied => Error::AccessDenied,
            OpenRefusal::TableFull => Error::Other(format!(
                "{MAX_OPEN_STORES} stores and compare-and-swaps are open in this instance, the most it may"
            )),
        }
    }
}

impl GuestState {
    /// Reads `key` of `store`, for a cas.
    async fn read_for_cas(
        &mut self,
        store: &Resource<OpenStore>,
        key: &str,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let got = self.kv_get(store, key.to_string()).await?;
        Ok(got.map_err(Error::Other))
    }

    /// A new cas on `key` of `store` that has seen its current value. It
    /// counts as an open store, so a guest cannot make them without bound.
    async fn new_cas(
        &mut self,
        label: String,
        key: String,
    ) -> wasmtime::Result<Result<Resource<OpenCas>, Error>> {
        let store = match self.open_store(label)? {
            Ok(store) => store,
            Err(refusal) => return Ok(Err(refusal.into())),
        };
        match self.read_for_cas(&store, &key).await? {
            Ok(seen) => {
                let seen = seen.as_deref().map(value_digest);
                Ok(Ok(self.table.push(OpenCas { store, key, seen })?))
            }
            Err(e) => {
                self.close_store(store)?;
                Ok(Err(e))
            }
        }
    }
}

impl wasi::keyvalue::store::Host for GuestState {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<OpenStore>, Error>> {
        Ok(self.open_store(identifier)?.map_err(Error::from))
    }
}

impl wasi::keyvalue::store::HostBucket for GuestState {
    async fn get(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(self.kv_get(&bucket, key).await?.map_err(Error::Other))
    }

    async fn set(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(self
            .kv_set(&bucket, key, value)
            .await?
            .map_err(Error::Other))
    }

    async fn delete(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(self.kv_delete(&bucket, key).await?.map_err(Error::Other))
    }

    async fn exists(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        let value = self.kv_get(&bucket, key).await?;
        Ok(value.map(|v| v.is_some()).map_err(Error::Other))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<OpenStore>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<KeyResponse, Error>> {
        let keys = self
            .on_store(&bucket, |kv, scope, label| async move {
                kv.keys_after(&scope, &label, cursor.as_deref()).await
            })
            .await?;
        Ok(keys.map_err(Error::Other).map(|keys| {
            // A full page may have more after it.
            let cursor = (keys.len() as u64 >= MAX_KEYS_PER_STORE)
                .then(|| keys.last().cloned())
                .flatten();
            KeyResponse { keys, cursor }
        }))
    }

    async fn drop(&mut self, bucket: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.close_store(bucket)
    }
}

impl wasi::keyvalue::atomics::Host for GuestState {
    async fn increment(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, Error>> {
        let sum = self
            .on_store(&bucket, |kv, scope, label| async move {
                kv.increment(&scope, &label, &key, delta).await
            })
            .await?;
        Ok(sum.map_err(Error::Other))
    }

    async fn swap(
        &mut self,
        cas: Resource<OpenCas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), CasError>> {
        let (store, label, key, seen) = {
            let open = self.table.get(&cas)?;
            (
                Resource::<OpenStore>::new_borrow(open.store.rep()),
                self.table.get(&open.store)?.label.clone(),
                open.key.clone(),
                open.seen,
            )
        };
        let swap_key = key.clone();
        let swapped = self
            .on_store(&store, |kv, scope, label| async move {
                kv.swap_if(&scope, &label, &swap_key, seen, value).await
            })
            .await?;
        // The old cas goes first, so a guest at its open-store cap still
        // gets its fresh one.
        self.close_cas(cas)?;
        Ok(match swapped {
            Ok(true) => Ok(()),
            Ok(false) => match self.new_cas(label, key).await? {
                Ok(fresh) => Err(CasError::CasFailed(fresh)),
                Err(e) => Err(CasError::StoreError(e)),
            },
            Err(e) => Err(CasError::StoreError(Error::Other(e))),
        })
    }
}

impl GuestState {
    /// Ends a cas: its own store handle closes with it.
    fn close_cas(&mut self, cas: Resource<OpenCas>) -> wasmtime::Result<()> {
        let open = self.table.delete(cas)?;
        self.close_store(open.store)
    }
}

impl wasi::keyvalue::atomics::HostCas for GuestState {
    async fn new(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<OpenCas>, Error>> {
        let label = self.table.get(&bucket)?.label.clone();
        self.new_cas(label, key).await
    }

    async fn current(
        &mut self,
        cas: Resource<OpenCas>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let (store, key) = {
            let open = self.table.get(&cas)?;
            (
                Resource::<OpenStore>::new_borrow(open.store.rep()),
                open.key.clone(),
            )
        };
        let seen = match self.read_for_cas(&store, &key).await? {
            Ok(seen) => seen,
            Err(e) => return Ok(Err(e)),
        };
        self.table.get_mut(&cas)?.seen = seen.as_deref().map(value_digest);
        Ok(Ok(seen))
    }

    async fn drop(&mut self, cas: Resource<OpenCas>) -> wasmtime::Result<()> {
        self.close_cas(cas)
    }
}

impl wasi::keyvalue::batch::Host for GuestState {
    async fn get_many(
        &mut self,
        bucket: Resource<OpenStore>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<KeyAndValue>, Error>> {
        let got = self
            .on_store(&bucket, |kv, scope, label| async move {
                kv.get_many(&scope, &label, keys).await
            })
            .await?;
        Ok(got.map_err(Error::Other))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<OpenStore>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let set = self
            .on_store(&bucket, |kv, scope, label| async move {
                kv.set_many(&scope, &label, key_values).await
            })
            .await?;
        Ok(set.map_err(Error::Other))
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<OpenStore>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let deleted = self
            .on_store(&bucket, |kv, scope, label| async move {
                kv.delete_many(&scope, &label, keys).await
            })
            .await?;
        Ok(deleted.map_err(Error::Other))
    }
}
