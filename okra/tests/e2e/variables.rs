//! Application variables end to end: `[variables]` resolved from `--var`,
//! `OKRA_VARIABLE_*` and defaults; component templates; the three guest
//! interfaces (fermyon:spin/variables@2 from spin-sdk 5,
//! spin:variables@3 from spin-sdk 7, wasi:config/store); load errors; and
//! secrets kept out of the logs.

use crate::support::{Launch, get};

const SECRET: &str = "s3cr3t-never-logged";

fn vars_app(dir: &tempfile::TempDir) -> String {
    let manifest = format!(
        r#"spin_manifest_version = 2
[application]
name = "vars"
[variables]
greeting = {{ default = "hello" }}
api_host = {{ default = "books.example" }}
token = {{ required = true, secret = true }}
[[trigger.http]]
route = "/v2/t/..."
component = "v2"
[[trigger.http]]
route = "/v3/t/..."
component = "v3"
[component.v2]
source = {sdk5:?}
[component.v2.variables]
message = "{{{{ greeting }}}}, world"
api_url = "https://{{{{ api_host }}}}/v1"
auth = "Bearer {{{{ token }}}}"
[component.v3]
source = {sdk7:?}
[component.v3.variables]
message = "{{{{ greeting }}}} from p3"
"#,
        sdk5 = test_programs::SDK5_GUEST,
        sdk7 = test_programs::SDK7_GUEST,
    );
    let path = dir.path().join("spin.toml");
    std::fs::write(&path, manifest).unwrap();
    format!("vars.localhost={}", path.display())
}

#[test]
fn a_missing_required_variable_stops_the_load_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(crate::support::gateway_bin())
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .args(["--app", &vars_app(&dir)])
        .env_remove("OKRA_VARIABLE_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("variable `token` is required"), "{stderr}");
    assert!(stderr.contains("spin.toml"), "{stderr}");
}

#[tokio::test]
async fn guests_read_their_component_variables_through_every_interface() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("gateway.log");
    let gw = Launch {
        env: &[
            ("OKRA_VARIABLE_API_HOST", "env.example"),
            ("OKRA_LOG", "debug"),
        ],
        stderr: Some(std::fs::File::create(&log).unwrap()),
        ..Default::default()
    }
    .start(
        &[&vars_app(&dir)],
        &["--var", &format!("token={SECRET}"), "--var", "greeting=hi"],
    );
    let read = |path: &'static str| {
        let gw = &gw;
        async move { get(gw, "vars.localhost", path).await.text() }
    };
    // fermyon:spin/variables@2.0.0 (spin-sdk 5): --var beats the default,
    // OKRA_VARIABLE_* beats the default, templates are filled.
    assert_eq!(read("/v2/t/variable?name=message").await, "value=hi, world");
    assert_eq!(
        read("/v2/t/variable?name=api_url").await,
        "value=https://env.example/v1"
    );
    assert_eq!(
        read("/v2/t/variable?name=auth").await,
        format!("value=Bearer {SECRET}")
    );
    // Only the component's own keys: not app variables, not other components'.
    let undefined = read("/v2/t/variable?name=token").await;
    assert!(
        undefined.starts_with("error=Error::Undefined("),
        "{undefined}"
    );
    let invalid = read("/v2/t/variable?name=Not-A-Name").await;
    assert!(
        invalid.starts_with("error=Error::InvalidName("),
        "{invalid}"
    );
    // spin:variables@3.0.0 (spin-sdk 7).
    assert_eq!(
        read("/v3/t/variable?name=message").await,
        "value=hi from p3"
    );
    let other = read("/v3/t/variable?name=api_url").await;
    assert!(other.starts_with("error=Error::Undefined("), "{other}");
    // wasi:config/store: none for unknown keys, get-all lists the component's.
    assert_eq!(read("/v2/t/config?name=message").await, "value=hi, world");
    assert_eq!(read("/v2/t/config?name=token").await, "value=<none>");
    assert_eq!(
        read("/v2/t/config-all").await,
        format!("value=api_url=https://env.example/v1,auth=Bearer {SECRET},message=hi, world")
    );
    drop(gw);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("DEBUG"), "the log was not captured");
    assert!(!logged.contains(SECRET), "a secret reached the log");
}
