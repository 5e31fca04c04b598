//! The journal record: one fact about one machine, at one time.
//!
//! New kinds slot in as new [`RecordKind`] variants (operation started/paused/completed, dispatch
//! list received, hold opened/released, operator signed in, reason given, classification
//! revised …). Each variant names its machine and its time, so that the journal, the exports and
//! every consumer can handle kinds they do not interpret.

use serde::{Deserialize, Serialize};

use super::{
    MachineId, MachineState, Quality, ShopState, SignalId, TimeCategory, Timestamp, Timestamps,
    Value,
};

/// A record as stored: its global, gap-free sequence number and what it says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    #[serde(flatten)]
    pub kind: RecordKind,
}

/// What a record says. Serialized with a `kind` tag (`"kind": "observation"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RecordKind {
    /// A signal's value, as normalized.
    Observation(Observation),
    /// The canonical machine state changed (availability, execution, modes, e-stop, alarm).
    StateChange(StateChange),
    /// The link to a machine (or its agent) came up, went down, or the source lost data.
    Link(LinkEvent),
    /// A state interval closed: the machine spent `[start, end)` in one state.
    Interval(StateInterval),
}

impl RecordKind {
    pub fn machine(&self) -> &MachineId {
        match self {
            RecordKind::Observation(o) => &o.machine,
            RecordKind::StateChange(s) => &s.machine,
            RecordKind::Link(l) => &l.machine,
            RecordKind::Interval(i) => &i.machine,
        }
    }

    /// The record's time on the aligned time line (an interval's end).
    pub fn time(&self) -> Timestamp {
        match self {
            RecordKind::Observation(o) => o.time.aligned,
            RecordKind::StateChange(s) => s.at,
            RecordKind::Link(l) => l.at,
            RecordKind::Interval(i) => i.end,
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match self {
            RecordKind::Observation(_) => "observation",
            RecordKind::StateChange(_) => "state_change",
            RecordKind::Link(_) => "link",
            RecordKind::Interval(_) => "interval",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub machine: MachineId,
    pub signal: SignalId,
    pub value: Value,
    #[serde(default, skip_serializing_if = "Quality::is_good")]
    pub quality: Quality,
    pub time: Timestamps,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateChange {
    pub machine: MachineId,
    pub at: Timestamp,
    pub shop_state: ShopState,
    pub state: MachineState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkStatus {
    /// The driver reached the machine (or agent) and is reading.
    Connected,
    /// The driver lost the machine; everything from it is UNAVAILABLE until it returns.
    Lost,
    /// The link stayed up but the source's data has a hole (an MTConnect buffer overrun, an
    /// agent restart, a simulator that skipped): what happened in between is unknown.
    Gap,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkEvent {
    pub machine: MachineId,
    pub at: Timestamp,
    pub status: LinkStatus,
    /// Human-readable cause: "connection refused by 10.0.4.17:7878", "agent instanceId changed".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For a gap: how many source sequence numbers were missed, when the source says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed: Option<u64>,
}

/// Job, operation, part, operator and shift attached to a span of a machine's time. Empty until
/// the context issue fills it from the dispatch list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<String>,
}

impl JobContext {
    pub fn is_empty(&self) -> bool {
        *self == JobContext::default()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateInterval {
    pub machine: MachineId,
    pub start: Timestamp,
    pub end: Timestamp,
    pub shop_state: ShopState,
    pub state: MachineState,
    /// Production for cutting time, otherwise a loss category; `None` until classified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<TimeCategory>,
    #[serde(default, skip_serializing_if = "JobContext::is_empty")]
    pub context: JobContext,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_serialize_with_a_kind_tag_and_round_trip() {
        let r = Record {
            seq: 7,
            kind: RecordKind::Link(LinkEvent {
                machine: MachineId::new("okuma-1").unwrap(),
                at: Timestamp::from_micros(1_700_000_000_000_000),
                status: LinkStatus::Gap,
                detail: Some("agent restarted".into()),
                missed: Some(12),
            }),
        };
        let j = serde_json::to_string(&r).unwrap();
        assert!(
            j.starts_with(r#"{"seq":7,"kind":"link","machine":"okuma-1""#),
            "{j}"
        );
        let back: Record = serde_json::from_str(&j).unwrap();
        assert_eq!(back, r);
    }
}
