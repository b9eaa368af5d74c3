//! "Unsupported" implementations of Spin platform interfaces Okra does not
//! provide yet (key-value, llm, redis, sqlite, mysql, postgres, mqtt,
//! wasi:keyvalue, ...). Variables are real: see `super::variables`.
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

/// Defines stubs in `linker` for every Spin platform interface `component` imports.
pub(crate) fn define_unsupported(
    linker: &mut Linker<GuestState>,
    engine: &Engine,
    component: &Component,
) -> wasmtime::Result<()> {
    let ty = component.component_type();
    let mut resource_id = 0u32;
    for (name, item) in ty.imports(engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        if !SPIN_PLATFORM_PREFIXES.iter().any(|p| name.starts_with(p))
            || crate::guest::host::variables::provides(name)
        {
            continue;
        }
        let mut root = linker.root();
        let mut li = root.instance(name)?;
        for (export, item) in instance.exports(engine) {
            match item.ty {
                ComponentItem::ComponentFunc(func) => {
                    define_function(&mut li, name, export, &func)?;
                }
                ComponentItem::Resource(_) => {
                    resource_id += 1;
                    li.resource(export, ResourceType::host_dynamic(resource_id), |_, _| {
                        Ok(())
                    })?;
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
