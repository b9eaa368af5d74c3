//! The control plane on one node: a real gateway with its file store and
//! embedded REST API, driven over real sockets. Deploys, versions, rollback,
//! delete, domains, variables, hostile callers and bundles, crash safety, and
//! hot swap under load.

use crate::support::control::{
    ADMIN, assert_error, call, create_tenant, delete_app, deploy, get_json, host, node_with_web,
    rollback, start_node, static_bundle, until_gone, until_served,
};
use crate::support::{get, wait_metrics};
use flate2::Compression;
use flate2::write::GzEncoder;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

fn file_store(dir: &tempfile::TempDir) -> String {
    format!("file:{}", dir.path().display())
}

fn hello_bundle() -> Vec<u8> {
    let dir = std::path::Path::new(test_programs::HELLO_MANIFEST)
        .parent()
        .expect("hello dir");
    control_plane::bundle::pack(dir).expect("pack hello")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_serve_rollback_and_delete() {
    let data = tempfile::tempdir().unwrap();
    let node = start_node(&file_store(&data), true, &[]);
    let token = create_tenant(node.api, "acme").await;
    let web = host("web", "acme");

    let (status, body) = deploy(node.api, &token, "acme", "web", hello_bundle()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["version"], 1);
    assert_eq!(body["hosts"], serde_json::json!([web]));
    assert_eq!(body["routes"], serde_json::json!(["/..."]));
    until_served(&node.gateway, &web, "Hello from Okra!").await;

    let (status, body) = deploy(node.api, &token, "acme", "web", static_bundle("web", "v2")).await;
    assert_eq!((status, body["version"].as_u64()), (201, Some(2)), "{body}");
    until_served(&node.gateway, &web, "v2").await;

    let rollback = |v: u64| rollback(node.api, &token, "acme", "web", v);
    let (status, body) = rollback(1).await;
    assert_eq!((status, body["version"].as_u64()), (200, Some(1)), "{body}");
    until_served(&node.gateway, &web, "Hello from Okra!").await;
    let (status, body) = rollback(9).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[1, 2]"),
        "{body}"
    );

    let (status, show) = get_json(node.api, "/v1/tenants/acme/apps/web", &token).await;
    assert_eq!(status, 200);
    assert_eq!(show["current"], 1);
    assert_eq!(show["versions"].as_array().unwrap().len(), 2);
    // The embedded API reports what this gateway actually serves.
    for _ in 0..200 {
        let (_, show) = get_json(node.api, "/v1/tenants/acme/apps/web", &token).await;
        if show["status"]["serving"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    assert_eq!(delete_app(node.api, &token, "acme", "web").await, 204);
    until_gone(&node.gateway, &web).await;
    assert_eq!(
        delete_app(node.api, &token, "acme", "web").await,
        404,
        "deleting twice"
    );

    // Versions are never reused: the next deploy is 3, and rollback revives 2.
    let (status, body) = deploy(node.api, &token, "acme", "web", static_bundle("web", "v3")).await;
    assert_eq!((status, body["version"].as_u64()), (201, Some(3)), "{body}");
    until_served(&node.gateway, &web, "v3").await;
    let (status, _) = rollback(2).await;
    assert_eq!(status, 200);
    until_served(&node.gateway, &web, "v2").await;

    let text = wait_metrics(&node.gateway, &[]).await;
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("okra_config_version "))
        .expect("okra_config_version")
        .parse::<u64>()
        .unwrap();
    assert!(version >= 7, "one bump per change: {version}");
    assert!(
        text.contains("okra_config_reloads_total{result=\"ok\"}"),
        "{text}"
    );

    // Compiled components are kept on disk for the next start.
    let compiled = data.path().join("cache/compiled/modules");
    let versions: Vec<_> = std::fs::read_dir(&compiled).unwrap().collect();
    assert!(!versions.is_empty(), "nothing in {}", compiled.display());

    // Listing: the tenant sees its app; the admin sees the tenant.
    let (status, apps) = get_json(node.api, "/v1/tenants/acme/apps", &token).await;
    assert_eq!(status, 200);
    assert_eq!(apps[0]["name"], "web");
    let (_, tenants) = get_json(node.api, "/v1/tenants", ADMIN).await;
    assert_eq!(tenants[0]["name"], "acme");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_reach_only_their_own_tenant() {
    let data = tempfile::tempdir().unwrap();
    let node = start_node(&file_store(&data), true, &[]);
    let acme = create_tenant(node.api, "acme").await;
    let evil = create_tenant(node.api, "evil").await;
    let (status, _) = deploy(node.api, &acme, "acme", "web", static_bundle("web", "mine")).await;
    assert_eq!(status, 201);

    let body = || static_bundle("web", "pwned");
    let attempts: Vec<(&str, String, Vec<u8>)> = vec![
        ("PUT", "/v1/tenants/acme/apps/web".into(), body()),
        ("GET", "/v1/tenants/acme/apps/web".into(), vec![]),
        ("GET", "/v1/tenants/acme/apps".into(), vec![]),
        ("GET", "/v1/tenants/acme".into(), vec![]),
        ("DELETE", "/v1/tenants/acme/apps/web".into(), vec![]),
        (
            "POST",
            "/v1/tenants/acme/apps/web/rollback".into(),
            b"{\"version\":1}".to_vec(),
        ),
        (
            "PUT",
            "/v1/tenants/acme/apps/web/variables".into(),
            b"{\"a\":\"b\"}".to_vec(),
        ),
        (
            "PUT",
            "/v1/tenants/acme/apps/web/domains/evil.example".into(),
            vec![],
        ),
        ("PUT", "/v1/tenants/acme/policy".into(), b"{}".to_vec()),
        // Admin-only endpoints refuse every tenant token.
        ("POST", "/v1/tenants".into(), b"{\"name\":\"x\"}".to_vec()),
        ("GET", "/v1/tenants".into(), vec![]),
        ("DELETE", "/v1/tenants/evil".into(), vec![]),
        ("PUT", "/v1/tenants/evil/limits".into(), b"{}".to_vec()),
    ];
    for (method, path, payload) in &attempts {
        let (status, reply) = call(node.api, method, path, Some(&evil), payload.clone()).await;
        assert_eq!(
            status, 403,
            "{method} {path} with another tenant's token: {reply}"
        );
        assert_eq!(reply["error"]["code"], "forbidden");
        let (status, _) = call(node.api, method, path, None, payload.clone()).await;
        assert_eq!(status, 401, "{method} {path} without a token");
        let (status, _) = call(node.api, method, path, Some("okt_guess"), payload.clone()).await;
        assert_eq!(status, 403, "{method} {path} with a made-up token");
    }
    // A tenant that does not exist looks the same as one that is not yours.
    let (status, _) = get_json(node.api, "/v1/tenants/nobody/apps", &evil).await;
    assert_eq!(status, 403);
    // Nothing changed for acme.
    until_served(&node.gateway, &host("web", "acme"), "mine").await;
    let (_, show) = get_json(node.api, "/v1/tenants/acme/apps/web", &acme).await;
    assert_eq!(show["versions"].as_array().unwrap().len(), 1);
    assert!(show["domains"].as_array().unwrap().is_empty());
}

/// A .tar.gz with raw entries, for bundles `tar::Builder` would refuse to write.
fn raw_bundle(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for (path, kind, data) in entries {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_entry_type(*kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        if kind.is_symlink() {
            header.set_link_name("/etc/passwd").unwrap();
        }
        header.set_cksum();
        tar.append(&header, *data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn bundle_with(manifest: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut entries = vec![("spin.toml", tar::EntryType::Regular, manifest.as_bytes())];
    entries.extend(extra.iter().map(|(p, d)| (*p, tar::EntryType::Regular, *d)));
    raw_bundle(&entries)
}

/// A component whose only content is an import of the instance `name`
/// (with one function), which no host provides.
fn component_importing(name: &str) -> Vec<u8> {
    use wasm_encoder::{
        Component, ComponentImportSection, ComponentTypeRef, ComponentTypeSection,
        ComponentValType, InstanceType,
    };
    let mut instance = InstanceType::new();
    instance
        .ty()
        .function()
        .params(std::iter::empty::<(&str, ComponentValType)>())
        .result(None);
    instance.export("ping", ComponentTypeRef::Func(0));
    let mut types = ComponentTypeSection::new();
    types.instance(&instance);
    let mut imports = ComponentImportSection::new();
    imports.import(name, ComponentTypeRef::Instance(0));
    let mut component = Component::new();
    component.section(&types).section(&imports);
    component.finish()
}

const COMPONENT_APP: &str = "spin_manifest_version = 2\n[application]\nname = \"web\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n[component.c]\nsource = \"c.wasm\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_and_broken_bundles_are_refused_and_nothing_changes() {
    let data = tempfile::tempdir().unwrap();
    let (node, token) = node_with_web(&data, "good", &["--max-bundle-bytes", "200000"]).await;

    let regular = tar::EntryType::Regular;
    // Incompressible bytes, so the upload itself is too large.
    let mut noise = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::fs::File::open("/dev/urandom").unwrap(), 400_000),
        &mut noise,
    )
    .unwrap();
    let hello_wasm = std::fs::read(test_programs::HELLO_WASM).unwrap();
    let alien_wasm = component_importing("acme:missing/thing");
    let cases: Vec<(&str, Vec<u8>, u16, &str, &str)> = vec![
        (
            "garbage",
            b"definitely not gzip".to_vec(),
            400,
            "invalid_bundle",
            "tar.gz",
        ),
        (
            "a static response that frames itself",
            bundle_with(
                "spin_manifest_version = 2\n[application]\nname = \"web\"\n[[trigger.http]]\nroute = \"/...\"\nstatic_response = { headers = { transfer-encoding = \"chunked\" }, body = \"x\" }\n",
                &[],
            ),
            422,
            "invalid_manifest",
            "frames the message",
        ),
        (
            "escaping path",
            raw_bundle(&[("spin.toml", regular, b"x"), ("../../evil", regular, b"x")]),
            400,
            "invalid_bundle",
            "`..`",
        ),
        (
            "absolute path",
            raw_bundle(&[("spin.toml", regular, b"x"), ("/etc/evil", regular, b"x")]),
            400,
            "invalid_bundle",
            "absolute",
        ),
        (
            "symlink",
            raw_bundle(&[
                ("spin.toml", regular, b"x"),
                ("c.wasm", tar::EntryType::Symlink, b""),
            ]),
            400,
            "invalid_bundle",
            "links",
        ),
        (
            "no manifest",
            raw_bundle(&[("app/spin.toml", regular, b"x")]),
            400,
            "invalid_bundle",
            "spin.toml",
        ),
        (
            "oversized upload",
            (raw_bundle(&[("spin.toml", regular, b"x"), ("big", regular, &noise)])),
            413,
            "bundle_too_large",
            "200000",
        ),
        (
            "manifest error",
            bundle_with(
                "spin_manifest_version = 2\n[application]\nname = \"web\"\nbogus = 1\n",
                &[],
            ),
            422,
            "invalid_manifest",
            "spin.toml:4",
        ),
        (
            "missing wasm",
            bundle_with(COMPONENT_APP, &[]),
            422,
            "missing_file",
            "c.wasm",
        ),
        (
            "wasm that does not compile",
            bundle_with(COMPONENT_APP, &[("c.wasm", b"\0asm\x0d\0\x01\0garbage")]),
            422,
            "invalid_component",
            "does not compile",
        ),
        (
            "an import Okra cannot satisfy",
            bundle_with(COMPONENT_APP, &[("c.wasm", &alien_wasm)]),
            422,
            "invalid_component",
            "does not provide",
        ),
        (
            "bad policy",
            bundle_with(
                COMPONENT_APP,
                &[
                    ("c.wasm", &hello_wasm),
                    (
                        "okra.json",
                        b"{\"policy.http.fetch.condition\":\"request.method ==\"}",
                    ),
                ],
            ),
            422,
            "invalid_policy",
            "okra.json: key `policy.http.fetch.condition`",
        ),
        (
            "missing required variable",
            bundle_with(
                &format!("{COMPONENT_APP}[variables]\ntoken = {{ required = true }}\n"),
                &[("c.wasm", &hello_wasm)],
            ),
            422,
            "missing_variable",
            "token",
        ),
    ];
    for (what, bundle, want_status, want_code, want_text) in cases {
        let (status, body) = deploy(node.api, &token, "acme", "web", bundle).await;
        assert_eq!(status, want_status, "{what}: {body}");
        assert_eq!(body["error"]["code"], want_code, "{what}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(want_text),
            "{what}: {message:?} should mention {want_text:?}"
        );
    }
    let (status, body) = deploy(
        node.api,
        &token,
        "acme",
        "Bad_Name",
        static_bundle("x", "x"),
    )
    .await;
    assert_error(status, &body, 400, "invalid_name");

    // Still version 1, still serving it.
    let (_, show) = get_json(node.api, "/v1/tenants/acme/apps/web", &token).await;
    assert_eq!(show["current"], 1);
    assert_eq!(show["versions"].as_array().unwrap().len(), 1, "{show}");
    assert_eq!(
        get(&node.gateway, &host("web", "acme"), "/").await.text(),
        "good"
    );
}

/// A `.tar.gz` whose first entry is a GNU long name (or PAX header) that
/// claims 512 MiB and carries it: about 0.5 MB compressed.
fn extension_bomb(kind: tar::EntryType) -> Vec<u8> {
    use std::io::Write as _;
    let size: u64 = 512 << 20;
    let mut header = tar::Header::new_gnu();
    header.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_cksum();
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(header.as_bytes()).unwrap();
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..size / chunk.len() as u64 {
        gz.write_all(&chunk).unwrap();
    }
    gz.finish().unwrap()
}

/// The manifest of app `web` with one component `c` described by `component`.
fn component_manifest(component: &str) -> String {
    format!(
        "spin_manifest_version = 2\n[application]\nname = \"web\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n[component.c]\n{component}"
    )
}

/// A tenant's bundle may name no file outside itself, at any layer: the API
/// refuses it, a guest cannot climb out of its own mount, and a gateway
/// refuses to build such a version even when it reaches the store without
/// the API's checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_cannot_reach_the_gateways_files() {
    let data = tempfile::tempdir().unwrap();
    let node = start_node(&file_store(&data), true, &[]);
    let token = create_tenant(node.api, "acme").await;
    let sdk5 = std::fs::read(test_programs::SDK5_GUEST).unwrap();
    let with_files = |component: &str| {
        bundle_with(
            &component_manifest(component),
            &[("c.wasm", &sdk5), ("static/a.txt", b"mine")],
        )
    };
    let escapes = [
        "source = \"c.wasm\"\nfiles = [{ source = \"../../../../../../../../\", destination = \"/host\" }]\n".to_string(),
        "source = \"c.wasm\"\nfiles = [{ source = \"static/../../..\", destination = \"/host\" }]\n".to_string(),
        "source = \"c.wasm\"\nfiles = [{ source = \"/\", destination = \"/host\" }]\n".to_string(),
        "source = \"c.wasm\"\nfiles = [\"../../**\"]\n".to_string(),
        format!("source = \"../../../../../../../..{}\"\n", test_programs::SDK5_GUEST),
        format!("source = \"{}\"\n", test_programs::SDK5_GUEST),
    ];
    for component in &escapes {
        let (status, body) = deploy(node.api, &token, "acme", "web", with_files(component)).await;
        assert_error(status, &body, 422, "invalid_manifest");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("component.c.")
                && (message.contains("`..`") || message.contains("absolute")),
            "{component}: {message}"
        );
    }

    // The bundle's own directory mounts, and the guest cannot climb out of it.
    let (status, body) = deploy(
        node.api,
        &token,
        "acme",
        "web",
        with_files(
            "source = \"c.wasm\"\nfiles = [{ source = \"static\", destination = \"/data\" }]\n",
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let web = host("web", "acme");
    until_served(&node.gateway, &web, "Hello from spin-sdk 5").await;
    let read = |path: &str| {
        let path = format!("/file?path={path}");
        let gateway = &node.gateway;
        let web = web.clone();
        async move { get(gateway, &web, &path).await.text() }
    };
    assert!(read("/data/a.txt").await.starts_with("read=mine "));
    for escape in [
        "/data/../spin.toml",
        "/data/../../../admin-token",
        "/data/../../../state.json",
        "/state.json",
    ] {
        let text = read(escape).await;
        assert!(text.starts_with("read=error("), "{escape}: {text}");
    }

    // A version that reaches the store without the API's checks.
    let manifest = component_manifest(
        "source = \"c.wasm\"\nfiles = [{ source = \"../../..\", destination = \"/host\" }]\n",
    );
    let blobs = {
        use control_plane::store::Store as _;
        let store = control_plane::store::file::FileStore::open(data.path()).unwrap();
        let mut files = std::collections::BTreeMap::new();
        files.insert(
            "spin.toml".to_string(),
            store.put_blob(manifest.as_bytes()).await.unwrap(),
        );
        files.insert("c.wasm".to_string(), store.put_blob(&sdk5).await.unwrap());
        files
    };
    write_behind_the_api(&data, |state| {
        let app = state
            .tenants
            .get_mut("acme")
            .unwrap()
            .apps
            .get_mut("web")
            .unwrap();
        let files = blobs.clone();
        app.versions.insert(
            9,
            control_plane::model::VersionRecord {
                version: 9,
                files,
                ..Default::default()
            },
        );
        app.current = Some(9);
    })
    .await;
    let mut error = String::new();
    for _ in 0..500 {
        let (_, show) = get_json(node.api, "/v1/tenants/acme/apps/web", &token).await;
        if let Some(e) = show["status"]["error"].as_str() {
            error = e.to_string();
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        error.contains("version 9") && error.contains("`..`"),
        "{error:?}"
    );
    // The version before it keeps serving, and nothing of the host is mounted.
    assert!(read("/data/a.txt").await.starts_with("read=mine "));
    assert!(read("/host/admin-token").await.starts_with("read=error("));
}

/// Archives that would make the tar reader allocate what their headers
/// claim, or that cannot be written to disk, are refused with a 4xx, and the
/// gateway keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_bombs_and_contradictions_get_a_4xx() {
    let data = tempfile::tempdir().unwrap();
    let (node, token) = node_with_web(&data, "good", &[]).await;
    let regular = tar::EntryType::Regular;
    let directory = tar::EntryType::Directory;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "GNU long name of 512 MiB",
            extension_bomb(tar::EntryType::GNULongName),
            "long name of 536870912 bytes",
        ),
        (
            "PAX header of 512 MiB",
            extension_bomb(tar::EntryType::XHeader),
            "PAX header of 536870912 bytes",
        ),
        (
            "a file and a directory at one path",
            raw_bundle(&[
                ("spin.toml", regular, b"x"),
                ("a", regular, b"1"),
                ("a/b", regular, b"2"),
            ]),
            "both a file and a directory",
        ),
        (
            "a directory entry over a file",
            raw_bundle(&[
                ("spin.toml", regular, b"x"),
                ("a", regular, b"1"),
                ("a/", directory, b""),
            ]),
            "both a file and a directory",
        ),
        (
            "a regular file named ./",
            raw_bundle(&[("spin.toml", regular, b"x"), ("./", regular, b"1")]),
            "needs a name",
        ),
    ];
    for (what, bundle, want) in cases {
        assert!(bundle.len() < 1 << 20, "{what}: {} bytes", bundle.len());
        let (status, body) = deploy(node.api, &token, "acme", "web", bundle).await;
        assert_error(status, &body, 400, "invalid_bundle");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(want), "{what}: {message}");
    }
    assert_eq!(
        get(&node.gateway, &host("web", "acme"), "/").await.text(),
        "good"
    );
    // Reading either bomb's header whole would have taken 512 MiB.
    let peak_mib = node.gateway.peak_rss_kib() / 1024;
    assert!(
        peak_mib < 400,
        "the bombs took the gateway to {peak_mib} MiB"
    );
}

/// Every quota holds through the API with a clear 422, and nothing is
/// written past one: apps, versions kept (older ones dropped, rollback to
/// them refused), variables by count and size, domains and the policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_quotas_hold_and_old_versions_go() {
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("quotas.toml");
    std::fs::write(
        &config,
        "[quotas]\nmax_apps = 2\nversions_kept = 2\nmax_variables = 2\nmax_variable_bytes = 64\nmax_domains = 1\nmax_policy_bytes = 64\nmax_stored_bytes = 4000\n",
    )
    .unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let node = start_node(
        &file_store(&store_dir),
        true,
        &["--config", config.to_str().unwrap()],
    );
    let acme = create_tenant(node.api, "acme").await;
    let quota = |status: u16, body: &serde_json::Value, what: &str| {
        assert_error(status, body, 422, "quota_exceeded");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(what), "{message}");
    };
    let deploy_third = || {
        deploy(
            node.api,
            &acme,
            "acme",
            "third",
            static_bundle("third", "x"),
        )
    };
    for (app, body) in [("web", "v1"), ("web", "v2"), ("web", "v3"), ("api", "a1")] {
        let (status, reply) = deploy(node.api, &acme, "acme", app, static_bundle(app, body)).await;
        assert_eq!(status, 201, "{reply}");
    }
    let (status, body) = deploy_third().await;
    quota(status, &body, "at most 2 apps");
    let (_, show) = get_json(node.api, "/v1/tenants/acme", &acme).await;
    assert_eq!(show["apps"], serde_json::json!(["api", "web"]));

    // Only the newest two versions are kept.
    let (_, web) = get_json(node.api, "/v1/tenants/acme/apps/web", &acme).await;
    let versions: Vec<u64> = web["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [2, 3]);
    let (status, body) = rollback(node.api, &acme, "acme", "web", 1).await;
    assert_error(status, &body, 404, "not_found");
    let (status, _) = rollback(node.api, &acme, "acme", "web", 2).await;
    assert_eq!(status, 200);

    let vars = "/v1/tenants/acme/apps/web/variables";
    let put = |body: &'static str| call(node.api, "PUT", vars, Some(&acme), body);
    let (status, body) = put(r#"{"a":"1","b":"2"}"#).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = put(r#"{"c":"3"}"#).await;
    quota(status, &body, "at most 2 variables");
    let big: &'static str =
        Box::leak(format!("{{\"a\":\"{}\"}}", "x".repeat(100)).into_boxed_str());
    let (status, body) = put(big).await;
    quota(status, &body, "bytes");
    let (_, names) = get_json(node.api, vars, &acme).await;
    assert_eq!(names["names"], serde_json::json!(["a", "b"]));

    let domain = |app: &str, name: &str| format!("/v1/tenants/acme/apps/{app}/domains/{name}");
    let one = domain("web", "one.example");
    assert_eq!(call(node.api, "PUT", &one, Some(&acme), "").await.0, 204);
    let two = domain("api", "two.example");
    let (status, body) = call(node.api, "PUT", &two, Some(&acme), "").await;
    quota(status, &body, "at most 1 custom domains");

    let policy = format!(
        r#"{{"policy.http.fetch.allowMethods": ["GET"], "x": "{}"}}"#,
        "y".repeat(64)
    );
    let (status, body) = call(
        node.api,
        "PUT",
        "/v1/tenants/acme/policy",
        Some(&acme),
        policy,
    )
    .await;
    quota(status, &body, "bytes");

    // Purging an app frees its place; a plain delete does not.
    assert_eq!(delete_app(node.api, &acme, "acme", "api").await, 204);
    let (status, body) = deploy_third().await;
    quota(status, &body, "at most 2 apps");
    let (status, body) = call(
        node.api,
        "DELETE",
        "/v1/tenants/acme/apps/api?purge=maybe",
        Some(&acme),
        "",
    )
    .await;
    assert_error(status, &body, 400, "invalid_query");
    let purge = "/v1/tenants/acme/apps/api?purge=true";
    assert_eq!(
        call(node.api, "DELETE", purge, Some(&acme), "").await.0,
        204
    );
    let (status, body) = deploy_third().await;
    assert_eq!(status, 201, "{body}");

    // Kept versions' bytes together: a bundle that would take the tenant
    // past 4000 bytes is refused before its blobs are stored.
    let big = "b".repeat(3990);
    let (status, body) = deploy(
        node.api,
        &acme,
        "acme",
        "third",
        static_bundle("third", &big),
    )
    .await;
    quota(status, &body, "4000");
}

/// A tenant policy that an app being served could not load under (its
/// injected header names a variable the app lacks) is refused, and the app
/// keeps serving as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_policy_that_would_break_a_served_app_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let node = start_node(&file_store(&data), true, &[]);
    let acme = create_tenant(node.api, "acme").await;
    let sdk5 = std::fs::read(test_programs::SDK5_GUEST).unwrap();
    let bundle = bundle_with(
        &component_manifest("source = \"c.wasm\"\n"),
        &[("c.wasm", &sdk5)],
    );
    let (status, body) = deploy(node.api, &acme, "acme", "web", bundle).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(
        node.api,
        "PUT",
        "/v1/tenants/acme/policy",
        Some(&acme),
        r#"{"http.fetch": {"injectHeaders": {"x-team": "{{ nosuchvar }}"}}}"#,
    )
    .await;
    assert_error(status, &body, 422, "invalid_policy");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"web\"") && message.contains("nosuchvar"),
        "{message}"
    );
    let (_, tenant) = get_json(node.api, "/v1/tenants/acme", &acme).await;
    assert_eq!(tenant["has_policy"], false);
    until_served(&node.gateway, &host("web", "acme"), "Hello from spin-sdk 5").await;
}

/// The series of an app that is gone (and of a tenant with no app left)
/// leave `/metrics`, instead of piling up for every app ever deployed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_series_of_gone_apps_and_tenants_are_removed() {
    let data = tempfile::tempdir().unwrap();
    let (node, token) = node_with_web(&data, "counted", &[]).await;
    let web = host("web", "acme");
    until_served(&node.gateway, &web, "counted").await;
    // The same manifest deployed as a second app: series name the app as
    // deployed, not by the manifest's [application] name.
    let (status, _) = deploy(
        node.api,
        &token,
        "acme",
        "copy",
        static_bundle("web", "copied"),
    )
    .await;
    assert_eq!(status, 201);
    until_served(&node.gateway, &host("copy", "acme"), "copied").await;
    let series = r#"okra_http_requests_total{app="web",component="",status="200",tenant="acme"}"#;
    let copy = r#"okra_http_requests_total{app="copy",component="",status="200",tenant="acme"}"#;
    let mut text = String::new();
    for _ in 0..500 {
        text = crate::support::metrics_get(&node.gateway, "/metrics")
            .await
            .1;
        if text.contains(series) && text.contains(copy) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(text.contains(series) && text.contains(copy), "{text}");
    assert!(
        text.contains(r#"okra_tenant_inflight_requests{tenant="acme"} 0"#),
        "{text}"
    );

    assert_eq!(delete_app(node.api, &token, "acme", "web").await, 204);
    until_gone(&node.gateway, &web).await;
    let mut text = String::new();
    for _ in 0..500 {
        text = crate::support::metrics_get(&node.gateway, "/metrics")
            .await
            .1;
        if !text.contains(series) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!text.contains(series) && text.contains(copy), "{text}");
    let (status, _) = call(node.api, "DELETE", "/v1/tenants/acme", Some(ADMIN), "").await;
    assert_eq!(status, 204);
    let mut text = String::new();
    for _ in 0..500 {
        text = crate::support::metrics_get(&node.gateway, "/metrics")
            .await
            .1;
        if !text.contains(r#"tenant="acme""#) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!text.contains(r#"tenant="acme""#), "{text}");
}

/// PUTs or DELETEs a domain of `tenant`'s app `shop`.
async fn domain_call(
    api: std::net::SocketAddr,
    method: &str,
    token: &str,
    tenant: &str,
    domain: &str,
) -> (u16, serde_json::Value) {
    let path = format!("/v1/tenants/{tenant}/apps/shop/domains/{domain}");
    call(api, method, &path, Some(token), "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_domains_are_unique_after_normalisation() {
    let data = tempfile::tempdir().unwrap();
    let node = start_node(&file_store(&data), true, &[]);
    let acme = create_tenant(node.api, "acme").await;
    let evil = create_tenant(node.api, "evil").await;
    for (token, tenant, body) in [(&acme, "acme", "acme shop"), (&evil, "evil", "evil shop")] {
        let (status, _) =
            deploy(node.api, token, tenant, "shop", static_bundle("shop", body)).await;
        assert_eq!(status, 201);
    }
    let (status, body) = domain_call(node.api, "PUT", &acme, "acme", "Shop.Example.COM").await;
    assert_eq!(status, 204, "{body}");
    let (status, _) = domain_call(node.api, "PUT", &acme, "acme", "b%C3%BCcher.example").await;
    assert_eq!(status, 204);
    until_served(&node.gateway, "shop.example.com", "acme shop").await;
    until_served(&node.gateway, "SHOP.EXAMPLE.COM:8080", "acme shop").await;
    until_served(&node.gateway, "xn--bcher-kva.example", "acme shop").await;

    for taken in [
        "shop.example.com",
        "SHOP.example.com.",
        "xn--bcher-kva.example",
        "B%C3%9CCHER.example",
    ] {
        let (status, body) = domain_call(node.api, "PUT", &evil, "evil", taken).await;
        assert_eq!(status, 409, "{taken}: {body}");
    }
    for bad in [
        "web.acme.okra.test",
        "localhost",
        "a..b",
        "x.example:80",
        "*.example.com",
    ] {
        let (status, body) = domain_call(node.api, "PUT", &evil, "evil", bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_domain");
    }
    // Released domains can be claimed again.
    let (status, _) = domain_call(node.api, "DELETE", &acme, "acme", "shop.example.com").await;
    assert_eq!(status, 204);
    let (status, _) = domain_call(node.api, "PUT", &evil, "evil", "shop.example.com").await;
    assert_eq!(status, 204);
    until_served(&node.gateway, "shop.example.com", "evil shop").await;
}

/// Writes a change straight into a file store behind the API's back, as a
/// compromised or buggy control plane might.
/// Returns the new store version.
async fn write_behind_the_api(
    data: &tempfile::TempDir,
    change: impl Fn(&mut control_plane::model::State) + Send + Sync,
) -> u64 {
    use control_plane::store::Store as _;
    let store = control_plane::store::file::FileStore::open(data.path()).unwrap();
    let mut state = store.load().await.unwrap();
    change(&mut state);
    for (name, record) in state.tenants {
        store
            .update_tenant(&name, &mut |stored| {
                *stored = Some(record.clone());
                Ok(())
            })
            .await
            .unwrap();
    }
    store.version().await.unwrap()
}

/// Waits until the gateway serves store version `version`.
async fn until_version(gateway: &crate::support::Gateway, version: u64) {
    let line = format!("okra_config_version {version}");
    wait_metrics(gateway, &[&line]).await;
}

/// The operator's `--app` hostnames belong to the operator: no tenant can
/// claim one, in any spelling, as a domain or as an app's default hostname,
/// and one that reaches the store anyway does not win in the snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_hosts_are_reserved() {
    let data = tempfile::tempdir().unwrap();
    let operator = crate::support::control::static_app("op", "operator app");
    let manifest = operator.path().join("spin.toml");
    let shop_flag = format!("Shop.Example.com={}", manifest.display());
    let api_flag = format!(
        "api.acme.{}={}",
        crate::support::control::BASE,
        manifest.display()
    );
    let node = start_node(
        &file_store(&data),
        true,
        &[
            "--app",
            &shop_flag,
            "--app",
            &api_flag,
            "--reserved-host",
            "Bücher.example",
        ],
    );
    let acme = create_tenant(node.api, "acme").await;
    let (status, _) = deploy(
        node.api,
        &acme,
        "acme",
        "shop",
        static_bundle("shop", "tenant shop"),
    )
    .await;
    assert_eq!(status, 201);
    until_served(&node.gateway, "shop.example.com", "operator app").await;
    for spelling in [
        "shop.example.com",
        "SHOP.Example.COM.",
        "xn--bcher-kva.example",
        "B%C3%BCcher.example",
    ] {
        let (status, body) = domain_call(node.api, "PUT", &acme, "acme", spelling).await;
        assert_error(status, &body, 409, "host_reserved");
    }
    // The operator serves api.acme.<base>: acme may not deploy an app named api.
    let (status, body) = deploy(node.api, &acme, "acme", "api", static_bundle("api", "mine")).await;
    assert_error(status, &body, 409, "host_reserved");

    // Claimed behind the API's back, the operator's host still wins.
    let version = write_behind_the_api(&data, |state| {
        let app = state
            .tenants
            .get_mut("acme")
            .unwrap()
            .apps
            .get_mut("shop")
            .unwrap();
        app.domains.insert("shop.example.com".into());
    })
    .await;
    until_version(&node.gateway, version).await;
    assert_eq!(
        get(&node.gateway, "shop.example.com", "/").await.text(),
        "operator app"
    );
    assert_eq!(
        get(&node.gateway, "api.acme.okra.test", "/").await.text(),
        "operator app"
    );
    assert_eq!(
        get(&node.gateway, &host("shop", "acme"), "/").await.text(),
        "tenant shop"
    );
}

/// A tenant's own policy is added to the operator's `--tenant-policy`, never
/// swapped for it: the operator's condition still applies, and the tenant
/// cannot bring JWT keys of its own to mint the claims that condition tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_policy_cannot_lift_the_operators() {
    let up = crate::support::upstream::Upstream::start().await;
    let port = up.port();
    let data = tempfile::tempdir().unwrap();
    let operator_policy = data.path().join("operator-acme.json");
    std::fs::write(
        &operator_policy,
        r#"{"policy.http.fetch.condition": "!request.path.startsWith('/bytes') || request.auth.claims.role == 'internal'",
            "auth": {"hs256Secrets": ["operator-secret"]}}"#,
    )
    .unwrap();
    let policy_flag = format!("acme={}", operator_policy.display());
    let node = start_node(
        &file_store(&data),
        true,
        &["--tenant-policy", &policy_flag, "--block-networks", "none"],
    );
    let acme = create_tenant(node.api, "acme").await;
    let sdk5 = std::fs::read(test_programs::SDK5_GUEST).unwrap();
    let manifest = component_manifest(&format!(
        "source = \"c.wasm\"\nallowed_outbound_hosts = [\"http://127.0.0.1:{port}\"]\n"
    ));
    let (status, body) = deploy(
        node.api,
        &acme,
        "acme",
        "web",
        bundle_with(&manifest, &[("c.wasm", &sdk5)]),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let web = host("web", "acme");
    let fetch = |path: &str, token: Option<String>| {
        let gateway = &node.gateway;
        let web = web.clone();
        let path = format!("/fetch?url=http://127.0.0.1:{port}{path}");
        async move {
            let headers: Vec<(&str, &str)> = token
                .as_deref()
                .map(|t| vec![("authorization", t)])
                .unwrap_or_default();
            crate::support::send(gateway, "GET", &web, &path, &headers, bytes::Bytes::new())
                .await
                .text()
        }
    };
    until_served(&node.gateway, &web, "Hello from spin-sdk 5").await;
    assert!(
        fetch("/bytes?n=3", None)
            .await
            .contains("HttpRequestDenied")
    );

    // The tenant sets a policy of its own, with keys of its own.
    let (status, body) = call(
        node.api,
        "PUT",
        "/v1/tenants/acme/policy",
        Some(&acme),
        r#"{"http.fetch": {"injectHeaders": {"x-tenant-policy": "applied"}},
            "auth": {"hs256Secrets": ["tenant-secret"]}}"#,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let mut seen = String::new();
    for _ in 0..500 {
        seen = fetch("/headers", None).await;
        if seen.contains("x-tenant-policy: applied") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        seen.contains("x-tenant-policy: applied"),
        "the tenant policy never applied: {seen}"
    );
    // The operator's condition still decides, with the operator's keys.
    let minted = Some(crate::support::bearer_jwt("tenant-secret", "internal"));
    assert!(
        fetch("/bytes?n=3", None)
            .await
            .contains("HttpRequestDenied")
    );
    assert!(
        fetch("/bytes?n=3", minted)
            .await
            .contains("HttpRequestDenied")
    );
    let granted = fetch(
        "/bytes?n=3",
        Some(crate::support::bearer_jwt("operator-secret", "internal")),
    )
    .await;
    assert!(granted.starts_with("status=200 "), "{granted}");
}

/// A build that failed for a reason that passes (here a blob that arrives
/// after the version naming it) is tried again without another store write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_build_is_retried_without_a_new_store_write() {
    use control_plane::store::Store as _;
    let data = tempfile::tempdir().unwrap();
    let (node, _) = node_with_web(&data, "first", &[]).await;
    until_served(&node.gateway, &host("web", "acme"), "first").await;
    let manifest = "spin_manifest_version = 2\n[application]\nname = \"web\"\n[[trigger.http]]\nroute = \"/...\"\nstatic_response = { body = \"late blob\" }\n";
    let blob = control_plane::store::blob_hash(manifest.as_bytes());
    let version = write_behind_the_api(&data, |state| {
        let app = state
            .tenants
            .get_mut("acme")
            .unwrap()
            .apps
            .get_mut("web")
            .unwrap();
        let files = std::collections::BTreeMap::from([("spin.toml".to_string(), blob.clone())]);
        app.versions.insert(
            7,
            control_plane::model::VersionRecord {
                version: 7,
                files,
                ..Default::default()
            },
        );
        app.current = Some(7);
    })
    .await;
    until_version(&node.gateway, version).await;
    let mut text = String::new();
    for _ in 0..500 {
        text = crate::support::metrics_get(&node.gateway, "/metrics")
            .await
            .1;
        if text.contains("okra_config_reloads_total{result=\"error\"}") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        text.contains("okra_config_reloads_total{result=\"error\"}"),
        "{text}"
    );
    assert_eq!(
        get(&node.gateway, &host("web", "acme"), "/").await.text(),
        "first"
    );
    // The blob arrives; the store's version does not change.
    let store = control_plane::store::file::FileStore::open(data.path()).unwrap();
    store.put_blob(manifest.as_bytes()).await.unwrap();
    until_served(&node.gateway, &host("web", "acme"), "late blob").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_variables_reach_the_guest_and_are_never_read_back() {
    let data = tempfile::tempdir().unwrap();
    let node = start_node(&file_store(&data), true, &[]);
    let token = create_tenant(node.api, "acme").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(test_programs::SDK5_GUEST, dir.path().join("guest.wasm")).unwrap();
    std::fs::write(
        dir.path().join("spin.toml"),
        "spin_manifest_version = 2\n[application]\nname = \"vars\"\n[variables]\ngreeting = { required = true, secret = true }\napi_host = { default = \"example.com\" }\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"g\"\n[component.g]\nsource = \"guest.wasm\"\nallowed_outbound_hosts = [\"https://{{ api_host }}\"]\n[component.g.variables]\ngreeting = \"{{ greeting }}\"\n",
    )
    .unwrap();
    let bundle = || control_plane::bundle::pack(dir.path()).unwrap();
    let (status, body) = deploy(node.api, &token, "acme", "vars", bundle()).await;
    assert_error(status, &body, 422, "missing_variable");

    let vars = "/v1/tenants/acme/apps/vars/variables";
    let (status, body) = call(
        node.api,
        "PUT",
        vars,
        Some(&token),
        r#"{"greeting":"top-secret-hi"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(node.api, "PUT", vars, Some(&token), r#"{"Bad-Name":"x"}"#).await;
    assert_error(status, &body, 400, "invalid_variable");
    let (status, body) = deploy(node.api, &token, "acme", "vars", bundle()).await;
    assert_eq!(status, 201, "{body}");
    let (_, names) = get_json(node.api, vars, &token).await;
    assert_eq!(names, serde_json::json!({ "names": ["greeting"] }));
    let (_, show) = get_json(node.api, "/v1/tenants/acme/apps/vars", &token).await;
    assert!(!show.to_string().contains("top-secret-hi"), "{show}");

    let vars_host = host("vars", "acme");
    for _ in 0..500 {
        let reply = get(&node.gateway, &vars_host, "/variable?name=greeting").await;
        if reply.status == 200 {
            assert_eq!(reply.text(), "value=top-secret-hi");
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A new value is picked up by a rebuild of the same version.
    let (status, _) = call(
        node.api,
        "PUT",
        vars,
        Some(&token),
        r#"{"greeting":"hello-again"}"#,
    )
    .await;
    assert_eq!(status, 200);
    let mut last = String::new();
    for _ in 0..500 {
        last = get(&node.gateway, &vars_host, "/variable?name=greeting")
            .await
            .text();
        if last == "value=hello-again" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(last, "value=hello-again");

    // A value the serving version cannot load with is refused, and nothing changes.
    let (status, body) = call(
        node.api,
        "PUT",
        vars,
        Some(&token),
        r#"{"api_host":"bad host/x"}"#,
    )
    .await;
    assert_error(status, &body, 422, "invalid_component");
    let (_, names) = get_json(node.api, vars, &token).await;
    assert_eq!(names, serde_json::json!({ "names": ["greeting"] }));
    let reply = get(&node.gateway, &vars_host, "/variable?name=greeting").await;
    assert_eq!(reply.text(), "value=hello-again");
}

/// `PUT /v1/tenants/acme/limits` as the admin.
async fn put_limits(api: std::net::SocketAddr, limits: &'static str) -> (u16, serde_json::Value) {
    call(api, "PUT", "/v1/tenants/acme/limits", Some(ADMIN), limits).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_s_limits_keep_the_operator_s_values_for_keys_left_out() {
    let data = tempfile::tempdir().unwrap();
    let node = start_node(&file_store(&data), true, &["--cpu-time-ms", "1234"]);
    create_tenant(node.api, "acme").await;
    let (status, body) = put_limits(node.api, r#"{"max_concurrent_requests":7}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["max_concurrent_requests"], 7);
    assert_eq!(
        body["cpu_time_ms"], 1234,
        "a key left out keeps the operator's --cpu-time-ms, not the built-in 10 000"
    );
    let (_, tenant) = get_json(node.api, "/v1/tenants/acme", ADMIN).await;
    assert_eq!(tenant["limits"]["cpu_time_ms"], 1234, "{tenant}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_policies_are_checked_before_they_are_stored() {
    let data = tempfile::tempdir().unwrap();
    let node = start_node(&file_store(&data), true, &[]);
    let token = create_tenant(node.api, "acme").await;
    let (status, body) = put_limits(node.api, r#"{"max_concurrent_requests":0}"#).await;
    assert_error(status, &body, 400, "invalid_limits");
    let (status, body) = put_limits(node.api, r#"{"cpu_seconds":1}"#).await;
    assert_eq!(status, 400, "unknown field: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cpu_seconds")
    );
    // Limits no app could run under, or past the documented maximum.
    for (limits, key) in [
        (r#"{"memory_bytes":1}"#, "memory_bytes"),
        (r#"{"cpu_time_ms":0}"#, "cpu_time_ms"),
        (r#"{"request_timeout_ms":99999999}"#, "request_timeout_ms"),
        (r#"{"requests_per_second":0}"#, "requests_per_second"),
    ] {
        let (status, body) = put_limits(node.api, limits).await;
        assert_error(status, &body, 400, "invalid_limits");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(key),
            "{body}"
        );
    }
    let (status, body) = call(
        node.api,
        "PUT",
        "/v1/tenants/acme/policy",
        Some(&token),
        r#"["policy.http.fetch.allowMethods"]"#,
    )
    .await;
    assert_error(status, &body, 422, "invalid_policy");
    // The operator's tenant name is not free.
    let (status, body) = call(
        node.api,
        "POST",
        "/v1/tenants",
        Some(ADMIN),
        r#"{"name":"local"}"#,
    )
    .await;
    assert_error(status, &body, 400, "invalid_name");
    let (status, body) = put_limits(node.api, r#"{"max_concurrent_requests":7}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["max_concurrent_requests"], 7);
    let (status, body) = call(
        node.api,
        "PUT",
        "/v1/tenants/acme/policy",
        Some(&token),
        r#"{"policy.http.fetch.condition":"request.method =="}"#,
    )
    .await;
    assert_error(status, &body, 422, "invalid_policy");
    let (status, body) = call(
        node.api,
        "PUT",
        "/v1/tenants/acme/policy",
        Some(&token),
        r#"{"policy.http.fetch.allowMethods":["GET"]}"#,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    // A limit this gateway cannot honour fails the rebuild: the app keeps
    // serving its previous build, and the failure shows in status and metrics.
    let (status, _) = deploy(
        node.api,
        &token,
        "acme",
        "web",
        static_bundle("web", "still here"),
    )
    .await;
    assert_eq!(status, 201);
    until_served(&node.gateway, &host("web", "acme"), "still here").await;
    let (status, _) = put_limits(
        node.api,
        r#"{"max_concurrent_requests":7,"memory_bytes":1073741824}"#,
    )
    .await;
    assert_eq!(status, 200);
    let mut error = String::new();
    for _ in 0..500 {
        let (_, show) = get_json(node.api, "/v1/tenants/acme/apps/web", &token).await;
        if let Some(e) = show["status"]["error"].as_str() {
            error = e.to_string();
            assert_eq!(show["status"]["serving"], 1, "{show}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(error.contains("memory limit"), "{error:?}");
    assert_eq!(
        get(&node.gateway, &host("web", "acme"), "/").await.text(),
        "still here"
    );
    let metrics = wait_metrics(&node.gateway, &[]).await;
    assert!(
        metrics.contains("okra_config_reloads_total{result=\"error\"}"),
        "{metrics}"
    );
    let (_, tenant) = get_json(node.api, "/v1/tenants/acme", &token).await;
    assert_eq!(tenant["limits"]["max_concurrent_requests"], 7);
    assert_eq!(tenant["has_policy"], true);
    let (status, body) = call(
        node.api,
        "POST",
        "/v1/tenants",
        Some(ADMIN),
        r#"{"name":"acme"}"#,
    )
    .await;
    assert_error(status, &body, 409, "conflict");
    let (status, body) = call(node.api, "POST", "/v1/tenants", Some(ADMIN), "{not json").await;
    assert_error(status, &body, 400, "invalid_json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_during_deploys_leaves_a_consistent_store() {
    let data = tempfile::tempdir().unwrap();
    let store = file_store(&data);
    let token = {
        let node = start_node(&store, true, &[]);
        let token = create_tenant(node.api, "acme").await;
        let (status, _) = deploy(node.api, &token, "acme", "web", static_bundle("web", "v1")).await;
        assert_eq!(status, 201);
        token
    };
    for round in 0..5u64 {
        let mut node = start_node(&store, true, &[]);
        // Fire deploys and kill the process while they are in flight.
        let api = node.api;
        let token2 = token.clone();
        let deploys = tokio::spawn(async move {
            for i in 0..20 {
                let bundle = static_bundle("web", &format!("r{round}-{i}"));
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    deploy(api, &token2, "acme", "web", bundle),
                )
                .await;
            }
        });
        tokio::time::sleep(Duration::from_millis(20 + round * 15)).await;
        node.gateway.kill9();
        deploys.abort();
        let _ = deploys.await;

        // The store opens, and what it says is served, consistently.
        let node = start_node(&store, true, &[]);
        let (status, show) = get_json(node.api, "/v1/tenants/acme/apps/web", &token).await;
        assert_eq!(status, 200, "round {round}: {show}");
        let current = show["current"].as_u64().unwrap();
        let versions: Vec<u64> = show["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_u64().unwrap())
            .collect();
        // The newest ten versions are kept (the default quota).
        let oldest = current.saturating_sub(9).max(1);
        assert_eq!(
            versions,
            (oldest..=current).collect::<Vec<_>>(),
            "round {round}"
        );
        let reply = get(&node.gateway, &host("web", "acme"), "/").await;
        assert_eq!(reply.status, 200, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_under_load_fails_no_request() {
    let data = tempfile::tempdir().unwrap();
    let node = Arc::new(start_node(&file_store(&data), true, &[]));
    let token = create_tenant(node.api, "acme").await;
    // `steady` stays deployed throughout, alternating between two versions.
    for body in ["steady-a", "steady-b"] {
        let (status, _) = deploy(
            node.api,
            &token,
            "acme",
            "steady",
            static_bundle("steady", body),
        )
        .await;
        assert_eq!(status, 201);
    }
    let (status, _) = deploy(node.api, &token, "acme", "busy", hello_bundle()).await;
    assert_eq!(status, 201);
    until_served(&node.gateway, &host("steady", "acme"), "steady-b").await;

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for path in ["/", "/x"] {
        let (node, stop, served) = (node.clone(), stop.clone(), served.clone());
        let steady = host("steady", "acme");
        load.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let reply = get(&node.gateway, &steady, path).await;
                if reply.status != 200 || !reply.text().starts_with("steady-") {
                    failures.push((reply.status, reply.text()));
                }
                served.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }

    let mut visible = Vec::new();
    let busy = host("busy", "acme");
    for round in 0..10 {
        let (status, _) = deploy(
            node.api,
            &token,
            "acme",
            "other",
            static_bundle("other", &format!("o{round}")),
        )
        .await;
        assert_eq!(status, 201);
        visible
            .push(until_served(&node.gateway, &host("other", "acme"), &format!("o{round}")).await);
        let target = if round % 2 == 0 { 1 } else { 2 };
        let (status, _) = rollback(node.api, &token, "acme", "steady", target).await;
        assert_eq!(status, 200);
        let want = if target == 1 { "steady-a" } else { "steady-b" };
        visible.push(until_served(&node.gateway, &host("steady", "acme"), want).await);
        assert_eq!(delete_app(node.api, &token, "acme", "other").await, 204);
        visible.push(until_gone(&node.gateway, &host("other", "acme")).await);
        // A wasm app stays up through all of it.
        assert_eq!(get(&node.gateway, &busy, "/").await.status, 200);
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for task in load {
        failures.extend(task.await.unwrap());
    }
    let total = served.load(Ordering::Relaxed);
    assert!(total > 0);
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    visible.sort();
    eprintln!(
        "hot swap: {total} requests, 0 failed; change visible after median {:?}, max {:?} (30 changes)",
        visible[visible.len() / 2],
        visible[visible.len() - 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_served_api() {
    let data = tempfile::tempdir().unwrap();
    let node = start_node(&file_store(&data), true, &[]);
    let (status, doc) = call(node.api, "GET", "/v1/openapi.json", None, "").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let concrete = path
                .replace("{tenant}", "acme")
                .replace("{app}", "web")
                .replace("{domain}", "www.example.com")
                .replace("{name}", "greeting")
                .replace("{store}", "default")
                .replace("{key}", "k");
            // Every documented operation exists and wants a token: 401, not
            // the router's 404 for unknown endpoints.
            let (status, body) = call(node.api, &method.to_uppercase(), &concrete, None, "").await;
            assert_eq!(status, 401, "{method} {path}: {body}");
            operations += 1;
        }
    }
    assert_eq!(operations, 20, "every endpoint of the API is documented");
    let (status, body) = call(node.api, "GET", "/v1/nothing", None, "").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deploys_of_one_app_each_get_their_own_version() {
    let data = tempfile::tempdir().unwrap();
    let node = start_node(&file_store(&data), true, &[]);
    let token = create_tenant(node.api, "acme").await;
    let mut deploys = Vec::new();
    for i in 0..8 {
        let (api, token) = (node.api, token.clone());
        deploys.push(tokio::spawn(async move {
            // A tenant's checks queue only a little way; past it, retry
            // as a client is told to.
            loop {
                let bundle = static_bundle("web", &format!("d{i}"));
                let (status, body) = deploy(api, &token, "acme", "web", bundle).await;
                if status != 429 {
                    return (status, body);
                }
                assert_eq!(body["error"]["code"], "validation_busy", "{body}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    let mut versions = Vec::new();
    for d in deploys {
        let (status, body) = d.await.unwrap();
        assert_eq!(status, 201, "{body}");
        versions.push(body["version"].as_u64().unwrap());
    }
    versions.sort();
    assert_eq!(
        versions,
        (1..=8).collect::<Vec<_>>(),
        "each deploy got its own version"
    );
    let (_, show) = get_json(node.api, "/v1/tenants/acme/apps/web", &token).await;
    assert_eq!(show["versions"].as_array().unwrap().len(), 8);
    let current = show["current"].as_u64().unwrap();
    assert!((1..=8).contains(&current));
    // The current one is what is served (the last write won).
    let served = until_served(&node.gateway, &host("web", "acme"), "d").await;
    let text = get(&node.gateway, &host("web", "acme"), "/").await.text();
    assert!(text.starts_with('d'), "{text} after {served:?}");
}
