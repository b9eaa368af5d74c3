//! Spin apps built as core wasm modules (WASI preview1: TinyGo's Go SDK,
//! Rust SDKs targeting `wasm32-wasip1`, Spin's conformance suite as
//! released) become components at load, as Spin does: `wit-component`
//! reads the module's `component-type` sections, and the preview1 adapter
//! of this Wasmtime release turns its `wasi_snapshot_preview1` imports into
//! WASI 0.2 ones.
//!
//! Componentizing is a pure function of the module's bytes, so its output
//! is kept beside the compile cache directory (`<dir>-componentized/`)
//! under the module's SHA-256: a module componentizes once, not at every
//! start.

use std::path::{Path, PathBuf};
use wasmtime::error::Context as _;

/// Whether `wasm` is a core module (as opposed to a component).
pub(crate) fn is_core_module(wasm: &[u8]) -> bool {
    wasmtime::wasmparser::Parser::is_core_wasm(wasm)
}

/// The component made from core module `module`. Modules without
/// `component-type` metadata (Spin 1's ABI) are refused with an error that
/// says so.
pub(crate) fn componentize(module: &[u8]) -> wasmtime::Result<Vec<u8>> {
    if !has_component_type(module) {
        wasmtime::bail!(
            "the core module has no `component-type` metadata, which wit-bindgen and the Spin \
             SDKs embed, so it cannot be made a component (Spin 1 modules are not supported)"
        );
    }
    let encoder = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(module)
        .map_err(|e| wasmtime::format_err!("{e:#}"))
        .context("the core module cannot be made a component")?;
    encoder
        .adapter(
            "wasi_snapshot_preview1",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .map_err(|e| wasmtime::format_err!("{e:#}"))
        .context("loading the WASI preview1 adapter")?
        .encode()
        .map_err(|e| wasmtime::format_err!("{e:#}"))
        .context("the core module cannot be made a component")
}

/// Whether core module `module` carries wit-bindgen's `component-type`
/// custom sections (anything unparsable answers false).
fn has_component_type(module: &[u8]) -> bool {
    use wasmtime::wasmparser::{Parser, Payload};
    Parser::new(0).parse_all(module).any(|payload| {
        matches!(payload, Ok(Payload::CustomSection(section))
            if section.name().starts_with("component-type"))
    })
}

/// `componentize`, read from or kept in `cache_dir` (when there is one)
/// under `key`, the module's SHA-256.
pub(crate) fn componentize_cached(
    module: &[u8],
    key: &[u8; 32],
    cache_dir: Option<&Path>,
) -> wasmtime::Result<Vec<u8>> {
    let Some(dir) = cache_dir else {
        return componentize(module);
    };
    let path = cached_path(dir, key);
    if let Ok(component) = std::fs::read(&path)
        && !is_core_module(&component)
        && component.starts_with(b"\0asm")
    {
        return Ok(component);
    }
    let component = componentize(module)?;
    if let Err(e) = store(&path, &component) {
        tracing::warn!(path = %path.display(), error = %e, "could not keep a componentized module");
    }
    Ok(component)
}

/// Where a componentized module is kept: beside the compile cache, not in
/// it (Wasmtime's cache cleaner removes files it did not write).
fn cached_path(cache_dir: &Path, key: &[u8; 32]) -> PathBuf {
    let mut dir = cache_dir.as_os_str().to_owned();
    dir.push("-componentized");
    PathBuf::from(dir).join(format!("{}.wasm", hex::encode(key)))
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a
/// reader never sees half a component.
fn store(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("cached paths have a directory");
    std::fs::create_dir_all(dir)?;
    let temporary = dir.join(format!(
        ".{}.{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_componentizes_once_into_the_cache() {
        let module = std::fs::read(test_programs::SDK5_MODULE).unwrap();
        assert!(is_core_module(&module));
        let dir = tempfile::tempdir().unwrap();
        let key = [7u8; 32];
        let component = componentize_cached(&module, &key, Some(dir.path())).unwrap();
        assert!(!is_core_module(&component));
        let kept = cached_path(dir.path(), &key);
        assert_eq!(std::fs::read(&kept).unwrap(), component);
        // A second load reads the cache: prove it by planting a marker
        // component there and getting it back.
        let marker = std::fs::read(test_programs::HELLO5_GUEST).unwrap();
        std::fs::write(&kept, &marker).unwrap();
        assert_eq!(
            componentize_cached(&module, &key, Some(dir.path())).unwrap(),
            marker
        );
        // A damaged cache entry is redone, not served.
        std::fs::write(&kept, b"junk").unwrap();
        assert_eq!(
            componentize_cached(&module, &key, Some(dir.path())).unwrap(),
            component
        );
    }

    #[test]
    fn a_module_without_component_metadata_is_refused_with_the_reason() {
        // The smallest valid core module: no component-type section.
        let error = componentize(b"\0asm\x01\0\0\0").unwrap_err();
        assert!(format!("{error:#}").contains("component-type"), "{error:#}");
    }
}
