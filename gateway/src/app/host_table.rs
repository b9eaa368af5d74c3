//! The stored apps' hostnames, split into shards that snapshots share: a
//! new snapshot that changes a few hosts copies only their shards, so
//! swapping one in costs what changed, not the number of apps served.

use std::collections::HashMap;
use std::sync::Arc;

/// How many shards: a change copies about 1/SHARDS of the table.
const SHARDS: usize = 64;

/// Hostname (lowercase, no port) to what serves it (an `Arc<App>`).
#[derive(Clone)]
pub(crate) struct HostTable<V> {
    shards: Vec<Arc<HashMap<String, V>>>,
}

impl<V> Default for HostTable<V> {
    fn default() -> Self {
        HostTable {
            shards: (0..SHARDS).map(|_| Arc::default()).collect(),
        }
    }
}

/// FNV-1a: cheap, and enough to spread hostnames over the shards.
fn shard_of(host: &str) -> usize {
    let hash = host.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % SHARDS as u64) as usize
}

impl<V: Clone> HostTable<V> {
    pub(crate) fn get(&self, host: &str) -> Option<&V> {
        self.shards[shard_of(host)].get(host)
    }

    /// Serves `app` at `host`; copies the host's shard if a snapshot shares it.
    pub(crate) fn insert(&mut self, host: String, app: V) -> Option<V> {
        Arc::make_mut(&mut self.shards[shard_of(&host)]).insert(host, app)
    }

    pub(crate) fn remove(&mut self, host: &str) -> Option<V> {
        let shard = &mut self.shards[shard_of(host)];
        if !shard.contains_key(host) {
            return None;
        }
        Arc::make_mut(shard).remove(host)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum()
    }

    /// Whether `other` shares this table's shard for `host` (no copy made).
    #[cfg(test)]
    fn shares_shard_with(&self, other: &HostTable<V>, host: &str) -> bool {
        let i = shard_of(host);
        Arc::ptr_eq(&self.shards[i], &other.shards[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_copies_only_the_shard_it_touches() {
        let mut table = HostTable::default();
        for i in 0..1000 {
            table.insert(format!("a{i}.example"), i);
        }
        let snapshot = table.clone();
        table.insert("new.example".into(), 1000);
        assert!(table.get("new.example").is_some());
        assert!(
            snapshot.get("new.example").is_none(),
            "the snapshot is unchanged"
        );
        let untouched = (0..1000)
            .map(|i| format!("a{i}.example"))
            .find(|h| shard_of(h) != shard_of("new.example"))
            .unwrap();
        assert!(table.shares_shard_with(&snapshot, &untouched));
        assert!(!table.shares_shard_with(&snapshot, "new.example"));
        assert_eq!(table.remove("a1.example"), Some(1));
        assert_eq!((table.len(), snapshot.len()), (1000, 1000));
    }
}
