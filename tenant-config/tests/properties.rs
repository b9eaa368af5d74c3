//! Property tests of everything a tenant's input reaches first: manifests,
//! routes, allowed hosts and URLs, policies with CEL. Whatever the input,
//! parsing returns a value or an error, never a panic; where there is a
//! round trip it holds; and a bundle's manifest never names a path outside
//! its bundle.

use proptest::prelude::*;
use std::path::{Component, Path};
use tenant_config::allowed_hosts::AppContext;
use tenant_config::paths::PathScope;
use tenant_config::policy::{Policy, ScopeLevel};
use tenant_config::{AllowedHosts, AppManifest, OutboundUrl, RoutePattern};

/// Text made of the characters manifests, routes and URLs are built from,
/// so generated cases reach past the first syntax check.
fn fragments() -> impl Strategy<Value = String> {
    proptest::string::string_regex(r"[a-z0-9./:*\[\]{}@%?#=_ -]{0,40}").expect("a valid regex")
}

/// A path as a tenant might write one in a manifest.
fn manifest_path() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::string::string_regex(r"(\.\./|\./|/|[a-z]{1,3}/|\.\.|\\\\){0,5}[a-z.*]{0,6}")
            .expect("a valid regex"),
        fragments(),
    ]
}

fn manifest(source: &str, files: &str, route: &str) -> String {
    format!(
        "spin_manifest_version = 2\n[application]\nname = \"x\"\n[[trigger.http]]\nroute = {route:?}\ncomponent = \"c\"\n[component.c]\nsource = {source:?}\nfiles = [{{ source = {files:?}, destination = \"/d\" }}, {files:?}]\n"
    )
}

/// Whether `path`, resolved lexically, stays under `root`.
fn lexically_inside(root: &Path, path: &Path) -> bool {
    let Ok(rest) = path.strip_prefix(root) else {
        return false;
    };
    let mut depth = 0i32;
    for part in rest.components() {
        match part {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_manifest_text_parses_or_fails_without_panicking(text in ".{0,400}") {
        let _ = AppManifest::parse(&text, Path::new("spin.toml"), Path::new("app"));
    }

    #[test]
    fn a_bundle_manifest_never_names_a_path_outside_its_bundle(
        source in manifest_path(),
        files in manifest_path(),
        route in fragments(),
    ) {
        let root = Path::new("/bundles/b1");
        let text = manifest(&source, &files, &route);
        if let Ok(m) = AppManifest::parse_in(&text, Path::new("spin.toml"), root, PathScope::InsideApp) {
            for component in m.components.values() {
                prop_assert!(lexically_inside(root, &component.source), "{}", component.source.display());
                for mount in &component.files {
                    prop_assert!(lexically_inside(root, &mount.host_path), "{}", mount.host_path.display());
                }
            }
        }
    }

    #[test]
    fn routes_parse_match_and_normalise_to_a_fixed_point(
        route in fragments(),
        path in fragments(),
        clean in "[a-z0-9./:*_-]{0,30}",
    ) {
        let _ = RoutePattern::parse(&route).matches(&path);
        // Spin trims a route as a whole, so the fixed point holds for
        // routes without inner whitespace.
        let normal = RoutePattern::parse(&clean).normalized();
        prop_assert_eq!(RoutePattern::parse(&normal).normalized(), normal);
    }

    #[test]
    fn allowed_host_lists_parse_or_fail_and_urls_round_trip(entry in fragments(), url in fragments()) {
        let ids = ["a".to_string(), "b-c".to_string()];
        let variable = |name: &str| (name == "host").then(|| "api.example".to_string());
        let app = AppContext { component_ids: &ids, variable: &variable };
        if let Ok(hosts) = AllowedHosts::build(&[entry], &app)
            && let Ok(parsed) = OutboundUrl::parse(&url, "https")
        {
            let _ = hosts.allows(&parsed);
        }
        if let Ok(parsed) = OutboundUrl::parse(&url, "https") {
            let again = OutboundUrl::parse(&parsed.to_string(), "https");
            prop_assert_eq!(again.as_ref(), Ok(&parsed), "{}", url);
        }
    }

    #[test]
    fn policies_and_their_cel_load_or_fail_without_panicking(
        condition in ".{0,80}",
        methods in proptest::collection::vec("[A-Za-z]{0,8}", 0..4),
        sites in proptest::collection::vec(fragments(), 0..3),
        raw in ".{0,200}",
    ) {
        let document = serde_json::json!({
            "policy.http.fetch.condition": condition,
            "policy.http.fetch.allowMethods": methods,
            "policy.http.fetch.allowedSites": sites,
        });
        for level in [ScopeLevel::Operator, ScopeLevel::Tenant, ScopeLevel::App] {
            let _ = Policy::parse(&document.to_string(), Path::new("okra.json"), level, "app x");
            let _ = Policy::parse(&raw, Path::new("okra.json"), level, "app x");
        }
    }
}
