//! "Unsupported" implementations of Spin platform interfaces Okra does not
//! provide yet (key-value, llm, redis, sqlite, mysql, postgres, mqtt,
//! wasi:keyvalue, ...). Interfaces the caller serves for real are skipped.
//!
//! A spin-sdk component may import any of them; instantiation must not fail
//! because of that. Each imported function is defined from its own type:
//! a function returning `result<_, error>` returns that interface's own error
//! (preferring a case that says "unsupported", then `other(string)`, ...); one
//! returning `option<_>` returns `none`. Anything else traps with a message
//! naming the function.

use crate::guest::state::GuestState;
use wasmtime::Engine;
use wasmtime::bail;
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Component, Linker, LinkerInstance, ResourceType, Type, Val};

/// Interface namespaces that belong to the Spin platform.
const SPIN_PLATFORM_PREFIXES: &[&str] = &[
    "fermyon:spin/",
    "spin:",
    "wasi:keyvalue/",
    "wasi:config/",
    "wasi:otel/",
];

/// Error cases to return, most fitting first.
const PREFERRED_ERROR_CASES: &[&str] = &[
    "unsupported",
    "not-supported",
    "model-not-supported",
    "no-such-store",
    "no-such-database",
    "undefined",
    "other",
    "connection-failed",
    "runtime-error",
    "io",
    "upstream",
];

/// Defines stubs in `linker` for every Spin platform interface `component`
/// imports, except those `served` says have a real implementation.
pub(crate) fn define_unsupported(
    linker: &mut Linker<GuestState>,
    engine: &Engine,
    component: &Component,
    served: fn(&str) -> bool,
) -> wasmtime::Result<()> {
    let ty = component.component_type();
    // One host type per resource the component imports: an interface that
    // uses another's resource (wasi:keyvalue/atomics' `bucket` is
    // wasi:keyvalue/store's) gets the same one, or the types would not match.
    let mut host_types: Vec<(ResourceType, ResourceType)> = Vec::new();
    for (name, item) in ty.imports(engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        if !SPIN_PLATFORM_PREFIXES.iter().any(|p| name.starts_with(p)) || served(name) {
            continue;
        }
        let mut root = linker.root();
        let mut li = root.instance(name)?;
        for (export, item) in instance.exports(engine) {
            match item.ty {
                ComponentItem::ComponentFunc(func) => {
                    define_function(&mut li, name, export, &func)?;
                }
                ComponentItem::Resource(imported) => {
                    let host = match host_types.iter().find(|(seen, _)| *seen == imported) {
                        Some((_, host)) => *host,
                        None => {
                            let next = u32::try_from(host_types.len() + 1)?;
                            let host = ResourceType::host_dynamic(next);
                            host_types.push((imported, host));
                            host
                        }
                    };
                    li.resource(export, host, |_, _| Ok(()))?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn define_function(
    li: &mut LinkerInstance<'_, GuestState>,
    interface: &str,
    function: &str,
    func: &ComponentFunc,
) -> wasmtime::Result<()> {
    let message = format!("{interface}#{function} is not supported by Okra yet");
    if func.async_() {
        li.func_new_concurrent(function, move |_, ty, _, results| {
            let filled = fill_results(&ty, results, &message);
            Box::pin(async move { filled })
        })
    } else {
        li.func_new(function, move |_, ty, _, results| {
            fill_results(&ty, results, &message)
        })
    }
}

fn fill_results(ty: &ComponentFunc, results: &mut [Val], message: &str) -> wasmtime::Result<()> {
    let types: Vec<Type> = ty.results().collect();
    match (types.as_slice(), results) {
        ([only], [slot]) => match unsupported_value(only, message) {
            Some(v) => {
                *slot = v;
                Ok(())
            }
            None => bail!("{message}"),
        },
        _ => bail!("{message}"),
    }
}

/// The "unsupported" value of a function's result type, if it has one.
fn unsupported_value(ty: &Type, message: &str) -> Option<Val> {
    match ty {
        Type::Result(r) => {
            let err = match r.err() {
                Some(e) => Some(Box::new(error_value(&e, message)?)),
                None => None,
            };
            Some(Val::Result(Err(err)))
        }
        Type::Option(_) => Some(Val::Option(None)),
        _ => None,
    }
}

/// A value of an interface's error type that says "unsupported".
fn error_value(ty: &Type, message: &str) -> Option<Val> {
    match ty {
        Type::String => Some(Val::String(message.to_string())),
        Type::Enum(e) => {
            let names: Vec<&str> = e.names().collect();
            let pick = PREFERRED_ERROR_CASES
                .iter()
                .find(|p| names.contains(p))
                .copied()
                .or(names.first().copied())?;
            Some(Val::Enum(pick.to_string()))
        }
        Type::Variant(v) => {
            let cases: Vec<(String, Option<Type>)> = v
                .cases()
                .map(|c| (c.name.to_string(), c.ty))
                .filter(|(_, t)| matches!(t, None | Some(Type::String)))
                .collect();
            let (name, payload) = PREFERRED_ERROR_CASES
                .iter()
                .find_map(|p| cases.iter().find(|(n, _)| n == p))
                .or(cases.first())?;
            let payload = payload
                .as_ref()
                .map(|_| Box::new(Val::String(message.to_string())));
            Some(Val::Variant(name.clone(), payload))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::host::tests::component_of_world;
    use wit_parser::Resolve;

    /// A component importing every interface of `world` in `wit`.
    fn component_importing(wit: &str, world: &str) -> Vec<u8> {
        let mut resolve = Resolve::default();
        let package = resolve.push_str("test.wit", wit).unwrap();
        let world = resolve.select_world(&[package], Some(world)).unwrap();
        component_of_world(&resolve, world)
    }

    /// wasi:keyvalue/atomics uses wasi:keyvalue/store's `bucket`: both
    /// stubs must be given one host type for it (componentize-py imports
    /// both, and failed to link with "mismatched resource types").
    #[test]
    fn a_resource_another_interface_uses_is_one_type() {
        let wit = r#"
            package wasi:keyvalue@0.2.0-draft2;
            interface store {
                variant error { no-such-store, access-denied, other(string) }
                resource bucket {
                    get: func(key: string) -> result<option<list<u8>>, error>;
                }
                open: func(identifier: string) -> result<bucket, error>;
            }
            interface atomics {
                use store.{bucket, error};
                increment: func(bucket: borrow<bucket>, key: string, delta: u64) -> result<u64, error>;
            }
            world both {
                import store;
                import atomics;
            }
        "#;
        let engine = Engine::default();
        let component = Component::new(&engine, component_importing(wit, "both")).unwrap();
        let mut linker: Linker<GuestState> = Linker::new(&engine);
        define_unsupported(&mut linker, &engine, &component, |_| false).unwrap();
        linker.instantiate_pre(&component).unwrap();
    }
}
