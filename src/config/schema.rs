//! The serde *schema* of the configuration file: exactly what the TOML may say, nothing more
//! (`deny_unknown_fields` everywhere). Values whose meaning needs checking (addresses,
//! durations, sizes, ids) stay text here; [`super::compile`] turns a schema into the validated
//! [`super::Config`] and reports every problem with the key path that caused it.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// The top-level sections. Every section is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub http: RawHttp,
    pub journal: RawJournal,
    pub log: RawLog,
    pub sim: RawSim,
    pub taxonomy: RawTaxonomy,
    pub profiles: RawProfiles,
    /// Absent: no OPC UA server. Present: served unless `enabled = false`.
    pub opcua: Option<RawOpcua>,
    /// Absent: no Sparkplug edge node.
    pub sparkplug: Option<RawSparkplug>,
    pub mqtt: Option<RawMqtt>,
    pub context: RawContext,
    /// `[calendars.<name>]`: shift calendars machines refer to.
    pub calendars: std::collections::BTreeMap<String, RawCalendar>,
    pub machines: Vec<RawMachine>,
    /// `[[plugins]]`: out-of-process drivers machines name with `type = "plugin"`.
    pub plugins: Vec<RawPlugin>,
}

/// The top-level keys [`RawConfig`] knows, in the order the reference documents them.
pub const SECTIONS: [&str; 13] = [
    "http",
    "journal",
    "log",
    "sim",
    "taxonomy",
    "profiles",
    "opcua",
    "sparkplug",
    "mqtt",
    "context",
    "calendars",
    "machines",
    "plugins",
];

/// `[context]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawContext {
    /// Site rules, tried before the built-in ones.
    pub rules: Vec<crate::context::rules::RawRule>,
    /// Keep the built-in rules after the site's (default true).
    pub default_rules: Option<bool>,
    /// ERP work center → machine id.
    pub work_centers: std::collections::BTreeMap<String, String>,
    /// `[context.drop_folder]`: a directory the ERP exports dispatch files into.
    pub drop_folder: Option<RawDropFolder>,
}

/// `[context.drop_folder]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawDropFolder {
    pub dir: PathBuf,
    /// Field → the CSV header that holds it.
    #[serde(default)]
    pub columns: std::collections::BTreeMap<String, String>,
    pub interval: Option<Human>,
}

/// `[calendars.<name>]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawCalendar {
    pub time_zone: Option<String>,
    pub holidays: Vec<String>,
    pub shifts: Vec<RawShift>,
    pub planned: Vec<RawPlanned>,
}

/// `[[calendars.<name>.shifts]]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawShift {
    pub name: String,
    pub days: Vec<String>,
    pub start: String,
    pub end: String,
    #[serde(default)]
    pub breaks: Vec<RawBreak>,
}

/// A break inside a shift.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawBreak {
    pub start: String,
    pub end: String,
    /// Default `planned_downtime`.
    pub category: Option<String>,
}

/// `[[calendars.<name>.planned]]`: a one-off planned window, local time.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawPlanned {
    pub start: String,
    pub end: String,
    pub category: Option<String>,
    pub reason: Option<String>,
}

/// `[http]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawHttp {
    pub listen: Option<String>,
    /// The role of a request from this host (loopback) that brings no token.
    pub local_role: Option<String>,
    pub tokens: Vec<RawToken>,
    pub max_connections: Option<u64>,
}

/// `[[http.tokens]]`: an API token, kept as its SHA-256.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    pub name: String,
    pub role: String,
    pub sha256: String,
}

/// `[journal]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawJournal {
    pub dir: Option<PathBuf>,
    pub max_age: Option<Human>,
    pub max_bytes: Option<Human>,
    pub hard_cap_bytes: Option<Human>,
    pub batch_max_records: Option<u64>,
    pub min_free_bytes: Option<Human>,
}

/// `[log]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub level: Option<String>,
    pub format: Option<LogFormat>,
}

/// `[log] format`
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// `[sim]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawSim {
    pub speed: Option<f64>,
    pub seed: Option<u64>,
}

/// `[taxonomy]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawTaxonomy {
    pub categories: Option<Vec<String>>,
}

/// `[profiles]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawProfiles {
    pub dir: Option<PathBuf>,
}

/// `[opcua]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawOpcua {
    pub enabled: Option<bool>,
    pub listen: Option<String>,
    pub hostname: Option<String>,
    pub security_none: Option<bool>,
    pub anonymous: Option<bool>,
    pub nodesets_dir: Option<PathBuf>,
    pub max_monitored_items: Option<u64>,
    pub min_publishing_interval: Option<Human>,
    pub users: Vec<RawOpcuaUser>,
}

/// `[sparkplug]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawSparkplug {
    pub enabled: Option<bool>,
    pub group_id: Option<String>,
    pub edge_node_id: Option<String>,
    pub primary_host_id: Option<String>,
    pub rebirth_cooldown: Option<Human>,
}

/// `[mqtt]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawMqtt {
    pub url: Option<String>,
    pub embedded: Option<bool>,
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub keep_alive: Option<Human>,
}

/// `[[opcua.users]]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawOpcuaUser {
    pub name: String,
    pub password_hash: String,
    pub role: String,
}

/// `[machines.identification]`: what OPC UA shows as the machine's nameplate.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawIdentification {
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub serial_number: Option<String>,
    pub software_revision: Option<String>,
    pub location: Option<String>,
}

/// One `[[machines]]` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawMachine {
    pub id: String,
    pub name: String,
    pub profile: String,
    #[serde(default)]
    pub identification: RawIdentification,
    /// The shift calendar (a `[calendars.<name>]`); default: the one named `default`, if any.
    pub calendar: Option<String>,
    /// Parts made per step of the part counter (default 1).
    pub parts_per_cycle: Option<u32>,
    pub driver: RawDriver,
}

/// `[machines.driver]`, tagged by its `type` key. A later protocol is one more variant here and
/// one more arm in [`super::compile`].
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum RawDriver {
    Sim(RawSimDriver),
    Shdr(RawShdrDriver),
    Mtconnect(RawMtconnectDriver),
    Haas(RawHaasDriver),
    Modbus(RawModbusDriver),
    Focas(RawFocasDriver),
    Opcua(RawOpcuaDriver),
    Plugin(RawPluginDriver),
}

/// The driver types this build knows, as written in `type = "..."`.
pub const DRIVER_TYPES: [&str; 8] = [
    "sim",
    "shdr",
    "mtconnect",
    "haas",
    "modbus",
    "focas",
    "opcua",
    "plugin",
];

/// Driver types that are planned but not in this build yet; named in the error for an unknown
/// type so that nobody goes looking for a typo.
pub const PLANNED_DRIVER_TYPES: [&str; 0] = [];

/// `type = "sim"`: a simulated machine, for demos and tests.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawSimDriver {
    pub seed: Option<u64>,
}

/// `type = "shdr"`: an MTConnect adapter's SHDR stream over TCP.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawShdrDriver {
    pub address: String,
    pub heartbeat: Option<Human>,
    pub device: Option<String>,
    pub devices_file: Option<PathBuf>,
}

/// `type = "mtconnect"`: an MTConnect agent's REST interface (probe, current, sample).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawMtconnectDriver {
    pub url: String,
    pub device: Option<String>,
    pub interval: Option<Human>,
    pub heartbeat: Option<Human>,
}

/// `type = "haas"`: a Haas control's Machine Data Collection (Q-commands), over Ethernet
/// (`address`) or RS-232 (`serial`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawHaasDriver {
    pub address: Option<String>,
    pub serial: Option<RawSerial>,
    pub interval: Option<Human>,
    pub timeout: Option<Human>,
    #[serde(default)]
    pub macros: Vec<i64>,
}

/// `type = "modbus"`: a Modbus TCP device (`address`) or Modbus RTU on a serial line
/// (`serial`); the register map is the profile's.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawModbusDriver {
    pub address: Option<String>,
    pub serial: Option<RawSerial>,
    pub unit: Option<i64>,
    pub interval: Option<Human>,
    pub timeout: Option<Human>,
}

/// `type = "focas"`: a Fanuc control's FOCAS/Ethernet port (`address`, port 8193 when left
/// out).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawFocasDriver {
    pub address: String,
    pub interval: Option<Human>,
    pub timeout: Option<Human>,
    #[serde(default)]
    pub macros: Vec<i64>,
    #[serde(default)]
    pub params: Vec<i64>,
}

/// A serial line (`serial = { port = "/dev/ttyUSB0", baud = 9600 }`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawSerial {
    pub port: String,
    pub baud: Option<u32>,
    pub data_bits: Option<u8>,
    pub parity: Option<String>,
    pub stop_bits: Option<u8>,
    pub flow: Option<String>,
}

/// A human-written value, kept as text until compiled: a string (`"2GiB"`, `"30d"`) or a plain
/// number (`4096`, written back as `"4096"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Human(pub String);

impl<'de> Deserialize<'de> for Human {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct HumanVisitor;
        impl Visitor<'_> for HumanVisitor {
            type Value = Human;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string like \"30d\" or \"2GiB\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Human, E> {
                Ok(Human(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Human, E> {
                Ok(Human(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Human, E> {
                Ok(Human(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Human, E> {
                Ok(Human(v.to_string()))
            }
        }
        d.deserialize_any(HumanVisitor)
    }
}

/// `type = "opcua"`: an OPC UA server, read with subscriptions.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawOpcuaDriver {
    pub endpoint: String,
    pub security_policy: Option<String>,
    pub security_mode: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub pki_dir: Option<PathBuf>,
    pub trust_server: Option<bool>,
    #[serde(default)]
    pub nodes: Vec<RawOpcuaNode>,
    pub browse: Option<String>,
    pub browse_depth: Option<i64>,
    pub max_items: Option<i64>,
    pub publishing_interval: Option<Human>,
    pub sampling_interval: Option<Human>,
    pub deadband: Option<f64>,
    pub timeout: Option<Human>,
}

/// One entry of an OPC UA driver's `nodes`: a node id, or a table with its key and deadband.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum RawOpcuaNode {
    Id(String),
    Table(RawOpcuaNodeTable),
}

/// `{ node = "ns=2;s=…", key = "…", deadband = 0.5 }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawOpcuaNodeTable {
    pub node: String,
    pub key: Option<String>,
    pub deadband: Option<f64>,
}

/// `type = "plugin"`: a machine read by a `[[plugins]]` process.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawPluginDriver {
    pub plugin: String,
    /// Passed to the plugin in `init`, as this machine's settings.
    pub settings: Option<serde_json::Value>,
}

/// `[[plugins]]`: an out-of-process driver (plugins/PROTOCOL.md).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawPlugin {
    pub id: String,
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    pub settings: Option<serde_json::Value>,
    pub limits: Option<RawPluginLimits>,
    pub health_interval: Option<Human>,
    pub health_timeout: Option<Human>,
}

/// `[plugins.limits]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawPluginLimits {
    pub memory: Option<Human>,
    pub open_files: Option<i64>,
    pub max_line: Option<Human>,
}
