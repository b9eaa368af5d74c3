//! The `okra` CLI as a user runs it: against a real gateway's API, with the
//! server and token from flags, environment or a config file; `okra up`
//! serving an app for any Host; and build commands run from `spin.toml`.

use crate::support::control::{ADMIN, host, start_node, until_served};
use crate::support::{free_port, raw_request};
use std::path::Path;
use std::process::{Command, Output, Stdio};

pub(crate) fn okra(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_okra"))
        .args(args)
        .env_remove("OKRA_SERVER")
        .env_remove("OKRA_TOKEN")
        .env_remove("OKRA_TENANT")
        .env("HOME", "/nonexistent")
        .envs(env.iter().copied())
        .output()
        .expect("run okra")
}

pub(crate) fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "okra failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn hello_dir() -> &'static Path {
    Path::new(test_programs::HELLO_MANIFEST).parent().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okra_manages_tenants_apps_domains_and_variables() {
    let data = tempfile::tempdir().unwrap();
    let node = start_node(&format!("file:{}", data.path().display()), true, &[]);
    let server = format!("http://{}", node.api);

    let out = stdout(&okra(
        &[
            "--server", &server, "--token", ADMIN, "tenants", "create", "acme",
        ],
        &[],
    ));
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("Its token (shown only now): "))
        .expect("the token is printed")
        .to_string();

    // Server, token and tenant from the environment.
    let env = [
        ("OKRA_SERVER", server.as_str()),
        ("OKRA_TOKEN", token.as_str()),
        ("OKRA_TENANT", "acme"),
    ];
    let out = stdout(&okra(
        &["deploy", hello_dir().to_str().unwrap(), "--no-build"],
        &env,
    ));
    // The URL has the gateway's listener port.
    let url = format!(
        "http://{}:{} (wildcard)",
        host("hello", "acme"),
        node.gateway.addr.port()
    );
    assert!(out.contains("Deployed hello version 1"), "{out}");
    assert!(out.contains(&url), "{out}");
    until_served(&node.gateway, &host("hello", "acme"), "Hello from Okra!").await;

    // ... or from a config file.
    let config = data.path().join("okra-cli.toml");
    std::fs::write(
        &config,
        format!("server = \"{server}\"\ntoken = \"{token}\"\ntenant = \"acme\"\n"),
    )
    .unwrap();
    let with_config = ["--config", config.to_str().unwrap()];
    let list = stdout(&okra(&[&with_config[..], &["apps", "list"]].concat(), &[]));
    assert!(
        list.starts_with("hello\tv1\thello.acme.okra.test"),
        "{list}"
    );

    let out = stdout(&okra(
        &["domains", "add", "hello", "www.hello.example"],
        &env,
    ));
    assert!(out.contains("Added www.hello.example"), "{out}");
    until_served(&node.gateway, "www.hello.example", "Hello from Okra!").await;
    stdout(&okra(&["vars", "set", "hello", "unused=1"], &env));
    let names = stdout(&okra(&["vars", "list", "hello"], &env));
    assert_eq!(names.trim(), "unused");
    let show = stdout(&okra(&["apps", "show", "hello"], &env));
    assert!(show.contains("\"current\": 1"), "{show}");

    // API errors come back with the API's own message and a failing exit code.
    let out = okra(&["apps", "rollback", "hello", "9"], &env);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("has no version 9") && err.contains("404"),
        "{err}"
    );
    // With no token, nothing is uploaded, and the error says how to give one.
    let out = okra(
        &["deploy", hello_dir().to_str().unwrap(), "--no-build"],
        &[("OKRA_SERVER", server.as_str()), ("OKRA_TENANT", "acme")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--token") && err.contains("OKRA_TOKEN"),
        "{err}"
    );
    assert!(!err.contains("Uploading"), "{err}");
    let out = okra(
        &["apps", "list"],
        &[
            ("OKRA_SERVER", "http://127.0.0.1:1"),
            ("OKRA_TOKEN", "x"),
            ("OKRA_TENANT", "acme"),
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the Okra API"));

    // Variables: a typo'd app is pointed out, and removable; values unset.
    let out = okra(&["vars", "set", "helo", "greeting=hi"], &env);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("has no app helo yet"),
        "{err}"
    );
    let out = okra(&["apps", "delete", "helo"], &env);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--purge"),
        "an app never deployed says how to remove it"
    );
    stdout(&okra(&["apps", "delete", "--purge", "helo"], &env));
    assert!(!stdout(&okra(&["apps", "list"], &env)).contains("helo"));
    stdout(&okra(&["vars", "unset", "hello", "unused"], &env));
    assert_eq!(stdout(&okra(&["vars", "list", "hello"], &env)).trim(), "");
    let out = okra(&["vars", "unset", "hello", "unused"], &env);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no value for variable \"unused\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The admin sets a tenant's limits and policy, and deletes it.
    let admin = [("OKRA_SERVER", server.as_str()), ("OKRA_TOKEN", ADMIN)];
    let limits = stdout(&okra(
        &["tenants", "limits", "acme", "max_concurrent_requests=7"],
        &admin,
    ));
    assert!(
        limits.contains("\"max_concurrent_requests\": 7"),
        "{limits}"
    );
    let out = okra(&["tenants", "limits", "acme", "memory_bytes=1"], &admin);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("memory_bytes is 1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let policy = data.path().join("okra.json");
    std::fs::write(&policy, r#"{"policy.http.fetch.allowMethods":["GET"]}"#).unwrap();
    let out = stdout(&okra(
        &["tenants", "policy", "acme", policy.to_str().unwrap()],
        &admin,
    ));
    assert!(out.contains("Set the policy of tenant acme"), "{out}");
    let (_, shown) = crate::support::control::get_json(node.api, "/v1/tenants/acme", ADMIN).await;
    assert_eq!(shown["has_policy"], true, "{shown}");

    stdout(&okra(&["apps", "delete", "hello"], &env));
    crate::support::control::until_gone(&node.gateway, &host("hello", "acme")).await;
    stdout(&okra(&["tenants", "delete", "acme"], &admin));
    assert!(!stdout(&okra(&["tenants", "list"], &admin)).contains("acme"));
}

/// A deploy names what Okra does not serve, sets --var values first, and
/// prints each route once per host with the port and a leading slash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_warns_about_unserved_features_and_takes_vars() {
    let data = tempfile::tempdir().unwrap();
    let node = start_node(&format!("file:{}", data.path().display()), true, &[]);
    let server = format!("http://{}", node.api);
    let token = crate::support::control::create_tenant(node.api, "acme").await;
    let app = tempfile::tempdir().unwrap();
    std::fs::copy(
        hello_dir().join("target/wasm32-wasip2/release/hello.wasm"),
        app.path().join("hello.wasm"),
    )
    .unwrap();
    std::fs::write(
        app.path().join("spin.toml"),
        r#"spin_manifest_version = 2
[application]
name = "warned"
[variables]
greeting = { required = true }
[[trigger.http]]
route = "api/..."
component = "hello"
[[trigger.http]]
route = "/api/..."
static_response = { body = "shadowing" }
[[trigger.redis]]
channel = "jobs"
component = "hello"
[component.hello]
source = "hello.wasm"
variables = { greeting = "{{ greeting }}" }
"#,
    )
    .unwrap();
    let env = [
        ("OKRA_SERVER", server.as_str()),
        ("OKRA_TOKEN", token.as_str()),
        ("OKRA_TENANT", "acme"),
    ];
    let dir = app.path().to_str().unwrap();
    // An app with only a trigger Okra does not serve would serve nothing.
    let full = std::fs::read_to_string(app.path().join("spin.toml")).unwrap();
    let start = full.find("[[trigger.http]]").unwrap();
    let end = full.find("[[trigger.redis]]").unwrap();
    let only_redis = format!("{}{}", &full[..start], &full[end..]);
    std::fs::write(app.path().join("spin.toml"), only_redis).unwrap();
    let out = okra(&["deploy", dir, "--no-build", "--var", "greeting=hi"], &env);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("[[trigger.redis]] is not supported")
            && err.contains("nothing Okra can serve"),
        "{err}"
    );
    std::fs::write(app.path().join("spin.toml"), full).unwrap();
    let out = okra(&["vars", "unset", "warned", "greeting"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The required variable is missing: the answer names it and --var.
    let out = okra(&["deploy", dir, "--no-build"], &env);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("greeting"), "{err}");
    let out = okra(
        &[
            "deploy",
            dir,
            "--no-build",
            "--var",
            "greeting=hi",
            "--wait",
        ],
        &env,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: [[trigger.redis]] is not supported"),
        "{err}"
    );
    assert!(
        err.contains("warning: route \"api/...\"") && err.contains("never be used"),
        "{err}"
    );
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let url = format!(
        "http://{}:{}/api (wildcard)",
        host("warned", "acme"),
        node.gateway.addr.port()
    );
    assert!(out.contains(&url), "{out}");
    assert_eq!(
        out.matches("(wildcard)").count(),
        1,
        "a route declared twice is one URL: {out}"
    );
    assert!(out.contains("Served (after"), "{out}");
    // --wait returned once it is served: no need to poll. The later of the
    // two /api routes answers.
    let reply = crate::support::get(&node.gateway, &host("warned", "acme"), "/api/x").await;
    assert_eq!((reply.status, reply.text()), (200, "shadowing".to_string()));
    // Once served, --var would change the served version before the new
    // one is checked: refused, pointing to `vars set`.
    let out = okra(
        &["deploy", dir, "--no-build", "--var", "greeting=bye"],
        &env,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("already serves version 1")
            && err.contains("okra vars set"),
        "{err}"
    );
    assert!(!err.contains("Uploading"), "{err}");
    // A value the served version does not declare is pointed out.
    let out = okra(&["vars", "set", "warned", "gretting=hi"], &env);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("does not declare variable gretting"),
        "{err}"
    );
}

#[test]
fn okra_up_serves_the_app_for_any_host() {
    let manifest = hello_dir().join("spin.toml");
    // The app's directory, its manifest (as Spin users pass it), or `-f`.
    for app in [
        vec![hello_dir().to_str().unwrap().to_string()],
        vec![manifest.to_str().unwrap().to_string()],
        vec!["-f".to_string(), manifest.to_str().unwrap().to_string()],
    ] {
        serves_for_any_host(&app);
    }
}

fn serves_for_any_host(app: &[String]) {
    let listen = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_okra"))
        .arg("up")
        .args(app)
        .args(["--no-build", "--listen"])
        .arg(listen.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for host in ["localhost", "anything.example"] {
        let request = format!("GET /hi HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let mut reply = String::new();
        for _ in 0..600 {
            reply = raw_request(listen, &request).unwrap_or_default();
            if !reply.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(reply.starts_with("HTTP/1.1 200"), "{app:?} {host}: {reply}");
        assert!(
            reply.contains("Hello from Okra! You asked for /hi\n"),
            "{app:?} {host}: {reply}"
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn cli_papercuts_get_clear_answers() {
    // A config file that was asked for and is missing is an error.
    let out = okra(&["--config", "/nonexistent/okra.toml", "apps", "list"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/okra.toml does not exist"),
        "{err}"
    );
    // A server without a scheme is http (here: nothing listens there).
    let closed = free_port().to_string();
    let out = okra(
        &[
            "--server", &closed, "--token", "x", "--tenant", "t", "apps", "list",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("http://{closed}")), "{err}");
    assert!(!err.contains("relative URL"), "{err}");
    // Names are checked before they become part of a URL path: no `..`
    // turns `vars unset` into deleting an app.
    for args in [
        &["vars", "unset", "hello", "../../../apps/web"][..],
        &["apps", "delete", "../web"],
        &["domains", "add", "web", "x/../../y.example"],
    ] {
        let out = okra(
            &[&["--token", "x", "--tenant", "t"][..], args].concat(),
            &[],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("invalid value"),
            "{args:?}: {err}"
        );
    }
    let out = okra(
        &["--token", "x", "apps", "list"],
        &[("OKRA_TENANT", "../x")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tenant \"../x\""), "{err}");
    // A component not built yet is named, with what to do, once; a source
    // that is not wasm says so on one line.
    let app = tempfile::tempdir().unwrap();
    std::fs::write(
        app.path().join("spin.toml"),
        "spin_manifest_version = 2\n[application]\nname = \"p\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n[component.c]\nsource = \"c.wasm\"\n",
    )
    .unwrap();
    let dir = app.path().to_str().unwrap();
    let out = okra(
        &["deploy", dir, "--no-build", "--token", "x", "--tenant", "t"],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("component `c`: its source") && err.contains("build it first"),
        "{err}"
    );
    assert!(!err.contains("Uploading"), "{err}");
    std::fs::write(app.path().join("c.wasm"), "not wasm").unwrap();
    let listen = free_port().to_string();
    let out = okra(&["up", dir, "--no-build", "--listen", &listen], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("c.wasm is not a WebAssembly file"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // An app that is not there is named once, with what to give instead.
    let out = okra(&["deploy", "/nonexistent", "--no-build"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no app at /nonexistent"), "{err}");
}

#[test]
fn okra_build_runs_each_components_build_command() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(
        dir.path().join("spin.toml"),
        "spin_manifest_version = 2\n[application]\nname = \"b\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n[component.c]\nsource = \"c.wasm\"\n[component.c.build]\ncommand = \"echo built > marker\"\nworkdir = \"sub\"\n[component.d]\nsource = \"d.wasm\"\n[component.d.build]\ncommand = \"exit 3\"\n",
    )
    .unwrap();
    let out = okra(&["build", dir.path().to_str().unwrap()], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Building component c with `echo built > marker`"),
        "{err}"
    );
    assert!(err.contains("building component d failed"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("sub/marker")).unwrap(),
        "built\n"
    );
}
