//! Hello from spin-sdk 5: the p2 counterpart of `examples/hello`.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;

#[http_component]
fn hello(req: Request) -> anyhow::Result<impl IntoResponse> {
    Ok(Response::new(
        200,
        format!("Hello from spin-sdk 5! You asked for {}\n", req.path()),
    ))
}
