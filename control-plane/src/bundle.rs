//! App bundles: the `.tar.gz` of an app directory that a deploy uploads.
//!
//! Unpacking is hostile-input parsing: only regular files and directories,
//! only relative paths that stay inside the bundle, no duplicates, and hard
//! caps on the unpacked size and file count that hold whatever the headers
//! claim. Packing (for `okra deploy`) takes exactly what the manifest
//! references, so build directories never travel.

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use tenant_config::AppManifest;

/// The manifest's name inside a bundle.
pub const MANIFEST: &str = "spin.toml";
/// The optional app policy's name inside a bundle.
pub const POLICY: &str = "okra.json";

/// Caps on what one bundle may unpack to.
#[derive(Clone, Copy, Debug)]
pub struct BundleLimits {
    /// Sum of all file sizes after decompression.
    pub max_unpacked_bytes: u64,
    pub max_files: usize,
}

impl Default for BundleLimits {
    fn default() -> Self {
        BundleLimits {
            max_unpacked_bytes: 256 << 20,
            max_files: 10_000,
        }
    }
}

/// Why a bundle was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BundleError {
    #[error("the bundle is not a readable .tar.gz: {0}")]
    Unreadable(String),
    #[error("bundle entry {path:?}: {why}")]
    BadEntry { path: String, why: String },
    #[error("the bundle unpacks to more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the bundle has more than {limit} files")]
    TooManyFiles { limit: usize },
    #[error("the bundle has no spin.toml at its top level")]
    NoManifest,
}

/// A bundle's files, by relative path (`/`-separated).
pub type BundleFiles = BTreeMap<String, Vec<u8>>;

/// Unpacks a `.tar.gz` into memory, refusing anything unsafe.
pub fn unpack(archive: &[u8], limits: BundleLimits) -> Result<BundleFiles, BundleError> {
    let unreadable = |e: std::io::Error| BundleError::Unreadable(e.to_string());
    let mut tar = tar::Archive::new(GzDecoder::new(archive));
    let mut files = BundleFiles::new();
    let mut total: u64 = 0;
    for entry in tar.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let bad = |why: &str| BundleError::BadEntry {
            path: raw_path.clone(),
            why: why.to_string(),
        };
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            relative_path(&raw_path).map_err(|why| bad(&why))?;
            continue;
        }
        if kind.is_symlink() || kind.is_hard_link() {
            return Err(bad(
                "links are not allowed in a bundle; include the file itself",
            ));
        }
        if kind.is_pax_global_extensions()
            || kind.is_pax_local_extensions()
            || kind.is_gnu_longname()
        {
            continue;
        }
        if !kind.is_file() {
            return Err(bad("only regular files and directories are allowed"));
        }
        let path = relative_path(&raw_path).map_err(|why| bad(&why))?;
        if files.len() >= limits.max_files {
            return Err(BundleError::TooManyFiles {
                limit: limits.max_files,
            });
        }
        let budget = limits.max_unpacked_bytes - total;
        let mut bytes = Vec::new();
        (&mut entry)
            .take(budget + 1)
            .read_to_end(&mut bytes)
            .map_err(unreadable)?;
        total += bytes.len() as u64;
        if total > limits.max_unpacked_bytes {
            return Err(BundleError::TooLarge {
                limit: limits.max_unpacked_bytes,
            });
        }
        if files.insert(path, bytes).is_some() {
            return Err(bad("appears twice in the bundle"));
        }
    }
    if !files.contains_key(MANIFEST) {
        return Err(BundleError::NoManifest);
    }
    Ok(files)
}

/// A tar path as a clean relative `/`-separated path inside the bundle.
fn relative_path(raw: &str) -> Result<String, String> {
    if raw.starts_with('/') || raw.starts_with('\\') || raw.contains('\\') {
        return Err(
            "absolute paths are not allowed; paths are relative to the app directory".into(),
        );
    }
    let mut parts = Vec::new();
    for part in Path::new(raw).components() {
        match part {
            Component::Normal(p) => parts.push(
                p.to_str()
                    .ok_or_else(|| "the path is not UTF-8".to_string())?
                    .to_string(),
            ),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err("`..` would leave the app directory".into());
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err("absolute paths are not allowed".into());
            }
        }
    }
    Ok(parts.join("/"))
}

/// Writes unpacked files under `dir` (which must exist).
pub fn write_files(files: &BundleFiles, dir: &Path) -> std::io::Result<()> {
    for (path, bytes) in files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(target, bytes)?;
    }
    Ok(())
}

/// Why an app directory could not be packed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error(transparent)]
    Manifest(#[from] tenant_config::ManifestError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
        let rel = relative_path(&rel.to_string_lossy())
            .map_err(|_| PackError::Outside(path.to_path_buf()))?;
        wanted.insert(rel, path.to_path_buf());
        Ok(())
    };
    add(&manifest_path)?;
    if dir.join(POLICY).exists() {
        add(&dir.join(POLICY))?;
    }
    for component in manifest.components.values() {
        add(&component.source)?;
        for mount in &component.files {
            for file in walk(&mount.host_path)? {
                add(&file)?;
            }
        }
    }
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    for (rel, path) in &wanted {
        let io = |source| PackError::Io {
            path: path.clone(),
            source,
        };
        let bytes = std::fs::read(path).map_err(io)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, rel, bytes.as_slice())
            .map_err(io)?;
    }
    let io = |source| PackError::Io {
        path: dir.to_path_buf(),
        source,
    };
    tar.into_inner().map_err(io)?.finish().map_err(io)
}

/// Every regular file under `path` (or `path` itself if it is a file).
fn walk(path: &Path) -> Result<Vec<PathBuf>, PackError> {
    let io = |source| PackError::Io {
        path: path.to_path_buf(),
        source,
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

    /// Builds a .tar.gz from raw headers, so tests can write what `tar::Builder`
    /// would refuse to (absolute paths, `..`, links).
    fn archive(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for (path, kind, data) in entries {
            let mut header = tar::Header::new_old();
            let name = path.as_bytes();
            header.as_old_mut().name[..name.len()].copy_from_slice(name);
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            if kind.is_symlink() {
                header.set_link_name("/etc/passwd").unwrap();
            }
            header.set_cksum();
            tar.append(&header, *data).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    const FILE: tar::EntryType = tar::EntryType::Regular;

    #[test]
    fn a_plain_bundle_unpacks() {
        let files = unpack(
            &archive(&[
                ("./spin.toml", FILE, b"m"),
                ("./dir/", tar::EntryType::Directory, b""),
                ("dir/a.wasm", FILE, b"w"),
            ]),
            BundleLimits::default(),
        )
        .unwrap();
        let names: Vec<&str> = files.keys().map(String::as_str).collect();
        assert_eq!(names, ["dir/a.wasm", "spin.toml"]);
    }

    #[test]
    fn escaping_paths_links_and_devices_are_refused() {
        let cases: &[(&str, tar::EntryType, &str)] = &[
            ("../evil", FILE, "`..`"),
            ("a/../../evil", FILE, "`..`"),
            ("/etc/cron.d/x", FILE, "absolute"),
            ("link", tar::EntryType::Symlink, "links"),
            ("hard", tar::EntryType::Link, "links"),
            ("dev", tar::EntryType::Char, "regular files"),
            ("fifo", tar::EntryType::Fifo, "regular files"),
        ];
        for (path, kind, why) in cases {
            let err = unpack(
                &archive(&[("spin.toml", FILE, b"m"), (path, *kind, b"")]),
                BundleLimits::default(),
            )
            .unwrap_err();
            let text = err.to_string();
            assert!(text.contains(why) && text.contains(path), "{path}: {text}");
        }
    }

    #[test]
    fn size_and_count_caps_hold() {
        let limits = BundleLimits {
            max_unpacked_bytes: 100,
            max_files: 3,
        };
        let big = vec![b'x'; 101];
        let err = unpack(&archive(&[("spin.toml", FILE, &big)]), limits).unwrap_err();
        assert_eq!(err, BundleError::TooLarge { limit: 100 });
        let err = unpack(
            &archive(&[
                ("spin.toml", FILE, b"1"),
                ("a", FILE, b"1"),
                ("b", FILE, b"1"),
                ("c", FILE, b"1"),
            ]),
            limits,
        )
        .unwrap_err();
        assert_eq!(err, BundleError::TooManyFiles { limit: 3 });
    }

    #[test]
    fn duplicates_garbage_and_missing_manifests_are_refused() {
        let err = unpack(
            &archive(&[("spin.toml", FILE, b"1"), ("./spin.toml", FILE, b"2")]),
            BundleLimits::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
        let err = unpack(b"not a tarball", BundleLimits::default()).unwrap_err();
        assert!(matches!(err, BundleError::Unreadable(_)), "{err}");
        let err = unpack(
            &archive(&[("app/spin.toml", FILE, b"1")]),
            BundleLimits::default(),
        )
        .unwrap_err();
        assert_eq!(err, BundleError::NoManifest);
    }

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
