//! A real HTTP/1.1 upstream on 127.0.0.1 for outbound tests. It counts the
//! connections and requests it accepts, and answers by path:
//! `/hello`, `/host` (the Host header it got), `/headers` (every header it
//! got, sorted `name: value` lines), `/bytes?n=N` (N bytes), `/slow-head?ms=N`
//! (waits before the head), `/stall-body` (head and one chunk, then silence),
//! `/proto` (the HTTP version it was spoken to with). With TLS it offers ALPN
//! `h2` and `http/1.1`.

use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

/// A running upstream; stops when dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Counts {
    connections: AtomicUsize,
    requests: AtomicUsize,
}

impl Upstream {
    pub async fn start() -> Upstream {
        Upstream::start_with(None).await
    }

    /// An HTTPS upstream presenting `tls` (ALPN `h2`, `http/1.1`).
    pub async fn start_tls(tls: rustls::ServerConfig) -> Upstream {
        Upstream::start_with(Some(Arc::new(tls))).await
    }

    async fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let counts = Arc::new(Counts::default());
        let task = tokio::spawn(serve(listener, counts.clone(), tls));
        Upstream { addr, counts, task }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.counts.connections.load(Ordering::SeqCst)
    }

    /// Requests whose head arrived so far.
    pub fn requests(&self) -> usize {
        self.counts.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, counts: Arc<Counts>, tls: Option<Arc<rustls::ServerConfig>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        counts.connections.fetch_add(1, Ordering::SeqCst);
        let counts = counts.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                counts.requests.fetch_add(1, Ordering::SeqCst);
                answer(req)
            });
            let Some(tls) = tls else {
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                return;
            };
            let Ok(stream) = tokio_rustls::TlsAcceptor::from(tls).accept(stream).await else {
                return;
            };
            if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            } else {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }
        });
    }
}

/// A CA and a server certificate for `names`, signed by it: (CA PEM, server config).
pub fn tls_for(names: &[&str]) -> (String, rustls::ServerConfig) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = CertificateParams::new(names)
        .expect("server params")
        .signed_by(&key, &issuer)
        .expect("server cert");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (ca_cert.pem(), config)
}

type Body = BoxBody<Bytes, Infallible>;

async fn answer(
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Body>, Infallible> {
    let query = req.uri().query().unwrap_or("").to_string();
    let full = |text: String| Full::new(Bytes::from(text)).boxed();
    let body = match req.uri().path() {
        "/hello" => full("upstream hello".into()),
        "/host" => full(
            req.headers()
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("<none>")
                .to_string(),
        ),
        "/proto" => full(format!("{:?}", req.version())),
        // Answers at once, reading the request body on after the answer.
        "/early" => {
            tokio::spawn(req.into_body().collect());
            full("early".into())
        }
        "/count" => {
            let read = req.into_body().collect().await.map(|b| b.to_bytes().len());
            full(format!("{read:?}"))
        }
        "/headers" => {
            let mut lines: Vec<String> = req
                .headers()
                .iter()
                .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v.as_bytes())))
                .collect();
            lines.sort();
            full(lines.join("\n"))
        }
        "/bytes" => {
            let n = query
                .strip_prefix("n=")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            full("x".repeat(n))
        }
        "/slow-head" => {
            let ms = query
                .strip_prefix("ms=")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            full("late".into())
        }
        "/stall-body" => {
            let chunks = futures::stream::once(async {
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"first")))
            })
            .chain(futures::stream::pending());
            BodyExt::boxed(StreamBody::new(chunks))
        }
        _ => full("no such upstream path".into()),
    };
    Ok(http::Response::new(body))
}
