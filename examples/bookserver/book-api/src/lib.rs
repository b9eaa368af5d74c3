//! `book-api`: recommends a different book for each day of the week and
//! answers `{"title": ..., "author": ...}`, like the seed blog's JavaScript
//! service. Built with spin-sdk 5 (wasi:http 0.2).

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;

/// One book per weekday, Sunday first.
const BOOKS: [(&str, &str); 7] = [
    ("Dead Souls", "Nikolai Gogol"),
    ("The Little Drummer Girl", "John Le Carré"),
    ("We Were Eight Years In Power", "Ta-Nehisi Coates"),
    ("My Ántonia", "Willa Cather"),
    ("Haroun and the Sea of Stories", "Salman Rushdie"),
    ("The Bird King", "G. Willow Wilson"),
    ("The Hobbit", "J.R.R. Tolkien"),
];

#[http_component]
fn handle(_req: Request) -> impl IntoResponse {
    let (title, author) = BOOKS[weekday()];
    let body = format!(r#"{{"title":"{title}","author":"{author}"}}"#);
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(body)
        .build()
}

/// Today's weekday, 0 = Sunday (1970-01-01 was a Thursday).
fn weekday() -> usize {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    ((seconds / 86_400 + 4) % 7) as usize
}
