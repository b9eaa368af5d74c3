//! Spin's `{{ name }}` templates, as used in component variables and in
//! `allowed_outbound_hosts`: finding the names they refer to and filling them in.

/// The variable names a `{{ name }}` template refers to.
pub fn template_references(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        out.push(after[..end].trim().to_string());
        rest = &after[end + 2..];
    }
    out
}

/// True when `text` holds at least one `{{ … }}`.
pub fn is_template(text: &str) -> bool {
    text.find("{{")
        .is_some_and(|start| text[start + 2..].contains("}}"))
}

/// Fills every `{{ name }}` in `template` with `lookup(name)`.
/// Fails with the first name `lookup` has no value for, or on a `{{` that is never closed.
pub fn render(
    template: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(TemplateError::Unclosed);
        };
        let name = after[..end].trim();
        out.push_str(&lookup(name).ok_or_else(|| TemplateError::NoValue(name.to_string()))?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Why a template could not be filled in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template names a variable the lookup has no value for.
    #[error("variable `{0}` has no value")]
    NoValue(String),
    /// A `{{` has no `}}` after it.
    #[error("a `{{{{` is never closed by `}}}}`")]
    Unclosed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_found() {
        assert_eq!(
            template_references("https://{{ host }}/{{p}}"),
            vec!["host", "p"]
        );
        assert!(template_references("plain").is_empty());
    }

    #[test]
    fn render_fills_every_reference() {
        let lookup = |n: &str| match n {
            "host" => Some("example.com".to_string()),
            "port" => Some("8080".to_string()),
            _ => None,
        };
        assert_eq!(
            render("http://{{ host }}:{{port}}", lookup).unwrap(),
            "http://example.com:8080"
        );
        assert_eq!(
            render("http://{{ nope }}", lookup).unwrap_err(),
            TemplateError::NoValue("nope".into())
        );
        assert_eq!(
            render("http://{{ host", lookup).unwrap_err(),
            TemplateError::Unclosed
        );
        assert!(is_template("a{{b}}c") && !is_template("a{{b") && !is_template("abc"));
    }
}
