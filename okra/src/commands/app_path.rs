//! Where the app a command works on is: a directory holding `spin.toml`, or
//! the manifest itself, given as the positional `APP` or with `-f/--from`,
//! as `spin up` and `spin build` take it.

use anyhow::bail;
use std::path::{Path, PathBuf};

/// The app's place on the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct AppArg {
    /// The app: its directory (holding spin.toml) or its manifest file [default: .].
    #[arg(value_name = "APP")]
    pub path: Option<PathBuf>,
    /// The same as APP, as `spin` spells it.
    #[arg(
        short = 'f',
        long = "from",
        value_name = "APP",
        conflicts_with = "path"
    )]
    pub from: Option<PathBuf>,
}

/// An app's directory and manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPaths {
    /// Where its relative paths (sources, files, build workdirs) start.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: PathBuf,
}

impl AppArg {
    /// The directory and manifest the argument names; an error names what
    /// is missing.
    pub fn resolve(&self) -> anyhow::Result<AppPaths> {
        let given = self
            .from
            .as_deref()
            .or(self.path.as_deref())
            .unwrap_or(Path::new("."));
        if given.is_file() {
            let dir = match given.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                _ => PathBuf::from("."),
            };
            return Ok(AppPaths {
                dir,
                manifest: given.to_path_buf(),
            });
        }
        let manifest = given.join("spin.toml");
        if !manifest.is_file() {
            bail!(
                "no app at {}: give the app's directory (holding spin.toml) or its manifest",
                given.display()
            );
        }
        Ok(AppPaths {
            dir: given.to_path_buf(),
            manifest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_or_its_manifest_name_the_same_app() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("spin.toml");
        std::fs::write(&manifest, "").unwrap();
        let by_dir = AppArg {
            path: Some(dir.path().to_path_buf()),
            from: None,
        };
        let by_file = AppArg {
            path: None,
            from: Some(manifest.clone()),
        };
        let expected = AppPaths {
            dir: dir.path().to_path_buf(),
            manifest,
        };
        assert_eq!(by_dir.resolve().unwrap(), expected);
        assert_eq!(by_file.resolve().unwrap(), expected);
        let missing = AppArg {
            path: Some(dir.path().join("nope")),
            from: None,
        };
        let err = missing.resolve().unwrap_err().to_string();
        assert!(err.contains("no app at") && err.contains("nope"), "{err}");
    }
}
