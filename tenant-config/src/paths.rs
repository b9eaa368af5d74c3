//! Where an app's file references may point.
//!
//! An operator's own app (`--app`, `okra up`) may name any path relative to
//! its manifest, as Spin allows. A tenant's app is a bundle that a hostile
//! tenant wrote, so every path it names must stay inside the bundle: relative,
//! with no `..`, and still inside after symlinks are resolved. The bundle
//! unpacker, the deploy checks and the gateway's loader all use these rules.

use std::path::{Component, Path, PathBuf};

/// Which paths a manifest's `source` and `files` entries may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathScope {
    /// Any path relative to the manifest's directory (an operator's app).
    Anywhere,
    /// Only paths inside the manifest's directory (a tenant's bundle).
    InsideApp,
}

/// Why a path was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is absolute: it starts with `/`.
    #[error("absolute paths are not allowed; paths are relative to the app directory")]
    Absolute,
    /// The path has a `..` component, wherever it is.
    #[error("`..` would leave the app directory")]
    ParentDir,
    /// The path holds a backslash; only `/` may separate its components.
    #[error("backslashes are not allowed in paths; use `/`")]
    Backslash,
    /// With symlinks resolved, the path lies outside the app directory.
    #[error("it resolves to {resolved}, outside the app directory {root}")]
    Outside {
        /// The path with symlinks resolved.
        resolved: String,
        /// The app directory with symlinks resolved.
        root: String,
    },
    /// The path or the app directory does not exist or cannot be resolved.
    #[error("cannot resolve it: {0}")]
    Unresolvable(String),
}

/// `raw` as a clean relative `/`-separated path (`./a//b` → `a/b`, `.` → ``),
/// refusing anything that could leave the directory it is relative to.
pub fn normalize_relative(raw: &str) -> Result<String, PathError> {
    if raw.contains('\\') {
        return Err(PathError::Backslash);
    }
    if raw.starts_with('/') {
        return Err(PathError::Absolute);
    }
    let mut parts = Vec::new();
    for part in Path::new(raw).components() {
        match part {
            // `raw` is a `str`, so every part is valid UTF-8.
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => return Err(PathError::ParentDir),
            Component::RootDir | Component::Prefix(_) => return Err(PathError::Absolute),
        }
    }
    Ok(parts.join("/"))
}

/// `path` with symlinks resolved, provided it exists and lies inside `root`
/// (also resolved). The last line of defence: whatever the manifest said,
/// nothing outside `root` is returned.
pub fn resolve_inside(root: &Path, path: &Path) -> Result<PathBuf, PathError> {
    let unresolvable =
        |p: &Path, e: std::io::Error| PathError::Unresolvable(format!("{}: {e}", p.display()));
    let root = root.canonicalize().map_err(|e| unresolvable(root, e))?;
    let resolved = path.canonicalize().map_err(|e| unresolvable(path, e))?;
    // Both are canonical (absolute, no `.`/`..`, no symlinks), so comparing
    // components is exact.
    if resolved.starts_with(&root) {
        Ok(resolved)
    } else {
        Err(PathError::Outside {
            resolved: resolved.display().to_string(),
            root: root.display().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_cleaned() {
        for (raw, clean) in [
            ("a/b", "a/b"),
            ("./a//b/", "a/b"),
            (".", ""),
            ("", ""),
            ("static/**", "static/**"),
            ("a/./b", "a/b"),
        ] {
            assert_eq!(normalize_relative(raw).as_deref(), Ok(clean), "{raw}");
        }
    }

    #[test]
    fn escaping_paths_are_refused() {
        for (raw, why) in [
            ("..", PathError::ParentDir),
            ("../x.wasm", PathError::ParentDir),
            ("a/../../x", PathError::ParentDir),
            ("a/..", PathError::ParentDir),
            ("../../../../../../../../", PathError::ParentDir),
            ("/etc/passwd", PathError::Absolute),
            ("//host/share", PathError::Absolute),
            ("a\\..\\b", PathError::Backslash),
            ("C:\\x", PathError::Backslash),
        ] {
            assert_eq!(normalize_relative(raw), Err(why), "{raw}");
        }
    }

    #[test]
    fn resolution_stays_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("app");
        std::fs::create_dir_all(root.join("static")).unwrap();
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        let inside = resolve_inside(&root, &root.join("static")).unwrap();
        assert!(inside.ends_with("app/static"), "{}", inside.display());
        // `starts_with` on the unresolved path would accept this one.
        let err = resolve_inside(&root, &root.join("static/../../secret")).unwrap_err();
        assert!(matches!(err, PathError::Outside { .. }), "{err}");
        assert!(resolve_inside(&root, &root.join("..")).is_err());
        std::os::unix::fs::symlink(dir.path(), root.join("link")).unwrap();
        let err = resolve_inside(&root, &root.join("link")).unwrap_err();
        assert!(matches!(err, PathError::Outside { .. }), "{err}");
        let err = resolve_inside(&root, &root.join("missing")).unwrap_err();
        assert!(matches!(err, PathError::Unresolvable(_)), "{err}");
    }
}
