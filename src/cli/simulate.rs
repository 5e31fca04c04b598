//! `shopbridge simulate` (the simulated shop alone, on the network) and `shopbridge demo` (the
//! same shop, plus a bridge that reads it through its SHDR and MTConnect drivers).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::app::{self, RunOptions};
use crate::config::{self, Config, DriverConfig, MachineConfig};
use crate::sim::TruthWriter;
use crate::sim::serve::{Ports, SimServer};
use crate::sim::shop::ShopOptions;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many simulated machines (1-1000).
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub machines: u16,
    /// Simulated time runs this many times faster than real time (60 = an hour a minute).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Seed of the simulated shop: the same seed plays the same shift.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where the journal and truth.jsonl are kept.
    #[arg(long, default_value = "./shopbridge-data")]
    pub data_dir: PathBuf,
    /// HTTP port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
    /// Machine i's SHDR adapter listens on 127.0.0.1:(this + i); 0 picks free ports.
    #[arg(long, default_value_t = 0)]
    pub shdr_base_port: u16,
    /// The simulated MTConnect agent's port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    pub mtconnect_port: u16,
    /// Haas machine i's MDC port (Q-commands) listens on 127.0.0.1:(this + i); 0 picks free
    /// ports. The bridge reads the Haas machines through it.
    #[arg(long, default_value_t = 0)]
    pub haas_base_port: u16,
    /// Retrofitted machine i's Modbus I/O module listens on 127.0.0.1:(this + i); 0 picks
    /// free ports. The bridge reads the retrofitted machines through it.
    #[arg(long, default_value_t = 0)]
    pub modbus_base_port: u16,
    /// Give machine INDEX (0-based) a clock that is off, e.g. `2=3m` (3 minutes fast) or
    /// `5=-90s` (90 seconds slow). Repeatable.
    #[arg(long, value_name = "INDEX=OFFSET")]
    pub skew: Vec<String>,
    /// The OPC UA server's port on 127.0.0.1 (None security, anonymous access: a demo on
    /// loopback only); 0 picks a free one.
    #[arg(long, default_value_t = 4840)]
    pub opcua_port: u16,
    /// Run without the OPC UA server.
    #[arg(long)]
    pub no_opcua: bool,
    /// The embedded MQTT broker's port on 127.0.0.1, where the bridge publishes Sparkplug B
    /// (group `demo-shop`, edge node `shopbridge`); 0 picks a free one.
    #[arg(long, default_value_t = 1883)]
    pub mqtt_port: u16,
    /// Publish Sparkplug B to this broker instead of starting one (mqtt://host:port or
    /// mqtts://host:port).
    #[arg(long, value_name = "URL", conflicts_with = "mqtt_port")]
    pub mqtt_url: Option<String>,
    /// Run without Sparkplug B (and without the embedded MQTT broker).
    #[arg(long, conflicts_with_all = ["mqtt_port", "mqtt_url"])]
    pub no_mqtt: bool,
    /// Run without the simulated ERP, QMS and operators (no dispatch lists, holds,
    /// inspections, sign-ins or stop reasons reach the bridge).
    #[arg(long)]
    pub no_erp: bool,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// How many simulated machines (1-1000).
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub machines: u16,
    /// Seed of the simulated shop: the same seed plays the same shift.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Simulated time runs this many times faster than real time. A bridge reading a sped-up
    /// shop sees clocks that run fast; keep 1 unless the bridge runs at the same speed.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Machine i's SHDR adapter listens on 127.0.0.1:(this + i).
    #[arg(long, default_value_t = 7878)]
    pub shdr_base_port: u16,
    /// The MTConnect agent's port on 127.0.0.1 (serves every machine as a device).
    #[arg(long, default_value_t = 5000)]
    pub mtconnect_port: u16,
    /// Haas machine i's MDC port (Q-commands, as Setting 143 opens it) listens on
    /// 127.0.0.1:(this + i).
    #[arg(long, default_value_t = 5051)]
    pub haas_base_port: u16,
    /// Retrofitted machine i's Modbus TCP I/O module (a stack light, cycle relay and spindle
    /// current on a Moxa ioLogik) listens on 127.0.0.1:(this + i).
    #[arg(long, default_value_t = 5020)]
    pub modbus_base_port: u16,
    /// Give the Fanuc machines a FOCAS/Ethernet port: Fanuc machine i listens on
    /// 127.0.0.1:(this + i) (0 picks free ports), alternating 0i-F and 30i-B controls, and
    /// `--print-config` reads them with `type = "focas"` and the `fanuc-focas` profile.
    #[arg(long, value_name = "P")]
    pub focas_base_port: Option<u16>,
    /// Give machine INDEX (0-based) a clock that is off, e.g. `2=3m` or `5=-90s`. Repeatable.
    #[arg(long, value_name = "INDEX=OFFSET")]
    pub skew: Vec<String>,
    /// Write what each machine really did (truth.jsonl) into this directory.
    #[arg(long)]
    pub truth_dir: Option<PathBuf>,
    /// Print a bridge configuration that reads this shop (half the machines through their
    /// SHDR adapters, half through the agent), then run.
    #[arg(long)]
    pub print_config: bool,
    /// Send the simulated ERP's dispatch lists, the QMS's holds and inspections and the
    /// operators' sign-ins and stop reasons to the bridge whose HTTP API is at HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub bridge: Option<SocketAddr>,
    /// The API token the simulated ERP, QMS and operators send to --bridge (a token with the
    /// planner role: dispatch lists and holds need it).
    #[arg(
        long,
        env = "SHOPBRIDGE_TOKEN",
        value_name = "TOKEN",
        requires = "bridge"
    )]
    pub token: Option<String>,
}

fn check_speed(speed: f64) -> anyhow::Result<()> {
    if !(speed.is_finite() && speed > 0.0 && speed <= 100_000.0) {
        anyhow::bail!("--speed must be a number between 0 and 100000, found {speed}");
    }
    Ok(())
}

/// Parses `--skew INDEX=OFFSET` values.
fn skews(values: &[String], machines: u16) -> anyhow::Result<Vec<(usize, i64)>> {
    values
        .iter()
        .map(|v| {
            let (i, d) = v
                .split_once('=')
                .with_context(|| format!("--skew expects INDEX=OFFSET like 2=3m, found {v:?}"))?;
            let index: usize = i
                .trim()
                .parse()
                .with_context(|| format!("--skew {v:?}: {i:?} is not a machine index"))?;
            if index >= usize::from(machines) {
                anyhow::bail!(
                    "--skew {v:?}: there are {machines} machines (indexes 0-{})",
                    machines - 1
                );
            }
            let d = d.trim();
            let (sign, mag) = match d.strip_prefix('-') {
                Some(rest) => (-1, rest),
                None => (1, d.strip_prefix('+').unwrap_or(d)),
            };
            let dur = config::human::parse_duration(mag)
                .map_err(|e| anyhow::anyhow!("--skew {v:?}: {e}"))?;
            Ok((index, sign * dur.as_micros() as i64))
        })
        .collect()
}

fn config_text(machines: &[MachineConfig]) -> String {
    let mut out = String::from(
        "# A bridge configuration for `shopbridge simulate` (save as shopbridge.toml, then\n# `shopbridge run --config shopbridge.toml`).\n\n[journal]\ndir = \"./shopbridge-data\"\n",
    );
    for m in machines {
        out.push_str(&format!(
            "\n[[machines]]\nid = \"{}\"\nname = \"{}\"\nprofile = \"{}\"\n[machines.driver]\n",
            m.id, m.name, m.profile
        ));
        match &m.driver {
            DriverConfig::Shdr { address, .. } => {
                out.push_str(&format!("type = \"shdr\"\naddress = \"{address}\"\n"))
            }
            DriverConfig::Mtconnect { url, device, .. } => {
                out.push_str(&format!("type = \"mtconnect\"\nurl = \"{url}\"\n"));
                if let Some(d) = device {
                    out.push_str(&format!("device = \"{d}\"\n"));
                }
            }
            DriverConfig::Sim { .. } => out.push_str("type = \"sim\"\n"),
            DriverConfig::Modbus {
                transport, unit, ..
            } => {
                if let crate::drivers::modbus::Transport::Tcp(a) = transport {
                    out.push_str(&format!(
                        "type = \"modbus\"\naddress = \"{a}\"\nunit = {unit}\n"
                    ));
                }
            }
            DriverConfig::Focas { spec, .. } => {
                out.push_str(&format!(
                    "type = \"focas\"\naddress = \"{}\"\n",
                    spec.address
                ));
                if !spec.macros.is_empty() {
                    let list: Vec<String> = spec.macros.iter().map(|v| v.to_string()).collect();
                    out.push_str(&format!("macros = [{}]\n", list.join(", ")));
                }
                if !spec.params.is_empty() {
                    let list: Vec<String> = spec.params.iter().map(|v| v.to_string()).collect();
                    out.push_str(&format!("params = [{}]\n", list.join(", ")));
                }
            }
            DriverConfig::Haas { spec, .. } => {
                if let crate::drivers::haas::Transport::Tcp(a) = &spec.transport {
                    out.push_str(&format!("type = \"haas\"\naddress = \"{a}\"\n"));
                }
                if !spec.macros.is_empty() {
                    let list: Vec<String> = spec.macros.iter().map(|v| v.to_string()).collect();
                    out.push_str(&format!("macros = [{}]\n", list.join(", ")));
                }
            }
            DriverConfig::Plugin { plugin, .. } => {
                out.push_str(&format!("type = \"plugin\"\nplugin = \"{}\"\n", plugin.id));
            }
            DriverConfig::Opcua { spec } => {
                out.push_str(&format!(
                    "type = \"opcua\"\nendpoint = \"{}\"\n",
                    spec.endpoint
                ));
                if let Some(b) = &spec.browse {
                    out.push_str(&format!("browse = \"{}\"\n", b.root));
                }
            }
        }
    }
    out
}

fn describe(server: &SimServer) -> String {
    let n = server.shdr.len();
    let consecutive = server
        .shdr
        .windows(2)
        .all(|w| u32::from(w[1].port()) == u32::from(w[0].port()) + 1);
    let adapters = match (server.shdr.first(), server.shdr.last()) {
        (Some(first), Some(last)) if consecutive => {
            format!("{first}..{} (machine i on the i-th port)", last.port())
        }
        _ => {
            let list: Vec<String> = server
                .shop
                .machines()
                .iter()
                .zip(&server.shdr)
                .take(12)
                .map(|(m, a)| format!("{} {a}", m.id))
                .collect();
            let more = if n > 12 { ", …" } else { "" };
            format!("{}{more}", list.join(", "))
        }
    };
    let haas: Vec<String> = server
        .shop
        .machines()
        .iter()
        .zip(&server.haas)
        .filter_map(|(m, a)| a.map(|a| format!("{} {a}", m.id)))
        .take(12)
        .collect();
    let haas = if haas.is_empty() {
        String::new()
    } else {
        format!("; Haas MDC ports: {}", haas.join(", "))
    };
    let modbus: Vec<String> = server
        .shop
        .machines()
        .iter()
        .zip(&server.modbus)
        .filter_map(|(m, a)| a.map(|a| format!("{} {a}", m.id)))
        .take(12)
        .collect();
    let haas = if modbus.is_empty() {
        haas
    } else {
        format!("{haas}; Modbus retrofit modules: {}", modbus.join(", "))
    };
    let focas: Vec<String> = server
        .shop
        .machines()
        .iter()
        .zip(&server.focas)
        .filter_map(|(m, a)| a.map(|a| format!("{} {a}", m.id)))
        .take(12)
        .collect();
    let haas = if focas.is_empty() {
        haas
    } else {
        format!("{haas}; FOCAS ports: {}", focas.join(", "))
    };
    format!(
        "simulated shop: {n} machines; SHDR adapters: {adapters}; MTConnect agent with every machine: http://{}/probe{haas}",
        server.agent
    )
}

/// The simulated shop starting now, its calendar shifted to a busy weekday morning.
fn shop_options(
    machines: u16,
    seed: u64,
    start: crate::model::Timestamp,
    skews: Vec<(usize, i64)>,
) -> ShopOptions {
    ShopOptions {
        machines: usize::from(machines),
        seed,
        start,
        shop_offset_micros: crate::sim::demo_shop_offset(start),
        skews,
    }
}

pub fn simulate(a: SimulateArgs) -> anyhow::Result<i32> {
    check_speed(a.speed)?;
    let skew = skews(&a.skew, a.machines)?;
    let rt = super::runtime()?;
    rt.block_on(async move {
        let clock = app::demo_clock(a.speed);
        let opts = shop_options(a.machines, a.seed, clock.now(), skew);
        let (writer, sink) = match &a.truth_dir {
            Some(d) => {
                let (w, s) = TruthWriter::open(d).await?;
                (Some(w), Some(s))
            }
            None => (None, None),
        };
        let ports = Ports {
            shdr_base: a.shdr_base_port,
            mtconnect: a.mtconnect_port,
            haas_base: a.haas_base_port,
            modbus_base: a.modbus_base_port,
            focas_base: a.focas_base_port,
        };
        let stop_floor = CancellationToken::new();
        let floor = a.bridge.map(|addr| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let (_bound, known) = tokio::sync::watch::channel(Some(addr));
            tokio::spawn(crate::sim::floor::run(
                rx,
                known,
                a.token.clone(),
                Default::default(),
                stop_floor.clone(),
            ));
            tx
        });
        let server = SimServer::start(&opts, ports, clock, sink, floor).await?;
        if a.print_config {
            println!("{}", config_text(&server.machine_configs()));
        }
        println!("{}\nPress Ctrl-C to stop.", describe(&server));
        tokio::signal::ctrl_c()
            .await
            .context("cannot wait for Ctrl-C")?;
        stop_floor.cancel();
        server.stop().await;
        if let Some(w) = writer {
            w.close().await?;
        }
        Ok::<_, anyhow::Error>(0)
    })
}

/// Writes `text` to a new file only its owner may read.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")
}

pub fn demo(a: DemoArgs) -> anyhow::Result<i32> {
    check_speed(a.speed)?;
    let skew = skews(&a.skew, a.machines)?;
    let rt = super::runtime()?;
    rt.block_on(async move {
        let clock = app::demo_clock(a.speed);
        let opts = shop_options(a.machines, a.seed, clock.now(), skew);
        let shop_offset = opts.shop_offset_micros;
        let (writer, sink) = TruthWriter::open(&a.data_dir).await?;
        let ports = Ports {
            shdr_base: a.shdr_base_port,
            mtconnect: a.mtconnect_port,
            haas_base: a.haas_base_port,
            modbus_base: a.modbus_base_port,
            focas_base: None,
        };
        // The simulated ERP, QMS and operators talk to the bridge's REST API once it listens.
        let (bound, known) = tokio::sync::watch::channel(None);
        let bound = std::sync::Arc::new(bound);
        let stop_floor = CancellationToken::new();
        // The simulated ERP and QMS are planners: they get a token of their own, made for this
        // run (the operators' pages need none on loopback).
        let (erp_token, erp_hash) = crate::northbound::http::auth::new_token()
            .context("cannot make the simulated ERP's API token")?;
        let floor = (!a.no_erp).then(|| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(crate::sim::floor::run(
                rx,
                known,
                Some(erp_token),
                Default::default(),
                stop_floor.clone(),
            ));
            tx
        });
        let server = SimServer::start(&opts, ports, clock.clone(), Some(sink), floor).await?;
        println!("{}", describe(&server));
        let mut cfg = Config::demo(
            server.machine_configs(),
            a.data_dir,
            SocketAddr::from((Ipv4Addr::LOCALHOST, a.http_port)),
            a.speed,
            a.seed,
            shop_offset,
        );
        cfg.context.calendars = crate::sim::demo_calendars(shop_offset);
        // Planner and admin calls in the demo: a token made for this run, kept in the data
        // directory (readable by its owner only), never printed.
        let (admin_token, admin_hash) = crate::northbound::http::auth::new_token()
            .context("cannot make the demo's admin token")?;
        let token_file = cfg.journal.dir.join("admin-token");
        write_private(&token_file, &admin_token)
            .with_context(|| format!("cannot write {}", token_file.display()))?;
        println!(
            "REST API: on this host, viewer and operator calls need no token; planner and admin calls (dispatch lists, holds, re-classification) take the token in {} (Authorization: Bearer <token>)",
            token_file.display()
        );
        cfg.http.tokens.push(config::ApiToken {
            name: "demo-admin".into(),
            role: config::Role::Admin,
            sha256: crate::config::parse_sha256(&admin_hash).context("the admin token's hash")?,
        });
        cfg.http.tokens.push(config::ApiToken {
            name: "simulated-erp".into(),
            role: config::Role::Planner,
            sha256: crate::config::parse_sha256(&erp_hash)
                .context("the simulated ERP's token hash")?,
        });
        if !a.no_opcua {
            cfg.opcua = Some(demo_opcua(a.opcua_port)?);
            println!(
                "OPC UA (loopback, security None allowed): user operator / password operator may call the machines' methods; viewer / viewer and anonymous may browse and subscribe"
            );
        }
        if !a.no_mqtt {
            cfg.sparkplug = Some(
                config::SparkplugConfig::demo(a.mqtt_port, a.mqtt_url.as_deref())
                    .map_err(|e| anyhow::anyhow!("--mqtt-url: {e}"))?,
            );
        }
        let result = app::run(
            cfg,
            RunOptions {
                clock,
                announce: true,
                http_bound: Some(bound),
            },
            CancellationToken::new(),
        )
        .await;
        stop_floor.cancel();
        server.stop().await;
        if let Ok(st) = w_close(writer).await {
            if st > 0 {
                tracing::error!(lost = st, "ground-truth lines could not be written");
            }
        }
        result?;
        Ok::<_, anyhow::Error>(0)
    })
}

/// The demo's OPC UA server: loopback only, None security allowed, anonymous viewers, and two
/// users whose passwords are their names (`operator` may call methods, `viewer` may not).
pub const DEMO_OPCUA_USERS: [(&str, crate::config::Role); 2] = [
    ("operator", crate::config::Role::Operator),
    ("viewer", crate::config::Role::Viewer),
];

fn demo_opcua(port: u16) -> anyhow::Result<config::OpcuaConfig> {
    let mut c = config::OpcuaConfig::demo(port);
    for (name, role) in DEMO_OPCUA_USERS {
        let hash = crate::northbound::opcua::auth::hash_password(name)
            .map_err(|e| anyhow::anyhow!("cannot hash the demo password: {e}"))?;
        c.users.push(config::OpcuaUser {
            name: name.to_string(),
            password_hash: hash,
            role,
        });
    }
    Ok(c)
}

async fn w_close(w: TruthWriter) -> anyhow::Result<u64> {
    let st = tokio::time::timeout(Duration::from_secs(2), w.close())
        .await
        .context("the ground-truth writer did not finish")??;
    Ok(st.lost)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skews_parse_signed_durations_and_check_the_index() {
        let s = skews(&["2=3m".into(), "0=-90s".into()], 4).unwrap_or_default();
        assert_eq!(s, vec![(2, 180_000_000), (0, -90_000_000)]);
        assert!(skews(&["9=1m".into()], 4).is_err());
        assert!(skews(&["2:1m".into()], 4).is_err());
        assert!(skews(&["2=soon".into()], 4).is_err());
    }
}
