//! The Wasmtime engines every app shares: pooling allocator sized from the
//! operator's configuration, copy-on-write memory images, epoch interruption
//! driven by a ticker thread, and the `Linker`s with everything a Spin
//! component may import.
//!
//! There are two engines with the same settings but one: components that
//! export only `wasi:http/incoming-handler@0.2` compile for the *direct*
//! engine, which has no component-model concurrency, so a request calls the
//! guest directly on a fiber (see `crate::guest::direct_p2`). Everything else
//! (wasi:http 0.3, or a component using the async ABI) compiles for the
//! *concurrent* engine and runs under `ProxyHandler`. Concurrency support
//! costs every call its task bookkeeping even when the guest never uses it;
//! the direct engine is measured in BENCHMARKS.md.

use crate::guest::componentize;
use crate::guest::engine_config::RuntimeConfig;
use crate::guest::failure_log::FailureLogs;
use crate::guest::host::tcp_sockets::cap_socket_creation;
use crate::guest::state::GuestState;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::error::Context as _;
use wasmtime::{
    Cache, CacheConfig, Config, Enabled, Engine, InstanceAllocationStrategy,
    PoolingAllocationConfig,
};

/// One engine and the linker for it.
struct EngineLinker {
    engine: Engine,
    linker: Linker<GuestState>,
}

/// The shared engines and linkers.
pub(crate) struct Runtime {
    /// With component-model concurrency: wasi:http 0.3 and the async ABI.
    concurrent: EngineLinker,
    /// Without it: components that only export wasi:http 0.2.
    direct: EngineLinker,
    pub(crate) config: RuntimeConfig,
    /// Compiled components by the SHA-256 of their wasm: a component shared
    /// by many apps, or redeployed unchanged, compiles once.
    compiled: Mutex<HashMap<[u8; 32], Component>>,
    /// Set when the gateway shuts down past its grace period: every guest
    /// still running wasm stops at its next epoch tick, as a trap, so no
    /// instance is dropped in the middle of its code.
    stopping: Arc<AtomicBool>,
    /// Each tenant's guest-failure log, shared by all its components.
    pub(crate) failure_logs: FailureLogs,
}

/// Distinct compiled components kept in memory; beyond this an arbitrary
/// one is dropped (it recompiles from the on-disk cache if needed again).
const MAX_COMPILED_IN_MEMORY: usize = 1024;

/// Core instances, memories and tables a Rust component typically needs per
/// component instance (the guest, its adapter shims and fixups).
const CORE_INSTANCES_PER_COMPONENT: u32 = 8;

impl Runtime {
    pub(crate) fn new(config: RuntimeConfig) -> wasmtime::Result<Self> {
        let cache =
            match &config.compile_cache_dir {
                Some(dir) => {
                    let mut cache = CacheConfig::new();
                    // Wasmtime wants an absolute directory.
                    cache.with_directory(std::path::absolute(dir).with_context(|| {
                        format!("the compile cache directory {}", dir.display())
                    })?);
                    cache.with_files_total_size_soft_limit(config.compile_cache_max_bytes);
                    Some(Cache::new(cache).with_context(|| {
                        format!("opening the compile cache in {}", dir.display())
                    })?)
                }
                None => None,
            };
        let concurrent = Engine::new(&engine_config(&config, true, cache.clone()))
            .context("creating the Wasmtime engine")?;
        let direct = Engine::new(&engine_config(&config, false, cache))
            .context("creating the Wasmtime engine")?;

        let mut linker = Linker::new(&concurrent);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        cap_socket_creation(&mut linker)?;
        wasmtime_wasi::p3::add_to_linker(&mut linker)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
        let mut direct_linker = Linker::new(&direct);
        wasmtime_wasi::p2::add_to_linker_async(&mut direct_linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut direct_linker)?;
        cap_socket_creation(&mut direct_linker)?;

        for engine in [&concurrent, &direct] {
            start_epoch_ticker(engine, config.epoch_tick())
                .context("starting the epoch ticker thread")?;
        }
        Ok(Runtime {
            concurrent: EngineLinker {
                engine: concurrent,
                linker,
            },
            direct: EngineLinker {
                engine: direct,
                linker: direct_linker,
            },
            config,
            compiled: Mutex::default(),
            stopping: Arc::default(),
            failure_logs: FailureLogs::default(),
        })
    }

    /// The flag each instance's epoch callback reads; the drain sets it.
    pub(crate) fn stopping(&self) -> Arc<AtomicBool> {
        self.stopping.clone()
    }

    /// Compiles `wasm` (a component, or a core module it componentizes
    /// first), or returns the component compiled from the same bytes before.
    /// CPU-heavy on a miss: call off the request path.
    pub(crate) fn compile(&self, wasm: &[u8]) -> wasmtime::Result<Component> {
        let key: [u8; 32] = Sha256::digest(wasm).into();
        if let Some(component) = self.lock_compiled().get(&key) {
            return Ok(component.clone());
        }
        let componentized;
        let wasm = if componentize::is_core_module(wasm) {
            componentized = componentize::componentize_cached(
                wasm,
                &key,
                self.config.compile_cache_dir.as_deref(),
            )?;
            &componentized[..]
        } else {
            wasm
        };
        // A wasi:http 0.2 component that imports an async-ABI interface
        // (spin:key-value@3.0.0, say) does not compile without concurrency:
        // it goes to the concurrent engine, like a 0.3 one.
        let component = match exports_only_wasi_http_p2(wasm)
            .then(|| Component::new(&self.direct.engine, wasm))
        {
            Some(Ok(component)) => component,
            _ => Component::new(&self.concurrent.engine, wasm)?,
        };
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

    /// A linker for one component: the shared one plus the Spin platform
    /// interfaces it imports (`crate::guest::host`).
    pub(crate) fn linker_for(&self, component: &Component) -> wasmtime::Result<Linker<GuestState>> {
        let base = if self.is_direct(component) {
            &self.direct
        } else {
            &self.concurrent
        };
        let mut linker = base.linker.clone();
        crate::guest::host::define(&mut linker, &base.engine, component)?;
        Ok(linker)
    }

    /// Whether `component` was compiled for the direct (no concurrency) engine.
    pub(crate) fn is_direct(&self, component: &Component) -> bool {
        Engine::same(component.engine(), &self.direct.engine)
    }
}

/// The engine settings; `concurrent` turns on component-model concurrency
/// (needed by wasi:http 0.3 and the async ABI).
fn engine_config(config: &RuntimeConfig, concurrent: bool, cache: Option<Cache>) -> Config {
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
        .linear_memory_keep_resident(config.memory_keep_resident_bytes as usize)
        .table_keep_resident(config.table_keep_resident_bytes as usize)
        .decommit_batch_size(config.decommit_batch_size.max(1) as usize)
        .pagemap_scan(Enabled::Auto);

    let mut wasm = Config::new();
    wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .wasm_component_model(true)
        .concurrency_support(concurrent)
        .wasm_component_model_async(concurrent)
        .epoch_interruption(true)
        .memory_init_cow(true)
        // Reserve only what a memory may use, plus a guard, instead of
        // Wasmtime's 4 GiB per memory: bounds checks in exchange for not
        // mapping terabytes of address space.
        .memory_reservation(config.max_memory_bytes)
        .memory_guard_size(32 << 20)
        .memory_reservation_for_growth(0);
    if cache.is_some() {
        wasm.cache(cache);
    }
    wasm
}

/// True when the component's own exports include
/// `wasi:http/incoming-handler@0.2.x` and not `wasi:http/handler@0.3.x`.
/// Anything unparsable answers false: the concurrent engine then compiles it
/// and reports the error.
fn exports_only_wasi_http_p2(wasm: &[u8]) -> bool {
    use wasmtime::wasmparser::{Parser, Payload};
    let (mut depth, mut p2, mut p3) = (0usize, false, false);
    for payload in Parser::new(0).parse_all(wasm) {
        match payload {
            Ok(Payload::ModuleSection { .. } | Payload::ComponentSection { .. }) => depth += 1,
            Ok(Payload::End(_)) => depth = depth.saturating_sub(1),
            Ok(Payload::ComponentExportSection(exports)) if depth == 0 => {
                for export in exports.into_iter().flatten() {
                    let name = export.name.name;
                    p2 |= name.starts_with("wasi:http/incoming-handler@0.2");
                    p3 |= name.starts_with("wasi:http/handler@0.3");
                }
            }
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    p2 && !p3
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

#[cfg(test)]
mod tests {
    use super::*;

    fn wasm(path: &str) -> Vec<u8> {
        std::fs::read(path).unwrap()
    }

    #[test]
    fn only_wasi_http_p2_components_go_to_the_direct_engine() {
        assert!(exports_only_wasi_http_p2(&wasm(test_programs::SDK5_GUEST)));
        assert!(exports_only_wasi_http_p2(&wasm(
            test_programs::HELLO5_GUEST
        )));
        assert!(!exports_only_wasi_http_p2(&wasm(test_programs::SDK7_GUEST)));
        assert!(!exports_only_wasi_http_p2(&wasm(test_programs::HELLO_WASM)));
        // Not a component, or cut short: the concurrent engine reports it.
        assert!(!exports_only_wasi_http_p2(b"\0asm\x01\0\0\0"));
        let p2 = wasm(test_programs::SDK5_GUEST);
        assert!(!exports_only_wasi_http_p2(&p2[..p2.len() / 2]));

        let runtime = Runtime::new(RuntimeConfig {
            max_instances: 4,
            ..RuntimeConfig::default()
        })
        .unwrap();
        let p2 = runtime.compile(&p2).unwrap();
        let p3 = runtime.compile(&wasm(test_programs::SDK7_GUEST)).unwrap();
        assert!(runtime.is_direct(&p2));
        assert!(!runtime.is_direct(&p3));
    }
}
