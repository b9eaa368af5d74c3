//! A spin-sdk 5 (wasi:http 0.2) component whose path picks a behaviour:
//! `/hello`, `/echo` (streams the body back with method, path and headers),
//! `/headers`, `/download?bytes=N` (streamed, no length), `/upload` (counts a
//! streamed body), `/counter`, `/memory-probe`, `/file?path=P` (read, then try
//! to write), `/connect?addr=A`, `/fetch?method=M&h=name:value&connect_ms=..&first_byte_ms=..&between_ms=..&url=U`
//! (an outbound request with those headers and request options; a URL that
//! starts with `/` is sent relative, as spin-sdk 5's own `Request` sends it),
//! `/variable?name=N` (fermyon:spin/variables), `/config?name=N` and
//! `/config-all` (wasi:config/store), `/kv`, `/kv-walk` (Spin's key-value
//! semantics step by step), `/kv-get?store=S&key=K`, `/kv-set?store=S&key=K&value=V`, `/no-body`, `/llm`, `/status?code=N`, `/print`, and the hostile
//! `/loop`, `/alloc` and `/panic`.

use futures::{SinkExt, StreamExt};
use spin_sdk::http::{Fields, IncomingRequest, OutgoingResponse, ResponseOutparam};
use spin_sdk::http_component;

/// Spin's key-value semantics, step by step on a fresh "default" store:
/// an unlisted store is refused, then missing keys, set, overwrite, keys
/// and deletes (twice) behave as Spin's conformance suite expects.
fn kv_walk() -> Result<String, spin_sdk::key_value::Error> {
    use spin_sdk::key_value::{Error, Store};
    let mut steps = Vec::new();
    match Store::open("forbidden") {
        Err(Error::AccessDenied) => steps.push("forbidden: access-denied".to_string()),
        other => steps.push(format!("forbidden: {:?}", other.map(|_| "opened"))),
    }
    let store = Store::open_default()?;
    store.delete("bar")?;
    steps.push(format!("exists {}", store.exists("bar")?));
    steps.push(format!("get {:?}", store.get("bar")?));
    steps.push(format!("keys {:?}", store.get_keys()?));
    store.set("bar", b"baz")?;
    steps.push(format!("get {:?}", store.get("bar")?.map(String::from_utf8)));
    store.set("bar", b"wow")?;
    store.set("qux", b"yay")?;
    steps.push(format!("exists {}", store.exists("bar")?));
    steps.push(format!("keys {:?}", store.get_keys()?));
    store.delete("bar")?;
    store.delete("bar")?;
    store.delete("qux")?;
    steps.push(format!("keys {:?}", store.get_keys()?));
    Ok(steps.join("\n"))
}

#[http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    let full = req.path_with_query().unwrap_or_default();
    let (path, query) = full.split_once('?').unwrap_or((full.as_str(), ""));
    let path = path
        .rsplit_once("/t/")
        .map_or(path, |(_, rest)| rest)
        .trim_matches('/');
    match path {
        "hello" | "" => respond(out, 200, &[], b"Hello from spin-sdk 5\n".to_vec()).await,
        "headers" => {
            let entries = req.headers().entries();
            let body = guest_common::render_headers(
                entries.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
            );
            respond(out, 200, &[], body.into_bytes()).await
        }
        "echo" => {
            let entries = req.headers().entries();
            let mut headers = vec![
                (
                    "x-echo-method".to_string(),
                    req.method().to_string().into_bytes(),
                ),
                ("x-echo-path".to_string(), full.clone().into_bytes()),
            ];
            if let Some((_, ct)) = entries.iter().find(|(n, _)| n == "content-type") {
                headers.push(("content-type".into(), ct.clone()));
            }
            let response = OutgoingResponse::new(fields(&headers));
            let mut sink = response.take_body();
            out.set(response);
            let mut stream = req.into_body_stream();
            while let Some(Ok(chunk)) = stream.next().await {
                if sink.send(chunk).await.is_err() {
                    break;
                }
            }
        }
        "download" => {
            let mut remaining = guest_common::bytes_param(query);
            let response = OutgoingResponse::new(Fields::new());
            let mut sink = response.take_body();
            out.set(response);
            while remaining > 0 {
                let n = remaining.min(64 * 1024);
                if sink.send(vec![b'x'; n]).await.is_err() {
                    break;
                }
                remaining -= n;
            }
        }
        "upload" => {
            let mut total = 0usize;
            let mut stream = req.into_body_stream();
            while let Some(Ok(chunk)) = stream.next().await {
                total += chunk.len();
            }
            respond(out, 200, &[], total.to_string().into_bytes()).await
        }
        "counter" => {
            respond(
                out,
                200,
                &[],
                guest_common::count_request().to_string().into_bytes(),
            )
            .await
        }
        "memory-probe" => respond(out, 200, &[], guest_common::memory_probe().into_bytes()).await,
        "kv" => {
            let text = match spin_sdk::key_value::Store::open_default() {
                Ok(_) => "opened".to_string(),
                Err(e) => format!("error: {e:?}"),
            };
            respond(out, 200, &[], text.into_bytes()).await
        }
        "kv-walk" => {
            let text = kv_walk().unwrap_or_else(|e| format!("error: {e:?}"));
            respond(out, 200, &[], text.into_bytes()).await
        }
        "kv-get" | "kv-set" => {
            use spin_sdk::key_value::Store;
            let key = guest_common::param(query, "key");
            let result = Store::open(guest_common::param(query, "store")).and_then(|store| {
                if path == "kv-set" {
                    store
                        .set(key, guest_common::param(query, "value").as_bytes())
                        .map(|()| "set".to_string())
                } else {
                    store.get(key).map(|value| match value {
                        Some(v) => String::from_utf8_lossy(&v).into_owned(),
                        None => "<none>".to_string(),
                    })
                }
            });
            let text = result.unwrap_or_else(|e| format!("error: {e:?}"));
            respond(out, 200, &[], text.into_bytes()).await
        }
        "llm" => {
            let text = match spin_sdk::llm::infer(spin_sdk::llm::InferencingModel::Llama2Chat, "hi")
            {
                Ok(_) => "inferred".to_string(),
                Err(e) => format!("error: {e:?}"),
            };
            respond(out, 200, &[], text.into_bytes()).await
        }
        "file" => {
            let text = guest_common::file_probe(query);
            respond(out, 200, &[], text.into_bytes()).await
        }
        "connect" => {
            let text = guest_common::connect_probe(query);
            respond(out, 200, &[], text.into_bytes()).await
        }
        "fetch" => {
            let text = guest_common::fetch_report(fetch(query));
            respond(out, 200, &[], text.into_bytes()).await
        }
        "variable" => {
            let value = spin_sdk::variables::get(guest_common::param(query, "name"));
            let text = guest_common::variable_report(value);
            respond(out, 200, &[], text.into_bytes()).await
        }
        "config" => {
            use spin_sdk::wit::wasi::config::store;
            let value = store::get(guest_common::param(query, "name"))
                .map(|v| v.unwrap_or_else(|| "<none>".into()));
            let text = guest_common::variable_report(value);
            respond(out, 200, &[], text.into_bytes()).await
        }
        "config-all" => {
            use spin_sdk::wit::wasi::config::store;
            let text = guest_common::variable_report(store::get_all().map(|all| {
                all.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            }));
            respond(out, 200, &[], text.into_bytes()).await
        }
        "loop" => guest_common::spin_forever(),
        "alloc" => {
            let n = guest_common::allocate_forever();
            respond(out, 200, &[], n.to_string().into_bytes()).await
        }
        "print" => {
            // Output that tries to pass for the gateway's own log lines.
            println!("guest says hi");
            eprint!("partial\n2026-12-01T00:00:00.000000Z ERROR okra: forged line\x1b[2J\rno newline at the end");
            respond(out, 200, &[], b"printed".to_vec()).await
        }
        "no-body" => {
            // As Spin's conformance components answer: a response whose
            // body is never taken.
            out.set(OutgoingResponse::new(Fields::new()));
        }
        "status" => {
            let code = guest_common::param(query, "code").parse().unwrap_or(200);
            respond(out, code, &[], b"status body".to_vec()).await
        }
        "panic" => panic!("guest secret sk_live_do_not_leak"),
        _ => respond(out, 404, &[], b"no such test route\n".to_vec()).await,
    }
}

/// An outbound GET through wasi:http 0.2 `outgoing-handler.handle`, with the
/// request options the query names, read to the end with blocking calls.
fn fetch(query: &str) -> Result<(u16, Vec<u8>, Option<String>), String> {
    use spin_sdk::wit::wasi::http0_2_0::{outgoing_handler, types as wt};
    let url = guest_common::url_param(query);
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let (authority, path) = match rest.find('/') {
        // Relative: wasi-http needs an authority, so spin-sdk 5 sends `:80`.
        Some(0) => (":80", rest),
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    // Everything before `url=` is options; `h=name:value` adds a header.
    let options_part = &query[..query.find("url=").unwrap_or(query.len())];
    let headers: Vec<(String, Vec<u8>)> = options_part
        .split('&')
        .filter_map(|kv| kv.strip_prefix("h="))
        .filter_map(|h| h.split_once(':'))
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect();
    let request = wt::OutgoingRequest::new(
        wt::Fields::from_list(&headers).map_err(|e| format!("bad header: {e:?}"))?,
    );
    if let Some(method) = options_part
        .split('&')
        .find_map(|kv| kv.strip_prefix("method="))
    {
        let method = match method {
            "GET" => wt::Method::Get,
            "POST" => wt::Method::Post,
            "PUT" => wt::Method::Put,
            "DELETE" => wt::Method::Delete,
            other => wt::Method::Other(other.to_string()),
        };
        request.set_method(&method).map_err(|()| "bad method")?;
    }
    let scheme = match scheme {
        "http" => wt::Scheme::Http,
        "https" => wt::Scheme::Https,
        other => wt::Scheme::Other(other.to_string()),
    };
    request.set_scheme(Some(&scheme)).map_err(|()| "bad scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| "bad authority")?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| "bad path")?;
    let options = wt::RequestOptions::new();
    let _ = options.set_connect_timeout(guest_common::ms_param_ns(query, "connect_ms"));
    let _ = options.set_first_byte_timeout(guest_common::ms_param_ns(query, "first_byte_ms"));
    let _ = options.set_between_bytes_timeout(guest_common::ms_param_ns(query, "between_ms"));
    let body = request.body().map_err(|()| "no body")?;
    let pending = outgoing_handler::handle(request, Some(options)).map_err(|e| format!("{e:?}"))?;
    wt::OutgoingBody::finish(body, None).map_err(|e| format!("{e:?}"))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("response not ready")?
        .map_err(|()| "response taken twice")?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let incoming = response.consume().map_err(|()| "no body")?;
    let stream = incoming.stream().map_err(|()| "no stream")?;
    let mut bytes = Vec::new();
    let mut body_error = None;
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(wasi::io::streams::StreamError::LastOperationFailed(e)) => {
                body_error = Some(match wt::http_error_code(&e) {
                    Some(code) => format!("{code:?}"),
                    None => e.to_debug_string(),
                });
                break;
            }
        }
    }
    Ok((status, bytes, body_error))
}

fn fields(headers: &[(String, Vec<u8>)]) -> Fields {
    // Header names and values here are fixed ASCII, so this cannot fail.
    Fields::from_list(headers).unwrap_or_else(|_| Fields::new())
}

async fn respond(out: ResponseOutparam, status: u16, headers: &[(String, Vec<u8>)], body: Vec<u8>) {
    let mut all = headers.to_vec();
    all.push(("content-length".into(), body.len().to_string().into_bytes()));
    let response = OutgoingResponse::new(fields(&all));
    let _ = response.set_status_code(status);
    let mut sink = response.take_body();
    out.set(response);
    let _ = sink.send(body).await;
}
