//! okra.json policies, CEL included: loading never panics, at any scope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use tenant_config::policy::{Policy, ScopeLevel};

fuzz_target!(|text: &str| {
    for level in [ScopeLevel::Operator, ScopeLevel::Tenant, ScopeLevel::App] {
        let _ = Policy::parse(text, Path::new("okra.json"), level, "app x");
    }
});
