//! Configuration: one TOML file, every key overridable from the environment, compiled into a
//! validated [`Config`] that the rest of the program uses without re-checking.
//!
//! Layers, as cargo does it (`TomlManifest` -> `Manifest`):
//!
//! - [`schema`]: the serde shape of the file (`deny_unknown_fields` everywhere), values kept as
//!   written;
//! - [`load`](load()): reads the file, checks its syntax and each part's shape with exact
//!   positions, merges environment overrides through the `config` crate
//!   (`SHOPBRIDGE_<SECTION>__<KEY>`), then compiles;
//! - `compile`: turns the schema into the domain types below, collecting *every* problem.
//!
//! Every error names `file:line:column` (or the environment variable a bad value came from),
//! the key path, what was expected and what was found:
//!
//! ```text
//! shopbridge.toml:12:11: machines[1].driver.address: expected "host:port" with a port 1-65535, found "127.0.0.1:99999"
//! ```
//!
//! The reference for users is `docs/configuration.md`; `packaging/shopbridge.example.toml` is a
//! commented example that passes `shopbridge check`.

mod compile;
mod context;
mod error;
pub mod human;
mod load;
pub mod schema;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::{MachineId, Taxonomy};

pub use context::ContextConfig;
pub(crate) use error::line_column;
pub use error::{ConfigError, ConfigErrors, Location};
pub use load::{ENV_PREFIX, load, load_str, load_str_with_env, load_with_env};

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub http: HttpConfig,
    pub journal: JournalConfig,
    pub log: LogConfig,
    pub sim: SimConfig,
    pub taxonomy: Taxonomy,
    /// Where machine profiles beyond the built-in ones live (`[profiles] dir`).
    pub profiles: ProfilesConfig,
    /// `[opcua]`: the northbound OPC UA server; `None` when not served.
    pub opcua: Option<OpcuaConfig>,
    /// `[sparkplug]` + `[mqtt]`: the Sparkplug B edge node; `None` when not published.
    pub sparkplug: Option<SparkplugConfig>,
    /// `[context]` and `[calendars]`: classification rules, ERP work centers, shift calendars.
    pub context: ContextConfig,
    pub machines: Vec<MachineConfig>,
}

/// `[sparkplug]` and the `[mqtt]` connection it publishes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparkplugConfig {
    pub group_id: String,
    pub edge_node_id: String,
    /// Wait for this primary host's STATE before births (Sparkplug 3.0 primary host).
    pub primary_host_id: Option<String>,
    /// Rebirth requests closer together than this are ignored (against rebirth storms).
    pub rebirth_cooldown: Duration,
    pub mqtt: MqttConfig,
}

impl SparkplugConfig {
    /// The demo's edge node: group `demo-shop`, node `shopbridge`, publishing to the embedded
    /// broker on 127.0.0.1:`port`, or to `url`.
    pub fn demo(port: u16, url: Option<&str>) -> Result<Self, String> {
        let broker = match url {
            None => MqttBroker::Embedded { port },
            Some(u) => {
                let (host, port, tls) = compile::parse_mqtt_url(u)?;
                MqttBroker::External {
                    host,
                    port,
                    tls: tls.then_some(MqttTls {
                        ca_file: None,
                        client_cert: None,
                    }),
                }
            }
        };
        Ok(Self {
            group_id: "demo-shop".into(),
            edge_node_id: "shopbridge".into(),
            primary_host_id: None,
            rebirth_cooldown: Duration::from_secs(5),
            mqtt: MqttConfig {
                broker,
                client_id: "shopbridge-demo-shop-shopbridge".into(),
                username: None,
                password: None,
                keep_alive: Duration::from_secs(30),
            },
        })
    }
}

/// `[mqtt]`: the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttConfig {
    pub broker: MqttBroker,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub keep_alive: Duration,
}

/// Where the broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MqttBroker {
    /// An external broker (`mqtt://host:port`, or `mqtts://` with TLS).
    External {
        host: String,
        port: u16,
        tls: Option<MqttTls>,
    },
    /// The bridge starts rumqttd in-process on 127.0.0.1:`port` (the demo's broker).
    Embedded { port: u16 },
}

/// TLS for `mqtts://`: the CA that signed the broker's certificate (system roots when absent)
/// and an optional client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttTls {
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// `[opcua]`: the OPC UA server (OPC 40001 Machinery / OPC 40501 MachineTool).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpcuaConfig {
    /// Where the server listens (`opc.tcp://<listen>/`).
    pub listen: SocketAddr,
    /// The host name in endpoint URLs and in the application certificate; default: this
    /// machine's host name (or the listen address when that is a specific IP).
    pub hostname: Option<String>,
    /// Offer an endpoint without security (None/None). Off unless asked for.
    pub security_none: bool,
    /// Let clients in without a user name (with the viewer role).
    pub anonymous: bool,
    /// Where the OPC Foundation companion NodeSet2 files are (`nodesets/fetch` puts them in
    /// `nodesets/opcfoundation`).
    pub nodesets_dir: Option<PathBuf>,
    /// Monitored items one subscription may hold.
    pub max_monitored_items: usize,
    /// The shortest publishing and sampling interval clients may ask for.
    pub min_publishing_interval: Duration,
    pub users: Vec<OpcuaUser>,
}

impl OpcuaConfig {
    pub const DEFAULT_PORT: u16 = 4840;
    pub const DEFAULT_MAX_MONITORED_ITEMS: usize = 100_000;
    pub const DEFAULT_MIN_PUBLISHING_INTERVAL: Duration = Duration::from_millis(50);

    /// The demo's server: None security and anonymous access, on loopback only.
    pub fn demo(port: u16) -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            hostname: Some("127.0.0.1".into()),
            security_none: true,
            anonymous: true,
            ..Self::default()
        }
    }
}

impl Default for OpcuaConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), Self::DEFAULT_PORT),
            hostname: None,
            security_none: false,
            anonymous: false,
            nodesets_dir: None,
            max_monitored_items: Self::DEFAULT_MAX_MONITORED_ITEMS,
            min_publishing_interval: Self::DEFAULT_MIN_PUBLISHING_INTERVAL,
            users: Vec::new(),
        }
    }
}

/// `[[opcua.users]]`: who may log in, with an argon2 password hash (`shopbridge hash-password`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpcuaUser {
    pub name: String,
    /// A PHC string (`$argon2id$v=19$...`), checked to parse.
    pub password_hash: String,
    pub role: Role,
}

/// What a user (OPC UA) or token (REST) may do. Each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Browse, read, subscribe, export.
    Viewer,
    /// Also say what happens at a machine: stop reasons, sign-in and -out, operation
    /// confirmation, scrap (OPC UA methods, the operator tablet page).
    Operator,
    /// Also feed the schedule and quality: dispatch lists, jobs, holds, inspections.
    Planner,
    /// Everything, including re-classifying past time.
    Admin,
}

impl Role {
    pub const NAMES: [&'static str; 4] = ["viewer", "operator", "planner", "admin"];

    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Planner => "planner",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "planner" => Some(Role::Planner),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// `[machines.identification]`: the machine's nameplate as OPC UA shows it; what is not set is
/// left out (Model, SoftwareRevision, Location) or empty (Manufacturer, SerialNumber).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identification {
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub serial_number: Option<String>,
    pub software_revision: Option<String>,
    pub location: Option<String>,
}

/// `[http]`: the REST API, web floor view and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// The role of a request from the bridge's own host (a loopback address) that brings no
    /// token; `None` requires a token of everyone.
    pub local_role: Option<Role>,
    pub tokens: Vec<ApiToken>,
    /// Most HTTP connections open at once; more are closed as they come.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
            local_role: Some(Role::Operator),
            tokens: Vec::new(),
            max_connections: 256,
        }
    }
}

/// 64 hex digits (a SHA-256 as `shopbridge new-token` prints it) as bytes.
pub fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// `[[http.tokens]]`: who holds a REST API token and what it may do. Only the token's SHA-256
/// is kept (`shopbridge new-token` makes a token and its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub name: String,
    pub role: Role,
    pub sha256: [u8; 32],
}

/// `[journal]`: where records are kept and how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    pub dir: PathBuf,
    /// Acknowledged records older than this are removed.
    pub max_age: Duration,
    /// Acknowledged records beyond this total size are removed, oldest first.
    pub max_bytes: u64,
    /// At this size the oldest records are removed even if a consumer has not acknowledged
    /// them (data loss, logged). Always `>= max_bytes`.
    pub hard_cap_bytes: u64,
    /// The most records one consumer batch may hold. Always `>= 1`.
    pub batch_max_records: usize,
    /// Below this much free space on the data directory's file system the journal holds
    /// records (pausing collection) rather than fill the disk.
    pub min_free_bytes: u64,
}

impl JournalConfig {
    pub const DEFAULT_DIR: &'static str = "./shopbridge-data";
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30 * 86_400);
    pub const DEFAULT_MAX_BYTES: u64 = 2 << 30;
    pub const DEFAULT_HARD_CAP_BYTES: u64 = 4 << 30;
    pub const DEFAULT_BATCH_MAX_RECORDS: usize = 16_384;
    pub const DEFAULT_MIN_FREE_BYTES: u64 = 32 << 20;
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(Self::DEFAULT_DIR),
            max_age: Self::DEFAULT_MAX_AGE,
            max_bytes: Self::DEFAULT_MAX_BYTES,
            hard_cap_bytes: Self::DEFAULT_HARD_CAP_BYTES,
            batch_max_records: Self::DEFAULT_BATCH_MAX_RECORDS,
            min_free_bytes: Self::DEFAULT_MIN_FREE_BYTES,
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A `tracing_subscriber::EnvFilter` directive string, already checked to parse.
    pub level: String,
    /// JSON lines instead of human-readable text.
    pub json: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            json: false,
        }
    }
}

/// `[sim]`: the simulated shop.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Simulated time runs this many times faster than real time (> 0, finite). Anything but
    /// 1.0 only when every machine is simulated.
    pub speed: f64,
    /// Seed of the simulated shop; a machine's own `seed` overrides it for that machine.
    pub seed: u64,
    /// Microseconds from UTC to the simulated shop's calendar (shifts, breaks, weekends). 0 in
    /// configuration files (the calendar is UTC); the demo sets it so that it starts mid-shift.
    pub shop_offset_micros: i64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            speed: 1.0,
            seed: 1,
            shop_offset_micros: 0,
        }
    }
}

/// `[profiles]`: the built-in profiles are always there; a directory adds more, and a file
/// named like a built-in one replaces it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfilesConfig {
    pub dir: Option<PathBuf>,
}

impl ProfilesConfig {
    pub fn source(&self) -> crate::normalize::ProfileSource {
        crate::normalize::ProfileSource {
            dir: self.dir.clone(),
        }
    }
}

/// One `[[machines]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineConfig {
    pub id: MachineId,
    /// Human-readable name, never empty.
    pub name: String,
    /// The machine profile (a file in `profiles/`), never empty. Passed through as written
    /// until profiles are loaded.
    pub profile: String,
    pub identification: Identification,
    /// Its shift calendar's name (None: the calendar named `default`, if any).
    pub calendar: Option<String>,
    /// Parts made per step of its part counter.
    pub parts_per_cycle: u32,
    pub driver: DriverConfig,
}

/// How shopbridge talks to a machine. One variant per protocol; later ones (mtconnect, haas,
/// modbus, focas, opcua, plugin) are added as variants.
#[derive(Debug, Clone, PartialEq)]
pub enum DriverConfig {
    /// A simulated machine; `seed` overrides `[sim] seed` for this machine.
    Sim { seed: Option<u64> },
    /// An MTConnect adapter's SHDR stream over TCP.
    Shdr {
        /// `host:port`, port 1-65535 (checked; the host is resolved when connecting).
        address: String,
        /// Send `* PING` this often; reconnect after twice this long without a line. `None`
        /// uses the interval the adapter's `* PONG <ms>` advertises (10 s until it answers).
        heartbeat: Option<Duration>,
        /// The adapter's device name, when it serves several and prefixes keys (`device:key`).
        /// Lines for other devices go to the machines that name them.
        device: Option<String>,
        /// An MTConnect Devices document describing the adapter's data items, so that
        /// conditions, messages and time series are read by their shape and profiles can
        /// match by type.
        devices_file: Option<PathBuf>,
    },
    /// An MTConnect agent: `/probe`, `/current`, then streamed `/sample`.
    Mtconnect {
        /// The agent's base URL (`http://host:5000`, no trailing slash; may hold a path prefix).
        url: String,
        /// The agent's device (name or uuid) this machine is; `None` when the agent serves one.
        device: Option<String>,
        /// The agent's `interval`: how often it sends what changed.
        interval: Duration,
        /// The agent's `heartbeat`: an empty chunk at least this often; silence for twice as
        /// long means the stream is dead.
        heartbeat: Duration,
    },
    /// A Haas control's Machine Data Collection, over Ethernet or RS-232.
    Haas {
        spec: crate::drivers::haas::HaasSpec,
        /// How often the whole query set is read.
        interval: Duration,
    },
    /// A Modbus TCP or RTU device; the register map is the machine profile's.
    Modbus {
        transport: crate::drivers::modbus::Transport,
        /// The unit (slave) id of registers that do not name their own.
        unit: u8,
        /// How often the whole map is read.
        interval: Duration,
        /// How long one request may take.
        timeout: Duration,
    },
    /// A Fanuc control's FOCAS/Ethernet port.
    Focas {
        spec: crate::drivers::focas::FocasSpec,
        /// How often the whole set is read (one request packet).
        interval: Duration,
    },
    /// An OPC UA server (a control's own, or another bridge's): subscriptions, not polling.
    /// `spec.pki_dir` is empty when not configured: the app puts it under the data directory.
    Opcua {
        spec: crate::drivers::opcua_client::OpcuaSpec,
    },
    /// A machine read by an out-of-process plugin: the plugin's definition (shared by its
    /// machines) and this machine's settings.
    Plugin {
        plugin: std::sync::Arc<PluginDef>,
        settings: serde_json::Value,
    },
}

/// One `[[plugins]]` entry, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginDef {
    pub id: String,
    pub command: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub settings: serde_json::Value,
    pub limits: crate::drivers::plugin::Limits,
    pub health_interval: Duration,
    pub health_timeout: Duration,
}

impl DriverConfig {
    /// The `type = "..."` word of this driver.
    pub fn type_name(&self) -> &'static str {
        match self {
            DriverConfig::Sim { .. } => "sim",
            DriverConfig::Shdr { .. } => "shdr",
            DriverConfig::Mtconnect { .. } => "mtconnect",
            DriverConfig::Haas { .. } => "haas",
            DriverConfig::Modbus { .. } => "modbus",
            DriverConfig::Focas { .. } => "focas",
            DriverConfig::Opcua { .. } => "opcua",
            DriverConfig::Plugin { .. } => "plugin",
        }
    }

    pub fn is_sim(&self) -> bool {
        matches!(self, DriverConfig::Sim { .. })
    }
}

impl Config {
    /// The embedded demo configuration: the given (simulated) machines, defaults elsewhere.
    /// The machines come from the simulator (`crate::sim::demo_machines`).
    pub fn demo(
        machines: Vec<MachineConfig>,
        data_dir: PathBuf,
        http: SocketAddr,
        speed: f64,
        seed: u64,
        shop_offset_micros: i64,
    ) -> Config {
        Config {
            http: HttpConfig {
                listen: http,
                ..HttpConfig::default()
            },
            journal: JournalConfig {
                dir: data_dir,
                ..JournalConfig::default()
            },
            log: LogConfig::default(),
            sim: SimConfig {
                speed,
                seed,
                shop_offset_micros,
            },
            taxonomy: Taxonomy::default(),
            profiles: ProfilesConfig::default(),
            opcua: None,
            sparkplug: None,
            context: ContextConfig::default(),
            machines,
        }
    }

    /// Looks a machine up by id.
    pub fn machine(&self, id: &MachineId) -> Option<&MachineConfig> {
        self.machines.iter().find(|m| &m.id == id)
    }
}

/// Loads and checks a configuration file, environment overrides included: what
/// `shopbridge check` runs. Same as [`load`].
/// Why a Modbus machine's profile will not do.
pub fn no_register_map(profile: &str) -> String {
    format!(
        "profile {profile:?} has no [[register]] map, and a Modbus device is read only where its profile's map says (use a Modbus profile, such as moxa-e1212 or advantech-adam-6050, or add [[register]] entries)"
    )
}

pub fn check(path: &Path) -> Result<Config, ConfigErrors> {
    load(path)
}

/// The text and exit code of `shopbridge check <path>`: `OK ...` and 0, or every error (one per
/// line) plus a count and 2.
pub fn check_command(path: &Path) -> (String, i32) {
    check_report(path, check(path))
}

fn check_report(path: &Path, result: Result<Config, ConfigErrors>) -> (String, i32) {
    // A configuration that compiled names only profiles that exist; compile each one too, so
    // that a mistake in a profile is found here and not when the bridge starts.
    let result = result.and_then(|config| {
        let source = config.profiles.source();
        let mut names: Vec<&str> = config.machines.iter().map(|m| m.profile.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let mut errors = Vec::new();
        for name in names {
            match source.load(name) {
                Ok(profile) => {
                    for (i, m) in config.machines.iter().enumerate() {
                        if m.profile == name
                            && matches!(m.driver, DriverConfig::Modbus { .. })
                            && profile.registers.is_empty()
                        {
                            errors.push(ConfigError {
                                location: Location::FileOnly {
                                    file: path.display().to_string(),
                                },
                                key: Some(format!("machines[{i}].profile")),
                                message: no_register_map(name),
                            });
                        }
                    }
                }
                Err(crate::normalize::ProfileLoadError::Invalid(e)) => {
                    errors.extend(e.errors().iter().cloned())
                }
                Err(other) => errors.push(ConfigError {
                    location: Location::FileOnly {
                        file: path.display().to_string(),
                    },
                    key: None,
                    message: other.to_string(),
                }),
            }
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors::new(errors))
        }
    });
    match result {
        // Exactly "OK", so scripts can compare the output.
        Ok(_) => ("OK".to_string(), 0),
        Err(errors) => {
            let n = errors.len();
            let s = if n == 1 { "" } else { "s" };
            (format!("{errors}\n{n} error{s} in {}", path.display()), 2)
        }
    }
}

#[cfg(test)]
mod tests;
