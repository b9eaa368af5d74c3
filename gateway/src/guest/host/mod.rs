//! The host side of the interfaces a Spin guest imports besides WASI and
//! wasi:http: variables (real) and stubs for the platform interfaces Okra
//! does not provide yet. A new host interface (key-value, SQLite, ...) gets
//! its own module here and is linked in `guest::engine`.

pub(crate) mod stubs;
pub(crate) mod variables;
