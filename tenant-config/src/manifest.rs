//! The Spin application manifest (`spin.toml`, manifest version 2), read as Spin reads it.
//!
//! Unknown fields are errors, as in Spin. Every error names the file, the line
//! and the key at fault, and says what would have been accepted.

use crate::allowed_hosts::{AllowedHostError, AllowedHosts, AppContext, convert_legacy_http_hosts};
use crate::paths::{PathScope, normalize_relative};
use crate::routes::RoutePattern;
use crate::spin_headers::HOP_BY_HOP;
use crate::template::template_references;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A manifest that failed to load: where, and why.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read at all.
    #[error("{file}: cannot read the manifest: {reason}")]
    Io {
        /// The manifest's path.
        file: PathBuf,
        /// Why it could not be read. Said in the message, and not also
        /// chained as a source, so `{:#}` does not print it twice.
        reason: std::io::Error,
    },
    /// The file was read but is not an acceptable manifest.
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        /// The manifest's path.
        file: PathBuf,
        /// The line at fault, counting from 1.
        line: usize,
        /// The column at fault, in characters, counting from 1.
        column: usize,
        /// What is wrong, naming the key, and what would be accepted.
        message: String,
    },
}

/// The most `[[trigger.http]]` entries one app may have: far more than any
/// real app, and few enough that routing and checks stay cheap.
pub const MAX_HTTP_TRIGGERS: usize = 1000;

/// The manifest as written: the serde schema, mirroring Spin's v2 schema.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    spin_manifest_version: Spanned<toml::Value>,
    application: RawApplication,
    #[serde(default)]
    variables: BTreeMap<Spanned<String>, RawVariable>,
    #[serde(default)]
    trigger: RawTriggers,
    #[serde(default)]
    component: BTreeMap<Spanned<String>, RawComponent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApplication {
    name: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    authors: Vec<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    trigger: Option<RawApplicationTriggers>,
    #[serde(default)]
    tool: Option<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApplicationTriggers {
    #[serde(default)]
    http: Option<RawApplicationHttp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApplicationHttp {
    #[serde(default)]
    base: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariable {
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    secret: bool,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawTriggers {
    #[serde(default)]
    http: Vec<RawHttpTrigger>,
    /// Other trigger types (redis, cron, ...) parse but Okra serves HTTP only.
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpTrigger {
    #[serde(default)]
    id: Option<String>,
    route: Spanned<RawRoute>,
    #[serde(default)]
    component: Option<Spanned<String>>,
    #[serde(default)]
    static_response: Option<RawStaticResponse>,
    #[serde(default)]
    executor: Option<Spanned<toml::Table>>,
    #[serde(default)]
    dependencies: Option<Spanned<toml::Table>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawRoute {
    Path(String),
    Private { private: bool },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStaticResponse {
    #[serde(default)]
    status_code: Option<u16>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    #[serde(default)]
    description: Option<String>,
    source: Spanned<RawSource>,
    #[serde(default)]
    files: Vec<RawFile>,
    #[serde(default)]
    exclude_files: Vec<String>,
    #[serde(default)]
    allowed_http_hosts: Vec<String>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    build: Option<RawBuild>,
    #[serde(default)]
    sqlite_databases: Vec<String>,
    #[serde(default)]
    ai_models: Vec<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    dependencies: Option<toml::Table>,
    #[serde(default)]
    dependencies_inherit_configuration: bool,
    #[serde(default)]
    tool: Option<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawSource {
    Local(String),
    Remote(#[allow(dead_code)] toml::Table),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawFile {
    Pattern(String),
    Mapping { source: String, destination: String },
}

/// Parsed so unknown keys are caught; Okra never runs build commands.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuild {
    command: toml::Value,
    #[serde(default)]
    workdir: Option<String>,
    #[serde(default)]
    watch: Vec<String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
}

/// A loaded, validated Spin application.
#[derive(Clone, Debug)]
pub struct AppManifest {
    /// `[application] name`.
    pub name: String,
    /// `[application] version`, if given.
    pub version: Option<String>,
    /// `[variables]`, by name.
    pub variables: BTreeMap<String, Variable>,
    /// `[[trigger.http]]` entries in manifest order.
    pub http_triggers: Vec<HttpTrigger>,
    /// `[component.<id>]`, by id.
    pub components: BTreeMap<String, Component>,
    /// What the manifest asks for that Okra accepts but does not serve
    /// (other trigger types, routes a later trigger shadows), one sentence
    /// each naming the feature: a deploy answers with them, `okra up` logs them.
    pub warnings: Vec<String>,
}

/// An application variable declaration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variable {
    /// The value used when no provider gives one.
    pub default: Option<String>,
    /// Whether a provider must give a value; never set together with `default`.
    pub required: bool,
    /// Whether the value is kept out of logs and errors.
    pub secret: bool,
    /// What the variable is for, as the manifest says.
    pub description: Option<String>,
}

/// One `[[trigger.http]]`.
#[derive(Clone, Debug)]
pub struct HttpTrigger {
    /// The route, or `None` for `route = { private = true }`.
    pub route: Option<RoutePattern>,
    /// What the route leads to.
    pub handler: TriggerHandler,
}

/// What a route serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TriggerHandler {
    /// A component of this app, by id.
    Component(String),
    /// A fixed response with no component involved.
    Static(StaticResponse),
}

/// `static_response = { status_code, headers, body }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticResponse {
    /// `status_code`, 200 when not given.
    pub status: u16,
    /// `headers`, as (name, value) pairs sorted by name.
    pub headers: Vec<(String, String)>,
    /// `body`, empty when not given.
    pub body: String,
}

impl StaticResponse {
    /// Refuses what could not be sent as a final response: an interim (1xx)
    /// or out-of-range status, header names or values HTTP cannot carry, and
    /// framing or hop-by-hop headers.
    pub fn check(&self) -> Result<(), String> {
        if !(200..=599).contains(&self.status) {
            return Err(format!(
                "status_code {} is not a final status; give one from 200 to 599",
                self.status
            ));
        }
        for (name, value) in &self.headers {
            let lower = name.to_ascii_lowercase();
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(format!(
                    "header name {name:?} is not a valid HTTP header name"
                ));
            }
            if HOP_BY_HOP.contains(&lower.as_str()) || lower == "content-length" {
                return Err(format!(
                    "header {name:?} frames the message or the connection; the gateway sets it"
                ));
            }
            if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return Err(format!(
                    "header {name:?} has a control character in its value"
                ));
            }
        }
        Ok(())
    }
}

/// A `tchar` of RFC 9110: what a header name is made of.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// One `[component.<id>]`.
#[derive(Clone, Debug)]
pub struct Component {
    /// The `<id>` of `[component.<id>]`.
    pub id: String,
    /// The `.wasm` file, resolved against the manifest's directory.
    pub source: PathBuf,
    /// Files mounted read-only into the guest: (host path, guest path).
    pub files: Vec<FileMount>,
    /// `allowed_outbound_hosts` as written, templates not yet filled in.
    pub allowed_outbound_hosts: Vec<String>,
    /// Legacy `allowed_http_hosts`.
    pub allowed_http_hosts: Vec<String>,
    /// `environment`: the environment variables the guest sees.
    pub environment: BTreeMap<String, String>,
    /// Component variable templates, e.g. `url = "{{ api_base }}/v1"`.
    pub variables: BTreeMap<String, String>,
    /// `key_value_stores`: the labels of the key-value stores it may open.
    pub key_value_stores: Vec<String>,
    /// `sqlite_databases`: the labels of the SQLite databases it may open.
    pub sqlite_databases: Vec<String>,
}

/// A host directory or file made visible to the guest, read-only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMount {
    /// The path on the host, resolved against the manifest's directory.
    pub host_path: PathBuf,
    /// Where the guest sees it: the `destination`, or `/` and the path as written.
    pub guest_path: String,
}

impl AppManifest {
    /// Reads and validates an operator's `spin.toml` at `path`; component and
    /// file paths are resolved against its directory and may lead anywhere.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        Self::load_in(path, PathScope::Anywhere)
    }

    /// Reads and validates `spin.toml` at `path`, with its paths held to `scope`.
    pub fn load_in(path: &Path, scope: PathScope) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|reason| ManifestError::Io {
            file: path.to_path_buf(),
            reason,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::parse_in(&text, path, dir, scope)
    }

    /// Parses an operator's manifest text; `file` names it in errors, `dir`
    /// anchors relative paths.
    pub fn parse(text: &str, file: &Path, dir: &Path) -> Result<Self, ManifestError> {
        Self::parse_in(text, file, dir, PathScope::Anywhere)
    }

    /// Parses manifest text with its `source` and `files` paths held to
    /// `scope`: [`PathScope::InsideApp`] refuses absolute paths and `..`.
    pub fn parse_in(
        text: &str,
        file: &Path,
        dir: &Path,
        scope: PathScope,
    ) -> Result<Self, ManifestError> {
        let at = |span: std::ops::Range<usize>, message: String| {
            let (line, column) = line_col(text, span.start);
            ManifestError::Invalid {
                file: file.to_path_buf(),
                line,
                column,
                message,
            }
        };
        let raw: RawManifest = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_string();
            let message = explain_serde(&message);
            at(e.span().unwrap_or(0..0), message)
        })?;

        let version = raw.spin_manifest_version.get_ref();
        if version.as_integer() != Some(2) && version.as_str() != Some("2") {
            return Err(at(
                raw.spin_manifest_version.span(),
                format!(
                    "key `spin_manifest_version`: found {version}, expected 2 (Okra reads manifest version 2; run `spin doctor` to upgrade a version 1 manifest)"
                ),
            ));
        }
        if let Some(base) = raw
            .application
            .trigger
            .as_ref()
            .and_then(|t| t.http.as_ref())
            .and_then(|h| h.base.as_ref())
            && base.get_ref() != "/"
        {
            return Err(at(
                base.span(),
                format!(
                    "key `application.trigger.http.base`: found {:?}, but only \"/\" is accepted (as in Spin 2+)",
                    base.get_ref()
                ),
            ));
        }
        let _ = (
            &raw.application.authors,
            &raw.application.description,
            &raw.application.targets,
            &raw.application.tool,
        );

        let mut variables = BTreeMap::new();
        for (name, var) in raw.variables {
            validate_variable_name(name.get_ref())
                .map_err(|why| at(name.span(), format!("variable `{}`: {why}", name.get_ref())))?;
            if var.default.is_none() && !var.required {
                return Err(at(
                    name.span(),
                    format!(
                        "variable `{}` needs either `default = \"...\"` or `required = true`",
                        name.get_ref()
                    ),
                ));
            }
            if var.default.is_some() && var.required {
                return Err(at(
                    name.span(),
                    format!(
                        "variable `{}` cannot have both a `default` and `required = true`",
                        name.get_ref()
                    ),
                ));
            }
            variables.insert(
                name.into_inner(),
                Variable {
                    default: var.default,
                    required: var.required,
                    secret: var.secret,
                    description: var.description,
                },
            );
        }

        let mut components = BTreeMap::new();
        for (id, c) in raw.component {
            validate_component_id(id.get_ref())
                .map_err(|why| at(id.span(), format!("component `{}`: {why}", id.get_ref())))?;
            let source_span = c.source.span();
            // In a bundle, a path must stay inside the app directory.
            let confined = |key: &str, raw: &str| match scope {
                PathScope::InsideApp => normalize_relative(raw).map(|_| ()).map_err(|why| {
                    format!(
                        "key `component.{}.{key}`: {raw:?} is not allowed: {why}",
                        id.get_ref()
                    )
                }),
                PathScope::Anywhere => Ok(()),
            };
            let source = match c.source.into_inner() {
                RawSource::Local(p) => {
                    confined("source", &p).map_err(|m| at(source_span.clone(), m))?;
                    dir.join(p)
                }
                RawSource::Remote(_) => {
                    return Err(at(
                        source_span,
                        format!(
                            "key `component.{}.source`: remote sources (url/registry) are not supported; give the path of a local .wasm file",
                            id.get_ref()
                        ),
                    ));
                }
            };
            let mut files = Vec::new();
            for f in c.files {
                let mount = match f {
                    RawFile::Pattern(p) => FileMount {
                        guest_path: format!("/{}", p.trim_start_matches('/')),
                        host_path: {
                            confined("files", &p).map_err(|m| at(id.span(), m))?;
                            dir.join(p)
                        },
                    },
                    RawFile::Mapping {
                        source,
                        destination,
                    } => FileMount {
                        host_path: {
                            confined("files", &source).map_err(|m| at(id.span(), m))?;
                            dir.join(source)
                        },
                        guest_path: destination,
                    },
                };
                files.push(mount);
            }
            for (key, template) in &c.variables {
                for referenced in template_references(template) {
                    if !variables.contains_key(&referenced) {
                        return Err(at(
                            id.span(),
                            format!(
                                "key `component.{}.variables.{key}`: the template refers to `{referenced}`, which is not declared under [variables]",
                                id.get_ref()
                            ),
                        ));
                    }
                }
            }
            let _ = (
                &c.description,
                &c.exclude_files,
                &c.build,
                &c.ai_models,
                &c.dependencies,
                &c.dependencies_inherit_configuration,
                &c.tool,
            );
            check_allowed_hosts(&c.allowed_outbound_hosts, &variables).map_err(|e| {
                at(
                    id.span(),
                    format!(
                        "key `component.{}.allowed_outbound_hosts`: {e}",
                        id.get_ref()
                    ),
                )
            })?;
            let id = id.into_inner();
            components.insert(
                id.clone(),
                Component {
                    id,
                    source,
                    files,
                    allowed_outbound_hosts: c.allowed_outbound_hosts,
                    allowed_http_hosts: c.allowed_http_hosts,
                    environment: c.environment,
                    variables: c.variables,
                    key_value_stores: c.key_value_stores,
                    sqlite_databases: c.sqlite_databases,
                },
            );
        }

        if raw.trigger.http.len() > MAX_HTTP_TRIGGERS {
            let start = text.find("trigger.http").unwrap_or(0);
            return Err(at(
                start..start,
                format!(
                    "{} [[trigger.http]] entries; at most {MAX_HTTP_TRIGGERS} are accepted",
                    raw.trigger.http.len()
                ),
            ));
        }
        let mut http_triggers = Vec::new();
        for t in raw.trigger.http {
            let _ = &t.id;
            if let Some(executor) = &t.executor {
                let kind = executor.get_ref().get("type").and_then(|v| v.as_str());
                if !matches!(kind, Some("http") | Some("spin")) {
                    return Err(at(
                        executor.span(),
                        format!(
                            "key `trigger.http.executor`: type {kind:?} is not supported; Okra runs wasi:http components (executor type \"http\" or \"spin\")"
                        ),
                    ));
                }
            }
            if let Some(deps) = &t.dependencies {
                return Err(at(
                    deps.span(),
                    "key `trigger.http.dependencies`: middleware chains are not supported yet"
                        .into(),
                ));
            }
            let route_span = t.route.span();
            let route = match t.route.into_inner() {
                RawRoute::Path(p) => Some(RoutePattern::parse(&p)),
                RawRoute::Private { private: true } => None,
                RawRoute::Private { private: false } => {
                    let which = t
                        .component
                        .as_ref()
                        .map(|c| c.get_ref().as_str())
                        .unwrap_or("static response");
                    return Err(at(
                        route_span,
                        format!(
                            "key `trigger.http.route` of `{which}`: `{{ private = false }}` is not accepted; write a route path such as \"/api/...\" or `{{ private = true }}`"
                        ),
                    ));
                }
            };
            let handler = match (t.component, t.static_response) {
                (Some(c), None) => {
                    if !components.contains_key(c.get_ref()) {
                        let known: Vec<&str> = components.keys().map(String::as_str).collect();
                        return Err(at(
                            c.span(),
                            format!(
                                "key `trigger.http.component`: no component `{}` is defined; expected one of {known:?}",
                                c.get_ref()
                            ),
                        ));
                    }
                    TriggerHandler::Component(c.into_inner())
                }
                (None, Some(s)) => {
                    let response = StaticResponse {
                        status: s.status_code.unwrap_or(200),
                        headers: s.headers.into_iter().collect(),
                        body: s.body.unwrap_or_default(),
                    };
                    response.check().map_err(|why| {
                        at(
                            route_span.clone(),
                            format!("key `trigger.http.static_response`: {why}"),
                        )
                    })?;
                    TriggerHandler::Static(response)
                }
                _ => {
                    return Err(at(
                        route_span,
                        "a [[trigger.http]] needs exactly one of `component = \"<id>\"` or `static_response = { ... }`".into(),
                    ));
                }
            };
            http_triggers.push(HttpTrigger { route, handler });
        }
        let mut warnings = unserved_triggers(&raw.trigger.other);
        warnings.extend(shadowed_routes(&http_triggers));
        warnings.extend(bad_database_labels(&components));

        Ok(AppManifest {
            name: raw.application.name,
            version: raw.application.version,
            variables,
            http_triggers,
            components,
            warnings,
        })
    }
}

/// One warning per trigger type other than HTTP, naming it and how many
/// of its triggers are ignored.
fn unserved_triggers(other: &BTreeMap<String, toml::Value>) -> Vec<String> {
    other
        .iter()
        .map(|(kind, value)| {
            let count = value.as_array().map_or(1, Vec::len);
            let noun = if count == 1 { "trigger" } else { "triggers" };
            format!(
                "[[trigger.{kind}]] is not supported: Okra serves HTTP triggers only, so this app's {count} {kind} {noun} never run"
            )
        })
        .collect()
}

/// One warning per route that a later trigger declares again (the same
/// normalised route, as the route table compares them): the last one
/// answers, so the earlier ones are never used. One pass, however many
/// triggers there are.
fn shadowed_routes(triggers: &[HttpTrigger]) -> Vec<String> {
    let routes: Vec<Option<(String, &RoutePattern)>> = triggers
        .iter()
        .map(|t| t.route.as_ref().map(|r| (r.normalized(), r)))
        .collect();
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, route) in routes.iter().enumerate() {
        if let Some((normalized, _)) = route {
            last.insert(normalized, i);
        }
    }
    let mut warnings = Vec::new();
    for (i, route) in routes.iter().enumerate() {
        let Some((normalized, pattern)) = route else {
            continue;
        };
        let answering = last[normalized.as_str()];
        if answering != i {
            warnings.push(format!(
                "route {:?} ({}) is declared again by a later trigger ({}), which answers it, so this one will never be used",
                pattern.raw(),
                triggers[i].handler.describe(),
                triggers[answering].handler.describe()
            ));
        }
    }
    warnings
}

impl TriggerHandler {
    /// What the trigger leads to, for messages: `component "x"` or `a static response`.
    pub fn describe(&self) -> String {
        match self {
            TriggerHandler::Component(id) => format!("component {id:?}"),
            TriggerHandler::Static(_) => "a static response".to_string(),
        }
    }
}

impl AppManifest {
    /// Component `id`'s outbound allow-list (`allowed_outbound_hosts` plus the
    /// legacy `allowed_http_hosts`), templates filled from `variable`.
    pub fn allowed_hosts(
        &self,
        id: &str,
        variable: &dyn Fn(&str) -> Option<String>,
    ) -> Result<AllowedHosts, AllowedHostError> {
        let Some(component) = self.components.get(id) else {
            return Ok(AllowedHosts::default());
        };
        let mut entries = component.allowed_outbound_hosts.clone();
        entries.extend(convert_legacy_http_hosts(&component.allowed_http_hosts));
        let ids: Vec<String> = self.components.keys().cloned().collect();
        AllowedHosts::build(
            &entries,
            &AppContext {
                component_ids: &ids,
                variable,
            },
        )
    }
}

/// One warning per `sqlite_databases` label that cannot name a database
/// file (opening it fails). A warning, not an error, so an app stored
/// before labels were checked still loads; a new deploy is refused.
fn bad_database_labels(components: &BTreeMap<String, Component>) -> Vec<String> {
    components
        .values()
        .flat_map(|c| {
            c.sqlite_databases
                .iter()
                .filter(|label| !is_database_label(label))
                .map(move |label| {
                    format!(
                        "key `component.{}.sqlite_databases`: {label:?} is not a database label; use 1 to 64 lowercase letters, digits, `_` or `-`",
                        c.id
                    )
                })
        })
        .collect()
}

/// A label a SQLite database file may be named after: 1 to 64 lowercase
/// letters, digits, `_` or `-`.
pub fn is_database_label(label: &str) -> bool {
    (1..=64).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Checks every entry that can be checked at load: plain entries must parse,
/// templates must parse once filled with defaults (those whose variables have
/// no default are checked when the app is deployed with its values).
fn check_allowed_hosts(
    entries: &[String],
    variables: &BTreeMap<String, Variable>,
) -> Result<(), AllowedHostError> {
    let defaults = |name: &str| variables.get(name).and_then(|v| v.default.clone());
    let no_ids: [String; 0] = [];
    let app = AppContext {
        component_ids: &no_ids,
        variable: &defaults,
    };
    for entry in entries {
        let refers_to_unset = template_references(entry)
            .iter()
            .any(|name| defaults(name).is_none());
        if !refers_to_unset {
            AllowedHosts::build(std::slice::from_ref(entry), &app)?;
        }
    }
    Ok(())
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Serde's messages for untagged enums say nothing useful; say what is accepted.
fn explain_serde(message: &str) -> String {
    if message.contains("did not match any variant of untagged enum RawRoute") {
        "key `route`: expected a path such as \"/api/...\" or `{ private = true }`".into()
    } else if message.contains("untagged enum RawSource") {
        "key `source`: expected the path of a .wasm file".into()
    } else if message.contains("untagged enum RawFile") {
        "key `files`: expected a glob such as \"static/**\" or `{ source = \"dir\", destination = \"/dir\" }`".into()
    } else {
        message.to_string()
    }
}

/// Spin's variable names: lowercase letters, digits and `_`, starting with a
/// letter, ending alphanumeric, no `__`.
pub fn validate_variable_name(name: &str) -> Result<(), &'static str> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let starts = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    let ends = name.chars().last().is_some_and(|c| c != '_');
    if ok_chars && starts && ends && !name.contains("__") {
        Ok(())
    } else {
        Err(
            "names use lowercase letters, digits and single underscores, start with a letter and end with a letter or digit",
        )
    }
}

/// Spin's component ids: lowercase kebab-case words of letters and digits.
fn validate_component_id(id: &str) -> Result<(), &'static str> {
    let words_ok = id.split('-').all(|w| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    });
    let starts = id.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    if words_ok && starts {
        Ok(())
    } else {
        Err(
            "ids are lowercase words of letters and digits joined by single dashes, starting with a letter (e.g. `book-api`)",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AppManifest, ManifestError> {
        AppManifest::parse(text, Path::new("apps/x/spin.toml"), Path::new("apps/x"))
    }

    const HEADER: &str = "spin_manifest_version = 2\n[application]\nname = \"x\"\n";

    #[test]
    fn an_unreadable_manifest_says_why_once() {
        let dir = std::env::temp_dir().join(format!("okra-manifest-dir-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("spin.toml")).unwrap();
        let err = AppManifest::load(&dir.join("spin.toml")).unwrap_err();
        // The reason is in the message and not chained again as a source,
        // which `{:#}` would print a second time.
        assert!(
            err.to_string().contains("cannot read the manifest: "),
            "{err}"
        );
        assert!(std::error::Error::source(&err).is_none(), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn what_okra_does_not_serve_is_named() {
        let m = parse(&format!(
            "{HEADER}[[trigger.http]]\nroute = \"/a/...\"\ncomponent = \"a\"\n\
             [[trigger.http]]\nroute = \"/b\"\ncomponent = \"a\"\n\
             [[trigger.http]]\nroute = \"/a/*\"\nstatic_response = {{ body = \"x\" }}\n\
             [[trigger.redis]]\nchannel = \"c\"\ncomponent = \"a\"\n\
             [[trigger.redis]]\nchannel = \"d\"\ncomponent = \"a\"\n\
             [component.a]\nsource = \"a.wasm\"\n"
        ))
        .unwrap();
        assert_eq!(m.warnings.len(), 2, "{:?}", m.warnings);
        assert!(
            m.warnings[0].contains("[[trigger.redis]] is not supported")
                && m.warnings[0].contains("2 redis triggers"),
            "{}",
            m.warnings[0]
        );
        assert!(
            m.warnings[1].contains("\"/a/...\" (component \"a\")")
                && m.warnings[1].contains("(a static response)")
                && m.warnings[1].contains("never be used"),
            "{}",
            m.warnings[1]
        );
        let clean = parse(&format!(
            "{HEADER}[[trigger.http]]\nroute = \"/a\"\ncomponent = \"a\"\n[component.a]\nsource = \"a.wasm\"\n"
        ))
        .unwrap();
        assert!(clean.warnings.is_empty());
        let many = format!(
            "{HEADER}{}[component.a]\nsource = \"a.wasm\"\n",
            "[[trigger.http]]\nroute = \"/a\"\ncomponent = \"a\"\n".repeat(MAX_HTTP_TRIGGERS + 1)
        );
        assert!(error_of(&many).contains("at most 1000 are accepted"));
        // With nothing HTTP at all it still parses (a stored version must
        // keep loading); a deploy refuses it.
        let only_redis = parse(&format!(
            "{HEADER}[[trigger.redis]]\nchannel = \"c\"\ncomponent = \"a\"\n[component.a]\nsource = \"a.wasm\"\n"
        ))
        .unwrap();
        assert!(only_redis.http_triggers.is_empty());
        assert_eq!(only_redis.warnings.len(), 1);
    }

    #[test]
    fn parses_a_typical_app() {
        let m = parse(&format!(
            r#"{HEADER}
[variables]
api_base = {{ default = "http://book-api.spin.internal" }}
token = {{ required = true, secret = true }}

[[trigger.http]]
route = "/..."
component = "frontend"

[[trigger.http]]
route = {{ private = true }}
component = "book-api"

[[trigger.http]]
route = "/static"
static_response = {{ status_code = 201, headers = {{ x-a = "b" }}, body = "hi" }}

[component.frontend]
source = "target/frontend.wasm"
allowed_outbound_hosts = ["http://book-api.spin.internal"]
files = ["static/**", {{ source = "assets", destination = "/assets" }}]
[component.frontend.variables]
url = "{{{{ api_base }}}}/api"
[component.frontend.build]
command = "cargo build --target wasm32-wasip2 --release"
watch = ["src/**/*.rs"]

[component.book-api]
source = "api.wasm"
"#
        ))
        .unwrap();
        assert_eq!(m.name, "x");
        assert_eq!(m.http_triggers.len(), 3);
        assert!(m.http_triggers[1].route.is_none());
        assert_eq!(
            m.http_triggers[2].handler,
            TriggerHandler::Static(StaticResponse {
                status: 201,
                headers: vec![("x-a".into(), "b".into())],
                body: "hi".into()
            })
        );
        let fe = &m.components["frontend"];
        assert_eq!(fe.source, Path::new("apps/x/target/frontend.wasm"));
        assert_eq!(fe.files[1].guest_path, "/assets");
        assert!(m.variables["token"].secret);
    }

    fn error_of(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn unknown_field_names_file_line_key_and_alternatives() {
        let e = error_of(&format!(
            "{HEADER}\n[component.a]\nsource = \"a.wasm\"\nallowed_outbund_hosts = []\n"
        ));
        assert!(e.starts_with("apps/x/spin.toml:7:"), "{e}");
        assert!(e.contains("allowed_outbund_hosts"), "{e}");
        assert!(e.contains("allowed_outbound_hosts"), "{e}");
    }

    #[test]
    fn private_false_is_rejected_naming_the_component() {
        let e = error_of(&format!(
            "{HEADER}[[trigger.http]]\nroute = {{ private = false }}\ncomponent = \"a\"\n[component.a]\nsource = \"a.wasm\"\n"
        ));
        assert!(e.contains(":5:"), "{e}");
        assert!(e.contains("`a`") && e.contains("private = true"), "{e}");
    }

    #[test]
    fn trigger_naming_missing_component() {
        let e = error_of(&format!(
            "{HEADER}[[trigger.http]]\nroute = \"/\"\ncomponent = \"nope\"\n"
        ));
        assert!(
            e.contains(":6:") && e.contains("no component `nope`"),
            "{e}"
        );
    }

    #[test]
    fn trigger_needs_exactly_one_handler() {
        let e = error_of(&format!("{HEADER}[[trigger.http]]\nroute = \"/\"\n"));
        assert!(e.contains("exactly one of"), "{e}");
    }

    #[test]
    fn wrong_manifest_version() {
        let e = error_of("spin_manifest_version = \"1\"\n[application]\nname = \"x\"\n");
        assert!(e.contains(":1:") && e.contains("expected 2"), "{e}");
    }

    #[test]
    fn variable_rules() {
        let e = error_of(&format!(
            "{HEADER}[variables]\nBad = {{ default = \"1\" }}\n"
        ));
        assert!(e.contains(":5:") && e.contains("variable `Bad`"), "{e}");
        let e = error_of(&format!("{HEADER}[variables]\nx = {{ secret = true }}\n"));
        assert!(e.contains("needs either"), "{e}");
        let e = error_of(&format!(
            "{HEADER}[component.a]\nsource = \"a.wasm\"\n[component.a.variables]\nk = \"{{{{ missing }}}}\"\n"
        ));
        assert!(e.contains("`missing`"), "{e}");
    }

    #[test]
    fn static_responses_cannot_frame_or_be_interim() {
        let with = |response: &str| {
            error_of(&format!(
                "{HEADER}[[trigger.http]]\nroute = \"/\"\nstatic_response = {response}\n"
            ))
        };
        for (response, want) in [
            ("{ status_code = 101 }", "not a final status"),
            ("{ status_code = 100 }", "not a final status"),
            ("{ status_code = 99 }", "not a final status"),
            ("{ status_code = 600 }", "not a final status"),
            (
                "{ headers = { transfer-encoding = \"chunked\" } }",
                "frames the message",
            ),
            (
                "{ headers = { Content-Length = \"5\" } }",
                "frames the message",
            ),
            (
                "{ headers = { connection = \"close\" } }",
                "frames the message",
            ),
            ("{ headers = { upgrade = \"h2c\" } }", "frames the message"),
            (
                "{ headers = { \"x a\" = \"b\" } }",
                "not a valid HTTP header name",
            ),
            (
                "{ headers = { x-a = \"b\\r\\nx-forged: 1\" } }",
                "control character",
            ),
        ] {
            let e = with(response);
            assert!(
                e.contains("static_response") && e.contains(want),
                "{response}: {e}"
            );
        }
        let ok = format!(
            "{HEADER}[[trigger.http]]\nroute = \"/\"\nstatic_response = {{ status_code = 204, headers = {{ x-a = \"b\\tc\" }} }}\n"
        );
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn bad_route_type_says_what_is_accepted() {
        let e = error_of(&format!(
            "{HEADER}[[trigger.http]]\nroute = 5\ncomponent = \"a\"\n"
        ));
        assert!(e.contains("{ private = true }"), "{e}");
    }

    #[test]
    fn non_root_base_rejected() {
        let e = error_of(&format!(
            "{HEADER}[application.trigger.http]\nbase = \"/api\"\n"
        ));
        assert!(e.contains("base") && e.contains(":5:"), "{e}");
    }

    #[test]
    fn toml_syntax_error_has_position() {
        let e = error_of("spin_manifest_version = 2\n[application\n");
        assert!(e.starts_with("apps/x/spin.toml:2:"), "{e}");
    }

    #[test]
    fn allowed_hosts_are_checked_at_load_and_quoted() {
        let e = error_of(&format!(
            "{HEADER}[component.a]\nsource = \"a.wasm\"\nallowed_outbound_hosts = [\"http://example.com/path\"]\n"
        ));
        assert!(e.contains("component.a.allowed_outbound_hosts"), "{e}");
        assert!(e.contains(r#""http://example.com/path""#), "{e}");
        assert!(e.contains("apps/x/spin.toml:4"), "{e}");
        // A template whose variable has a bad default fails; one with no default waits.
        let e = error_of(&format!(
            "{HEADER}[variables]\nh = {{ default = \"a b\" }}\n[component.a]\nsource = \"a.wasm\"\nallowed_outbound_hosts = [\"http://{{{{ h }}}}\"]\n"
        ));
        assert!(e.contains(r#""http://{{ h }}""#), "{e}");
        let m = parse(&format!(
            "{HEADER}[variables]\nh = {{ required = true }}\n[component.a]\nsource = \"a.wasm\"\nallowed_outbound_hosts = [\"http://{{{{ h }}}}\", \"http://*.spin.internal\"]\nallowed_http_hosts = [\"legacy.example\"]\n[component.b]\nsource = \"b.wasm\"\n"
        ))
        .unwrap();
        let value = |_: &str| Some("api.example".to_string());
        let hosts = m.allowed_hosts("a", &value).unwrap();
        let allows = |url: &str| hosts.allows(&crate::OutboundUrl::parse(url, "https").unwrap());
        assert!(allows("http://api.example"));
        assert!(allows("http://b.spin.internal"));
        assert!(allows("https://legacy.example"));
        assert!(!allows("https://api.example"));
        assert!(m.allowed_hosts("b", &value).unwrap().entries().is_empty());
    }

    #[test]
    fn database_labels_must_be_plain_names() {
        let with = |label: &str| {
            parse(&format!(
                "{HEADER}[component.a]\nsource = \"a.wasm\"\nsqlite_databases = [{label:?}]\n"
            ))
        };
        let m = with("default").unwrap();
        assert_eq!(m.components["a"].sqlite_databases, ["default"]);
        assert!(with("my_db-2").is_ok());
        for label in ["../escape", "a/b", "UPPER", "", "a.db", &"x".repeat(65)] {
            let warnings = with(label).unwrap().warnings;
            assert!(
                warnings
                    .iter()
                    .any(|w| w.contains("component.a.sqlite_databases")
                        && w.contains("is not a database label")),
                "{label:?}: {warnings:?}"
            );
        }
    }

    #[test]
    fn bundle_paths_must_stay_inside_the_app() {
        let bundle = |component: &str| {
            AppManifest::parse_in(
                &format!("{HEADER}[component.a]\n{component}"),
                Path::new("spin.toml"),
                Path::new("bundle"),
                PathScope::InsideApp,
            )
            .map_err(|e| e.to_string())
        };
        let refused = [
            ("source = \"../x.wasm\"\n", "`component.a.source`", "`..`"),
            (
                "source = \"/etc/x.wasm\"\n",
                "`component.a.source`",
                "absolute",
            ),
            (
                "source = \"a/../../x.wasm\"\n",
                "`component.a.source`",
                "`..`",
            ),
            (
                "source = \"a.wasm\"\nfiles = [{ source = \"../../../../../../../../\", destination = \"/host\" }]\n",
                "`component.a.files`",
                "`..`",
            ),
            (
                "source = \"a.wasm\"\nfiles = [{ source = \"/\", destination = \"/host\" }]\n",
                "`component.a.files`",
                "absolute",
            ),
            (
                "source = \"a.wasm\"\nfiles = [\"../**\"]\n",
                "`component.a.files`",
                "`..`",
            ),
            (
                "source = \"a.wasm\"\nfiles = [\"a\\\\..\\\\..\"]\n",
                "`component.a.files`",
                "backslash",
            ),
        ];
        for (component, key, why) in refused {
            let e = bundle(component).unwrap_err();
            assert!(e.contains(key) && e.contains(why), "{component}: {e}");
            assert!(e.starts_with("spin.toml:"), "{e}");
        }
        let m = bundle(
            "source = \"./a.wasm\"\nfiles = [{ source = \"static\", destination = \"/\" }]\n",
        )
        .unwrap();
        assert_eq!(m.components["a"].source, Path::new("bundle/./a.wasm"));
        // An operator's own manifest may point anywhere, as in Spin.
        let m = parse(&format!(
            "{HEADER}[component.a]\nsource = \"../guests/a.wasm\"\n"
        ))
        .unwrap();
        assert_eq!(
            m.components["a"].source,
            Path::new("apps/x/../guests/a.wasm")
        );
    }

    #[test]
    fn missing_file() {
        let e = AppManifest::load(Path::new("/nonexistent/spin.toml")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/spin.toml"));
    }
}
