//! From the journal to the address space: the OPC UA server's journal consumer.
//!
//! It follows the journal's durable tail (so a client never sees a value a crash could take
//! back), keeps its own [`LiveView`] of every machine, and after each batch writes the values
//! that changed into the address space, which notifies subscribed clients at once (values are
//! pushed, not sampled). The SourceTimestamp is the record's aligned time. While a machine's
//! link is down every value of it keeps its last value with status Bad_CommunicationError.
//! Conditions become ConditionMessageEventType events on the machine's Notification/Messages.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use opcua::nodes::{BaseEventType, Event};
use opcua::server::SubscriptionCache;
use opcua::server::address_space::AddressSpace;
use opcua::sync::RwLock;
use opcua::types::{
    AttributeId, ByteString, DataValue, DateTime, LocalizedText, NodeId, NumericRange,
    QualifiedName, StatusCode, UAString, Variant,
};
use tokio_util::sync::CancellationToken;

use super::space::{Field, MachineNodes, Ns, States};
use crate::journal::Journal;
use crate::model::{
    ConditionLevel, ConditionRecord, ControllerMode, Execution, FunctionalMode, LinkStatus,
    MachineId, Quality, QualityReason, Record, RecordKind, ShopState, Timestamp, Value, signals,
};
use crate::northbound::http::Telemetry;
use crate::northbound::live::{LiveMachine, LiveView};

/// An OPC UA DateTime from a timestamp (µs since the Unix epoch).
pub fn date_time(t: Timestamp) -> DateTime {
    // 100 ns ticks since 1601-01-01.
    const EPOCH_OFFSET_TICKS: i64 = 116_444_736_000_000_000;
    DateTime::from(
        t.as_micros()
            .saturating_mul(10)
            .saturating_add(EPOCH_OFFSET_TICKS)
            .max(0),
    )
}

/// One value a node should show.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeValue {
    pub value: Variant,
    pub status: StatusCode,
    pub time: Option<Timestamp>,
}

fn good(value: impl Into<Variant>, time: Option<Timestamp>) -> NodeValue {
    NodeValue {
        value: value.into(),
        status: StatusCode::Good,
        time,
    }
}

fn waiting() -> NodeValue {
    NodeValue {
        value: Variant::Empty,
        status: StatusCode::BadWaitingForInitialData,
        time: None,
    }
}

/// MachineryItemState (OPC 40001-1): NotAvailable while the machine or the link to it is
/// unavailable, Executing while a program runs, NotExecuting otherwise.
pub fn item_state(m: &LiveMachine) -> &'static str {
    if m.state == ShopState::Off || m.link == Some(LinkStatus::Lost) {
        "NotAvailable"
    } else if m.current.execution == Some(Execution::Active) {
        "Executing"
    } else {
        "NotExecuting"
    }
}

/// MachineryOperationMode (OPC 40001-1) from the functional mode.
pub fn operation_mode_state(f: Option<FunctionalMode>) -> &'static str {
    match f {
        Some(FunctionalMode::Production) => "Processing",
        Some(FunctionalMode::Setup)
        | Some(FunctionalMode::Teardown)
        | Some(FunctionalMode::ProcessDevelopment) => "Setup",
        Some(FunctionalMode::Maintenance) => "Maintenance",
        None => "None",
    }
}

/// MachineTool `MachineOperationMode` (0 Manual, 1 Automatic, 2 Setup,
/// 3 AutoWithManualIntervention, 4 Service, 5 Other).
pub fn machine_operation_mode(c: Option<ControllerMode>, f: Option<FunctionalMode>) -> Option<i32> {
    match f {
        Some(FunctionalMode::Setup) | Some(FunctionalMode::Teardown) => return Some(2),
        Some(FunctionalMode::Maintenance) => return Some(4),
        _ => {}
    }
    Some(match c? {
        ControllerMode::Manual | ControllerMode::ManualDataInput => 0,
        ControllerMode::Automatic => 1,
        ControllerMode::SemiAutomatic => 3,
        ControllerMode::Edit => 5,
    })
}

/// MachineTool `ChannelMode` (0 Automatic, 1 MdaMdi, 2 JogManual, … 7 Other).
pub fn channel_mode(c: ControllerMode) -> i32 {
    match c {
        ControllerMode::Automatic | ControllerMode::SemiAutomatic => 0,
        ControllerMode::ManualDataInput => 1,
        ControllerMode::Manual => 2,
        ControllerMode::Edit => 7,
    }
}

/// MachineTool `ChannelState` (0 Active, 1 Interrupted, 2 Reset).
pub fn channel_state(e: Execution) -> i32 {
    match e {
        Execution::Active => 0,
        Execution::Interrupted
        | Execution::FeedHold
        | Execution::OptionalStop
        | Execution::ProgramStopped
        | Execution::Wait => 1,
        Execution::Ready | Execution::Stopped | Execution::ProgramCompleted => 2,
    }
}

/// ProductionProgramStateMachine state from the execution state.
pub fn program_state(e: Execution) -> &'static str {
    match e {
        Execution::Active => "Running",
        Execution::Interrupted
        | Execution::FeedHold
        | Execution::OptionalStop
        | Execution::ProgramStopped
        | Execution::Wait => "Interrupted",
        Execution::ProgramCompleted => "Ended",
        Execution::Stopped => "Aborted",
        Execution::Ready => "Initializing",
    }
}

/// A normalized value as a Variant.
pub fn variant(v: &Value) -> Variant {
    match v {
        Value::Bool(b) => Variant::from(*b),
        Value::Int(i) => Variant::from(*i),
        Value::Float(x) => Variant::from(*x),
        Value::Text(s) => Variant::from(s.as_ref()),
        Value::Unavailable => Variant::Empty,
    }
}

/// A record's quality as an OPC UA status.
pub fn status(q: Quality, v: &Value) -> StatusCode {
    match q {
        _ if v.is_unavailable() => StatusCode::BadNoCommunication,
        Quality::Good => StatusCode::Good,
        Quality::Uncertain(_) => StatusCode::Uncertain,
        Quality::Bad(QualityReason::LinkLost) => StatusCode::BadCommunicationError,
        Quality::Bad(QualityReason::DeviceError) => StatusCode::BadDeviceFailure,
        Quality::Bad(QualityReason::OutOfRange) => StatusCode::BadOutOfRange,
        Quality::Bad(_) => StatusCode::Bad,
    }
}

fn signal_f64(m: &LiveMachine, id: &str) -> Option<NodeValue> {
    let s = m.signals.get(id)?;
    let x = s.value.as_f64()?;
    Some(NodeValue {
        value: Variant::from(x),
        status: status(s.quality, &s.value),
        time: Some(s.time),
    })
}

/// Every field's value for one machine.
pub fn field_values(m: &LiveMachine, states: &States) -> Vec<(Field, NodeValue)> {
    let since = m.since;
    let mut out = Vec::with_capacity(32);
    let item = item_state(m);
    out.push((
        Field::ItemState,
        good(LocalizedText::new("en", item), since),
    ));
    if let Some(id) = states.item.get(item) {
        out.push((Field::ItemStateId, good(id.clone(), since)));
    }
    let mode = operation_mode_state(m.current.functional_mode);
    out.push((
        Field::OperationModeState,
        good(LocalizedText::new("en", mode), since),
    ));
    if let Some(id) = states.operation_mode.get(mode) {
        out.push((Field::OperationModeStateId, good(id.clone(), since)));
    }
    out.push((
        Field::OperationMode,
        match machine_operation_mode(m.current.controller_mode, m.current.functional_mode) {
            Some(v) => good(v, since),
            None => waiting(),
        },
    ));
    let feed = signal_f64(m, signals::FEED_OVERRIDE).unwrap_or_else(waiting);
    out.push((Field::MachineFeedOverride, feed.clone()));
    out.push((Field::ChannelFeedOverride, feed));
    out.push((
        Field::ChannelRapidOverride,
        signal_f64(m, signals::RAPID_OVERRIDE).unwrap_or_else(waiting),
    ));
    out.push((
        Field::SpindleOverride,
        signal_f64(m, "spindle_override").unwrap_or_else(waiting),
    ));
    out.push((
        Field::SpindleIsRotating,
        match signal_f64(m, signals::SPINDLE_SPEED) {
            Some(v) => NodeValue {
                value: Variant::from(matches!(v.value, Variant::Double(x) if x.abs() > 0.0)),
                ..v
            },
            None => waiting(),
        },
    ));
    match m.current.execution {
        Some(e) => {
            out.push((Field::ChannelState, good(channel_state(e), since)));
            let p = program_state(e);
            out.push((
                Field::ProgramState,
                good(LocalizedText::new("en", p), since),
            ));
            if let Some(id) = states.program.get(p) {
                out.push((Field::ProgramStateId, good(id.clone(), since)));
            }
        }
        None => {
            out.push((Field::ChannelState, waiting()));
            out.push((Field::ProgramState, waiting()));
            out.push((Field::ProgramStateId, waiting()));
        }
    }
    out.push((
        Field::ChannelMode,
        match m.current.controller_mode {
            Some(c) => good(channel_mode(c), since),
            None => waiting(),
        },
    ));
    let program_time = m.signals.get(signals::PROGRAM).map(|s| s.time).or(since);
    out.push((
        Field::ProgramName,
        good(m.current.program.clone().unwrap_or_default(), program_time),
    ));
    // Context: the context layer's view (the operation it tracks, the shift, the schedule).
    let ctx = m.context.as_ref();
    let ctx_time = ctx.map(|c| c.at);
    let feedback = ctx.and_then(|c| c.feedback.as_ref());
    let (job, operation, op_time) = match &m.operation {
        Some(o) => (o.job.clone(), o.operation.clone(), Some(o.at)),
        None => (String::new(), String::new(), None),
    };
    out.push((Field::JobId, good(job, op_time)));
    out.push((Field::OperationId, good(operation, op_time)));
    out.push((
        Field::PartNumber,
        good(
            ctx.and_then(|c| c.context.part_number.clone())
                .unwrap_or_default(),
            ctx_time,
        ),
    ));
    out.push((
        Field::OperatorId,
        good(m.operator.clone().unwrap_or_default(), None),
    ));
    out.push((
        Field::Shift,
        good(
            ctx.and_then(|c| c.context.shift.clone())
                .unwrap_or_default(),
            ctx_time,
        ),
    ));
    match m.loss_category() {
        Some((c, at)) => {
            out.push((Field::LossCategory, good(c.as_str().to_string(), at)));
            out.push((
                Field::LossCategorySince,
                match at {
                    Some(t) => good(date_time(t), at),
                    None => waiting(),
                },
            ));
        }
        None => {
            out.push((Field::LossCategory, good(String::new(), since)));
            out.push((Field::LossCategorySince, waiting()));
        }
    }
    match &m.stop_reason {
        Some(r) => {
            out.push((
                Field::StopReason,
                good(r.reason.as_str().to_string(), Some(r.at)),
            ));
            out.push((
                Field::StopReasonNote,
                good(r.note.clone().unwrap_or_default(), Some(r.at)),
            ));
        }
        None => {
            out.push((Field::StopReason, good(String::new(), None)));
            out.push((Field::StopReasonNote, good(String::new(), None)));
        }
    }
    let parts = m.signals.get(signals::PART_COUNT);
    // Parts of the operation in process when the context layer tracks one, else the counter.
    out.push((
        Field::PartsGood,
        match (feedback, m.current.part_count) {
            (Some(f), _) => good(f.parts.good(), ctx_time),
            (None, Some(n)) if n >= 0 => good(n as u64, parts.map(|p| p.time)),
            _ => waiting(),
        },
    ));
    out.push((
        Field::PartsScrap,
        good(feedback.map_or(0, |f| f.parts.scrap), ctx_time),
    ));
    out.push((
        Field::PartsRework,
        good(feedback.map_or(0, |f| f.parts.rework), ctx_time),
    ));
    out.push((
        Field::ObservedCycleTime,
        match feedback.and_then(|f| f.cycle_seconds) {
            Some(s) => good(s * 1000.0, ctx_time),
            None => waiting(),
        },
    ));
    out.push((
        Field::EstimatedCompletion,
        match feedback.and_then(|f| f.estimated_completion) {
            Some(t) => good(date_time(t), ctx_time),
            None => waiting(),
        },
    ));
    out
}

/// What the consumer last wrote per node, so that only changes reach the address space.
type Sent = HashMap<NodeId, (Variant, StatusCode)>;

/// The nodes of one machine that changed, with their new values.
fn machine_updates(
    nodes: &MachineNodes,
    m: &LiveMachine,
    states: &States,
    sent: &mut Sent,
) -> Vec<(NodeId, DataValue)> {
    let link_down = m.link == Some(LinkStatus::Lost);
    let now = DateTime::now();
    let mut out = Vec::new();
    let mut push = |id: &NodeId, v: NodeValue| {
        // While the link is down, a node keeps the last value it showed (the machine's state
        // turns UNAVAILABLE, which would blank it) and says why it is stale.
        let (value, status) = if link_down {
            let last = sent.get(id).map(|(value, _)| value.clone());
            (last.unwrap_or(v.value), StatusCode::BadCommunicationError)
        } else {
            (v.value, v.status)
        };
        let key = (value.clone(), status);
        if sent.get(id) == Some(&key) {
            return;
        }
        sent.insert(id.clone(), key);
        out.push((
            id.clone(),
            DataValue {
                value: Some(value),
                status: Some(status),
                source_timestamp: Some(v.time.map(date_time).unwrap_or(now)),
                source_picoseconds: None,
                server_timestamp: Some(now),
                server_picoseconds: None,
            },
        ));
    };
    for (f, v) in field_values(m, states) {
        if let Some(id) = nodes.field(f) {
            push(id, v);
        }
    }
    for (name, id) in &nodes.signals {
        if let Some(s) = m.signals.get(name) {
            push(
                id,
                NodeValue {
                    value: variant(&s.value),
                    status: status(s.quality, &s.value),
                    time: Some(s.time),
                },
            );
        }
    }
    out
}

/// A condition as an event on the machine's Messages object.
pub struct MessageEvent {
    base: BaseEventType,
    identifier: String,
    native_code: String,
    level: String,
    type_ids: [NodeId; 2],
}

impl MessageEvent {
    pub fn new(ns: &Ns, nodes: &MachineNodes, c: &ConditionRecord, seq: u64) -> Self {
        let severity = match c.level {
            ConditionLevel::Fault => 800,
            ConditionLevel::Warning => 500,
            ConditionLevel::Unavailable => 300,
            ConditionLevel::Normal => 100,
        };
        let level = match c.level {
            ConditionLevel::Fault => "FAULT",
            ConditionLevel::Warning => "WARNING",
            ConditionLevel::Unavailable => "UNAVAILABLE",
            ConditionLevel::Normal => "NORMAL",
        };
        let text = match (&c.message, &c.native_code) {
            (Some(m), _) if !m.is_empty() => m.clone(),
            (_, Some(code)) => format!("{} {level} {code}", c.signal),
            _ => format!("{} {level}", c.signal),
        };
        let base = BaseEventType {
            event_id: ByteString::from(seq.to_be_bytes().to_vec()),
            event_type: ns.message_event_type(),
            source_node: nodes.object.clone(),
            source_name: UAString::from(nodes.name.as_str()),
            time: date_time(c.time.aligned),
            receive_time: date_time(c.time.received),
            message: LocalizedText::new("", &text),
            severity,
            ..Default::default()
        };
        Self {
            base,
            identifier: c.signal.as_str().to_string(),
            native_code: c.native_code.clone().unwrap_or_default(),
            level: level.to_string(),
            type_ids: [ns.message_event_type(), ns.notification_event_type()],
        }
    }
}

impl opcua::types::event_field::EventField for MessageEvent {
    fn get_value(
        &self,
        attribute_id: AttributeId,
        index_range: &NumericRange,
        remaining_path: &[QualifiedName],
    ) -> Variant {
        if let [field] = remaining_path {
            if field.namespace_index != 0 && attribute_id == AttributeId::Value {
                match field.name.as_ref() {
                    "Identifier" => return Variant::from(self.identifier.as_str()),
                    "NativeCode" => return Variant::from(self.native_code.as_str()),
                    "Level" => return Variant::from(self.level.as_str()),
                    _ => {}
                }
            }
        }
        self.base
            .get_value(attribute_id, index_range, remaining_path)
    }
}

impl Event for MessageEvent {
    fn get_field(
        &self,
        type_definition_id: &NodeId,
        attribute_id: AttributeId,
        index_range: &NumericRange,
        browse_path: &[QualifiedName],
    ) -> Variant {
        // Fields are asked for by the type that declares them (or a subtype of it).
        let ours = self.type_ids.contains(type_definition_id)
            || *type_definition_id == NodeId::new(0, 2041u32)
            || *type_definition_id == NodeId::new(0, 58u32);
        if !ours {
            return Variant::Empty;
        }
        opcua::types::event_field::EventField::get_value(
            self,
            attribute_id,
            index_range,
            browse_path,
        )
    }

    fn time(&self) -> &DateTime {
        &self.base.time
    }

    fn event_type_id(&self) -> &NodeId {
        &self.base.event_type
    }
}

/// The address space and the subscriptions to notify.
pub struct Target {
    pub space: Arc<RwLock<AddressSpace>>,
    pub subscriptions: Arc<SubscriptionCache>,
    pub ns: Ns,
    pub machines: Vec<MachineNodes>,
    pub states: States,
    pub telemetry: Arc<Telemetry>,
}

impl Target {
    /// Applies a batch: values first, then events.
    pub fn apply(&self, view: &LiveView, batch: &[Record], sent: &mut Sent) {
        view.apply(batch);
        let touched: BTreeSet<&MachineId> = batch.iter().map(|r| r.kind.machine()).collect();
        let mut updates = Vec::new();
        for nodes in self.machines.iter().filter(|n| touched.contains(&n.id)) {
            if let Some(m) = view.get(nodes.id.as_str()) {
                updates.extend(machine_updates(nodes, &m, &self.states, sent));
            }
        }
        if !updates.is_empty() {
            self.set_values(updates);
        }
        let mut events: Vec<(MessageEvent, NodeId)> = Vec::new();
        for r in batch {
            if let RecordKind::Condition(c) = &r.kind {
                // Raised by Messages; the library also hands it to the Server object's
                // subscribers.
                if let Some(nodes) = self.machines.iter().find(|n| n.id == c.machine) {
                    events.push((
                        MessageEvent::new(&self.ns, nodes, c, r.seq),
                        nodes.messages.clone(),
                    ));
                }
            }
        }
        if !events.is_empty() {
            Telemetry::add(&self.telemetry.opcua_events_total, events.len() as u64);
            self.subscriptions
                .notify_events(events.iter().map(|(e, n)| (e as &dyn Event, n)));
        }
    }

    fn set_values(&self, updates: Vec<(NodeId, DataValue)>) {
        Telemetry::add(
            &self.telemetry.opcua_value_changes_total,
            updates.len() as u64,
        );
        let mut space = self.space.write();
        let mut changed = Vec::with_capacity(updates.len());
        for (id, dv) in updates {
            if let Some(opcua::nodes::NodeType::Variable(v)) = space.find_mut(&id) {
                v.set_data_value(dv);
                changed.push(id);
            }
        }
        self.subscriptions.maybe_notify(
            changed.iter().map(|id| (id, AttributeId::Value)),
            |node_id, attribute_id, index_range, encoding| {
                let node = space.find(node_id)?;
                node.as_node().get_attribute(
                    opcua::types::TimestampsToReturn::Both,
                    attribute_id,
                    index_range,
                    encoding,
                )
            },
        );
    }

    /// Writes every machine's current values (at start, before the tail is followed).
    pub fn refresh_all(&self, view: &LiveView, sent: &mut Sent) {
        let mut updates = Vec::new();
        for nodes in &self.machines {
            if let Some(m) = view.get(nodes.id.as_str()) {
                updates.extend(machine_updates(nodes, &m, &self.states, sent));
            }
        }
        self.set_values(updates);
    }
}

/// Follows the journal and keeps the address space current until `shutdown`.
pub async fn run(journal: Journal, view: LiveView, target: Target, shutdown: CancellationToken) {
    let mut sent: Sent = HashMap::new();
    let pos = view.catch_up(&journal);
    target.refresh_all(&view, &mut sent);
    crate::northbound::live::follow_journal(&journal, pos, "opcua", &shutdown, |batch| {
        target.apply(&view, batch, &mut sent)
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Availability, LossCategory, MachineState};
    use crate::northbound::live::LiveSignal;

    fn machine() -> LiveMachine {
        let mut m = LiveMachine::new(
            MachineId::new("m1").unwrap(),
            "M1".into(),
            "mtconnect-generic".into(),
            "shdr".into(),
        );
        m.state = ShopState::Run;
        m.current = MachineState {
            availability: Availability::Available,
            execution: Some(Execution::Active),
            controller_mode: Some(ControllerMode::Automatic),
            functional_mode: Some(FunctionalMode::Production),
            program: Some("O1234".into()),
            part_count: Some(7),
            ..MachineState::default()
        };
        m.since = Some(Timestamp::from_micros(1_700_000_000_000_000));
        m.link = Some(LinkStatus::Connected);
        m.signals.insert(
            signals::FEED_OVERRIDE.into(),
            LiveSignal {
                value: Value::Float(85.0),
                quality: Quality::Good,
                time: Timestamp::from_micros(1_700_000_001_000_000),
            },
        );
        m
    }

    fn value_of(values: &[(Field, NodeValue)], f: Field) -> NodeValue {
        values
            .iter()
            .find(|(g, _)| *g == f)
            .map(|(_, v)| v.clone())
            .unwrap()
    }

    #[test]
    fn opc_ua_times_count_from_1601_in_100ns_ticks() {
        let t = Timestamp::from_micros(0);
        assert_eq!(date_time(t).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        let t = Timestamp::from_micros(1_700_000_000_123_456);
        assert_eq!(date_time(t).to_rfc3339(), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn a_running_machine_reads_as_the_companion_specifications_say() {
        let m = machine();
        let v = field_values(&m, &States::default());
        assert_eq!(
            value_of(&v, Field::ItemState).value,
            Variant::from(LocalizedText::new("en", "Executing"))
        );
        assert_eq!(
            value_of(&v, Field::OperationModeState).value,
            Variant::from(LocalizedText::new("en", "Processing"))
        );
        assert_eq!(
            value_of(&v, Field::OperationMode).value,
            Variant::from(1i32)
        );
        assert_eq!(value_of(&v, Field::ChannelState).value, Variant::from(0i32));
        assert_eq!(
            value_of(&v, Field::ProgramName).value,
            Variant::from("O1234")
        );
        let feed = value_of(&v, Field::ChannelFeedOverride);
        assert_eq!(feed.value, Variant::from(85.0));
        assert_eq!(
            feed.time,
            Some(Timestamp::from_micros(1_700_000_001_000_000))
        );
        assert_eq!(value_of(&v, Field::LossCategory).value, Variant::from(""));
        assert_eq!(value_of(&v, Field::PartsGood).value, Variant::from(7u64));
        assert_eq!(
            value_of(&v, Field::ObservedCycleTime).status,
            StatusCode::BadWaitingForInitialData
        );
    }

    #[test]
    fn a_stop_is_unexplained_until_someone_says_why_during_it() {
        let mut m = machine();
        m.state = ShopState::Idle;
        m.current.execution = Some(Execution::Ready);
        let v = field_values(&m, &States::default());
        assert_eq!(
            value_of(&v, Field::LossCategory).value,
            Variant::from("unexplained")
        );
        assert_eq!(
            value_of(&v, Field::ProgramState).value,
            Variant::from(LocalizedText::new("en", "Initializing"))
        );
        // A reason given before this stop began does not explain it.
        let before = m.since.map(|s| Timestamp::from_micros(s.as_micros() - 1));
        m.stop_reason = Some(crate::northbound::live::LiveReason {
            reason: LossCategory::SETUP,
            note: None,
            at: before.unwrap(),
            by: None,
        });
        let v = field_values(&m, &States::default());
        assert_eq!(
            value_of(&v, Field::LossCategory).value,
            Variant::from("unexplained")
        );
        m.stop_reason.as_mut().unwrap().at = m.since.unwrap();
        let v = field_values(&m, &States::default());
        assert_eq!(
            value_of(&v, Field::LossCategory).value,
            Variant::from("setup")
        );
        m.state = ShopState::Down;
        m.current.alarm = true;
        m.stop_reason = None;
        let v = field_values(&m, &States::default());
        assert_eq!(
            value_of(&v, Field::LossCategory).value,
            Variant::from("machine_fault")
        );
    }

    #[test]
    fn link_loss_keeps_values_with_bad_communication_error_and_good_returns() {
        let mut m = machine();
        let nodes = MachineNodes {
            id: m.id.clone(),
            name: m.name.clone(),
            object: NodeId::new(1, "m1"),
            messages: NodeId::new(1, "m1/msgs"),
            fields: super::super::space::FIELDS
                .iter()
                .map(|(_, p)| Some(NodeId::new(1, format!("m1/{p}"))))
                .collect(),
            signals: Default::default(),
            methods: vec![],
        };
        let feed_node = NodeId::new(1, "m1/Monitoring/Channel1/FeedOverride");
        let mut sent = Sent::new();
        let first = machine_updates(&nodes, &m, &States::default(), &mut sent);
        assert!(first.len() > 20);
        // Nothing changed: nothing is written again.
        assert!(machine_updates(&nodes, &m, &States::default(), &mut sent).is_empty());
        m.link = Some(LinkStatus::Lost);
        // The normalizer reports the machine unavailable when its link drops.
        m.state = ShopState::Off;
        m.current.execution = None;
        m.signals.clear();
        let lost = machine_updates(&nodes, &m, &States::default(), &mut sent);
        let channel = NodeId::new(1, "m1/Monitoring/Channel1/ChannelState");
        let state = lost.iter().find(|(id, _)| *id == channel).unwrap();
        assert_eq!(
            state.1.value,
            Some(Variant::from(0i32)),
            "the last value is kept"
        );
        let feed = lost.iter().find(|(id, _)| *id == feed_node).unwrap();
        assert_eq!(feed.1.status, Some(StatusCode::BadCommunicationError));
        assert_eq!(feed.1.value, Some(Variant::from(85.0)));
        assert!(
            lost.iter()
                .all(|(_, dv)| dv.status == Some(StatusCode::BadCommunicationError))
        );
        m = machine();
        let back = machine_updates(&nodes, &m, &States::default(), &mut sent);
        let feed = back.iter().find(|(id, _)| *id == feed_node).unwrap();
        assert_eq!(feed.1.status, Some(StatusCode::Good));
    }
}
