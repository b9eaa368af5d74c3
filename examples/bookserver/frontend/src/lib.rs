//! `frontend`: asks the book API for the book of the day and renders it, as
//! the seed blog's Python component does. The API's URL comes from the
//! component variable `book_api_url`: `http://book-api.spin.internal/api`
//! chains in-process; `http://self.alt/api` goes back through the gateway.
//! Built with spin-sdk 7 (wasi:http 0.3).

use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{IntoResponse, Request, StatusCode};
use spin_sdk::http_service;

#[derive(serde::Deserialize)]
struct Book {
    title: String,
    author: String,
}

#[http_service]
async fn handle(_req: Request) -> impl IntoResponse {
    match book_of_the_day().await {
        Ok(book) => (
            StatusCode::OK,
            format!("Today's book is _{}_ by {}\n", book.title, book.author),
        ),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("the book API failed: {e}\n"),
        ),
    }
}

async fn book_of_the_day() -> Result<Book, String> {
    let url = spin_sdk::variables::get("book_api_url")
        .await
        .map_err(|e| format!("variable book_api_url: {e:?}"))?;
    let response = spin_sdk::http::get(url.as_str())
        .await
        .map_err(|e| format!("{url}: {e:?}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .bytes()
        .await
        .map_err(|e| format!("{url}: reading the body: {e:?}"))?;
    if !status.is_success() {
        return Err(format!("{url} answered {status}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))
}
