//! The live view: each machine's current state, derived only from durable journal records.
//!
//! [`run_live_consumer`] follows the journal's tail and applies every record, so what the API
//! shows is exactly what the journal holds; nothing a crash could take back is ever shown.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::journal::Journal;
use crate::model::{
    ActiveConditions, AssetAction, Command, LinkStatus, LossCategory, MachineId, MachineState,
    Quality, RecordKind, ShopState, Timestamp, Value,
};

/// One signal's latest value.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct LiveSignal {
    pub value: Value,
    #[serde(skip_serializing_if = "Quality::is_good")]
    pub quality: Quality,
    pub time: Timestamp,
}

/// What `/api/v1/machines` shows for one machine.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct LiveMachine {
    pub id: MachineId,
    pub name: String,
    pub profile: String,
    pub driver: String,
    /// RUN / IDLE / DOWN / OFF.
    pub state: ShopState,
    /// The canonical state: availability, execution, controller_mode, functional_mode,
    /// emergency_stop, alarm, program, part_count.
    #[serde(flatten)]
    pub current: MachineState,
    /// When the machine entered its current state (aligned time).
    pub since: Option<Timestamp>,
    /// The driver's link: connected, lost (or null before the first report).
    pub link: Option<LinkStatus>,
    /// Aligned time of the last record about this machine.
    pub last_seen: Option<Timestamp>,
    /// Sequence number of the last record about this machine.
    pub last_seq: u64,
    pub signals: BTreeMap<String, LiveSignal>,
    /// Conditions currently not NORMAL (warnings and faults), keyed by item and native code.
    #[schema(value_type = Vec<crate::model::ActiveCondition>)]
    pub conditions: ActiveConditions,
    /// Assets the machine reported that are still present, by id.
    pub assets: BTreeMap<String, LiveAsset>,
    /// The machine's clock against the bridge's (null until it sent a timestamp).
    pub clock: Option<LiveClock>,
    /// The operator signed in at the machine.
    pub operator: Option<String>,
    /// The journal record `operator` comes from.
    #[serde(skip)]
    pub operator_seq: u64,
    /// The reason given for the current or last stop.
    pub stop_reason: Option<LiveReason>,
    /// The operation in process: the context layer's (matched from the dispatch list by
    /// program, or confirmed), or the one someone confirmed until the context layer says.
    pub operation: Option<LiveOperation>,
    /// The context layer's view now: job, operation, operator, shift, the current span's
    /// category and how it was decided, and the running operation's schedule feedback.
    pub context: Option<crate::model::ContextRecord>,
}

/// A confirmed job and operation.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct LiveOperation {
    pub job: String,
    pub operation: String,
    pub at: Timestamp,
    /// The journal record it comes from.
    #[serde(skip)]
    pub seq: u64,
}

/// A stop reason someone gave.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LiveReason {
    pub reason: crate::model::LossCategory,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// A machine's clock as time alignment estimates it.
#[derive(Clone, Copy, Debug, Serialize, utoipa::ToSchema)]
pub struct LiveClock {
    /// Added to the machine's timestamps to put them on the bridge's time line, in ms (a
    /// control whose clock is 3 minutes fast shows about -180000). Null when the machine
    /// sends no timestamps.
    pub offset_ms: Option<f64>,
    /// How much the delay between the machine's timestamp and its arrival wanders, in ms.
    pub jitter_ms: f64,
}

impl From<crate::normalize::ClockInfo> for LiveClock {
    fn from(c: crate::normalize::ClockInfo) -> Self {
        Self {
            offset_ms: c.offset_micros.map(|o| o as f64 / 1000.0),
            jitter_ms: c.jitter_micros as f64 / 1000.0,
        }
    }
}

/// An asset the machine holds (its document is in the journal's asset records).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct LiveAsset {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset_type: Option<String>,
    pub time: Timestamp,
}

impl LiveMachine {
    /// The loss category of the current stop and since when: the operator's reason when
    /// given during this stop, machine_fault while a fault alarm holds the machine DOWN, else
    /// unexplained; none while the machine runs. (What OPC UA and Sparkplug show until the
    /// context layer classifies stops itself.)
    pub fn loss_category(&self) -> Option<(LossCategory, Option<Timestamp>)> {
        if let Some(c) = &self.context {
            return match &c.category {
                crate::model::TimeCategory::Production => None,
                crate::model::TimeCategory::Loss(l) => Some((l.clone(), Some(c.since))),
            };
        }
        if self.state == ShopState::Run {
            return None;
        }
        if let Some(r) = &self.stop_reason {
            if self.since.is_none_or(|s| r.at >= s) {
                return Some((r.reason.clone(), self.since));
            }
        }
        if self.state == ShopState::Down && self.current.alarm {
            return Some((LossCategory::MACHINE_FAULT, self.since));
        }
        Some((LossCategory::UNEXPLAINED, self.since))
    }

    pub fn new(id: MachineId, name: String, profile: String, driver: String) -> Self {
        Self {
            id,
            name,
            profile,
            driver,
            state: ShopState::Off,
            current: MachineState::default(),
            since: None,
            link: None,
            last_seen: None,
            last_seq: 0,
            signals: BTreeMap::new(),
            conditions: ActiveConditions::default(),
            assets: BTreeMap::new(),
            clock: None,
            operator: None,
            operator_seq: 0,
            stop_reason: None,
            operation: None,
            context: None,
        }
    }
}

/// The live state of every configured machine.
#[derive(Default)]
pub struct LiveView {
    machines: RwLock<BTreeMap<MachineId, LiveMachine>>,
    position: AtomicU64,
}

impl LiveView {
    pub fn new(machines: impl IntoIterator<Item = LiveMachine>) -> Self {
        Self {
            machines: RwLock::new(machines.into_iter().map(|m| (m.id.clone(), m)).collect()),
            position: AtomicU64::new(0),
        }
    }

    pub fn snapshot(&self) -> Vec<LiveMachine> {
        self.machines
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn get(&self, id: &str) -> Option<LiveMachine> {
        let m = self.machines.read().ok()?;
        m.values().find(|m| m.id.as_str() == id).cloned()
    }

    /// Maps every machine in place (no copy of their signals), in id order.
    pub fn map<R>(&self, f: impl FnMut(&LiveMachine) -> R) -> Vec<R> {
        self.machines
            .read()
            .map(|m| m.values().map(f).collect())
            .unwrap_or_default()
    }

    /// Reads one machine in place (no copy of its signals).
    pub fn with<R>(&self, id: &MachineId, f: impl FnOnce(&LiveMachine) -> R) -> Option<R> {
        let m = self.machines.read().ok()?;
        m.get(id).map(f)
    }

    /// The last journal seq applied.
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Relaxed)
    }

    /// Applies durable records, in sequence order.
    pub fn apply(&self, records: &[crate::model::Record]) {
        let Ok(mut machines) = self.machines.write() else {
            return;
        };
        for r in records {
            // Records about machines no longer configured are history, not live state.
            if let Some(m) = machines.get_mut(r.kind.machine()) {
                apply_record(m, r);
            }
        }
        if let Some(last) = records.last() {
            self.position.store(last.seq, Ordering::Relaxed);
        }
    }

    /// Applies one durable record and reads its machine as it is after it, under one lock.
    pub fn apply_one<R>(
        &self,
        r: &crate::model::Record,
        f: impl FnOnce(&LiveMachine) -> R,
    ) -> Option<R> {
        let mut machines = self.machines.write().ok()?;
        let m = machines.get_mut(r.kind.machine())?;
        apply_record(m, r);
        self.position.store(r.seq, Ordering::Relaxed);
        Some(f(m))
    }
}

/// What one record changes in its machine's live state.
fn apply_record(m: &mut LiveMachine, r: &crate::model::Record) {
    m.last_seq = r.seq;
    let t = r.kind.time();
    if m.last_seen.is_none_or(|s| t > s) {
        m.last_seen = Some(t);
    }
    match &r.kind {
        RecordKind::Observation(o) => {
            let now = LiveSignal {
                value: o.value.clone(),
                quality: o.quality,
                time: o.time.aligned,
            };
            // No key allocation for a signal already known (the usual case).
            match m.signals.get_mut(o.signal.as_str()) {
                Some(s) => *s = now,
                None => {
                    m.signals.insert(o.signal.as_str().to_string(), now);
                }
            }
            match o.signal.as_str() {
                crate::model::signals::PROGRAM => {
                    m.current.program = Some(o.value.to_string())
                        .filter(|s| !o.value.is_unavailable() && !s.is_empty())
                }
                crate::model::signals::PART_COUNT => m.current.part_count = o.value.as_i64(),
                _ => {}
            }
        }
        RecordKind::StateChange(s) => {
            m.state = s.shop_state;
            m.current = s.state.clone();
            m.since = Some(s.at);
        }
        RecordKind::Link(l) => {
            if l.status != LinkStatus::Gap {
                m.link = Some(l.status);
            }
        }
        RecordKind::Interval(_) => {}
        RecordKind::Condition(c) => m.conditions.apply(c),
        RecordKind::Command(c) => match &c.command {
            Command::StopReason { reason, note } => {
                m.stop_reason = Some(LiveReason {
                    reason: reason.clone(),
                    note: note.clone(),
                    at: c.at,
                    by: c.origin.user.clone(),
                })
            }
            Command::SignIn { operator } => {
                m.operator = Some(operator.clone());
                m.operator_seq = r.seq;
            }
            Command::SignOut => {
                m.operator = None;
                m.operator_seq = r.seq;
            }
            Command::ConfirmOperation { job, operation } => {
                m.operation = Some(LiveOperation {
                    job: job.clone(),
                    operation: operation.clone(),
                    at: c.at,
                    seq: r.seq,
                })
            }
            Command::Parts { .. } => {}
        },
        RecordKind::Context(c) => {
            // A command the context layer has not read yet wins over its older view.
            if c.through >= m.operator_seq {
                m.operator.clone_from(&c.context.operator);
                m.operator_seq = c.through;
            }
            if m.operation.as_ref().is_none_or(|o| c.through >= o.seq) {
                m.operation = match (&c.context.job, &c.context.operation) {
                    (Some(job), Some(operation)) => Some(LiveOperation {
                        job: job.clone(),
                        operation: operation.clone(),
                        at: m
                            .operation
                            .as_ref()
                            .filter(|o| &o.job == job && &o.operation == operation)
                            .map_or(c.at, |o| o.at),
                        seq: c.through,
                    }),
                    _ => None,
                };
            }
            m.context = Some((**c).clone());
        }
        // Dispatch lists and holds are the context layer's to keep (GET .../dispatch,
        // /api/v1/holds); their effect shows in its context records.
        RecordKind::Dispatch(_) | RecordKind::Quality(_) | RecordKind::Operation(_) => {}
        RecordKind::Asset(a) => match a.action {
            AssetAction::Changed => {
                m.assets.insert(
                    a.asset_id.clone(),
                    LiveAsset {
                        asset_type: a.asset_type.clone(),
                        time: a.time.aligned,
                    },
                );
            }
            AssetAction::Removed => {
                m.assets.remove(&a.asset_id);
            }
            AssetAction::RemovedAll => match &a.asset_type {
                Some(t) => m.assets.retain(|_, v| v.asset_type.as_ref() != Some(t)),
                None => m.assets.clear(),
            },
        },
    }
}

impl LiveView {
    /// Applies the journal's recent tail (at most the last 200,000 records) so that the view
    /// shows the latest known state at once; returns the seq it reached (records appended
    /// meanwhile may be in the view too: the returned seq covers them).
    pub fn catch_up(&self, journal: &Journal) -> u64 {
        let pos = journal.last_seq();
        let mut p = pos.saturating_sub(200_000);
        while p < pos {
            match journal.read(p, 20_000) {
                Ok(batch) if !batch.is_empty() => {
                    p = batch.last().map(|r| r.seq).unwrap_or(pos);
                    self.apply(&batch);
                }
                _ => break,
            }
        }
        pos.max(self.position())
    }
}

/// Follows the journal from its current end and applies every new record to `view`.
pub async fn run_live_consumer(
    journal: Journal,
    view: std::sync::Arc<LiveView>,
    shutdown: CancellationToken,
) {
    let pos = view.catch_up(&journal);
    follow_journal(&journal, pos, "live view", &shutdown, |batch| {
        view.apply(batch)
    })
    .await;
}

/// Hands every durable record after `pos` to `apply`, batch by batch and in order, until
/// `shutdown` (or the journal closes). `who` names the consumer in warnings.
pub async fn follow_journal(
    journal: &Journal,
    mut pos: u64,
    who: &str,
    shutdown: &CancellationToken,
    mut apply: impl FnMut(&[crate::model::Record]),
) {
    let mut rx = journal.subscribe();
    loop {
        while pos < *rx.borrow_and_update() {
            match journal.read(pos, 20_000) {
                Ok(batch) => {
                    let Some(last) = batch.last() else { break };
                    pos = last.seq;
                    apply(&batch);
                }
                Err(e) => {
                    tracing::warn!(error = %e, consumer = who, "cannot read the journal; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    break;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = rx.changed() => if r.is_err() { return },
        }
    }
}
