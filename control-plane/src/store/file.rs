//! The single-node store: a data directory holding `state.json` and
//! `blobs/<sha256>`. Every write goes to a temporary file that is fsynced and
//! renamed over the old one (then the directory is fsynced), so a crash at any
//! moment leaves the old state or the new one, never a mix. Blobs are written
//! before the state that names them. One process writes a data directory; the
//! change feed is in-process, and other processes notice by polling `version`.

use super::{
    Change, Store, StoreError, UpdateError, blob_hash, decode_state, encode_state, is_blob_hash,
    next_state,
};
use crate::model::State;
use async_trait::async_trait;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Mutex, watch};

const STATE_FILE: &str = "state.json";
const BLOBS_DIR: &str = "blobs";

/// The file store.
pub struct FileStore {
    dir: PathBuf,
    /// Serialises read-modify-write cycles within this process.
    writer: Mutex<()>,
    feed: watch::Sender<u64>,
}

impl FileStore {
    /// Opens (creating if needed) the data directory.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let io = |e: std::io::Error| StoreError::Io(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir.join(BLOBS_DIR)).map_err(io)?;
        remove_stale_temporaries(dir).map_err(io)?;
        let store = FileStore {
            dir: dir.to_path_buf(),
            writer: Mutex::new(()),
            feed: watch::channel(0).0,
        };
        let version = read_state(&store.dir)?.version;
        store.feed.send_replace(version);
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait]
impl Store for FileStore {
    async fn load(&self) -> Result<State, StoreError> {
        let dir = self.dir.clone();
        blocking(move || read_state(&dir)).await
    }

    async fn version(&self) -> Result<u64, StoreError> {
        Ok(self.load().await?.version)
    }

    async fn update(&self, change: Change<'_>) -> Result<State, UpdateError> {
        let _writer = self.writer.lock().await;
        let state = next_state(self.load().await?, change)?;
        let bytes = encode_state(&state)?;
        let path = self.dir.join(STATE_FILE);
        blocking(move || write_atomic(&path, &bytes)).await?;
        self.feed.send_replace(state.version);
        Ok(state)
    }

    async fn put_blob(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let hash = blob_hash(bytes);
        let path = self.dir.join(BLOBS_DIR).join(&hash);
        let bytes = bytes.to_vec();
        blocking(move || {
            if path.exists() {
                return Ok(());
            }
            write_atomic(&path, &bytes)
        })
        .await?;
        Ok(hash)
    }

    async fn get_blob(&self, hash: &str) -> Result<Vec<u8>, StoreError> {
        if !is_blob_hash(hash) {
            return Err(StoreError::MissingBlob(hash.to_string()));
        }
        let path = self.dir.join(BLOBS_DIR).join(hash);
        let name = hash.to_string();
        blocking(move || match std::fs::read(&path) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::MissingBlob(name))
            }
            Err(e) => Err(StoreError::Io(format!("{}: {e}", path.display()))),
        })
        .await
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.feed.subscribe()
    }

    fn describe(&self) -> String {
        format!("file:{}", self.dir.display())
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io(format!("store task failed: {e}")))?
}

fn read_state(dir: &Path) -> Result<State, StoreError> {
    let path = dir.join(STATE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => decode_state(&bytes)
            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(StoreError::Io(format!("{}: {e}", path.display()))),
    }
}

/// Writes `bytes` to `path` so that readers see the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let io = |e: std::io::Error| StoreError::Io(format!("{}: {e}", path.display()));
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temp = dir.join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(io)
}

/// Temporary files a crash left behind are never the state; drop them.
fn remove_stale_temporaries(dir: &Path) -> std::io::Result<()> {
    for sub in [dir.to_path_buf(), dir.join(BLOBS_DIR)] {
        for entry in std::fs::read_dir(sub)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.contains(".tmp.") {
                std::fs::remove_file(entry.path())?;
            }
        }
    }
    Ok(())
}
