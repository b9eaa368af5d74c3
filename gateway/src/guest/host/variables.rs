//! The variable interfaces a guest reads its component variables through:
//! `fermyon:spin/variables@2.0.0` (spin-sdk 5), `spin:variables/variables@3.0.0`
//! (spin-sdk 6/7, async) and `wasi:config/store@0.2.0-draft-2024-09-27`.
//!
//! Defined from the component's own import types, like the "unsupported"
//! stubs, so any minor version the Linker would accept works. Answers follow
//! Spin's host (`factor-variables/src/host.rs`): a name breaking Spin's rule
//! is `invalid-name`, an undeclared key is `undefined`; `wasi:config` gives
//! `none` for both and `get-all` lists every key of the component.

use crate::guest::state::GuestState;
use std::collections::BTreeMap;
use tenant_config::VariableValue;
use tenant_config::variables::validate_variable_name;
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Component, Linker, LinkerInstance, Val};
use wasmtime::{Engine, bail};

/// The interfaces this module implements (import names without version).
const SPIN_VARIABLES: &[&str] = &["fermyon:spin/variables", "spin:variables/variables"];
const WASI_CONFIG: &str = "wasi:config/store";

/// True when `interface` (an import name, with version) is served here.
pub(crate) fn provides(interface: &str) -> bool {
    let base = interface.split('@').next().unwrap_or(interface);
    SPIN_VARIABLES.contains(&base) || base == WASI_CONFIG
}

/// Defines every variables interface `component` imports.
pub(crate) fn define(
    linker: &mut Linker<GuestState>,
    engine: &Engine,
    component: &Component,
) -> wasmtime::Result<()> {
    for (name, item) in component.component_type().imports(engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        if !provides(name) {
            continue;
        }
        let wasi_config = name.starts_with(WASI_CONFIG);
        let mut root = linker.root();
        let mut li = root.instance(name)?;
        for (export, item) in instance.exports(engine) {
            let ComponentItem::ComponentFunc(func) = item.ty else {
                continue;
            };
            let answer: Answer = match (wasi_config, export) {
                (false, "get") => spin_get,
                (true, "get") => config_get,
                (true, "get-all") => config_get_all,
                _ => bail!("{name}#{export} is not a function Okra knows"),
            };
            define_function(&mut li, export, &func, answer)?;
        }
    }
    Ok(())
}

/// Computes a function's single result from its parameters and the variables.
type Answer = fn(&[Val], &BTreeMap<String, VariableValue>) -> wasmtime::Result<Val>;

fn define_function(
    li: &mut LinkerInstance<'_, GuestState>,
    export: &str,
    func: &ComponentFunc,
    answer: Answer,
) -> wasmtime::Result<()> {
    if func.async_() {
        li.func_new_concurrent(export, move |accessor, _, params, results| {
            let variables = accessor.with(|mut access| access.data_mut().variables.clone());
            Box::pin(async move {
                results[0] = answer(params, &variables)?;
                Ok(())
            })
        })
    } else {
        li.func_new(export, move |store, _, params, results| {
            results[0] = answer(params, &store.data().variables)?;
            Ok(())
        })
    }
}

fn name_param(params: &[Val]) -> wasmtime::Result<&str> {
    match params {
        [Val::String(name)] => Ok(name),
        _ => bail!("a variables function was called without its name"),
    }
}

/// `get(name) -> result<string, error>` of both Spin interfaces.
fn spin_get(params: &[Val], variables: &BTreeMap<String, VariableValue>) -> wasmtime::Result<Val> {
    let name = name_param(params)?;
    let error = |case: &str, message: String| {
        Val::Result(Err(Some(Box::new(Val::Variant(
            case.to_string(),
            Some(Box::new(Val::String(message))),
        )))))
    };
    if let Err(why) = validate_variable_name(name) {
        return Ok(error("invalid-name", format!("{name:?}: {why}")));
    }
    Ok(match variables.get(name) {
        Some(value) => Val::Result(Ok(Some(Box::new(Val::String(value.expose().into()))))),
        None => error(
            "undefined",
            format!("no variable for {name:?}; declare it under [component.<id>.variables]"),
        ),
    })
}

/// `wasi:config/store#get(key) -> result<option<string>, error>`.
fn config_get(
    params: &[Val],
    variables: &BTreeMap<String, VariableValue>,
) -> wasmtime::Result<Val> {
    let value = variables
        .get(name_param(params)?)
        .map(|v| Box::new(Val::String(v.expose().into())));
    Ok(Val::Result(Ok(Some(Box::new(Val::Option(value))))))
}

/// `wasi:config/store#get-all() -> result<list<tuple<string, string>>, error>`.
fn config_get_all(_: &[Val], variables: &BTreeMap<String, VariableValue>) -> wasmtime::Result<Val> {
    let pairs = variables
        .iter()
        .map(|(k, v)| Val::Tuple(vec![Val::String(k.clone()), Val::String(v.expose().into())]))
        .collect();
    Ok(Val::Result(Ok(Some(Box::new(Val::List(pairs))))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, VariableValue> {
        BTreeMap::from([(
            "api_url".to_string(),
            VariableValue::new("http://x".into(), false),
        )])
    }

    fn name(n: &str) -> Vec<Val> {
        vec![Val::String(n.into())]
    }

    fn error_case(v: Val) -> String {
        match v {
            Val::Result(Err(Some(e))) => match *e {
                Val::Variant(case, _) => case,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn spin_get_answers_as_spin_does() {
        assert_eq!(
            spin_get(&name("api_url"), &vars()).unwrap(),
            Val::Result(Ok(Some(Box::new(Val::String("http://x".into())))))
        );
        assert_eq!(
            error_case(spin_get(&name("nope"), &vars()).unwrap()),
            "undefined"
        );
        assert_eq!(
            error_case(spin_get(&name("API_URL"), &vars()).unwrap()),
            "invalid-name"
        );
    }

    #[test]
    fn wasi_config_answers_none_for_unknown_keys() {
        let none = Val::Result(Ok(Some(Box::new(Val::Option(None)))));
        assert_eq!(config_get(&name("nope"), &vars()).unwrap(), none);
        assert_eq!(config_get(&name("API_URL"), &vars()).unwrap(), none);
        let all = config_get_all(&[], &vars()).unwrap();
        assert_eq!(
            all,
            Val::Result(Ok(Some(Box::new(Val::List(vec![Val::Tuple(vec![
                Val::String("api_url".into()),
                Val::String("http://x".into())
            ])])))))
        );
    }
}
