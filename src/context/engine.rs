//! The context engine: a pure state machine (no I/O, no clock) that reads a machine's journal
//! records in order and derives its context and the category of every span of its time.
//!
//! Inputs: state changes and the observations a rule reads (program, part count, single block,
//! optional stop, feed override, tool), link records, operator commands, dispatch lists and QMS
//! events. Outputs, appended to the journal by [`super::run`]:
//!
//! - **intervals**: a machine's time cut into spans, each with one category (production or a
//!   loss), its attribution (rule, operator, QMS, planner; confidence), job, operation,
//!   operator and shift. A span closes when the machine state changes, when its category or
//!   context changes (a hold opens, an operator signs out, an operation starts), and at every
//!   calendar boundary (shift start and end, breaks), so every span belongs to one shift.
//!   Categories that depend on how long a stop lasted (load and unload, micro-stops) are final
//!   when the span closes; the live context shows the provisional one.
//! - **revisions**: an interval written again (same machine and start) when an operator gives
//!   the reason of a stop already partly written, or confirms which operation was running. The
//!   revision names what it had before, who changed it and when: the reconciliation ledger.
//! - **operation events** and the machine's **live context** (with schedule feedback).
//!
//! The same records in give the same records out, so `shopbridge reclassify` re-derives
//! history under today's rules with this very code.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::calendar::{Calendar, Slot};
use super::rules::{FACTS, RuleCategory, Rules, fact};
use crate::model::{
    Attribution, CategorySource, Command, ContextRecord, DispatchedOperation, Execution,
    FunctionalMode, JobContext, LinkStatus, LossCategory, MachineId, MachineState, OperationEvent,
    OperationRecord, OperationRef, PartCounts, QualityEvent, Record, RecordKind, Revision,
    ScheduleFeedback, ShopState, StateInterval, TimeCategory, Timestamp, Value, signals,
};

/// Segments of an operation kept for re-attribution on confirmation: about two shifts of a
/// busy machine. Every machine's are held in memory, so the bound sets the engine's size. A
/// machine's ring is allocated at this size when its first operation starts and kept (about
/// 28 KiB, 5.6 MiB for 200 machines): grown by doubling instead, the rings crept up for hours
/// as operations ran longer than any before them, and the soak (`shopbridge bench soak`) read
/// that, and the holes the doublings left in the allocator, as a rising RSS.
pub(crate) const MAX_OP_SEGMENTS: usize = 512;
/// Segments of a stop kept for an operator's reason.
const MAX_STOP_SEGMENTS: usize = 512;
/// A stop's segment list keeps room for this many once the next stop begins: a machine's
/// longest stop does not decide what it holds from then on.
const STOP_SEGMENTS_KEPT: usize = 8;
/// An operator's reason replaces rule decisions less sure than this (and the decision of the
/// span it was given for): a confident rule (a fault, setup mode) keeps its category.
const REASON_OVERRIDES_BELOW: f32 = 0.75;
/// A running operation whose machine stops this long is paused (and resumed when it runs).
const PAUSE_AFTER_MICROS: i64 = 30 * 60 * 1_000_000;
/// Cycle times the robust median is taken over.
const CYCLE_WINDOW: usize = 15;
/// An operation no dispatch list has named for this long, and that no machine runs, is
/// forgotten (the ERP is done with it); until then a re-dispatch remembers it was completed.
const OP_MEMORY: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
/// How often (engine time) forgotten operations are looked for.
const OP_FORGET_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Per-machine settings.
#[derive(Clone, Debug)]
pub struct MachineSettings {
    pub calendar: Arc<Calendar>,
    /// Parts made per counter step (a two-up fixture counts 2).
    pub parts_per_cycle: u32,
}

impl Default for MachineSettings {
    fn default() -> Self {
        Self {
            calendar: Arc::new(Calendar::always()),
            parts_per_cycle: 1,
        }
    }
}

/// A machine's context inputs as the engine holds them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MachineInputs {
    pub dispatch: Vec<DispatchedOperation>,
    pub holds: Vec<String>,
    pub inspection_pending: bool,
}

/// The engine's inputs per machine, shared read-only with the REST API (which merges jobs into
/// dispatch lists and finds the machines a hold is open on). Kept by [`super::run`]; it is the
/// engine's own state, so it survives restarts with it.
#[derive(Debug, Default)]
pub struct ContextView {
    machines: std::sync::RwLock<HashMap<MachineId, MachineInputs>>,
}

impl ContextView {
    pub fn get(&self, m: &MachineId) -> MachineInputs {
        self.machines
            .read()
            .map(|v| v.get(m).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Open holds and the machines they are open on.
    pub fn holds(&self) -> std::collections::BTreeMap<String, Vec<MachineId>> {
        let mut out: std::collections::BTreeMap<String, Vec<MachineId>> = Default::default();
        if let Ok(v) = self.machines.read() {
            for (m, i) in v.iter() {
                for h in &i.holds {
                    out.entry(h.clone()).or_default().push(m.clone());
                }
            }
        }
        for ms in out.values_mut() {
            ms.sort();
        }
        out
    }

    /// Refreshes `machines` from the engine.
    pub fn update<'a>(&self, engine: &Engine, machines: impl IntoIterator<Item = &'a MachineId>) {
        if let Ok(mut v) = self.machines.write() {
            for m in machines {
                v.insert(m.clone(), engine.inputs(m));
            }
        }
    }
}

/// Everything the engine needs besides the records.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub rules: Arc<Rules>,
    pub machines: HashMap<MachineId, MachineSettings>,
}

/// The operation a machine is on.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct OpState {
    op: DispatchedOperation,
    started: Timestamp,
    provisional: bool,
    candidates: Vec<OperationRef>,
    parts: PartCounts,
    completed: bool,
    /// Paused by a long stop (not by another operation starting).
    #[serde(default)]
    paused: bool,
}

/// An operator's reason for the current (or last) stop.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Override {
    category: LossCategory,
    by: Option<String>,
    record: u64,
    at: Timestamp,
    /// The rule's category of the span the reason was given for.
    anchor: TimeCategory,
}

/// A span written for the current (or last) stop, as much of it as writing it again with an
/// operator's reason needs, with the rule's own decision. A stop of hours keeps up to
/// [`MAX_STOP_SEGMENTS`] of them per machine and they are in every saved state, so they are
/// kept like [`OpSegment`]s: the machine is the owner's, and a state, a context or a decision
/// equal to one of the last few spans' is shared with it (whole intervals, each with its own
/// job, operator and shift strings, made the soak's heap grow with every hour of a long stop).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StopSpan {
    #[serde(flatten)]
    kept: OpSegment,
    /// The rule's own decision.
    rule: Arc<RuleDecided>,
}

/// What the rules decided for a span (an operator's reason aside).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct RuleDecided {
    category: TimeCategory,
    attribution: Attribution,
}

/// A stop's span as versions before the compact [`StopSpan`] saved it: read from an older
/// saved state, never written.
#[derive(Clone, Debug, Deserialize)]
struct WholeStopSpan {
    interval: StateInterval,
    rule: TimeCategory,
    rule_attribution: Attribution,
}

impl StopSpan {
    /// Keeps the interval `i`, sharing equal parts with `recent` spans of the machine.
    fn new(recent: &[StopSpan], i: &StateInterval, rule: RuleDecided) -> StopSpan {
        let recent = || recent.iter().rev().take(SHARE_WITHIN);
        StopSpan {
            kept: OpSegment::keep(recent().map(|s| &s.kept), i),
            rule: match recent().find(|s| *s.rule == rule) {
                Some(s) => Arc::clone(&s.rule),
                None => Arc::new(rule),
            },
        }
    }
}

/// The span of time being accumulated.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Segment {
    start: Timestamp,
    state: MachineState,
    context: JobContext,
    /// The decision while the span is open (its stop taken as going on: no micro-stop yet).
    category: TimeCategory,
    attribution: Attribution,
    provisional: bool,
    slot_until: Timestamp,
    planned: Option<(LossCategory, String)>,
    /// The facts the decision was taken on (the stop's length is filled in at close).
    facts: Vec<Value>,
}

/// An interval written since its operation started, as much of it as a re-attribution needs:
/// the machine is the owner's, and a state, a decision or a context equal to one of the last
/// few intervals' is shared with it (a machine goes back and forth between a handful of each).
/// Every machine holds up to [`MAX_OP_SEGMENTS`] of them, so their size is most of the
/// engine's memory: about 60 bytes each this way, against 300 for a whole interval.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct OpSegment {
    start: Timestamp,
    end: Timestamp,
    state: Arc<MachineState>,
    decided: Arc<Decided>,
    provisional: bool,
    /// The number of the interval's newest revision.
    revision: Option<u32>,
    context: Arc<JobContext>,
}

/// An interval's category and how it was decided.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Decided {
    category: Option<TimeCategory>,
    attribution: Option<Attribution>,
}

/// How many of a machine's newest kept intervals a new one looks through for equal parts.
const SHARE_WITHIN: usize = 8;

impl OpSegment {
    /// Keeps the interval `i`, sharing equal parts with `recent` ones of the machine.
    fn keep<'a>(recent: impl Iterator<Item = &'a OpSegment> + Clone, i: &StateInterval) -> Self {
        OpSegment {
            start: i.start,
            end: i.end,
            state: share(
                recent.clone().map(|s| &s.state),
                || i.state.clone(),
                |s| *s == i.state,
            ),
            decided: share(
                recent.clone().map(|s| &s.decided),
                || Decided {
                    category: i.category.clone(),
                    attribution: i.attribution.clone(),
                },
                |d| d.category == i.category && d.attribution == i.attribution,
            ),
            provisional: i.provisional,
            revision: i.revision.as_ref().map(|r| r.n),
            context: share(
                recent.map(|s| &s.context),
                || i.context.clone(),
                |c| *c == i.context,
            ),
        }
    }

    fn interval(&self, machine: &MachineId) -> StateInterval {
        StateInterval {
            machine: machine.clone(),
            start: self.start,
            end: self.end,
            shop_state: self.state.shop_state(),
            state: (*self.state).clone(),
            category: self.decided.category.clone(),
            context: (*self.context).clone(),
            attribution: self.decided.attribution.clone(),
            provisional: self.provisional,
            revision: None,
        }
    }
}

/// `value` as an `Arc`: one of `recent`'s if equal, else a new one.
fn share<'a, T: 'a>(
    mut recent: impl Iterator<Item = &'a Arc<T>>,
    value: impl FnOnce() -> T,
    equal: impl Fn(&T) -> bool,
) -> Arc<T> {
    match recent.find(|r| equal(r)) {
        Some(r) => Arc::clone(r),
        None => Arc::new(value()),
    }
}

/// Where a machine's operation stands, shared across machines (routing: starved).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct OpStatus {
    started: bool,
    completed: bool,
    /// When a dispatch list last named it (absent in snapshots of older versions).
    #[serde(default)]
    listed: Option<Timestamp>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct MachineCtx {
    state: MachineState,
    state_known: bool,
    program: Option<String>,
    part_count: Option<i64>,
    single_block: bool,
    optional_stop: bool,
    feed_override: Option<f64>,
    tool: Option<i64>,
    tool_at_stop: Option<i64>,
    operator: Option<String>,
    dispatch: Vec<DispatchedOperation>,
    op: Option<OpState>,
    holds: Vec<(String, Option<String>, Option<String>)>,
    inspection_pending: bool,
    /// The program was already loaded when the bridge first heard of it.
    found: bool,
    /// A found program had made parts already (decided once, when both were first known):
    /// the bridge joined a running operation.
    resumed: Option<bool>,
    /// Cycles completed since the program was loaded.
    cycles: u32,
    proven: bool,
    last_execution: Option<Execution>,
    cycle_times: VecDeque<f64>,
    last_part_at: Option<Timestamp>,
    open: Option<Segment>,
    /// When the machine last left RUN (None while it runs).
    stop_start: Option<Timestamp>,
    /// The intervals written for the current (or last) stop.
    #[serde(default)]
    stop_spans: Vec<StopSpan>,
    /// The same as saved by versions before compact [`StopSpan`]s: read, moved into
    /// `stop_spans` on restore, never written.
    #[serde(default, rename = "stop_segments", skip_serializing)]
    saved_stop_segments: Vec<WholeStopSpan>,
    /// The intervals written since the operation started. Not in the saved state: it would
    /// make every save (each 10 s) carry up to [`MAX_OP_SEGMENTS`] intervals per machine; after
    /// a restart a correction re-attributes the intervals written since.
    #[serde(skip)]
    op_segments: VecDeque<OpSegment>,
    reason: Option<Override>,
    last_context: Option<ContextRecord>,
    last_time: Option<Timestamp>,
}

impl MachineCtx {
    /// Keeps a span written for the current stop with the rule's decision, the oldest going
    /// beyond [`MAX_STOP_SEGMENTS`].
    fn keep_stop_span(
        &mut self,
        i: &StateInterval,
        category: TimeCategory,
        attribution: Attribution,
    ) {
        if self.stop_spans.len() >= MAX_STOP_SEGMENTS {
            self.stop_spans.remove(0);
        }
        let rule = RuleDecided {
            category,
            attribution,
        };
        let span = StopSpan::new(&self.stop_spans, i, rule);
        self.stop_spans.push(span);
    }
}

/// The context engine for every machine.
#[derive(Clone, Debug)]
pub struct Engine {
    config: EngineConfig,
    /// The newest journal record applied.
    last_seq: u64,
    machines: HashMap<MachineId, MachineCtx>,
    ops: HashMap<(String, String), OpStatus>,
    /// When [`Engine::forget_old_ops`] last looked.
    ops_forgotten: Option<Timestamp>,
}

/// What [`Engine::snapshot`] stores.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    machines: Vec<(MachineId, MachineCtx)>,
    ops: Vec<((String, String), OpStatus)>,
}

fn text(v: &Option<String>) -> Value {
    Value::text(v.as_deref().unwrap_or(""))
}

fn word<T: std::fmt::Display>(v: Option<T>) -> Value {
    v.map_or(Value::Unavailable, |w| Value::text(&w.to_string()))
}

/// Program names compare without case, directory or surrounding blanks.
fn same_program(a: &str, b: &str) -> bool {
    let base = |s: &str| {
        let s = s.trim();
        s.rsplit(['/', '\\'])
            .next()
            .unwrap_or(s)
            .to_ascii_uppercase()
    };
    base(a) == base(b)
}

fn median(xs: &VecDeque<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v: Vec<f64> = xs.iter().copied().collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

impl Engine {
    pub fn new(config: EngineConfig) -> Engine {
        Engine {
            config,
            last_seq: 0,
            machines: HashMap::new(),
            ops: HashMap::new(),
            ops_forgotten: None,
        }
    }

    /// The engine's state as bytes (stored with the cursor, so a restart resumes exactly).
    pub fn snapshot(&self) -> Vec<u8> {
        let s = Snapshot {
            machines: self
                .machines
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ops: self.ops.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        };
        serde_json::to_vec(&s).unwrap_or_default()
    }

    /// Restores a snapshot; machines no longer configured are dropped.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let s: Snapshot = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        self.machines = s
            .machines
            .into_iter()
            .filter(|(m, _)| self.config.machines.contains_key(m))
            .map(|(id, mut m)| {
                for w in std::mem::take(&mut m.saved_stop_segments) {
                    m.keep_stop_span(&w.interval, w.rule, w.rule_attribution);
                }
                (id, m)
            })
            .collect();
        self.ops = s.ops.into_iter().collect();
        Ok(())
    }

    /// Applies one record; derived records go to `out`. Records the engine derives itself are
    /// ignored (it reads its own output back from the journal).
    pub fn apply(&mut self, r: &Record, out: &mut Vec<RecordKind>) {
        // Most records are observations of signals no rule reads: leave them at the door.
        let relevant = match &r.kind {
            RecordKind::Observation(o) => matches!(
                o.signal.as_str(),
                signals::PROGRAM
                    | signals::PART_COUNT
                    | signals::SINGLE_BLOCK
                    | signals::OPTIONAL_STOP
                    | signals::FEED_OVERRIDE
                    | signals::TOOL_NUMBER
            ),
            RecordKind::Condition(_) | RecordKind::Asset(_) => false,
            k => !k.is_derived(),
        };
        if !relevant {
            return;
        }
        let machine = r.kind.machine().clone();
        let Some(settings) = self.config.machines.get(&machine).cloned() else {
            return;
        };
        let rules = self.config.rules.clone();
        let mut m = self.machines.remove(&machine).unwrap_or_default();
        self.last_seq = self.last_seq.max(r.seq);
        let mut cx = Cx {
            seq: r.seq,
            id: &machine,
            settings: &settings,
            rules: &rules,
            ops: &mut self.ops,
            out,
        };
        cx.apply(&mut m, r);
        self.machines.insert(machine, m);
        if matches!(r.kind, RecordKind::Dispatch(_)) {
            self.forget_old_ops(r.kind.time());
        }
    }

    /// Forgets the operations no dispatch list has named for [`OP_MEMORY`] and that no
    /// machine runs or waits on; without this the map (and every snapshot) would grow with
    /// each job the shop ever ran. Looks at most once per [`OP_FORGET_EVERY`].
    fn forget_old_ops(&mut self, now: Timestamp) {
        if self
            .ops_forgotten
            .is_some_and(|last| now.saturating_sub(OP_FORGET_EVERY) < last)
        {
            return;
        }
        self.ops_forgotten = Some(now);
        let horizon = now.saturating_sub(OP_MEMORY);
        let mut in_use: std::collections::HashSet<(&str, &str)> = Default::default();
        for m in self.machines.values() {
            if let Some(o) = &m.op {
                in_use.insert((&o.op.job, &o.op.operation));
            }
            for o in &m.dispatch {
                in_use.insert((&o.job, &o.operation));
                if let Some(after) = &o.after {
                    in_use.insert((&o.job, after));
                }
            }
        }
        self.ops.retain(|(job, op), s| {
            let listed = *s.listed.get_or_insert(now);
            listed >= horizon || in_use.contains(&(job.as_str(), op.as_str()))
        });
    }

    /// Re-decides every open span as of `now` (how long it has lasted so far) and writes the
    /// live context where that changes it: a machine idle for ten minutes is no longer shown
    /// as loading parts. Writes no interval (those are decided when spans close).
    pub fn tick(&mut self, now: Timestamp, out: &mut Vec<RecordKind>) {
        self.each_machine(out, |cx, m| {
            if m.open.as_ref().is_some_and(|o| now > o.start) {
                cx.publish_at(m, now);
            }
        });
    }

    /// Closes every machine's open span at `at` (a clean shutdown).
    pub fn close_all(&mut self, at: Timestamp, out: &mut Vec<RecordKind>) {
        let from = out.len();
        self.each_machine(out, |cx, m| {
            let at = m.last_time.map_or(at, |l| at.max(l));
            cx.advance(m, at);
            cx.close(m, at, false);
        });
        // Only the intervals: a live context for spans that close at once helps nobody.
        let tail = out.split_off(from);
        out.extend(
            tail.into_iter()
                .filter(|r| matches!(r, RecordKind::Interval(_))),
        );
    }

    /// Runs `f` for every configured machine the engine knows.
    fn each_machine(
        &mut self,
        out: &mut Vec<RecordKind>,
        mut f: impl FnMut(&mut Cx<'_>, &mut MachineCtx),
    ) {
        let rules = self.config.rules.clone();
        for (id, m) in self.machines.iter_mut() {
            let Some(settings) = self.config.machines.get(id).cloned() else {
                continue;
            };
            let mut cx = Cx {
                seq: self.last_seq,
                id,
                settings: &settings,
                rules: &rules,
                ops: &mut self.ops,
                out: &mut *out,
            };
            f(&mut cx, m);
        }
    }

    /// What the engine holds now about a machine's inputs: its dispatch list, its open holds
    /// and whether an inspection is pending.
    pub fn inputs(&self, machine: &MachineId) -> MachineInputs {
        self.machines
            .get(machine)
            .map(|m| MachineInputs {
                dispatch: m.dispatch.clone(),
                holds: m.holds.iter().map(|h| h.0.clone()).collect(),
                inspection_pending: m.inspection_pending,
            })
            .unwrap_or_default()
    }

    /// Every configured machine.
    pub fn machine_ids(&self) -> impl Iterator<Item = &MachineId> {
        self.config.machines.keys()
    }
}

/// One machine's processing, with what it needs borrowed.
struct Cx<'a> {
    /// The journal record being applied (the newest one, for a tick or a shutdown).
    seq: u64,
    id: &'a MachineId,
    settings: &'a MachineSettings,
    rules: &'a Rules,
    ops: &'a mut HashMap<(String, String), OpStatus>,
    out: &'a mut Vec<RecordKind>,
}

impl Cx<'_> {
    fn apply(&mut self, m: &mut MachineCtx, r: &Record) {
        // Commands carry bridge time, machine records aligned time; never go back.
        let mut t = r.kind.time();
        if let Some(last) = m.last_time {
            t = t.max(last);
        }
        if let Some(o) = &m.open {
            t = t.max(o.start);
        }
        m.last_time = Some(t);
        self.advance(m, t);
        self.pause_on_long_stop(m, t);
        let mut state_changed = false;
        match &r.kind {
            RecordKind::StateChange(s) => {
                // The span ends with the state it had (and its stop's real length).
                self.close(m, t, false);
                let prev_shop = m.state.shop_state();
                let was_active = m.last_execution == Some(Execution::Active);
                m.last_execution = s.state.execution;
                // A cycle without a part counter: ACTIVE → PROGRAM_COMPLETED.
                if was_active
                    && s.state.execution == Some(Execution::ProgramCompleted)
                    && m.part_count.is_none()
                {
                    self.cycle_done(m, t, 1);
                }
                m.state = MachineState {
                    program: m.state.program.clone(),
                    part_count: m.state.part_count,
                    ..s.state.clone()
                };
                m.state_known = true;
                let shop = m.state.shop_state();
                if shop == ShopState::Run {
                    m.stop_start = None;
                    if let Some(op) = m.op.as_mut().filter(|o| o.paused && !o.completed) {
                        op.paused = false;
                        let op = op.clone();
                        self.op_record(m, t, &op, OperationEvent::Resumed);
                    }
                } else if prev_shop == ShopState::Run || m.stop_start.is_none() {
                    m.stop_start = Some(t);
                    m.tool_at_stop = m.tool;
                    m.stop_spans.clear();
                    m.stop_spans.shrink_to(STOP_SEGMENTS_KEPT);
                    m.reason = None;
                }
                state_changed = true;
            }
            RecordKind::Observation(o) => match o.signal.as_str() {
                signals::PROGRAM => {
                    let p = Some(o.value.to_string())
                        .filter(|s| !o.value.is_unavailable() && !s.trim().is_empty());
                    if let Some(p) = p {
                        self.program(m, t, p);
                    }
                }
                signals::PART_COUNT => {
                    if let Some(v) = o.value.as_i64() {
                        let step = match m.part_count {
                            Some(prev) if v > prev => v - prev,
                            // A reset: counted again from zero.
                            Some(prev) if v < prev => v.max(0),
                            _ => 0,
                        };
                        // A counter first heard of with the program already running counts the
                        // parts this operation made before the bridge was there.
                        if m.part_count.is_none() && m.found {
                            m.resumed = Some(v > 0);
                            let ppc = i64::from(self.settings.parts_per_cycle.max(1));
                            if let Some(op) = m.op.as_mut().filter(|o| o.parts.made == 0) {
                                op.parts.made = (v.max(0) * ppc) as u64;
                            }
                        }
                        m.part_count = Some(v);
                        if step > 0 {
                            self.cycle_done(m, t, step as u64);
                        }
                    }
                }
                signals::SINGLE_BLOCK => {
                    m.single_block = crate::normalize::expr::truthy(&o.value);
                }
                signals::OPTIONAL_STOP => {
                    m.optional_stop = crate::normalize::expr::truthy(&o.value);
                }
                signals::FEED_OVERRIDE => m.feed_override = o.value.as_f64(),
                signals::TOOL_NUMBER => m.tool = o.value.as_i64(),
                _ => return,
            },
            RecordKind::Link(l) => {
                if l.status == LinkStatus::Gap {
                    return;
                }
            }
            RecordKind::Command(c) => {
                let by = c.origin.user.clone().or(Some(c.origin.channel.clone()));
                match &c.command {
                    Command::SignIn { operator } => m.operator = Some(operator.clone()),
                    Command::SignOut => m.operator = None,
                    Command::StopReason { reason, .. } => {
                        self.reason(m, t, reason.clone(), by, r.seq);
                    }
                    Command::ConfirmOperation { job, operation } => {
                        self.confirm(m, t, job, operation, by);
                    }
                    Command::Parts { scrap, rework } => {
                        if let Some(op) = &mut m.op {
                            op.parts.scrap += scrap;
                            op.parts.rework += rework;
                        }
                    }
                }
            }
            RecordKind::Dispatch(d) => {
                m.dispatch = d.operations.clone();
                for o in &d.operations {
                    self.ops
                        .entry((o.job.clone(), o.operation.clone()))
                        .or_default()
                        .listed = Some(t);
                }
                if let Some(op) = &mut m.op {
                    if let Some(fresh) = d
                        .operations
                        .iter()
                        .find(|o| o.job == op.op.job && o.operation == op.op.operation)
                    {
                        op.op = fresh.clone();
                    }
                } else if let Some(p) = m.program.clone() {
                    self.match_program(m, t, &p, "dispatch");
                }
            }
            RecordKind::Quality(q) => match &q.event {
                QualityEvent::HoldOpened {
                    hold,
                    job,
                    operation,
                    ..
                } => {
                    m.holds.retain(|h| &h.0 != hold);
                    m.holds.push((hold.clone(), job.clone(), operation.clone()));
                }
                QualityEvent::HoldReleased { hold } => m.holds.retain(|h| &h.0 != hold),
                QualityEvent::InspectionRequested { .. } => m.inspection_pending = true,
                QualityEvent::InspectionDispositioned { .. } => m.inspection_pending = false,
            },
            RecordKind::Condition(_) | RecordKind::Asset(_) => return,
            RecordKind::Interval(_) | RecordKind::Operation(_) | RecordKind::Context(_) => return,
        }
        if !m.state_known {
            return;
        }
        self.settle(m, t, state_changed);
        // The span in hand carries the program and counter as they are now (a span cut by a
        // program change kept the old program).
        if let Some(o) = &mut m.open {
            o.state.program.clone_from(&m.program);
            o.state.part_count = m.part_count;
        }
    }

    /// An operation whose machine has been stopped [`PAUSE_AFTER_MICROS`] is paused.
    fn pause_on_long_stop(&mut self, m: &mut MachineCtx, t: Timestamp) {
        let long = m
            .stop_start
            .is_some_and(|s| t.micros_since(s) >= PAUSE_AFTER_MICROS);
        if !long {
            return;
        }
        if let Some(op) = m.op.as_mut().filter(|o| !o.paused && !o.completed) {
            op.paused = true;
            let op = op.clone();
            self.op_record(m, t, &op, OperationEvent::Paused);
        }
    }

    /// Splits the open span at every calendar boundary up to `t`.
    fn advance(&mut self, m: &mut MachineCtx, t: Timestamp) {
        while let Some(o) = &m.open {
            let b = o.slot_until;
            if b > t || b <= o.start {
                break;
            }
            self.close(m, b, true);
            self.open(m, b);
        }
    }

    /// Re-decides the current span: a new one when the state changed or the decision did.
    fn settle(&mut self, m: &mut MachineCtx, t: Timestamp, state_changed: bool) {
        let Some(o) = &m.open else {
            self.open(m, t);
            return;
        };
        let slot = if t < o.slot_until {
            Slot {
                shift: o.context.shift.clone(),
                planned: o.planned.clone(),
                until: o.slot_until,
            }
        } else {
            self.settings.calendar.slot(t)
        };
        let (category, attribution, _) = self.decide(m, &slot, f64::INFINITY);
        let context = self.context(m, &slot);
        let provisional = m.op.as_ref().is_some_and(|o| o.provisional);
        let same = o.category == category
            && o.attribution.source == attribution.source
            && o.attribution.rule == attribution.rule
            && o.context == context
            && o.provisional == provisional;
        if state_changed || !same {
            self.close(m, t, true);
            self.open(m, t);
        } else {
            self.publish(m, t);
        }
    }

    fn facts(&self, m: &MachineCtx, slot: &Slot, stop_seconds: f64) -> Vec<Value> {
        let s = &m.state;
        let mut f = vec![Value::Unavailable; FACTS.len()];
        let mut set = |name: &str, v: Value| f[fact(name)] = v;
        set("availability", Value::text(s.availability.as_str()));
        set("execution", word(s.execution));
        set("controller_mode", word(s.controller_mode));
        set("functional_mode", word(s.functional_mode));
        set("emergency_stop", word(s.emergency_stop));
        set("alarm", Value::Bool(s.alarm));
        set("state", Value::text(s.shop_state().as_str()));
        set("program", text(&m.program));
        set(
            "part_count",
            m.part_count.map_or(Value::Unavailable, Value::Int),
        );
        set("single_block", Value::Bool(m.single_block));
        set("optional_stop", Value::Bool(m.optional_stop));
        set(
            "feed_override",
            m.feed_override.map_or(Value::Unavailable, Value::Float),
        );
        set("tool_number", m.tool.map_or(Value::Unavailable, Value::Int));
        set(
            "tool_changed",
            Value::Bool(m.stop_start.is_some() && m.tool_at_stop != m.tool),
        );
        set("operator", text(&m.operator));
        set("signed_in", Value::Bool(m.operator.is_some()));
        let op = m.op.as_ref();
        set("job", text(&op.map(|o| o.op.job.clone())));
        set("operation", text(&op.map(|o| o.op.operation.clone())));
        set(
            "operation_active",
            Value::Bool(op.is_some_and(|o| !o.completed)),
        );
        let resumed = m.resumed == Some(true);
        set("first_cycle_done", Value::Bool(m.cycles > 0 || resumed));
        set("program_proven", Value::Bool(m.proven || resumed));
        set("hold", Value::Bool(self.in_hold(m)));
        set("inspection_pending", Value::Bool(m.inspection_pending));
        set(
            "upstream_incomplete",
            Value::Bool(self.upstream_incomplete(m)),
        );
        set("planned", Value::Bool(slot.planned.is_some()));
        set("on_shift", Value::Bool(slot.shift.is_some()));
        set("stop_seconds", Value::Float(stop_seconds));
        set("span_seconds", Value::Float(0.0));
        f
    }

    fn in_hold(&self, m: &MachineCtx) -> bool {
        m.holds.iter().any(|(_, job, op)| match job {
            None => true,
            Some(j) => m.op.as_ref().is_some_and(|o| {
                &o.op.job == j && op.as_ref().is_none_or(|x| x == &o.op.operation)
            }),
        })
    }

    /// The next operation waits for one of the same job that is dispatched and not complete.
    fn upstream_incomplete(&self, m: &MachineCtx) -> bool {
        if m.op.as_ref().is_some_and(|o| !o.completed) {
            return false;
        }
        let next = m.dispatch.iter().find(|o| {
            !self
                .ops
                .get(&(o.job.clone(), o.operation.clone()))
                .is_some_and(|s| s.completed)
        });
        next.and_then(|o| o.after.as_ref().map(|a| (o.job.clone(), a.clone())))
            .and_then(|k| self.ops.get(&k))
            .is_some_and(|s| !s.completed)
    }

    /// The category and attribution of the moment, with the stop lasting `stop_seconds`.
    fn decide(
        &self,
        m: &MachineCtx,
        slot: &Slot,
        stop_seconds: f64,
    ) -> (TimeCategory, Attribution, Vec<Value>) {
        let facts = self.facts(m, slot, stop_seconds);
        let (c, a) = self.decide_on(&facts, slot);
        (c, a, facts)
    }

    fn decide_on(&self, facts: &[Value], slot: &Slot) -> (TimeCategory, Attribution) {
        match self.rules.first_match(facts) {
            Some(rule) => {
                let category = match &rule.category {
                    RuleCategory::Fixed(c) => c.clone(),
                    RuleCategory::Calendar => TimeCategory::Loss(
                        slot.planned
                            .as_ref()
                            .map_or(LossCategory::PLANNED_DOWNTIME, |p| p.0.clone()),
                    ),
                };
                (
                    category,
                    Attribution {
                        source: rule.source,
                        rule: Some(rule.name.clone()),
                        confidence: rule.confidence,
                        by: None,
                        record: None,
                    },
                )
            }
            None => (
                TimeCategory::Loss(LossCategory::UNEXPLAINED),
                Attribution {
                    source: CategorySource::Rule,
                    rule: None,
                    confidence: 0.0,
                    by: None,
                    record: None,
                },
            ),
        }
    }

    fn context(&self, m: &MachineCtx, slot: &Slot) -> JobContext {
        // A completed operation keeps the machine's time (its teardown) until the next starts.
        let op = m.op.as_ref();
        JobContext {
            job: op.map(|o| o.op.job.clone()),
            operation: op.map(|o| o.op.operation.clone()),
            part_number: op.and_then(|o| o.op.part_number.clone()),
            part_revision: op.and_then(|o| o.op.part_revision.clone()),
            operator: m.operator.clone(),
            shift: slot.shift.clone(),
        }
    }

    fn open(&mut self, m: &mut MachineCtx, t: Timestamp) {
        let slot = self.settings.calendar.slot(t);
        let (category, attribution, facts) = self.decide(m, &slot, f64::INFINITY);
        let context = self.context(m, &slot);
        m.open = Some(Segment {
            facts,
            start: t,
            state: MachineState {
                program: m.program.clone(),
                part_count: m.part_count,
                ..m.state.clone()
            },
            context,
            category,
            attribution,
            provisional: m.op.as_ref().is_some_and(|o| o.provisional),
            slot_until: slot.until,
            planned: slot.planned,
        });
        self.publish(m, t);
    }

    /// The operator's reason applies to a span unless the calendar planned it.
    fn overridable(a: &Attribution) -> bool {
        a.source != CategorySource::Planner
    }

    /// Whether reason `r` covers a span the rules gave `category` with `a`.
    fn covers(r: &Override, category: &TimeCategory, a: &Attribution) -> bool {
        Self::overridable(a) && (category == &r.anchor || a.confidence < REASON_OVERRIDES_BELOW)
    }

    fn close(&mut self, m: &mut MachineCtx, end: Timestamp, stop_goes_on: bool) {
        let Some(o) = m.open.take() else {
            return;
        };
        if end <= o.start {
            return;
        }
        let slot = Slot {
            shift: o.context.shift.clone(),
            planned: o.planned.clone(),
            until: o.slot_until,
        };
        let stopped = o.state.shop_state() != ShopState::Run;
        // A stop cut by a shift boundary, a sign-out or a hold goes on: its length is not
        // known yet, and it is no micro-stop.
        let stop_seconds = match (stopped, m.stop_start) {
            (true, _) if stop_goes_on => f64::INFINITY,
            (true, Some(s)) => end.micros_since(s) as f64 / 1e6,
            _ => 0.0,
        };
        // Decide again on the facts of the span, now that its stop's length is known.
        let mut facts = o.facts;
        if let Some(f) = facts.get_mut(super::rules::fact("stop_seconds")) {
            *f = Value::Float(stop_seconds);
        }
        if let Some(f) = facts.get_mut(super::rules::fact("span_seconds")) {
            *f = Value::Float(end.micros_since(o.start) as f64 / 1e6);
        }
        let (rule, rule_attribution) = self.decide_on(&facts, &slot);
        let (mut category, mut attribution) = (rule.clone(), rule_attribution.clone());
        if let Some(r) = m.reason.as_ref().filter(|_| stopped) {
            if Self::covers(r, &rule, &rule_attribution) {
                category = TimeCategory::Loss(r.category.clone());
                attribution = operator_attribution(r);
            } else if Self::overridable(&rule_attribution) {
                // The situation changed (a fault, setup): the reason was for what went before.
                m.reason = None;
            }
        }
        let interval = StateInterval {
            machine: self.id.clone(),
            start: o.start,
            end,
            shop_state: o.state.shop_state(),
            state: o.state,
            category: Some(category),
            context: o.context,
            attribution: Some(attribution),
            provisional: o.provisional,
            revision: None,
        };
        if stopped {
            m.keep_stop_span(&interval, rule, rule_attribution);
        }
        let same_op = m.op.as_ref().is_some_and(|op| {
            interval.context.job.as_ref() == Some(&op.op.job)
                && interval.context.operation.as_ref() == Some(&op.op.operation)
        });
        if same_op {
            push_op_segment(&mut m.op_segments, &interval);
        }
        self.out.push(RecordKind::Interval(Box::new(interval)));
    }

    /// Writes the live context when it changed.
    fn publish(&mut self, m: &mut MachineCtx, t: Timestamp) {
        let Some(o) = &m.open else {
            return;
        };
        let decided = (o.category.clone(), o.attribution.clone());
        self.publish_decided(m, t, decided);
    }

    /// Writes the live context with the open span decided on how long it has lasted by `now`.
    fn publish_at(&mut self, m: &mut MachineCtx, now: Timestamp) {
        let Some(o) = &m.open else {
            return;
        };
        let mut facts = o.facts.clone();
        if let Some(f) = facts.get_mut(super::rules::fact("span_seconds")) {
            *f = Value::Float(now.micros_since(o.start) as f64 / 1e6);
        }
        let slot = Slot {
            shift: o.context.shift.clone(),
            planned: o.planned.clone(),
            until: o.slot_until,
        };
        let decided = self.decide_on(&facts, &slot);
        self.publish_decided(m, now, decided);
    }

    fn publish_decided(
        &mut self,
        m: &mut MachineCtx,
        t: Timestamp,
        (rule_category, rule_attribution): (TimeCategory, Attribution),
    ) {
        let Some(o) = &m.open else {
            return;
        };
        let (category, attribution) = match (&m.reason, o.state.shop_state() != ShopState::Run) {
            (Some(r), true) if Self::covers(r, &rule_category, &rule_attribution) => (
                TimeCategory::Loss(r.category.clone()),
                operator_attribution(r),
            ),
            _ => (rule_category, rule_attribution),
        };
        let rec = ContextRecord {
            machine: self.id.clone(),
            at: t,
            through: self.seq,
            context: o.context.clone(),
            category,
            attribution,
            since: o.start,
            provisional: o.provisional,
            candidates: m
                .op
                .as_ref()
                .filter(|o| o.provisional)
                .map(|o| o.candidates.clone())
                .unwrap_or_default(),
            feedback: self.feedback(m, t),
        };
        let changed = m.last_context.as_ref().is_none_or(|l| {
            l.context != rec.context
                || l.category != rec.category
                || l.attribution != rec.attribution
                || l.since != rec.since
                || l.provisional != rec.provisional
                || l.candidates != rec.candidates
                || l.feedback != rec.feedback
        });
        if changed {
            m.last_context = Some(rec.clone());
            self.out.push(RecordKind::Context(Box::new(rec)));
        }
    }

    fn feedback(&self, m: &MachineCtx, t: Timestamp) -> Option<ScheduleFeedback> {
        let op = m.op.as_ref()?;
        let cycle = median(&m.cycle_times);
        let quantity = op.op.quantity;
        let remaining = quantity.map(|q| q.saturating_sub(op.parts.good()));
        let per_part = cycle.map(|c| c / f64::from(self.settings.parts_per_cycle.max(1)));
        let estimated_completion = match (remaining, per_part) {
            (Some(r), Some(c)) => Some(Timestamp::from_micros(
                t.as_micros()
                    .saturating_add((r as f64 * c * 1e6).round() as i64),
            )),
            _ => None,
        };
        let at_risk = match (estimated_completion, op.op.due) {
            (Some(e), Some(d)) => e > d,
            (None, Some(d)) => t > d && remaining.is_some_and(|r| r > 0),
            _ => false,
        };
        Some(ScheduleFeedback {
            cycle_seconds: cycle.map(|c| (c * 10.0).round() / 10.0),
            parts: op.parts,
            quantity,
            remaining,
            estimated_completion,
            due: op.op.due,
            at_risk,
        })
    }

    fn op_record(&mut self, m: &MachineCtx, t: Timestamp, op: &OpState, event: OperationEvent) {
        self.out
            .push(RecordKind::Operation(Box::new(OperationRecord {
                machine: self.id.clone(),
                at: t,
                job: op.op.job.clone(),
                operation: op.op.operation.clone(),
                event,
                feedback: self.feedback(m, t),
            })));
    }

    fn cycle_done(&mut self, m: &mut MachineCtx, t: Timestamp, steps: u64) {
        m.cycles = m.cycles.saturating_add(steps as u32);
        let proving = m.single_block
            || m.optional_stop
            || m.feed_override.is_some_and(|f| f < 100.0)
            || m.state.functional_mode == Some(FunctionalMode::ProcessDevelopment);
        if !proving {
            if m.proven || m.found {
                if let Some(last) = m.last_part_at {
                    let secs = t.micros_since(last) as f64 / 1e6 / steps as f64;
                    if secs > 0.0 {
                        m.cycle_times.push_back(secs);
                        while m.cycle_times.len() > CYCLE_WINDOW {
                            m.cycle_times.pop_front();
                        }
                    }
                }
            }
            m.proven = true;
        }
        m.last_part_at = Some(t);
        let ppc = u64::from(self.settings.parts_per_cycle.max(1));
        let Some(mut op) = m.op.take() else {
            return;
        };
        op.parts.made += steps * ppc;
        let done = op.op.quantity.is_some_and(|q| op.parts.good() >= q);
        if done && !op.completed {
            op.completed = true;
            if let Some(s) = self
                .ops
                .get_mut(&(op.op.job.clone(), op.op.operation.clone()))
            {
                s.completed = true;
            }
            m.op = Some(op.clone());
            self.op_record(m, t, &op, OperationEvent::Completed);
        } else {
            m.op = Some(op);
        }
        self.publish(m, t);
    }

    fn program(&mut self, m: &mut MachineCtx, t: Timestamp, p: String) {
        if m.program.as_deref().is_some_and(|q| same_program(q, &p)) {
            return;
        }
        let first = m.program.is_none();
        m.program = Some(p.clone());
        m.found = first;
        m.resumed = match m.part_count {
            Some(c) if first => Some(c > 0),
            _ => None,
        };
        m.cycles = 0;
        m.proven = false;
        m.cycle_times.clear();
        m.last_part_at = None;
        // A second program of the running operation (a two-program job) keeps it.
        if m.op
            .as_ref()
            .is_some_and(|o| !o.completed && o.op.programs.iter().any(|q| same_program(q, &p)))
        {
            return;
        }
        self.leave_op(m, t);
        self.match_program(m, t, &p, if first { "resumed" } else { "program" });
    }

    /// The operation in hand ends: paused if its quantity is not made.
    fn leave_op(&mut self, m: &mut MachineCtx, t: Timestamp) {
        if let Some(op) = m.op.take() {
            if !op.completed && !op.paused {
                self.op_record(m, t, &op, OperationEvent::Paused);
            }
        }
        m.op_segments.clear();
    }

    fn match_program(&mut self, m: &mut MachineCtx, t: Timestamp, p: &str, by: &str) {
        let candidates: Vec<DispatchedOperation> = m
            .dispatch
            .iter()
            .filter(|o| o.programs.iter().any(|q| same_program(q, p)))
            .filter(|o| {
                !self
                    .ops
                    .get(&(o.job.clone(), o.operation.clone()))
                    .is_some_and(|s| s.completed)
            })
            .cloned()
            .collect();
        let Some(first) = candidates.first().cloned() else {
            return;
        };
        let refs: Vec<OperationRef> = candidates
            .iter()
            .map(|o| OperationRef {
                job: o.job.clone(),
                operation: o.operation.clone(),
            })
            .collect();
        self.start_op(m, t, first, refs, by);
    }

    fn start_op(
        &mut self,
        m: &mut MachineCtx,
        t: Timestamp,
        op: DispatchedOperation,
        candidates: Vec<OperationRef>,
        by: &str,
    ) {
        let key = (op.job.clone(), op.operation.clone());
        let status = self.ops.entry(key).or_default();
        let resumed = status.started;
        status.started = true;
        let provisional = candidates.len() > 1;
        let made = match m.part_count {
            Some(c) if by == "resumed" => {
                (c.max(0) * i64::from(self.settings.parts_per_cycle.max(1))) as u64
            }
            _ => 0,
        };
        let state = OpState {
            op,
            started: t,
            provisional,
            candidates: if provisional { candidates } else { Vec::new() },
            parts: PartCounts {
                made,
                ..PartCounts::default()
            },
            completed: false,
            paused: false,
        };
        m.op_segments.clear();
        let event = if resumed && by != "confirmation" {
            OperationEvent::Resumed
        } else {
            OperationEvent::Started { by: by.to_string() }
        };
        self.op_record(m, t, &state, event);
        if provisional {
            let c = state.candidates.clone();
            self.op_record(m, t, &state, OperationEvent::Ambiguous { candidates: c });
        }
        m.op = Some(state);
    }

    fn confirm(
        &mut self,
        m: &mut MachineCtx,
        t: Timestamp,
        job: &str,
        operation: &str,
        by: Option<String>,
    ) {
        // The span in hand is written first, so that it is re-attributed with the rest.
        self.close(m, t, true);
        let same =
            m.op.as_ref()
                .is_some_and(|o| o.op.job == job && o.op.operation == operation);
        let why;
        if same {
            if let Some(op) = &mut m.op {
                op.provisional = false;
                op.candidates.clear();
            }
            why = "operation confirmed";
        } else {
            let op = m
                .dispatch
                .iter()
                .find(|o| o.job == job && o.operation == operation)
                .cloned()
                .unwrap_or_else(|| DispatchedOperation {
                    job: job.to_string(),
                    operation: operation.to_string(),
                    programs: m.program.iter().cloned().collect(),
                    ..DispatchedOperation::default()
                });
            let since = m.op.as_ref().map(|o| o.started);
            let segments = std::mem::take(&mut m.op_segments);
            let parts = m.op.as_ref().map(|o| o.parts).unwrap_or_default();
            if let Some(old) = m.op.take() {
                self.ops
                    .entry((old.op.job.clone(), old.op.operation.clone()))
                    .or_default()
                    .started = false;
            }
            self.start_op(m, since.unwrap_or(t), op, Vec::new(), "confirmation");
            if let Some(o) = &mut m.op {
                o.parts = parts;
            }
            m.op_segments = segments;
            why = "operation corrected";
        }
        if let Some(op) = m.op.clone() {
            self.op_record(m, t, &op, OperationEvent::Confirmed { by: by.clone() });
        }
        // The time already written under the provisional attribution is written again.
        let (job_ctx, part_number, part_revision) = match &m.op {
            Some(o) => (
                o.op.clone(),
                o.op.part_number.clone(),
                o.op.part_revision.clone(),
            ),
            None => return,
        };
        let mut last_context: Option<Arc<JobContext>> = None;
        for seg in m.op_segments.iter_mut() {
            let unchanged = !seg.provisional
                && seg.context.job.as_deref() == Some(job_ctx.job.as_str())
                && seg.context.operation.as_deref() == Some(job_ctx.operation.as_str());
            if unchanged {
                continue;
            }
            let mut next = seg.interval(self.id);
            next.context.job = Some(job_ctx.job.clone());
            next.context.operation = Some(job_ctx.operation.clone());
            next.context.part_number.clone_from(&part_number);
            next.context.part_revision.clone_from(&part_revision);
            next.provisional = false;
            let n = seg.revision.map_or(1, |n| n + 1);
            next.revision = Some(Revision {
                n,
                why: why.to_string(),
                previous_category: seg.decided.category.clone(),
                previous_source: seg.decided.attribution.as_ref().map(|a| a.source),
                previous_job: seg.context.job.clone(),
                previous_operation: seg.context.operation.clone(),
                at: t,
                by: by.clone(),
            });
            seg.context = match last_context.take() {
                Some(c) if *c == next.context => c,
                _ => Arc::new(next.context.clone()),
            };
            last_context = Some(Arc::clone(&seg.context));
            seg.provisional = false;
            seg.revision = Some(n);
            self.out.push(RecordKind::Interval(Box::new(next)));
        }
    }

    fn reason(
        &mut self,
        m: &mut MachineCtx,
        t: Timestamp,
        category: LossCategory,
        by: Option<String>,
        record: u64,
    ) {
        // The reason is for the span in hand if the machine is stopped, else for the last stop.
        let stopped_now = m
            .open
            .as_ref()
            .filter(|o| o.state.shop_state() != ShopState::Run);
        let anchor = match (stopped_now, m.stop_spans.last()) {
            (Some(o), _) => o.category.clone(),
            (None, Some(s)) => s.rule.category.clone(),
            (None, None) => TimeCategory::Loss(LossCategory::UNEXPLAINED),
        };
        let o = Override {
            category: category.clone(),
            by: by.clone(),
            record,
            at: t,
            anchor,
        };
        let attribution = operator_attribution(&o);
        // Spans of this stop already written are written again with the reason, back to the
        // first one a confident rule explained otherwise.
        let mut from = m.stop_spans.len();
        if stopped_now.is_none_or(|s| Self::covers(&o, &s.category, &s.attribution)) {
            while from > 0 {
                let s = &m.stop_spans[from - 1];
                if !Self::covers(&o, &s.rule.category, &s.rule.attribution) {
                    break;
                }
                from -= 1;
            }
        }
        m.reason = Some(o);
        let target = TimeCategory::Loss(category.clone());
        let decided = Arc::new(Decided {
            category: Some(target.clone()),
            attribution: Some(attribution.clone()),
        });
        for span in m.stop_spans[from..].iter_mut().map(|s| &mut s.kept) {
            if span.decided.category.as_ref() == Some(&target) {
                continue;
            }
            let n = span.revision.map_or(1, |n| n + 1);
            let mut next = span.interval(self.id);
            next.category = decided.category.clone();
            next.attribution = decided.attribution.clone();
            next.revision = Some(Revision {
                n,
                why: "operator reason".into(),
                previous_category: span.decided.category.clone(),
                previous_source: span.decided.attribution.as_ref().map(|a| a.source),
                previous_job: None,
                previous_operation: None,
                at: t,
                by: by.clone(),
            });
            self.out.push(RecordKind::Interval(Box::new(next)));
            span.decided = Arc::clone(&decided);
            span.revision = Some(n);
        }
        // While the machine is stopped the reason holds for the open span too (applied when
        // it closes, and shown live now).
        self.publish(m, t);
    }
}

fn operator_attribution(r: &Override) -> Attribution {
    Attribution {
        source: CategorySource::Operator,
        rule: None,
        confidence: 1.0,
        by: r.by.clone(),
        record: Some(r.record),
    }
}

/// Keeps an interval of the running operation, the oldest going beyond [`MAX_OP_SEGMENTS`].
fn push_op_segment(v: &mut VecDeque<OpSegment>, i: &StateInterval) {
    let kept = OpSegment::keep(v.iter().rev().take(SHARE_WITHIN), i);
    if v.len() >= MAX_OP_SEGMENTS {
        v.pop_front();
    } else if v.capacity() < MAX_OP_SEGMENTS {
        // Once, at the first: `clear` keeps the room for the next operations.
        v.reserve_exact(MAX_OP_SEGMENTS - v.len());
    }
    v.push_back(kept);
}

#[cfg(test)]
mod op_segment_tests {
    use super::*;

    fn interval(start: i64, execution: Execution, category: LossCategory) -> StateInterval {
        let state = MachineState {
            execution: Some(execution),
            program: Some("O6000".into()),
            ..MachineState::default()
        };
        StateInterval {
            machine: MachineId::new("m1").unwrap(),
            start: Timestamp::from_micros(start),
            end: Timestamp::from_micros(start + 1),
            shop_state: state.shop_state(),
            state,
            category: Some(TimeCategory::Loss(category)),
            context: JobContext {
                job: Some("24181".into()),
                operation: Some("20".into()),
                ..JobContext::default()
            },
            attribution: None,
            provisional: true,
            revision: None,
        }
    }

    #[test]
    fn kept_intervals_share_equal_states_decisions_and_contexts_and_give_them_back_whole() {
        let mut v = VecDeque::new();
        let written: Vec<StateInterval> = (0..6)
            .map(|k| {
                let (e, c) = if k % 2 == 0 {
                    (Execution::Ready, LossCategory::NO_OPERATOR)
                } else {
                    (Execution::Interrupted, LossCategory::SETUP)
                };
                interval(k, e, c)
            })
            .collect();
        for i in &written {
            push_op_segment(&mut v, i);
        }
        assert!(Arc::ptr_eq(&v[0].state, &v[2].state));
        assert!(Arc::ptr_eq(&v[1].decided, &v[5].decided));
        assert!(!Arc::ptr_eq(&v[0].state, &v[1].state));
        assert!(v.iter().all(|s| Arc::ptr_eq(&s.context, &v[0].context)));
        let machine = MachineId::new("m1").unwrap();
        let back: Vec<StateInterval> = v.iter().map(|s| s.interval(&machine)).collect();
        assert_eq!(back, written);
    }

    #[test]
    fn a_machines_ring_is_allocated_once_at_its_bound_and_kept_across_operations() {
        let mut v = VecDeque::new();
        push_op_segment(&mut v, &interval(0, Execution::Active, LossCategory::SETUP));
        assert_eq!(v.capacity(), MAX_OP_SEGMENTS);
        let room = v.as_slices().0.as_ptr();
        for k in 1..(2 * MAX_OP_SEGMENTS as i64) {
            push_op_segment(&mut v, &interval(k, Execution::Active, LossCategory::SETUP));
        }
        assert_eq!(v.len(), MAX_OP_SEGMENTS);
        assert_eq!(
            v.front().map(|s| s.start),
            Some(Timestamp::from_micros(MAX_OP_SEGMENTS as i64))
        );
        v.clear();
        push_op_segment(&mut v, &interval(0, Execution::Active, LossCategory::SETUP));
        assert_eq!(v.capacity(), MAX_OP_SEGMENTS);
        assert!(
            std::ptr::eq(v.as_slices().0.as_ptr(), room),
            "the ring was allocated again"
        );
    }
}
