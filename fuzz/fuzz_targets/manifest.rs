//! A manifest, as an operator's and as a tenant's bundle: a value or an
//! error, never a panic; a bundle's paths never leave the bundle.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::{Component, Path};
use tenant_config::AppManifest;
use tenant_config::paths::PathScope;

fuzz_target!(|text: &str| {
    let _ = AppManifest::parse(text, Path::new("spin.toml"), Path::new("app"));
    let root = Path::new("/bundle");
    if let Ok(m) = AppManifest::parse_in(text, Path::new("spin.toml"), root, PathScope::InsideApp) {
        for c in m.components.values() {
            for path in std::iter::once(&c.source).chain(c.files.iter().map(|f| &f.host_path)) {
                let rest = path.strip_prefix(root).expect("under the bundle");
                assert!(rest.components().all(|p| matches!(p, Component::Normal(_) | Component::CurDir)), "{}", path.display());
            }
        }
    }
});
