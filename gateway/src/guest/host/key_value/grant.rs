//! What one component may reach of apps' key-value data (`okra_kv`): its
//! app's data, in the stores its manifest lists; and one instance's
//! key-value state.

use okra_kv::{KeyValue, Scope};
use std::collections::BTreeSet;
use std::sync::Arc;

/// What one component may reach: its app's data, in the stores its
/// manifest lists.
#[derive(Clone, Debug)]
pub(crate) struct KeyValueGrant {
    pub(crate) scope: Scope,
    pub(crate) stores: Arc<BTreeSet<String>>,
    pub(crate) backend: Arc<KeyValue>,
}

/// One instance's key-value state: its grant, and how many stores it has
/// open (host memory the guest's limit does not count, so capped).
pub(crate) struct KeyValueSession {
    pub(crate) grant: KeyValueGrant,
    pub(crate) open: usize,
}

impl KeyValueSession {
    pub(crate) fn new(grant: KeyValueGrant) -> Self {
        KeyValueSession { grant, open: 0 }
    }
}
