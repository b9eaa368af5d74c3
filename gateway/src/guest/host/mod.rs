//! The host side of the interfaces a Spin guest imports besides WASI and
//! wasi:http: variables, key-value, SQLite, outbound Redis, MQTT and
//! PostgreSQL 4.0 (real), and stubs for
//! the platform interfaces Okra does not provide yet. A new host interface
//! gets its own module here and one line in `define` and `serves`.

pub(crate) mod key_value;
pub(crate) mod mqtt;
pub(crate) mod postgres;
pub(crate) mod redis;
pub(crate) mod sqlite;
pub(crate) mod stubs;
pub(crate) mod tcp_sockets;
pub(crate) mod variables;

use crate::guest::state::GuestState;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

/// How one real interface (or family) links.
struct Served {
    /// Whether it serves an import name (with version).
    provides: fn(&str) -> bool,
    /// Adds it to a linker.
    add_to_linker: fn(&mut Linker<GuestState>) -> wasmtime::Result<()>,
}

/// Every bindgen-made interface Okra serves for real.
const SERVED: [Served; 6] = [
    Served {
        provides: key_value::provides,
        add_to_linker: key_value::add_to_linker,
    },
    Served {
        provides: key_value::provides_v3,
        add_to_linker: key_value::add_v3_to_linker,
    },
    Served {
        provides: sqlite::provides,
        add_to_linker: sqlite::add_to_linker,
    },
    Served {
        provides: redis::provides,
        add_to_linker: redis::add_to_linker,
    },
    Served {
        provides: mqtt::provides,
        add_to_linker: mqtt::add_to_linker,
    },
    Served {
        provides: postgres::provides,
        add_to_linker: postgres::add_to_linker,
    },
];

/// Links every host interface `component` imports: the real ones, then
/// stubs for the rest of the Spin platform.
pub(crate) fn define(
    linker: &mut Linker<GuestState>,
    engine: &Engine,
    component: &Component,
) -> wasmtime::Result<()> {
    variables::define(linker, engine, component)?;
    let imports: Vec<String> = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    for served in &SERVED {
        if imports.iter().any(|name| (served.provides)(name)) {
            (served.add_to_linker)(linker)?;
        }
    }
    stubs::define_unsupported(linker, engine, component, serves)
}

/// Whether `interface` (an import name, with version) has a real
/// implementation here, so no stub is made for it.
pub(crate) fn serves(interface: &str) -> bool {
    variables::provides(interface) || SERVED.iter().any(|served| (served.provides)(interface))
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::guest::engine::Runtime;
    use crate::guest::engine_config::RuntimeConfig;
    use wit_parser::{ManglingAndAbi, Resolve, WorldId};

    /// A component (over a dummy core module) that imports and exports
    /// exactly what `world` of `resolve` does.
    pub(crate) fn component_of_world(resolve: &Resolve, world: WorldId) -> Vec<u8> {
        let mut module = wit_component::dummy_module(resolve, world, ManglingAndAbi::Standard32);
        wit_component::embed_component_metadata(
            &mut module,
            resolve,
            world,
            wit_component::StringEncoding::UTF8,
        )
        .unwrap();
        wit_component::ComponentEncoder::default()
            .module(&module)
            .unwrap()
            .validate(true)
            .encode()
            .unwrap()
    }

    /// Components importing Spin's whole 2.0 and 3.0 worlds (as spin-sdk 5
    /// publishes them, and as componentize-py imports them) link against
    /// what Okra serves, real interfaces and stubs together.
    #[test]
    fn whole_spin_worlds_link() {
        let mut resolve = Resolve::default();
        let (package, _) = resolve
            .push_dir(test_programs::SPIN_SDK5_WIT)
            .expect("spin-sdk 5's WIT parses");
        let runtime = Runtime::new(RuntimeConfig {
            max_instances: 4,
            ..RuntimeConfig::default()
        })
        .unwrap();
        for world in [
            "fermyon:spin/http-trigger@2.0.0",
            "fermyon:spin/http-trigger@3.0.0",
        ] {
            let id = resolve
                .select_world(&[package], Some(world))
                .unwrap_or_else(|e| panic!("{world}: {e}"));
            let component = runtime
                .compile(&component_of_world(&resolve, id))
                .unwrap_or_else(|e| panic!("{world}: {e:?}"));
            let linker = runtime.linker_for(&component).unwrap();
            linker
                .instantiate_pre(&component)
                .unwrap_or_else(|e| panic!("{world} does not link: {e:?}"));
        }
    }
}
