//! `allowed_outbound_hosts` entries and request URLs: parsing and matching
//! never panic, and a parsed URL reads back as itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenant_config::allowed_hosts::AppContext;
use tenant_config::{AllowedHosts, OutboundUrl};

fuzz_target!(|input: (&str, &str)| {
    let (entry, url) = input;
    let ids = ["a".to_string()];
    let variable = |_: &str| Some("api.example".to_string());
    let app = AppContext { component_ids: &ids, variable: &variable };
    let hosts = AllowedHosts::build(&[entry.to_string()], &app);
    if let Ok(parsed) = OutboundUrl::parse(url, "https") {
        if let Ok(hosts) = hosts {
            let _ = hosts.allows(&parsed);
        }
        assert_eq!(OutboundUrl::parse(&parsed.to_string(), "https").as_ref(), Ok(&parsed));
    }
});
