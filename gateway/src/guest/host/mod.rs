//! The host side of the interfaces a Spin guest imports besides WASI and
//! wasi:http: variables and key-value (real) and stubs for the platform
//! interfaces Okra does not provide yet. A new host interface (SQLite, ...)
//! gets its own module here and is linked in `guest::engine`.

pub(crate) mod key_value;
pub(crate) mod stubs;
pub(crate) mod variables;
