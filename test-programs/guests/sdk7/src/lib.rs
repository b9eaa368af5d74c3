//! A spin-sdk 7 (wasi:http 0.3) component whose path picks a behaviour:
//! `/hello`, `/echo` (streams the body back with method, path and headers),
//! `/headers`, `/download?bytes=N` (streamed, no length), `/upload`,
//! `/counter`, `/memory-probe`, `/kv`, `/kv-walk` (spin:key-value@3 step by
//! step), `/kv-get?key=K`, `/kv-set?key=K&value=V`, `/variable?name=N`
//! (spin:variables@3), `/fetch?url=U` (an outbound
//! GET through wasi:http 0.3 `client.send`), `/post?bytes=N&pause_ms=M&url=U`
//! (a streamed POST, reporting what became of its body), and the hostile `/loop`,
//! `/alloc` and `/panic`.

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;

type Body = UnsyncBoxBody<Bytes, anyhow::Error>;

#[http_service]
async fn handle(req: Request) -> impl IntoResponse {
    let full = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let query = req.uri().query().unwrap_or("").to_string();
    let path = req.uri().path().to_string();
    let path = path
        .rsplit_once("/t/")
        .map_or(path.as_str(), |(_, rest)| rest)
        .trim_matches('/');
    match path {
        "hello" | "" => text(200, "Hello from spin-sdk 7\n"),
        "headers" => {
            let body = guest_common::render_headers(
                req.headers()
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_bytes())),
            );
            text(200, body)
        }
        "echo" => {
            let mut builder = http::Response::builder()
                .header("x-echo-method", req.method().as_str())
                .header("x-echo-path", full);
            if let Some(ct) = req.headers().get("content-type") {
                builder = builder.header("content-type", ct);
            }
            let stream = req.into_body().stream().map(|r| {
                r.map(http_body::Frame::data)
                    .map_err(|e| anyhow::anyhow!("{e:?}"))
            });
            response(builder, StreamBody::new(stream).boxed_unsync())
        }
        "download" => {
            let total = guest_common::bytes_param(&query);
            let chunks = (0..total).step_by(64 * 1024).map(move |start| {
                let n = (total - start).min(64 * 1024);
                Ok::<_, anyhow::Error>(http_body::Frame::data(Bytes::from(vec![b'x'; n])))
            });
            response(
                http::Response::builder(),
                StreamBody::new(futures::stream::iter(chunks)).boxed_unsync(),
            )
        }
        "upload" => {
            let mut total = 0usize;
            let mut stream = req.into_body().stream();
            while let Some(Ok(chunk)) = stream.next().await {
                total += chunk.len();
            }
            text(200, total.to_string())
        }
        "counter" => text(200, guest_common::count_request().to_string()),
        "memory-probe" => text(200, guest_common::memory_probe()),
        "kv" => match spin_sdk::key_value::Store::open_default().await {
            Ok(_) => text(200, "opened"),
            Err(e) => text(200, format!("error: {e:?}")),
        },
        "kv-walk" => text(200, kv_walk().await),
        "kv-get" | "kv-set" => text(200, kv_get_or_set(path, &query).await),
        "variable" => text(
            200,
            guest_common::variable_report(
                spin_sdk::variables::get(guest_common::param(&query, "name")).await,
            ),
        ),
        "fetch" => text(200, guest_common::fetch_report(fetch(&query).await)),
        "post" => text(200, post(&query).await),
        "loop" => guest_common::spin_forever(),
        "alloc" => text(200, guest_common::allocate_forever().to_string()),
        "panic" => panic!("guest secret sk_live_do_not_leak"),
        _ => text(404, "no such test route\n"),
    }
}

/// A streamed POST of `bytes=N` bytes to `url=U` through raw wasi:http 0.3
/// (spin-sdk's own `send` drops what `request.new` reports about the body):
/// `status=<status or error> body=<what became of the request body>`.
async fn post(query: &str) -> String {
    use spin_sdk::wasip3::http::client;
    use spin_sdk::wasip3::http::types::{Fields, Method, Request, Scheme};
    use spin_sdk::wasip3::http_compat::BodyWriter;
    let url: http::Uri = match guest_common::url_param(query).parse() {
        Ok(url) => url,
        Err(e) => return format!("error=bad url: {e}"),
    };
    let size = guest_common::bytes_param(query);
    let (writer, contents, trailers) = BodyWriter::new();
    let (request, transmitted) = Request::new(Fields::new(), Some(contents), trailers, None);
    let _ = request.set_method(&Method::Post);
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(url.authority().map(|a| a.as_str()));
    let _ = request.set_path_with_query(url.path_and_query().map(|p| p.as_str()));
    // No Content-Length: the body streams while the request is sent. With
    // `pause_ms=M`, the second half waits M ms, so an upstream that answers
    // at once does so before the body is done.
    let pause_ms: u64 = guest_common::param(query, "pause_ms").parse().unwrap_or(0);
    let halves = [size / 2, size - size / 2];
    let chunks =
        futures::stream::iter(halves.into_iter().enumerate()).then(move |(i, n)| async move {
            if i == 1 && pause_ms > 0 {
                spin_sdk::wasip3::clocks::monotonic_clock::wait_for(pause_ms * 1_000_000).await;
            }
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(vec![b'x'; n])))
        });
    let mut body = StreamBody::new(Box::pin(chunks));
    let writing = writer.send_http_body(&mut body);
    let (_, sent) = futures::join!(writing, client::send(request));
    let status = match sent {
        Ok(response) => response.get_status_code().to_string(),
        Err(e) => format!("{e:?}"),
    };
    let body = transmitted.await;
    format!("status={status} body={body:?}")
}

/// An outbound GET through `wasi:http/client.send`, read to the end.
async fn fetch(query: &str) -> Result<(u16, Vec<u8>, Option<String>), String> {
    let response = spin_sdk::http::get(guest_common::url_param(query))
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let mut stream = response.into_body().stream();
    let mut bytes = Vec::new();
    let mut body_error = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(e) => {
                body_error = Some(format!("{e:?}"));
                break;
            }
        }
    }
    Ok((status, bytes, body_error))
}

fn text(status: u16, body: impl Into<String>) -> http::Response<Body> {
    let body: String = body.into();
    http::Response::builder()
        .status(status)
        .header("content-length", body.len())
        .body(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .unwrap_or_default()
}

fn response(builder: http::response::Builder, body: Body) -> http::Response<Body> {
    builder.body(body).unwrap_or_default()
}

/// spin:key-value@3.0.0 step by step on the "default" store, one line a step.
async fn kv_walk() -> String {
    use spin_sdk::key_value::Store;
    let mut out = Vec::new();
    match Store::open("forbidden").await {
        Ok(_) => out.push("forbidden: opened".to_string()),
        Err(e) => out.push(format!("forbidden: {e:?}")),
    }
    let store = match Store::open_default().await {
        Ok(store) => store,
        Err(e) => return format!("open default: {e:?}"),
    };
    let text = |v: Option<Vec<u8>>| v.map(|v| String::from_utf8_lossy(&v).into_owned());
    out.push(format!("exists {:?}", store.exists("bar").await));
    out.push(format!("set {:?}", store.set("bar", b"baz").await));
    out.push(format!("set {:?}", store.set("qux", b"1").await));
    out.push(format!("get {:?}", store.get("bar").await.map(text)));
    out.push(format!("exists {:?}", store.exists("bar").await));
    out.push(format!("keys {:?}", store.get_keys().await.collect().await));
    out.push(format!("delete {:?}", store.delete("bar").await));
    out.push(format!("delete {:?}", store.delete("qux").await));
    out.push(format!("keys {:?}", store.get_keys().await.collect().await));
    let long = "k".repeat(1025);
    out.push(format!("long key {:?}", store.set(&long, b"v").await));
    out.join("\n")
}

/// `/kv-get?key=K` and `/kv-set?key=K&value=V` on the "default" store.
async fn kv_get_or_set(path: &str, query: &str) -> String {
    use spin_sdk::key_value::Store;
    let store = match Store::open_default().await {
        Ok(store) => store,
        Err(e) => return format!("error: {e:?}"),
    };
    let key = guest_common::param(query, "key");
    if path == "kv-set" {
        return match store.set(key, guest_common::param(query, "value")).await {
            Ok(()) => "set".to_string(),
            Err(e) => format!("error: {e:?}"),
        };
    }
    match store.get(key).await {
        Ok(Some(value)) => String::from_utf8_lossy(&value).into_owned(),
        Ok(None) => "<none>".to_string(),
        Err(e) => format!("error: {e:?}"),
    }
}
