//! The edge node on the wire (rumqttc, MQTT 3.1.1), with store-and-forward from the journal.
//!
//! One connection at a time:
//! 1. a new bdSeq (stored before use), the NDEATH Will, CONNECT with a clean session: the
//!    journal, not rumqttc's queue, is the buffer;
//! 2. subscribe NCMD, DCMD and the primary host's STATE (after every reconnect); with a primary
//!    host configured, wait for its `online: true`;
//! 3. NBIRTH and every connected machine's DBIRTH, with the current values;
//! 4. every journal record after the cursor's last confirmed one, in order, as DDATA (flagged
//!    historical when it was journaled before this connection's births), each batch followed
//!    by a QoS 1 marker outside `spBv1.0/`. The marker's PUBACK proves the broker holds the
//!    batch (MQTT keeps one connection's packets in order), and only then does the journal
//!    cursor advance;
//! 5. on shutdown, or when the primary host goes offline, NDEATH then DISCONNECT. On a lost
//!    connection the cursor goes back to its last confirmation and step 1 starts again with
//!    backoff.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use prost::Message;
use rumqttc::{
    AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::bdseq::BdSeqStore;
use super::metrics::{Update, WRITABLE, command, device_metrics};
use super::node::{EdgeNode, MetricDef, NodeCommand, Publish};
use super::records::{DeviceUpdate, update};
use crate::clock::Clock;
use crate::config::{MqttBroker, MqttTls, SparkplugConfig};
use crate::context::commands::Commands;
use crate::journal::{Cursor, Journal, StartAt};
use crate::model::{CommandOrigin, LinkStatus, MachineId};
use crate::northbound::http::Telemetry;
use crate::northbound::live::{LiveMachine, LiveView};

/// What the bridge gives the edge node.
pub struct Wiring {
    pub journal: Journal,
    /// Machine id, name, and the profile's signals (each a `Signals/<signal>` metric).
    pub machines: Vec<(MachineId, String, Vec<String>)>,
    pub data_dir: PathBuf,
    pub clock: Clock,
    pub commands: Commands,
    pub telemetry: Arc<Telemetry>,
}

/// Where and how to connect, checked before the bridge starts.
#[derive(Clone)]
pub struct Connection {
    pub host: String,
    pub port: u16,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Started in this process (for the announcement).
    pub embedded: bool,
}

impl Connection {
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Why the edge node cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SparkplugError {
    #[error("[mqtt] {key} = {path:?}: {why}")]
    Tls {
        key: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error("[mqtt] mqtts://: {0}")]
    TlsSetup(String),
    #[error(transparent)]
    Broker(#[from] super::broker::BrokerError),
}

/// Resolves the broker: starts the embedded one, or reads the TLS files of an external one
/// (a missing or unreadable file stops the bridge at start, naming the key and the file).
pub fn connect_to(cfg: &SparkplugConfig) -> Result<Connection, SparkplugError> {
    match &cfg.mqtt.broker {
        MqttBroker::Embedded { port } => Ok(Connection {
            host: "127.0.0.1".into(),
            port: super::broker::start(*port)?,
            tls: None,
            embedded: true,
        }),
        MqttBroker::External { host, port, tls } => Ok(Connection {
            host: host.clone(),
            port: *port,
            tls: tls.as_ref().map(tls_config).transpose()?.map(Arc::new),
            embedded: false,
        }),
    }
}

fn tls_config(tls: &MqttTls) -> Result<rustls::ClientConfig, SparkplugError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = |key: &'static str, path: &Path| {
        let bad = |why: String| SparkplugError::Tls {
            key,
            path: path.to_path_buf(),
            why,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("holds no PEM certificate".into()));
        }
        Ok(certs)
    };
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            for c in certs("ca_file", path)? {
                roots.add(c).map_err(|e| SparkplugError::Tls {
                    key: "ca_file",
                    path: path.clone(),
                    why: e.to_string(),
                })?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(SparkplugError::TlsSetup(
                    "this system has no CA certificates; set [mqtt] ca_file to the CA that signed the broker's certificate".into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SparkplugError::TlsSetup(e.to_string()))?
        .with_root_certificates(roots);
    match &tls.client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = certs("client_cert", cert)?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| SparkplugError::Tls {
                key: "client_key",
                path: key.clone(),
                why: e.to_string(),
            })?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| SparkplugError::Tls {
                    key: "client_key",
                    path: key.clone(),
                    why: e.to_string(),
                })
        }
    }
}

/// Events the MQTT event loop task forwards.
enum Wire {
    Connected,
    /// A QoS 1 publish left with this packet id (in the order publishes were made).
    SentQos1(u16),
    Acked(u16),
    Message(String, Vec<u8>),
    /// DISCONNECT is on the wire.
    Disconnected,
    Lost(String),
}

/// How a connection ended.
enum Ended {
    Shutdown,
    /// The primary host went offline: NDEATH and DISCONNECT are out; connect again and wait.
    HostOffline,
    Lost(String),
}

fn ms(clock: &Clock) -> u64 {
    (clock.now().as_micros() / 1000).max(0) as u64
}

/// Runs the edge node until `shutdown`.
pub async fn run(cfg: SparkplugConfig, conn: Connection, w: Wiring, shutdown: CancellationToken) {
    let mut cursor = match w.journal.cursor("sparkplug", StartAt::End).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "Sparkplug cannot open its journal cursor; Sparkplug is off");
            return;
        }
    };
    let store = BdSeqStore::new(&w.data_dir);
    let mut host = HostState::default();
    let mut backoff = Duration::from_millis(250);
    while !shutdown.is_cancelled() {
        // tck-id-payloads-ndeath-bdseq-incrementing: a new bdSeq for every CONNECT, stored
        // before it is used so that a restart never reuses one.
        let bd_seq = match store.next() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot store the Sparkplug bdSeq; retrying in 5 s");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                }
            }
        };
        let mut node = EdgeNode::new(
            &cfg.group_id,
            &cfg.edge_node_id,
            bd_seq,
            cfg.rebirth_cooldown.as_millis() as u64,
        );
        for (id, _, signals) in &w.machines {
            let defs: Vec<MetricDef> = device_metrics(signals);
            node.add_device(id.as_str(), defs);
        }
        let (client, rx, pump) = open(&cfg, &conn, &node, &w.clock);
        Telemetry::add(&w.telemetry.sparkplug_connects_total, 1);
        let mut s = Session {
            cfg: &cfg,
            w: &w,
            node,
            client,
            rx,
            markers: VecDeque::new(),
            born: false,
        };
        let outcome = s.run(&mut cursor, &mut host, &shutdown).await;
        w.telemetry.sparkplug_online.store(0, Ordering::Relaxed);
        let born = s.born;
        drop(s);
        // Let the event loop put NDEATH and DISCONNECT on the wire (it stops when the broker
        // closes the connection).
        let abort = pump.abort_handle();
        if tokio::time::timeout(Duration::from_millis(250), pump)
            .await
            .is_err()
        {
            abort.abort();
        }
        cursor.rewind();
        match outcome {
            Ended::Shutdown => return,
            Ended::HostOffline => {
                tracing::info!(host = ?cfg.primary_host_id, "primary host offline: NDEATH sent; buffering in the journal until it is back");
                backoff = Duration::from_millis(250);
            }
            Ended::Lost(why) => {
                if born {
                    backoff = Duration::from_millis(250);
                }
                tracing::warn!(reason = %why, broker = %conn.url(), retry_in_ms = backoff.as_millis() as u64, "Sparkplug connection lost; buffering in the journal");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// The client and its event loop task: CONNECT with the NDEATH Will and a clean session.
fn open(
    cfg: &SparkplugConfig,
    conn: &Connection,
    node: &EdgeNode,
    clock: &Clock,
) -> (
    AsyncClient,
    mpsc::UnboundedReceiver<Wire>,
    tokio::task::JoinHandle<()>,
) {
    // tck-id-topics-ndeath-will-qos1 / tck-id-topics-ndeath-will-retain: the Will is NDEATH,
    // QoS 1, not retained, with the bdSeq the NBIRTH will carry.
    let will = node.will(ms(clock));
    let mut opts = MqttOptions::new(cfg.mqtt.client_id.clone(), conn.host.clone(), conn.port);
    opts.set_keep_alive(cfg.mqtt.keep_alive)
        .set_clean_session(true)
        .set_max_packet_size(16 << 20, 16 << 20)
        .set_last_will(LastWill::new(
            will.topic.clone(),
            will.payload.encode_to_vec(),
            QoS::AtLeastOnce,
            false,
        ));
    if let Some(u) = &cfg.mqtt.username {
        opts.set_credentials(u.clone(), cfg.mqtt.password.clone().unwrap_or_default());
    }
    if let Some(tls) = &conn.tls {
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls.clone(),
        )));
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 4096);
    // Small QoS 0 messages must not wait for Nagle's algorithm (tens of ms on loopback).
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    eventloop.set_network_options(net);
    // Unbounded: the session may be blocked publishing while the loop reports acks; a bounded
    // channel here would stop the loop that drains the publishes. One event per QoS 1 publish
    // and per incoming message, not per DDATA.
    let (tx, rx) = mpsc::unbounded_channel::<Wire>();
    let pump = tokio::spawn(async move {
        loop {
            let ev = match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => Wire::Connected,
                Ok(Event::Incoming(Packet::PubAck(a))) => Wire::Acked(a.pkid),
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    Wire::Message(p.topic.clone(), p.payload.to_vec())
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) if pkid != 0 => Wire::SentQos1(pkid),
                // DISCONNECT is buffered, not yet written: keep polling until the broker
                // closes the connection (or the session gives up waiting), or the broker
                // would publish the Will after all.
                Ok(Event::Outgoing(Outgoing::Disconnect)) => Wire::Disconnected,
                Ok(_) => continue,
                Err(e) => {
                    let _ = tx.send(Wire::Lost(e.to_string()));
                    return;
                }
            };
            // The session may be gone (it left): keep polling so that the NDEATH and the
            // DISCONNECT it queued still reach the broker.
            let _ = tx.send(ev);
        }
    });
    (client, rx, pump)
}

/// The primary host's last STATE (Sparkplug 3.0 JSON form), kept across connections.
#[derive(Debug, Default)]
struct HostState {
    online: bool,
    /// The timestamp of the last `online: true`: an `online: false` older than it is stale.
    online_since: u64,
}

/// What a STATE message did.
#[derive(Debug, PartialEq)]
enum HostChange {
    CameOnline,
    WentOffline,
    Nothing,
}

impl HostState {
    /// tck-id-operational-behavior-edge-node-birth-sequence-wait /
    /// tck-id-operational-behavior-edge-node-terminate-session-timestamp: `online: false`
    /// counts only when its timestamp is not older than the last `online: true`.
    fn on_state(&mut self, payload: &[u8]) -> Result<HostChange, String> {
        let v: serde_json::Value =
            serde_json::from_slice(payload).map_err(|e| format!("STATE is not JSON ({e})"))?;
        let online = v
            .get("online")
            .and_then(|o| o.as_bool())
            .ok_or("STATE has no Boolean \"online\"")?;
        let ts = v.get("timestamp").and_then(|t| t.as_u64()).unwrap_or(0);
        Ok(match (online, self.online) {
            (true, _) => {
                let came = !self.online;
                self.online = true;
                self.online_since = self.online_since.max(ts);
                if came {
                    HostChange::CameOnline
                } else {
                    HostChange::Nothing
                }
            }
            (false, true) if ts >= self.online_since => {
                self.online = false;
                HostChange::WentOffline
            }
            (false, _) => HostChange::Nothing,
        })
    }
}

/// One MQTT connection.
struct Session<'a> {
    cfg: &'a SparkplugConfig,
    w: &'a Wiring,
    node: EdgeNode,
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Wire>,
    /// Markers sent, oldest first: (packet id once known, last journal seq it covers).
    markers: VecDeque<(Option<u16>, u64)>,
    /// The births went out on this connection.
    born: bool,
}

impl Session<'_> {
    async fn send(&self, p: &Publish) -> Result<(), Ended> {
        let qos = if p.qos1 {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        };
        self.client
            .publish(p.topic.clone(), qos, p.retain, p.payload.encode_to_vec())
            .await
            .map_err(|e| Ended::Lost(e.to_string()))?;
        Telemetry::add(&self.w.telemetry.sparkplug_messages_total, 1);
        Ok(())
    }

    async fn send_all(&self, ps: &[Publish]) -> Result<(), Ended> {
        for p in ps {
            self.send(p).await?;
        }
        Ok(())
    }

    /// tck-id-operational-behavior-edge-node-termination-host-offline /
    /// tck-id-operational-behavior-edge-node-intentional-disconnect-ndeath: NDEATH, then
    /// DISCONNECT.
    async fn leave(&self) {
        let death = self.node.will(ms(&self.w.clock));
        let _ = self.send(&death).await;
        let _ = self.client.disconnect().await;
    }

    async fn run(
        &mut self,
        cursor: &mut Cursor,
        host: &mut HostState,
        shutdown: &CancellationToken,
    ) -> Ended {
        match self.connect(host, shutdown).await {
            Ok(()) => {}
            Err(e) => return e,
        }
        match self.publish(cursor, host, shutdown).await {
            Ok(()) => Ended::Shutdown,
            Err(e) => e,
        }
    }

    /// CONNACK, subscriptions, and the primary host's `online: true` when one is configured.
    async fn connect(
        &mut self,
        host: &mut HostState,
        shutdown: &CancellationToken,
    ) -> Result<(), Ended> {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Err(Ended::Shutdown),
                ev = self.rx.recv() => match ev {
                    Some(Wire::Connected) => break,
                    Some(Wire::Lost(why)) => return Err(Ended::Lost(why)),
                    None | Some(Wire::Disconnected) => return Err(Ended::Lost("the MQTT event loop stopped".into())),
                    _ => {}
                }
            }
        }
        // tck-id-operational-behavior-edge-node-subscribe-ncmd / -dcmd / -state: after every
        // CONNECT (the session is clean).
        for t in self.node.subscriptions(self.cfg.primary_host_id.as_deref()) {
            self.client
                .subscribe(t, QoS::AtLeastOnce)
                .await
                .map_err(|e| Ended::Lost(e.to_string()))?;
        }
        let Some(host_id) = self.cfg.primary_host_id.as_deref() else {
            return Ok(());
        };
        // The STATE is retained: the broker sends the host's current one right after the
        // subscription. Until it says online, nothing is born and the journal buffers.
        host.online = false;
        let state_topic = format!("spBv1.0/STATE/{host_id}");
        tracing::info!(
            host = host_id,
            "waiting for the primary host's STATE online"
        );
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.leave().await;
                    return Err(Ended::Shutdown);
                }
                ev = self.rx.recv() => match ev {
                    Some(Wire::Message(topic, bytes)) if topic == state_topic => {
                        match host.on_state(&bytes) {
                            Ok(HostChange::CameOnline) => return Ok(()),
                            Ok(_) => {}
                            Err(why) => tracing::warn!(topic, %why, "STATE ignored"),
                        }
                    }
                    Some(Wire::Lost(why)) => return Err(Ended::Lost(why)),
                    None | Some(Wire::Disconnected) => return Err(Ended::Lost("the MQTT event loop stopped".into())),
                    _ => {}
                }
            }
        }
    }

    /// Births, then the journal, until shutdown (Ok) or the connection ends (Err).
    async fn publish(
        &mut self,
        cursor: &mut Cursor,
        host: &mut HostState,
        shutdown: &CancellationToken,
    ) -> Result<(), Ended> {
        let w = self.w;
        // The mirror: every machine's state now, for the births.
        let view = LiveView::new(w.machines.iter().map(|(id, name, _)| {
            LiveMachine::new(id.clone(), name.clone(), String::new(), String::new())
        }));
        let live_from = view.catch_up(&w.journal);
        let now = ms(&w.clock);
        // The DBIRTHs carry the mirror's current values: load them first (no message while a
        // device is not born, and no seq used).
        for m in view.snapshot() {
            let values = super::metrics::device_values(&m, w.clock.now());
            let changes: Vec<(&str, _, u64)> = values
                .iter()
                .map(|(n, v, t)| (n.as_str(), v.clone(), *t))
                .collect();
            let _ = self.node.device_data(m.id.as_str(), &changes, true, now);
        }
        let ids = online(&view);
        let births = self.node.births(now, &refs(&ids));
        self.send_all(&births).await?;
        self.born = true;
        w.telemetry.sparkplug_online.store(1, Ordering::Relaxed);
        tracing::info!(
            bd_seq = self.node.bd_seq(),
            devices = births.len().saturating_sub(1),
            backlog = w.journal.last_seq().saturating_sub(cursor.acked()),
            "Sparkplug births published"
        );
        let marker_topic = format!(
            "shopbridge/{}/{}/ack",
            self.cfg.group_id, self.cfg.edge_node_id
        );
        let dcmd_prefix = format!(
            "spBv1.0/{}/DCMD/{}/",
            self.cfg.group_id, self.cfg.edge_node_id
        );
        let ncmd_topic = self.node.topic("NCMD", None);
        let state_topic = self
            .cfg
            .primary_host_id
            .as_ref()
            .map(|h| format!("spBv1.0/STATE/{h}"));
        let mut appended = w.journal.subscribe();
        loop {
            // Publish what the journal holds beyond what is in flight.
            appended.borrow_and_update();
            let batch = cursor
                .next_batch(4_000)
                .map_err(|e| Ended::Lost(format!("journal: {e}")))?;
            if batch.lost > 0 {
                tracing::error!(
                    records = batch.lost,
                    "journal records were removed by retention before the broker confirmed them; they are lost to Sparkplug (the outage filled the journal to [journal] hard_cap_bytes)"
                );
            }
            if let Some(last) = batch.records.last().map(|r| r.seq) {
                let out = self.records(&view, &batch.records, live_from);
                tracing::debug!(
                    records = batch.records.len(),
                    messages = out.len(),
                    last,
                    historical = last <= live_from,
                    "journal batch published"
                );
                self.send_all(&out).await?;
                self.client
                    .publish(
                        marker_topic.clone(),
                        QoS::AtLeastOnce,
                        false,
                        last.to_string(),
                    )
                    .await
                    .map_err(|e| Ended::Lost(e.to_string()))?;
                self.markers.push_back((None, last));
                // Keep reading acks while a long backlog streams out.
                while let Ok(ev) = self.rx.try_recv() {
                    self.on_wire(
                        ev,
                        cursor,
                        host,
                        &view,
                        &ncmd_topic,
                        &dcmd_prefix,
                        &state_topic,
                    )
                    .await?;
                }
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.leave().await;
                    return Ok(());
                }
                r = appended.changed() => if r.is_err() {
                    return Err(Ended::Lost("the journal closed".into()));
                },
                ev = self.rx.recv() => match ev {
                    Some(ev) => self.on_wire(ev, cursor, host, &view, &ncmd_topic, &dcmd_prefix, &state_topic).await?,
                    None => return Err(Ended::Lost("the MQTT event loop stopped".into())),
                }
            }
        }
    }

    /// Records as DDATA (and DDEATH/DBIRTH for link records), in journal order.
    fn records(
        &mut self,
        view: &LiveView,
        records: &[crate::model::Record],
        live_from: u64,
    ) -> Vec<Publish> {
        let now = ms(&self.w.clock);
        // Each device's updates in this stretch of records, devices in order of appearance.
        let mut per_device = PerDevice::default();
        let mut out: Vec<Publish> = Vec::new();
        let mut historical = records.first().is_some_and(|r| r.seq <= live_from);
        for r in records {
            // The backlog and live data never share a DDATA: the flag is per message.
            if historical != (r.seq <= live_from) {
                self.flush(&mut per_device, historical, now, &mut out);
                historical = r.seq <= live_from;
            }
            let id = r.kind.machine().as_str();
            let Some(u) = view.apply_one(r, |m| update(r, m)) else {
                continue;
            };
            match u {
                DeviceUpdate::Metrics(ms) => per_device.add(id, ms),
                DeviceUpdate::Died => {
                    self.flush(&mut per_device, historical, now, &mut out);
                    out.extend(self.node.device_death(id, now));
                }
                DeviceUpdate::Reborn => {
                    self.flush(&mut per_device, historical, now, &mut out);
                    out.extend(self.node.device_birth(id, now));
                }
                DeviceUpdate::Nothing => {}
            }
        }
        self.flush(&mut per_device, historical, now, &mut out);
        out
    }

    /// The collected metric updates as one DDATA per device.
    fn flush(
        &mut self,
        per_device: &mut PerDevice<'_>,
        historical: bool,
        now: u64,
        out: &mut Vec<Publish>,
    ) {
        for (id, changes) in per_device.take() {
            let (p, _unknown) = self.node.device_data(id, &changes, historical, now);
            if let Some(p) = p {
                Telemetry::add(
                    &self.w.telemetry.sparkplug_metrics_total,
                    p.payload.metrics.len() as u64,
                );
                out.push(p);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn on_wire(
        &mut self,
        ev: Wire,
        cursor: &mut Cursor,
        host: &mut HostState,
        view: &LiveView,
        ncmd_topic: &str,
        dcmd_prefix: &str,
        state_topic: &Option<String>,
    ) -> Result<(), Ended> {
        match ev {
            Wire::SentQos1(pkid) => {
                if let Some(m) = self.markers.iter_mut().find(|m| m.0.is_none()) {
                    m.0 = Some(pkid);
                }
            }
            Wire::Acked(pkid) => {
                // The broker holds everything up to this marker.
                while let Some(&(Some(p), seq)) = self.markers.front() {
                    self.markers.pop_front();
                    let before = cursor.acked();
                    // No commit of its own and no wait: the next batch goes out at once.
                    cursor.ack_soon(seq);
                    Telemetry::add(
                        &self.w.telemetry.sparkplug_records_confirmed_total,
                        seq.saturating_sub(before),
                    );
                    if p == pkid {
                        break;
                    }
                }
            }
            Wire::Message(topic, bytes) => {
                if topic == ncmd_topic {
                    self.on_ncmd(&bytes, view).await?;
                } else if let Some(device) = topic.strip_prefix(dcmd_prefix) {
                    self.on_dcmd(device, &bytes).await;
                } else if Some(&topic) == state_topic.as_ref() {
                    match host.on_state(&bytes) {
                        Ok(HostChange::WentOffline) => {
                            self.leave().await;
                            return Err(Ended::HostOffline);
                        }
                        Ok(_) => {}
                        Err(why) => tracing::warn!(topic, %why, "STATE ignored"),
                    }
                }
            }
            Wire::Lost(why) => return Err(Ended::Lost(why)),
            Wire::Disconnected => return Err(Ended::Lost("disconnected".into())),
            Wire::Connected => {}
        }
        Ok(())
    }

    async fn on_ncmd(&mut self, bytes: &[u8], view: &LiveView) -> Result<(), Ended> {
        let t = &self.w.telemetry;
        let ids = online(view);
        for c in self.node.on_ncmd(bytes, ms(&self.w.clock), &refs(&ids)) {
            match c {
                NodeCommand::Rebirth(msgs) => {
                    Telemetry::add(&t.sparkplug_rebirths_total, 1);
                    Telemetry::add(&t.sparkplug_commands_total, 1);
                    tracing::info!("rebirth requested by NCMD");
                    self.send_all(&msgs).await?;
                }
                NodeCommand::RebirthSuppressed => {
                    Telemetry::add(&t.sparkplug_rebirths_suppressed_total, 1);
                    tracing::info!(
                        cooldown_ms = self.cfg.rebirth_cooldown.as_millis() as u64,
                        "rebirth request within the cooldown ignored"
                    );
                }
                NodeCommand::NextServer => {
                    // One broker is configured: there is no next server to move to.
                    Telemetry::add(&t.sparkplug_commands_refused_total, 1);
                    tracing::info!("NCMD Next Server ignored: one MQTT server is configured");
                }
                NodeCommand::Unknown(what) => {
                    Telemetry::add(&t.sparkplug_commands_refused_total, 1);
                    tracing::warn!(what, "NCMD ignored");
                }
            }
        }
        Ok(())
    }

    /// A DCMD: each writable metric becomes a command record in the journal, attributed to
    /// the Sparkplug channel; its effect comes back as DDATA like any other record.
    async fn on_dcmd(&mut self, device: &str, bytes: &[u8]) {
        let t = &self.w.telemetry;
        let metrics = match self.node.on_dcmd(device, bytes, &WRITABLE) {
            Ok(m) => m,
            Err(e) => {
                Telemetry::add(&t.sparkplug_commands_refused_total, 1);
                tracing::warn!(device, error = %e, "DCMD ignored");
                return;
            }
        };
        for (name, value) in metrics {
            let origin = CommandOrigin {
                channel: "sparkplug".into(),
                user: None,
            };
            let result = if name == "Commands/Dispatch" {
                match (
                    self.w.commands.machine(device),
                    super::metrics::dispatch_list(&value),
                ) {
                    (Ok(m), Ok(list)) => self.w.commands.dispatch(vec![(m, list)], origin).await,
                    (Err(e), _) | (_, Err(e)) => Err(e),
                }
            } else {
                match command(&self.w.commands, &name, &value) {
                    Ok(c) => self.w.commands.submit(device, origin, c).await,
                    Err(e) => Err(e),
                }
            };
            match result {
                Ok(seq) => {
                    Telemetry::add(&t.sparkplug_commands_total, 1);
                    tracing::info!(device, metric = name, seq, "DCMD journaled");
                }
                Err(e) => {
                    Telemetry::add(&t.sparkplug_commands_refused_total, 1);
                    tracing::warn!(device, metric = name, error = %e, "DCMD refused");
                }
            }
        }
    }
}

/// Metric updates grouped by device, devices in the order they first appear.
#[derive(Default)]
struct PerDevice<'a> {
    index: std::collections::HashMap<&'a str, usize>,
    updates: Vec<(&'a str, Vec<Update>)>,
}

impl<'a> PerDevice<'a> {
    fn add(&mut self, id: &'a str, ms: Vec<Update>) {
        match self.index.get(id) {
            Some(&i) => self.updates[i].1.extend(ms),
            None => {
                self.index.insert(id, self.updates.len());
                self.updates.push((id, ms));
            }
        }
    }

    fn take(&mut self) -> Vec<(&'a str, Vec<Update>)> {
        self.index.clear();
        std::mem::take(&mut self.updates)
    }
}

/// Machines whose link is not lost (the ones that get a DBIRTH).
fn online(view: &LiveView) -> Vec<String> {
    view.snapshot()
        .into_iter()
        .filter(|m| m.link != Some(LinkStatus::Lost))
        .map(|m| m.id.as_str().to_string())
        .collect()
}

fn refs(ids: &[String]) -> Vec<&str> {
    ids.iter().map(String::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_offline_state_is_ignored_and_a_current_one_counts() {
        // tck-id-operational-behavior-edge-node-terminate-session-timestamp
        let mut h = HostState::default();
        assert_eq!(
            h.on_state(br#"{"online":true,"timestamp":2000}"#),
            Ok(HostChange::CameOnline)
        );
        assert_eq!(
            h.on_state(br#"{"online":true,"timestamp":2100}"#),
            Ok(HostChange::Nothing)
        );
        assert_eq!(
            h.on_state(br#"{"online":false,"timestamp":1500}"#),
            Ok(HostChange::Nothing),
            "an offline older than the online is a stale Will"
        );
        assert_eq!(
            h.on_state(br#"{"online":false,"timestamp":2100}"#),
            Ok(HostChange::WentOffline)
        );
        assert!(
            h.on_state(b"ONLINE").is_err(),
            "the 2.2 text form is not 3.0"
        );
        assert!(h.on_state(br#"{"timestamp":1}"#).is_err());
    }
}
