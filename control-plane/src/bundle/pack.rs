//! Packing an app directory for `okra deploy`: the manifest, `okra.json` if
//! present, and every file a component's `source` and `files` reference.

use super::{MANIFEST, POLICY};
use flate2::Compression;
use flate2::write::GzEncoder;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tenant_config::AppManifest;
use tenant_config::paths::normalize_relative;

/// Why an app directory could not be packed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// `spin.toml` could not be read or is not a valid manifest.
    #[error(transparent)]
    Manifest(#[from] tenant_config::ManifestError),
    /// A file or directory to pack could not be read, or the archive could
    /// not be written.
    #[error("{}: {reason}", .path.display())]
    Io {
        /// The file or directory being read (the app directory when
        /// finishing the archive).
        path: PathBuf,
        /// The underlying I/O error: said in the message, and not also
        /// chained as a source, so `{:#}` does not print it twice.
        reason: std::io::Error,
    },
    /// A component's `source` is not there: the app is not built.
    #[error("component `{component}`: its source {} does not exist; build it first (okra build, or leave out --no-build)", .path.display())]
    NotBuilt {
        /// The component's id.
        component: String,
        /// Its `source` path.
        path: PathBuf,
    },
    /// The manifest references a file outside the app directory.
    #[error("{0} is outside the app directory; a bundle holds only files under it")]
    Outside(PathBuf),
}

/// Packs what `dir/spin.toml` references (the manifest, `okra.json` if
/// present, every component's source and `files`) into a `.tar.gz`.
pub fn pack(dir: &Path) -> Result<Vec<u8>, PackError> {
    let manifest_path = dir.join(MANIFEST);
    let manifest = AppManifest::load(&manifest_path)?;
    let mut wanted: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut add = |path: &Path| -> Result<(), PackError> {
        let rel = path
            .strip_prefix(dir)
            .map_err(|_| PackError::Outside(path.to_path_buf()))?;
        let rel = normalize_relative(&rel.to_string_lossy())
            .map_err(|_| PackError::Outside(path.to_path_buf()))?;
        wanted.insert(rel, path.to_path_buf());
        Ok(())
    };
    add(&manifest_path)?;
    if dir.join(POLICY).exists() {
        add(&dir.join(POLICY))?;
    }
    for (id, component) in &manifest.components {
        if !component.source.is_file() {
            return Err(PackError::NotBuilt {
                component: id.clone(),
                path: component.source.clone(),
            });
        }
        add(&component.source)?;
        for mount in &component.files {
            for file in walk(&mount.host_path)? {
                add(&file)?;
            }
        }
    }
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    for (rel, path) in &wanted {
        let io = |reason| PackError::Io {
            path: path.clone(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(io)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, rel, bytes.as_slice())
            .map_err(io)?;
    }
    let io = |reason| PackError::Io {
        path: dir.to_path_buf(),
        reason,
    };
    tar.into_inner().map_err(io)?.finish().map_err(io)
}

/// Every regular file under `path` (or `path` itself if it is a file).
fn walk(path: &Path) -> Result<Vec<PathBuf>, PackError> {
    let io = |reason| PackError::Io {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io)? {
        out.extend(walk(&entry.map_err(io)?.path())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{BundleLimits, unpack};

    #[test]
    fn pack_takes_only_what_the_manifest_references() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("target/wasm")).unwrap();
        std::fs::create_dir_all(dir.path().join("static")).unwrap();
        std::fs::write(
            dir.path().join("spin.toml"),
            r#"spin_manifest_version = 2
[application]
name = "t"
[[trigger.http]]
route = "/..."
component = "c"
[component.c]
source = "target/wasm/c.wasm"
files = [{ source = "static", destination = "/" }]
"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("target/wasm/c.wasm"), b"wasm").unwrap();
        std::fs::write(dir.path().join("target/junk.o"), b"junk").unwrap();
        std::fs::write(dir.path().join("static/index.html"), b"hi").unwrap();
        let files = unpack(&pack(dir.path()).unwrap(), BundleLimits::default()).unwrap();
        let names: Vec<&str> = files.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["spin.toml", "static/index.html", "target/wasm/c.wasm"]
        );
        assert_eq!(files["target/wasm/c.wasm"], b"wasm");
    }
}
