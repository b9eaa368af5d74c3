//! The path through Wasmtime's `ProxyHandler`, for wasi:http 0.3 components
//! and 0.2 components that use the async ABI: one instance per request, a
//! wall-clock deadline enforced from outside the guest's event loop, and the
//! failure report when the instance goes.

use crate::context::inbound::InboundContext;
use crate::guest::admission::InstanceSlot;
use crate::guest::factory::GuestFactory;
use crate::guest::lifecycle::{RequestLink, StopCause};
use crate::guest::state::GuestState;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use wasmtime::{Store, StoreContextMut};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, ProxyHandler, ProxyPre, ShouldAccept, WorkerExpiration, WorkerState,
    WorkerStatus,
};

/// A component served through `ProxyHandler`.
pub(crate) struct HandlerPath(ProxyHandler<HandlerHost>);

impl HandlerPath {
    pub(crate) fn new(factory: GuestFactory, pre: ProxyPre<GuestState>) -> Self {
        HandlerPath(ProxyHandler::new(HandlerHost {
            factory: Arc::new(factory),
            pre,
        }))
    }

    /// Runs one request in a fresh instance; errors as `ProxyHandler::handle`.
    pub(crate) async fn handle(
        &self,
        link: Arc<RequestLink>,
        inbound: Arc<InboundContext>,
        slot: InstanceSlot,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
    ) -> wasmtime::Result<http::Response<wasmtime_wasi_http::WasiBody>> {
        let data = RequestData {
            timeout: self.0.state().factory.limits().request_timeout(),
            link,
            inbound,
            slot,
        };
        self.0.handle(data, request).await
    }
}

/// What one request brings to the instance that serves it.
pub(crate) struct RequestData {
    timeout: Duration,
    link: Arc<RequestLink>,
    inbound: Arc<InboundContext>,
    slot: InstanceSlot,
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
        let proxy = match self.pre.instantiate_async(&mut store).await {
            Ok(proxy) => proxy,
            Err(e) => {
                // Too little memory for its start, or a trap in it.
                self.factory.report_failure(store.data().link.cause(), &e);
                return Err(e);
            }
        };
        self.factory.instantiated(started);
        let expiration = Deadline::new(self.factory.limits().request_timeout());
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
pub(crate) struct Deadline {
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
pub(crate) struct SingleRequest {
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
            *slot = Some(link.clone());
        }
        // ProxyHandler ends the request when this completes, with an error
        // that only says so in its text: the cause is recorded first.
        Box::pin(async move {
            tokio::time::sleep(timeout).await;
            link.stop(StopCause::Deadline);
        })
    }

    fn drop(&self, store: Store<GuestState>, result: wasmtime::Result<()>) {
        if let Err(error) = result {
            self.factory
                .report_failure(store.data().link.cause(), &error);
        }
    }
}
