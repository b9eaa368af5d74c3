//! Unpacking an uploaded bundle, which a hostile tenant wrote.
//!
//! Every cap holds before the bytes it guards are read:
//! - the decompressed stream as a whole is bounded, so a gzip bomb stops at
//!   the cap whatever the headers claim;
//! - the tar is read *raw*: GNU long names and PAX records are handled here,
//!   and refused when their header claims more than a path could need, so
//!   the tar crate never reads one whole into memory;
//! - entries of every kind count towards the entry cap;
//! - only regular files and directories, with clean relative paths, no
//!   duplicates, and no path that is both a file and a directory.

use super::{BundleError, BundleFiles, BundleLimits, MANIFEST};
use flate2::read::GzDecoder;
use std::cell::Cell;
use std::collections::BTreeSet;
use std::io::Read;
use std::rc::Rc;
use tenant_config::paths::normalize_relative;

/// The longest path a GNU long-name entry or PAX `path` record may give,
/// and the longest path a bundle may hold.
pub(crate) const MAX_PATH_BYTES: u64 = 4096;
/// The longest path component: what file systems take.
pub(crate) const MAX_NAME_BYTES: usize = 255;
/// The largest PAX extended header (all its records together).
pub(crate) const MAX_PAX_BYTES: u64 = 64 * 1024;
/// Tar works in blocks of this size: a header, and data padded to it.
const BLOCK: u64 = 512;
/// GNU tar pads an archive to records of 20 blocks.
const RECORD: u64 = 20 * BLOCK;

/// Unpacks a `.tar.gz` into memory, refusing anything unsafe.
pub fn unpack(archive: &[u8], limits: BundleLimits) -> Result<BundleFiles, BundleError> {
    let (stream, exceeded) = Bounded::new(GzDecoder::new(archive), stream_budget(limits));
    let result = Unpacker::new(limits).run(stream);
    // A cut-off stream surfaces as whatever the tar reader made of it; the
    // real reason is the bound.
    if exceeded.get() {
        return Err(BundleError::TooLarge {
            limit: limits.max_unpacked_bytes,
        });
    }
    result
}

/// The most decompressed bytes a bundle within `limits` can take: its
/// content, a header and padding per entry, the end marker and GNU's padding
/// to a whole record.
fn stream_budget(limits: BundleLimits) -> u64 {
    let entries = u64::try_from(limits.max_files).unwrap_or(u64::MAX);
    limits
        .max_unpacked_bytes
        .saturating_add(entries.saturating_add(2).saturating_mul(2 * BLOCK))
        .saturating_add(RECORD)
}

/// A reader that fails once more than `budget` bytes have come through, and
/// says so in a flag the caller keeps.
struct Bounded<R> {
    inner: R,
    remaining: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Bounded<R> {
    fn new(inner: R, budget: u64) -> (Self, Rc<Cell<bool>>) {
        let exceeded = Rc::new(Cell::new(false));
        let reader = Bounded {
            inner,
            remaining: budget,
            exceeded: exceeded.clone(),
        };
        (reader, exceeded)
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Ask for one byte past the budget, so reaching it exactly is fine
        // and going over is seen.
        let want = buf
            .len()
            .min(usize::try_from(self.remaining.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.remaining {
            self.exceeded.set(true);
            return Err(std::io::Error::other(
                "the decompressed bundle is too large",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// What extension headers said about the entry that follows them.
#[derive(Default)]
struct Pending {
    /// From a GNU long-name entry or a PAX `path` record.
    path: Option<Vec<u8>>,
    /// A PAX `size` record, which must agree with the entry's header.
    size: Option<u64>,
    /// Whether any extension header is waiting for its entry.
    any: bool,
}

/// One pass over the archive's raw entries.
struct Unpacker {
    limits: BundleLimits,
    files: BundleFiles,
    dirs: BTreeSet<String>,
    entries: usize,
    /// Bytes of content so far: files plus extension records.
    total: u64,
    pending: Pending,
}

impl Unpacker {
    fn new(limits: BundleLimits) -> Self {
        Unpacker {
            limits,
            files: BundleFiles::new(),
            dirs: BTreeSet::new(),
            entries: 0,
            total: 0,
            pending: Pending::default(),
        }
    }

    fn run(mut self, stream: impl Read) -> Result<BundleFiles, BundleError> {
        let unreadable = |e: std::io::Error| BundleError::Unreadable(e.to_string());
        let mut tar = tar::Archive::new(stream);
        for entry in tar.entries().map_err(unreadable)?.raw(true) {
            let mut entry = entry.map_err(unreadable)?;
            self.entries += 1;
            if self.entries > self.limits.max_files {
                return Err(BundleError::TooManyFiles {
                    limit: self.limits.max_files,
                });
            }
            self.entry(&mut entry)?;
        }
        if self.pending.any {
            return Err(BundleError::Unreadable(
                "the archive ends with an extension header that describes no entry".into(),
            ));
        }
        check_file_and_directory_paths(&self.files, &self.dirs)?;
        if !self.files.contains_key(MANIFEST) {
            return Err(BundleError::NoManifest);
        }
        Ok(self.files)
    }

    fn entry(&mut self, entry: &mut tar::Entry<'_, impl Read>) -> Result<(), BundleError> {
        let kind = entry.header().entry_type();
        let header_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let size = entry
            .header()
            .entry_size()
            .map_err(|e| BundleError::Unreadable(e.to_string()))?;
        if kind.is_gnu_longname() {
            let bytes = self.extension(entry, &header_path, size, MAX_PATH_BYTES, "long name")?;
            let name = bytes.split(|&b| b == 0).next().unwrap_or_default();
            return self.set_path(&header_path, name.to_vec());
        }
        if kind.is_pax_local_extensions() || kind.is_pax_global_extensions() {
            let bytes = self.extension(entry, &header_path, size, MAX_PAX_BYTES, "PAX header")?;
            return self.pax(&header_path, &bytes, kind.is_pax_global_extensions());
        }
        let pending = std::mem::take(&mut self.pending);
        let raw_path = match pending.path {
            Some(path) => String::from_utf8_lossy(&path).into_owned(),
            None => header_path,
        };
        let bad = |why: &str| BundleError::BadEntry {
            path: raw_path.clone(),
            why: why.to_string(),
        };
        if let Some(pax_size) = pending.size
            && pax_size != size
        {
            return Err(bad("its PAX size record disagrees with its header"));
        }
        if kind.is_symlink() || kind.is_hard_link() || kind.is_gnu_longlink() {
            return Err(bad(
                "links are not allowed in a bundle; include the file itself",
            ));
        }
        let path = normalize_relative(&raw_path).map_err(|why| bad(&why.to_string()))?;
        if path.len() as u64 > MAX_PATH_BYTES
            || path.split('/').any(|part| part.len() > MAX_NAME_BYTES)
            || path.contains('\0')
        {
            return Err(bad(&format!(
                "a path may be {MAX_PATH_BYTES} bytes long, each name {MAX_NAME_BYTES}, with no NUL"
            )));
        }
        if kind.is_dir() {
            if !path.is_empty() {
                self.dirs.insert(path);
            }
            return Ok(());
        }
        if !kind.is_file() {
            return Err(bad("only regular files and directories are allowed"));
        }
        if path.is_empty() {
            return Err(bad("a file needs a name; this one names the app directory"));
        }
        let bytes = self.read_counted(entry, size)?;
        if self.files.insert(path, bytes).is_some() {
            return Err(bad("appears twice in the bundle"));
        }
        Ok(())
    }

    /// Reads an extension header's records, refusing one whose header claims
    /// more than `cap` bytes before reading any of it.
    fn extension(
        &mut self,
        entry: &mut tar::Entry<'_, impl Read>,
        header_path: &str,
        size: u64,
        cap: u64,
        what: &str,
    ) -> Result<Vec<u8>, BundleError> {
        if size > cap {
            return Err(BundleError::BadEntry {
                path: header_path.to_string(),
                why: format!("a {what} of {size} bytes is over the {cap}-byte limit"),
            });
        }
        self.pending.any = true;
        self.read_counted(entry, size)
    }

    /// Reads an entry's data, counting it towards the unpacked-size cap.
    fn read_counted(
        &mut self,
        entry: &mut tar::Entry<'_, impl Read>,
        size: u64,
    ) -> Result<Vec<u8>, BundleError> {
        let too_large = BundleError::TooLarge {
            limit: self.limits.max_unpacked_bytes,
        };
        let budget = self.limits.max_unpacked_bytes - self.total;
        if size > budget {
            return Err(too_large);
        }
        let mut bytes = Vec::new();
        entry
            .take(budget + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| BundleError::Unreadable(e.to_string()))?;
        self.total += bytes.len() as u64;
        if self.total > self.limits.max_unpacked_bytes {
            return Err(too_large);
        }
        Ok(bytes)
    }

    fn set_path(&mut self, header_path: &str, path: Vec<u8>) -> Result<(), BundleError> {
        if self.pending.path.is_some() {
            return Err(BundleError::BadEntry {
                path: header_path.to_string(),
                why: "two long names describe the same entry".into(),
            });
        }
        self.pending.path = Some(path);
        Ok(())
    }

    /// Applies a PAX header's records: `path` and `size` describe the next
    /// entry; sparse files are refused; the rest (times, owners, xattrs) do
    /// not matter to a bundle.
    fn pax(&mut self, header_path: &str, records: &[u8], global: bool) -> Result<(), BundleError> {
        let bad = |why: String| BundleError::BadEntry {
            path: header_path.to_string(),
            why,
        };
        for record in tar::PaxExtensions::new(records) {
            let record = record.map_err(|_| bad("a malformed PAX record".into()))?;
            let key = record
                .key()
                .map_err(|_| bad("a PAX key is not UTF-8".into()))?;
            if key.starts_with("GNU.sparse.") {
                return Err(bad("sparse files are not allowed in a bundle".into()));
            }
            if global && (key == "path" || key == "size") {
                return Err(bad(format!(
                    "a global PAX header may not set `{key}` for every entry"
                )));
            }
            match key {
                "path" if record.value_bytes().len() as u64 > MAX_PATH_BYTES => {
                    return Err(bad(format!(
                        "a PAX path of {} bytes is over the {MAX_PATH_BYTES}-byte limit",
                        record.value_bytes().len()
                    )));
                }
                "path" => self.set_path(header_path, record.value_bytes().to_vec())?,
                "size" => {
                    let size = record
                        .value()
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok())
                        .ok_or_else(|| bad("a PAX size record is not a number".into()))?;
                    self.pending.size = Some(size);
                }
                _ => {}
            }
        }
        if global {
            // A global header describes no single entry.
            self.pending.any = self.pending.path.is_some() || self.pending.size.is_some();
        }
        Ok(())
    }
}

/// Refuses a path that is both a file and a directory (`a` as a file and
/// `a/b`, or an explicit directory entry `a/`), which could not be written.
fn check_file_and_directory_paths(
    files: &BundleFiles,
    dirs: &BTreeSet<String>,
) -> Result<(), BundleError> {
    let conflict = |path: &str| BundleError::BadEntry {
        path: path.to_string(),
        why: "is both a file and a directory in the bundle".into(),
    };
    if let Some(dir) = dirs.iter().find(|d| files.contains_key(*d)) {
        return Err(conflict(dir));
    }
    for path in files.keys() {
        let mut ancestor = path.as_str();
        while let Some((parent, _)) = ancestor.rsplit_once('/') {
            if files.contains_key(parent) {
                return Err(conflict(parent));
            }
            ancestor = parent;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write as _;

    /// Builds a .tar.gz from raw headers, so tests can write what `tar::Builder`
    /// would refuse to (absolute paths, `..`, links, huge extension headers).
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
    const DIR: tar::EntryType = tar::EntryType::Directory;

    /// A PAX record line: `LEN key=value\n`, LEN counting the whole line.
    fn pax_record(key: &str, value: &str) -> Vec<u8> {
        let body = format!(" {key}={value}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        format!("{len}{body}").into_bytes()
    }

    fn names(files: &BundleFiles) -> Vec<&str> {
        files.keys().map(String::as_str).collect()
    }

    #[test]
    fn a_plain_bundle_unpacks() {
        let files = unpack(
            &archive(&[
                ("./spin.toml", FILE, b"m"),
                ("./dir/", DIR, b""),
                ("dir/a.wasm", FILE, b"w"),
            ]),
            BundleLimits::default(),
        )
        .unwrap();
        assert_eq!(names(&files), ["dir/a.wasm", "spin.toml"]);
    }

    #[test]
    fn long_names_and_pax_paths_name_the_next_entry() {
        let long = format!("{}/x.wasm", "d".repeat(200));
        let mut name = long.clone().into_bytes();
        name.push(0);
        let pax = pax_record("path", "pax/y.wasm");
        let files = unpack(
            &archive(&[
                ("spin.toml", FILE, b"m"),
                ("././@LongLink", tar::EntryType::GNULongName, &name),
                ("truncated", FILE, b"long"),
                ("PaxHeaders/y", tar::EntryType::XHeader, &pax),
                ("y.wasm", FILE, b"pax"),
            ]),
            BundleLimits::default(),
        )
        .unwrap();
        assert_eq!(files[&long], b"long");
        assert_eq!(files["pax/y.wasm"], b"pax");
        assert_eq!(files.len(), 3);
    }

    #[test]
    fn escaping_paths_links_and_devices_are_refused() {
        let dotdot_pax = pax_record("path", "../../evil");
        let cases: &[(&str, tar::EntryType, &[u8], &str)] = &[
            ("../evil", FILE, b"", "`..`"),
            ("a/../../evil", FILE, b"", "`..`"),
            ("/etc/cron.d/x", FILE, b"", "absolute"),
            ("a\\..\\evil", FILE, b"", "backslash"),
            ("link", tar::EntryType::Symlink, b"", "links"),
            ("hard", tar::EntryType::Link, b"", "links"),
            ("longlink", tar::EntryType::GNULongLink, b"x\0", "links"),
            ("dev", tar::EntryType::Char, b"", "regular files"),
            ("fifo", tar::EntryType::Fifo, b"", "regular files"),
            ("sparse", tar::EntryType::GNUSparse, b"", "regular files"),
            ("./", FILE, b"", "needs a name"),
            ("PaxHeaders/e", tar::EntryType::XHeader, &dotdot_pax, "`..`"),
        ];
        for (path, kind, data, why) in cases {
            let mut entries = vec![("spin.toml", FILE, b"m".as_slice()), (path, *kind, data)];
            if kind.is_pax_local_extensions() || kind.is_gnu_longlink() {
                entries.push(("target", FILE, b""));
            }
            let err = unpack(&archive(&entries), BundleLimits::default()).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(why), "{path}: {text}");
        }
    }

    #[test]
    fn a_path_that_is_both_file_and_directory_is_refused() {
        let cases: &[&[(&str, tar::EntryType, &[u8])]] = &[
            &[
                ("spin.toml", FILE, b"m"),
                ("a", FILE, b"1"),
                ("a/b", FILE, b"2"),
            ],
            &[
                ("spin.toml", FILE, b"m"),
                ("a/b/c", FILE, b"2"),
                ("a/b", FILE, b"1"),
            ],
            &[
                ("spin.toml", FILE, b"m"),
                ("a", FILE, b"1"),
                ("a/", DIR, b""),
            ],
            &[("spin.toml/x", FILE, b"m"), ("spin.toml", FILE, b"1")],
        ];
        for entries in cases {
            let err = unpack(&archive(entries), BundleLimits::default()).unwrap_err();
            assert!(
                err.to_string().contains("both a file and a directory"),
                "{err}"
            );
        }
    }

    #[test]
    fn oversized_extension_headers_are_refused_before_they_are_read() {
        // The header claims far more than the archive holds: it must be
        // refused on the claim, not after reading.
        let mut header = tar::Header::new_gnu();
        header.set_path("././@LongLink").unwrap();
        header.set_entry_type(tar::EntryType::GNULongName);
        header.set_size(512 << 20);
        header.set_cksum();
        let mut raw = header.as_bytes().to_vec();
        raw.extend_from_slice(&[b'a'; 1024]);
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&raw).unwrap();
        let err = unpack(&gz.finish().unwrap(), BundleLimits::default()).unwrap_err();
        assert!(
            err.to_string().contains("long name of 536870912 bytes"),
            "{err}"
        );

        let big = vec![b'a'; MAX_PAX_BYTES as usize + 1];
        let err = unpack(
            &archive(&[
                ("PaxHeaders/x", tar::EntryType::XHeader, &big),
                ("spin.toml", FILE, b"m"),
            ]),
            BundleLimits::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("PAX header of 65537 bytes"),
            "{err}"
        );
    }

    /// Each single-entry archive (beside a manifest) is refused with its reason.
    fn assert_each_refused(cases: &[(&str, tar::EntryType, &[u8], &str)]) {
        for (path, kind, data, why) in cases {
            let err = unpack(
                &archive(&[(path, *kind, data), ("spin.toml", FILE, b"m")]),
                BundleLimits::default(),
            )
            .unwrap_err();
            assert!(err.to_string().contains(why), "{path}: {err}");
        }
    }

    #[test]
    fn paths_too_long_for_a_file_system_are_refused() {
        let long_name = format!("{}.txt", "n".repeat(300));
        let long_pax = pax_record("path", &"p".repeat(5000));
        let cases: &[(&str, tar::EntryType, &[u8], &str)] = &[(
            "PaxHeaders/l",
            tar::EntryType::XHeader,
            &long_pax,
            "PAX path of 5000",
        )];
        assert_each_refused(cases);
        for name in [long_name, format!("dir/{}", "n".repeat(256))] {
            let mut gnu = name.clone().into_bytes();
            gnu.push(0);
            let err = unpack(
                &archive(&[
                    ("spin.toml", FILE, b"m"),
                    ("././@LongLink", tar::EntryType::GNULongName, &gnu),
                    ("x", FILE, b""),
                ]),
                BundleLimits::default(),
            )
            .unwrap_err();
            assert!(err.to_string().contains("each name 255"), "{err}");
        }
    }

    #[test]
    fn pax_records_cannot_reframe_or_smuggle_entries() {
        let size = pax_record("size", "999999");
        let sparse = pax_record("GNU.sparse.major", "1");
        let global_path = pax_record("path", "spin.toml");
        let cases: &[(&str, tar::EntryType, &[u8], &str)] = &[
            ("PaxHeaders/s", tar::EntryType::XHeader, &size, "disagrees"),
            ("PaxHeaders/g", tar::EntryType::XHeader, &sparse, "sparse"),
            (
                "GlobalHead",
                tar::EntryType::XGlobalHeader,
                &global_path,
                "global",
            ),
            (
                "PaxHeaders/m",
                tar::EntryType::XHeader,
                b"garbage\n",
                "malformed",
            ),
        ];
        assert_each_refused(cases);
        let err = unpack(
            &archive(&[
                ("spin.toml", FILE, b"m"),
                ("././@LongLink", tar::EntryType::GNULongName, b"x\0"),
            ]),
            BundleLimits::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("describes no entry"), "{err}");
        let err = unpack(
            &archive(&[
                ("././@LongLink", tar::EntryType::GNULongName, b"x\0"),
                ("././@LongLink", tar::EntryType::GNULongName, b"y\0"),
                ("spin.toml", FILE, b"m"),
            ]),
            BundleLimits::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("two long names"), "{err}");
    }

    #[test]
    fn size_and_count_caps_hold_and_directories_count() {
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
        let err = unpack(
            &archive(&[
                ("spin.toml", FILE, b"1"),
                ("a/", DIR, b""),
                ("b/", DIR, b""),
                ("c/", DIR, b""),
            ]),
            limits,
        )
        .unwrap_err();
        assert_eq!(err, BundleError::TooManyFiles { limit: 3 });
    }

    #[test]
    fn the_decompressed_stream_is_bounded_whatever_the_headers_say() {
        // A directory entry carrying 10 MB of data: nothing reads it as
        // content, so only the bound on the stream itself stops the reader.
        let limits = BundleLimits {
            max_unpacked_bytes: 1000,
            max_files: 2,
        };
        let data = vec![0xff; 10 << 20];
        let err = unpack(
            &archive(&[("spin.toml", FILE, b"m"), ("d/", DIR, &data)]),
            limits,
        )
        .unwrap_err();
        assert_eq!(err, BundleError::TooLarge { limit: 1000 });
        // Within the bound, the same shape unpacks.
        let files = unpack(
            &archive(&[("spin.toml", FILE, b"m"), ("d/", DIR, &data[..100])]),
            limits,
        )
        .unwrap();
        assert_eq!(names(&files), ["spin.toml"]);
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
}
