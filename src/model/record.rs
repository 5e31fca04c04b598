//! The journal record: one fact about one machine, at one time.
//!
//! New kinds slot in as new [`RecordKind`] variants (operation started/paused/completed, dispatch
//! list received, hold opened/released, operator signed in, reason given, classification
//! revised …). Each variant names its machine and its time, so that the journal, the exports and
//! every consumer can handle kinds they do not interpret.

use serde::{Deserialize, Serialize};

use super::{
    Attribution, ContextRecord, DispatchRecord, LossCategory, MachineId, MachineState,
    OperationRecord, Quality, QualityRecord, Revision, ShopState, SignalId, TimeCategory,
    Timestamp, Timestamps, Value,
};

/// A record as stored: its global, gap-free sequence number and what it says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Record {
    pub seq: u64,
    #[serde(flatten)]
    pub kind: RecordKind,
}

/// What a record says. Serialized with a `kind` tag (`"kind": "observation"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RecordKind {
    /// A signal's value, as normalized.
    Observation(Observation),
    /// The canonical machine state changed (availability, execution, modes, e-stop, alarm).
    /// (The larger kinds are boxed, so that a record in a batch is no bigger than an
    /// observation, the kind there are millions of.)
    StateChange(Box<StateChange>),
    /// The link to a machine (or its agent) came up, went down, or the source lost data.
    Link(LinkEvent),
    /// A state interval closed: the machine spent `[start, end)` in one state.
    Interval(Box<StateInterval>),
    /// An MTConnect condition (alarm/warning) was raised, changed or cleared.
    Condition(Box<ConditionRecord>),
    /// An asset document (a cutting tool, a part, a fixture) was added, changed or removed.
    Asset(Box<AssetRecord>),
    /// Someone told the bridge something about a machine (a stop reason, a sign-in, an
    /// operation confirmation) through OPC UA, Sparkplug or REST: who, when, through what.
    Command(Box<CommandRecord>),
    /// A machine's dispatch list from the ERP (replaces the previous one).
    Dispatch(Box<DispatchRecord>),
    /// A QMS hold or inspection event concerning a machine.
    Quality(Box<QualityRecord>),
    /// The context layer: an operation started, was found ambiguous, confirmed, paused,
    /// resumed or completed.
    Operation(Box<OperationRecord>),
    /// The context layer: a machine's current job, operator, shift and category changed.
    Context(Box<ContextRecord>),
}

impl RecordKind {
    pub fn machine(&self) -> &MachineId {
        match self {
            RecordKind::Observation(o) => &o.machine,
            RecordKind::StateChange(s) => &s.machine,
            RecordKind::Link(l) => &l.machine,
            RecordKind::Interval(i) => &i.machine,
            RecordKind::Condition(c) => &c.machine,
            RecordKind::Asset(a) => &a.machine,
            RecordKind::Command(c) => &c.machine,
            RecordKind::Dispatch(d) => &d.machine,
            RecordKind::Quality(q) => &q.machine,
            RecordKind::Operation(o) => &o.machine,
            RecordKind::Context(c) => &c.machine,
        }
    }

    /// The record's time on the aligned time line (an interval's end).
    pub fn time(&self) -> Timestamp {
        match self {
            RecordKind::Observation(o) => o.time.aligned,
            RecordKind::StateChange(s) => s.at,
            RecordKind::Link(l) => l.at,
            RecordKind::Interval(i) => i.end,
            RecordKind::Condition(c) => c.time.aligned,
            RecordKind::Asset(a) => a.time.aligned,
            RecordKind::Command(c) => c.at,
            RecordKind::Dispatch(d) => d.at,
            RecordKind::Quality(q) => q.at,
            RecordKind::Operation(o) => o.at,
            RecordKind::Context(c) => c.at,
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match self {
            RecordKind::Observation(_) => "observation",
            RecordKind::StateChange(_) => "state_change",
            RecordKind::Link(_) => "link",
            RecordKind::Interval(_) => "interval",
            RecordKind::Condition(_) => "condition",
            RecordKind::Asset(_) => "asset",
            RecordKind::Command(_) => "command",
            RecordKind::Dispatch(_) => "dispatch",
            RecordKind::Quality(_) => "quality",
            RecordKind::Operation(_) => "operation",
            RecordKind::Context(_) => "context",
        }
    }

    /// Records the context layer derives (and derives again on reclassification); it reads
    /// every other kind.
    pub fn is_derived(&self) -> bool {
        matches!(
            self,
            RecordKind::Interval(_) | RecordKind::Operation(_) | RecordKind::Context(_)
        )
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Observation {
    pub machine: MachineId,
    pub signal: SignalId,
    pub value: Value,
    #[serde(default, skip_serializing_if = "Quality::is_good")]
    pub quality: Quality,
    pub time: Timestamps,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StateChange {
    pub machine: MachineId,
    pub at: Timestamp,
    pub shop_state: ShopState,
    pub state: MachineState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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

/// An MTConnect condition's level.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConditionLevel {
    Normal,
    Warning,
    Fault,
    #[default]
    Unavailable,
}

impl ConditionLevel {
    /// Parses an MTConnect/SHDR level word (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        [
            ("NORMAL", Self::Normal),
            ("WARNING", Self::Warning),
            ("FAULT", Self::Fault),
            ("UNAVAILABLE", Self::Unavailable),
        ]
        .into_iter()
        .find(|(w, _)| s.eq_ignore_ascii_case(w))
        .map(|(_, l)| l)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::Warning => "WARNING",
            Self::Fault => "FAULT",
            Self::Unavailable => "UNAVAILABLE",
        }
    }
}

/// One condition activation as the source reported it. A condition item can hold several
/// active native codes at once; `NORMAL` with no native code clears them all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConditionRecord {
    pub machine: MachineId,
    /// The condition item (canonical `alarm`-family id from the profile, or the source key).
    pub signal: SignalId,
    pub level: ConditionLevel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_severity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub time: Timestamps,
}

/// A condition that is not NORMAL: which item, which native code, how bad, since when.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ActiveCondition {
    pub signal: SignalId,
    pub level: ConditionLevel,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub native_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub since: Timestamp,
}

/// The active (WARNING or FAULT) conditions of a machine, kept by MTConnect's rules: NORMAL or
/// UNAVAILABLE without a native code clears the item; with a code it clears that code; WARNING
/// and FAULT raise or update one (item, native code).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ActiveConditions(Vec<ActiveCondition>);

impl ActiveConditions {
    pub fn apply(&mut self, c: &ConditionRecord) {
        match c.level {
            ConditionLevel::Normal | ConditionLevel::Unavailable => {
                self.0.retain(|x| {
                    x.signal != c.signal
                        || (c.native_code.is_some() && x.native_code != c.native_code)
                });
            }
            ConditionLevel::Warning | ConditionLevel::Fault => {
                let found = self
                    .0
                    .iter_mut()
                    .find(|x| x.signal == c.signal && x.native_code == c.native_code);
                match found {
                    Some(x) => {
                        x.level = c.level;
                        x.message.clone_from(&c.message);
                    }
                    None => self.0.push(ActiveCondition {
                        signal: c.signal.clone(),
                        level: c.level,
                        native_code: c.native_code.clone(),
                        message: c.message.clone(),
                        since: c.time.aligned,
                    }),
                }
            }
        }
    }

    /// Whether any active condition is at `level` or worse (FAULT is worse than WARNING).
    pub fn any_at_least(&self, level: ConditionLevel) -> bool {
        let rank = |l: ConditionLevel| match l {
            ConditionLevel::Fault => 2,
            ConditionLevel::Warning => 1,
            _ => 0,
        };
        self.0.iter().any(|x| rank(x.level) >= rank(level))
    }

    pub fn iter(&self) -> impl Iterator<Item = &ActiveCondition> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What happened to an asset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssetAction {
    /// Added or changed; `document` holds the asset's XML as the source sent it.
    Changed,
    Removed,
    /// Every asset (of `asset_type`, when given) was removed.
    RemovedAll,
}

/// A command from the north, attributed to who gave it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommandRecord {
    pub machine: MachineId,
    /// When the bridge received it (bridge time).
    pub at: Timestamp,
    pub origin: CommandOrigin,
    #[serde(flatten)]
    pub command: Command,
}

/// Where a command came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommandOrigin {
    /// `opcua`, `sparkplug`, `rest`.
    pub channel: String,
    /// The authenticated user (absent for anonymous access).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// What a command says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// The reason for the machine's current (or last) stop, a loss category of the taxonomy.
    StopReason {
        reason: LossCategory,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// An operator signed in at the machine (whoever was signed in is signed out).
    SignIn { operator: String },
    /// The operator at the machine signed out.
    SignOut,
    /// Which dispatched operation is in process, when the program matched more than one.
    ConfirmOperation { job: String, operation: String },
    /// Parts of the running operation found scrap or sent to rework (operator or QMS).
    Parts {
        #[serde(default)]
        scrap: u64,
        #[serde(default)]
        rework: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AssetRecord {
    pub machine: MachineId,
    pub action: AssetAction,
    /// Empty for [`AssetAction::RemovedAll`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub asset_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
    pub time: Timestamps,
}

/// Job, operation, part, operator and shift attached to a span of a machine's time. Empty until
/// the context issue fills it from the dispatch list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// How the category was decided (absent on intervals written before the context layer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution: Option<Attribution>,
    /// The job and operation are attributed provisionally (the program matched several
    /// dispatched operations and nobody has confirmed yet).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub provisional: bool,
    /// Present when this record corrects an interval written before (same machine and start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<Revision>,
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
