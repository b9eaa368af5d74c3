//! The part of a guest's response body that is already there when its head
//! is. Most responses are small and finished by the time the edge sees the
//! head; collecting them without waiting lets the edge send head and body
//! with a `Content-Length` in one write, instead of a chunk and then the
//! last-chunk marker in two. Nothing here ever waits for the guest, so a
//! streamed body still streams.

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use http_body_util::BodyExt;
use wasmtime_wasi_http::WasiBody;

/// How a guest's response body fails.
pub(crate) type BodyError = <WasiBody as http_body::Body>::Error;

/// Largest body collected ahead; a longer one is streamed chunked.
pub(crate) const READY_BODY_LIMIT: usize = 64 << 10;

/// What was ready.
pub(crate) struct ReadyBody {
    /// Body bytes collected so far, in order.
    pub(crate) data: Bytes,
    /// True when `data` is the whole body.
    pub(crate) complete: bool,
}

impl ReadyBody {
    /// Takes the frames `body` can give without waiting, until it ends, would
    /// wait, or more than `limit` bytes were taken. Trailers are dropped, as
    /// on every HTTP/1 response. An error is the body's own failure.
    pub(crate) fn take(body: &mut WasiBody, limit: usize) -> Result<Self, BodyError> {
        let mut data = BytesMut::new();
        loop {
            if data.len() > limit {
                return Ok(ReadyBody::partial(data));
            }
            match body.frame().now_or_never() {
                None => return Ok(ReadyBody::partial(data)),
                Some(None) => {
                    return Ok(ReadyBody {
                        data: data.freeze(),
                        complete: true,
                    });
                }
                Some(Some(Ok(frame))) => {
                    if let Ok(chunk) = frame.into_data() {
                        data.extend_from_slice(&chunk);
                    }
                }
                Some(Some(Err(e))) => return Err(e),
            }
        }
    }

    fn partial(data: BytesMut) -> Self {
        ReadyBody {
            data: data.freeze(),
            complete: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use http_body::Frame;
    use http_body_util::StreamBody;

    /// A body of `chunks`, then an end only if `ends`; otherwise it waits forever.
    fn body(chunks: &[&'static [u8]], ends: bool) -> WasiBody {
        let frames = futures::stream::iter(
            chunks
                .iter()
                .map(|c| Ok::<_, BodyError>(Frame::data(Bytes::from_static(c))))
                .collect::<Vec<_>>(),
        );
        let tail = if ends {
            futures::stream::empty().boxed()
        } else {
            futures::stream::pending().boxed()
        };
        StreamBody::new(frames.chain(tail)).boxed_unsync()
    }

    #[test]
    fn a_finished_body_is_taken_whole() {
        let ready = ReadyBody::take(&mut body(&[b"hello ", b"world"], true), 1024).unwrap();
        assert!(ready.complete);
        assert_eq!(ready.data, "hello world");
    }

    #[test]
    fn a_body_still_being_written_is_taken_as_far_as_it_goes() {
        let mut unfinished = body(&[b"first"], false);
        let ready = ReadyBody::take(&mut unfinished, 1024).unwrap();
        assert!(!ready.complete);
        assert_eq!(ready.data, "first");
    }

    #[test]
    fn a_body_over_the_limit_is_left_to_stream() {
        let mut long = body(&[b"0123456789", b"0123456789", b"tail"], true);
        let ready = ReadyBody::take(&mut long, 15).unwrap();
        assert!(!ready.complete);
        assert_eq!(ready.data, "01234567890123456789");
        let rest = futures::executor::block_on(long.collect()).unwrap();
        assert_eq!(rest.to_bytes(), "tail");
    }
}
