//! The one Wasmtime `Engine` every app shares: pooling allocator sized from the
//! operator's configuration, copy-on-write memory images, epoch interruption
//! driven by a ticker thread, and the `Linker` with everything a Spin
//! component may import.

use crate::guest_state::GuestState;
use crate::spin_stubs;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::error::Context as _;
use wasmtime::{
    Cache, CacheConfig, Config, Enabled, Engine, InstanceAllocationStrategy,
    PoolingAllocationConfig,
};

/// How the engine is sized. Every field is documented in the README.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Component instances alive at once across all tenants (pool slots).
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
    pub compile_cache_dir: Option<std::path::PathBuf>,
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
        }
    }
}

impl RuntimeConfig {
    pub fn epoch_tick(&self) -> Duration {
        Duration::from_millis(self.epoch_tick_ms.max(1))
    }
}

/// The shared engine and linker.
pub struct Runtime {
    pub engine: Engine,
    linker: Linker<GuestState>,
    pub config: RuntimeConfig,
    /// Compiled components by the SHA-256 of their wasm: a component shared
    /// by many apps, or redeployed unchanged, compiles once.
    compiled: Mutex<HashMap<[u8; 32], Component>>,
}

/// Distinct compiled components kept in memory; beyond this an arbitrary
/// one is dropped (it recompiles from the on-disk cache if needed again).
const MAX_COMPILED_IN_MEMORY: usize = 1024;

/// Core instances, memories and tables a Rust component typically needs per
/// component instance (the guest, its adapter shims and fixups).
const CORE_INSTANCES_PER_COMPONENT: u32 = 8;

impl Runtime {
    pub fn new(config: RuntimeConfig) -> wasmtime::Result<Self> {
        let mut pool = PoolingAllocationConfig::default();
        let slots = config.max_instances.max(1);
        pool.total_component_instances(slots)
            .total_core_instances(slots * CORE_INSTANCES_PER_COMPONENT)
            .total_memories(slots * 2)
            .total_tables(slots * CORE_INSTANCES_PER_COMPONENT)
            .total_stacks(slots)
            .max_memories_per_module(1)
            .max_memory_size(config.max_memory_bytes as usize)
            .max_unused_warm_slots(config.max_unused_warm_slots)
            .max_component_instance_size(4 << 20)
            .max_core_instance_size(4 << 20)
            .table_elements(100_000)
            .linear_memory_keep_resident(usize::try_from(config.memory_keep_resident_bytes)?)
            .table_keep_resident(usize::try_from(config.table_keep_resident_bytes)?)
            .decommit_batch_size(config.decommit_batch_size.max(1) as usize)
            .pagemap_scan(Enabled::Auto);

        let mut wasm = Config::new();
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .wasm_component_model(true)
            .wasm_component_model_async(true)
            .epoch_interruption(true)
            .memory_init_cow(true)
            // Reserve only what a memory may use, plus a guard, instead of
            // Wasmtime's 4 GiB per memory: bounds checks in exchange for not
            // mapping terabytes of address space.
            .memory_reservation(config.max_memory_bytes)
            .memory_guard_size(32 << 20)
            .memory_reservation_for_growth(0);
        if let Some(dir) = &config.compile_cache_dir {
            let mut cache = CacheConfig::new();
            // Wasmtime wants an absolute directory.
            cache.with_directory(
                std::path::absolute(dir)
                    .with_context(|| format!("the compile cache directory {}", dir.display()))?,
            );
            wasm.cache(Some(Cache::new(cache).with_context(|| {
                format!("opening the compile cache in {}", dir.display())
            })?));
        }
        let engine = Engine::new(&wasm).context("creating the Wasmtime engine")?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        wasmtime_wasi::p3::add_to_linker(&mut linker)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;

        start_epoch_ticker(&engine, config.epoch_tick())
            .context("starting the epoch ticker thread")?;
        Ok(Runtime {
            engine,
            linker,
            config,
            compiled: Mutex::default(),
        })
    }

    /// Compiles `wasm`, or returns the component compiled from the same bytes
    /// before. CPU-heavy on a miss: call off the request path.
    pub fn compile(&self, wasm: &[u8]) -> wasmtime::Result<Component> {
        let key: [u8; 32] = Sha256::digest(wasm).into();
        if let Some(component) = self.lock_compiled().get(&key) {
            return Ok(component.clone());
        }
        let component = Component::new(&self.engine, wasm)?;
        let mut compiled = self.lock_compiled();
        if compiled.len() >= MAX_COMPILED_IN_MEMORY
            && let Some(evicted) = compiled.keys().next().copied()
        {
            compiled.remove(&evicted);
        }
        compiled.insert(key, component.clone());
        Ok(component)
    }

    fn lock_compiled(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Component>> {
        self.compiled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A linker for one component: the shared one plus its variables
    /// interfaces and "unsupported" stubs for any other Spin platform
    /// interface the component imports.
    pub fn linker_for(&self, component: &Component) -> wasmtime::Result<Linker<GuestState>> {
        let mut linker = self.linker.clone();
        crate::spin_variables::define(&mut linker, &self.engine, component)?;
        spin_stubs::define_unsupported(&mut linker, &self.engine, component)?;
        Ok(linker)
    }
}

/// Increments the engine's epoch on a dedicated thread for the life of the process.
fn start_epoch_ticker(engine: &Engine, tick: Duration) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("okra-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(tick);
            }
        })
        .map(|_| ())
}
