//! The floor under Okra's wasm path: what Wasmtime alone spends to serve one
//! wasi:http 0.2 request in a fresh instance, with no network, no edge and
//! no gateway. One thread makes a `Store`, instantiates the component from
//! its instance-pre, calls `incoming-handler.handle` with an empty GET and
//! reads the whole response body, `n` times over; first on an engine with
//! component-model concurrency (calls go through its task bookkeeping), then
//! on one without (a direct call on a fiber), then both again. The pooling
//! settings are the gateway's defaults.
//!
//! Usage: cargo run --release -p gateway --example instance_floor -- WASM [N]
//! (BENCHMARKS.md uses test-programs/guests/target/wasm32-wasip2/release/hello5_guest.wasm).

use http_body_util::{BodyExt, Empty};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

struct Host {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: wasmtime_wasi_http::default_hooks(),
        }
    }
}

fn engine(concurrent: bool) -> wasmtime::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(100)
        .total_core_instances(800)
        .total_memories(200)
        .total_tables(800)
        .total_stacks(100)
        .max_memory_size(256 << 20)
        .max_component_instance_size(4 << 20)
        .max_core_instance_size(4 << 20)
        .linear_memory_keep_resident(4 << 20)
        .table_keep_resident(64 << 10)
        .pagemap_scan(wasmtime::Enabled::Auto);
    let mut config = Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .concurrency_support(concurrent)
        .wasm_component_model_async(concurrent)
        .epoch_interruption(true)
        .memory_init_cow(true)
        .memory_reservation(256 << 20)
        .memory_guard_size(32 << 20)
        .memory_reservation_for_growth(0);
    Engine::new(&config)
}

/// Serves `n` requests in fresh instances; returns (total, instantiation) time.
async fn serve(wasm: &[u8], concurrent: bool, n: u32) -> wasmtime::Result<(Duration, Duration)> {
    let engine = engine(concurrent)?;
    let component = Component::new(&engine, wasm)?;
    let mut linker: Linker<Host> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    let pre = ProxyPre::new(linker.instantiate_pre(&component)?)?;
    let mut instantiating = Duration::ZERO;
    let started = Instant::now();
    for _ in 0..n {
        let host = Host {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
        };
        let mut store = Store::new(&engine, host);
        store.set_epoch_deadline(1_000);
        let before = Instant::now();
        let proxy = pre.instantiate_async(&mut store).await?;
        instantiating += before.elapsed();

        let empty =
            Empty::new().map_err(|never: std::convert::Infallible| -> ErrorCode { match never {} });
        let request = http::Request::get("http://localhost/").body(empty)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let request = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)?;
        let out = store.data_mut().http().new_response_outparam(tx)?;
        if concurrent {
            let handle = proxy.wasi_http_incoming_handler().func_handle();
            store
                .run_concurrent(async |a| handle.call_concurrent(a, (request, out)).await)
                .await??;
        } else {
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, request, out)
                .await?;
        }
        let body = rx.await??.into_body().collect().await?.to_bytes();
        assert!(!body.is_empty(), "the guest answered with an empty body");
    }
    Ok((started.elapsed(), instantiating))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> wasmtime::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        wasmtime::bail!("usage: instance_floor WASM [N]");
    };
    let n: u32 = args.next().map_or(Ok(20_000), |n| n.parse())?;
    let wasm = std::fs::read(&path)?;
    for concurrent in [true, false, true, false] {
        let (total, instantiating) = serve(&wasm, concurrent, n).await?;
        let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(n);
        println!(
            "{:<10} {:6.1} us per request, of which instantiation {:5.1} us",
            if concurrent { "concurrent" } else { "direct" },
            per(total),
            per(instantiating)
        );
    }
    Ok(())
}
