//! Serves a wasi:http 0.2 component compiled for the direct engine (no
//! component-model concurrency): each request instantiates the component in
//! a fresh `Store` and calls `incoming-handler.handle` on a fiber, on the
//! request's own task. No worker task, queue or concurrent-call bookkeeping.
//!
//! The guest keeps running after it has set its response (it is usually
//! still writing the body), so the running call travels inside the response
//! body ([`GuestDrivenBody`]): polling the body polls the guest first. If the
//! edge lets go of a guest that has not returned (the client left, before or
//! after the response head), the rest of the call moves to a task of its own
//! and still runs to its end or its deadline, as it would have under
//! `ProxyHandler`.

use crate::context::inbound::InboundContext;
use crate::guest::admission::{CpuTurn, InstanceSlot};
use crate::guest::factory::GuestFactory;
use crate::guest::lifecycle::{RequestLink, StopCause};
use crate::guest::state::GuestState;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;
use tokio::sync::oneshot;
use wasmtime::Store;
use wasmtime::format_err;
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::ExpirationError;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

/// A wasi:http 0.2 component on the direct engine.
pub(crate) struct DirectP2 {
    factory: Arc<GuestFactory>,
    pre: ProxyPre<GuestState>,
}

/// The guest's `handle` call, owning its store.
type GuestCall = Pin<Box<dyn Future<Output = (Store<GuestState>, wasmtime::Result<()>)> + Send>>;

const NO_RESPONSE: &str = "guest never invoked `response-outparam::set` method";

impl DirectP2 {
    pub(crate) fn new(factory: GuestFactory, pre: ProxyPre<GuestState>) -> Self {
        DirectP2 {
            factory: Arc::new(factory),
            pre,
        }
    }

    /// Runs one request in a fresh instance; errors as `ProxyHandler::handle`.
    pub(crate) async fn handle(
        &self,
        link: Arc<RequestLink>,
        inbound: Arc<InboundContext>,
        slot: InstanceSlot,
        request: http::Request<WasiBody>,
    ) -> wasmtime::Result<http::Response<WasiBody>> {
        let deadline = tokio::time::Instant::now() + self.factory.limits().request_timeout();
        let turn = slot.cpu_turn();
        let mut store = self.factory.new_store(link.clone(), inbound, Some(slot))?;
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

        let (tx, mut response) = oneshot::channel();
        let mut http = store.data_mut().http();
        let request = http.new_incoming_request(Scheme::Http, request)?;
        let outparam = http.new_response_outparam(tx)?;
        let call: GuestCall = Box::pin(async move {
            let result = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, request, outparam)
                .await;
            (store, result)
        });
        let mut guest = RunningGuest {
            call: Some(call),
            deadline: Some(Box::pin(tokio::time::sleep_until(deadline))),
            factory: self.factory.clone(),
            link,
            turn,
        };

        let response = std::future::poll_fn(|cx| {
            // Drive the guest first: it sets its response while it runs.
            let ended = guest.poll_run(cx);
            match (Pin::new(&mut response).poll(cx), ended) {
                (Poll::Ready(Ok(Ok(response))), _) => Poll::Ready(Ok(response)),
                (Poll::Ready(Ok(Err(code))), _) => Poll::Ready(Err(code.into())),
                (_, Poll::Ready(Err(guest_error))) => Poll::Ready(Err(guest_error)),
                (Poll::Ready(Err(_)), _) | (_, Poll::Ready(Ok(()))) => {
                    Poll::Ready(Err(format_err!("{NO_RESPONSE}")))
                }
                (Poll::Pending, Poll::Pending) => Poll::Pending,
            }
        })
        .await?;
        Ok(response.map(|body| {
            GuestDrivenBody {
                guest: Some(guest),
                body,
            }
            .boxed_unsync()
        }))
    }
}

/// A guest call with its wall-clock deadline. Dropped while the call still
/// runs, it hands the call to a task of its own.
struct RunningGuest {
    /// `None` once the call has ended (its store is dropped by then).
    call: Option<GuestCall>,
    /// `None` only once the call has moved to its own task.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    factory: Arc<GuestFactory>,
    link: Arc<RequestLink>,
    /// The guest's CPU turn: held only while it runs, so given back every
    /// time polling the call returns.
    turn: CpuTurn,
}

impl RunningGuest {
    /// Runs the guest until it returns, fails or passes its deadline. A
    /// failure is reported once; the store goes as soon as the call ends.
    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<wasmtime::Result<()>> {
        let Some(call) = self.call.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let polled = call.as_mut().poll(cx);
        self.turn.release();
        let result = match polled {
            Poll::Ready((store, result)) => {
                if let Err(e) = &result {
                    self.factory.report_failure(store.data().link.cause(), e);
                }
                result
            }
            Poll::Pending => {
                match self.deadline.as_mut() {
                    Some(deadline) => ready!(deadline.as_mut().poll(cx)),
                    None => return Poll::Pending,
                }
                self.link.stop(StopCause::Deadline);
                let error = wasmtime::Error::from(ExpirationError);
                self.factory.report_failure(StopCause::Deadline, &error);
                Err(error)
            }
        };
        self.call = None;
        Poll::Ready(result)
    }
}

impl Future for RunningGuest {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_run(cx).map(|_| ())
    }
}

/// The guest's response body, which also drives the guest's call.
struct GuestDrivenBody {
    guest: Option<RunningGuest>,
    body: WasiBody,
}

impl Body for GuestDrivenBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(guest) = self.guest.as_mut()
            && guest.poll_run(cx).is_ready()
        {
            self.guest = None;
        }
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for RunningGuest {
    fn drop(&mut self) {
        // A call that panicked is not run again: it would panic again on
        // another task.
        if self.call.is_none() || std::thread::panicking() {
            return;
        }
        // Outside a runtime (process exit) the guest simply stops.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(RunningGuest {
                call: self.call.take(),
                deadline: self.deadline.take(),
                factory: self.factory.clone(),
                link: self.link.clone(),
                turn: self.turn.clone(),
            });
        }
    }
}
