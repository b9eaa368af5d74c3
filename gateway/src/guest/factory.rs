//! The `GuestFactory`: makes each request's `Store` for one component (its
//! WASI context with the component's socket rules, limits, CPU budget and CPU turns) and reports how a guest
//! that failed was stopped. Both engines' paths (`direct_p2`, `handler`)
//! build on it.

use crate::context::inbound::InboundContext;
use crate::guest::admission::InstanceSlot;
use crate::guest::failure_log::FailureLog;
use crate::guest::host::key_value::grant::{KeyValueGrant, KeyValueSession};
use crate::guest::host::sqlite::databases::SqliteGrant;
use crate::guest::lifecycle::{GuestFailure, RequestLink, StopCause};
use crate::guest::output::{GuestOutput, GuestStream};
use crate::guest::state::{ComponentVariables, CpuBudget, GuestState, MemoryLimiter};
use crate::metrics::{ComponentLabels, Metrics};
use crate::outbound::{ComponentOutbound, OutboundHooks, SocketGate};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tenant_config::Limits;
use wasmtime::component::ResourceTable;
use wasmtime::error::Context as _;
use wasmtime::{Store, StoreContextMut};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};
use wasmtime_wasi_http::WasiHttpCtx;

/// What a component's guest sees of the host: environment, read-only files
/// and its variables.
#[derive(Clone, Debug, Default)]
pub(crate) struct GuestEnvironment {
    pub(crate) env: Vec<(String, String)>,
    /// (host directory, guest path), mounted read-only.
    pub(crate) dirs: Vec<(PathBuf, String)>,
    pub(crate) variables: ComponentVariables,
    /// The key-value stores it may open (`key_value_stores`), if any.
    pub(crate) key_value: Option<KeyValueGrant>,
    /// The SQLite databases it may open (`sqlite_databases`), if any.
    pub(crate) sqlite: Option<SqliteGrant>,
}

/// Makes the `Store`s of one component's instances, and reports how they
/// ended.
pub(crate) struct GuestFactory {
    pub(super) engine: wasmtime::Engine,
    pub(super) tick: Duration,
    pub(super) limits: Limits,
    pub(super) environment: GuestEnvironment,
    pub(super) labels: ComponentLabels,
    /// The same labels, shared with every instance's stdout and stderr.
    pub(super) output_labels: Arc<ComponentLabels>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) outbound: Arc<ComponentOutbound>,
    /// What its guests' raw TCP connects may reach.
    pub(super) sockets: Arc<SocketGate>,
    /// Whether its guests get TCP at all.
    pub(super) tcp: bool,
    /// The runtime's flag: set, every instance stops at its next tick.
    pub(super) stopping: Arc<AtomicBool>,
    /// Where its guests' failures are logged, rate-limited per tenant.
    pub(super) failures: Arc<FailureLog>,
}

impl GuestFactory {
    fn wasi_ctx(&self) -> wasmtime::Result<WasiCtx> {
        let mut builder = WasiCtxBuilder::new();
        builder
            .stdout(GuestOutput::new(
                self.output_labels.clone(),
                GuestStream::Stdout,
            ))
            .stderr(GuestOutput::new(
                self.output_labels.clone(),
                GuestStream::Stderr,
            ))
            .envs(&self.environment.env)
            .allow_tcp(self.tcp)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let gate = self.sockets.clone();
        builder.socket_addr_check(move |addr, usage| {
            let allowed = gate.allows(addr, usage);
            Box::pin(async move { allowed })
        });
        for (host, guest) in &self.environment.dirs {
            builder
                .preopened_dir(host, guest, FsPerms::ReadOnly)
                .with_context(|| format!("mounting {} at {guest}", host.display()))?;
        }
        Ok(builder.build())
    }
}

impl GuestFactory {
    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A fresh `Store` with this component's limits, CPU budget and WASI
    /// context, serving the request of `link` and `inbound`.
    pub(crate) fn new_store(
        &self,
        link: Arc<RequestLink>,
        inbound: Arc<InboundContext>,
        slot: Option<InstanceSlot>,
    ) -> wasmtime::Result<Store<GuestState>> {
        let state = GuestState {
            wasi: self.wasi_ctx()?,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            hooks: OutboundHooks {
                component: self.outbound.clone(),
                inbound,
            },
            memory: MemoryLimiter::new(self.limits.memory_bytes, 100_000, link.clone()),
            cpu: CpuBudget::new(self.limits.cpu_time(), self.tick),
            link,
            variables: self.environment.variables.clone(),
            key_value: self.environment.key_value.clone().map(KeyValueSession::new),
            sqlite: self.environment.sqlite.clone(),
            sqlite_open: 0,
            sockets_created: 0,
            turn: slot.as_ref().map(InstanceSlot::cpu_turn),
            slot,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.memory);
        let stopping = self.stopping.clone();
        store.epoch_deadline_callback(move |mut ctx: StoreContextMut<'_, GuestState>| {
            let state = ctx.data_mut();
            if stopping.load(Ordering::Acquire) {
                state.link.stop(StopCause::Shutdown);
                return Ok(wasmtime::UpdateDeadline::Interrupt);
            }
            let update = state.cpu.on_tick();
            if state.cpu.exceeded {
                state.link.stop(StopCause::CpuBudget);
            }
            // A guest that ran through a tick is CPU-bound: it yields, then
            // runs on only with one of its tenant's CPU turns.
            Ok(match (update, &state.turn) {
                (wasmtime::UpdateDeadline::Yield(ticks), Some(turn)) => {
                    wasmtime::UpdateDeadline::YieldCustom(ticks, turn.next())
                }
                (update, _) => update,
            })
        });
        store.set_epoch_deadline(1);
        Ok(store)
    }

    /// Records how long an instantiation that started at `started` took.
    pub(crate) fn instantiated(&self, started: Instant) {
        self.metrics
            .wasm_instantiate_seconds
            .observe(started.elapsed().as_secs_f64());
    }

    /// Logs and counts a guest that failed with `error`, classified with the
    /// cause its request's link recorded.
    pub(crate) fn report_failure(&self, recorded: StopCause, error: &wasmtime::Error) {
        let reason = GuestFailure::classify(recorded, error).trap_label();
        self.failures.log(&self.labels, reason, error);
        self.metrics
            .wasm_traps_total
            .with_label_values(&[
                &self.labels.tenant,
                &self.labels.app,
                &self.labels.component,
                reason,
            ])
            .inc();
    }
}
