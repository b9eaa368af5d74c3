//! Builds the guest components for wasm32-wasip2 (test-programs/guests,
//! examples/hello and examples/bookserver) with a nested cargo, the way Wasmtime's own test-programs
//! crate does, and writes their paths into `programs.rs` for the tests.
//! The sdk5 guest is also built for wasm32-wasip1, as a core module: the
//! shape older Spin SDKs (and TinyGo) produce, which Okra componentizes.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let here =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = here
        .parent()
        .expect("test-programs lives in the workspace")
        .to_path_buf();
    let guests = here.join("guests");
    let hello = root.join("examples/hello");
    let bookserver = root.join("examples/bookserver");
    for dir in [&guests, &hello, &bookserver] {
        build(
            &dir.join("Cargo.toml"),
            &dir.join("target"),
            "wasm32-wasip2",
            &[],
        );
    }
    build(
        &guests.join("Cargo.toml"),
        &guests.join("target"),
        "wasm32-wasip1",
        &["--package", "sdk5-guest"],
    );

    let release = |dir: &Path, name: &str| dir.join("target/wasm32-wasip2/release").join(name);
    let consts = [
        ("SDK5_GUEST", release(&guests, "sdk5_guest.wasm")),
        (
            "SDK5_MODULE",
            guests.join("target/wasm32-wasip1/release/sdk5_guest.wasm"),
        ),
        ("SDK7_GUEST", release(&guests, "sdk7_guest.wasm")),
        ("HELLO5_GUEST", release(&guests, "hello5_guest.wasm")),
        ("HELLO_WASM", release(&hello, "hello.wasm")),
        ("HELLO_MANIFEST", hello.join("spin.toml")),
        ("BOOK_API_WASM", release(&bookserver, "book_api.wasm")),
        ("FRONTEND_WASM", release(&bookserver, "frontend.wasm")),
        ("BOOKSERVER_MANIFEST", bookserver.join("spin.toml")),
        ("KITCHEN_MANIFEST", here.join("apps/kitchen.toml")),
        // spin-sdk 5's WIT (Spin's 2.0 and 3.0 worlds), for tests that link
        // a component importing a whole world.
        (
            "SPIN_SDK5_WIT",
            crate_dir(&guests, "spin-sdk", "5.2.0").join("wit"),
        ),
    ];
    let mut out = String::new();
    for (name, path) in consts {
        assert!(path.exists(), "{} was not built", path.display());
        out.push_str(&format!(
            "pub const {name}: &str = {:?};\n",
            path.display().to_string()
        ));
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out_dir.join("programs.rs"), out).expect("writing programs.rs");

    for watched in [
        guests.join("Cargo.toml"),
        guests.join("Cargo.lock"),
        guests.join("common/src"),
        guests.join("sdk5/src"),
        guests.join("sdk5/Cargo.toml"),
        guests.join("sdk7/src"),
        guests.join("sdk7/Cargo.toml"),
        guests.join("hello5/src"),
        guests.join("hello5/Cargo.toml"),
        hello.join("src"),
        hello.join("Cargo.toml"),
        bookserver.join("Cargo.toml"),
        bookserver.join("book-api/src"),
        bookserver.join("book-api/Cargo.toml"),
        bookserver.join("frontend/src"),
        bookserver.join("frontend/Cargo.toml"),
    ] {
        println!("cargo:rerun-if-changed={}", watched.display());
    }
}

/// Where cargo keeps the source of `name` `version`, a dependency of the
/// workspace at `dir` (asked of `cargo metadata`).
fn crate_dir(dir: &Path, name: &str, version: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("running cargo metadata");
    assert!(output.status.success(), "cargo metadata failed");
    let json = String::from_utf8(output.stdout).expect("cargo metadata prints UTF-8");
    let wanted = format!("{name}-{version}/Cargo.toml");
    let end = json
        .find(&wanted)
        .unwrap_or_else(|| panic!("cargo metadata does not list {name} {version}"))
        + wanted.len();
    let start = json[..end].rfind('"').expect("a JSON string") + 1;
    PathBuf::from(&json[start..end])
        .parent()
        .expect("a manifest has a directory")
        .to_path_buf()
}

fn build(manifest: &Path, target_dir: &Path, target: &str, extra: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--target", target])
        .args(extra)
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_MAKEFLAGS")
        .status()
        .expect("running cargo to build the guests");
    assert!(
        status.success(),
        "building {} for {target} failed",
        manifest.display()
    );
}
