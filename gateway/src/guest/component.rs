//! One compiled component of one app, ready to serve: its instance-pre and
//! the dispatcher that gives every request a fresh instance in a fresh
//! `Store` with the app's limits. A wasi:http 0.2 component compiled for the
//! direct engine is called by `crate::guest::direct_p2`; anything else (0.3, or 0.2
//! using the async ABI) goes through Wasmtime's `ProxyHandler` (`super::handler`).
//!
//! Instance policy: one request per instance for both wasi:http 0.2 and 0.3.
//! Spin and `wasmtime serve` reuse p3 instances for throughput; Okra chooses
//! isolation first (no state survives between requests, and a CPU budget
//! belongs to exactly one request). The performance work may revisit p3.

use crate::context::inbound::InboundContext;
use crate::guest::admission::InstanceSlot;
use crate::guest::direct_p2::DirectP2;
use crate::guest::engine::Runtime;
use crate::guest::factory::{GuestEnvironment, GuestFactory};
use crate::guest::handler::HandlerPath;
use crate::guest::lifecycle::RequestLink;
use crate::metrics::{ComponentLabels, Metrics};
use crate::outbound::ComponentOutbound;
use std::sync::Arc;
use tenant_config::Limits;
use wasmtime::error::Context as _;
use wasmtime::format_err;
use wasmtime_wasi_http::handler::ProxyPre;

/// A component compiled and linked for one app.
pub(crate) struct ComponentRunner {
    dispatch: Dispatch,
    pub(crate) labels: ComponentLabels,
    pub(crate) wasi_http_version: &'static str,
}

/// How requests reach the component's instances.
enum Dispatch {
    /// wasi:http 0.2 on the direct engine: called on the request's own task.
    Direct(DirectP2),
    /// Through `ProxyHandler` on the concurrent engine.
    Handler(HandlerPath),
}

impl ComponentRunner {
    /// Compiles `wasm` (CPU-heavy: call off the request path) and links it.
    pub(crate) fn compile(
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
        let sockets = outbound.socket_gate();
        // WASI 0.3's socket creation is not capped yet (only 0.2's
        // `tcp-create-socket` is), so only direct-engine (0.2) components
        // get TCP.
        let tcp = runtime.is_direct(&component) && sockets.allows_any_connect();
        let factory = GuestFactory {
            engine: component.engine().clone(),
            tick: runtime.config.epoch_tick(),
            limits,
            environment,
            output_labels: Arc::new(labels.clone()),
            labels: labels.clone(),
            metrics,
            sockets: Arc::new(sockets),
            tcp,
            outbound,
            stopping: runtime.stopping(),
            failures: runtime.failure_logs.tenant(&labels.tenant),
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
            (Dispatch::Handler(HandlerPath::new(factory, pre)), version)
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
    pub(crate) async fn handle(
        &self,
        link: Arc<RequestLink>,
        inbound: Arc<InboundContext>,
        slot: InstanceSlot,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
    ) -> wasmtime::Result<http::Response<wasmtime_wasi_http::WasiBody>> {
        match &self.dispatch {
            Dispatch::Direct(direct) => direct.handle(link, inbound, slot, request).await,
            Dispatch::Handler(handler) => handler.handle(link, inbound, slot, request).await,
        }
    }
}
