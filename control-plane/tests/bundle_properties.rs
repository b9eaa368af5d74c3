//! Property tests of bundle unpacking, the first thing a tenant's upload
//! reaches: any bytes, gzipped or not, give files or an error and never a
//! panic; whatever unpacks has only clean relative paths and stays within
//! the caps; and a bundle packed from files unpacks to the same files.

use control_plane::bundle::{BundleFiles, BundleLimits, MANIFEST, unpack};
use flate2::Compression;
use flate2::write::GzEncoder;
use proptest::prelude::*;
use std::io::Write as _;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(bytes).expect("gzip in memory");
    gz.finish().expect("gzip in memory")
}

/// Tar-shaped bytes: real headers of random kinds, sizes and names, with
/// random data, so cases get past the first block.
fn tar_like() -> impl Strategy<Value = Vec<u8>> {
    let entry = (
        proptest::string::string_regex(r"[a-z./@\\]{0,20}").expect("a valid regex"),
        prop_oneof![
            Just(b'0'),
            Just(b'5'),
            Just(b'L'),
            Just(b'x'),
            Just(b'g'),
            Just(b'2'),
            Just(b'S'),
            any::<u8>()
        ],
        0u64..2048,
        proptest::collection::vec(any::<u8>(), 0..600),
    );
    proptest::collection::vec(entry, 0..6).prop_map(|entries| {
        // Always a manifest, so what follows is read past the first check.
        let mut out = Vec::new();
        let mut manifest = tar::Header::new_gnu();
        manifest.set_path(MANIFEST).expect("a short path");
        manifest.set_size(1);
        manifest.set_cksum();
        out.extend_from_slice(manifest.as_bytes());
        out.extend_from_slice(&[b'm'; 512]);
        for (name, kind, size, data) in entries {
            let mut header = tar::Header::new_gnu();
            let bytes = name.as_bytes();
            header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            header.set_entry_type(tar::EntryType::new(kind));
            header.set_size(size);
            header.set_cksum();
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(&data);
            out.resize(out.len().next_multiple_of(512), 0);
        }
        out
    })
}

fn check_unpacked(files: &BundleFiles, limits: BundleLimits) -> Result<(), TestCaseError> {
    prop_assert!(files.contains_key(MANIFEST));
    prop_assert!(files.len() <= limits.max_files);
    let total: u64 = files.values().map(|f| f.len() as u64).sum();
    prop_assert!(total <= limits.max_unpacked_bytes);
    for path in files.keys() {
        prop_assert!(
            !path.is_empty() && !path.starts_with('/') && !path.contains('\\'),
            "{}",
            path
        );
        prop_assert!(
            path.split('/')
                .all(|p| !p.is_empty() && p != "." && p != ".."),
            "{}",
            path
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_bytes_unpack_or_fail_without_panicking(raw in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let limits = BundleLimits { max_unpacked_bytes: 4096, max_files: 8 };
        for bytes in [raw.clone(), gzip(&raw)] {
            if let Ok(files) = unpack(&bytes, limits) {
                check_unpacked(&files, limits)?;
            }
        }
    }

    #[test]
    fn tar_shaped_bytes_unpack_only_to_clean_paths(tar in tar_like()) {
        let limits = BundleLimits { max_unpacked_bytes: 4096, max_files: 8 };
        match unpack(&gzip(&tar), limits) {
            Ok(files) => check_unpacked(&files, limits)?,
            // The manifest is always there: a refusal has another reason.
            Err(e) => prop_assert_ne!(e, control_plane::bundle::BundleError::NoManifest),
        }
    }

    #[test]
    fn packed_files_unpack_to_the_same_files(
        files in proptest::collection::btree_map(
            "[a-z]{1,8}(/[a-z]{1,8}){0,2}\\.[a-z]{1,3}",
            proptest::collection::vec(any::<u8>(), 0..200),
            0..6,
        ),
    ) {
        let mut files: BundleFiles = files;
        files.insert(MANIFEST.to_string(), b"manifest".to_vec());
        // A path that is also a directory of another cannot be packed.
        let clash = files.keys().any(|a| files.keys().any(|b| b.starts_with(&format!("{a}/"))));
        prop_assume!(!clash);
        let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for (path, bytes) in &files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            tar.append_data(&mut header, path, bytes.as_slice()).unwrap();
        }
        let archive = tar.into_inner().unwrap().finish().unwrap();
        let unpacked = unpack(&archive, BundleLimits::default()).unwrap();
        prop_assert_eq!(unpacked, files);
    }
}
