//! Schema -> domain: parse every value into its real type and check the rules that span keys.
//! Collects every problem instead of stopping at the first, each tagged with the key path(s)
//! it is about, so the loader can point at the right place in the file or environment.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

use super::human::{format_size, parse_duration, parse_size};
use super::schema::{LogFormat, RawConfig, RawDriver, RawMachine, RawOpcua};
use super::{
    ApiToken, Config, DriverConfig, HttpConfig, Identification, JournalConfig, LogConfig,
    MachineConfig, MqttBroker, MqttConfig, MqttTls, OpcuaConfig, OpcuaUser, ProfilesConfig, Role,
    SimConfig, SparkplugConfig,
};
use crate::model::{LossCategory, MachineId, Taxonomy};

/// One semantic problem: the key paths it is about (the first one that exists in the file or the
/// environment is where it is reported) and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub paths: Vec<String>,
    pub message: String,
}

/// Resolves a key path to a printable place (`shopbridge.toml:5:6`), if the key was given.
pub(crate) type Locate<'a> = &'a dyn Fn(&str) -> Option<String>;

struct Problems(Vec<Problem>);

impl Problems {
    fn at(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            paths: vec![path.into()],
            message: message.into(),
        });
    }
    fn at_any(&mut self, paths: &[&str], message: impl Into<String>) {
        self.0.push(Problem {
            paths: paths.iter().map(|p| p.to_string()).collect(),
            message: message.into(),
        });
    }
}

/// Compiles `raw`. `indices[k]` is the position in the file of `raw.machines[k]` (machines that
/// failed the schema check are left out, and the others keep their own position in messages).
pub(crate) fn compile(
    raw: &RawConfig,
    indices: &[usize],
    locate: Locate<'_>,
) -> Result<Config, Vec<Problem>> {
    let mut p = Problems(Vec::new());

    let http = compile_http(raw, &mut p);
    let journal = compile_journal(raw, &mut p);
    let log = compile_log(raw, &mut p);
    let sim = compile_sim(raw, &mut p);
    let taxonomy = compile_taxonomy(raw, &mut p);
    let profiles = ProfilesConfig {
        dir: raw.profiles.dir.clone(),
    };
    let plugins = compile_plugins(&raw.plugins, &mut p);
    let machines = compile_machines(&raw.machines, indices, locate, &profiles, &plugins, &mut p);
    let machine_ids: Vec<String> = raw
        .machines
        .iter()
        .map(|m| m.id.trim().to_string())
        .collect();
    let context =
        super::context::compile(raw, taxonomy.as_ref(), &machine_ids, &mut |k, m| p.at(k, m));
    for (m, &i) in raw.machines.iter().zip(indices) {
        if let Some(c) = &m.calendar {
            if !raw.calendars.contains_key(c.trim()) {
                let known: Vec<&str> = raw.calendars.keys().map(String::as_str).collect();
                p.at(
                    format!("machines[{i}].calendar"),
                    format!(
                        "no calendar {c:?} is configured; the [calendars.<name>] sections are: {}",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
        }
        if m.parts_per_cycle == Some(0) {
            p.at(
                format!("machines[{i}].parts_per_cycle"),
                "expected the parts one counter step makes (1 or more), found 0",
            );
        }
    }
    let sparkplug = compile_sparkplug(raw, &mut p);
    let opcua = match &raw.opcua {
        None => Some(None),
        Some(o) => compile_opcua(o, &mut p).map(|c| c.filter(|_| o.enabled != Some(false))),
    };

    if let Some(sim) = &sim {
        if sim.speed != 1.0 {
            let real: Vec<String> = raw
                .machines
                .iter()
                .zip(indices)
                .filter(|(m, _)| !matches!(m.driver, RawDriver::Sim(_)))
                .map(|(m, i)| format!("{:?} (machines[{i}])", m.id))
                .collect();
            if !real.is_empty() {
                p.at(
                    "sim.speed",
                    format!(
                        "a speed other than 1 is only allowed when every machine uses the sim \
                         driver, because the timestamps of real machines cannot be scaled; \
                         found speed {} and real machine{} {}",
                        sim.speed,
                        if real.len() == 1 { "" } else { "s" },
                        real.join(", ")
                    ),
                );
            }
        }
    }

    match (
        http, journal, log, sim, taxonomy, machines, opcua, sparkplug, context,
    ) {
        (
            Some(http),
            Some(journal),
            Some(log),
            Some(sim),
            Some(taxonomy),
            Some(machines),
            Some(opcua),
            Some(sparkplug),
            Some(context),
        ) if p.0.is_empty() => Ok(Config {
            context,
            http,
            journal,
            log,
            sim,
            taxonomy,
            profiles,
            opcua,
            sparkplug,
            machines,
        }),
        _ => Err(p.0),
    }
}

fn compile_http(raw: &RawConfig, p: &mut Problems) -> Option<HttpConfig> {
    let h = &raw.http;
    let d = HttpConfig::default();
    let before = p.0.len();
    let listen = match &h.listen {
        None => d.listen,
        Some(listen) => listen.trim().parse::<SocketAddr>().unwrap_or_else(|_| {
            p.at(
                "http.listen",
                format!(
                    "expected an IP address and port like \"127.0.0.1:8080\" or \"0.0.0.0:8080\", \
                     found {listen:?}"
                ),
            );
            d.listen
        }),
    };
    let local_role = match h.local_role.as_deref().map(str::trim) {
        None => d.local_role,
        Some("none") => None,
        Some(r) => Role::parse(r).or_else(|| {
            p.at(
                "http.local_role",
                format!("expected \"none\" or one of {:?}, found {r:?}", Role::NAMES),
            );
            d.local_role
        }),
    };
    let mut tokens: Vec<ApiToken> = Vec::new();
    for (i, t) in h.tokens.iter().enumerate() {
        let at = |k: &str| format!("http.tokens[{i}].{k}");
        let name = t.name.trim();
        if let Err(e) = MachineId::new(name) {
            p.at(
                at("name"),
                format!("a token's name is recorded as who spoke: {e}"),
            );
        } else if tokens.iter().any(|x| x.name == name) {
            p.at(at("name"), format!("token {name:?} is defined twice"));
        }
        let role = Role::parse(t.role.trim()).unwrap_or_else(|| {
            p.at(
                at("role"),
                format!("expected one of {:?}, found {:?}", Role::NAMES, t.role),
            );
            Role::Viewer
        });
        let sha256 = crate::config::parse_sha256(t.sha256.trim()).unwrap_or_else(|| {
            p.at(
                at("sha256"),
                format!(
                    "expected the token's SHA-256 as 64 hex digits (`shopbridge new-token` prints \
                     it), found {:?}",
                    t.sha256
                ),
            );
            [0; 32]
        });
        if tokens
            .iter()
            .any(|x| x.sha256 == sha256 && sha256 != [0; 32])
        {
            p.at(at("sha256"), "two tokens have the same hash");
        }
        tokens.push(ApiToken {
            name: name.to_string(),
            role,
            sha256,
        });
    }
    let max_connections = match h.max_connections {
        None => d.max_connections,
        Some(n @ 1..=65_535) => n as usize,
        Some(n) => {
            p.at(
                "http.max_connections",
                format!("expected a whole number from 1 to 65535, found {n}"),
            );
            d.max_connections
        }
    };
    (p.0.len() == before).then_some(HttpConfig {
        listen,
        local_role,
        tokens,
        max_connections,
    })
}

/// A Sparkplug id (group, edge node): no `+`, `/` or `#`, which MQTT topics reserve
/// (tck-id-topic-structure-namespace-valid-group-id, -edge-node-id).
fn sparkplug_id(p: &mut Problems, key: &str, v: Option<&str>) -> Option<String> {
    let Some(v) = v.map(str::trim) else {
        p.at(key, "expected an id, like \"shop-floor\"; it is required");
        return None;
    };
    if v.is_empty() || v.contains(['+', '/', '#']) || v.chars().any(char::is_whitespace) {
        p.at(
            key,
            format!(
                "expected an id without spaces, '+', '/' or '#' (MQTT topic characters), found {v:?}"
            ),
        );
        return None;
    }
    Some(v.to_string())
}

fn compile_sparkplug(raw: &RawConfig, p: &mut Problems) -> Option<Option<SparkplugConfig>> {
    let before = p.0.len();
    let Some(s) = &raw.sparkplug else {
        if raw.mqtt.is_some() {
            p.at(
                "mqtt",
                "[mqtt] is only used by [sparkplug], which is not configured",
            );
            return None;
        }
        return Some(None);
    };
    let group_id = sparkplug_id(p, "sparkplug.group_id", s.group_id.as_deref());
    let edge_node_id = sparkplug_id(p, "sparkplug.edge_node_id", s.edge_node_id.as_deref());
    let primary_host_id = match s.primary_host_id.as_deref() {
        None => None,
        Some(h) => sparkplug_id(p, "sparkplug.primary_host_id", Some(h)),
    };
    let rebirth_cooldown =
        optional_duration(p, "sparkplug.rebirth_cooldown", s.rebirth_cooldown.as_ref())
            .flatten()
            .unwrap_or(Duration::from_secs(5));
    let m = raw.mqtt.clone().unwrap_or_default();
    let embedded = m.embedded.unwrap_or(false);
    let broker = match (&m.url, embedded) {
        (None, false) => {
            p.at(
                "mqtt.url",
                "[sparkplug] needs a broker: set [mqtt] url = \"mqtt://host:1883\" (or mqtts://), or embedded = true",
            );
            None
        }
        (Some(u), true) => {
            p.at(
                "mqtt.embedded",
                format!(
                    "embedded = true starts a broker in the bridge; it cannot be combined with url = {u:?}"
                ),
            );
            None
        }
        (None, true) => Some(MqttBroker::Embedded { port: 1883 }),
        (Some(u), false) => match parse_mqtt_url(u) {
            Ok((host, port, tls)) => Some(MqttBroker::External {
                host,
                port,
                tls: tls.then(|| MqttTls {
                    ca_file: m.ca_file.clone(),
                    client_cert: m.client_cert.clone().zip(m.client_key.clone()),
                }),
            }),
            Err(why) => {
                p.at("mqtt.url", why);
                None
            }
        },
    };
    if m.client_cert.is_some() != m.client_key.is_some() {
        p.at(
            "mqtt.client_cert",
            "client_cert and client_key go together: set both or neither",
        );
    }
    if (m.ca_file.is_some() || m.client_cert.is_some())
        && !matches!(&broker, Some(MqttBroker::External { tls: Some(_), .. }))
    {
        p.at(
            "mqtt.ca_file",
            "ca_file, client_cert and client_key need an mqtts:// url",
        );
    }
    if m.username.is_none() && m.password.is_some() {
        p.at("mqtt.password", "a password needs a username");
    }
    let keep_alive = optional_duration(p, "mqtt.keep_alive", m.keep_alive.as_ref())
        .flatten()
        .unwrap_or(Duration::from_secs(30));
    // MQTT carries it as whole seconds in 16 bits.
    if keep_alive.subsec_nanos() != 0 || !(1..=65_535).contains(&keep_alive.as_secs()) {
        p.at(
            "mqtt.keep_alive",
            format!(
                "expected whole seconds from 1s to 65535s (MQTT's keep-alive), found {keep_alive:?}"
            ),
        );
    }
    let (Some(group_id), Some(edge_node_id), Some(broker)) = (group_id, edge_node_id, broker)
    else {
        return None;
    };
    let client_id = m
        .client_id
        .clone()
        .unwrap_or_else(|| format!("shopbridge-{group_id}-{edge_node_id}"));
    (p.0.len() == before).then(|| {
        (s.enabled != Some(false)).then(|| SparkplugConfig {
            group_id,
            edge_node_id,
            primary_host_id,
            rebirth_cooldown,
            mqtt: MqttConfig {
                broker,
                client_id,
                username: m.username.clone(),
                password: m.password.clone(),
                keep_alive,
            },
        })
    })
}

/// `mqtt://host[:port]` (1883) or `mqtts://host[:port]` (8883): host, port, TLS.
pub(super) fn parse_mqtt_url(u: &str) -> Result<(String, u16, bool), String> {
    let bad = || {
        format!(
            "expected mqtt://host:port or mqtts://host:port (like \"mqtt://10.0.4.5:1883\"), found {u:?}"
        )
    };
    let t = u.trim();
    let (rest, tls, default_port) = if let Some(r) = t.strip_prefix("mqtts://") {
        (r, true, 8883)
    } else if let Some(r) = t.strip_prefix("mqtt://") {
        (r, false, 1883)
    } else {
        return Err(bad());
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') {
        return Err(bad());
    }
    // `[v6]:port`, `host:port` or a bare host.
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        match after.strip_prefix(':') {
            Some(p) => (h, p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?),
            None if after.is_empty() => (h, default_port),
            None => return Err(bad()),
        }
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?),
            None => (rest, default_port),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), port, tls))
}

/// A password hash must be an argon2 PHC string, as `shopbridge hash-password` prints.
fn check_password_hash(h: &str) -> Result<(), String> {
    let h = h.trim();
    match argon2::password_hash::PasswordHash::new(h) {
        Ok(p) if p.algorithm.as_str().starts_with("argon2") && p.hash.is_some() => Ok(()),
        Ok(p) => Err(format!(
            "expected an argon2 hash (made by `shopbridge hash-password`), found a {} hash",
            p.algorithm
        )),
        Err(e) => Err(format!(
            "expected an argon2 hash like \"$argon2id$v=19$m=19456,t=2,p=1$...\" (made by \
             `shopbridge hash-password`; never the password itself), found text that is not \
             one ({e})"
        )),
    }
}

fn compile_opcua(o: &RawOpcua, p: &mut Problems) -> Option<Option<OpcuaConfig>> {
    let before = p.0.len();
    let d = OpcuaConfig::default();
    let listen = match &o.listen {
        None => d.listen,
        Some(l) => match l.trim().parse::<SocketAddr>() {
            Ok(a) if a.port() != 0 => a,
            _ => {
                p.at(
                    "opcua.listen",
                    format!(
                        "expected an IP address and a port 1-65535 like \"0.0.0.0:4840\" or \
                         \"127.0.0.1:4840\", found {l:?}"
                    ),
                );
                d.listen
            }
        },
    };
    let hostname = o.hostname.as_deref().map(str::trim).map(str::to_string);
    if hostname.as_deref().is_some_and(|h| {
        h.is_empty() || h.contains(|c: char| c.is_whitespace() || c == '/' || c == ':')
    }) {
        p.at(
            "opcua.hostname",
            format!("expected a host name or IP address without port, found {hostname:?}"),
        );
    }
    let max_monitored_items = match o.max_monitored_items {
        None => d.max_monitored_items,
        Some(n) if (1..=10_000_000).contains(&n) => n as usize,
        Some(n) => {
            p.at(
                "opcua.max_monitored_items",
                format!("expected a number from 1 to 10000000, found {n}"),
            );
            d.max_monitored_items
        }
    };
    let min_publishing_interval = match &o.min_publishing_interval {
        None => d.min_publishing_interval,
        Some(h) => match parse_duration(&h.0) {
            Ok(i) if i >= Duration::from_millis(10) => i,
            _ => {
                p.at(
                    "opcua.min_publishing_interval",
                    format!(
                        "expected a duration of at least 10ms, like \"50ms\", found {:?}",
                        h.0
                    ),
                );
                d.min_publishing_interval
            }
        },
    };
    let mut users: Vec<OpcuaUser> = Vec::new();
    for (i, u) in o.users.iter().enumerate() {
        let at = |k: &str| format!("opcua.users[{i}].{k}");
        let name = u.name.trim();
        if name.is_empty() {
            p.at(at("name"), "expected a user name, found an empty string");
        } else if users.iter().any(|x| x.name == name) {
            p.at(at("name"), format!("user {name:?} is defined twice"));
        }
        if let Err(why) = check_password_hash(&u.password_hash) {
            p.at(at("password_hash"), why);
        }
        let role = Role::parse(u.role.trim());
        if role.is_none() {
            p.at(
                at("role"),
                format!("expected one of {:?}, found {:?}", Role::NAMES, u.role),
            );
        }
        users.push(OpcuaUser {
            name: name.to_string(),
            password_hash: u.password_hash.trim().to_string(),
            role: role.unwrap_or(Role::Viewer),
        });
    }
    (p.0.len() == before).then_some(Some(OpcuaConfig {
        listen,
        hostname,
        security_none: o.security_none.unwrap_or(false),
        anonymous: o.anonymous.unwrap_or(false),
        nodesets_dir: o.nodesets_dir.clone(),
        max_monitored_items,
        min_publishing_interval,
        users,
    }))
}

fn compile_journal(raw: &RawConfig, p: &mut Problems) -> Option<JournalConfig> {
    let j = &raw.journal;
    let d = JournalConfig::default();
    let before = p.0.len();

    let dir = match &j.dir {
        Some(dir) if dir.as_os_str().is_empty() => {
            p.at(
                "journal.dir",
                "expected a directory path, found an empty string",
            );
            d.dir
        }
        Some(dir) => dir.clone(),
        None => d.dir,
    };
    let max_age = match &j.max_age {
        None => d.max_age,
        Some(h) => match parse_duration(&h.0) {
            Ok(Duration::ZERO) => {
                p.at(
                    "journal.max_age",
                    "expected a duration longer than zero, found \"0\" (records would be removed as soon as they are written)",
                );
                d.max_age
            }
            Ok(age) => age,
            Err(e) => {
                p.at("journal.max_age", e);
                d.max_age
            }
        },
    };
    let mut size = |key: &str, value: &Option<super::schema::Human>, default: u64| match value {
        None => Some(default),
        Some(h) => match parse_size(&h.0) {
            Ok(0) => {
                p.at(
                    format!("journal.{key}"),
                    format!("expected a size larger than zero, found {:?}", h.0),
                );
                None
            }
            Ok(n) => Some(n),
            Err(e) => {
                p.at(format!("journal.{key}"), e);
                None
            }
        },
    };
    let max_bytes = size("max_bytes", &j.max_bytes, d.max_bytes);
    let hard_cap_bytes = size("hard_cap_bytes", &j.hard_cap_bytes, d.hard_cap_bytes);
    // Zero is allowed here: it turns the free-space guard off.
    let min_free_bytes = match &j.min_free_bytes {
        None => Some(d.min_free_bytes),
        Some(h) => match parse_size(&h.0) {
            Ok(n) => Some(n),
            Err(e) => {
                p.at("journal.min_free_bytes", e);
                None
            }
        },
    };
    if let (Some(max), Some(cap)) = (max_bytes, hard_cap_bytes) {
        if cap < max {
            p.at_any(
                &["journal.hard_cap_bytes", "journal.max_bytes"],
                format!(
                    "hard_cap_bytes must be at least max_bytes: found hard_cap_bytes {} < \
                     max_bytes {} (max_bytes is where acknowledged records are removed, \
                     hard_cap_bytes is where even unacknowledged ones go)",
                    format_size(cap),
                    format_size(max)
                ),
            );
        }
    }
    let batch_max_records = match j.batch_max_records {
        None => d.batch_max_records,
        Some(n) => match usize::try_from(n) {
            Ok(n) if n >= 1 => n,
            _ => {
                p.at(
                    "journal.batch_max_records",
                    format!("expected a whole number of at least 1, found {n}"),
                );
                d.batch_max_records
            }
        },
    };

    (p.0.len() == before).then(|| JournalConfig {
        dir,
        max_age,
        max_bytes: max_bytes.unwrap_or(d.max_bytes),
        hard_cap_bytes: hard_cap_bytes.unwrap_or(d.hard_cap_bytes),
        batch_max_records,
        min_free_bytes: min_free_bytes.unwrap_or(d.min_free_bytes),
    })
}

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

fn compile_log(raw: &RawConfig, p: &mut Problems) -> Option<LogConfig> {
    let d = LogConfig::default();
    let level = raw.log.level.clone().unwrap_or(d.level);
    // EnvFilter takes a bare word as a target name ("loud" = everything from a module named
    // loud), which turns a typo'd level into silence; a bare word here must be a level.
    if let Some(word) = level.split(',').map(str::trim).find(|w| {
        !w.is_empty()
            && !w.contains(['=', '[', ':'])
            && !LEVELS.contains(&w.to_ascii_lowercase().as_str())
    }) {
        p.at(
            "log.level",
            format!(
                "unknown log level {word:?}, expected one of {}, or a filter like \
                 \"info,shopbridge::drivers=debug\"",
                LEVELS.join(", ")
            ),
        );
        return None;
    }
    if let Err(e) = EnvFilter::builder().parse(&level) {
        p.at(
            "log.level",
            format!(
                "expected a log filter like \"info\", \"debug\" or \"info,shopbridge::drivers=debug\", \
                 found {level:?} ({e})"
            ),
        );
        return None;
    }
    Some(LogConfig {
        level,
        json: raw.log.format == Some(LogFormat::Json),
    })
}

fn compile_sim(raw: &RawConfig, p: &mut Problems) -> Option<SimConfig> {
    let d = SimConfig::default();
    let speed = raw.sim.speed.unwrap_or(d.speed);
    if !(speed.is_finite() && speed > 0.0) {
        p.at(
            "sim.speed",
            format!("expected a number greater than 0 (1.0 is real time), found {speed}"),
        );
        return None;
    }
    Some(SimConfig {
        speed,
        seed: raw.sim.seed.unwrap_or(d.seed),
        shop_offset_micros: 0,
    })
}

fn compile_taxonomy(raw: &RawConfig, p: &mut Problems) -> Option<Taxonomy> {
    let Some(names) = &raw.taxonomy.categories else {
        return Some(Taxonomy::default());
    };
    let before = p.0.len();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, name) in names.iter().enumerate() {
        let path = format!("taxonomy.categories[{i}]");
        if let Err(e) = LossCategory::custom(name) {
            p.at(path, e);
        } else if let Some(first) = seen.insert(name.as_str(), i) {
            p.at(
                path,
                format!("loss category {name:?} is already listed at taxonomy.categories[{first}]"),
            );
            seen.insert(name.as_str(), first);
        }
    }
    if p.0.len() != before {
        return None;
    }
    match Taxonomy::new(names) {
        Ok(t) => Some(t),
        Err(e) => {
            p.at("taxonomy.categories", e);
            None
        }
    }
}

fn compile_machines(
    raw: &[RawMachine],
    indices: &[usize],
    locate: Locate<'_>,
    profiles: &ProfilesConfig,
    plugins: &HashMap<String, std::sync::Arc<super::PluginDef>>,
    p: &mut Problems,
) -> Option<Vec<MachineConfig>> {
    let before = p.0.len();
    let known_profiles = profiles.source().names();
    let mut machines = Vec::with_capacity(raw.len());
    let mut first_use: HashMap<&str, usize> = HashMap::new();
    // A Haas control allows two MDC clients, and a serial port opens once: each may be read
    // by one machine's driver.
    let mut links: HashMap<(&str, String), usize> = HashMap::new();
    for (m, &i) in raw.iter().zip(indices) {
        let link = match &m.driver {
            RawDriver::Haas(h) => match (&h.address, &h.serial) {
                (Some(a), None) => Some(("address", "the Haas control at", a.trim().to_string())),
                (None, Some(s)) => Some(("serial.port", "serial port", s.port.trim().to_string())),

                _ => None,
            },
            RawDriver::Focas(f) => {
                Some(("address", "the Fanuc control at", focas_address(&f.address)))
            }
            RawDriver::Modbus(d) => d
                .serial
                .as_ref()
                .map(|s| ("serial.port", "serial port", s.port.trim().to_string())),
            _ => None,
        };
        if let Some((key, what, target)) = link {
            match links.get(&(what, target.clone())) {
                Some(first) => p.at(
                    format!("machines[{i}].driver.{key}"),
                    format!(
                        "{what} {target:?} is already read by machines[{first}]; {}",
                        if what == "the Fanuc control at" {
                            "one machine is one control (read it once; a control serves few FOCAS clients)"
                        } else if key == "address" {
                            "a Haas control serves two MDC clients, and one machine is one control"
                        } else {
                            "a serial port opens once (for several Modbus units on one bus, give one machine a profile whose registers name their `unit`)"
                        }
                    ),
                ),
                None => {
                    links.insert((what, target), i);
                }
            }
        }
    }
    for (m, &i) in raw.iter().zip(indices) {
        let at = |key: &str| format!("machines[{i}].{key}");
        let id = match MachineId::new(&m.id) {
            Ok(id) => Some(id),
            Err(e) => {
                p.at(at("id"), format!("invalid machine id {:?}: {e}", m.id));
                None
            }
        };
        if let Some(first) = first_use.get(m.id.as_str()) {
            let first_path = format!("machines[{first}].id");
            let place = match locate(&first_path) {
                Some(place) => format!("{first_path} at {place}"),
                None => first_path,
            };
            p.at(
                at("id"),
                format!(
                    "duplicate machine id {:?}, already used by {place}; every machine needs its own id",
                    m.id
                ),
            );
        } else {
            first_use.insert(&m.id, i);
        }
        if m.name.trim().is_empty() {
            p.at(
                at("name"),
                "expected a name for people to read, like \"Okuma MULTUS U3000\", found an empty string",
            );
        }
        if m.profile.trim().is_empty() {
            p.at(
                at("profile"),
                "expected a profile name, like \"okuma-osp\", found an empty string",
            );
        } else if !known_profiles.iter().any(|k| k == m.profile.trim()) {
            let dir = match &profiles.dir {
                Some(d) => format!("built in or in {}", d.display()),
                None => "built in; set [profiles] dir to add your own".to_string(),
            };
            p.at(
                at("profile"),
                format!(
                    "unknown profile {:?}; the profiles {dir} are: {}",
                    m.profile.trim(),
                    known_profiles.join(", ")
                ),
            );
        }
        let driver = match &m.driver {
            RawDriver::Sim(s) => Some(DriverConfig::Sim { seed: s.seed }),
            RawDriver::Shdr(s) => {
                let address = match check_host_port(&s.address) {
                    Ok(()) => Some(s.address.trim().to_string()),
                    Err(()) => {
                        p.at(
                            at("driver.address"),
                            format!(
                                "expected \"host:port\" with a port 1-65535, found {:?}",
                                s.address
                            ),
                        );
                        None
                    }
                };
                let heartbeat = optional_duration(p, &at("driver.heartbeat"), s.heartbeat.as_ref());
                let device = device_name(p, &at("driver.device"), s.device.as_deref());
                match (address, heartbeat, device) {
                    (Some(address), Some(heartbeat), Some(device)) => Some(DriverConfig::Shdr {
                        address,
                        heartbeat,
                        device,
                        devices_file: s.devices_file.clone(),
                    }),
                    _ => None,
                }
            }
            RawDriver::Mtconnect(s) => {
                let url = match check_agent_url(&s.url) {
                    Ok(u) => Some(u),
                    Err(why) => {
                        p.at(at("driver.url"), why);
                        None
                    }
                };
                let interval = optional_duration(p, &at("driver.interval"), s.interval.as_ref());
                let heartbeat = optional_duration(p, &at("driver.heartbeat"), s.heartbeat.as_ref());
                let device = device_name(p, &at("driver.device"), s.device.as_deref());
                match (url, interval, heartbeat, device) {
                    (Some(url), Some(interval), Some(heartbeat), Some(device)) => {
                        Some(DriverConfig::Mtconnect {
                            url,
                            device,
                            interval: interval.unwrap_or(Duration::from_millis(100)),
                            heartbeat: heartbeat.unwrap_or(Duration::from_secs(10)),
                        })
                    }
                    _ => None,
                }
            }
            RawDriver::Haas(h) => haas_driver(p, &at, h),
            RawDriver::Modbus(m) => modbus_driver(p, &at, m),
            RawDriver::Opcua(o) => opcua_driver(p, &at, o),
            RawDriver::Plugin(d) => match plugins.get(d.plugin.trim()) {
                Some(_) if d.settings.as_ref().is_some_and(|s| !s.is_object()) => {
                    p.at(
                        at("driver.settings"),
                        "expected a table of settings for the plugin, like { address = \"10.0.0.30:19000\" }",
                    );
                    None
                }
                Some(def) => Some(DriverConfig::Plugin {
                    plugin: def.clone(),
                    settings: d.settings.clone().unwrap_or_else(|| serde_json::json!({})),
                }),
                None => {
                    let mut known: Vec<&str> = plugins.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    p.at(
                        at("driver.plugin"),
                        format!(
                            "no plugin {:?} is configured; the [[plugins]] ids are: {}",
                            d.plugin,
                            if known.is_empty() {
                                "(none)".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                    None
                }
            },
            RawDriver::Focas(f) => focas_driver(p, &at, f),
        };
        if let (Some(id), Some(driver)) = (id, driver) {
            let text = |s: &Option<String>| {
                s.as_deref()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            };
            let ident = &m.identification;
            machines.push(MachineConfig {
                id,
                name: m.name.trim().to_string(),
                profile: m.profile.trim().to_string(),
                identification: Identification {
                    manufacturer: text(&ident.manufacturer),
                    model: text(&ident.model),
                    serial_number: text(&ident.serial_number),
                    software_revision: text(&ident.software_revision),
                    location: text(&ident.location),
                },
                calendar: m.calendar.as_deref().map(|c| c.trim().to_string()),
                parts_per_cycle: m.parts_per_cycle.unwrap_or(1).max(1),
                driver,
            });
        }
    }
    (p.0.len() == before).then_some(machines)
}

/// An optional positive duration: `Some(None)` when absent, `None` (reported) when wrong.
fn optional_duration(
    p: &mut Problems,
    key: &str,
    h: Option<&super::schema::Human>,
) -> Option<Option<Duration>> {
    let Some(h) = h else { return Some(None) };
    match parse_duration(&h.0) {
        Ok(Duration::ZERO) => {
            p.at(
                key.to_string(),
                format!("expected a duration longer than zero, found {:?}", h.0),
            );
            None
        }
        Ok(d) => Some(Some(d)),
        Err(e) => {
            p.at(key.to_string(), e);
            None
        }
    }
}

/// `type = "haas"`: exactly one of `address` and `serial`; macro variables 1-99999.
fn haas_driver(
    p: &mut Problems,
    at: &dyn Fn(&str) -> String,
    h: &super::schema::RawHaasDriver,
) -> Option<DriverConfig> {
    use crate::drivers::haas::{HaasSpec, Transport};
    let transport = match (&h.address, &h.serial) {
        (Some(a), None) => match check_host_port(a) {
            Ok(()) => Some(Transport::Tcp(a.trim().to_string())),
            Err(()) => {
                p.at(
                    at("driver.address"),
                    format!(
                        "expected \"host:port\" (the port of the control's Setting 143, often 5051), found {a:?}"
                    ),
                );
                None
            }
        },
        (None, Some(s)) => {
            serial(p, &at("driver.serial"), s, HAAS_SERIAL_DEFAULTS).map(Transport::Serial)
        }
        (Some(_), Some(_)) => {
            p.at(
                at("driver.serial"),
                "give either `address` (Ethernet) or `serial` (RS-232), not both",
            );
            None
        }
        (None, None) => {
            p.at(
                at("driver"),
                "missing `address = \"host:5051\"` (Ethernet) or `serial = { port = \"/dev/ttyUSB0\" }` (RS-232)",
            );
            None
        }
    };
    let interval = optional_duration(p, &at("driver.interval"), h.interval.as_ref());
    let timeout = optional_duration(p, &at("driver.timeout"), h.timeout.as_ref());
    let mut macros = Vec::with_capacity(h.macros.len());
    let mut ok = true;
    for (i, v) in h.macros.iter().enumerate() {
        match u32::try_from(*v) {
            Ok(v) if (1..=99_999).contains(&v) => {
                if !macros.contains(&v) {
                    macros.push(v);
                }
            }
            _ => {
                p.at(
                    at(&format!("driver.macros[{i}]")),
                    format!("expected a macro variable number 1-99999 (like 3027), found {v}"),
                );
                ok = false;
            }
        }
    }
    let (transport, interval, timeout) = (transport?, interval?, timeout?);
    ok.then(|| DriverConfig::Haas {
        spec: HaasSpec {
            transport,
            macros,
            timeout: timeout.unwrap_or(Duration::from_secs(2)),
        },
        interval: interval.unwrap_or(Duration::from_secs(1)),
    })
}

/// `type = "opcua"`: an `opc.tcp://` endpoint; security policy and mode that go together;
/// a password only with a user; node ids that parse; something to read (`nodes` or `browse`).
fn opcua_driver(
    p: &mut Problems,
    at: &dyn Fn(&str) -> String,
    o: &super::schema::RawOpcuaDriver,
) -> Option<DriverConfig> {
    use super::schema::RawOpcuaNode;
    use crate::drivers::opcua_client::{
        BrowseSpec, Identity, NodeSpec, OpcuaSpec, Security, SecurityMode,
    };
    let before = p.0.len();
    let endpoint = o.endpoint.trim().to_string();
    if !endpoint.starts_with("opc.tcp://") || endpoint.len() <= "opc.tcp://".len() {
        p.at(
            at("driver.endpoint"),
            format!("expected an OPC UA endpoint URL like \"opc.tcp://10.0.0.20:4840\", found {endpoint:?}"),
        );
    }
    const POLICIES: [&str; 5] = [
        "None",
        "Basic256Sha256",
        "Aes128_Sha256_RsaOaep",
        "Aes256_Sha256_RsaPss",
        "Basic128Rsa15",
    ];
    let policy = o
        .security_policy
        .as_deref()
        .map(str::trim)
        .unwrap_or("None");
    let policy = match POLICIES.iter().find(|k| k.eq_ignore_ascii_case(policy)) {
        Some(k) => k.to_string(),
        None => {
            p.at(
                at("driver.security_policy"),
                format!(
                    "unknown security policy {policy:?}, expected one of {}",
                    super::load::quote_list(&POLICIES)
                ),
            );
            String::new()
        }
    };
    let mode = match o.security_mode.as_deref().map(str::trim) {
        None if policy == "None" => SecurityMode::None,
        // A policy alone means encrypting with it.
        None => SecurityMode::SignAndEncrypt,
        Some(m) if m.eq_ignore_ascii_case("none") => SecurityMode::None,
        Some(m) if m.eq_ignore_ascii_case("sign") => SecurityMode::Sign,
        Some(m)
            if m.eq_ignore_ascii_case("signandencrypt")
                || m.eq_ignore_ascii_case("sign_and_encrypt") =>
        {
            SecurityMode::SignAndEncrypt
        }
        Some(m) => {
            p.at(
                at("driver.security_mode"),
                format!(
                    "unknown security mode {m:?}, expected one of `None`, `Sign`, `SignAndEncrypt`"
                ),
            );
            SecurityMode::None
        }
    };
    if (policy == "None") != (mode == SecurityMode::None) && !policy.is_empty() {
        p.at(
            at("driver.security_mode"),
            format!(
                "security policy {policy:?} goes with {} (found mode {mode:?})",
                if policy == "None" {
                    "mode `None`"
                } else {
                    "mode `Sign` or `SignAndEncrypt`"
                }
            ),
        );
    }
    let password = match (&o.password, &o.password_file) {
        (Some(_), Some(_)) => {
            p.at(
                at("driver.password_file"),
                "give either `password` or `password_file`, not both",
            );
            None
        }
        (Some(pw), None) => Some(pw.clone()),
        (None, Some(f)) => match std::fs::read_to_string(f) {
            Ok(s) => Some(s.trim_end_matches(['\r', '\n']).to_string()),
            Err(e) => {
                p.at(
                    at("driver.password_file"),
                    format!("cannot read {}: {e}", f.display()),
                );
                None
            }
        },
        (None, None) => None,
    };
    let identity = match (o.user.as_deref().map(str::trim), password) {
        (None, None) => Identity::Anonymous,
        (Some(u), Some(pw)) if !u.is_empty() => Identity::User {
            name: u.to_string(),
            password: pw,
        },
        (Some(_), None) => {
            p.at(
                at("driver.user"),
                "a user needs `password` or `password_file`",
            );
            Identity::Anonymous
        }
        _ => {
            p.at(at("driver.password"), "a password needs a non-empty `user`");
            Identity::Anonymous
        }
    };
    let check_deadband = |p: &mut Problems, key: String, d: Option<f64>| match d {
        Some(d) if !(d.is_finite() && d >= 0.0) => {
            p.at(
                key,
                format!("expected a deadband of zero or more (in the node's units), found {d}"),
            );
        }
        _ => {}
    };
    check_deadband(p, at("driver.deadband"), o.deadband);
    let mut nodes: Vec<NodeSpec> = Vec::with_capacity(o.nodes.len());
    for (i, n) in o.nodes.iter().enumerate() {
        let (node, key, deadband) = match n {
            RawOpcuaNode::Id(id) => (id.trim(), None, None),
            RawOpcuaNode::Table(t) => (t.node.trim(), t.key.as_deref().map(str::trim), t.deadband),
        };
        let here = at(&format!("driver.nodes[{i}]"));
        let parsed = match node.parse::<opcua::types::NodeId>() {
            Ok(id) => Some(id),
            Err(_) => {
                p.at(
                    here.clone(),
                    format!("expected an OPC UA node id like \"ns=2;s=/Channel/State/chanStatus\" or \"ns=3;i=1001\", found {node:?}"),
                );
                None
            }
        };
        check_deadband(p, format!("{here}.deadband"), deadband);
        let Some(parsed) = parsed else { continue };
        // A string id is its own best key (SINUMERIK's `/Channel/State/chanStatus`).
        let key = match key {
            Some(k) if !k.is_empty() => k.to_string(),
            _ => match &parsed.identifier {
                opcua::types::Identifier::String(s) => s.to_string(),
                _ => node.to_string(),
            },
        };
        if let Some(j) = nodes.iter().position(|x| x.key == key) {
            p.at(here, format!("key {key:?} is already used by nodes[{j}]"));
            continue;
        }
        nodes.push(NodeSpec {
            key,
            node: node.to_string(),
            deadband,
        });
    }
    let count = |p: &mut Problems, key: &str, v: Option<i64>, default: usize, max: usize| match v {
        None => default,
        Some(v) if v >= 1 && (v as u64) <= max as u64 => v as usize,
        Some(v) => {
            p.at(at(key), format!("expected 1-{max}, found {v}"));
            default
        }
    };
    let depth = count(p, "driver.browse_depth", o.browse_depth, 6, 32);
    let max_items = count(p, "driver.max_items", o.max_items, 2000, 50_000);
    let browse = o
        .browse
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(|root| BrowseSpec {
            root: root.trim_matches('/').to_string(),
            depth,
            max_items,
        });
    if browse.is_none() && nodes.is_empty() && o.nodes.is_empty() {
        p.at(
            at("driver"),
            "nothing to read: give `browse = \"Machines/<name>\"` (a browse path or node id to read everything below) or `nodes = [\"ns=2;s=…\", …]`",
        );
    }
    let publishing = optional_duration(
        p,
        &at("driver.publishing_interval"),
        o.publishing_interval.as_ref(),
    );
    let sampling = optional_duration(
        p,
        &at("driver.sampling_interval"),
        o.sampling_interval.as_ref(),
    );
    let timeout = optional_duration(p, &at("driver.timeout"), o.timeout.as_ref());
    let (publishing, sampling, timeout) = (publishing?, sampling?, timeout?);
    (p.0.len() == before).then(|| {
        let publishing_interval = publishing.unwrap_or(Duration::from_millis(500));
        DriverConfig::Opcua {
            spec: OpcuaSpec {
                endpoint,
                security: Security { policy, mode },
                identity,
                pki_dir: o.pki_dir.clone().unwrap_or_default(),
                trust_server: o.trust_server.unwrap_or(false),
                nodes,
                browse,
                publishing_interval,
                sampling_interval: sampling.unwrap_or(publishing_interval / 2),
                deadband: o.deadband.unwrap_or(0.0),
                timeout: timeout.unwrap_or(Duration::from_secs(10)),
            },
        }
    })
}

/// `[[plugins]]`: unique ids, a command, limits that parse.
fn compile_plugins(
    raw: &[super::schema::RawPlugin],
    p: &mut Problems,
) -> HashMap<String, std::sync::Arc<super::PluginDef>> {
    let mut out = HashMap::new();
    for (i, r) in raw.iter().enumerate() {
        let at = |k: &str| format!("plugins[{i}].{k}");
        let before = p.0.len();
        let id = r.id.trim().to_string();
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            p.at(
                at("id"),
                format!(
                    "expected a plugin id of letters, digits, `-` and `_`, found {:?}",
                    r.id
                ),
            );
        } else if out.contains_key(&id) {
            p.at(at("id"), format!("plugin id {id:?} is used twice"));
        }
        if r.command.trim().is_empty() {
            p.at(
                at("command"),
                "expected the program to run (`python3`, `/usr/lib/shopbridge/plugins/csv-log`)",
            );
        }
        let l = r.limits.clone().unwrap_or_default();
        let size = |p: &mut Problems, key: &str, h: Option<&super::schema::Human>| match h {
            None => None,
            Some(h) => match super::human::parse_size(&h.0) {
                Ok(0) | Err(_) => {
                    p.at(
                        at(key),
                        format!("expected a size like \"256MiB\", found {:?}", h.0),
                    );
                    None
                }
                Ok(n) => Some(n),
            },
        };
        let memory = size(p, "limits.memory", l.memory.as_ref());
        let max_line = size(p, "limits.max_line", l.max_line.as_ref());
        let open_files = match l.open_files {
            None => None,
            Some(n) if (16..=1_048_576).contains(&n) => Some(n as u64),
            Some(n) => {
                p.at(
                    at("limits.open_files"),
                    format!("expected 16-1048576, found {n}"),
                );
                None
            }
        };
        let interval = optional_duration(p, &at("health_interval"), r.health_interval.as_ref());
        let timeout = optional_duration(p, &at("health_timeout"), r.health_timeout.as_ref());
        if p.0.len() != before {
            continue;
        }
        let settings = r.settings.clone().unwrap_or_else(|| serde_json::json!({}));
        if !settings.is_object() {
            p.at(at("settings"), "expected a table of settings");
            continue;
        }
        out.insert(
            id.clone(),
            std::sync::Arc::new(super::PluginDef {
                id,
                command: r.command.trim().to_string(),
                args: r.args.clone(),
                env: r.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                settings,
                limits: crate::drivers::plugin::Limits {
                    memory,
                    open_files,
                    max_line: max_line.map_or(1 << 20, |n| n as usize),
                },
                health_interval: interval.flatten().unwrap_or(Duration::from_secs(10)),
                health_timeout: timeout.flatten().unwrap_or(Duration::from_secs(10)),
            }),
        );
    }
    out
}

/// A FOCAS address with its port: `host` alone is `host:8193`.
fn focas_address(a: &str) -> String {
    let a = a.trim();
    let has_port = match a.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => a.matches(':').count() == 1,
    };
    if has_port || a.is_empty() {
        a.to_string()
    } else if a.contains(':') {
        format!("[{a}]:{}", crate::drivers::focas::DEFAULT_PORT)
    } else {
        format!("{a}:{}", crate::drivers::focas::DEFAULT_PORT)
    }
}

/// `type = "focas"`: `address` (`host` or `host:port`, port 8193 by default), macro variables
/// 1-99999, parameter numbers 0-65535.
fn focas_driver(
    p: &mut Problems,
    at: &dyn Fn(&str) -> String,
    f: &super::schema::RawFocasDriver,
) -> Option<DriverConfig> {
    let address = focas_address(&f.address);
    let address = match check_host_port(&address) {
        Ok(()) => Some(address),
        Err(()) => {
            p.at(
                at("driver.address"),
                format!(
                    "expected \"host\" or \"host:port\" (the control's FOCAS/Ethernet port, 8193 unless set otherwise), found {:?}",
                    f.address
                ),
            );
            None
        }
    };
    let interval = optional_duration(p, &at("driver.interval"), f.interval.as_ref());
    let timeout = optional_duration(p, &at("driver.timeout"), f.timeout.as_ref());
    let mut ok = true;
    let mut numbers =
        |list: &[i64], key: &str, range: std::ops::RangeInclusive<u32>, what: &str| {
            let mut out: Vec<u32> = Vec::with_capacity(list.len());
            for (i, v) in list.iter().enumerate() {
                match u32::try_from(*v) {
                    Ok(v) if range.contains(&v) => {
                        if !out.contains(&v) {
                            out.push(v);
                        }
                    }
                    _ => {
                        p.at(
                            at(&format!("driver.{key}[{i}]")),
                            format!("expected {what}, found {v}"),
                        );
                        ok = false;
                    }
                }
            }
            out
        };
    let macros = numbers(
        &f.macros,
        "macros",
        1..=99_999,
        "a macro variable number 1-99999 (like 3027)",
    );
    let params = numbers(
        &f.params,
        "params",
        0..=65_535,
        "a parameter number 0-65535 (like 6712)",
    );
    let (address, interval, timeout) = (address?, interval?, timeout?);
    ok.then(|| DriverConfig::Focas {
        spec: crate::drivers::focas::FocasSpec {
            address,
            macros,
            params,
            timeout: timeout.unwrap_or(Duration::from_secs(2)),
        },
        interval: interval.unwrap_or(Duration::from_secs(1)),
    })
}

/// `type = "modbus"`: exactly one of `address` (TCP) and `serial` (RTU); unit 0-247.
fn modbus_driver(
    p: &mut Problems,
    at: &dyn Fn(&str) -> String,
    m: &super::schema::RawModbusDriver,
) -> Option<DriverConfig> {
    use crate::drivers::modbus::Transport;
    let transport = match (&m.address, &m.serial) {
        (Some(a), None) => match check_host_port(a) {
            Ok(()) => Some(Transport::Tcp(a.trim().to_string())),
            Err(()) => {
                p.at(
                    at("driver.address"),
                    format!("expected \"host:port\" (Modbus TCP, usually port 502), found {a:?}"),
                );
                None
            }
        },
        (None, Some(s)) => {
            serial(p, &at("driver.serial"), s, MODBUS_RTU_DEFAULTS).map(Transport::Rtu)
        }
        (Some(_), Some(_)) => {
            p.at(
                at("driver.serial"),
                "give either `address` (Modbus TCP) or `serial` (Modbus RTU), not both",
            );
            None
        }
        (None, None) => {
            p.at(
                at("driver"),
                "missing `address = \"host:502\"` (Modbus TCP) or `serial = { port = \"/dev/ttyUSB0\" }` (Modbus RTU)",
            );
            None
        }
    };
    let unit = match m.unit {
        None => Some(1),
        Some(u) => match u8::try_from(u) {
            Ok(u) if u <= 247 => Some(u),
            _ => {
                p.at(
                    at("driver.unit"),
                    format!("expected a unit (slave) id 0-247, found {u}"),
                );
                None
            }
        },
    };
    let interval = optional_duration(p, &at("driver.interval"), m.interval.as_ref());
    let timeout = optional_duration(p, &at("driver.timeout"), m.timeout.as_ref());
    let (transport, unit, interval, timeout) = (transport?, unit?, interval?, timeout?);
    Some(DriverConfig::Modbus {
        transport,
        unit,
        interval: interval.unwrap_or(Duration::from_millis(250)),
        timeout: timeout.unwrap_or(Duration::from_secs(1)),
    })
}

/// Modbus RTU's usual line: 19200 baud, 8 data bits, even parity, 1 stop bit (the Modbus
/// serial line specification's default).
const MODBUS_RTU_DEFAULTS: SerialDefaults = SerialDefaults {
    baud: 19_200,
    data_bits: 8,
    parity: crate::drivers::serial::Parity::Even,
    stop_bits: 1,
};

/// A serial line's defaults (where the key is left out).
#[derive(Clone, Copy)]
struct SerialDefaults {
    baud: u32,
    data_bits: u8,
    parity: crate::drivers::serial::Parity,
    stop_bits: u8,
}

/// A Haas control's factory RS-232 settings: 9600 baud, 7 data bits, even parity, 1 stop bit
/// (Settings 11, 37, 12 and 13).
const HAAS_SERIAL_DEFAULTS: SerialDefaults = SerialDefaults {
    baud: 9600,
    data_bits: 7,
    parity: crate::drivers::serial::Parity::Even,
    stop_bits: 1,
};

/// `serial = { port, baud, data_bits, parity, stop_bits, flow }`.
fn serial(
    p: &mut Problems,
    key: &str,
    s: &super::schema::RawSerial,
    d: SerialDefaults,
) -> Option<crate::drivers::serial::SerialSettings> {
    use crate::drivers::serial::{Flow, Parity, SerialSettings};
    let before = p.0.len();
    let port = s.port.trim();
    if port.is_empty() {
        p.at(
            format!("{key}.port"),
            "expected a serial device like \"/dev/ttyUSB0\", found an empty string",
        );
    }
    const BAUDS: [u32; 10] = [
        300, 1200, 2400, 4800, 9600, 19_200, 38_400, 57_600, 115_200, 230_400,
    ];
    let baud = s.baud.unwrap_or(d.baud);
    if !BAUDS.contains(&baud) {
        p.at(
            format!("{key}.baud"),
            format!(
                "expected a baud rate (one of {}), found {baud}",
                BAUDS.map(|b| b.to_string()).join(", ")
            ),
        );
    }
    let data_bits = s.data_bits.unwrap_or(d.data_bits);
    if !(7..=8).contains(&data_bits) {
        p.at(
            format!("{key}.data_bits"),
            format!("expected 7 or 8, found {data_bits}"),
        );
    }
    let stop_bits = s.stop_bits.unwrap_or(d.stop_bits);
    if !(1..=2).contains(&stop_bits) {
        p.at(
            format!("{key}.stop_bits"),
            format!("expected 1 or 2, found {stop_bits}"),
        );
    }
    let parity = match s.parity.as_deref().map(|x| x.trim().to_ascii_lowercase()) {
        None => d.parity,
        Some(x) => match x.as_str() {
            "none" => Parity::None,
            "even" => Parity::Even,
            "odd" => Parity::Odd,
            _ => {
                p.at(
                    format!("{key}.parity"),
                    format!("expected \"none\", \"even\" or \"odd\", found {x:?}"),
                );
                Parity::None
            }
        },
    };
    let flow = match s.flow.as_deref().map(|x| x.trim().to_ascii_lowercase()) {
        None => Flow::None,
        Some(x) => match x.as_str() {
            "none" => Flow::None,
            "xonxoff" | "software" => Flow::Software,
            "rtscts" | "hardware" => Flow::Hardware,
            _ => {
                p.at(
                    format!("{key}.flow"),
                    format!("expected \"none\", \"xonxoff\" or \"rtscts\", found {x:?}"),
                );
                Flow::None
            }
        },
    };
    (p.0.len() == before).then(|| SerialSettings {
        port: port.to_string(),
        baud,
        data_bits,
        parity,
        stop_bits,
        flow,
    })
}

/// An optional device name (MTConnect device name or uuid): non-empty, no spaces or `:`/`|`
/// (which SHDR uses as separators).
fn device_name(p: &mut Problems, key: &str, d: Option<&str>) -> Option<Option<String>> {
    let Some(d) = d else { return Some(None) };
    let t = d.trim();
    if t.is_empty() || t.chars().any(|c| c.is_whitespace() || c == ':' || c == '|') {
        p.at(
            key.to_string(),
            format!(
                "expected the device's name or uuid as the adapter or agent spells it, like \"OKUMA\", found {d:?}"
            ),
        );
        return None;
    }
    Some(Some(t.to_string()))
}

/// An agent's base URL: `http://host[:port][/prefix]`, returned without a trailing slash.
fn check_agent_url(u: &str) -> Result<String, String> {
    let t = u.trim().trim_end_matches('/');
    let bad = || {
        format!(
            "expected the agent's base URL, like \"http://10.0.4.20:5000\" (http only; no /probe or /current at the end), found {u:?}"
        )
    };
    let rest = t.strip_prefix("http://").ok_or_else(bad)?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host_port = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    check_host_port(&host_port).map_err(|()| bad())?;
    let last = path.rsplit('/').next().unwrap_or("");
    if matches!(last, "probe" | "current" | "sample" | "assets") {
        return Err(bad());
    }
    Ok(t.to_string())
}

/// `host:port` with a non-empty host (a name, an IPv4 address or a `[bracketed]` IPv6 address)
/// and a port 1-65535.
fn check_host_port(s: &str) -> Result<(), ()> {
    let s = s.trim();
    let (host, port) = s.rsplit_once(':').ok_or(())?;
    let port: u16 = port.parse().map_err(|_| ())?;
    if port == 0 {
        return Err(());
    }
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    };
    if host_ok { Ok(()) } else { Err(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port() {
        assert!(check_host_port("127.0.0.1:7878").is_ok());
        assert!(check_host_port("okuma-1.shop.local:7878").is_ok());
        assert!(check_host_port("[::1]:7878").is_ok());
        assert!(check_host_port("127.0.0.1:99999").is_err());
        assert!(check_host_port("127.0.0.1:0").is_err());
        assert!(check_host_port("127.0.0.1").is_err());
        assert!(check_host_port(":7878").is_err());
        assert!(check_host_port("my host:7878").is_err());
        assert!(check_host_port("::1:7878").is_err());
        assert!(check_host_port("[nope]:7878").is_err());
    }
}
