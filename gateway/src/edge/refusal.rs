//! The answers the edge gives itself when no guest response goes out. Each
//! [`Refusal`] maps once to its status, error code and message, and is
//! written as `{"error":{"code","message"}}`; the writers for static routes
//! and the health check live here too.

use crate::guest::lifecycle::GuestFailure;
use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use std::borrow::Cow;
use std::time::Duration;
use tenant_config::StaticResponse;

/// Why the edge answered a request itself.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Both `Content-Length` and `Transfer-Encoding` (a smuggling vector).
    AmbiguousBodyLength,
    /// A `Content-Length` that is not one plain decimal number.
    InvalidContentLength(&'static str),
    /// A path under `/.well-known/spin/` that Spin does not define.
    UnknownSpinEndpoint,
    /// No app is served at this Host.
    UnknownHost(String),
    /// The app or its tenant is over its requests per second; retry after this.
    RateLimited(Duration),
    /// The app has no route for the path.
    NoRoute,
    /// The tenant has as many requests in flight as it may.
    TooManyInFlight,
    /// The body is larger than the app's limit, in bytes.
    BodyTooLarge(u64),
    /// The request cannot be given to a guest (a bad URI or header).
    BadRequest(String),
    /// The guest stopped without a response.
    Guest(GuestFailure),
    /// The guest answered with a 1xx status as its final response.
    InterimResponse,
    /// An operator's static response that cannot be sent.
    BadStaticResponse(&'static str),
}

impl Refusal {
    pub(crate) fn status(&self) -> u16 {
        match self {
            Refusal::AmbiguousBodyLength
            | Refusal::InvalidContentLength(_)
            | Refusal::BadRequest(_) => 400,
            Refusal::UnknownSpinEndpoint | Refusal::UnknownHost(_) | Refusal::NoRoute => 404,
            Refusal::BodyTooLarge(_) => 413,
            Refusal::RateLimited(_) => 429,
            Refusal::BadStaticResponse(_) => 500,
            Refusal::InterimResponse => 502,
            Refusal::TooManyInFlight => 503,
            Refusal::Guest(failure) => failure.status(),
        }
    }

    pub(crate) fn code(&self) -> &'static str {
        match self {
            Refusal::AmbiguousBodyLength => "ambiguous_body_length",
            Refusal::InvalidContentLength(_) => "invalid_content_length",
            Refusal::UnknownSpinEndpoint => "not_found",
            Refusal::UnknownHost(_) => "unknown_host",
            Refusal::RateLimited(_) => "rate_limited",
            Refusal::NoRoute => "no_route",
            Refusal::TooManyInFlight => "too_many_requests",
            Refusal::BodyTooLarge(_) => "body_too_large",
            Refusal::BadRequest(_) => "bad_request",
            Refusal::Guest(failure) => failure.code(),
            Refusal::InterimResponse => "bad_guest_response",
            Refusal::BadStaticResponse(_) => "bad_static_response",
        }
    }

    pub(crate) fn message(&self) -> Cow<'_, str> {
        match self {
            Refusal::AmbiguousBodyLength => {
                "a request may not carry both Content-Length and Transfer-Encoding".into()
            }
            Refusal::InvalidContentLength(why) | Refusal::BadStaticResponse(why) => (*why).into(),
            Refusal::UnknownSpinEndpoint => "no such Spin endpoint".into(),
            Refusal::UnknownHost(host) => format!("no app is served at host {host:?}").into(),
            Refusal::RateLimited(_) => {
                "this app or its tenant is over its requests per second; retry later".into()
            }
            Refusal::NoRoute => "no route matches this path".into(),
            Refusal::TooManyInFlight => {
                "this tenant has too many requests in flight; retry shortly".into()
            }
            Refusal::BodyTooLarge(limit) => {
                format!("the request body is larger than this app's limit of {limit} bytes").into()
            }
            Refusal::BadRequest(why) => why.as_str().into(),
            Refusal::Guest(failure) => failure.message().into(),
            Refusal::InterimResponse => {
                "the app answered with an interim (1xx) status as its final response".into()
            }
        }
    }

    /// Writes the refusal; returns whether it was written whole.
    pub(crate) async fn write(&self, session: &mut ServerSession) -> bool {
        let body = serde_json::json!({ "error": {
            "code": self.code(),
            "message": self.message(),
        }})
        .to_string();
        let Ok(mut head) = ResponseHeader::build(self.status(), Some(3)) else {
            return false;
        };
        if head
            .insert_header("content-type", "application/json")
            .is_err()
        {
            return false;
        }
        if let Refusal::RateLimited(wait) = self {
            // Whole seconds, rounded up.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            if head
                .insert_header("retry-after", seconds.max(1).to_string())
                .is_err()
            {
                return false;
            }
        }
        write_whole(session, head, Bytes::from(body)).await
    }
}

/// Writes an operator's static response; returns whether it was written whole.
pub(crate) async fn write_static(session: &mut ServerSession, response: &StaticResponse) -> bool {
    let Ok(mut head) = ResponseHeader::build(response.status, Some(response.headers.len() + 1))
    else {
        return Refusal::BadStaticResponse("the app's static response has an invalid status")
            .write(session)
            .await;
    };
    for (name, value) in &response.headers {
        if head.insert_header(name.clone(), value.as_str()).is_err() {
            return Refusal::BadStaticResponse("the app's static response has an invalid header")
                .write(session)
                .await;
        }
    }
    write_whole(session, head, Bytes::from(response.body.clone())).await
}

/// Writes a 200 `text/plain` body; returns whether it was written whole.
pub(crate) async fn write_text(session: &mut ServerSession, body: &'static [u8]) -> bool {
    let Ok(mut head) = ResponseHeader::build(200, Some(2)) else {
        return false;
    };
    if head.insert_header("content-type", "text/plain").is_err() {
        return false;
    }
    write_whole(session, head, Bytes::from_static(body)).await
}

async fn write_whole(session: &mut ServerSession, mut head: ResponseHeader, body: Bytes) -> bool {
    if head
        .insert_header(CONTENT_LENGTH, body.len().to_string())
        .is_err()
    {
        return false;
    }
    session.write_response_header(Box::new(head)).await.is_ok()
        && session.write_response_body(body, true).await.is_ok()
}
