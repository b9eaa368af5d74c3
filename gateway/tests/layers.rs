//! The layering of `gateway/src` (see ARCHITECTURE.md), checked on the
//! source: a layer imports only the layers below it, `metrics` and `logging`
//! import no layer, and no module imports a module that imports it back,
//! directly or around a longer circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The data plane's layers, top first: each may import those after it.
const LAYERS: &[&str] = &["edge", "app", "guest", "outbound", "context"];
/// Modules every layer may use, which themselves use no layer.
const LEAVES: &[&str] = &["metrics", "logging", "readiness", "in_flight"];

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A file's module path: `guest/host/mod.rs` is `guest::host`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The code of a file without its `#[cfg(test)]` part and its comments.
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap();
    text.lines()
        .map(|line| line.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module paths `code` names: `crate::a::b::c` and `super::x::y`, the
/// latter made absolute from `module`. `is_file` tells a path that is a
/// module (a file) from one that names an item; the longest module prefix
/// is kept.
fn references(
    code: &str,
    module: &[String],
    is_module: &dyn Fn(&[String]) -> bool,
) -> BTreeSet<Vec<String>> {
    let mut found = BTreeSet::new();
    for (start, base) in [("crate::", Vec::new()), ("super::", parent_of(module))] {
        let mut rest = code;
        while let Some(at) = rest.find(start) {
            let preceded = rest[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            rest = &rest[at + start.len()..];
            if preceded {
                continue;
            }
            let path: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let mut full = base.clone();
            full.extend(path.split("::").filter(|s| !s.is_empty()).map(String::from));
            while !full.is_empty() && !is_module(&full) {
                full.pop();
            }
            if !full.is_empty() && full != module {
                found.insert(full);
            }
        }
    }
    found.extend(child_references(code, module, is_module));
    found
}

/// The child modules `code` names by a relative path (`use child::X`,
/// `child::f()`): a parent using its child is an edge too, so a child that
/// reaches back up with `super::` closes a circle.
fn child_references(
    code: &str,
    module: &[String],
    is_module: &dyn Fn(&[String]) -> bool,
) -> BTreeSet<Vec<String>> {
    let mut found = BTreeSet::new();
    let bytes = code.as_bytes();
    let mut at = 0;
    while let Some(offset) = code[at..].find("::") {
        let end = at + offset;
        at = end + 2;
        let start = code[..end]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let first = &code[start..end];
        let after_path = start > 0 && bytes[start - 1] == b':';
        if first.is_empty() || after_path || ["crate", "super", "self"].contains(&first) {
            continue;
        }
        let mut child = module.to_vec();
        child.push(first.to_string());
        if is_module(&child) {
            found.insert(child);
        }
    }
    found
}

fn parent_of(module: &[String]) -> Vec<String> {
    module[..module.len().saturating_sub(1)].to_vec()
}

/// Every module of `gateway/src` and the modules it imports.
fn import_graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> = files
        .iter()
        .filter(|f| !f.starts_with(src.join("bin")) && !f.ends_with("main.rs"))
        .map(|f| (module_of(&src, f), f.clone()))
        .collect();
    let is_module = |path: &[String]| modules.contains_key(path);
    modules
        .iter()
        .map(|(module, file)| {
            let code = code_of(&std::fs::read_to_string(file).unwrap());
            (module.clone(), references(&code, module, &is_module))
        })
        .collect()
}

fn name(module: &[String]) -> String {
    module.join("::")
}

#[test]
fn layers_import_only_the_layers_below_them() {
    let rank = |module: &[String]| {
        module
            .first()
            .and_then(|top| LAYERS.iter().position(|l| l == top))
    };
    let mut wrong = Vec::new();
    for (module, imports) in import_graph() {
        let leaf = module.first().is_some_and(|m| LEAVES.contains(&m.as_str()));
        for import in &imports {
            let upward = match (rank(&module), rank(import)) {
                (Some(from), Some(to)) => to < from,
                (None, Some(_)) => leaf,
                (Some(_), None) => !import.first().is_some_and(|m| LEAVES.contains(&m.as_str())),
                (None, None) => false,
            };
            if upward {
                wrong.push(format!("{} imports {}", name(&module), name(import)));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layering: {wrong:#?}");
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = import_graph();
    // Depth-first search for a back edge, reporting the circle it closes.
    fn visit(
        module: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        path: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
        circles: &mut Vec<String>,
    ) {
        if let Some(at) = path.iter().position(|m| m == module) {
            let circle: Vec<String> = path[at..].iter().map(|m| name(m)).collect();
            circles.push(format!("{} -> {}", circle.join(" -> "), name(module)));
            return;
        }
        if !done.insert(module.clone()) {
            return;
        }
        path.push(module.clone());
        for next in graph.get(module).into_iter().flatten() {
            visit(next, graph, path, done, circles);
        }
        path.pop();
    }
    let mut circles = Vec::new();
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        visit(module, &graph, &mut Vec::new(), &mut done, &mut circles);
    }
    assert!(circles.is_empty(), "import circles: {circles:#?}");
}

#[test]
fn the_checks_see_imports_and_would_see_a_circle() {
    // Guards the checks themselves: the graph has the edges it must have.
    let graph = import_graph();
    let module = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
    assert!(
        graph[&module("edge")].contains(&module("app")),
        "{graph:#?}"
    );
    assert!(graph[&module("guest::component")].contains(&module("guest::direct_p2")));
    assert!(graph[&module("outbound::hooks")].contains(&module("context::inbound")));
    // A parent naming its child by a relative path is an edge as well.
    assert!(graph[&module("edge")].contains(&module("edge::component_run")));
}
