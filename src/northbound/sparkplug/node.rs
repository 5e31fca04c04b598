//! A Sparkplug B 3.0 edge node's protocol state, without I/O: it turns "connected", "this
//! device's values changed", "this device's link dropped", "a command arrived" into the
//! messages the specification requires, in order. The transport publishes them.
//!
//! Normative statements are named by their tck-id where they are implemented or tested.

use std::collections::HashMap;

use super::payload::{DataType, Metric, MetricValue, Payload, ValueError};

/// The namespace every topic starts with.
pub const NAMESPACE: &str = "spBv1.0";
/// `Node Control/Rebirth`: a host asks for NBIRTH and all DBIRTHs again.
pub const REBIRTH: &str = "Node Control/Rebirth";
/// `Node Control/Next Server`: a host asks the node to move to its next broker.
pub const NEXT_SERVER: &str = "Node Control/Next Server";
pub const BD_SEQ: &str = "bdSeq";

/// A message to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct Publish {
    pub topic: String,
    pub payload: Payload,
    /// QoS 0 for everything but the NDEATH Will (QoS 1): tck-id-topics-nbirth-mqtt,
    /// tck-id-topics-ndata-mqtt, tck-id-topics-dbirth-mqtt, tck-id-topics-ddata-mqtt.
    pub qos1: bool,
    pub retain: bool,
}

/// One metric a device publishes, fixed at birth.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricDef {
    pub name: String,
    pub datatype: DataType,
}

/// A device's current values, in its metric order.
#[derive(Clone, Debug, Default)]
struct Device {
    /// Index into the node's aliases of this device's first metric.
    first_alias: u64,
    defs: Vec<MetricDef>,
    by_name: HashMap<String, usize>,
    values: Vec<Option<(MetricValue, u64)>>,
    /// A DBIRTH was published since the last NBIRTH and no DDEATH since.
    born: bool,
}

/// What an NCMD asked for.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeCommand {
    /// Publish these (NBIRTH and every online device's DBIRTH), same bdSeq, no reconnect.
    Rebirth(Vec<Publish>),
    /// A rebirth came sooner than the cooldown after the last one; ignored (counted).
    RebirthSuppressed,
    /// Move to the next MQTT server.
    NextServer,
    /// Nothing this node understands; counted and ignored.
    Unknown(String),
}

/// Why a command was not understood.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    #[error("the payload is not a Sparkplug B payload: {0}")]
    Decode(String),
    #[error("device {0:?} is not one of this node's devices")]
    UnknownDevice(String),
    #[error("metric {0:?} is not a writable metric of this device")]
    UnknownMetric(String),
    #[error("metric {name:?}: {error}")]
    BadValue { name: String, error: ValueError },
}

/// The edge node.
#[derive(Debug)]
pub struct EdgeNode {
    group: String,
    node: String,
    bd_seq: u64,
    /// The seq of the next message (0..=255).
    seq: u8,
    devices: HashMap<String, Device>,
    next_alias: u64,
    rebirth_cooldown_ms: u64,
    last_rebirth_ms: Option<u64>,
}

impl EdgeNode {
    /// A node `group/node` whose connection is the `bd_seq`-th (0..=255, kept across restarts
    /// by the caller: tck-id-payloads-nbirth-bdseq-increment).
    pub fn new(group: &str, node: &str, bd_seq: u64, rebirth_cooldown_ms: u64) -> Self {
        Self {
            group: group.to_string(),
            node: node.to_string(),
            bd_seq: bd_seq % 256,
            seq: 0,
            devices: HashMap::new(),
            next_alias: 1,
            rebirth_cooldown_ms,
            last_rebirth_ms: None,
        }
    }

    pub fn bd_seq(&self) -> u64 {
        self.bd_seq
    }

    /// `spBv1.0/<group>/<type>/<node>[/<device>]`.
    pub fn topic(&self, kind: &str, device: Option<&str>) -> String {
        match device {
            Some(d) => format!("{NAMESPACE}/{}/{kind}/{}/{d}", self.group, self.node),
            None => format!("{NAMESPACE}/{}/{kind}/{}", self.group, self.node),
        }
    }

    /// Topics to subscribe to after every connect: NCMD, DCMD for every device, and the
    /// primary host's STATE when one is configured.
    pub fn subscriptions(&self, primary_host: Option<&str>) -> Vec<String> {
        let mut t = vec![self.topic("NCMD", None), self.topic("DCMD", Some("+"))];
        if let Some(h) = primary_host {
            t.push(format!("{NAMESPACE}/STATE/{h}"));
        }
        t
    }

    /// Declares a device and every metric it will ever publish (tck-id-payloads-dbirth: the
    /// DBIRTH holds them all). Aliases are allocated once, unique across the whole node
    /// (tck-id-payloads-alias-uniqueness), and never change for the life of the process.
    pub fn add_device(&mut self, id: &str, metrics: Vec<MetricDef>) {
        let first_alias = self.next_alias;
        self.next_alias += metrics.len() as u64;
        let by_name = metrics
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name.clone(), i))
            .collect();
        let values = vec![None; metrics.len()];
        self.devices.insert(
            id.to_string(),
            Device {
                first_alias,
                defs: metrics,
                by_name,
                values,
                born: false,
            },
        );
    }

    fn next_seq(&mut self) -> u64 {
        // tck-id-payloads-sequence-num-incrementing: one counter for the node, 0..=255.
        let s = self.seq;
        self.seq = self.seq.wrapping_add(1);
        u64::from(s)
    }

    fn bd_seq_metric(&self, now_ms: u64) -> Metric {
        // tck-id-payloads-nbirth-bdseq, tck-id-payloads-ndeath-bdseq: an Int64 (here UInt64
        // would be wrong: the specification says Int64).
        Metric::new(
            Some(BD_SEQ),
            None,
            Some(now_ms),
            DataType::Int64,
            Some(&MetricValue::Int64(self.bd_seq as i64)),
        )
    }

    /// A QoS 0, not retained message (every Sparkplug message but the Will).
    fn message(topic: String, now_ms: u64, metrics: Vec<Metric>, seq: u64) -> Publish {
        Publish {
            topic,
            payload: Payload {
                timestamp: Some(now_ms),
                metrics,
                seq: Some(seq),
                uuid: None,
                body: None,
            },
            qos1: false,
            retain: false,
        }
    }

    /// The Will to register on CONNECT: NDEATH with this connection's bdSeq, QoS 1, not
    /// retained (tck-id-topics-ndeath-payload, tck-id-operational-behavior-edge-node-intro-
    /// will-message-qos, -retain).
    pub fn will(&self, now_ms: u64) -> Publish {
        Publish {
            topic: self.topic("NDEATH", None),
            payload: Payload {
                timestamp: Some(now_ms),
                metrics: vec![self.bd_seq_metric(now_ms)],
                seq: None,
                uuid: None,
                body: None,
            },
            qos1: true,
            retain: false,
        }
    }

    /// NBIRTH (seq 0: tck-id-payloads-nbirth-seq) with bdSeq, Node Control/Rebirth = false
    /// (tck-id-payloads-nbirth-rebirth-req) and Next Server, then a DBIRTH for every device
    /// in `online`, in that order.
    pub fn births(&mut self, now_ms: u64, online: &[&str]) -> Vec<Publish> {
        self.seq = 0;
        let mut metrics = vec![
            self.bd_seq_metric(now_ms),
            // No alias on Node Control metrics: hosts write them by name.
            Metric::new(
                Some(REBIRTH),
                None,
                Some(now_ms),
                DataType::Boolean,
                Some(&MetricValue::Boolean(false)),
            ),
            Metric::new(
                Some(NEXT_SERVER),
                None,
                Some(now_ms),
                DataType::Boolean,
                Some(&MetricValue::Boolean(false)),
            ),
        ];
        metrics.push(Metric::new(
            Some("Properties/Software"),
            None,
            Some(now_ms),
            DataType::String,
            Some(&MetricValue::String(format!(
                "shopbridge {}",
                env!("CARGO_PKG_VERSION")
            ))),
        ));
        let seq = self.next_seq();
        let nbirth = Self::message(self.topic("NBIRTH", None), now_ms, metrics, seq);
        for d in self.devices.values_mut() {
            d.born = false;
        }
        let mut out = vec![nbirth];
        for id in online {
            if let Some(p) = self.device_birth(id, now_ms) {
                out.push(p);
            }
        }
        out
    }

    /// DBIRTH: every metric with name, alias, datatype, its current value (or is_null) and
    /// its own timestamp (tck-id-payloads-dbirth-seq continues the node's seq).
    pub fn device_birth(&mut self, id: &str, now_ms: u64) -> Option<Publish> {
        let seq = self.next_seq();
        let topic = self.topic("DBIRTH", Some(id));
        let d = self.devices.get_mut(id)?;
        d.born = true;
        let metrics = d
            .defs
            .iter()
            .zip(&d.values)
            .enumerate()
            .map(|(i, (def, v))| {
                Metric::new(
                    Some(&def.name),
                    Some(d.first_alias + i as u64),
                    Some(v.as_ref().map(|(_, t)| *t).unwrap_or(now_ms)),
                    def.datatype,
                    v.as_ref().map(|(v, _)| v),
                )
            })
            .collect();
        Some(Self::message(topic, now_ms, metrics, seq))
    }

    /// DDEATH when a device's link drops (tck-id-topics-ddeath-seq: it carries the seq).
    pub fn device_death(&mut self, id: &str, now_ms: u64) -> Option<Publish> {
        let d = self.devices.get_mut(id)?;
        if !d.born {
            return None;
        }
        d.born = false;
        let seq = self.next_seq();
        Some(Self::message(
            self.topic("DDEATH", Some(id)),
            now_ms,
            vec![],
            seq,
        ))
    }

    /// Records new values of a device (`name`, value or None for null, time in ms). Returns
    /// the DDATA for those that changed: alias only (tck-id-payloads-alias-data-cmd-
    /// requirement), per-metric timestamps, in time order; `historical` marks backlog.
    /// Unknown names are returned as errors beside the message (the caller counts them).
    pub fn device_data<N: AsRef<str>>(
        &mut self,
        id: &str,
        changes: &[(N, Option<MetricValue>, u64)],
        historical: bool,
        now_ms: u64,
    ) -> (Option<Publish>, Vec<String>) {
        let mut unknown = Vec::new();
        let Some(d) = self.devices.get_mut(id) else {
            return (
                None,
                changes.iter().map(|c| c.0.as_ref().to_string()).collect(),
            );
        };
        let mut metrics: Vec<Metric> = Vec::new();
        for (name, value, t) in changes {
            let Some(&i) = d.by_name.get(name.as_ref()) else {
                unknown.push(name.as_ref().to_string());
                continue;
            };
            let same = match (&d.values[i], value) {
                (Some((old, _)), Some(new)) => old == new,
                (None, None) => true,
                _ => false,
            };
            if same && !historical {
                continue;
            }
            if !historical || d.values[i].as_ref().is_none_or(|(_, old_t)| *t >= *old_t) {
                d.values[i] = value.clone().map(|v| (v, *t));
            }
            let mut m = Metric::new(
                None,
                Some(d.first_alias + i as u64),
                Some(*t),
                d.defs[i].datatype,
                value.as_ref(),
            );
            if historical {
                m.is_historical = Some(true);
            }
            metrics.push(m);
        }
        if metrics.is_empty() || !d.born {
            return (None, unknown);
        }
        // Chronological within a payload.
        metrics.sort_by_key(|m| m.timestamp);
        let seq = self.next_seq();
        (
            Some(Self::message(
                self.topic("DDATA", Some(id)),
                now_ms,
                metrics,
                seq,
            )),
            unknown,
        )
    }

    /// An NCMD: `Node Control/Rebirth = true` gives NBIRTH and the DBIRTHs of `online`
    /// again (tck-id-operational-behavior-edge-node-rebirth-request... same bdSeq, no new
    /// connection), unless the last rebirth was less than the cooldown ago.
    pub fn on_ncmd(&mut self, bytes: &[u8], now_ms: u64, online: &[&str]) -> Vec<NodeCommand> {
        let p = match Payload::decode_bytes(bytes) {
            Ok(p) => p,
            Err(e) => return vec![NodeCommand::Unknown(format!("undecodable NCMD: {e}"))],
        };
        let mut out = Vec::new();
        for m in &p.metrics {
            let name = m.name.as_deref().unwrap_or("");
            // Hosts SHOULD NOT send a datatype in commands: the NBIRTH declared these
            // metrics Boolean.
            let mut typed = m.clone();
            if typed.datatype.is_none() {
                typed.datatype = Some(DataType::Boolean as u32);
            }
            let truthy = matches!(
                MetricValue::from_metric(&typed),
                Ok(Some(MetricValue::Boolean(true)))
            );
            match name {
                REBIRTH if truthy => {
                    let cool = self
                        .last_rebirth_ms
                        .is_some_and(|t| now_ms.saturating_sub(t) < self.rebirth_cooldown_ms);
                    if cool {
                        out.push(NodeCommand::RebirthSuppressed);
                    } else {
                        self.last_rebirth_ms = Some(now_ms);
                        out.push(NodeCommand::Rebirth(self.births(now_ms, online)));
                    }
                }
                NEXT_SERVER if truthy => out.push(NodeCommand::NextServer),
                other => out.push(NodeCommand::Unknown(format!("NCMD metric {other:?}"))),
            }
        }
        out
    }

    /// A DCMD's metrics by name (or by the alias the DBIRTH gave them), checked against the
    /// device's writable metrics.
    pub fn on_dcmd(
        &self,
        device: &str,
        bytes: &[u8],
        writable: &[&str],
    ) -> Result<Vec<(String, MetricValue)>, CommandError> {
        let p = Payload::decode_bytes(bytes).map_err(|e| CommandError::Decode(e.to_string()))?;
        let d = self
            .devices
            .get(device)
            .ok_or_else(|| CommandError::UnknownDevice(device.to_string()))?;
        let mut out = Vec::new();
        for m in &p.metrics {
            let name = match (&m.name, m.alias) {
                (Some(n), _) => n.clone(),
                (None, Some(a)) => a
                    .checked_sub(d.first_alias)
                    .and_then(|i| d.defs.get(i as usize))
                    .map(|def| def.name.clone())
                    .ok_or_else(|| CommandError::UnknownMetric(format!("alias {a}")))?,
                (None, None) => return Err(CommandError::UnknownMetric(String::new())),
            };
            if !writable.contains(&name.as_str()) {
                return Err(CommandError::UnknownMetric(name));
            }
            // A command names its type; a name alone (no datatype) is taken as a String.
            let mut typed = m.clone();
            if typed.datatype.is_none() {
                typed.datatype = Some(DataType::String as u32);
            }
            match MetricValue::from_metric(&typed) {
                Ok(Some(v)) => out.push((name, v)),
                Ok(None) => out.push((name, MetricValue::String(String::new()))),
                Err(error) => return Err(CommandError::BadValue { name, error }),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn node() -> EdgeNode {
        let mut n = EdgeNode::new("shop", "bridge-1", 7, 5_000);
        n.add_device(
            "mill-1",
            vec![
                MetricDef {
                    name: "State/Execution".into(),
                    datatype: DataType::String,
                },
                MetricDef {
                    name: "Counts/Parts".into(),
                    datatype: DataType::Int64,
                },
            ],
        );
        n.add_device(
            "lathe-2",
            vec![MetricDef {
                name: "State/Execution".into(),
                datatype: DataType::String,
            }],
        );
        n
    }

    fn metric<'a>(p: &'a Publish, name: &str) -> &'a Metric {
        p.payload
            .metrics
            .iter()
            .find(|m| m.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{name} not in {p:?}"))
    }

    #[test]
    fn the_will_is_ndeath_with_the_connections_bdseq_qos1_not_retained() {
        // tck-id-topics-ndeath-topic, tck-id-topics-ndeath-payload,
        // tck-id-operational-behavior-edge-node-intro-will-message-qos / -retain.
        let n = node();
        let w = n.will(1000);
        assert_eq!(w.topic, "spBv1.0/shop/NDEATH/bridge-1");
        assert!(w.qos1 && !w.retain);
        assert_eq!(w.payload.seq, None);
        let bd = metric(&w, BD_SEQ);
        assert_eq!(bd.datatype, Some(DataType::Int64 as u32));
        assert_eq!(
            MetricValue::from_metric(bd),
            Ok(Some(MetricValue::Int64(7)))
        );
    }

    #[test]
    fn nbirth_comes_first_with_seq_0_bdseq_and_node_control_then_dbirths() {
        // tck-id-payloads-nbirth-seq, tck-id-payloads-nbirth-bdseq,
        // tck-id-payloads-nbirth-rebirth-req, tck-id-topics-dbirth-topic.
        let mut n = node();
        let msgs = n.births(2000, &["mill-1", "lathe-2"]);
        assert_eq!(msgs[0].topic, "spBv1.0/shop/NBIRTH/bridge-1");
        assert_eq!(msgs[0].payload.seq, Some(0));
        assert_eq!(
            MetricValue::from_metric(metric(&msgs[0], BD_SEQ)),
            Ok(Some(MetricValue::Int64(7)))
        );
        let rebirth = metric(&msgs[0], REBIRTH);
        assert_eq!(rebirth.alias, None);
        assert_eq!(
            MetricValue::from_metric(rebirth),
            Ok(Some(MetricValue::Boolean(false)))
        );
        metric(&msgs[0], NEXT_SERVER);
        assert_eq!(msgs[1].topic, "spBv1.0/shop/DBIRTH/bridge-1/mill-1");
        assert_eq!(msgs[1].payload.seq, Some(1));
        assert_eq!(msgs[2].topic, "spBv1.0/shop/DBIRTH/bridge-1/lathe-2");
        assert_eq!(msgs[2].payload.seq, Some(2));
        // Every metric with name, alias and a timestamp; unknown values are null.
        for m in &msgs[1].payload.metrics {
            assert!(m.name.is_some() && m.alias.is_some() && m.timestamp.is_some());
            assert_eq!(m.is_null, Some(true));
        }
    }

    #[test]
    fn aliases_are_unique_across_the_node() {
        // tck-id-payloads-alias-uniqueness.
        let mut n = node();
        let msgs = n.births(1, &["mill-1", "lathe-2"]);
        let mut aliases: Vec<u64> = msgs[1..]
            .iter()
            .flat_map(|p| p.payload.metrics.iter().filter_map(|m| m.alias))
            .collect();
        let total = aliases.len();
        aliases.sort_unstable();
        aliases.dedup();
        assert_eq!(aliases.len(), total);
    }

    #[test]
    fn ddata_carries_only_changes_by_alias_in_time_order_and_seq_wraps() {
        // tck-id-payloads-alias-data-cmd-requirement, tck-id-payloads-sequence-num-incrementing.
        let mut n = node();
        n.births(1, &["mill-1"]);
        let (p, unknown) = n.device_data(
            "mill-1",
            &[
                ("Counts/Parts", Some(MetricValue::Int64(-3)), 20),
                (
                    "State/Execution",
                    Some(MetricValue::String("ACTIVE".into())),
                    10,
                ),
                ("Nope", None, 5),
            ],
            false,
            30,
        );
        assert_eq!(unknown, vec!["Nope".to_string()]);
        let p = p.unwrap();
        assert_eq!(p.topic, "spBv1.0/shop/DDATA/bridge-1/mill-1");
        assert!(
            p.payload
                .metrics
                .iter()
                .all(|m| m.name.is_none() && m.alias.is_some())
        );
        let times: Vec<_> = p.payload.metrics.iter().map(|m| m.timestamp).collect();
        assert_eq!(times, vec![Some(10), Some(20)]);
        // The same value again: nothing to send.
        let (again, _) = n.device_data(
            "mill-1",
            &[("Counts/Parts", Some(MetricValue::Int64(-3)), 40)],
            false,
            40,
        );
        assert!(again.is_none());
        // 256 messages later the seq has wrapped to the same value.
        let before = p.payload.seq.unwrap();
        let mut last = None;
        for i in 0..256 {
            let (m, _) = n.device_data(
                "mill-1",
                &[("Counts/Parts", Some(MetricValue::Int64(i)), 100 + i as u64)],
                false,
                100,
            );
            last = m.and_then(|m| m.payload.seq);
        }
        assert_eq!(last, Some(before));
    }

    #[test]
    fn a_dropped_device_dies_once_and_is_born_again_with_its_values() {
        // tck-id-topics-ddeath-topic, tck-id-payloads-ddeath-seq.
        let mut n = node();
        n.births(1, &["mill-1"]);
        n.device_data(
            "mill-1",
            &[("Counts/Parts", Some(MetricValue::Int64(12)), 5)],
            false,
            5,
        );
        let death = n.device_death("mill-1", 6).unwrap();
        assert_eq!(death.topic, "spBv1.0/shop/DDEATH/bridge-1/mill-1");
        assert!(death.payload.seq.is_some());
        assert!(n.device_death("mill-1", 7).is_none());
        // No DDATA while dead.
        let (none, _) = n.device_data(
            "mill-1",
            &[("Counts/Parts", Some(MetricValue::Int64(13)), 8)],
            false,
            8,
        );
        assert!(none.is_none());
        let birth = n.device_birth("mill-1", 9).unwrap();
        assert_eq!(
            MetricValue::from_metric(metric(&birth, "Counts/Parts")),
            Ok(Some(MetricValue::Int64(13)))
        );
    }

    #[test]
    fn a_rebirth_ncmd_rebirths_with_the_same_bdseq_and_storms_are_cooled() {
        // tck-id-operational-behavior-edge-node-rebirth (same bdSeq, no reconnect).
        let mut n = node();
        n.births(1, &["mill-1"]);
        let ncmd = Payload {
            timestamp: Some(1),
            metrics: vec![Metric::new(
                Some(REBIRTH),
                None,
                None,
                DataType::Boolean,
                Some(&MetricValue::Boolean(true)),
            )],
            seq: None,
            uuid: None,
            body: None,
        }
        .encode_to_vec();
        let out = n.on_ncmd(&ncmd, 10_000, &["mill-1"]);
        let NodeCommand::Rebirth(msgs) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(msgs[0].payload.seq, Some(0));
        assert_eq!(
            MetricValue::from_metric(metric(&msgs[0], BD_SEQ)),
            Ok(Some(MetricValue::Int64(7)))
        );
        assert_eq!(msgs.len(), 2);
        assert_eq!(
            n.on_ncmd(&ncmd, 11_000, &["mill-1"]),
            vec![NodeCommand::RebirthSuppressed]
        );
        assert!(matches!(
            n.on_ncmd(&ncmd, 16_000, &["mill-1"])[0],
            NodeCommand::Rebirth(_)
        ));
        assert!(matches!(
            n.on_ncmd(b"\xff\xff", 20_000, &[])[0],
            NodeCommand::Unknown(_)
        ));
    }

    #[test]
    fn dcmds_are_read_by_name_or_alias_and_checked() {
        let mut n = node();
        let births = n.births(1, &["mill-1"]);
        let alias = metric(&births[1], "State/Execution").alias.unwrap();
        let cmd = |m: Metric| {
            Payload {
                timestamp: None,
                metrics: vec![m],
                seq: None,
                uuid: None,
                body: None,
            }
            .encode_to_vec()
        };
        let by_alias = cmd(Metric::new(
            None,
            Some(alias),
            None,
            DataType::String,
            Some(&MetricValue::String("x".into())),
        ));
        assert_eq!(
            n.on_dcmd("mill-1", &by_alias, &["State/Execution"]),
            Ok(vec![(
                "State/Execution".to_string(),
                MetricValue::String("x".into())
            )])
        );
        assert!(matches!(
            n.on_dcmd("mill-1", &by_alias, &[]),
            Err(CommandError::UnknownMetric(_))
        ));
        assert!(matches!(
            n.on_dcmd("nope", &by_alias, &["State/Execution"]),
            Err(CommandError::UnknownDevice(_))
        ));
        assert!(matches!(
            n.on_dcmd("mill-1", b"\x12\xff", &["State/Execution"]),
            Err(CommandError::Decode(_))
        ));
    }
}
