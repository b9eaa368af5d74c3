//! Routes and request paths: parsing and matching never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenant_config::RoutePattern;

fuzz_target!(|input: (&str, &str)| {
    let (route, path) = input;
    let pattern = RoutePattern::parse(route);
    let _ = pattern.matches(path);
    let _ = pattern.normalized();
    let _ = pattern.component_route();
});
