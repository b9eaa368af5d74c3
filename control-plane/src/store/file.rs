//! The single-node store: a data directory holding
//! - `tenants/<name>.json`, one record per tenant;
//! - `domains/<domain>`, whose content is the `tenant/app` that holds it;
//! - `changes.log`, one `<version> <tenant>` line per change (the version is
//!   its last line), kept to the last [`LOG_KEEP`] versions;
//! - `blobs/<sha256>`.
//!
//! A change writes its domain claims (created exclusively), then the
//! tenant's record (a temporary file fsynced and renamed over the old one),
//! then its log line (appended and fsynced), then drops released domains.
//! A crash in between is repaired at the next open: records newer than the
//! log get their lines, and domain files that no record backs are removed.
//! Processes writing one data directory take turns through a lock file (a
//! gateway and its replacement in a graceful upgrade); the change feed is
//! in-process, and other processes notice by polling `version`.
//!
//! A data directory written by an earlier Okra (one `state.json`) is split
//! into this layout when it is opened, and `state.json` is kept as
//! `state.json.migrated`.

use super::{
    Changes, LOG_KEEP, Rejection, Store, StoreError, TenantChange, UpdateError, blob_hash,
    changed_after, decode_tenant, domain_taken, encode_tenant, is_blob_hash, log_line, owned_by,
    parse_log_line, plan,
};
use crate::model::{State, TenantRecord, validate_name};
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, watch};

const TENANTS_DIR: &str = "tenants";
const DOMAINS_DIR: &str = "domains";
const BLOBS_DIR: &str = "blobs";
const LOG_FILE: &str = "changes.log";
/// Held while a process changes the directory.
const LOCK_FILE: &str = ".lock";
/// The whole-document file of earlier versions.
const LEGACY_STATE: &str = "state.json";

/// The file store.
pub struct FileStore {
    dir: PathBuf,
    /// Serialises changes within this process.
    writer: Mutex<()>,
    feed: watch::Sender<u64>,
}

impl FileStore {
    /// Opens (creating if needed) the data directory, migrating an old
    /// `state.json` and repairing what a crash mid-change left behind.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let io = |e: std::io::Error| StoreError::Io(format!("{}: {e}", dir.display()));
        for sub in [TENANTS_DIR, DOMAINS_DIR, BLOBS_DIR] {
            std::fs::create_dir_all(dir.join(sub)).map_err(io)?;
        }
        let _locked = lock_dir(dir)?;
        remove_stale_temporaries(dir).map_err(io)?;
        migrate_legacy_state(dir)?;
        let version = repair(dir)?;
        let store = FileStore {
            dir: dir.to_path_buf(),
            writer: Mutex::new(()),
            feed: watch::channel(0).0,
        };
        store.feed.send_replace(version);
        Ok(store)
    }

    /// The data directory this store keeps its files in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait]
impl Store for FileStore {
    async fn load(&self) -> Result<State, StoreError> {
        let dir = self.dir.clone();
        blocking(move || {
            let version = read_log(&dir)?.last().map_or(0, |(v, _)| *v);
            let mut state = State {
                version,
                ..State::default()
            };
            for record in read_all_tenants(&dir)? {
                state.tenants.insert(record.name.clone(), record);
            }
            Ok(state)
        })
        .await
    }

    async fn version(&self) -> Result<u64, StoreError> {
        let dir = self.dir.clone();
        blocking(move || last_version(&dir)).await
    }

    async fn tenant(&self, name: &str) -> Result<Option<TenantRecord>, StoreError> {
        let Some(path) = tenant_path(&self.dir, name) else {
            return Ok(None);
        };
        blocking(move || read_tenant(&path)).await
    }

    async fn changes_since(&self, version: u64) -> Result<Option<Changes>, StoreError> {
        let dir = self.dir.clone();
        blocking(move || {
            let log = read_log_after(&dir, version)?;
            let current = log.last().map_or(version, |(v, _)| *v);
            let Some(names) = changed_after(&log, version, current) else {
                return Ok(None);
            };
            let mut changes = Changes {
                version: current,
                ..Changes::default()
            };
            for name in names {
                let record = match tenant_path(&dir, &name) {
                    Some(path) => read_tenant(&path)?,
                    None => None,
                };
                changes.tenants.insert(name, record);
            }
            Ok(Some(changes))
        })
        .await
    }

    async fn update_tenant(
        &self,
        name: &str,
        change: TenantChange<'_>,
    ) -> Result<Option<TenantRecord>, UpdateError> {
        let Some(path) = tenant_path(&self.dir, name) else {
            return Err(Rejection::Invalid {
                code: "invalid_name",
                message: format!("{name:?} is not a tenant name"),
            }
            .into());
        };
        let _writer = self.writer.lock().await;
        // Another process writing the same directory waits its turn. The
        // lock moves into the write below: if this task is cancelled (the
        // process shutting down) while that write runs on its own thread,
        // the lock is held until the write is done, not dropped with the task.
        let locked = {
            let dir = self.dir.clone();
            blocking(move || lock_dir(&dir)).await?
        };
        let (version, current) = {
            let dir = self.dir.clone();
            let path = path.clone();
            blocking(move || Ok((last_version(&dir)?, read_tenant(&path)?))).await?
        };
        let next = version + 1;
        let plan = plan(name, current, change, next)?;
        let dir = self.dir.clone();
        let tenant = name.to_string();
        let record = plan.record.clone();
        blocking(move || {
            let _locked = locked;
            let created = match claim_domains(&dir, &tenant, &plan.claimed)? {
                Ok(created) => created,
                Err(rejection) => return Ok(Err(rejection)),
            };
            let written = (|| {
                match &plan.record {
                    Some(record) => write_atomic(&path, &encode_tenant(record)?)?,
                    None => remove_if_present(&path)?,
                }
                append_log(&dir, next, &tenant)
            })();
            if let Err(e) = written {
                // Nothing of the change stays: the claims it made go too.
                for claim in created {
                    let _ = remove_if_present(&claim);
                }
                return Err(e);
            }
            for domain in &plan.released {
                release_domain(&dir, domain, &tenant)?;
            }
            Ok(Ok(()))
        })
        .await?
        .map_err(UpdateError::Rejected)?;
        self.feed.send_replace(next);
        Ok(record)
    }

    async fn put_blob(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let hash = blob_hash(bytes);
        let path = self.dir.join(BLOBS_DIR).join(&hash);
        let bytes = bytes.to_vec();
        blocking(move || {
            // Stored again: its grace before garbage collection restarts. If
            // the collector took it in between, it is written anew.
            let touched = std::fs::File::options()
                .append(true)
                .open(&path)
                .and_then(|f| f.set_modified(std::time::SystemTime::now()));
            if touched.is_ok() && path.exists() {
                return Ok(());
            }
            write_atomic(&path, &bytes)
        })
        .await?;
        Ok(hash)
    }

    async fn delete_unreferenced_blobs(
        &self,
        referenced: &BTreeSet<String>,
        grace: Duration,
    ) -> Result<usize, StoreError> {
        let blobs = self.dir.join(BLOBS_DIR);
        let referenced = referenced.clone();
        blocking(move || {
            let mut deleted = 0;
            let io = |e| io_error(&blobs, e);
            for entry in std::fs::read_dir(&blobs).map_err(io)? {
                let entry = entry.map_err(io)?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if !is_blob_hash(&name) || referenced.contains(&name) {
                    continue;
                }
                let age = |path: &Path| {
                    std::fs::metadata(path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .unwrap_or_default()
                };
                if age(&entry.path()) < grace {
                    continue;
                }
                // Moved aside first, so a put_blob from now on writes it
                // anew, then looked at again: one that touched it just
                // before the move has it put back.
                let aside = blobs.join(format!(".{name}.collecting"));
                if std::fs::rename(entry.path(), &aside).is_err() {
                    continue;
                }
                if age(&aside) >= grace {
                    remove_if_present(&aside)?;
                    deleted += 1;
                } else {
                    std::fs::rename(&aside, entry.path()).map_err(|e| io_error(&aside, e))?;
                }
            }
            Ok(deleted)
        })
        .await
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
            Err(e) => Err(io_error(&path, e)),
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

fn io_error(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("{}: {e}", path.display()))
}

/// Holds the data directory's lock file exclusively until dropped, so the
/// processes that write one directory (a gateway and its replacement in a
/// graceful upgrade, or a tool) change it one at a time.
fn lock_dir(dir: &Path) -> Result<std::fs::File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io_error(&path, e))?;
    file.lock().map_err(|e| io_error(&path, e))?;
    Ok(file)
}

/// Where tenant `name`'s record lives; `None` for a name that is not a valid
/// tenant name (and so could not be a safe file name).
fn tenant_path(dir: &Path, name: &str) -> Option<PathBuf> {
    validate_name("tenant", name).ok()?;
    Some(dir.join(TENANTS_DIR).join(format!("{name}.json")))
}

/// Where a domain's index entry lives; domains are normalised hostnames
/// (`a-z`, `0-9`, `-`, `.`), which are safe file names.
fn domain_path(dir: &Path, domain: &str) -> Result<PathBuf, StoreError> {
    let safe = !domain.is_empty()
        && !domain.starts_with('.')
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !safe {
        return Err(StoreError::Corrupt(format!(
            "domain {domain:?} is not a normalised hostname"
        )));
    }
    Ok(dir.join(DOMAINS_DIR).join(domain))
}

fn read_tenant(path: &Path) -> Result<Option<TenantRecord>, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => decode_tenant(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, e)),
    }
}

fn read_all_tenants(dir: &Path) -> Result<Vec<TenantRecord>, StoreError> {
    let tenants = dir.join(TENANTS_DIR);
    let mut records = Vec::new();
    for entry in std::fs::read_dir(&tenants).map_err(|e| io_error(&tenants, e))? {
        let path = entry.map_err(|e| io_error(&tenants, e))?.path();
        if path.extension().is_some_and(|e| e == "json") {
            records.extend(read_tenant(&path)?);
        }
    }
    Ok(records)
}

/// Every log entry, oldest first.
fn read_log(dir: &Path) -> Result<Vec<(u64, String)>, StoreError> {
    let path = dir.join(LOG_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(&path, e)),
    };
    Ok(text
        .lines()
        .filter_map(parse_log_line)
        .map(|(v, t)| (v, t.to_string()))
        .collect())
}

/// The log entries after `version` (oldest first), and at least the one
/// before them when there is one, reading only as much of the file's end as
/// that takes: what a reader one or two changes behind needs is a few lines.
fn read_log_after(dir: &Path, version: u64) -> Result<Vec<(u64, String)>, StoreError> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let path = dir.join(LOG_FILE);
    let mut file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(&path, e)),
    };
    let len = file.metadata().map_err(|e| io_error(&path, e))?.len();
    let mut tail_bytes: u64 = 4096;
    loop {
        let start = len.saturating_sub(tail_bytes);
        file.seek(SeekFrom::Start(start))
            .map_err(|e| io_error(&path, e))?;
        let mut tail = String::new();
        file.read_to_string(&mut tail)
            .map_err(|e| io_error(&path, e))?;
        // A tail that starts mid-file starts mid-line: skip that line.
        let whole_lines = if start == 0 {
            tail.as_str()
        } else {
            tail.split_once('\n').map_or("", |(_, rest)| rest)
        };
        let entries: Vec<(u64, String)> = whole_lines
            .lines()
            .filter_map(parse_log_line)
            .map(|(v, t)| (v, t.to_string()))
            .collect();
        let reaches_back = entries.first().is_some_and(|(v, _)| *v <= version.max(1));
        if start == 0 || reaches_back {
            return Ok(entries);
        }
        tail_bytes *= 4;
    }
}

/// The version of the last log line, reading only the end of the file.
fn last_version(dir: &Path) -> Result<u64, StoreError> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let path = dir.join(LOG_FILE);
    let mut file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_error(&path, e)),
    };
    let len = file.metadata().map_err(|e| io_error(&path, e))?.len();
    // A line is at most a u64, a space, a 63-byte name and a newline.
    let start = len.saturating_sub(128);
    file.seek(SeekFrom::Start(start))
        .map_err(|e| io_error(&path, e))?;
    let mut tail = String::new();
    file.read_to_string(&mut tail)
        .map_err(|e| io_error(&path, e))?;
    Ok(tail
        .lines()
        .rev()
        .find_map(parse_log_line)
        .map_or(0, |(v, _)| v))
}

fn append_log(dir: &Path, version: u64, tenant: &str) -> Result<(), StoreError> {
    let path = dir.join(LOG_FILE);
    let io = |e| io_error(&path, e);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io)?;
    writeln!(file, "{}", log_line(version, tenant)).map_err(io)?;
    file.sync_all().map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    // Compact now and then: about 20 bytes a line, so twice what is kept.
    if len > (2 * LOG_KEEP * 24) as u64 {
        compact_log(dir)?;
    }
    Ok(())
}

/// Keeps the last [`LOG_KEEP`] lines.
fn compact_log(dir: &Path) -> Result<(), StoreError> {
    let log = read_log(dir)?;
    let keep = &log[log.len().saturating_sub(LOG_KEEP)..];
    let text: String = keep.iter().map(|(v, t)| log_line(*v, t) + "\n").collect();
    write_atomic(&dir.join(LOG_FILE), text.as_bytes())
}

/// Claims each domain for its owner: a new entry is created exclusively, an
/// entry this tenant already holds is rewritten, and one another tenant
/// holds refuses the change, undoing the claims made so far.
/// Returns the entries it created, so a change that fails after can take
/// them back.
fn claim_domains(
    dir: &Path,
    tenant: &str,
    claimed: &BTreeMap<String, String>,
) -> Result<Result<Vec<PathBuf>, Rejection>, StoreError> {
    let mut created = Vec::new();
    for (domain, owner) in claimed {
        let path = domain_path(dir, domain)?;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut file) => {
                file.write_all(owner.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| io_error(&path, e))?;
                created.push(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = std::fs::read_to_string(&path).map_err(|e| io_error(&path, e))?;
                if !owned_by(&holder, tenant) {
                    for path in created {
                        remove_if_present(&path)?;
                    }
                    return Ok(Err(domain_taken(domain)));
                }
                write_atomic(&path, owner.as_bytes())?;
            }
            Err(e) => return Err(io_error(&path, e)),
        }
    }
    Ok(Ok(created))
}

/// Drops a domain's entry if `tenant` still holds it.
fn release_domain(dir: &Path, domain: &str, tenant: &str) -> Result<(), StoreError> {
    let path = domain_path(dir, domain)?;
    match std::fs::read_to_string(&path) {
        Ok(holder) if owned_by(&holder, tenant) => remove_if_present(&path),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(&path, e)),
    }
}

fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(path, e)),
    }
}

/// Makes the log and the domain index agree with the records after a crash
/// mid-change; returns the current version.
fn repair(dir: &Path) -> Result<u64, StoreError> {
    let records = read_all_tenants(dir)?;
    let mut version = last_version(dir)?;
    // A record written after the last log line: its line was lost.
    let mut newer: Vec<&TenantRecord> = records.iter().filter(|r| r.version > version).collect();
    newer.sort_by_key(|r| r.version);
    for record in newer {
        append_log(dir, record.version, &record.name)?;
        version = record.version;
    }
    // The domain index holds exactly what the records hold.
    let mut wanted = BTreeMap::new();
    for record in &records {
        wanted.extend(super::domain_owners(record));
    }
    let domains = dir.join(DOMAINS_DIR);
    for entry in std::fs::read_dir(&domains).map_err(|e| io_error(&domains, e))? {
        let entry = entry.map_err(|e| io_error(&domains, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let holder = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if wanted.get(&name) != Some(&holder) {
            remove_if_present(&entry.path())?;
        }
    }
    for (domain, owner) in &wanted {
        let path = domain_path(dir, domain)?;
        if !path.exists() {
            write_atomic(&path, owner.as_bytes())?;
        }
    }
    Ok(version)
}

/// Splits an earlier Okra's `state.json` into one record per tenant.
fn migrate_legacy_state(dir: &Path) -> Result<(), StoreError> {
    let legacy = dir.join(LEGACY_STATE);
    let bytes = match std::fs::read(&legacy) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(&legacy, e)),
    };
    let state: State = serde_json::from_slice(&bytes)
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", legacy.display())))?;
    let tenants = state.tenants.len();
    for (name, mut record) in state.tenants {
        let Some(path) = tenant_path(dir, &name) else {
            return Err(StoreError::Corrupt(format!(
                "{}: tenant {name:?} is not a valid name",
                legacy.display()
            )));
        };
        record.name = name;
        record.version = state.version;
        write_atomic(&path, &encode_tenant(&record)?)?;
    }
    if state.version > last_version(dir)? {
        // Readers behind this version cannot tell what changed: reload all.
        append_log(dir, state.version, super::EVERYTHING)?;
    }
    std::fs::rename(&legacy, dir.join(format!("{LEGACY_STATE}.migrated")))
        .map_err(|e| io_error(&legacy, e))?;
    tracing::info!(dir = %dir.display(), tenants, "split state.json into one record per tenant");
    Ok(())
}

/// Writes `bytes` to `path` so that readers see the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
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
    result.map_err(|e| io_error(path, e))
}

/// Temporary files a crash left behind are never the state; drop them.
fn remove_stale_temporaries(dir: &Path) -> std::io::Result<()> {
    for sub in [
        dir.to_path_buf(),
        dir.join(TENANTS_DIR),
        dir.join(DOMAINS_DIR),
        dir.join(BLOBS_DIR),
    ] {
        for entry in std::fs::read_dir(sub)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // A crash's temporaries, and blobs the collector had moved aside.
            if name.starts_with('.') && (name.contains(".tmp.") || name.ends_with(".collecting")) {
                std::fs::remove_file(entry.path())?;
            }
        }
    }
    Ok(())
}
