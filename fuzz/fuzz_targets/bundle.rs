//! Bundle uploads: unpacking any bytes gives clean files within the caps,
//! or an error; never a panic, never a path outside the bundle.
#![no_main]

use control_plane::bundle::{BundleLimits, unpack};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let limits = BundleLimits { max_unpacked_bytes: 1 << 16, max_files: 64 };
    if let Ok(files) = unpack(bytes, limits) {
        assert!(files.len() <= limits.max_files);
        for path in files.keys() {
            assert!(path.split('/').all(|p| !p.is_empty() && p != "." && p != ".."), "{path}");
        }
    }
});
