//! App bundles: the `.tar.gz` of an app directory that a deploy uploads.
//!
//! [`unpack`] is hostile-input parsing with every cap enforced before the
//! bytes it guards are read; [`pack`] (for `okra deploy`) takes exactly what
//! the manifest references, so build directories never travel; and
//! [`write_files`] puts an unpacked bundle on disk, checking every path again.

mod pack;
mod unpack;

pub use pack::{PackError, pack};
pub use unpack::unpack;

use std::collections::BTreeMap;
use std::path::Path;
use tenant_config::paths::normalize_relative;

/// The manifest's name inside a bundle.
pub const MANIFEST: &str = "spin.toml";
/// The optional app policy's name inside a bundle.
pub const POLICY: &str = "okra.json";

/// Caps on what one bundle may unpack to.
#[derive(Clone, Copy, Debug)]
pub struct BundleLimits {
    /// Sum of all file sizes (and of long-name and PAX records) after
    /// decompression.
    pub max_unpacked_bytes: u64,
    /// Entries of every kind: files, directories and extension headers.
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
    /// The gzip or tar stream is malformed or cut short, or ends with an
    /// extension header that describes no entry.
    #[error("the bundle is not a readable .tar.gz: {0}")]
    Unreadable(String),
    /// One entry is refused: a link or special file, an unclean or overlong
    /// path, a path used twice or as both file and directory, or a bad
    /// long-name or PAX header.
    #[error("bundle entry {path:?}: {why}")]
    BadEntry {
        /// The entry's path as the archive gives it.
        path: String,
        /// Why the entry was refused.
        why: String,
    },
    /// The decompressed content is over [`BundleLimits::max_unpacked_bytes`].
    #[error("the bundle unpacks to more than {limit} bytes")]
    TooLarge {
        /// The cap that was exceeded, in bytes.
        limit: u64,
    },
    /// The archive has more entries than [`BundleLimits::max_files`].
    #[error("the bundle has more than {limit} entries (files, directories and extension headers)")]
    TooManyFiles {
        /// The cap that was exceeded, in entries.
        limit: usize,
    },
    /// No `spin.toml` sits at the bundle's top level.
    #[error("the bundle has no spin.toml at its top level")]
    NoManifest,
}

/// A bundle's files, by relative path (`/`-separated).
pub type BundleFiles = BTreeMap<String, Vec<u8>>;

/// Writes unpacked files under `dir` (which must exist). Every path is
/// checked again, so files that reached the store some other way cannot
/// land outside `dir` either.
pub fn write_files(files: &BundleFiles, dir: &Path) -> std::io::Result<()> {
    for (path, bytes) in files {
        match normalize_relative(path) {
            Ok(clean) if !clean.is_empty() && clean == *path => {}
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("bundle path {path:?} is not a clean relative path"),
                ));
            }
        }
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(target, bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_files_refuses_paths_that_leave_the_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("bundle");
        std::fs::create_dir(&dir).unwrap();
        for bad in [
            "../escape",
            "/tmp/escape",
            "a/../../escape",
            "",
            "./a",
            "a//b",
        ] {
            let files = BundleFiles::from([(bad.to_string(), b"x".to_vec())]);
            let err = write_files(&files, &dir).unwrap_err();
            assert!(
                err.to_string().contains("clean relative path"),
                "{bad}: {err}"
            );
        }
        assert!(!root.path().join("escape").exists());
        let files = BundleFiles::from([("a/b".to_string(), b"x".to_vec())]);
        write_files(&files, &dir).unwrap();
        assert_eq!(std::fs::read(dir.join("a/b")).unwrap(), b"x");
    }
}
