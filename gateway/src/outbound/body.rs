//! Bodies on the outbound path, streamed frame by frame and never buffered:
//! upstream responses fail with `connection-read-timeout` when the upstream
//! goes quiet longer than the between-bytes timeout, and either direction
//! fails once it passes the policy's `maxBodySizeKb`.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use wasmtime_wasi_http::Error;

/// An upstream body with a between-bytes timeout.
pub(crate) struct BetweenBytes {
    inner: hyper::body::Incoming,
    quiet_limit: Duration,
    timer: Pin<Box<Sleep>>,
}

impl BetweenBytes {
    pub(crate) fn new(inner: hyper::body::Incoming, quiet_limit: Duration) -> Self {
        BetweenBytes {
            inner,
            quiet_limit,
            timer: Box::pin(tokio::time::sleep(quiet_limit)),
        }
    }
}

impl Body for BetweenBytes {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = Instant::now() + self.quiet_limit;
                self.timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::Hyper(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(self.timer.as_mut().poll(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body that fails with `error` once more than `limit` bytes have passed,
/// and reports how many bytes it carried when dropped.
pub(crate) struct CappedBody<B> {
    inner: B,
    limit: Option<u64>,
    seen: u64,
    error: fn(u64) -> Error,
    on_drop: Option<Box<dyn FnOnce(u64) + Send>>,
}

impl<B> CappedBody<B> {
    pub(crate) fn new(inner: B, limit: Option<u64>, error: fn(u64) -> Error) -> Self {
        CappedBody {
            inner,
            limit,
            seen: 0,
            error,
            on_drop: None,
        }
    }

    /// Calls `f` with the bytes carried when the body is dropped.
    pub(crate) fn on_drop(mut self, f: impl FnOnce(u64) + Send + 'static) -> Self {
        self.on_drop = Some(Box::new(f));
        self
    }
}

impl<B> Drop for CappedBody<B> {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take() {
            f(self.seen);
        }
    }
}

impl<B> Body for CappedBody<B>
where
    B: Body<Data = Bytes, Error = Error> + Unpin,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
        {
            self.seen += data.len() as u64;
            if let Some(limit) = self.limit
                && self.seen > limit
            {
                return Poll::Ready(Some(Err((self.error)(limit))));
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What became of a request body on its way out: resolves when the body has
/// ended (`Ok`) or failed (`Err`, e.g. past `maxBodySizeKb`), so a wasi:http
/// 0.3 guest learns it through the future `request.new` returned. A body
/// dropped unfinished (the request failed, or the upstream answered early)
/// reports nothing worse than the request's own outcome: `Ok`.
pub(crate) type BodyOutcome = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

/// Wraps `body` so its end or failure is reported through the returned future.
pub(crate) fn report_outcome<B>(body: B) -> (ReportingBody<B>, BodyOutcome) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let outcome = Box::pin(async move { rx.await.unwrap_or(Ok(())) });
    (
        ReportingBody {
            inner: body,
            outcome: Some(tx),
        },
        outcome,
    )
}

/// A body that reports how it ended (see [`report_outcome`]).
pub(crate) struct ReportingBody<B> {
    inner: B,
    outcome: Option<tokio::sync::oneshot::Sender<Result<(), Error>>>,
}

impl<B> Body for ReportingBody<B>
where
    B: Body<Data = Bytes, Error = Error> + Unpin,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        let report = match &frame {
            None => Some(Ok(())),
            Some(Err(e)) => Some(Err(copy_error(e))),
            Some(Ok(_)) => None,
        };
        if let Some(report) = report
            && let Some(tx) = self.outcome.take()
        {
            let _ = tx.send(report);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The same failure for the guest as the one passed on to the transport
/// (`Error` is not `Clone`: it may hold a hyper error).
fn copy_error(error: &Error) -> Error {
    match error {
        Error::HttpRequestBodySize(limit) => Error::HttpRequestBodySize(*limit),
        Error::ConnectionReadTimeout => Error::ConnectionReadTimeout,
        other => Error::InternalError(Some(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn chunks(parts: &[&'static [u8]]) -> http_body_util::combinators::UnsyncBoxBody<Bytes, Error> {
        let frames: Vec<Result<Frame<Bytes>, Error>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        http_body_util::StreamBody::new(futures::stream::iter(frames)).boxed_unsync()
    }

    #[tokio::test]
    async fn a_body_past_its_limit_fails_mid_stream_and_reports_its_bytes() {
        let seen = Arc::new(AtomicU64::new(0));
        let counter = seen.clone();
        let mut body = CappedBody::new(chunks(&[b"abc", b"defg", b"h"]), Some(5), |l| {
            Error::HttpRequestBodySize(Some(l))
        })
        .on_drop(move |n| counter.store(n, Ordering::SeqCst));
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "abc");
        let second = body.frame().await.unwrap();
        assert!(matches!(second, Err(Error::HttpRequestBodySize(Some(5)))));
        drop(body);
        assert_eq!(seen.load(Ordering::SeqCst), 7);
        // Within the limit, everything passes.
        let whole = CappedBody::new(chunks(&[b"abc", b"de"]), Some(5), |l| {
            Error::HttpResponseBodySize(Some(l))
        })
        .collect()
        .await
        .unwrap();
        assert_eq!(whole.to_bytes(), "abcde");
    }

    #[tokio::test]
    async fn a_request_body_reports_how_it_ended() {
        let (body, outcome) = report_outcome(chunks(&[b"abc", b"de"]));
        body.collect().await.unwrap();
        assert!(outcome.await.is_ok());

        let capped = CappedBody::new(chunks(&[b"abc", b"defg"]), Some(5), |l| {
            Error::HttpRequestBodySize(Some(l))
        });
        let (body, outcome) = report_outcome(capped);
        assert!(body.collect().await.is_err());
        assert!(matches!(
            outcome.await,
            Err(Error::HttpRequestBodySize(Some(5)))
        ));

        let (body, outcome) = report_outcome(chunks(&[b"abc"]));
        drop(body);
        assert!(outcome.await.is_ok(), "an abandoned body is not a failure");
    }
}
