//! How the operator's configuration is layered: defaults, then the file,
//! then flags and their `OKRA_*` variables. Every section's flags struct
//! names its fields after the section's keys and serializes to the keys it
//! was given (an absent flag is `None` and leaves none), so a flag overlays
//! the file by key with no mapping written by hand. Defaults are written
//! once, in each section's `Default`; `--help` reads them from there.

use clap::Command;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// A flags struct that overlays one section of the configuration.
pub trait Section: Serialize {
    /// The section's key in the file; `None` for top-level keys.
    const KEY: Option<&'static str>;
}

/// The configuration as a TOML table, layer upon layer.
pub struct Layers {
    table: toml::Table,
}

impl Layers {
    /// Starts from `base`: the defaults, or the file with them.
    pub fn new(base: &impl Serialize) -> anyhow::Result<Self> {
        Ok(Layers {
            table: as_table(base)?,
        })
    }

    /// Lays the flags that were given over their section's keys.
    pub fn overlay<S: Section>(&mut self, flags: &S) -> anyhow::Result<()> {
        let given = given_keys(flags)?;
        let target = match S::KEY {
            None => &mut self.table,
            Some(key) => match self
                .table
                .entry(key)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            {
                toml::Value::Table(section) => section,
                other => anyhow::bail!("`{key}` is a {}, not a section", other.type_str()),
            },
        };
        target.extend(given);
        Ok(())
    }

    /// The configuration the layers make.
    pub fn build<T: DeserializeOwned>(self) -> anyhow::Result<T> {
        Ok(toml::Value::Table(self.table).try_into()?)
    }
}

/// The flags given, by key. Each value is converted on its own, so one
/// that TOML cannot hold (an integer above `i64::MAX`) is named.
fn given_keys(flags: &impl Serialize) -> anyhow::Result<toml::Table> {
    let serde_json::Value::Object(given) = serde_json::to_value(flags)? else {
        anyhow::bail!("flags are a table of settings");
    };
    let mut table = toml::Table::new();
    for (key, value) in given {
        if value.is_null() {
            continue;
        }
        let converted = toml::Value::try_from(&value)
            .map_err(|e| anyhow::anyhow!("the flag for `{key}` ({value}): {e}"))?;
        table.insert(key, converted);
    }
    Ok(table)
}

fn as_table(value: &impl Serialize) -> anyhow::Result<toml::Table> {
    match toml::Value::try_from(value)? {
        toml::Value::Table(table) => Ok(table),
        other => anyhow::bail!("expected a table of settings, not a {}", other.type_str()),
    }
}

/// Every key that has a default, top-level or in a section, with that
/// default as `--help` shows it. Keys without one (unset options, empty
/// lists) are left out.
pub fn defaults_by_key(defaults: &impl Serialize) -> anyhow::Result<BTreeMap<String, String>> {
    let mut keys = BTreeMap::new();
    for (key, value) in as_table(defaults)? {
        match value {
            toml::Value::Table(section) => {
                for (key, value) in section {
                    if let Some(shown) = shown(&value) {
                        keys.insert(key, shown);
                    }
                }
            }
            value => {
                if let Some(shown) = shown(&value) {
                    keys.insert(key, shown);
                }
            }
        }
    }
    Ok(keys)
}

fn shown(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(n) => Some(n.to_string()),
        toml::Value::Float(n) => Some(n.to_string()),
        toml::Value::Array(items) if !items.is_empty() => {
            let items: Option<Vec<String>> = items.iter().map(shown).collect();
            items.map(|items| items.join(","))
        }
        _ => None,
    }
}

/// `command` with each flag's help ending in the default of the key its
/// field is named after, unless the help already says what the default is.
pub fn with_defaults(command: Command, defaults: &BTreeMap<String, String>) -> Command {
    command.mut_args(|arg| {
        let Some(default) = defaults.get(arg.get_id().as_str()) else {
            return arg;
        };
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        if help.contains("[default:") {
            return arg;
        }
        arg.help(format!("{help} [default: {default}]"))
    })
}

/// Parses the process's arguments into `C`, with defaults in its `--help`;
/// exits with clap's message on bad input.
pub fn parse_flags<C: clap::Parser>(defaults: &impl Serialize) -> C {
    let defaults = defaults_by_key(defaults).unwrap_or_default();
    let matches = with_defaults(C::command(), &defaults).get_matches();
    C::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}
