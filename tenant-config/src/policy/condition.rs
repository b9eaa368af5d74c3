//! `policy.http.fetch.condition`: a CEL expression, compiled once when the
//! policy loads and evaluated for every outbound request. Anything but a
//! clean `true` (false, an error, a missing claim) denies.

/// What a condition can see of one outbound request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The HTTP method, e.g. `GET` (`request.method`).
    pub method: &'a str,
    /// The whole URL, `scheme://host:port/path?query` (`request.url`).
    pub url: &'a str,
    /// `http` or `https` (`request.scheme`).
    pub scheme: &'a str,
    /// The host, a domain or an address (`request.host`).
    pub host: &'a str,
    /// The port, the scheme's default when the URL names none (`request.port`).
    pub port: u16,
    /// The URL's path, without the query (`request.path`).
    pub path: &'a str,
    /// Lowercase names; repeated headers joined with `, `.
    pub headers: &'a [(String, String)],
    /// Verified claims of the inbound request's bearer token; `{}` when none.
    pub claims: &'a serde_json::Value,
    /// The name of the tenant whose guest makes the request (`tenant`).
    pub tenant: &'a str,
    /// The name of the app whose guest makes the request (`app`).
    pub app: &'a str,
    /// The id of the component that makes the request (`component`).
    pub component: &'a str,
}

/// A compiled CEL condition.
pub struct Condition {
    /// The expression as written in the policy.
    pub source: String,
    program: cel::Program,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Condition({:?})", self.source)
    }
}

impl Condition {
    /// Compiles `source`; the error gives each problem's line and column.
    pub fn compile(source: &str) -> Result<Condition, String> {
        let program = cel::Program::compile(source).map_err(|errors| {
            errors
                .errors
                .iter()
                .map(|e| format!("line {}, column {}: {}", e.pos.0, e.pos.1 + 1, e.msg))
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        Ok(Condition {
            source: source.to_string(),
            program,
        })
    }

    /// True only when the expression evaluates to `true`.
    pub fn evaluate(&self, facts: &RequestFacts<'_>) -> Result<bool, String> {
        let headers: serde_json::Map<String, serde_json::Value> = facts
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let request = serde_json::json!({
            "method": facts.method,
            "url": facts.url,
            "scheme": facts.scheme,
            "host": facts.host,
            "port": facts.port,
            "path": facts.path,
            "headers": headers,
            "auth": { "claims": facts.claims },
        });
        let mut context = cel::Context::default();
        let request = cel::to_value(&request).map_err(|e| e.to_string())?;
        context.add_variable_from_value("request", request);
        context.add_variable_from_value("tenant", facts.tenant.to_string());
        context.add_variable_from_value("app", facts.app.to_string());
        context.add_variable_from_value("component", facts.component.to_string());
        match self.program.execute(&context) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("the condition gave {other:?}, not true or false")),
            Err(e) => Err(e.to_string()),
        }
    }
}
