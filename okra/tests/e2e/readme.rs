//! The README's quickstart, run as written: its first block starts the
//! gateway, its second runs in bash, and each `# …` line under a command
//! must be among what the commands printed, in order. Only the ports change: free
//! ones stand in for 8080, 8081 and the metrics port, and the token the
//! tenant's creation prints stands in for `okt_…`.

use crate::support::control::wait_port;
use crate::support::{free_port, gateway_bin};
use std::process::{Command, Stdio};

/// The README's `sh` blocks between `## Quickstart` and the next section.
fn quickstart_blocks() -> Vec<String> {
    let readme = include_str!("../../../README.md");
    let start = readme.find("## Quickstart").expect("a Quickstart section");
    let section = &readme[start..];
    let section = &section[..section[3..]
        .find("\n## ")
        .map_or(section.len(), |end| end + 3)];
    section
        .split("```sh\n")
        .skip(1)
        .map(|block| block[..block.find("```").expect("the block ends")].to_string())
        .collect()
}

/// Whether `line` shows `expected`, where `…` in it stands for anything.
fn shows(line: &str, expected: &str) -> bool {
    let mut rest = line;
    for part in expected.split('…') {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

#[test]
fn the_quickstart_runs_as_written() {
    let blocks = quickstart_blocks();
    assert_eq!(blocks.len(), 2, "{blocks:?}");
    assert_eq!(
        blocks[0].trim(),
        "cargo build --bins && OKRA_ADMIN_TOKEN=admin-secret target/debug/gateway",
        "the test starts the gateway as this block does; change both together"
    );
    let (listen, api, metrics) = (free_port(), free_port(), free_port());
    let data = tempfile::tempdir().unwrap();
    let mut gateway = Command::new(gateway_bin())
        .current_dir(data.path())
        .env("OKRA_ADMIN_TOKEN", "admin-secret")
        .env("OKRA_LOG", "warn")
        .args(["--listen", &listen.to_string()])
        .args(["--api-listen", &api.to_string()])
        .args(["--metrics-listen", &metrics.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .expect("start the gateway");
    wait_port(api);

    let okra_dir = std::path::Path::new(env!("CARGO_BIN_EXE_okra"))
        .parent()
        .unwrap()
        .to_path_buf();
    // The binaries under test, wherever cargo put them.
    let ports = |text: &str| {
        text.replace("127.0.0.1:8081", &api.to_string())
            .replace("localhost:8080", &format!("localhost:{}", listen.port()))
            .replace("$PWD/target/debug", &okra_dir.display().to_string())
    };
    let mut script = String::from("set -euo pipefail\n");
    let mut expected = Vec::new();
    for line in blocks[1].lines() {
        if let Some(shown) = line.strip_prefix("# ") {
            expected.push(ports(shown));
            continue;
        }
        let command = ports(line.split("  #").next().unwrap_or_default().trim());
        if command.contains("tenants create") {
            // Its output is shown, and its token kept for `okt_…`.
            script.push_str(&format!(
                "created=$({command})\necho \"$created\"\n\
                 token=$(echo \"$created\" | sed -n 's/^Its token (shown only now): //p')\n"
            ));
        } else {
            script.push_str(&command.replace("okt_…", "$token"));
            script.push('\n');
        }
    }
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // `okra deploy` builds examples/hello with cargo: with the environment
    // test-programs' build script builds it in, so it finds it up to date
    // and never rewrites the wasm other tests are reading.
    let out = Command::new("bash")
        .args(["-c", &script])
        .current_dir(&repo)
        .env_remove("OKRA_TOKEN")
        .env_remove("OKRA_TENANT")
        .env_remove("OKRA_CLI_CONFIG")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_MAKEFLAGS")
        .output()
        .expect("run bash");
    let _ = gateway.kill();
    let _ = gateway.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script}\nstdout: {stdout}\nstderr: {stderr}"
    );
    // Each `#` line, in order.
    let mut lines = stdout.lines();
    for want in &expected {
        assert!(
            lines.any(|line| shows(line, want)),
            "`# {want}` is not what the quickstart printed next:\n{stdout}\nstderr: {stderr}"
        );
    }
}
