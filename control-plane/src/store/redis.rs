//! The cluster store: the same model in Redis. Keys (under `okra:`):
//! - `tenant:<name>`: a tenant's record (JSON), and `tenants`, the set of names;
//! - `domain:<domain>`: the `tenant/app` that holds a custom domain;
//! - `version`: the global counter; `log`: `<version> <tenant>` entries,
//!   newest first, trimmed to [`LOG_KEEP`];
//! - `blob:<sha256>`.
//!
//! A change is one Lua script that checks the version it read is still
//! current and no other tenant holds a domain it claims, then writes the
//! record, the domain entries, the version and the log entry, and announces
//! the version on the `okra:changes` channel; it is retried when another
//! writer got there first. The change feed follows the channel and, after
//! every (re)connection, re-reads `version`, so a subscriber that missed
//! messages during a Redis restart or a network blip catches up.
//!
//! A Redis written by an earlier Okra (one `okra:state` document) is split
//! into this layout the first time the store reaches it, and the document is
//! kept as `okra:state:migrated`.

use super::{
    Changes, EVERYTHING, LOG_KEEP, Rejection, Store, StoreError, TenantChange, UpdateError,
    blob_hash, changed_after, decode_tenant, domain_taken, encode_tenant, is_blob_hash,
    parse_log_line, plan,
};
use crate::model::{State, TenantRecord, validate_name};
use async_trait::async_trait;
use futures::StreamExt as _;
use redis::AsyncCommands as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::AbortHandle;

const VERSION_KEY: &str = "okra:version";
const TENANTS_KEY: &str = "okra:tenants";
const TENANT_PREFIX: &str = "okra:tenant:";
const DOMAIN_PREFIX: &str = "okra:domain:";
const LOG_KEY: &str = "okra:log";
const BLOB_PREFIX: &str = "okra:blob:";
/// When each blob was last stored (unix seconds), for garbage collection.
const BLOB_TIMES_KEY: &str = "okra:blobs";
/// The whole-document key of earlier versions.
const LEGACY_STATE_KEY: &str = "okra:state";
/// Where every new version number is published.
pub const CHANGES_CHANNEL: &str = "okra:changes";

/// One tenant change. KEYS: version, the tenant's key, the tenants set, the
/// log, then the claimed domains' keys, then the released ones. ARGV: the
/// version read, the record (empty to delete), the tenant, the number of
/// claims, the channel, how much log to keep, then each claim's owner.
/// Returns `{version}`, `{-1}` when the version moved, `{-2, i}` when
/// another tenant holds claimed domain `i`.
const UPDATE_TENANT: &str = r"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current ~= tonumber(ARGV[1]) then return {-1} end
local tenant = ARGV[3]
local prefix = tenant .. '/'
local claims = tonumber(ARGV[4])
for i = 1, claims do
  local holder = redis.call('GET', KEYS[4 + i])
  if holder and string.sub(holder, 1, #prefix) ~= prefix then return {-2, i} end
end
for i = 1, claims do redis.call('SET', KEYS[4 + i], ARGV[6 + i]) end
for i = 5 + claims, #KEYS do
  local holder = redis.call('GET', KEYS[i])
  if holder and string.sub(holder, 1, #prefix) == prefix then redis.call('DEL', KEYS[i]) end
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[2])
  redis.call('SREM', KEYS[3], tenant)
else
  redis.call('SET', KEYS[2], ARGV[2])
  redis.call('SADD', KEYS[3], tenant)
end
local next = redis.call('INCR', KEYS[1])
redis.call('LPUSH', KEYS[4], next .. ' ' .. tenant)
redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[6]) - 1)
redis.call('PUBLISH', ARGV[5], next)
return {next}
";

/// The version and the log entries after ARGV[1] (newest first), plus the
/// one before them: only as many as the reader is behind, not the whole log.
const LOG_AFTER: &str = r"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local behind = current - tonumber(ARGV[1])
if behind <= 0 then return {current, {}} end
return {current, redis.call('LRANGE', KEYS[2], 0, behind)}
";

/// Deletes blob KEYS[1] if its time in KEYS[2] (member ARGV[1]) is still at
/// or before ARGV[2]; 1 if it went.
const DELETE_IF_OLD: &str = r"
local at = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not at or tonumber(at) > tonumber(ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
";

/// Everything at one version: `{version, name, record, name, record, ...}`.
const LOAD_ALL: &str = r"
local out = {redis.call('GET', KEYS[1]) or '0'}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local record = redis.call('GET', ARGV[1] .. name)
  if record then
    table.insert(out, name)
    table.insert(out, record)
  end
end
return out
";

/// How many times one change is tried against concurrent writers.
const MAX_UPDATE_ATTEMPTS: u32 = 100;

/// A random byte, for backoff jitter.
fn rand_u8() -> u8 {
    let mut byte = [0u8];
    let _ = getrandom::fill(&mut byte);
    byte[0]
}

/// How often the change feed reads the version besides listening.
const VERSION_CHECK: Duration = Duration::from_millis(500);
/// How long the change feed waits before reconnecting.
const RECONNECT_DELAY: Duration = Duration::from_millis(200);

/// The Redis store.
pub struct RedisStore {
    url: String,
    connection: ConnectionManager,
    feed: watch::Sender<u64>,
    follower: AbortHandle,
    /// Set once an old `okra:state` is known to be migrated (or absent).
    migrated: AtomicBool,
}

fn redis_error(e: redis::RedisError) -> StoreError {
    StoreError::Redis(e.to_string())
}

impl RedisStore {
    /// Connects lazily: a gateway may start while Redis is down and serve
    /// once it is up.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::BadUrl(format!("--store {:?}: {e}", super::redacted(url))))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let connection =
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(redis_error)?;
        let feed = watch::channel(0).0;
        let follower =
            tokio::spawn(follow_changes(client, connection.clone(), feed.clone())).abort_handle();
        Ok(RedisStore {
            url: url.to_string(),
            connection,
            feed,
            follower,
            migrated: AtomicBool::new(false),
        })
    }

    /// A connection, after making sure an old single-document layout has
    /// been split into tenant keys.
    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let mut connection = self.connection.clone();
        if !self.migrated.load(Ordering::Acquire) {
            migrate_legacy_state(&mut connection).await?;
            self.migrated.store(true, Ordering::Release);
        }
        Ok(connection)
    }
}

/// Splits an earlier Okra's `okra:state` document into one key per tenant
/// and the domain index, in one transaction, and keeps the document as
/// `okra:state:migrated`. Two processes doing it at once write the same keys.
async fn migrate_legacy_state(connection: &mut ConnectionManager) -> Result<(), StoreError> {
    let legacy: Option<Vec<u8>> = connection
        .get(LEGACY_STATE_KEY)
        .await
        .map_err(redis_error)?;
    let Some(legacy) = legacy else {
        return Ok(());
    };
    let state: State = serde_json::from_slice(&legacy)
        .map_err(|e| StoreError::Corrupt(format!("{LEGACY_STATE_KEY}: {e}")))?;
    let version = read_version(connection).await?;
    let mut pipe = redis::pipe();
    pipe.atomic();
    for (name, record) in &state.tenants {
        let mut record = record.clone();
        record.name = name.clone();
        record.version = version;
        for (domain, owner) in super::domain_owners(&record) {
            pipe.set(domain_key(&domain), owner).ignore();
        }
        pipe.set(tenant_key(name), encode_tenant(&record)?)
            .ignore()
            .sadd(TENANTS_KEY, name)
            .ignore();
    }
    // Readers behind this version cannot tell what changed: reload all.
    pipe.lpush(LOG_KEY, format!("{version} {EVERYTHING}"))
        .ignore()
        .rename(LEGACY_STATE_KEY, format!("{LEGACY_STATE_KEY}:migrated"))
        .ignore();
    if let Err(e) = pipe.query_async::<()>(connection).await {
        // Another process may have migrated it between the read and the rename.
        let still_there: bool = connection
            .exists(LEGACY_STATE_KEY)
            .await
            .map_err(redis_error)?;
        return if still_there {
            Err(redis_error(e))
        } else {
            Ok(())
        };
    }
    tracing::info!(
        tenants = state.tenants.len(),
        "split okra:state into one record per tenant"
    );
    Ok(())
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

/// Raises the feed to `version` if it is newer.
fn announce(feed: &watch::Sender<u64>, version: u64) {
    feed.send_if_modified(|seen| {
        let newer = version > *seen;
        if newer {
            *seen = version;
        }
        newer
    });
}

async fn read_version(connection: &mut ConnectionManager) -> Result<u64, StoreError> {
    let version: Option<u64> = connection.get(VERSION_KEY).await.map_err(redis_error)?;
    Ok(version.unwrap_or(0))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn tenant_key(name: &str) -> String {
    format!("{TENANT_PREFIX}{name}")
}

fn domain_key(domain: &str) -> String {
    format!("{DOMAIN_PREFIX}{domain}")
}

/// Follows the changes channel for the life of the store. A pub/sub
/// connection does not always notice that Redis went away, so the version is
/// also read every [`VERSION_CHECK`]: that alone keeps the feed current, and
/// a read that fails and then succeeds again (Redis came back) makes the
/// follower resubscribe.
async fn follow_changes(
    client: redis::Client,
    mut connection: ConnectionManager,
    feed: watch::Sender<u64>,
) {
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(CHANGES_CHANNEL).await {
                Ok(()) => {
                    if let Ok(version) = read_version(&mut connection).await {
                        announce(&feed, version);
                    }
                    let mut messages = pubsub.on_message();
                    let mut lost = false;
                    loop {
                        tokio::select! {
                            message = messages.next() => match message {
                                Some(message) => {
                                    if let Ok(version) = message.get_payload::<u64>() {
                                        announce(&feed, version);
                                    }
                                }
                                None => break,
                            },
                            _ = tokio::time::sleep(VERSION_CHECK) => {
                                match read_version(&mut connection).await {
                                    Ok(version) => {
                                        announce(&feed, version);
                                        if lost {
                                            break;
                                        }
                                    }
                                    Err(_) => lost = true,
                                }
                            }
                        }
                    }
                    tracing::warn!("redis change feed disconnected; resubscribing");
                }
                Err(e) => tracing::warn!("redis change feed: subscribe: {e}"),
            },
            Err(e) => tracing::debug!("redis change feed: connect: {e}"),
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn load(&self) -> Result<State, StoreError> {
        let mut connection = self.connection().await?;
        let reply: Vec<Vec<u8>> = redis::Script::new(LOAD_ALL)
            .key(VERSION_KEY)
            .key(TENANTS_KEY)
            .arg(TENANT_PREFIX)
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        let mut parts = reply.into_iter();
        let version = parts
            .next()
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut state = State {
            version,
            ..State::default()
        };
        while let (Some(name), Some(record)) = (parts.next(), parts.next()) {
            let name = String::from_utf8_lossy(&name).into_owned();
            state.tenants.insert(name, decode_tenant(&record)?);
        }
        Ok(state)
    }

    async fn version(&self) -> Result<u64, StoreError> {
        read_version(&mut self.connection.clone()).await
    }

    async fn tenant(&self, name: &str) -> Result<Option<TenantRecord>, StoreError> {
        if validate_name("tenant", name).is_err() {
            return Ok(None);
        }
        let mut connection = self.connection().await?;
        let bytes: Option<Vec<u8>> = connection
            .get(tenant_key(name))
            .await
            .map_err(redis_error)?;
        bytes.map(|b| decode_tenant(&b)).transpose()
    }

    async fn changes_since(&self, version: u64) -> Result<Option<Changes>, StoreError> {
        let mut connection = self.connection().await?;
        let (current, entries): (u64, Vec<String>) = redis::Script::new(LOG_AFTER)
            .key(VERSION_KEY)
            .key(LOG_KEY)
            .arg(version)
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        let mut log: Vec<(u64, String)> = entries
            .iter()
            .filter_map(|line| parse_log_line(line))
            .map(|(v, t)| (v, t.to_string()))
            .collect();
        log.reverse();
        let Some(names) = changed_after(&log, version, current) else {
            return Ok(None);
        };
        let mut changes = Changes {
            version: current,
            ..Changes::default()
        };
        if !names.is_empty() {
            let keys: Vec<String> = names.iter().map(|n| tenant_key(n)).collect();
            let records: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                .arg(&keys)
                .query_async(&mut connection)
                .await
                .map_err(redis_error)?;
            for (name, record) in names.into_iter().zip(records) {
                changes
                    .tenants
                    .insert(name, record.map(|b| decode_tenant(&b)).transpose()?);
            }
        }
        Ok(Some(changes))
    }

    async fn update_tenant(
        &self,
        name: &str,
        change: TenantChange<'_>,
    ) -> Result<Option<TenantRecord>, UpdateError> {
        validate_name("tenant", name).map_err(|message| Rejection::Invalid {
            code: "invalid_name",
            message,
        })?;
        let script = redis::Script::new(UPDATE_TENANT);
        let mut connection = self.connection().await?;
        for attempt in 0..MAX_UPDATE_ATTEMPTS {
            if attempt > 0 {
                // Others got there first: back off a little, at random, so
                // a busy writer cannot keep everyone else retrying.
                let jitter = u64::from(rand_u8()) % (2 << attempt.min(6));
                tokio::time::sleep(Duration::from_millis(1 + jitter)).await;
            }
            let (version, current): (Option<u64>, Option<Vec<u8>>) = redis::pipe()
                .atomic()
                .get(VERSION_KEY)
                .get(tenant_key(name))
                .query_async(&mut connection)
                .await
                .map_err(redis_error)?;
            let version = version.unwrap_or(0);
            let current = current.map(|b| decode_tenant(&b)).transpose()?;
            let plan = plan(name, current, change, version + 1)?;
            let record = match &plan.record {
                Some(record) => encode_tenant(record)?,
                None => Vec::new(),
            };
            let mut invocation = script.prepare_invoke();
            invocation
                .key(VERSION_KEY)
                .key(tenant_key(name))
                .key(TENANTS_KEY)
                .key(LOG_KEY);
            for domain in plan.claimed.keys() {
                invocation.key(domain_key(domain));
            }
            for domain in &plan.released {
                invocation.key(domain_key(domain));
            }
            invocation
                .arg(version)
                .arg(record)
                .arg(name)
                .arg(plan.claimed.len())
                .arg(CHANGES_CHANNEL)
                .arg(LOG_KEEP);
            for owner in plan.claimed.values() {
                invocation.arg(owner);
            }
            let reply: Vec<i64> = invocation
                .invoke_async(&mut connection)
                .await
                .map_err(redis_error)?;
            match reply.as_slice() {
                [-1] => tracing::debug!(attempt, "concurrent store update; retrying"),
                [-2, index] => {
                    let domain = usize::try_from(*index - 1)
                        .ok()
                        .and_then(|i| plan.claimed.keys().nth(i))
                        .cloned()
                        .unwrap_or_default();
                    return Err(domain_taken(&domain).into());
                }
                [written] if *written > 0 => {
                    announce(&self.feed, *written as u64);
                    return Ok(plan.record);
                }
                other => {
                    return Err(StoreError::Redis(format!(
                        "unexpected reply to a tenant update: {other:?}"
                    ))
                    .into());
                }
            }
        }
        Err(StoreError::Redis(format!(
            "the store is too busy: {MAX_UPDATE_ATTEMPTS} concurrent writes in a row got there first"
        ))
        .into())
    }

    async fn put_blob(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let hash = blob_hash(bytes);
        let mut connection = self.connection.clone();
        // Stored again, a blob's grace before garbage collection restarts.
        let _: () = redis::pipe()
            .cmd("SET")
            .arg(format!("{BLOB_PREFIX}{hash}"))
            .arg(bytes)
            .arg("NX")
            .ignore()
            .zadd(BLOB_TIMES_KEY, &hash, unix_now())
            .ignore()
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(hash)
    }

    async fn delete_unreferenced_blobs(
        &self,
        referenced: &BTreeSet<String>,
        grace: Duration,
    ) -> Result<usize, StoreError> {
        let mut connection = self.connection().await?;
        let now = unix_now();
        let cutoff = now.saturating_sub(grace.as_secs());
        let mut keys: Vec<String> = Vec::new();
        let mut scan: redis::AsyncIter<String> = connection
            .scan_match(format!("{BLOB_PREFIX}*"))
            .await
            .map_err(redis_error)?;
        while let Some(key) = scan.next_item().await {
            keys.push(key.map_err(redis_error)?);
        }
        drop(scan);
        let mut deleted = 0;
        for key in keys {
            let Some(hash) = key.strip_prefix(BLOB_PREFIX) else {
                continue;
            };
            if !is_blob_hash(hash) || referenced.contains(hash) {
                continue;
            }
            let stored: Option<u64> = connection
                .zscore(BLOB_TIMES_KEY, hash)
                .await
                .map_err(redis_error)?;
            match stored {
                // A blob from before times were kept: its grace starts now.
                None => {
                    let _: () = connection
                        .zadd(BLOB_TIMES_KEY, hash, now)
                        .await
                        .map_err(redis_error)?;
                }
                Some(at) if at <= cutoff => {
                    // Checked again in the script: a put_blob since the
                    // read above renewed its time, and it stays.
                    let gone: i64 = redis::Script::new(DELETE_IF_OLD)
                        .key(&key)
                        .key(BLOB_TIMES_KEY)
                        .arg(hash)
                        .arg(cutoff)
                        .invoke_async(&mut connection)
                        .await
                        .map_err(redis_error)?;
                    deleted += usize::from(gone == 1);
                }
                Some(_) => {}
            }
        }
        Ok(deleted)
    }

    async fn get_blob(&self, hash: &str) -> Result<Vec<u8>, StoreError> {
        if !is_blob_hash(hash) {
            return Err(StoreError::MissingBlob(hash.to_string()));
        }
        let mut connection = self.connection.clone();
        let bytes: Option<Vec<u8>> = connection
            .get(format!("{BLOB_PREFIX}{hash}"))
            .await
            .map_err(redis_error)?;
        bytes.ok_or_else(|| StoreError::MissingBlob(hash.to_string()))
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.feed.subscribe()
    }

    fn describe(&self) -> String {
        super::redacted(&self.url)
    }
}
