//! Behaviour the test guests share, independent of the Spin SDK version:
//! hostile workloads (endless loop, unbounded allocation) and the memory probe
//! that shows a fresh instance never sees another instance's data.

use std::hint::black_box;

/// Size of the probe region, in 64 KiB wasm pages.
const PROBE_PAGES: usize = 16;
const PAGE: usize = 65536;

/// A static buffer in the module's own data: a fresh instance must see zeros.
static mut STATIC_BUF: [u8; 4096] = [0; 4096];
/// Requests this instance has served; a fresh instance always reports 1.
static mut COUNTER: u64 = 0;

/// Counts this instance's requests.
pub fn count_request() -> u64 {
    // SAFETY: guests are single-threaded.
    unsafe {
        COUNTER += 1;
        COUNTER
    }
}

/// Grows linear memory, counts non-zero bytes in the new pages and in the
/// static buffer, then dirties both with a marker. Any non-zero count means
/// this instance saw memory another instance wrote.
pub fn memory_probe() -> String {
    #[cfg(target_arch = "wasm32")]
    {
        let old = core::arch::wasm32::memory_grow(0, PROBE_PAGES);
        if old == usize::MAX {
            return "grow-failed".into();
        }
        let base = (old * PAGE) as *mut u8;
        let len = PROBE_PAGES * PAGE;
        let mut dirty = 0usize;
        // SAFETY: these pages were just granted by memory.grow and nothing else uses them.
        unsafe {
            for i in 0..len {
                if base.add(i).read_volatile() != 0 {
                    dirty += 1;
                }
            }
            for i in 0..len {
                base.add(i).write_volatile(0xA5);
            }
        }
        let mut static_dirty = 0usize;
        // SAFETY: single-threaded guest; raw pointer avoids a reference to a static mut.
        unsafe {
            let buf = &raw mut STATIC_BUF;
            for i in 0..4096 {
                if (*buf)[i] != 0 {
                    static_dirty += 1;
                }
                (*buf)[i] = 0x5A;
            }
        }
        format!("grown_dirty={dirty} static_dirty={static_dirty}")
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        "not-wasm".into()
    }
}

/// Spins forever without yielding to the host.
pub fn spin_forever() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Allocates 1 MiB blocks until the allocator fails (which aborts the guest).
pub fn allocate_forever() -> usize {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(black_box(vec![1u8; 1 << 20]));
        black_box(&blocks);
    }
}

/// Renders headers as sorted `name: value` lines.
pub fn render_headers<'a>(headers: impl Iterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut lines: Vec<String> = headers
        .map(|(n, v)| format!("{}: {}", n.to_ascii_lowercase(), String::from_utf8_lossy(v)))
        .collect();
    lines.sort();
    lines.join("\n") + "\n"
}

/// Reads the file named by `path=P`, then tries to write next to it:
/// `read=<contents or error> write=<ok or error>`.
pub fn file_probe(query: &str) -> String {
    let path = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("path="))
        .unwrap_or("");
    let read = match std::fs::read_to_string(path) {
        Ok(text) => text.trim().to_string(),
        Err(e) => format!("error({:?})", e.kind()),
    };
    let write = match std::fs::write(format!("{path}.written"), b"x") {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("error({:?})", e.kind()),
    };
    format!("read={read} write={write}")
}

/// Tries to open a TCP connection to `addr=HOST:PORT`: `connect=<ok or error>`.
pub fn connect_probe(query: &str) -> String {
    let addr = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("addr="))
        .unwrap_or("");
    match std::net::TcpStream::connect(addr) {
        Ok(_) => "connect=ok".into(),
        Err(e) => format!("connect=error({:?})", e.kind()),
    }
}

/// Parses `bytes=N` out of a query string.
pub fn bytes_param(query: &str) -> usize {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("bytes="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The `url=` parameter of a fetch probe: everything after it, so the URL may
/// carry its own query. Put it last.
pub fn url_param(query: &str) -> &str {
    query
        .find("url=")
        .map_or("", |start| &query[start + "url=".len()..])
}

/// The raw value of parameter `name` in a query string ("" when absent).
pub fn param<'a>(query: &'a str, name: &str) -> &'a str {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or("")
}

/// A `name=N` millisecond parameter, as nanoseconds.
pub fn ms_param_ns(query: &str, name: &str) -> Option<u64> {
    param(query, name)
        .parse::<u64>()
        .ok()
        .map(|ms| ms * 1_000_000)
}

/// What a variable probe answers: the value, or `error=E`.
pub fn variable_report<E: core::fmt::Debug>(outcome: Result<impl core::fmt::Display, E>) -> String {
    match outcome {
        Ok(value) => format!("value={value}"),
        Err(e) => format!("error={e:?}"),
    }
}

/// What a fetch probe answers: `status=S body=B`, plus ` body_error=E` when
/// the body failed part-way, or `error=E` when no response came.
pub fn fetch_report(outcome: Result<(u16, Vec<u8>, Option<String>), String>) -> String {
    match outcome {
        Ok((status, body, body_error)) => {
            let mut report = format!("status={status} body={}", String::from_utf8_lossy(&body));
            if let Some(e) = body_error {
                report.push_str(&format!(" body_error={e}"));
            }
            report
        }
        Err(e) => format!("error={e}"),
    }
}
