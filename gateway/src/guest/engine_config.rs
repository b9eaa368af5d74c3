//! How the engines are sized (`[runtime]` in the operator's configuration)
//! and the flags for it. Each flag's field is named after its key, so the
//! configuration merges a given flag by that key; defaults live only in
//! [`RuntimeConfig`]'s `Default`, and `--help` reads them from there.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// How the engine is sized. Every field is documented in the README.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Component instances alive at once across all tenants (pool slots),
    /// per engine.
    pub max_instances: u32,
    /// Largest linear memory any instance may have, in bytes. Each pool slot
    /// reserves this much address space (plus a guard), so slots × this is
    /// the engine's virtual-memory footprint.
    pub max_memory_bytes: u64,
    /// Epoch tick in milliseconds: the granularity of CPU budgets and yields.
    pub epoch_tick_ms: u64,
    /// Empty pool slots kept warm for reuse by the same component.
    pub max_unused_warm_slots: u32,
    /// Bytes of each linear memory kept mapped when its slot is freed and
    /// reset in place (only the pages the guest dirtied, found with Linux's
    /// `PAGEMAP_SCAN` where the kernel has it) instead of being handed back
    /// with `madvise`: the next instance in the slot takes no page faults on
    /// them. 0 turns it off.
    pub memory_keep_resident_bytes: u64,
    /// The same for each table.
    pub table_keep_resident_bytes: u64,
    /// Slots whose memory is handed back with one batch of `madvise` calls
    /// rather than one at a time.
    pub decommit_batch_size: u32,
    /// Where compiled components are kept across restarts (Wasmtime's cache,
    /// keyed by the wasm's hash and the engine's settings); none when unset.
    pub compile_cache_dir: Option<PathBuf>,
    /// How large the compile cache may grow before Wasmtime's hourly clean-up
    /// drops the least recently used entries (down to 70 % of it).
    pub compile_cache_max_bytes: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_instances: 1000,
            max_memory_bytes: 256 << 20,
            epoch_tick_ms: 10,
            max_unused_warm_slots: 100,
            memory_keep_resident_bytes: 4 << 20,
            table_keep_resident_bytes: 64 << 10,
            decommit_batch_size: 1,
            compile_cache_dir: None,
            compile_cache_max_bytes: 512 << 20,
        }
    }
}

impl RuntimeConfig {
    /// The epoch tick, at least 1 ms.
    pub fn epoch_tick(&self) -> Duration {
        Duration::from_millis(self.epoch_tick_ms.max(1))
    }
}

/// The flags of `[runtime]`.
#[derive(Clone, Debug, Default, clap::Args, Serialize)]
pub struct RuntimeArgs {
    /// Pool slots per engine: component instances alive at once.
    #[arg(long, env = "OKRA_MAX_INSTANCES")]
    pub max_instances: Option<u32>,
    /// Largest linear memory any instance may reserve, in bytes.
    #[arg(long, env = "OKRA_MAX_MEMORY_BYTES")]
    pub max_memory_bytes: Option<u64>,
    /// Epoch tick in ms.
    #[arg(long, env = "OKRA_EPOCH_TICK_MS")]
    pub epoch_tick_ms: Option<u64>,
    /// Empty pool slots kept warm for reuse by the same component.
    #[arg(long, env = "OKRA_MAX_UNUSED_WARM_SLOTS")]
    pub max_unused_warm_slots: Option<u32>,
    /// Bytes of each linear memory a freed pool slot keeps mapped and resets
    /// in place; 0 hands it all back with madvise.
    #[arg(long, env = "OKRA_MEMORY_KEEP_RESIDENT_BYTES")]
    pub memory_keep_resident_bytes: Option<u64>,
    /// The same as --memory-keep-resident-bytes, for tables.
    #[arg(long, env = "OKRA_TABLE_KEEP_RESIDENT_BYTES")]
    pub table_keep_resident_bytes: Option<u64>,
    /// Freed pool slots whose memory is handed back in one batch of madvise calls.
    #[arg(long, env = "OKRA_DECOMMIT_BATCH_SIZE")]
    pub decommit_batch_size: Option<u32>,
    /// Where compiled components are kept across restarts [default: <data-dir>/cache/compiled
    /// with a store, none without].
    #[arg(long, env = "OKRA_COMPILE_CACHE_DIR")]
    pub compile_cache_dir: Option<PathBuf>,
    /// Size of the compile cache before the least recently used entries go.
    #[arg(long, env = "OKRA_COMPILE_CACHE_MAX_BYTES")]
    pub compile_cache_max_bytes: Option<u64>,
}
