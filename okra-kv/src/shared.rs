//! The Redis backend, which every gateway of a cluster shares (`--store
//! redis://…`): one hash per app store,
//! `okra:kv:<len>:<tenant id>:<len>:<app id>:<store>`, and one per tenant
//! counting what it holds, `okra:kv-usage:<tenant id>`.
//!
//! Every write is one Lua script, so the store's cap, the tenant's quota and
//! the usage count are checked and changed atomically with the data.
//! Increment and compare-and-swap read the value, decide in Rust (Redis'
//! Lua has no 64-bit integers or SHA-256), and write with a script that
//! first checks the value is still the one read, trying again if it is not.

use crate::{Failure, MAX_BATCH_BYTES, MAX_KEYS_PER_STORE, Quota, Scope, Usage};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands as _, Script};
use std::sync::LazyLock;
use std::time::Duration;
use tokio::sync::OnceCell;

/// Shared by the write scripts: KEYS[1] is the store's hash, KEYS[2] the
/// tenant's usage; ARGV[1..3] are the tenant's key and byte quotas and the
/// store's cap. `admit` answers `nil` or why not: `{1}` the store is full,
/// `{2, held}` the tenant's keys, `{3, held}` its bytes.
const ADMIT: &str = r"
local function admit(dk, db, added)
  if added > 0 and redis.call('HLEN', KEYS[1]) + added > tonumber(ARGV[3]) then
    return {1, 0}
  end
  local keys = tonumber(redis.call('HGET', KEYS[2], 'keys') or '0')
  local bytes = tonumber(redis.call('HGET', KEYS[2], 'bytes') or '0')
  if dk > 0 and keys + dk > tonumber(ARGV[1]) then return {2, keys} end
  if db > 0 and bytes + db > tonumber(ARGV[2]) then return {3, bytes} end
  return nil
end
local function count(dk, db)
  if dk ~= 0 then redis.call('HINCRBY', KEYS[2], 'keys', dk) end
  if db ~= 0 then redis.call('HINCRBY', KEYS[2], 'bytes', db) end
end
local function held(k)
  if redis.call('HEXISTS', KEYS[1], k) == 1 then
    return redis.call('HSTRLEN', KEYS[1], k)
  end
  return nil
end
";

/// ARGV[4..] are key, value pairs: all are set, or none.
const SET_MANY: &str = r"
local pending, dk, db, added = {}, 0, 0, 0
for i = 4, #ARGV, 2 do
  local k, v = ARGV[i], ARGV[i + 1]
  local old = pending[k]
  if old == nil then old = held(k) or false end
  if old then
    db = db + #v - old
  else
    dk, db, added = dk + 1, db + #k + #v, added + 1
  end
  pending[k] = #v
end
local refused = admit(dk, db, added)
if refused then return refused end
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
count(dk, db)
return {0, 0}
";

/// ARGV[4] is the key, ARGV[5] '1' when it held ARGV[6] as read ('0' when
/// it was missing), ARGV[7] the new value. `{4}`: it changed since.
const SWAP: &str = r"
local k, v = ARGV[4], ARGV[7]
local current = redis.call('HGET', KEYS[1], k)
if ARGV[5] == '1' then
  if current ~= ARGV[6] then return {4, 0} end
elseif current then
  return {4, 0}
end
local dk, db, added = 0, 0, 0
if current then db = #v - #current else dk, db, added = 1, #k + #v, 1 end
local refused = admit(dk, db, added)
if refused then return refused end
redis.call('HSET', KEYS[1], k, v)
count(dk, db)
return {0, 0}
";

/// ARGV are the keys to remove.
const DELETE_MANY: &str = r"
local dk, db = 0, 0
for i = 1, #ARGV do
  local old = held(ARGV[i])
  if old then
    redis.call('HDEL', KEYS[1], ARGV[i])
    dk, db = dk - 1, db - #ARGV[i] - old
  end
end
count(dk, db)
return {0, 0}
";

/// KEYS[1] is the store's hash, ARGV[1] the most bytes, ARGV[2..] the keys:
/// their values, or nil when they are over the limit together.
const GET_MANY: &str = r"
local total = 0
for i = 2, #ARGV do
  total = total + redis.call('HSTRLEN', KEYS[1], ARGV[i])
  if total > tonumber(ARGV[1]) then return false end
end
return redis.call('HMGET', KEYS[1], unpack(ARGV, 2))
";

/// Removes the store KEYS[1], giving its keys and bytes back.
const FORGET: &str = r"
local dk, db = 0, 0
for _, k in ipairs(redis.call('HKEYS', KEYS[1])) do
  dk, db = dk - 1, db - #k - redis.call('HSTRLEN', KEYS[1], k)
end
redis.call('DEL', KEYS[1])
count(dk, db)
return {0, 0}
";

static FORGET_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(&[ADMIT, FORGET].concat()));
static SET_MANY_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(&[ADMIT, SET_MANY].concat()));
static SWAP_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(&[ADMIT, SWAP].concat()));
static DELETE_MANY_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(&[ADMIT, DELETE_MANY].concat()));
static GET_MANY_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(GET_MANY));

/// How many times an increment or swap is tried against concurrent writers.
const MAX_SWAP_ATTEMPTS: u32 = 64;

/// The Redis backend.
pub(crate) struct Shared {
    described: String,
    client: redis::Client,
    /// Made on first use: its driver task needs a Tokio runtime, which the
    /// gateway has only once it serves.
    connection: OnceCell<ConnectionManager>,
}

/// `url` without its password.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

fn unavailable(e: redis::RedisError) -> Failure {
    tracing::warn!("key-value storage (redis): {e}");
    Failure::Unavailable
}

/// The hash of a store. Ids are length-prefixed, so no tenant, app or store
/// name (whatever `:` it holds) can spell another's key.
fn store_key(scope: &Scope, store: &str) -> String {
    format!(
        "{}{}:{}:{store}",
        tenant_prefix(&scope.tenant),
        scope.app.len(),
        scope.app
    )
}

/// What every store hash of `tenant` starts with.
fn tenant_prefix(tenant: &str) -> String {
    format!("okra:kv:{}:{tenant}:", tenant.len())
}

/// `prefix` as a SCAN pattern that matches only names starting with it.
fn glob_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('*');
    pattern
}

fn usage_key(tenant: &str) -> String {
    format!("okra:kv-usage:{tenant}")
}

impl Shared {
    pub(crate) fn new(url: &str) -> Result<Self, String> {
        let client = redis::Client::open(url)
            .map_err(|e| format!("key-value store {:?}: {e}", redacted(url)))?;
        Ok(Shared {
            described: redacted(url),
            client,
            connection: OnceCell::new(),
        })
    }

    pub(crate) fn describe(&self) -> &str {
        &self.described
    }

    /// The connection (reconnecting by itself after a failure).
    async fn connection(&self) -> Result<ConnectionManager, Failure> {
        let manager = self
            .connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(1)))
                    .set_response_timeout(Some(Duration::from_secs(2)))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            })
            .await
            .map_err(unavailable)?;
        Ok(manager.clone())
    }

    pub(crate) async fn get(
        &self,
        scope: &Scope,
        store: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, Failure> {
        self.connection()
            .await?
            .hget(store_key(scope, store), key)
            .await
            .map_err(unavailable)
    }

    pub(crate) async fn keys_after(
        &self,
        scope: &Scope,
        store: &str,
        after: Option<&str>,
    ) -> Result<Vec<String>, Failure> {
        let keys: Vec<Vec<u8>> = self
            .connection()
            .await?
            .hkeys(store_key(scope, store))
            .await
            .map_err(unavailable)?;
        let mut keys: Vec<String> = keys
            .into_iter()
            .filter_map(|k| String::from_utf8(k).ok())
            .filter(|k| after.is_none_or(|after| k.as_str() > after))
            .collect();
        keys.sort_unstable();
        keys.truncate(MAX_KEYS_PER_STORE as usize);
        Ok(keys)
    }

    /// Runs a write script for `scope`'s store, and maps its answer.
    /// `Ok(false)`: the value changed since it was read (swaps only).
    async fn write(
        &self,
        script: &Script,
        quota: &Quota,
        scope: &Scope,
        store: &str,
        args: &[&[u8]],
    ) -> Result<bool, Failure> {
        let mut invocation = script.key(store_key(scope, store));
        invocation
            .key(usage_key(&scope.tenant))
            .arg(quota.max_keys)
            .arg(quota.max_bytes)
            .arg(MAX_KEYS_PER_STORE);
        for arg in args {
            invocation.arg(*arg);
        }
        let (code, held): (i64, u64) = invocation
            .invoke_async(&mut self.connection().await?)
            .await
            .map_err(unavailable)?;
        match code {
            0 => Ok(true),
            1 => Err(Failure::StoreFull),
            2 => Err(quota.over_keys(held)),
            3 => Err(quota.over_bytes(held)),
            _ => Ok(false),
        }
    }

    pub(crate) async fn set_many(
        &self,
        quota: &Quota,
        scope: &Scope,
        store: &str,
        entries: &[(String, Vec<u8>)],
    ) -> Result<(), Failure> {
        let args: Vec<&[u8]> = entries
            .iter()
            .flat_map(|(k, v)| [k.as_bytes(), v.as_slice()])
            .collect();
        self.write(&SET_MANY_SCRIPT, quota, scope, store, &args)
            .await
            .map(drop)
    }

    pub(crate) async fn delete_many(
        &self,
        scope: &Scope,
        store: &str,
        keys: &[String],
    ) -> Result<(), Failure> {
        let mut invocation = DELETE_MANY_SCRIPT.key(store_key(scope, store));
        invocation.key(usage_key(&scope.tenant));
        for key in keys {
            invocation.arg(key);
        }
        let _: (i64, i64) = invocation
            .invoke_async(&mut self.connection().await?)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub(crate) async fn get_many(
        &self,
        scope: &Scope,
        store: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, Failure> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = GET_MANY_SCRIPT.key(store_key(scope, store));
        invocation.arg(MAX_BATCH_BYTES);
        for key in keys {
            invocation.arg(key);
        }
        let values: Option<Vec<Option<Vec<u8>>>> = invocation
            .invoke_async(&mut self.connection().await?)
            .await
            .map_err(unavailable)?;
        values.ok_or_else(crate::batch_too_large)
    }

    /// Sets `key` to what `next` makes of its current value, if that value
    /// is still current when written; `next` answering `None` leaves it.
    async fn swap_with<T>(
        &self,
        quota: &Quota,
        scope: &Scope,
        store: &str,
        key: &str,
        mut next: impl FnMut(Option<&[u8]>) -> Result<Option<(Vec<u8>, T)>, Failure>,
    ) -> Result<Option<T>, Failure> {
        for _ in 0..MAX_SWAP_ATTEMPTS {
            let current = self.get(scope, store, key).await?;
            let Some((value, answer)) = next(current.as_deref())? else {
                return Ok(None);
            };
            quota.check_value(&value)?;
            let (held, old): (&[u8], &[u8]) = match &current {
                Some(old) => (b"1", old),
                None => (b"0", b""),
            };
            let args = [key.as_bytes(), held, old, &value];
            if self.write(&SWAP_SCRIPT, quota, scope, store, &args).await? {
                return Ok(Some(answer));
            }
        }
        tracing::warn!(
            "key-value storage (redis): {key:?} changed under {MAX_SWAP_ATTEMPTS} attempts in a row"
        );
        Err(Failure::Unavailable)
    }

    pub(crate) async fn increment(
        &self,
        quota: &Quota,
        scope: &Scope,
        store: &str,
        key: &str,
        delta: i64,
    ) -> Result<i64, Failure> {
        let sum = self
            .swap_with(quota, scope, store, key, |current| {
                let sum = crate::add(crate::counter(key, current)?, delta)?;
                Ok(Some((sum.to_le_bytes().to_vec(), sum)))
            })
            .await?;
        sum.ok_or(Failure::Unavailable)
    }

    pub(crate) async fn swap_if(
        &self,
        quota: &Quota,
        scope: &Scope,
        store: &str,
        key: &str,
        expected: Option<&[u8; 32]>,
        value: &[u8],
    ) -> Result<bool, Failure> {
        let swapped = self
            .swap_with(quota, scope, store, key, |current| {
                let still = current.map(crate::value_digest).as_ref() == expected;
                Ok(still.then(|| (value.to_vec(), ())))
            })
            .await?;
        Ok(swapped.is_some())
    }

    /// The hashes whose names start with `prefix`.
    async fn stores_under(&self, prefix: &str) -> Result<Vec<String>, Failure> {
        let mut connection = self.connection().await?;
        let mut found = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(glob_prefix(prefix))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await
                .map_err(unavailable)?;
            found.extend(keys.into_iter().filter(|k| k.starts_with(prefix)));
            if next == 0 {
                return Ok(found);
            }
            cursor = next;
        }
    }

    pub(crate) async fn forget_app(&self, scope: &Scope) -> Result<(), Failure> {
        let prefix = store_key(scope, "");
        for hash in self.stores_under(&prefix).await? {
            let _: (i64, i64) = FORGET_SCRIPT
                .key(hash)
                .key(usage_key(&scope.tenant))
                .invoke_async(&mut self.connection().await?)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    pub(crate) async fn forget_tenant(&self, tenant: &str) -> Result<(), Failure> {
        let mut connection = self.connection().await?;
        for hash in self.stores_under(&tenant_prefix(tenant)).await? {
            let _: () = connection.del(hash).await.map_err(unavailable)?;
        }
        let _: () = connection
            .del(usage_key(tenant))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub(crate) async fn usage(&self, tenant: &str) -> Result<Usage, Failure> {
        let (keys, bytes): (Option<u64>, Option<u64>) = redis::cmd("HMGET")
            .arg(usage_key(tenant))
            .arg("keys")
            .arg("bytes")
            .query_async(&mut self.connection().await?)
            .await
            .map_err(unavailable)?;
        Ok(Usage {
            keys: keys.unwrap_or(0),
            bytes: bytes.unwrap_or(0),
        })
    }
}
