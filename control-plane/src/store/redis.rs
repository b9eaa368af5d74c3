//! The cluster store: the same model in Redis. Keys (under `okra:`): `state`
//! (the JSON document), `version` (the global counter), `blob:<sha256>`.
//! Updates are compare-and-set in one Lua script (state, version and the
//! announcement on the `okra:changes` channel move together), retried when
//! another writer got there first. The change feed follows the channel and,
//! after every (re)connection, re-reads `version`, so a subscriber that
//! missed messages during a Redis restart or a network blip catches up.

use super::{
    Change, Store, StoreError, UpdateError, blob_hash, decode_state, encode_state, is_blob_hash,
    next_state,
};
use crate::model::State;
use async_trait::async_trait;
use futures::StreamExt as _;
use redis::AsyncCommands as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::AbortHandle;

const STATE_KEY: &str = "okra:state";
const VERSION_KEY: &str = "okra:version";
const BLOB_PREFIX: &str = "okra:blob:";
/// Where every new version number is published.
pub const CHANGES_CHANNEL: &str = "okra:changes";

/// Sets state and version only if the version is still the one read.
const COMPARE_AND_SET: &str = r"
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current ~= tonumber(ARGV[1]) then return -1 end
redis.call('SET', KEYS[1], ARGV[2])
local next = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[3], next)
return next
";

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
}

fn redis_error(e: redis::RedisError) -> StoreError {
    StoreError::Redis(e.to_string())
}

impl RedisStore {
    /// Connects lazily: a gateway may start while Redis is down and serve
    /// once it is up.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::BadUrl(format!("--store {url:?}: {e}")))?;
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
        })
    }
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
        let mut connection = self.connection.clone();
        let (state, version): (Option<Vec<u8>>, Option<u64>) = redis::pipe()
            .get(STATE_KEY)
            .get(VERSION_KEY)
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        let mut state = match state {
            Some(bytes) => decode_state(&bytes)?,
            None => State::default(),
        };
        state.version = version.unwrap_or(0);
        Ok(state)
    }

    async fn version(&self) -> Result<u64, StoreError> {
        read_version(&mut self.connection.clone()).await
    }

    async fn update(&self, change: Change<'_>) -> Result<State, UpdateError> {
        let script = redis::Script::new(COMPARE_AND_SET);
        let mut connection = self.connection.clone();
        loop {
            let read = self.load().await?;
            let expected = read.version;
            let state = next_state(read, change)?;
            let bytes = encode_state(&state)?;
            let written: i64 = script
                .key(STATE_KEY)
                .key(VERSION_KEY)
                .arg(expected)
                .arg(bytes)
                .arg(CHANGES_CHANNEL)
                .invoke_async(&mut connection)
                .await
                .map_err(redis_error)?;
            if written >= 0 {
                announce(&self.feed, written as u64);
                return Ok(state);
            }
            tracing::debug!("concurrent store update; retrying");
        }
    }

    async fn put_blob(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let hash = blob_hash(bytes);
        let mut connection = self.connection.clone();
        let _: () = redis::cmd("SET")
            .arg(format!("{BLOB_PREFIX}{hash}"))
            .arg(bytes)
            .arg("NX")
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(hash)
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
        self.url.clone()
    }
}
