//! One compiled component of one app, ready to serve: its instance-pre and
//! the dispatcher that gives every request a fresh instance in a fresh
//! `Store` with the app's limits. A wasi:http 0.2 component compiled for the
//! direct engine is called by `crate::direct_p2`; anything else (0.3, or 0.2
//! using the async ABI) goes through Wasmtime's `ProxyHandler`.
//!
//! Instance policy: one request per instance for both wasi:http 0.2 and 0.3.
//! Spin and `wasmtime serve` reuse p3 instances for throughput; Okra chooses
//! isolation first (no state survives between requests, and a CPU budget
//! belongs to exactly one request). The performance work may revisit p3.

use crate::admission::InstanceSlot;
use crate::direct_p2::DirectP2;
use crate::guest_output::{GuestOutput, GuestStream};
use crate::guest_state::{CpuBudget, GuestState, MemoryLimiter};
use crate::inbound::InboundContext;
use crate::metrics::Metrics;
use crate::outbound::{ComponentOutbound, OutboundHooks};
use crate::request_link::{RequestLink, StopCause};
use crate::runtime::Runtime;
use crate::spin_variables::ComponentVariables;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tenant_config::Limits;
use wasmtime::component::ResourceTable;
use wasmtime::error::Context as _;
use wasmtime::format_err;
use wasmtime::{Store, StoreContextMut};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};
use wasmtime_wasi_http::WasiHttpCtx;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, ProxyHandler, ProxyPre, ShouldAccept, WorkerExpiration, WorkerState,
    WorkerStatus,
};

/// Who a component belongs to, for metrics and logs.
#[derive(Clone, Debug)]
pub struct ComponentLabels {
    pub tenant: String,
    pub app: String,
    pub component: String,
}

/// What a component's guest sees of the host: environment, read-only files
/// and its variables.
#[derive(Clone, Debug, Default)]
pub struct GuestEnvironment {
    pub env: Vec<(String, String)>,
    /// (host directory, guest path), mounted read-only.
    pub dirs: Vec<(PathBuf, String)>,
    pub variables: ComponentVariables,
}

/// A component compiled and linked for one app.
pub struct ComponentRunner {
    dispatch: Dispatch,
    pub labels: ComponentLabels,
    pub wasi_http_version: &'static str,
}

/// How requests reach the component's instances.
enum Dispatch {
    /// wasi:http 0.2 on the direct engine: called on the request's own task.
    Direct(DirectP2),
    /// Through `ProxyHandler` on the concurrent engine.
    Handler(ProxyHandler<HandlerHost>),
}

impl ComponentRunner {
    /// Compiles `wasm` (CPU-heavy: call off the request path) and links it.
    pub fn compile(
        runtime: &Runtime,
        wasm: &[u8],
        labels: ComponentLabels,
        environment: GuestEnvironment,
        limits: Limits,
        metrics: Arc<Metrics>,
        outbound: Arc<ComponentOutbound>,
    ) -> wasmtime::Result<Self> {
        let component = runtime
            .compile(wasm)
            .with_context(|| format!("component `{}` does not compile", labels.component))?;
        let linker = runtime.linker_for(&component)?;
        let pre = linker.instantiate_pre(&component).with_context(|| {
            format!(
                "component `{}` imports something Okra does not provide",
                labels.component
            )
        })?;
        let factory = GuestFactory {
            engine: component.engine().clone(),
            tick: runtime.config.epoch_tick(),
            limits,
            environment,
            output_labels: Arc::new(labels.clone()),
            labels: labels.clone(),
            metrics,
            outbound,
        };
        let no_handler = |e: wasmtime::Error| {
            format_err!(
                "component `{}` exports neither wasi:http/incoming-handler@0.2 nor wasi:http/handler@0.3: {e}",
                labels.component
            )
        };
        let (dispatch, version) = if runtime.is_direct(&component) {
            let pre = wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre).map_err(no_handler)?;
            (Dispatch::Direct(DirectP2::new(factory, pre)), "0.2")
        } else {
            let (pre, version) =
                match wasmtime_wasi_http::p3::bindings::ServicePre::new(pre.clone()) {
                    Ok(p3) => (ProxyPre::P3(p3), "0.3"),
                    Err(_) => (
                        ProxyPre::P2(
                            wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre)
                                .map_err(no_handler)?,
                        ),
                        "0.2",
                    ),
                };
            let host = HandlerHost {
                factory: Arc::new(factory),
                pre,
            };
            (Dispatch::Handler(ProxyHandler::new(host)), version)
        };
        Ok(ComponentRunner {
            dispatch,
            labels,
            wasi_http_version: version,
        })
    }

    /// Runs one request in a fresh instance. Errors are downcastable to
    /// `ExpirationError` (deadline) or contain the guest's trap.
    /// `slot` is the tenant's concurrency slot: the instance holds it until
    /// it is gone.
    pub async fn handle(
        &self,
        link: Arc<RequestLink>,
        inbound: Arc<InboundContext>,
        slot: InstanceSlot,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
    ) -> wasmtime::Result<http::Response<wasmtime_wasi_http::WasiBody>> {
        match &self.dispatch {
            Dispatch::Direct(direct) => direct.handle(link, inbound, slot, request).await,
            Dispatch::Handler(handler) => {
                let data = RequestData {
                    timeout: handler.state().factory.limits.request_timeout(),
                    link,
                    inbound,
                    slot,
                };
                handler.handle(data, request).await
            }
        }
    }
}

/// What one request brings to the instance that serves it.
pub struct RequestData {
    timeout: Duration,
    link: Arc<RequestLink>,
    inbound: Arc<InboundContext>,
    slot: InstanceSlot,
}

/// Makes the `Store`s of one component's instances, and reports how they
/// ended.
pub(crate) struct GuestFactory {
    engine: wasmtime::Engine,
    tick: Duration,
    limits: Limits,
    environment: GuestEnvironment,
    labels: ComponentLabels,
    /// The same labels, shared with every instance's stdout and stderr.
    output_labels: Arc<ComponentLabels>,
    metrics: Arc<Metrics>,
    outbound: Arc<ComponentOutbound>,
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
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
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
            turn: slot.as_ref().map(InstanceSlot::cpu_turn),
            slot,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.memory);
        store.epoch_deadline_callback(|mut ctx: StoreContextMut<'_, GuestState>| {
            let state = ctx.data_mut();
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

    /// Logs and counts a guest that failed; `reason` is a label of
    /// `okra_wasm_traps_total` (see [`failure_reason`]).
    pub(crate) fn report_failure(&self, reason: &str, error: &wasmtime::Error) {
        tracing::warn!(
            tenant = %self.labels.tenant,
            app = %self.labels.app,
            component = %self.labels.component,
            reason,
            "guest failed: {error:?}"
        );
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

/// Which limit stopped a guest that failed: memory, cpu, timeout or trap.
pub(crate) fn failure_reason(data: &GuestState, error: &wasmtime::Error) -> &'static str {
    if data.memory.exceeded {
        "memory"
    } else if data.cpu.exceeded {
        "cpu"
    } else if error.to_string().contains("timed out") {
        "timeout"
    } else {
        "trap"
    }
}

/// Tells an instance's store which request it serves.
pub(crate) fn attach_request(
    state: &mut GuestState,
    link: Arc<RequestLink>,
    inbound: Arc<InboundContext>,
    slot: InstanceSlot,
) {
    state.turn = Some(slot.cpu_turn());
    state.slot = Some(slot);
    state.hooks.inbound = inbound;
    state.memory.link = link.clone();
    state.link = link;
}

/// `ProxyHandler`'s view of a component on the concurrent engine.
struct HandlerHost {
    factory: Arc<GuestFactory>,
    pre: ProxyPre<GuestState>,
}

impl HandlerState for HandlerHost {
    type StoreData = GuestState;
    type WorkerExpiration = Deadline;
    type WorkerState = SingleRequest;

    async fn instantiate(&self) -> wasmtime::Result<Instance<GuestState, Deadline, SingleRequest>> {
        // The request is not known yet: `on_request_start` attaches it.
        static UNATTACHED: LazyLock<Arc<InboundContext>> = LazyLock::new(Arc::default);
        let mut store = self
            .factory
            .new_store(Arc::default(), UNATTACHED.clone(), None)?;
        let started = Instant::now();
        let proxy = self.pre.instantiate_async(&mut store).await?;
        self.factory.instantiated(started);
        let expiration = Deadline::new(self.factory.limits.request_timeout());
        let deadline_link = expiration.link.clone();
        Ok(Instance {
            store,
            proxy,
            view: |s: &mut GuestState| s.http(),
            expiration,
            state: SingleRequest {
                factory: self.factory.clone(),
                deadline_link,
            },
        })
    }
}

/// When the instance may go: once its request's response has been sent and
/// the guest is no longer running, or at the wall-clock deadline, whichever
/// comes first. Enforced from outside the guest's event loop (see
/// `WorkerState::on_request_start` for why both layers exist).
pub struct Deadline {
    sleep: Pin<Box<tokio::time::Sleep>>,
    link: Arc<std::sync::Mutex<Option<Arc<RequestLink>>>>,
}

impl Deadline {
    fn new(timeout: Duration) -> Self {
        Deadline {
            sleep: Box::pin(tokio::time::sleep(timeout)),
            link: Arc::default(),
        }
    }
}

impl WorkerExpiration for Deadline {
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        _start: Instant,
    ) -> Poll<()> {
        let link = self.link.lock().ok().and_then(|l| l.clone());
        if status != WorkerStatus::Requests
            && let Some(link) = &link
            && link.poll_response_sent(cx).is_ready()
        {
            return Poll::Ready(());
        }
        let expired = self.sleep.as_mut().poll(cx);
        if expired.is_ready()
            && let Some(link) = link
        {
            link.stop(StopCause::Deadline);
        }
        expired
    }
}

/// Accepts exactly one request per instance and reports how it ended.
pub struct SingleRequest {
    factory: Arc<GuestFactory>,
    /// Where the request's link goes so the `Deadline` can see it.
    deadline_link: Arc<std::sync::Mutex<Option<Arc<RequestLink>>>>,
}

impl WorkerState for SingleRequest {
    type StoreData = GuestState;
    type RequestData = RequestData;

    /// One request per instance. `No` rather than `Never` after the first:
    /// the worker must stay alive (idle) until the response body is sent,
    /// because dropping the store aborts the host tasks that flush it.
    fn should_accept_request(&self, _concurrent: usize, total: usize) -> ShouldAccept {
        if total == 0 {
            ShouldAccept::Yes
        } else {
            ShouldAccept::No
        }
    }

    fn on_request_start(
        &self,
        mut store: StoreContextMut<'_, GuestState>,
        RequestData {
            timeout,
            link,
            inbound,
            slot,
        }: RequestData,
        _task: wasmtime::component::GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        attach_request(store.data_mut(), link.clone(), inbound, slot);
        if let Ok(mut slot) = self.deadline_link.lock() {
            *slot = Some(link);
        }
        Box::pin(tokio::time::sleep(timeout))
    }

    fn drop(&self, store: Store<GuestState>, result: wasmtime::Result<()>) {
        if let Err(error) = result {
            self.factory
                .report_failure(failure_reason(store.data(), &error), &error);
        }
    }
}
