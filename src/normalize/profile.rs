//! Machine profiles: the TOML a controls engineer writes (`profiles/*.toml`, reference in
//! `profiles/README.md`), its serde schema, and the compiled form normalization runs.
//!
//! Parse, don't validate: [`compile`] turns the schema into a [`Profile`] whose matchers,
//! transforms, expressions and state rules are all checked and resolved to indices once; every
//! problem is reported with `file:line:column`, the key, what was expected and what was found.
//! The shipped profiles are built into the binary ([`BUILTIN`]); a profiles directory can add
//! more or replace them by name.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::expr::{self, Expr};
use crate::config::{ConfigError, ConfigErrors, Location, line_column};
use crate::drivers::{DataItemMeta, ItemCategory, ItemShape};
use crate::model::{ConditionLevel, SignalId, Value, signals};

/// The profiles shipped with shopbridge, compiled into the binary: `(name, TOML)`.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "mtconnect-generic",
        include_str!("../../profiles/mtconnect-generic.toml"),
    ),
    ("okuma-osp", include_str!("../../profiles/okuma-osp.toml")),
    ("mazak", include_str!("../../profiles/mazak.toml")),
    (
        "fanuc-mtconnect",
        include_str!("../../profiles/fanuc-mtconnect.toml"),
    ),
    ("haas-ngc", include_str!("../../profiles/haas-ngc.toml")),
    (
        "fanuc-focas",
        include_str!("../../profiles/fanuc-focas.toml"),
    ),
    ("moxa-e1212", include_str!("../../profiles/moxa-e1212.toml")),
    (
        "advantech-adam-6050",
        include_str!("../../profiles/advantech-adam-6050.toml"),
    ),
    (
        "moxa-e1240-current",
        include_str!("../../profiles/moxa-e1240-current.toml"),
    ),
    (
        "opcua-machine-tool",
        include_str!("../../profiles/opcua-machine-tool.toml"),
    ),
    (
        "heidenhain-lsv2",
        include_str!("../../profiles/heidenhain-lsv2.toml"),
    ),
    (
        "sinumerik-opcua",
        include_str!("../../profiles/sinumerik-opcua.toml"),
    ),
];

// ---------------------------------------------------------------------------------------------
// Schema
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    description: Option<String>,
    extends: Option<Spanned<String>>,
    #[serde(default)]
    shapes: RawShapes,
    #[serde(default)]
    signal: Vec<Spanned<RawSignal>>,
    #[serde(default)]
    state: RawState,
    #[serde(default)]
    register: Vec<Spanned<RawRegister>>,
}

/// `[[register]]`: one item of a Modbus register map.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegister {
    key: Spanned<String>,
    table: Spanned<String>,
    address: Spanned<i64>,
    #[serde(rename = "type")]
    data_type: Option<Spanned<String>>,
    length: Option<Spanned<i64>>,
    word_order: Option<Spanned<String>>,
    byte_order: Option<Spanned<String>>,
    bit: Option<Spanned<i64>>,
    scale: Option<f64>,
    offset: Option<f64>,
    unit: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawShapes {
    condition: Vec<String>,
    message: Vec<String>,
    time_series: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignal {
    id: Spanned<String>,
    from: Option<Spanned<OneOrMany<RawMatch>>>,
    expr: Option<Spanned<String>>,
    map: Option<Spanned<BTreeMap<String, toml::Value>>>,
    unmapped: Option<Spanned<String>>,
    #[serde(rename = "type")]
    value_type: Option<Spanned<String>>,
    scale: Option<f64>,
    offset: Option<f64>,
    threshold: Option<Spanned<RawThreshold>>,
    debounce: Option<Spanned<String>>,
    min_hold: Option<Spanned<String>>,
    advancing: Option<Spanned<String>>,
    blink: Option<Spanned<String>>,
    levels: Option<Spanned<Vec<RawLevel>>>,
    hysteresis: Option<Spanned<f64>>,
    alarm_level: Option<Spanned<String>>,
}

/// One band of `levels`: the value for numbers below `below` (the last band has none).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLevel {
    below: Option<f64>,
    value: toml::Value,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    key: Option<String>,
    id: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    item_type: Option<String>,
    sub_type: Option<String>,
    category: Option<String>,
    component: Option<String>,
    component_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThreshold {
    on: f64,
    off: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawState {
    availability: Option<Vec<Spanned<RawRule>>>,
    execution: Option<Vec<Spanned<RawRule>>>,
    controller_mode: Option<Vec<Spanned<RawRule>>>,
    functional_mode: Option<Vec<Spanned<RawRule>>>,
    emergency_stop: Option<Vec<Spanned<RawRule>>>,
    alarm: Option<Vec<Spanned<RawRule>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    when: Option<Spanned<String>>,
    value: Spanned<toml::Value>,
}

// ---------------------------------------------------------------------------------------------
// Compiled form
// ---------------------------------------------------------------------------------------------

/// Which source items a signal reads: every given field must match (text fields are
/// case-insensitive; `key`, `id` and `name` accept `*` wildcards).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Matcher {
    key: Option<String>,
    id: Option<String>,
    name: Option<String>,
    item_type: Option<String>,
    sub_type: Option<String>,
    category: Option<ItemCategory>,
    component: Option<String>,
    component_name: Option<String>,
}

fn glob(pattern: &str, text: &str) -> bool {
    // `*` matches any run of characters; everything else literally, case-insensitively.
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] != b'*' && p[pi].eq_ignore_ascii_case(&t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

fn eq_opt(want: &Option<String>, have: Option<&str>) -> bool {
    match want {
        None => true,
        Some(w) => have.is_some_and(|h| h.eq_ignore_ascii_case(w)),
    }
}

impl Matcher {
    /// Whether a source item (its key, and what the source says about it) matches.
    pub fn matches(&self, key: &str, meta: Option<&DataItemMeta>) -> bool {
        if let Some(k) = &self.key {
            // The source key, or the item's id or name, so the same profile works for an
            // SHDR adapter (keys are names or ids) and for an agent (keys are ids).
            let hit = glob(k, key)
                || meta.is_some_and(|m| {
                    glob(k, &m.id) || m.name.as_deref().is_some_and(|n| glob(k, n))
                });
            if !hit {
                return false;
            }
        }
        if let Some(i) = &self.id {
            if !glob(i, meta.map_or(key, |m| m.id.as_str())) {
                return false;
            }
        }
        if let Some(n) = &self.name {
            let name = meta.and_then(|m| m.name.as_deref()).unwrap_or(key);
            if !glob(n, name) {
                return false;
            }
        }
        let needs_meta = self.item_type.is_some()
            || self.sub_type.is_some()
            || self.category.is_some()
            || self.component.is_some()
            || self.component_name.is_some();
        if !needs_meta {
            return true;
        }
        let Some(m) = meta else { return false };
        eq_opt(&self.item_type, Some(&m.item_type))
            && eq_opt(&self.sub_type, m.sub_type.as_deref())
            && (self.category.is_none() || self.category == m.category)
            && eq_opt(&self.component, m.component.as_deref())
            && eq_opt(&self.component_name, m.component_name.as_deref())
    }
}

/// The value type a signal is coerced to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    Text,
    Int,
    Float,
    Bool,
}

/// What happens to a value between the source and the signal, in this order: `map`, `type`,
/// `scale`/`offset`, `threshold`; then the time filters `debounce` and `min_hold`.
#[derive(Clone, Debug, Default)]
pub struct Transform {
    /// Source word (upper-cased) → value.
    pub map: Option<Vec<(String, Value)>>,
    /// For words the map does not list: None keeps them, Some(v) replaces them.
    pub unmapped: Option<Value>,
    pub value_type: Option<ValueType>,
    pub scale: Option<f64>,
    pub offset: Option<f64>,
    /// `(on, off)`: an analog value becomes true at or above `on`, false at or below `off`.
    pub threshold: Option<(f64, f64)>,
    /// Bands of an analog value (`(below, value)`, the last without `below`) and the
    /// hysteresis a value must cross a band's edge by to leave the band it is in.
    pub levels: Option<(Vec<Band>, f64)>,
    pub debounce: Option<Duration>,
    pub min_hold: Option<Duration>,
    /// A counter or timer becomes `true` when it goes up, and `false` once it has not gone
    /// up for this long (a Haas motion timer that advances while a cycle moves axes).
    pub advancing: Option<Duration>,
    /// A lamp becomes `ON`, `OFF`, or `BLINKING` while it has changed at least
    /// [`BLINK_EDGES`] times within this window; it settles on ON or OFF a window after its
    /// last change.
    pub blink: Option<Duration>,
}

/// One band of `levels`: numbers below the bound (none for the last band) take the value.
pub type Band = (Option<f64>, Value);

/// Changes within the blink window that make a lamp `BLINKING` (on, off, on).
pub const BLINK_EDGES: usize = 3;

impl Transform {
    /// Whether the value goes through the time filters (not straight to the signal).
    pub fn is_timed(&self) -> bool {
        self.debounce.is_some()
            || self.min_hold.is_some()
            || self.advancing.is_some()
            || self.blink.is_some()
    }
}

impl Transform {
    /// Applies map, type, scale/offset and threshold. `previous` is the signal's current
    /// value (for hysteresis). Err names what could not be converted.
    pub fn apply(&self, v: Value, previous: &Value) -> Result<Value, String> {
        if v.is_unavailable() {
            return Ok(v);
        }
        let mut v = v;
        if let Some(map) = &self.map {
            let word = v.to_string();
            let word = word.trim();
            match map.iter().find(|(k, _)| k.eq_ignore_ascii_case(word)) {
                Some((_, to)) => v = to.clone(),
                None => {
                    if let Some(u) = &self.unmapped {
                        v = u.clone();
                    }
                }
            }
        }
        if let Some(t) = self.value_type {
            v = coerce(v, t)?;
        }
        if self.scale.is_some() || self.offset.is_some() {
            let x = numeric(&v).ok_or_else(|| format!("expected a number to scale, found {v}"))?;
            let y = x * self.scale.unwrap_or(1.0) + self.offset.unwrap_or(0.0);
            v = match self.value_type {
                Some(ValueType::Int) => Value::Int(y.round() as i64),
                _ => Value::Float(y),
            };
        }
        if let Some((on, off)) = self.threshold {
            let x =
                numeric(&v).ok_or_else(|| format!("expected a number to compare, found {v}"))?;
            let was_on = matches!(previous, Value::Bool(true));
            v = Value::Bool(if was_on { x > off } else { x >= on });
        }
        if let Some((levels, h)) = &self.levels {
            let x = numeric(&v).ok_or_else(|| format!("expected a number to place, found {v}"))?;
            let band = |x: f64| {
                levels
                    .iter()
                    .position(|(below, _)| below.is_none_or(|b| x < b))
                    .unwrap_or(levels.len().saturating_sub(1))
            };
            let mut i = band(x);
            // Stay in the band the signal is in while within the hysteresis of its edges.
            if let Some(j) = levels.iter().position(|(_, w)| w == previous) {
                if (band(x - h)..=band(x + h)).contains(&j) {
                    i = j;
                }
            }
            if let Some((_, w)) = levels.get(i) {
                v = w.clone();
            }
        }
        Ok(v)
    }
}

fn numeric(v: &Value) -> Option<f64> {
    match v {
        Value::Text(t) => t.trim().parse().ok(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        other => other.as_f64(),
    }
}

/// A reading as a number: numbers, numbers sent as text, and the boolean words (`ON` = 1).
pub fn as_number(v: &Value) -> Option<f64> {
    numeric(v).or_else(|| match coerce(v.clone(), ValueType::Bool) {
        Ok(Value::Bool(b)) => Some(f64::from(u8::from(b))),
        _ => None,
    })
}

fn coerce(v: Value, t: ValueType) -> Result<Value, String> {
    Ok(match t {
        ValueType::Text => match v {
            Value::Text(_) => v,
            other => Value::Text(Arc::from(other.to_string().as_str())),
        },
        ValueType::Float => {
            Value::Float(numeric(&v).ok_or_else(|| format!("expected a number, found {v:?}"))?)
        }
        ValueType::Int => match &v {
            Value::Int(_) => v,
            _ => {
                let x = numeric(&v).ok_or_else(|| format!("expected a whole number, found {v}"))?;
                Value::Int(x.round() as i64)
            }
        },
        ValueType::Bool => match &v {
            Value::Bool(_) => v,
            Value::Text(t) => {
                let t = t.trim();
                if ["ON", "TRUE", "YES", "1", "CLOSED_ON"]
                    .iter()
                    .any(|w| t.eq_ignore_ascii_case(w))
                {
                    Value::Bool(true)
                } else if ["OFF", "FALSE", "NO", "0", ""]
                    .iter()
                    .any(|w| t.eq_ignore_ascii_case(w))
                {
                    Value::Bool(false)
                } else {
                    return Err(format!("expected ON/OFF, TRUE/FALSE or 1/0, found {t:?}"));
                }
            }
            other => Value::Bool(numeric(other).is_some_and(|x| x != 0.0)),
        },
    })
}

/// A signal fed by source items.
#[derive(Clone, Debug)]
pub struct SourceRule {
    pub signal: usize,
    pub matchers: Vec<Matcher>,
    pub transform: Transform,
    /// For condition sources: the level from which the signal is true.
    pub alarm_level: ConditionLevel,
}

/// A signal computed from other signals.
#[derive(Clone, Debug)]
pub struct Derived {
    pub signal: usize,
    pub expr: Expr,
    pub reads: Vec<usize>,
    pub transform: Transform,
}

/// One state rule: when `when` holds (or always, without it), the field takes `value`.
#[derive(Clone, Debug)]
pub struct Rule {
    pub when: Option<Expr>,
    pub value: Value,
}

/// The canonical state fields a profile can derive with rules.
pub const STATE_FIELDS: [&str; 6] = [
    signals::AVAILABILITY,
    signals::EXECUTION,
    signals::CONTROLLER_MODE,
    signals::FUNCTIONAL_MODE,
    signals::EMERGENCY_STOP,
    signals::ALARM,
];

/// A compiled profile.
#[derive(Clone, Debug)]
pub struct Profile {
    pub name: String,
    pub description: String,
    /// Every signal: the canonical ones first (in [`signals::ALL`] order), then the profile's.
    pub signals: Vec<SignalId>,
    pub sources: Vec<SourceRule>,
    pub derived: Vec<Derived>,
    /// Per [`STATE_FIELDS`] entry: its rules, if the profile derives it.
    pub state: [Option<Vec<Rule>>; 6],
    /// SHDR keys whose values are not plain (conditions, messages, time series).
    pub shapes: BTreeMap<String, ItemShape>,
    /// The Modbus register map (`[[register]]`), for the Modbus driver.
    pub registers: Vec<crate::drivers::modbus::map::Register>,
}

impl Profile {
    /// The transform of signal `sig` (its first source rule's, or its expression's).
    pub fn transform_of(&self, sig: usize) -> Option<&Transform> {
        self.sources
            .iter()
            .find(|r| r.signal == sig)
            .map(|r| &r.transform)
            .or_else(|| {
                self.derived
                    .iter()
                    .find(|d| d.signal == sig)
                    .map(|d| &d.transform)
            })
    }
}

impl Profile {
    pub fn signal_index(&self, id: &str) -> Option<usize> {
        self.signals.iter().position(|s| s.as_str() == id)
    }

    /// The first source rule matching a source item, if any.
    pub fn route(&self, key: &str, meta: Option<&DataItemMeta>) -> Option<usize> {
        self.sources
            .iter()
            .position(|r| r.matchers.iter().any(|m| m.matches(key, meta)))
    }

    /// SHDR item descriptions from `[shapes]`, for the SHDR driver.
    pub fn shdr_items(&self) -> impl Iterator<Item = (String, Arc<DataItemMeta>)> + '_ {
        self.shapes.iter().map(|(k, shape)| {
            let (category, item_type, representation) = match shape {
                ItemShape::Condition => (Some(ItemCategory::Condition), "SYSTEM", None),
                ItemShape::Message => (Some(ItemCategory::Event), "MESSAGE", None),
                ItemShape::TimeSeries => (
                    Some(ItemCategory::Sample),
                    "UNKNOWN",
                    Some("TIME_SERIES".to_string()),
                ),
                ItemShape::Value => (None, "UNKNOWN", None),
            };
            (
                k.clone(),
                Arc::new(DataItemMeta {
                    id: k.clone(),
                    name: Some(k.clone()),
                    category,
                    item_type: item_type.to_string(),
                    representation,
                    ..DataItemMeta::default()
                }),
            )
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// Where profiles come from: the built-in ones, and optionally a directory whose files add to
/// them or replace them by name.
#[derive(Clone, Debug, Default)]
pub struct ProfileSource {
    pub dir: Option<PathBuf>,
}

impl ProfileSource {
    /// The TOML text of profile `name` and the file name to report errors against.
    fn text(&self, name: &str) -> Option<(String, String)> {
        if let Some(dir) = &self.dir {
            let path = dir.join(format!("{name}.toml"));
            if let Ok(text) = std::fs::read_to_string(&path) {
                return Some((text, path.display().to_string()));
            }
        }
        BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, t)| (t.to_string(), format!("profiles/{n}.toml")))
    }

    /// Every profile name available, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = BUILTIN.iter().map(|(n, _)| n.to_string()).collect();
        if let Some(dir) = &self.dir {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    let p = e.path();
                    if p.extension().is_some_and(|x| x == "toml") {
                        if let Some(stem) = p.file_stem().and_then(|s| s.to_str()) {
                            names.push(stem.to_string());
                        }
                    }
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// Loads and compiles profile `name` (following `extends`).
    pub fn load(&self, name: &str) -> Result<Profile, ProfileLoadError> {
        let mut chain = Vec::new();
        self.load_chain(name, &mut chain)
    }

    fn load_chain(&self, name: &str, chain: &mut Vec<String>) -> Result<Profile, ProfileLoadError> {
        if chain.iter().any(|n| n == name) {
            chain.push(name.to_string());
            return Err(ProfileLoadError::Cycle(chain.join(" → ")));
        }
        chain.push(name.to_string());
        let Some((text, file)) = self.text(name) else {
            return Err(ProfileLoadError::Unknown {
                name: name.to_string(),
                known: self.names(),
            });
        };
        let raw = parse_raw(&text, &file).map_err(ProfileLoadError::Invalid)?;
        let parent = parent_of(&raw, &text, &file, |p| self.load_chain(p, chain))?;
        compile(name, &raw, parent.as_ref(), &text, &file).map_err(ProfileLoadError::Invalid)
    }
}

/// Why a profile could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ProfileLoadError {
    #[error("unknown profile {name:?}; known profiles: {}", known.join(", "))]
    Unknown { name: String, known: Vec<String> },
    #[error("profiles extend each other in a circle: {0}")]
    Cycle(String),
    #[error("{0}")]
    Invalid(ConfigErrors),
}

/// Loads and compiles one profile file on its own (`shopbridge check --profile FILE`).
/// `extends` is resolved against the file's directory and the built-in profiles.
pub fn load_file(path: &Path) -> Result<Profile, ProfileLoadError> {
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("profile")
        .to_string();
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ProfileLoadError::Invalid(ConfigErrors::one(ConfigError {
            location: Location::FileOnly { file: file.clone() },
            key: None,
            message: format!("cannot read the profile: {e}"),
        }))
    })?;
    let raw = parse_raw(&text, &file).map_err(ProfileLoadError::Invalid)?;
    let source = ProfileSource {
        dir: path.parent().map(Path::to_path_buf),
    };
    let parent = parent_of(&raw, &text, &file, |p| source.load(p))?;
    compile(&name, &raw, parent.as_ref(), &text, &file).map_err(ProfileLoadError::Invalid)
}

/// Compiles a profile from TOML text (tests, and the built-ins).
pub fn load_str(
    name: &str,
    text: &str,
    source: &ProfileSource,
) -> Result<Profile, ProfileLoadError> {
    let file = format!("profiles/{name}.toml");
    let raw = parse_raw(text, &file).map_err(ProfileLoadError::Invalid)?;
    let parent = parent_of(&raw, text, &file, |p| source.load(p))?;
    compile(name, &raw, parent.as_ref(), text, &file).map_err(ProfileLoadError::Invalid)
}

/// Loads the profile `raw` extends, if any; an unknown name is reported at its `extends` key.
fn parent_of(
    raw: &RawProfile,
    text: &str,
    file: &str,
    load: impl FnOnce(&str) -> Result<Profile, ProfileLoadError>,
) -> Result<Option<Profile>, ProfileLoadError> {
    let Some(p) = &raw.extends else {
        return Ok(None);
    };
    load(p.get_ref().trim()).map(Some).map_err(|e| match e {
        ProfileLoadError::Unknown { name, known } => {
            ProfileLoadError::Invalid(ConfigErrors::one(at(
                text,
                file,
                p.span(),
                "extends",
                format!("unknown profile {name:?}; known: {}", known.join(", ")),
            )))
        }
        other => other,
    })
}

fn at(text: &str, file: &str, span: Range<usize>, key: &str, message: String) -> ConfigError {
    let (line, column) = line_column(text, span.start);
    ConfigError {
        location: Location::File {
            file: file.to_string(),
            line,
            column,
        },
        key: Some(key.to_string()).filter(|k| !k.is_empty()),
        message,
    }
}

fn parse_raw(text: &str, file: &str) -> Result<RawProfile, ConfigErrors> {
    toml::from_str::<RawProfile>(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim().replace('\n', " ");
        ConfigErrors::one(at(text, file, span, "", message))
    })
}

struct Ctx<'a> {
    text: &'a str,
    file: &'a str,
    errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    fn err(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        let e = at(self.text, self.file, span, key, message.into());
        self.errors.push(e);
    }

    fn duration(&mut self, v: &Option<Spanned<String>>, key: &str) -> Option<Duration> {
        let v = v.as_ref()?;
        match crate::config::human::parse_duration(v.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(v.span(), key, e);
                None
            }
        }
    }
}

fn toml_value(v: &toml::Value) -> Option<Value> {
    Some(match v {
        toml::Value::String(s) if s == "UNAVAILABLE" => Value::Unavailable,
        toml::Value::String(s) => Value::Text(Arc::from(s.as_str())),
        toml::Value::Integer(i) => Value::Int(*i),
        toml::Value::Float(f) => Value::Float(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        _ => return None,
    })
}

fn category(s: &str) -> Option<ItemCategory> {
    match s.to_ascii_uppercase().as_str() {
        "SAMPLE" => Some(ItemCategory::Sample),
        "EVENT" => Some(ItemCategory::Event),
        "CONDITION" => Some(ItemCategory::Condition),
        _ => None,
    }
}

/// Checks that a state rule's value is a word of its field.
fn valid_state_word(field: &str, v: &Value) -> Result<(), String> {
    // The same check the normalizer makes of a state signal's value, except that a rule's
    // alarm must be true or false.
    let ok = if field == signals::ALARM {
        matches!(v, Value::Bool(_) | Value::Unavailable)
    } else {
        super::valid_for(field, v)
    };
    if ok {
        Ok(())
    } else {
        let words = match field {
            signals::AVAILABILITY => "AVAILABLE, UNAVAILABLE",
            signals::EXECUTION => {
                "READY, ACTIVE, INTERRUPTED, FEED_HOLD, STOPPED, OPTIONAL_STOP, PROGRAM_STOPPED, PROGRAM_COMPLETED, WAIT"
            }
            signals::CONTROLLER_MODE => {
                "AUTOMATIC, MANUAL, MANUAL_DATA_INPUT, SEMI_AUTOMATIC, EDIT"
            }
            signals::FUNCTIONAL_MODE => {
                "PRODUCTION, SETUP, TEARDOWN, MAINTENANCE, PROCESS_DEVELOPMENT"
            }
            signals::EMERGENCY_STOP => "ARMED, TRIGGERED",
            _ => "true or false",
        };
        Err(format!(
            "expected one of {words}, found {:?}",
            v.to_string()
        ))
    }
}

fn compile(
    name: &str,
    raw: &RawProfile,
    parent: Option<&Profile>,
    text: &str,
    file: &str,
) -> Result<Profile, ConfigErrors> {
    let mut cx = Ctx {
        text,
        file,
        errors: Vec::new(),
    };
    let mut names: Vec<SignalId> = signals::ALL.iter().map(|s| SignalId::new(s)).collect();
    // The parent's own signals exist here too, so expressions may read them.
    if let Some(p) = parent {
        for s in &p.signals {
            if !names.contains(s) {
                names.push(s.clone());
            }
        }
    }
    // Declare this profile's signals first, so that any expression may name any of them (the
    // evaluation order below still follows the file).
    for s in &raw.signal {
        let id = s.get_ref().id.get_ref().trim();
        let bad = id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if bad {
            cx.err(
                s.get_ref().id.span(),
                "signal.id",
                format!("expected a signal id of letters, digits, '_', '.' or '-', found {id:?}"),
            );
            continue;
        }
        if !names.iter().any(|n| n.as_str() == id) {
            names.push(SignalId::new(id));
        }
    }
    let mut sources = Vec::new();
    let mut derived = Vec::new();
    let mut own_ids: Vec<String> = Vec::new();
    for (i, s) in raw.signal.iter().enumerate() {
        let key = format!("signal[{i}]");
        let sig = s.get_ref();
        let id = sig.id.get_ref().trim();
        let Some(index) = names.iter().position(|n| n.as_str() == id) else {
            continue;
        };
        if own_ids.iter().any(|o| o == id) {
            cx.err(
                sig.id.span(),
                &format!("{key}.id"),
                format!("signal {id:?} is defined twice in this profile; give each one [[signal]]"),
            );
            continue;
        }
        own_ids.push(id.to_string());
        let mut transform = Transform {
            scale: sig.scale,
            offset: sig.offset,
            ..Transform::default()
        };
        if let Some(m) = &sig.map {
            let mut entries = Vec::new();
            for (k, v) in m.get_ref() {
                match toml_value(v) {
                    Some(v) => entries.push((k.trim().to_string(), v)),
                    None => cx.err(
                        m.span(),
                        &format!("{key}.map.{k}"),
                        "expected a word, a number or true/false",
                    ),
                }
            }
            transform.map = Some(entries);
        }
        if let Some(u) = &sig.unmapped {
            match u.get_ref().trim() {
                "keep" => {}
                "unavailable" | "UNAVAILABLE" => transform.unmapped = Some(Value::Unavailable),
                other => transform.unmapped = Some(Value::Text(Arc::from(other))),
            }
        }
        if let Some(t) = &sig.value_type {
            transform.value_type = match t.get_ref().trim() {
                "text" => Some(ValueType::Text),
                "int" => Some(ValueType::Int),
                "float" => Some(ValueType::Float),
                "bool" => Some(ValueType::Bool),
                other => {
                    cx.err(
                        t.span(),
                        &format!("{key}.type"),
                        format!("expected one of text, int, float, bool, found {other:?}"),
                    );
                    None
                }
            };
        }
        if let Some(th) = &sig.threshold {
            let (on, off) = (th.get_ref().on, th.get_ref().off);
            if off > on {
                cx.err(
                    th.span(),
                    &format!("{key}.threshold"),
                    format!("expected off <= on (the signal turns on at `on` and off at `off`), found on = {on}, off = {off}"),
                );
            }
            transform.threshold = Some((on, off));
        }
        if let Some(ls) = &sig.levels {
            let mut bands = Vec::new();
            let mut last: Option<f64> = None;
            let n = ls.get_ref().len();
            for (j, l) in ls.get_ref().iter().enumerate() {
                let Some(value) = toml_value(&l.value) else {
                    cx.err(
                        ls.span(),
                        &format!("{key}.levels[{j}].value"),
                        "expected a word, number or boolean",
                    );
                    continue;
                };
                match (l.below, j + 1 == n) {
                    (Some(b), false) if last.is_none_or(|p| b > p) => last = Some(b),
                    (None, true) => {}
                    (Some(_), false) => cx.err(
                        ls.span(),
                        &format!("{key}.levels[{j}].below"),
                        "expected the bands in rising order of `below`",
                    ),
                    (_, false) => cx.err(
                        ls.span(),
                        &format!("{key}.levels[{j}].below"),
                        "every band but the last needs `below`",
                    ),
                    (Some(_), true) => cx.err(
                        ls.span(),
                        &format!("{key}.levels[{j}].below"),
                        "the last band takes everything above the others: leave `below` out",
                    ),
                }
                bands.push((l.below, value));
            }
            if n < 2 {
                cx.err(
                    ls.span(),
                    &format!("{key}.levels"),
                    "expected at least two bands",
                );
            }
            let h = sig.hysteresis.as_ref().map_or(0.0, |h| *h.get_ref());
            if let Some(hs) = &sig.hysteresis {
                if !(h >= 0.0 && h.is_finite()) {
                    cx.err(
                        hs.span(),
                        &format!("{key}.hysteresis"),
                        format!("expected a number of 0 or more, found {h}"),
                    );
                }
            }
            if sig.threshold.is_some() {
                cx.err(
                    ls.span(),
                    &format!("{key}.levels"),
                    "a signal has either `threshold` (on/off) or `levels` (bands), not both",
                );
            }
            transform.levels = Some((bands, h));
        } else if let Some(hs) = &sig.hysteresis {
            cx.err(
                hs.span(),
                &format!("{key}.hysteresis"),
                "`hysteresis` goes with `levels`",
            );
        }
        transform.debounce = cx.duration(&sig.debounce, &format!("{key}.debounce"));
        transform.min_hold = cx.duration(&sig.min_hold, &format!("{key}.min_hold"));
        transform.advancing = cx.duration(&sig.advancing, &format!("{key}.advancing"));
        transform.blink = cx.duration(&sig.blink, &format!("{key}.blink"));
        if let (Some(_), Some(b)) = (&sig.advancing, &sig.blink) {
            cx.err(
                b.span(),
                &format!("{key}.blink"),
                "a signal is either `advancing` (a counter going up) or `blink` (a lamp), not both",
            );
        }
        if let (Some(a), Some(_)) = (&sig.advancing, &sig.threshold) {
            cx.err(
                a.span(),
                &format!("{key}.advancing"),
                "`advancing` reads the number itself; it cannot follow a `threshold`",
            );
        }
        let alarm_level = match &sig.alarm_level {
            None => ConditionLevel::Fault,
            Some(l) => match ConditionLevel::parse(l.get_ref()) {
                Some(l @ (ConditionLevel::Fault | ConditionLevel::Warning)) => l,
                _ => {
                    cx.err(
                        l.span(),
                        &format!("{key}.alarm_level"),
                        format!("expected \"FAULT\" or \"WARNING\", found {:?}", l.get_ref()),
                    );
                    ConditionLevel::Fault
                }
            },
        };
        match (&sig.from, &sig.expr) {
            (Some(_), Some(e)) => cx.err(
                e.span(),
                &format!("{key}.expr"),
                "a signal is read either `from` source items or computed by `expr`, not both",
            ),
            (None, None) => cx.err(
                s.span(),
                &key,
                format!("signal {id:?} needs `from` (which source items feed it) or `expr` (how to compute it)"),
            ),
            (Some(from), None) => {
                let list: Vec<RawMatch> = match from.get_ref() {
                    OneOrMany::One(m) => vec![m.clone()],
                    OneOrMany::Many(v) => v.clone(),
                };
                let mut matchers = Vec::new();
                for m in list {
                    let cat = match &m.category {
                        None => None,
                        Some(c) => match category(c) {
                            Some(c) => Some(c),
                            None => {
                                cx.err(
                                    from.span(),
                                    &format!("{key}.from.category"),
                                    format!("expected SAMPLE, EVENT or CONDITION, found {c:?}"),
                                );
                                None
                            }
                        },
                    };
                    let matcher = Matcher {
                        key: m.key,
                        id: m.id,
                        name: m.name,
                        item_type: m.item_type,
                        sub_type: m.sub_type,
                        category: cat,
                        component: m.component,
                        component_name: m.component_name,
                    };
                    if matcher == Matcher::default() {
                        cx.err(
                            from.span(),
                            &format!("{key}.from"),
                            "an empty match would take every item; say at least one of key, id, name, type, sub_type, category, component",
                        );
                        continue;
                    }
                    matchers.push(matcher);
                }
                sources.push(SourceRule {
                    signal: index,
                    matchers,
                    transform,
                    alarm_level,
                });
            }
            (None, Some(e)) => {
                let resolve = |n: &str| names.iter().position(|x| x.as_str() == n);
                match expr::parse(e.get_ref(), resolve) {
                    Ok(ex) => {
                        let mut reads = Vec::new();
                        ex.reads(&mut reads);
                        if reads.contains(&index) {
                            cx.err(
                                e.span(),
                                &format!("{key}.expr"),
                                format!("signal {id:?} reads itself"),
                            );
                        }
                        derived.push(Derived {
                            signal: index,
                            expr: ex,
                            reads,
                            transform,
                        });
                    }
                    Err(pe) => {
                        // Point at the character inside the quoted expression.
                        let span = e.span();
                        let start = (span.start + 1 + pe.offset).min(span.end);
                        cx.err(start..start, &format!("{key}.expr"), pe.message);
                    }
                }
            }
        }
    }
    let mut state: [Option<Vec<Rule>>; 6] = Default::default();
    let raw_state = [
        &raw.state.availability,
        &raw.state.execution,
        &raw.state.controller_mode,
        &raw.state.functional_mode,
        &raw.state.emergency_stop,
        &raw.state.alarm,
    ];
    for (f, rules) in raw_state.into_iter().enumerate() {
        let Some(rules) = rules else { continue };
        let field = STATE_FIELDS[f];
        let mut out = Vec::new();
        for (j, r) in rules.iter().enumerate() {
            let key = format!("state.{field}[{j}]");
            let rule = r.get_ref();
            let Some(value) = toml_value(rule.value.get_ref()) else {
                cx.err(
                    rule.value.span(),
                    &format!("{key}.value"),
                    "expected a word or true/false",
                );
                continue;
            };
            if let Err(e) = valid_state_word(field, &value) {
                cx.err(rule.value.span(), &format!("{key}.value"), e);
            }
            let when = match &rule.when {
                None => None,
                Some(w) => {
                    let resolve = |n: &str| names.iter().position(|x| x.as_str() == n);
                    match expr::parse(w.get_ref(), resolve) {
                        Ok(e) => Some(e),
                        Err(pe) => {
                            let span = w.span();
                            let start = (span.start + 1 + pe.offset).min(span.end);
                            cx.err(start..start, &format!("{key}.when"), pe.message);
                            None
                        }
                    }
                }
            };
            if rule.when.is_some() && when.is_none() {
                continue;
            }
            out.push(Rule { when, value });
        }
        state[f] = Some(out);
    }
    let mut shapes = BTreeMap::new();
    for (list, shape) in [
        (&raw.shapes.condition, ItemShape::Condition),
        (&raw.shapes.message, ItemShape::Message),
        (&raw.shapes.time_series, ItemShape::TimeSeries),
    ] {
        for k in list {
            shapes.insert(k.trim().to_string(), shape);
        }
    }
    // Inherit from the parent what this profile does not say itself.
    if let Some(p) = parent {
        let remap = |i: usize| {
            names
                .iter()
                .position(|n| *n == p.signals[i])
                .unwrap_or(usize::MAX)
        };
        // Matching order: this profile's new signals first (they are the more specific), then
        // the parent's in its own order, a signal this profile redefines taking its place
        // there (so that, say, `part_count_target` still comes before `part_count`).
        let parent_defines =
            |name: &SignalId| p.sources.iter().any(|r| p.signals[r.signal] == *name);
        let (redefined, mut merged): (Vec<SourceRule>, Vec<SourceRule>) = sources
            .into_iter()
            .partition(|r| parent_defines(&names[r.signal]));
        let mut placed = Vec::new();
        for r in &p.sources {
            let name = &p.signals[r.signal];
            if own_ids.iter().any(|o| *o == name.as_str()) {
                if !placed.contains(name) {
                    placed.push(name.clone());
                    merged.extend(
                        redefined
                            .iter()
                            .filter(|c| names[c.signal] == *name)
                            .cloned(),
                    );
                }
            } else {
                let mut r = r.clone();
                r.signal = remap(r.signal);
                merged.push(r);
            }
        }
        sources = merged;
        let mut inherited = Vec::new();
        for d in &p.derived {
            if !own_ids.iter().any(|o| *o == p.signals[d.signal].as_str()) {
                let mut d = d.clone();
                d.signal = remap(d.signal);
                d.reads = d.reads.iter().map(|i| remap(*i)).collect();
                d.expr = remap_expr(&d.expr, &remap);
                inherited.push(d);
            }
        }
        inherited.append(&mut derived);
        derived = inherited;
        for (f, rules) in p.state.iter().enumerate() {
            if state[f].is_none() {
                state[f] = rules.as_ref().map(|rs| {
                    rs.iter()
                        .map(|r| Rule {
                            when: r.when.as_ref().map(|e| remap_expr(e, &remap)),
                            value: r.value.clone(),
                        })
                        .collect()
                });
            }
        }
        for (k, v) in &p.shapes {
            shapes.entry(k.clone()).or_insert(*v);
        }
    }
    let mut registers = compile_registers(&mut cx, &raw.register);
    if let Some(p) = parent {
        let mut inherited: Vec<_> = p
            .registers
            .iter()
            .filter(|r| !registers.iter().any(|o| o.key == r.key))
            .cloned()
            .collect();
        inherited.append(&mut registers);
        registers = inherited;
    }
    if !cx.errors.is_empty() {
        return Err(ConfigErrors::new(cx.errors));
    }
    Ok(Profile {
        registers,
        name: name.to_string(),
        description: raw
            .description
            .clone()
            .or_else(|| parent.map(|p| p.description.clone()))
            .unwrap_or_default(),
        signals: names,
        sources,
        derived,
        state,
        shapes,
    })
}

fn remap_expr(e: &Expr, remap: &impl Fn(usize) -> usize) -> Expr {
    match e {
        Expr::Lit(v) => Expr::Lit(v.clone()),
        Expr::Signal(i) => Expr::Signal(remap(*i)),
        Expr::Not(x) => Expr::Not(Box::new(remap_expr(x, remap))),
        Expr::And(a, b) => Expr::And(
            Box::new(remap_expr(a, remap)),
            Box::new(remap_expr(b, remap)),
        ),
        Expr::Or(a, b) => Expr::Or(
            Box::new(remap_expr(a, remap)),
            Box::new(remap_expr(b, remap)),
        ),
        Expr::Cmp(op, a, b) => Expr::Cmp(
            *op,
            Box::new(remap_expr(a, remap)),
            Box::new(remap_expr(b, remap)),
        ),
    }
}

/// The profile of a machine that has none: no rules, so canonical keys map onto themselves and
/// everything else passes through.
pub fn identity() -> Profile {
    Profile {
        name: "identity".into(),
        description: "canonical signal ids only".into(),
        signals: signals::ALL.iter().map(|s| SignalId::new(s)).collect(),
        sources: Vec::new(),
        derived: Vec::new(),
        state: Default::default(),
        shapes: BTreeMap::new(),
        registers: Vec::new(),
    }
}

/// `[[register]]` entries, checked: a known table and type, an address 0-65535, a bit only
/// in a register, `string` with its length, one entry per key.
fn compile_registers(
    cx: &mut Ctx<'_>,
    raw: &[Spanned<RawRegister>],
) -> Vec<crate::drivers::modbus::map::Register> {
    use crate::drivers::modbus::map::{DataType, Register, Table};
    let mut out: Vec<Register> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let key = format!("register[{i}]");
        let r = r.get_ref();
        let before = cx.errors.len();
        let name = r.key.get_ref().trim();
        if name.is_empty() {
            cx.err(
                r.key.span(),
                &format!("{key}.key"),
                "expected the key its values are journaled under, found an empty string",
            );
        } else if out.iter().any(|o| &*o.key == name) {
            cx.err(
                r.key.span(),
                &format!("{key}.key"),
                format!("{name:?} is already the key of another register"),
            );
        }
        let table = Table::parse(r.table.get_ref());
        if table.is_none() {
            cx.err(r.table.span(), &format!("{key}.table"), format!("expected \"coil\" (function 1), \"discrete_input\" (2), \"holding\" (3) or \"input\" (4), found {:?}", r.table.get_ref()));
        }
        let address = u16::try_from(*r.address.get_ref()).ok();
        if address.is_none() {
            cx.err(
                r.address.span(),
                &format!("{key}.address"),
                format!(
                    "expected a 0-based address 0-65535 (holding register 40001 is 0), found {}",
                    r.address.get_ref()
                ),
            );
        }
        let length = match &r.length {
            None => None,
            Some(l) => match u16::try_from(*l.get_ref()) {
                Ok(n) if (1..=125).contains(&n) => Some(n),
                _ => {
                    cx.err(
                        l.span(),
                        &format!("{key}.length"),
                        format!(
                            "expected the registers a string spans, 1-125, found {}",
                            l.get_ref()
                        ),
                    );
                    None
                }
            },
        };
        let bits = table.is_some_and(Table::is_bits);
        let data_type = match &r.data_type {
            None if bits || r.bit.is_some() => Some(DataType::Bool),
            None => Some(DataType::U16),
            Some(t) => {
                match DataType::parse(t.get_ref(), length) {
                    Some(d) => {
                        if matches!(d, DataType::String(_))
                            && length.is_none()
                            && r.length.is_none()
                        {
                            cx.err(
                                t.span(),
                                &format!("{key}.type"),
                                "a string needs `length`: the registers it spans",
                            );
                        }
                        if bits && d != DataType::Bool {
                            cx.err(t.span(), &format!("{key}.type"), format!("coils and discrete inputs are bits: expected \"bool\", found {:?}", t.get_ref()));
                        }
                        Some(d)
                    }
                    None => {
                        cx.err(t.span(), &format!("{key}.type"), format!("expected one of bool, u16, i16, u32, i32, f32, f64, string, found {:?}", t.get_ref()));
                        None
                    }
                }
            }
        };
        let bit = match &r.bit {
            None => None,
            Some(b) => match u8::try_from(*b.get_ref()) {
                Ok(n) if n < 16 && !bits && data_type == Some(DataType::Bool) => Some(n),
                Ok(n) if n < 16 => {
                    cx.err(
                        b.span(),
                        &format!("{key}.bit"),
                        "`bit` picks one bit of a holding or input register, read as a bool",
                    );
                    Some(n)
                }
                _ => {
                    cx.err(
                        b.span(),
                        &format!("{key}.bit"),
                        format!(
                            "expected a bit 0-15 (0 = least significant), found {}",
                            b.get_ref()
                        ),
                    );
                    None
                }
            },
        };
        let mut order = |o: &Option<Spanned<String>>, what: &str| match o {
            None => true,
            Some(v) => match v.get_ref().trim().to_ascii_lowercase().as_str() {
                "big" => true,
                "little" => false,
                other => {
                    cx.err(
                        v.span(),
                        &format!("{key}.{what}"),
                        format!("expected \"big\" or \"little\", found {other:?}"),
                    );
                    true
                }
            },
        };
        let word_big = order(&r.word_order, "word_order");
        let byte_big = order(&r.byte_order, "byte_order");
        let unit = match &r.unit {
            None => None,
            Some(u) => match u8::try_from(*u.get_ref()) {
                Ok(n) if n <= 247 => Some(n),
                _ => {
                    cx.err(
                        u.span(),
                        &format!("{key}.unit"),
                        format!("expected a unit id 0-247, found {}", u.get_ref()),
                    );
                    None
                }
            },
        };
        if cx.errors.len() > before {
            continue;
        }
        if let (Some(table), Some(address), Some(data_type)) = (table, address, data_type) {
            out.push(Register {
                key: Arc::from(name),
                table,
                address,
                data_type,
                word_big,
                byte_big,
                bit,
                scale: r.scale,
                offset: r.offset,
                unit,
            });
        }
    }
    out
}
