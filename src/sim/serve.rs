//! The simulated shop on the network: `shopbridge simulate`, and the demo's machines.
//!
//! Machine `i` is an SHDR adapter on `127.0.0.1:(shdr_base_port + i)`, and every machine is a
//! device of one MTConnect agent on `127.0.0.1:mtconnect_port` (port 0 picks free ports). The
//! faces speak the real wire protocols over real sockets, so whatever connects to them (the
//! bridge's drivers, cppagent, a browser on the agent) sees what it would see on a shop floor.

use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::agent_face::{self, AgentOptions};
use super::shop::{self, ShopOptions, SimShop};
use super::{TruthSink, focas_face, haas_face, modbus_face, shdr_face};

/// The profile of the machines that get a Haas MDC face.
pub const HAAS_PROFILE: &str = "haas-ngc";
/// The family of the shop's Fanuc machines, which get a FOCAS face when asked for
/// ([`Ports::focas_base`]); the bridge then reads them with the `fanuc-focas` profile.
pub const FANUC_FAMILY: &str = "fanuc-mtconnect";
/// The profile a bridge reads a FOCAS face with.
pub const FOCAS_PROFILE: &str = "fanuc-focas";
/// The profile of the retrofitted machines, which get a Modbus face (a stack-light module).
pub const MODBUS_PROFILE: &str = "moxa-e1212";

/// Binds a face for every machine with `profile`: machine `i` on `base + i` (0: free ports);
/// `profile` None: every machine.
async fn bind_faces(
    shop: &SimShop,
    profile: Option<&str>,
    base: u16,
    what: &str,
) -> Result<(Vec<Option<SocketAddr>>, Vec<(usize, TcpListener)>), ServeError> {
    let mut addrs = Vec::with_capacity(shop.machines().len());
    let mut listeners = Vec::new();
    for (i, m) in shop.machines().iter().enumerate() {
        if profile.is_some_and(|p| m.profile != p) {
            addrs.push(None);
            continue;
        }
        let port = if base == 0 { 0 } else { base + i as u16 };
        let l = bind(port, format!("machine {}'s {what}", m.id)).await?;
        addrs.push(Some(
            l.local_addr()
                .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
        ));
        listeners.push((i, l));
    }
    Ok((addrs, listeners))
}
use crate::clock::Clock;
use crate::config::{DriverConfig, MachineConfig};

/// Where the faces listen.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ports {
    /// Machine `i`'s SHDR adapter listens on this + i (0: free ports).
    pub shdr_base: u16,
    /// The MTConnect agent (0: a free port).
    pub mtconnect: u16,
    /// Machine `i`'s Haas MDC port, for Haas machines, is this + i (0: free ports).
    pub haas_base: u16,
    /// Machine `i`'s retrofit Modbus module, for retrofitted machines, is this + i (0: free
    /// ports).
    pub modbus_base: u16,
    /// Fanuc machine `i`'s FOCAS/Ethernet port is this + i (0: free ports); `None`: the Fanuc
    /// machines have no FOCAS face and are read through their SHDR adapter or the agent.
    pub focas_base: Option<u16>,
}

/// A running simulated shop.
pub struct SimServer {
    pub shop: SimShop,
    /// Each machine's SHDR adapter address, in machine order.
    pub shdr: Vec<SocketAddr>,
    /// The MTConnect agent's address.
    pub agent: SocketAddr,
    /// Each machine's Haas MDC port (Haas machines only), in machine order.
    pub haas: Vec<Option<SocketAddr>>,
    /// Each machine's retrofit Modbus module (retrofitted machines only), in machine order.
    pub modbus: Vec<Option<SocketAddr>>,
    /// Each machine's FOCAS port (Fanuc machines, when asked for), in machine order.
    pub focas: Vec<Option<SocketAddr>>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

/// Why the simulated shop could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr} for {what}: {source} (is the port in use? pick other ports)")]
    Bind {
        addr: SocketAddr,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} ports {base}+{count} go past 65535; pick a lower {flag}")]
    PortRange {
        what: &'static str,
        flag: &'static str,
        base: u16,
        count: usize,
    },
}

async fn bind(port: u16, what: String) -> Result<TcpListener, ServeError> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, what, source })
}

impl SimServer {
    /// Builds the shop, binds every face and starts them, with the shop stepping on `clock`.
    /// Closed ground-truth intervals go to `truth` when given.
    pub async fn start(
        opts: &ShopOptions,
        ports: Ports,
        clock: Clock,
        truth: Option<TruthSink>,
        floor: Option<super::floor::FloorSink>,
    ) -> Result<SimServer, ServeError> {
        let (shop, runner) = SimShop::new(opts);
        let n = shop.machines().len();
        for (what, flag, base) in [
            ("SHDR", "--shdr-base-port", ports.shdr_base),
            ("Haas MDC", "--haas-base-port", ports.haas_base),
            ("Modbus", "--modbus-base-port", ports.modbus_base),
            ("FOCAS", "--focas-base-port", ports.focas_base.unwrap_or(0)),
        ] {
            if base != 0 && usize::from(base) + n > 65_536 {
                return Err(ServeError::PortRange {
                    what,
                    flag,
                    base,
                    count: n,
                });
            }
        }
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let (shdr, listeners) = bind_faces(&shop, None, ports.shdr_base, "SHDR adapter").await?;
        let shdr: Vec<SocketAddr> = shdr.into_iter().flatten().collect();
        let (haas, haas_listeners) =
            bind_faces(&shop, Some(HAAS_PROFILE), ports.haas_base, "Haas MDC port").await?;
        let (modbus, modbus_listeners) = bind_faces(
            &shop,
            Some(MODBUS_PROFILE),
            ports.modbus_base,
            "retrofit Modbus module",
        )
        .await?;
        let (focas, focas_listeners) = match ports.focas_base {
            Some(base) => bind_faces(&shop, Some(FANUC_FAMILY), base, "FOCAS port").await?,
            None => (vec![None; n], Vec::new()),
        };
        let agent_listener = bind(ports.mtconnect, "the MTConnect agent".into()).await?;
        let agent = agent_listener
            .local_addr()
            .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, ports.mtconnect)));
        for (i, l) in listeners {
            let span =
                tracing::info_span!("sim_face", face = "shdr", machine = %shop.machines()[i].id);
            tasks.spawn(shdr_face::serve(l, shop.clone(), i, stop.clone()).instrument(span));
        }
        for (i, l) in haas_listeners {
            let span =
                tracing::info_span!("sim_face", face = "haas", machine = %shop.machines()[i].id);
            tasks.spawn(haas_face::serve(l, shop.clone(), i, stop.clone()).instrument(span));
        }
        for (i, l) in modbus_listeners {
            let span =
                tracing::info_span!("sim_face", face = "modbus", machine = %shop.machines()[i].id);
            tasks.spawn(modbus_face::serve(l, shop.clone(), i, stop.clone()).instrument(span));
        }
        for (k, (i, l)) in focas_listeners.into_iter().enumerate() {
            let span =
                tracing::info_span!("sim_face", face = "focas", machine = %shop.machines()[i].id);
            let series = focas_face::Series::of_fanuc(k);
            tasks.spawn(
                focas_face::serve(l, shop.clone(), i, series, stop.clone()).instrument(span),
            );
        }
        let span = tracing::info_span!("sim_face", face = "mtconnect");
        tasks.spawn(
            agent_face::serve(
                agent_listener,
                shop.clone(),
                AgentOptions::default(),
                stop.clone(),
            )
            .instrument(span),
        );
        tasks.spawn(shop::run(runner, clock, truth, floor, stop.clone()));
        tasks.close();
        Ok(SimServer {
            shop,
            shdr,
            agent,
            haas,
            modbus,
            focas,
            tasks,
            stop,
        })
    }

    /// The shop's machines as a bridge configures them: Haas machines through their MDC port,
    /// Fanuc machines through their FOCAS port when they have one (profile `fanuc-focas`),
    /// the others even ones through their SHDR adapter, odd ones through the agent (which
    /// serves them all on one connection).
    pub fn machine_configs(&self) -> Vec<MachineConfig> {
        self.shop
            .machines()
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                let mut profile = m.profile.to_string();
                let driver = if let Some(Some(addr)) = self.focas.get(i) {
                    profile = FOCAS_PROFILE.to_string();
                    DriverConfig::Focas {
                        spec: crate::drivers::focas::FocasSpec {
                            address: addr.to_string(),
                            macros: vec![3027],
                            params: vec![],
                            timeout: std::time::Duration::from_secs(2),
                        },
                        interval: std::time::Duration::from_secs(1),
                    }
                } else if let Some(Some(addr)) = self.haas.get(i) {
                    DriverConfig::Haas {
                        spec: crate::drivers::haas::HaasSpec {
                            transport: crate::drivers::haas::Transport::Tcp(addr.to_string()),
                            macros: vec![3027],
                            timeout: std::time::Duration::from_secs(2),
                        },
                        interval: std::time::Duration::from_secs(1),
                    }
                } else if let Some(Some(addr)) = self.modbus.get(i) {
                    DriverConfig::Modbus {
                        transport: crate::drivers::modbus::Transport::Tcp(addr.to_string()),
                        unit: 1,
                        interval: std::time::Duration::from_millis(250),
                        timeout: std::time::Duration::from_secs(1),
                    }
                } else if i % 2 == 0 {
                    DriverConfig::Shdr {
                        address: self.shdr.get(i)?.to_string(),
                        heartbeat: None,
                        device: None,
                        devices_file: None,
                    }
                } else {
                    DriverConfig::Mtconnect {
                        url: format!("http://{}", self.agent),
                        device: Some(m.device.clone()),
                        interval: std::time::Duration::from_millis(100),
                        heartbeat: std::time::Duration::from_secs(10),
                    }
                };
                Some(MachineConfig {
                    id: m.id.clone(),
                    name: m.name.clone(),
                    profile,
                    identification: super::nameplate(&m.name, &m.uuid),
                    calendar: Some(super::calendar_of(i).to_string()),
                    parts_per_cycle: 1,
                    driver,
                })
            })
            .collect()
    }

    /// Stops the shop (closing its open truth intervals) and every face.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.tasks.wait()).await;
    }
}

/// Accepts clients on `listener` until `shutdown`, handing each to `client` (which spawns its
/// task on `clients`), then waits for every client task. An accept error (out of file
/// descriptors and the like) waits a moment rather than spinning.
pub(super) async fn accept_loop(
    listener: TcpListener,
    face: &str,
    shutdown: &CancellationToken,
    clients: &TaskTracker,
    mut client: impl FnMut(tokio::net::TcpStream, SocketAddr),
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => client(stream, peer),
            Err(e) => {
                tracing::warn!(face, error = %e, "face cannot accept; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                }
            }
        }
    }
    clients.close();
    clients.wait().await;
}
