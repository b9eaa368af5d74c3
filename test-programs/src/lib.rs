//! Paths of the guest components and manifests used by tests, built by
//! `build.rs` for wasm32-wasip2 whenever their sources change.

include!(concat!(env!("OUT_DIR"), "/programs.rs"));

pub mod redis;
