//! What each guest instance's `Store` carries: its WASI and wasi:http contexts,
//! the outbound hook, its variables, and the per-request limits (memory, CPU) with the flags
//! that say which limit stopped it.

use crate::guest::admission::{CpuTurn, InstanceSlot};
use crate::guest::host::key_value::grant::KeyValueSession;
use crate::guest::host::sqlite::databases::SqliteGrant;
use crate::guest::lifecycle::{RequestLink, StopCause};
use crate::outbound::OutboundHooks;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tenant_config::VariableValue;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// One component's variables, as its guests may read them.
pub(crate) type ComponentVariables = Arc<BTreeMap<String, VariableValue>>;

/// The data of one guest `Store`.
pub(crate) struct GuestState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) http: WasiHttpCtx,
    pub(crate) hooks: OutboundHooks,
    pub(crate) memory: MemoryLimiter,
    pub(crate) cpu: CpuBudget,
    /// The request this instance serves; set when the request starts.
    pub(crate) link: Arc<RequestLink>,
    /// The component's variables, for the variables interfaces.
    pub(crate) variables: ComponentVariables,
    /// The key-value stores the component may open, and those it has open
    /// (`None`: it lists none).
    pub(crate) key_value: Option<KeyValueSession>,
    /// The SQLite databases the component may open (`None`: it lists none),
    /// and how many it has open.
    pub(crate) sqlite: Option<SqliteGrant>,
    pub(crate) sqlite_open: usize,
    /// TCP sockets the guest has created (capped: each is a descriptor).
    pub(crate) sockets_created: u32,
    /// The tenant's concurrency slot this instance holds (set once its
    /// request is attached); given back when the store is dropped.
    pub(crate) slot: Option<InstanceSlot>,
    /// The tenant's CPU turns, which the guest waits for once CPU-bound.
    pub(crate) turn: Option<CpuTurn>,
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for GuestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Caps one instance's linear memories and tables; remembers if it said no.
pub(crate) struct MemoryLimiter {
    max_memory_bytes: usize,
    max_table_elements: usize,
    /// Set when the guest asked for more memory than its limit.
    pub(crate) exceeded: bool,
    /// Told when the limit is hit.
    pub(crate) link: Arc<RequestLink>,
}

impl MemoryLimiter {
    pub(crate) fn new(
        max_memory_bytes: u64,
        max_table_elements: usize,
        link: Arc<RequestLink>,
    ) -> Self {
        MemoryLimiter {
            max_memory_bytes: usize::try_from(max_memory_bytes).unwrap_or(usize::MAX),
            max_table_elements,
            exceeded: false,
            link,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            self.exceeded = true;
            self.link.stop(StopCause::MemoryLimit);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.max_table_elements)
    }
}

/// A request's CPU allowance, counted in epoch ticks observed while wasm runs.
pub(crate) struct CpuBudget {
    ticks_left: u64,
    /// Set when the guest used its whole allowance and was interrupted.
    pub(crate) exceeded: bool,
}

impl CpuBudget {
    pub(crate) fn new(cpu_time: Duration, tick: Duration) -> Self {
        let ticks = cpu_time.as_nanos() / tick.as_nanos().max(1);
        CpuBudget {
            ticks_left: u64::try_from(ticks).unwrap_or(u64::MAX).max(1),
            exceeded: false,
        }
    }

    /// Called on every epoch tick the guest is running through: yield to the
    /// executor while budget remains, interrupt once it is spent.
    pub(crate) fn on_tick(&mut self) -> wasmtime::UpdateDeadline {
        if self.ticks_left == 0 {
            self.exceeded = true;
            return wasmtime::UpdateDeadline::Interrupt;
        }
        self.ticks_left -= 1;
        wasmtime::UpdateDeadline::Yield(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_budget_interrupts_after_its_ticks() {
        let mut b = CpuBudget::new(Duration::from_millis(30), Duration::from_millis(10));
        for _ in 0..3 {
            assert!(matches!(b.on_tick(), wasmtime::UpdateDeadline::Yield(1)));
        }
        assert!(matches!(b.on_tick(), wasmtime::UpdateDeadline::Interrupt));
        assert!(b.exceeded);
    }

    #[test]
    fn memory_limiter_refuses_growth_past_limit() {
        let mut m = MemoryLimiter::new(1 << 20, 100, Arc::default());
        assert!(m.memory_growing(0, 1 << 20, None).unwrap());
        assert!(!m.memory_growing(1 << 20, (1 << 20) + 65536, None).unwrap());
        assert!(m.exceeded);
        assert!(!m.table_growing(0, 101, None).unwrap());
    }
}
