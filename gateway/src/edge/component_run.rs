//! A request that a component answers, in three phases: [`admit`] it (body
//! size, a slot, the guest's request), [`await_head`] while feeding the
//! request body in, then [`stream_body`] out while still feeding it. Each
//! phase ends early with a [`Stop`], which [`Stop::finish`] turns into the
//! request's [`Outcome`] in one place.

use super::head::{declared_length, guest_request};
use super::outcome::Outcome;
use super::ready_body::{READY_BODY_LIMIT, ReadyBody};
use super::refusal::Refusal;
use super::request_body::{BodyError, ChannelBody, RequestBodyPump};
use crate::app::App;
use crate::context::inbound::InboundContext;
use crate::guest::admission::InstanceSlot;
use crate::guest::component::ComponentRunner;
use crate::guest::lifecycle::{GuestFailure, RequestLink};
use crate::guest::request::HOP_BY_HOP;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING};
use http::{HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;
use tenant_config::{RouteMatch, RoutePattern};
use wasmtime_wasi_http::WasiBody;

/// Correlates a request across the edge, the guest and its outbound calls.
const X_REQUEST_ID: &str = "x-request-id";

/// Where a request is going: its app, Host and the route that matched.
pub(crate) struct Target<'a> {
    pub(crate) app: &'a App,
    pub(crate) host: &'a str,
    pub(crate) pattern: &'a RoutePattern,
    pub(crate) matched: &'a RouteMatch,
    pub(crate) runner: &'a ComponentRunner,
}

/// A request ready for its guest: a slot held, its body ready to stream in.
pub(crate) struct Admitted {
    request: http::Request<WasiBody>,
    slot: InstanceSlot,
    pump: Option<RequestBodyPump>,
    inbound: Arc<InboundContext>,
}

/// How a phase ended a request early.
pub(crate) enum Stop {
    /// Answer with this refusal. The connection is kept when it was written
    /// whole and `keep` allows it.
    Refuse(Refusal, Keep),
    /// Nothing more can be written (the client is gone, the body is bad, or
    /// the head is already out): the connection closes; `status` is counted.
    Cut(u16),
}

/// Whether a connection that was answered with a refusal may carry another
/// request.
pub(crate) enum Keep {
    /// Yes, once the refusal is written.
    Yes,
    /// Only if the request body, still being fed in, reaches its end.
    IfBodyEnds(Option<RequestBodyPump>),
    /// Never: what is left of the request cannot be trusted.
    No,
}

impl Stop {
    /// Writes what the stop calls for and says how the request ended.
    pub(crate) async fn finish(self, session: &mut ServerSession) -> Outcome {
        match self {
            Stop::Cut(status) => Outcome {
                status,
                reusable: false,
            },
            Stop::Refuse(refusal, keep) => {
                let written = refusal.write(session).await;
                let reusable = written
                    && match keep {
                        Keep::Yes => true,
                        Keep::IfBodyEnds(pump) => pump.is_none_or(|p| p.read_to_end()),
                        Keep::No => false,
                    };
                Outcome {
                    status: refusal.status(),
                    reusable,
                }
            }
        }
    }
}

/// Runs a request through its component, streaming both bodies; the
/// response carries `x-request-id` only with `response_request_id`.
pub(crate) async fn run(
    session: &mut ServerSession,
    target: &Target<'_>,
    response_request_id: bool,
) -> Outcome {
    let admitted = match admit(session, target).await {
        Ok(admitted) => admitted,
        Err(stop) => return stop.finish(session).await,
    };
    let is_head = admitted.request.method() == Method::HEAD;
    let inbound = admitted.inbound.clone();
    // Held until the response has gone out (or failed): the guest's side of
    // the link learns from its drop that its response was sent.
    let (link, _response_sent) = RequestLink::new();
    let (response, pump) = match await_head(session, target, admitted, link).await {
        Ok(answered) => answered,
        Err(stop) => return stop.finish(session).await,
    };
    let request_id = response_request_id.then_some(inbound.request_id.as_str());
    match stream_body(session, response, pump, request_id, is_head).await {
        Ok(outcome) => outcome,
        Err(stop) => stop.finish(session).await,
    }
}

/// Checks the declared body size, takes an instance slot and builds the
/// guest's request, answering `100 Continue` if the client waits for it.
async fn admit(session: &mut ServerSession, target: &Target<'_>) -> Result<Admitted, Stop> {
    let max_body = target.app.limits.max_request_body_bytes;
    // Checked before any request gets here.
    let declared = declared_length(session).ok().flatten();
    if declared.is_some_and(|n| n > max_body) {
        return Err(Stop::Refuse(Refusal::BodyTooLarge(max_body), Keep::No));
    }
    // The instance holds the slot until it is gone, however the client fares.
    let Some(slot) = target.app.admission.try_acquire() else {
        return Err(Stop::Refuse(Refusal::TooManyInFlight, Keep::Yes));
    };
    let has_body = declared.is_some_and(|n| n > 0)
        || session.req_header().headers.contains_key(TRANSFER_ENCODING)
        || session.is_http2();
    let (body, pump) = if has_body {
        let (body, pump) = ChannelBody::new(max_body);
        (body.boxed_unsync(), Some(pump))
    } else {
        (empty_body(), None)
    };
    if pump.is_some()
        && session
            .req_header()
            .headers
            .get(EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
        && session.write_continue_response().await.is_err()
    {
        return Err(Stop::Cut(400));
    }
    let inbound = Arc::new(InboundContext::from_headers(
        &session.req_header().headers,
        target.host,
        target.app.verifier.as_deref(),
    ));
    let mut request = guest_request(session, target.host, target.pattern, target.matched, body)
        .map_err(|why| Stop::Refuse(Refusal::BadRequest(why), Keep::Yes))?;
    if let Ok(id) = HeaderValue::from_str(&inbound.request_id) {
        request.headers_mut().insert(X_REQUEST_ID, id);
    }
    Ok(Admitted {
        request,
        slot,
        pump,
        inbound,
    })
}

/// Starts the guest and feeds it the request body until it answers with a
/// response head (or fails without one).
async fn await_head(
    session: &mut ServerSession,
    target: &Target<'_>,
    admitted: Admitted,
    link: Arc<RequestLink>,
) -> Result<(http::Response<WasiBody>, Option<RequestBodyPump>), Stop> {
    let Admitted {
        request,
        slot,
        mut pump,
        inbound,
    } = admitted;
    let max_body = target.app.limits.max_request_body_bytes;
    let response = target.runner.handle(link.clone(), inbound, slot, request);
    tokio::pin!(response);
    let response = loop {
        match pump.as_mut() {
            Some(p) if !p.is_done() => {
                tokio::select! {
                    response = &mut response => break response,
                    progress = p.step(session) => if let Err(error) = progress {
                        return Err(match error {
                            BodyError::TooLarge => Stop::Refuse(Refusal::BodyTooLarge(max_body), Keep::No),
                            error => Stop::Cut(error.status()),
                        });
                    }
                }
            }
            _ => break response.await,
        }
    };
    match response {
        Ok(response) => Ok((response, pump)),
        Err(e) => {
            tracing::debug!("request failed: {e:?}");
            let failure = GuestFailure::classify(link.cause(), &e);
            Err(Stop::Refuse(
                Refusal::Guest(failure),
                Keep::IfBodyEnds(pump),
            ))
        }
    }
}

/// Sends the response head, then its body, still feeding the request body.
async fn stream_body(
    session: &mut ServerSession,
    response: http::Response<WasiBody>,
    mut pump: Option<RequestBodyPump>,
    request_id: Option<&str>,
    is_head: bool,
) -> Result<Outcome, Stop> {
    let (parts, mut body) = response.into_parts();
    let status = parts.status;
    if status.is_informational() {
        // An interim head as the final answer would leave the client waiting
        // for another response on a connection that has moved on.
        tracing::debug!(%status, "the guest answered with an interim status");
        return Err(Stop::Refuse(
            Refusal::InterimResponse,
            Keep::IfBodyEnds(pump),
        ));
    }
    let mut head = ResponseHeader::from(parts);
    for name in HOP_BY_HOP {
        head.remove_header(*name);
    }
    if let Some(id) = request_id {
        let _ = head.insert_header(X_REQUEST_ID, id);
    }
    let bodiless =
        is_head || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let status = status.as_u16();
    let unsized_body = !bodiless && !head.headers.contains_key(CONTENT_LENGTH);
    let ready = if unsized_body {
        match ReadyBody::take(&mut body, READY_BODY_LIMIT) {
            Ok(ready) => ready,
            Err(e) => {
                tracing::debug!("response body failed before its head was sent: {e}");
                let failure = Refusal::Guest(GuestFailure::Trap);
                return Err(Stop::Refuse(failure, Keep::IfBodyEnds(pump)));
            }
        }
    } else {
        ReadyBody {
            data: Bytes::new(),
            complete: false,
        }
    };
    if ready.complete {
        let _ = head.insert_header(CONTENT_LENGTH, ready.data.len().to_string());
    } else if unsized_body && !session.is_http2() {
        let _ = head.insert_header(TRANSFER_ENCODING, "chunked");
    }
    if session.write_response_header(Box::new(head)).await.is_err() {
        return Err(Stop::Cut(status));
    }
    if ready.complete || !ready.data.is_empty() {
        // A whole body goes out with its head in one write.
        if session
            .write_response_body(ready.data, ready.complete)
            .await
            .is_err()
        {
            return Err(Stop::Cut(status));
        }
        if ready.complete {
            return Ok(Outcome {
                status,
                reusable: pump.is_none_or(|p| p.read_to_end()),
            });
        }
    }
    loop {
        let frame = if let Some(p) = pump.as_mut().filter(|p| !p.is_done()) {
            tokio::select! {
                biased;
                frame = body.frame() => frame,
                progress = p.step(session) => {
                    if progress.is_err() {
                        return Err(Stop::Cut(status));
                    }
                    continue;
                }
            }
        } else {
            body.frame().await
        };
        match frame {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data()
                    && !data.is_empty()
                    && session.write_response_body(data, false).await.is_err()
                {
                    return Err(Stop::Cut(status));
                }
            }
            Some(Err(e)) => {
                // Too late for a status code: cut the connection so the client sees it.
                tracing::debug!("response body failed mid-stream: {e}");
                return Err(Stop::Cut(status));
            }
        }
    }
    let finished = session
        .write_response_body(Bytes::new(), true)
        .await
        .is_ok();
    Ok(Outcome {
        status,
        reusable: finished && pump.is_none_or(|p| p.read_to_end()),
    })
}

fn empty_body() -> WasiBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}
