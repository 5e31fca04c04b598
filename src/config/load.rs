//! Loading: file text -> syntax check -> per-part schema check with exact positions ->
//! merge with environment overrides through the `config` crate -> per-part check of the merged
//! values -> compile. Each step collects every error it can before the next one runs.
//!
//! serde stops at the first error, so the file is checked one independent part at a time (each
//! section, each `[[machines]]` entry, each machine's driver): one error per part, all parts
//! reported. Positions come from `toml::de::DeTable`, whose values carry byte spans.

use std::ops::Range;
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::Config;
use super::compile::{Problem, compile};
use super::error::{ConfigError, ConfigErrors, Location, line_column};
use super::schema::{
    DRIVER_TYPES, PLANNED_DRIVER_TYPES, RawCalendar, RawConfig, RawContext, RawFocasDriver,
    RawHaasDriver, RawHttp, RawJournal, RawLog, RawMachine, RawModbusDriver, RawMqtt,
    RawMtconnectDriver, RawOpcua, RawOpcuaDriver, RawPlugin, RawPluginDriver, RawProfiles,
    RawShdrDriver, RawSim, RawSimDriver, RawSparkplug, RawTaxonomy, SECTIONS,
};

/// Environment variables `SHOPBRIDGE_<SECTION>__<KEY>` override file keys.
pub const ENV_PREFIX: &str = "SHOPBRIDGE";

/// Loads `path`, applying `SHOPBRIDGE_<SECTION>__<KEY>` overrides from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with_env(
        path,
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
    )
}

/// Loads `path` with the given environment variables instead of the process's (for tests).
pub fn load_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::one(ConfigError {
            location: Location::FileOnly {
                file: origin.clone(),
            },
            key: None,
            message: format!("cannot read the configuration file: {e}"),
        })
    })?;
    load_str_with_env(&text, &origin, env)
}

/// Loads configuration text; `origin` names it in errors (`shopbridge.toml`, `<demo>`).
/// Reads no environment variables.
pub fn load_str(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
    load_str_with_env(text, origin, std::iter::empty())
}

/// Loads configuration text with the given environment variables as overrides. Variables
/// without the `SHOPBRIDGE_` prefix or without a `__` section separator are ignored (so
/// `SHOPBRIDGE_CONFIG`, say, can name the file without being taken for a key).
pub fn load_str_with_env(
    text: &str,
    origin: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    let mut errors = Errors {
        origin,
        text,
        list: Vec::new(),
    };

    // 1. Syntax.
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            errors.at_span(span, None, format!("invalid TOML: {}", e.message().trim()));
            return Err(errors.finish());
        }
    };

    // 2. The file's shape, part by part, with positions.
    let failed = check_file_parts(&root, &mut errors);

    // 3. Merge environment overrides through the `config` crate.
    let file_machines = root
        .get_ref()
        .get("machines")
        .and_then(|m| m.get_ref().as_array())
        .map_or(0, |a| a.len());
    let overrides = env_overrides(env, file_machines, &mut errors);
    let merged = match merge(text, &overrides) {
        Ok(merged) => merged,
        Err(e) => {
            errors.list.push(ConfigError {
                location: Location::FileOnly {
                    file: origin.to_string(),
                },
                key: None,
                message: describe(&e),
            });
            return Err(errors.finish());
        }
    };

    // 4. The merged values, part by part; a part that already failed in the file is skipped,
    //    so what fails here came from the environment.
    let (raw, indices) = merged_parts(&merged, &failed, &overrides, &mut errors);

    // 5. Compile what passed (failed parts are left at their defaults or left out), so that
    //    the meaning of the good parts is checked too.
    let locate = |path: &str| locate(path, &root, &overrides, origin, text);
    let place = |path: &str| locate(path).map(|l| l.to_string());
    match compile(&raw, &indices, &place) {
        Ok(config) if errors.list.is_empty() => Ok(config),
        Ok(_) => Err(errors.finish()),
        Err(problems) => {
            for Problem { paths, message } in problems {
                let found = paths.iter().find_map(|p| Some((p.clone(), locate(p)?)));
                let (key, location) = found.unwrap_or_else(|| {
                    let file = origin.to_string();
                    (
                        paths.first().cloned().unwrap_or_default(),
                        Location::FileOnly { file },
                    )
                });
                errors.list.push(ConfigError {
                    location,
                    key: Some(key),
                    message,
                });
            }
            Err(errors.finish())
        }
    }
}

struct Errors<'a> {
    origin: &'a str,
    text: &'a str,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    fn at_span(&mut self, span: Range<usize>, key: Option<String>, message: String) {
        let (line, column) = line_column(self.text, span.start);
        self.list.push(ConfigError {
            location: Location::File {
                file: self.origin.to_string(),
                line,
                column,
            },
            key,
            message,
        });
    }

    fn at_env(&mut self, var: &str, key: Option<String>, message: String) {
        self.list.push(ConfigError {
            location: Location::Env {
                var: var.to_string(),
            },
            key,
            message,
        });
    }

    /// File errors in file order, then whole-file errors, then environment errors.
    fn finish(mut self) -> ConfigErrors {
        self.list.sort_by_key(|e| match &e.location {
            Location::File { line, column, .. } => (0, *line, *column),
            Location::FileOnly { .. } => (1, 0, 0),
            Location::Env { .. } => (2, 0, 0),
        });
        ConfigErrors::new(self.list)
    }
}

// ---------------------------------------------------------------------------------------------
// Step 2: the file, part by part.

/// Checks each top-level section and each machine on its own; returns the parts that failed
/// (`"http"`, `"machines[2]"`, ...).
fn check_file_parts(root: &Spanned<DeTable<'_>>, errors: &mut Errors<'_>) -> Vec<String> {
    let mut failed = Vec::new();
    for (key, value) in root.get_ref().iter() {
        let name = key.get_ref().as_ref();
        let ok = match name {
            "http" => check_section::<RawHttp>(name, value, root, errors),
            "journal" => check_section::<RawJournal>(name, value, root, errors),
            "log" => check_section::<RawLog>(name, value, root, errors),
            "sim" => check_section::<RawSim>(name, value, root, errors),
            "taxonomy" => check_section::<RawTaxonomy>(name, value, root, errors),
            "profiles" => check_section::<RawProfiles>(name, value, root, errors),
            "opcua" => check_section::<RawOpcua>(name, value, root, errors),
            "sparkplug" => check_section::<RawSparkplug>(name, value, root, errors),
            "mqtt" => check_section::<RawMqtt>(name, value, root, errors),
            "context" => check_section::<RawContext>(name, value, root, errors),
            "calendars" => check_section::<std::collections::BTreeMap<String, RawCalendar>>(
                name, value, root, errors,
            ),
            "plugins" => match value.get_ref().as_array() {
                Some(array) => {
                    let mut ok = true;
                    for (i, item) in array.iter().enumerate() {
                        let path = format!("plugins[{i}]");
                        ok &= match item.get_ref().as_table() {
                            Some(t) => {
                                check_table::<RawPlugin>(t, item.span(), root, &path, errors)
                            }
                            None => {
                                errors.at_span(
                                    item.span(),
                                    Some(path),
                                    "expected a plugin, starting with a [[plugins]] line".into(),
                                );
                                false
                            }
                        };
                    }
                    ok
                }
                None => {
                    errors.at_span(
                        value.span(),
                        Some("plugins".into()),
                        format!(
                            "expected a list of plugins, each starting with a [[plugins]] line, found {}",
                            value.get_ref().type_str()
                        ),
                    );
                    false
                }
            },
            "machines" => {
                let Some(array) = value.get_ref().as_array() else {
                    errors.at_span(
                        value.span(),
                        Some("machines".into()),
                        format!(
                            "expected a list of machines, each starting with a [[machines]] line, found {}",
                            value.get_ref().type_str()
                        ),
                    );
                    failed.push("machines".into());
                    continue;
                };
                for (i, machine) in array.iter().enumerate() {
                    if !check_machine(i, machine, root, errors) {
                        failed.push(format!("machines[{i}]"));
                    }
                }
                true
            }
            _ => {
                errors.at_span(
                    key.span(),
                    Some(name.to_string()),
                    format!(
                        "unknown section `{name}`, expected one of {}",
                        quote_list(&SECTIONS)
                    ),
                );
                false
            }
        };
        if !ok {
            failed.push(name.to_string());
        }
    }
    failed
}

fn check_section<T: DeserializeOwned>(
    name: &str,
    value: &Spanned<DeValue<'_>>,
    root: &Spanned<DeTable<'_>>,
    errors: &mut Errors<'_>,
) -> bool {
    let Some(table) = value.get_ref().as_table() else {
        errors.at_span(
            value.span(),
            Some(name.to_string()),
            format!(
                "expected a table (a [{name}] section), found {}",
                value.get_ref().type_str()
            ),
        );
        return false;
    };
    check_table::<T>(table, value.span(), root, name, errors)
}

/// Deserializes `T` from one table of the file; on error, reports it at the error's span with
/// the key path found at that span.
fn check_table<T: DeserializeOwned>(
    table: &DeTable<'_>,
    span: Range<usize>,
    root: &Spanned<DeTable<'_>>,
    fallback_path: &str,
    errors: &mut Errors<'_>,
) -> bool {
    let de = toml::de::Deserializer::from(Spanned::new(span.clone(), table.clone()));
    match T::deserialize(de) {
        Ok(_) => true,
        Err(e) => {
            let span = e.span().unwrap_or(span);
            let path = path_at(root.get_ref(), span.start, "")
                .filter(|p| p.starts_with(fallback_path))
                .unwrap_or_else(|| fallback_path.to_string());
            errors.at_span(span, Some(path), serde_message(e.message()));
            false
        }
    }
}

/// Checks one `[[machines]]` entry: its driver on its own (by `type`), then the rest.
fn check_machine(
    i: usize,
    machine: &Spanned<DeValue<'_>>,
    root: &Spanned<DeTable<'_>>,
    errors: &mut Errors<'_>,
) -> bool {
    let path = format!("machines[{i}]");
    let Some(table) = machine.get_ref().as_table() else {
        errors.at_span(
            machine.span(),
            Some(path),
            format!(
                "expected a table (a [[machines]] entry), found {}",
                machine.get_ref().type_str()
            ),
        );
        return false;
    };
    let driver_ok = match table.get("driver") {
        Some(driver) => check_driver(&format!("{path}.driver"), driver, root, errors),
        None => true,
    };
    if driver_ok {
        return check_table::<RawMachine>(table, machine.span(), root, &path, errors);
    }
    // The driver's error is reported; check the other keys with a stand-in driver so that
    // their errors are reported too, but not a second one for the driver.
    let mut stand_in = DeTable::new();
    stand_in.insert(
        Spanned::new(0..0, "type".into()),
        Spanned::new(0..0, DeValue::String("sim".into())),
    );
    let mut rest = table.clone();
    rest.insert(
        Spanned::new(0..0, "driver".into()),
        Spanned::new(0..0, DeValue::Table(stand_in)),
    );
    check_table::<RawMachine>(&rest, machine.span(), root, &path, errors);
    false
}

/// Checks a `[machines.driver]` table: a known `type`, then that type's keys.
fn check_driver(
    path: &str,
    driver: &Spanned<DeValue<'_>>,
    root: &Spanned<DeTable<'_>>,
    errors: &mut Errors<'_>,
) -> bool {
    let Some(table) = driver.get_ref().as_table() else {
        errors.at_span(
            driver.span(),
            Some(path.to_string()),
            format!(
                "expected a table (a [machines.driver] section), found {}",
                driver.get_ref().type_str()
            ),
        );
        return false;
    };
    let Some((_, ty)) = table.iter().find(|(k, _)| k.get_ref() == "type") else {
        errors.at_span(
            driver.span(),
            Some(path.to_string()),
            format!(
                "missing key `type`, expected one of {}",
                quote_list(&DRIVER_TYPES)
            ),
        );
        return false;
    };
    let Some(type_name) = ty.get_ref().as_str() else {
        errors.at_span(
            ty.span(),
            Some(format!("{path}.type")),
            format!(
                "expected a driver type (a string: one of {}), found {}",
                quote_list(&DRIVER_TYPES),
                ty.get_ref().type_str()
            ),
        );
        return false;
    };
    let mut rest = table.clone();
    rest.remove("type");
    match type_name {
        "sim" => check_table::<RawSimDriver>(&rest, driver.span(), root, path, errors),
        "shdr" => check_table::<RawShdrDriver>(&rest, driver.span(), root, path, errors),
        "mtconnect" => check_table::<RawMtconnectDriver>(&rest, driver.span(), root, path, errors),
        "haas" => check_table::<RawHaasDriver>(&rest, driver.span(), root, path, errors),
        "modbus" => check_table::<RawModbusDriver>(&rest, driver.span(), root, path, errors),
        "focas" => check_table::<RawFocasDriver>(&rest, driver.span(), root, path, errors),
        "opcua" => check_table::<RawOpcuaDriver>(&rest, driver.span(), root, path, errors),
        "plugin" => check_table::<RawPluginDriver>(&rest, driver.span(), root, path, errors),
        other => {
            errors.at_span(
                ty.span(),
                Some(format!("{path}.type")),
                unknown_driver_message(other),
            );
            false
        }
    }
}

fn unknown_driver_message(found: &str) -> String {
    let planned = if PLANNED_DRIVER_TYPES.contains(&found) {
        format!(" ({found:?} is planned but not in this version)")
    } else {
        String::new()
    };
    format!(
        "unknown driver type {found:?}{planned}, expected one of {}",
        quote_list(&DRIVER_TYPES)
    )
}

/// The deepest key path (`machines[1].driver.address`) whose key or value span holds `offset`.
fn path_at(table: &DeTable<'_>, offset: usize, prefix: &str) -> Option<String> {
    for (key, value) in table.iter() {
        let path = join(prefix, key.get_ref());
        if key.span().contains(&offset) {
            return Some(path);
        }
        if let Some(deeper) = path_in_value(value, offset, &path) {
            return Some(deeper);
        }
        if value.span().contains(&offset) {
            return Some(path);
        }
    }
    None
}

fn path_in_value(value: &Spanned<DeValue<'_>>, offset: usize, path: &str) -> Option<String> {
    match value.get_ref() {
        DeValue::Table(t) => path_at(t, offset, path),
        DeValue::Array(a) => a.iter().enumerate().find_map(|(i, v)| {
            let p = format!("{path}[{i}]");
            path_in_value(v, offset, &p).or_else(|| v.span().contains(&offset).then_some(p))
        }),
        _ => None,
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The span of the value at `path` (`machines[1].driver.address`), if the file has it.
fn span_of(root: &DeTable<'_>, path: &str) -> Option<Range<usize>> {
    let mut current: Option<&Spanned<DeValue<'_>>> = None;
    for segment in path.split('.') {
        let (name, indexes) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        let table = match current {
            None => root,
            Some(v) => v.get_ref().as_table()?,
        };
        let mut value = table.get(name)?;
        for index in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
            let i: usize = index.parse().ok()?;
            value = value.get_ref().as_array()?.get(i)?;
        }
        current = Some(value);
    }
    current.map(|v| v.span())
}

/// Where the value at `path` came from: an environment variable, the file, or nowhere (default).
fn locate(
    path: &str,
    root: &Spanned<DeTable<'_>>,
    overrides: &[EnvOverride],
    origin: &str,
    text: &str,
) -> Option<Location> {
    if let Some(o) = overrides.iter().find(|o| o.path == path) {
        return Some(Location::Env { var: o.var.clone() });
    }
    let span = span_of(root.get_ref(), path)?;
    let (line, column) = line_column(text, span.start);
    Some(Location::File {
        file: origin.to_string(),
        line,
        column,
    })
}

/// serde's wording, in the terms of a TOML file: "expected X, found Y".
fn serde_message(message: &str) -> String {
    let message = message
        .trim()
        .replace("expected u64", "expected a whole number")
        .replace("expected f64", "expected a number");
    let message = message.as_str();
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some((found, expected)) = rest.split_once(", expected ") {
                return format!("expected {expected}, found {found}");
            }
        }
    }
    if let Some(rest) = message.strip_prefix("unknown field ") {
        return format!("unknown key {rest}");
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        return format!("missing key {rest}");
    }
    message.to_string()
}

pub(super) fn quote_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// Steps 3 and 4: environment overrides and the merged values.

/// One `SHOPBRIDGE_...` variable: the key path it sets and its name.
#[derive(Debug, Clone)]
struct EnvOverride {
    path: String,
    var: String,
    /// The name handed to the `config` crate (machines get `[i]` subscripts).
    source_name: String,
    value: String,
}

/// Picks the `SHOPBRIDGE_<SECTION>__<KEY>` variables and works out the key path of each.
/// `SHOPBRIDGE_MACHINES__<index>__<KEY>...` addresses a machine by its position in the file.
fn env_overrides(
    env: impl IntoIterator<Item = (String, String)>,
    file_machines: usize,
    errors: &mut Errors<'_>,
) -> Vec<EnvOverride> {
    let prefix = format!("{ENV_PREFIX}_");
    let mut out = Vec::new();
    for (var, value) in env {
        let Some(rest) = var
            .get(..prefix.len())
            .filter(|p| p.eq_ignore_ascii_case(&prefix))
            .map(|_| &var[prefix.len()..])
        else {
            continue;
        };
        if !rest.contains("__") {
            continue;
        }
        let segments: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if segments.iter().any(String::is_empty) {
            errors.at_env(
                &var,
                None,
                format!(
                    "expected {ENV_PREFIX}_<SECTION>__<KEY> with no empty part, like {ENV_PREFIX}_HTTP__LISTEN"
                ),
            );
            continue;
        }
        let (path, source_name) = if segments[0] == "machines" {
            match segments.get(1).map(|s| s.parse::<usize>()) {
                Some(Ok(i)) if segments.len() > 2 && i >= file_machines => {
                    errors.at_env(
                        &var,
                        None,
                        format!(
                            "there is no machines[{i}]: the file defines {file_machines} \
                             machine{} (counted from 0); an environment variable can only change \
                             a machine the file defines",
                            if file_machines == 1 { "" } else { "s" }
                        ),
                    );
                    continue;
                }
                Some(Ok(i)) if segments.len() > 2 => {
                    let tail = segments[2..].join(".");
                    (
                        format!("machines[{i}].{tail}"),
                        format!("{ENV_PREFIX}_MACHINES[{i}]__{}", segments[2..].join("__")),
                    )
                }
                _ => {
                    errors.at_env(
                        &var,
                        None,
                        format!(
                            "a machine is addressed by its position in the file (0 for the first): \
                             expected {ENV_PREFIX}_MACHINES__<index>__<KEY>, like \
                             {ENV_PREFIX}_MACHINES__0__DRIVER__ADDRESS"
                        ),
                    );
                    continue;
                }
            }
        } else {
            (segments.join("."), var.to_ascii_uppercase())
        };
        out.push(EnvOverride {
            path,
            var,
            source_name,
            value,
        });
    }
    out.sort_by(|a, b| a.var.cmp(&b.var));
    out
}

/// The file plus the overrides, merged by the `config` crate.
fn merge(text: &str, overrides: &[EnvOverride]) -> Result<config::Config, config::ConfigError> {
    let vars: config::Map<String, String> = overrides
        .iter()
        .map(|o| (o.source_name.clone(), o.value.clone()))
        .collect();
    config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("taxonomy.categories")
                .source(Some(vars)),
        )
        .build()
}

/// Deserializes each part of the merged configuration on its own. Returns the parts that passed
/// (failed sections stay at their defaults, failed machines are left out) and the file position
/// of each machine returned.
fn merged_parts(
    merged: &config::Config,
    failed: &[String],
    overrides: &[EnvOverride],
    errors: &mut Errors<'_>,
) -> (RawConfig, Vec<usize>) {
    let mut raw = RawConfig::default();
    let mut indices = Vec::new();

    // Unknown sections can only come from the environment here (the file's were reported).
    for o in overrides {
        let section = o.path.split(['.', '[']).next().unwrap_or_default();
        if !SECTIONS.contains(&section) {
            errors.at_env(
                &o.var,
                Some(o.path.clone()),
                format!(
                    "unknown section `{section}`, expected one of {}",
                    quote_list(&SECTIONS)
                ),
            );
        }
    }

    macro_rules! section {
        ($name:literal, $field:ident) => {
            if !failed.iter().any(|f| f == $name) {
                match merged.get($name) {
                    Ok(v) => raw.$field = v,
                    Err(config::ConfigError::NotFound(_)) => {}
                    Err(e) => {
                        report_env($name, describe(&e), error_key(&e), overrides, errors);
                    }
                }
            }
        };
    }
    section!("http", http);
    section!("journal", journal);
    section!("log", log);
    section!("sim", sim);
    section!("taxonomy", taxonomy);
    section!("profiles", profiles);
    section!("opcua", opcua);
    section!("sparkplug", sparkplug);
    section!("mqtt", mqtt);
    section!("context", context);
    section!("calendars", calendars);
    section!("plugins", plugins);

    if failed.iter().any(|f| f == "machines") {
        return (raw, indices);
    }
    let count = match merged.get_array("machines") {
        Ok(machines) => machines.len(),
        Err(config::ConfigError::NotFound(_)) => 0,
        Err(e) => {
            report_env("machines", describe(&e), None, overrides, errors);
            return (raw, indices);
        }
    };
    for i in 0..count {
        let part = format!("machines[{i}]");
        if failed.contains(&part) {
            continue;
        }
        match merged.get::<RawMachine>(&part) {
            Ok(m) => {
                raw.machines.push(m);
                indices.push(i);
            }
            Err(e) => {
                let message = match &e {
                    config::ConfigError::NotFound(_) => {
                        "this machine is not in the file; an environment variable can only change a machine the file defines".to_string()
                    }
                    e => match overrides
                        .iter()
                        .find(|o| o.path == format!("{part}.driver.type"))
                    {
                        Some(o) if describe(e).starts_with("unknown variant") => {
                            unknown_driver_message(&o.value)
                        }
                        _ => describe(e),
                    },
                };
                report_env(&part, message, error_key(&e), overrides, errors);
            }
        }
    }
    (raw, indices)
}

/// Reports a problem in the merged part `part`, at the environment variable(s) that changed it.
fn report_env(
    part: &str,
    message: String,
    key: Option<String>,
    overrides: &[EnvOverride],
    errors: &mut Errors<'_>,
) {
    let under: Vec<&EnvOverride> = overrides
        .iter()
        .filter(|o| {
            o.path == part
                || o.path.starts_with(&format!("{part}."))
                || o.path.starts_with(&format!("{part}["))
        })
        .collect();
    let chosen: Vec<&EnvOverride> = match &key {
        Some(key) => {
            let exact: Vec<_> = under
                .iter()
                .copied()
                .filter(|o| o.path.ends_with(key.as_str()))
                .collect();
            if exact.is_empty() { under } else { exact }
        }
        None => under,
    };
    match chosen.as_slice() {
        [] => errors.list.push(ConfigError {
            location: Location::FileOnly {
                file: errors.origin.to_string(),
            },
            key: Some(part.to_string()),
            message,
        }),
        [one] => errors.at_env(&one.var, Some(one.path.clone()), message),
        several => {
            let vars: Vec<&str> = several.iter().map(|o| o.var.as_str()).collect();
            errors.at_env(&vars.join(" or "), Some(part.to_string()), message);
        }
    }
}

/// The key a `config` error names, if any.
fn error_key(e: &config::ConfigError) -> Option<String> {
    match e {
        config::ConfigError::Type { key, .. } | config::ConfigError::At { key, .. } => key.clone(),
        _ => None,
    }
}

/// A `config` error as "expected X, found Y" without the crate's own location suffixes.
fn describe(e: &config::ConfigError) -> String {
    match e {
        config::ConfigError::Type {
            unexpected,
            expected,
            ..
        } => format!("expected {expected}, found {unexpected}"),
        config::ConfigError::At { error, .. } => describe(error),
        config::ConfigError::Message(m) => serde_message(m),
        other => other.to_string(),
    }
}
