//! Okra's load generator, as a library so its parts can be tested on their
//! own; `main.rs` is the `loadtest` binary.

pub mod cli;
pub mod client;
pub mod pacer;
pub mod picker;
pub mod plot;
pub mod progress;
pub mod recorder;
pub mod report;
pub mod run;
pub mod scenario;
