//! The smallest Spin app: answers every request with a greeting.

use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;

#[http_service]
async fn hello(req: Request) -> impl IntoResponse {
    format!("Hello from Okra! You asked for {}\n", req.uri().path())
}
