//! The edge node on the wire (rumqttc, MQTT 3.1.1), with store-and-forward from the journal.
//!
//! WORK IN PROGRESS (issue 5, branch wip-sparkplug): plain `mqtt://` brokers; no TLS, no
//! embedded broker, no primary host, no DCMD handling yet. See docs/dev/sparkplug-notes.md.
//!
//! One connection at a time:
//! 1. a new bdSeq, the NDEATH Will, CONNECT (clean session: the journal is the buffer);
//! 2. subscribe NCMD and DCMD; NBIRTH and every connected machine's DBIRTH (current values);
//! 3. every record after the cursor's last acknowledged one, in order, as DDATA (flagged
//!    historical when it was journaled before this connection's births), each batch followed
//!    by a QoS 1 marker outside `spBv1.0/`; the marker's PUBACK acknowledges the batch (MQTT
//!    keeps a connection's packets in order), and only then does the journal cursor advance;
//! 4. on shutdown NDEATH, then DISCONNECT. On a lost connection the cursor goes back to its
//!    last acknowledgement and step 1 starts again with backoff.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use prost::Message;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::bdseq::BdSeqStore;
use super::metrics::{Update, device_metrics};
use super::node::{EdgeNode, MetricDef, NodeCommand, Publish};
use super::records::{DeviceUpdate, update};
use crate::clock::Clock;
use crate::config::{MqttBroker, SparkplugConfig};
use crate::journal::{Journal, StartAt};
use crate::model::{LinkStatus, MachineId};
use crate::northbound::live::{LiveMachine, LiveView};

/// What the bridge gives the edge node.
pub struct Wiring {
    pub journal: Journal,
    pub machines: Vec<(MachineId, String, Vec<String>)>,
    pub data_dir: PathBuf,
    pub clock: Clock,
}

/// Events the MQTT event loop task forwards.
enum Wire {
    Connected,
    /// A QoS 1 publish left with this packet id (in the order publishes were made).
    SentQos1(u16),
    Acked(u16),
    Message(String, Vec<u8>),
    Lost(String),
}

fn ms(clock: &Clock) -> u64 {
    (clock.now().as_micros() / 1000).max(0) as u64
}

async fn send(client: &AsyncClient, p: &Publish) -> Result<(), rumqttc::ClientError> {
    let qos = if p.qos1 {
        QoS::AtLeastOnce
    } else {
        QoS::AtMostOnce
    };
    client
        .publish(p.topic.clone(), qos, p.retain, p.payload.encode_to_vec())
        .await
}

/// Runs the edge node until `shutdown`.
pub async fn run(cfg: SparkplugConfig, w: Wiring, shutdown: CancellationToken) {
    let MqttBroker::External { host, port, tls } = &cfg.mqtt.broker else {
        tracing::error!("the embedded MQTT broker is not implemented yet; Sparkplug is off");
        return;
    };
    if tls.is_some() {
        tracing::error!("mqtts:// is not implemented yet; Sparkplug is off");
        return;
    }
    let mut cursor = match w.journal.cursor("sparkplug", StartAt::End).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "Sparkplug cannot open its journal cursor");
            return;
        }
    };
    let store = BdSeqStore::new(&w.data_dir);
    let mut backoff = Duration::from_millis(500);
    while !shutdown.is_cancelled() {
        let bd_seq = match store.next() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot store the Sparkplug bdSeq; retrying");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
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
        let will = node.will(ms(&w.clock));
        let mut opts = MqttOptions::new(cfg.mqtt.client_id.clone(), host.clone(), *port);
        opts.set_keep_alive(cfg.mqtt.keep_alive)
            .set_clean_session(true)
            .set_max_packet_size(16 << 20, 16 << 20)
            .set_last_will(LastWill::new(
                will.topic.clone(),
                will.payload.encode_to_vec(),
                QoS::AtLeastOnce,
                false,
            ));
        if let (Some(u), p) = (&cfg.mqtt.username, &cfg.mqtt.password) {
            opts.set_credentials(u.clone(), p.clone().unwrap_or_default());
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 4096);
        let (tx, mut rx) = mpsc::channel::<Wire>(4096);
        let pump = tokio::spawn(async move {
            loop {
                let ev = match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => Wire::Connected,
                    Ok(Event::Incoming(Packet::PubAck(a))) => Wire::Acked(a.pkid),
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        Wire::Message(p.topic.clone(), p.payload.to_vec())
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) if pkid != 0 => {
                        Wire::SentQos1(pkid)
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = tx.send(Wire::Lost(e.to_string())).await;
                        return;
                    }
                };
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
        });
        let outcome = session(
            &cfg,
            &w,
            &mut node,
            &client,
            &mut rx,
            &mut cursor,
            &shutdown,
        )
        .await;
        pump.abort();
        cursor.rewind();
        match outcome {
            Ok(()) => return,
            Err(why) => {
                tracing::warn!(reason = %why, broker = %format!("{host}:{port}"), "Sparkplug connection lost; reconnecting");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// One connection: births, then the journal, until shutdown (Ok) or the link drops (Err).
async fn session(
    cfg: &SparkplugConfig,
    w: &Wiring,
    node: &mut EdgeNode,
    client: &AsyncClient,
    rx: &mut mpsc::Receiver<Wire>,
    cursor: &mut crate::journal::Cursor,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    // Wait for the CONNACK.
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            ev = rx.recv() => match ev {
                Some(Wire::Connected) => break,
                Some(Wire::Lost(why)) => return Err(why),
                None => return Err("the MQTT event loop stopped".into()),
                _ => {}
            }
        }
    }
    for t in node.subscriptions(cfg.primary_host_id.as_deref()) {
        client
            .subscribe(t, QoS::AtLeastOnce)
            .await
            .map_err(|e| e.to_string())?;
    }
    // The mirror: every machine's state now, for the births.
    let view = LiveView::new(w.machines.iter().map(|(id, name, _)| {
        LiveMachine::new(id.clone(), name.clone(), String::new(), String::new())
    }));
    let live_from = view.catch_up(&w.journal);
    let online: Vec<String> = view
        .snapshot()
        .into_iter()
        .filter(|m| m.link != Some(LinkStatus::Lost))
        .map(|m| m.id.as_str().to_string())
        .collect();
    let online_refs: Vec<&str> = online.iter().map(String::as_str).collect();
    let now = ms(&w.clock);
    // The DBIRTHs carry the mirror's current values: load them first (no message while a
    // device is not born, and no seq used).
    for m in view.snapshot() {
        let values = super::metrics::device_values(&m, w.clock.now());
        let changes: Vec<(&str, _, u64)> = values
            .iter()
            .map(|(n, v, t)| (n.as_str(), v.clone(), *t))
            .collect();
        let _ = node.device_data(m.id.as_str(), &changes, true, now);
    }
    let births = node.births(now, &online_refs);
    for b in &births {
        send(client, b).await.map_err(|e| e.to_string())?;
    }
    let marker_topic = format!("shopbridge/{}/{}/ack", cfg.group_id, cfg.edge_node_id);
    // Markers sent, oldest first: (packet id once known, journal seq it covers).
    let mut markers: VecDeque<(Option<u16>, u64)> = VecDeque::new();
    let mut appended = w.journal.subscribe();
    loop {
        // Publish what the journal holds beyond what is in flight.
        appended.borrow_and_update();
        let batch = cursor.next_batch(2_000).map_err(|e| e.to_string())?;
        if let Some(last) = batch.records.last().map(|r| r.seq) {
            let now = ms(&w.clock);
            let mut per_device: BTreeMap<String, Vec<Update>> = BTreeMap::new();
            let mut out: Vec<Publish> = Vec::new();
            for r in &batch.records {
                view.apply(std::slice::from_ref(r));
                let id = r.kind.machine().as_str().to_string();
                let Some(m) = view.get(&id) else { continue };
                match update(r, &m) {
                    DeviceUpdate::Metrics(ms) => per_device.entry(id).or_default().extend(ms),
                    DeviceUpdate::Died => {
                        flush(node, &mut per_device, r.seq <= live_from, now, &mut out);
                        out.extend(node.device_death(&id, now));
                    }
                    DeviceUpdate::Reborn => {
                        flush(node, &mut per_device, r.seq <= live_from, now, &mut out);
                        out.extend(node.device_birth(&id, now));
                    }
                    DeviceUpdate::Nothing => {}
                }
            }
            flush(node, &mut per_device, last <= live_from, now, &mut out);
            for p in &out {
                send(client, p).await.map_err(|e| e.to_string())?;
            }
            client
                .publish(
                    marker_topic.clone(),
                    QoS::AtLeastOnce,
                    false,
                    last.to_string(),
                )
                .await
                .map_err(|e| e.to_string())?;
            markers.push_back((None, last));
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => {
                let death = node.will(ms(&w.clock));
                let _ = send(client, &death).await;
                let _ = client.disconnect().await;
                return Ok(());
            }
            r = appended.changed() => if r.is_err() { return Err("the journal closed".into()) },
            ev = rx.recv() => match ev {
                Some(Wire::SentQos1(pkid)) => {
                    if let Some(m) = markers.iter_mut().find(|m| m.0.is_none()) {
                        m.0 = Some(pkid);
                    }
                }
                Some(Wire::Acked(pkid)) => {
                    while let Some(&(Some(p), seq)) = markers.front() {
                        markers.pop_front();
                        cursor.ack(seq).await.map_err(|e| e.to_string())?;
                        if p == pkid {
                            break;
                        }
                    }
                }
                Some(Wire::Message(topic, bytes)) => {
                    if topic == node.topic("NCMD", None) {
                        let online: Vec<String> = view
                            .snapshot()
                            .into_iter()
                            .filter(|m| m.link != Some(LinkStatus::Lost))
                            .map(|m| m.id.as_str().to_string())
                            .collect();
                        let refs: Vec<&str> = online.iter().map(String::as_str).collect();
                        for c in node.on_ncmd(&bytes, ms(&w.clock), &refs) {
                            match c {
                                NodeCommand::Rebirth(msgs) => {
                                    for p in &msgs {
                                        send(client, p).await.map_err(|e| e.to_string())?;
                                    }
                                }
                                other => tracing::info!(command = ?other, "Sparkplug NCMD ignored"),
                            }
                        }
                    }
                }
                Some(Wire::Lost(why)) => return Err(why),
                Some(Wire::Connected) => {}
                None => return Err("the MQTT event loop stopped".into()),
            }
        }
    }
}

/// Turns the collected metric updates into one DDATA per device.
fn flush(
    node: &mut EdgeNode,
    per_device: &mut BTreeMap<String, Vec<Update>>,
    historical: bool,
    now: u64,
    out: &mut Vec<Publish>,
) {
    for (id, changes) in std::mem::take(per_device) {
        let refs: Vec<(&str, _, u64)> = changes
            .iter()
            .map(|(n, v, t)| (n.as_str(), v.clone(), *t))
            .collect();
        let (p, _unknown) = node.device_data(&id, &refs, historical, now);
        out.extend(p);
    }
}
