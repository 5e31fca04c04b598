//! [`MachineSim`]: one simulated machine, a pure deterministic state machine (no I/O, no
//! clock). See the [module docs](super) for what it does and how truth is categorized.
//!
//! Internally it generates its future one *unit* at a time (a cycle, a setup chunk, a wait):
//! each unit appends its signal changes and truth interval to queues, and [`MachineSim::advance`]
//! releases what lies at or before the requested time. Decisions are taken only at unit
//! boundaries, from the machine's own random stream, so the output does not depend on how the
//! caller chops time.

use std::collections::VecDeque;

use crate::model::{
    DispatchedOperation, JobContext, LossCategory, MachineId, TimeCategory, Timestamp, Value,
    signals,
};

use super::rng::Rng;
use super::{ModelSpec, ProgramStyle, model_of};

const SEC: i64 = 1_000_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// One signal change of a simulated machine.
#[derive(Clone, Debug, PartialEq)]
pub struct SimEvent {
    pub at: Timestamp,
    /// A canonical signal id ([`crate::model::signals`]).
    pub signal: &'static str,
    pub value: Value,
}

/// A closed span `[start, end)` of a machine's time and what it really was.
#[derive(Clone, Debug, PartialEq)]
pub struct TruthInterval {
    pub machine: MachineId,
    pub start: Timestamp,
    pub end: Timestamp,
    pub category: TimeCategory,
    /// Job, operation, part number and shift (`"1"`/`"2"`, none off shift).
    pub context: JobContext,
    pub program: Option<String>,
    /// What was going on, in a few words (`"prove-out"`).
    pub activity: &'static str,
}

/// What the people and systems around a machine do, as the bridge hears of them: the ERP's
/// dispatch list, the QMS's holds and inspections, the operator's sign-in, reasons and
/// confirmations. The demo sends them through the bridge's REST API.
#[derive(Clone, Debug, PartialEq)]
pub struct FloorEvent {
    pub at: Timestamp,
    pub what: Floor,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Floor {
    /// The ERP's dispatch list for this machine (the job in hand first, then the queue).
    Dispatch(Vec<DispatchedOperation>),
    SignIn(String),
    SignOut,
    /// The operator says why the machine stopped.
    Reason(LossCategory),
    /// The operator confirms which operation runs (its program matched two).
    Confirm {
        job: String,
        operation: String,
    },
    InspectionRequested {
        job: String,
        operation: String,
    },
    InspectionDone {
        accepted: bool,
    },
    HoldOpened {
        hold: String,
        job: String,
    },
    HoldReleased {
        hold: String,
    },
}

/// What [`MachineSim::advance`] released: signal changes in time order, the truth intervals
/// that closed, and what the floor did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimOutput {
    pub events: Vec<SimEvent>,
    pub truth: Vec<TruthInterval>,
    pub floor: Vec<FloorEvent>,
}

#[derive(Clone, Debug)]
struct Job {
    job: String,
    operation: String,
    part_number: String,
    program: String,
    quantity: i64,
    made: i64,
    cycle: i64,
    load: i64,
    tools: Vec<(i64, f64, f64)>, // (tool number, rpm, load %)
    setup: i64,
    proveout: i64,
    rejected_once: bool,
    due: i64,
    /// A repeat order the ERP lists with the same program (the bridge cannot tell them apart
    /// from the program alone): its job number, and whether it is listed first.
    decoy: Option<(String, bool)>,
}

impl Job {
    /// The job as the ERP lists it, under job number `number`.
    fn operation_for(&self, number: &str) -> DispatchedOperation {
        let (part, rev) = match self.part_number.rsplit_once('-') {
            Some((p, r)) if r.len() == 1 => (p.to_string(), Some(r.to_string())),
            _ => (self.part_number.clone(), None),
        };
        DispatchedOperation {
            job: number.to_string(),
            operation: self.operation.clone(),
            part_number: Some(part),
            part_revision: rev,
            programs: vec![self.program.clone()],
            quantity: Some(self.quantity.max(1) as u64),
            setup_seconds: Some((self.setup as f64 / 1e6).round()),
            cycle_seconds: Some(((self.cycle + self.load) as f64 / 1e6).round()),
            due: Some(Timestamp::from_micros(self.due)),
            customer_order: Some(format!("SO-{number}")),
            after: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Between { waited: bool },
    ProgramLoad,
    Setup { left: i64 },
    Proveout { left: i64 },
    Inspection { left: i64 },
    Hold { left: i64, hold: u32 },
    Production,
    Teardown { left: i64 },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Slot {
    Work { shift: u8, until: i64 },
    Coffee { shift: u8, until: i64 },
    Lunch { shift: u8, until: i64 },
    Off { until: i64 },
}

#[derive(Clone, Debug)]
struct OpenTruth {
    start: i64,
    end: i64,
    category: TimeCategory,
    activity: &'static str,
    context: JobContext,
    program: Option<String>,
}

const N: usize = signals::ALL.len();

fn sig(name: &str) -> usize {
    signals::ALL.iter().position(|s| *s == name).unwrap_or(0)
}

fn loss(c: LossCategory) -> TimeCategory {
    TimeCategory::Loss(c)
}

fn ms(secs: f64) -> i64 {
    (secs * 1000.0).round() as i64 * 1000
}

const ALARMS_FANUC: &[&str] = &[
    "SV0401 SERVO V-READY OFF",
    "SP1241 SPINDLE OVERLOAD",
    "OT0500 +OVERTRAVEL (SOFT 1) X",
    "EX1005 COOLANT PRESSURE LOW",
    "EX1012 TOOL BREAKAGE DETECTED",
];
const ALARMS_HAAS: &[&str] = &[
    "108 SERVO OVERLOAD",
    "1012 SPINDLE OVERLOAD",
    "9110 LOW LUBE",
    "174 TOOL LOAD EXCEEDED",
    "142 SPINDLE DRIVE FAULT",
];
const ALARMS_OKUMA: &[&str] = &[
    "2302 SPINDLE OVERLOAD",
    "1719 COOLANT LEVEL LOW",
    "2231 TOOL BREAKAGE",
    "1401 X SERVO AMP ERROR",
];
const PART_PREFIXES: &[&str] = &["HX", "BR", "MF", "KT", "SP", "VL", "AX", "PL"];

/// One simulated machine. See the [module docs](super).
#[derive(Clone, Debug)]
pub struct MachineSim {
    id: MachineId,
    spec: &'static ModelSpec,
    rng: Rng,
    two_shifts: bool,
    off_after_shift: bool,
    off_at_lunch: bool,
    /// Time generated up to (exclusive); always after `released`.
    cursor: i64,
    released: i64,
    generated: [Value; N],
    current: [Value; N],
    pending: VecDeque<SimEvent>,
    closed: VecDeque<TruthInterval>,
    open: Option<OpenTruth>,
    job: Option<Job>,
    phase: Phase,
    powered: bool,
    last_shift: Option<i64>,
    /// Shop time = UTC + this (µs).
    shop_offset: i64,
    index: usize,
    /// Jobs the ERP has queued for this machine, generated from their own random stream.
    queue: VecDeque<Job>,
    job_rng: Rng,
    floor: VecDeque<FloorEvent>,
    holds: u32,
}

/// Jobs the ERP keeps queued per machine.
const QUEUE: usize = 3;
const OPERATORS: &[&str] = &[
    "ana", "ben", "carla", "dev", "emma", "farid", "gus", "hana", "ivan", "jo", "kai", "lena",
];

impl MachineSim {
    /// Machine `index` of a shop seeded `shop_seed`, starting at `start` (part-way into a job).
    pub fn new(index: usize, id: MachineId, shop_seed: u64, start: Timestamp) -> Self {
        Self::new_in_shop(index, id, shop_seed, start, 0)
    }

    /// Like [`MachineSim::new`], with the shop's calendar `shop_offset` µs ahead of UTC (shop
    /// time = UTC + offset): shifts, breaks and weekends follow shop time.
    pub fn new_in_shop(
        index: usize,
        id: MachineId,
        shop_seed: u64,
        start: Timestamp,
        shop_offset: i64,
    ) -> Self {
        let t = start.as_micros();
        let spec = model_of(index);
        let mut sim = Self {
            id,
            spec,
            rng: Rng::for_stream(shop_seed, index as u64),
            two_shifts: Self::works_two_shifts(index),
            off_after_shift: index % 4 != 3,
            off_at_lunch: index % 4 == 0,
            cursor: t,
            released: t,
            generated: std::array::from_fn(|_| Value::Unavailable),
            current: std::array::from_fn(|_| Value::Unavailable),
            pending: VecDeque::new(),
            closed: VecDeque::new(),
            open: None,
            job: None,
            phase: Phase::Between { waited: true },
            powered: true,
            last_shift: None,
            shop_offset,
            index,
            queue: VecDeque::new(),
            job_rng: Rng::for_stream(shop_seed ^ 0x6a6f_6273, index as u64),
            floor: VecDeque::new(),
            holds: 0,
        };
        sim.initial_state(t);
        sim
    }

    /// Whether machine `index` of a shop works two shifts (else one).
    pub fn works_two_shifts(index: usize) -> bool {
        index % 3 != 2
    }

    pub fn id(&self) -> &MachineId {
        &self.id
    }

    /// The time the machine has been advanced to.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.released)
    }

    /// Every canonical signal's value as of [`MachineSim::now`], in [`signals::ALL`] order: the
    /// snapshot a protocol face serves on (re)connect.
    pub fn current_signals(&self) -> Vec<(&'static str, Value)> {
        signals::ALL
            .iter()
            .copied()
            .zip(self.current.iter().cloned())
            .collect()
    }

    /// Runs the machine up to `until` (inclusive) and returns the signal changes in
    /// `(now, until]` in time order, plus the truth intervals that ended at or before `until`.
    /// A `until` in the past returns nothing.
    pub fn advance(&mut self, until: Timestamp) -> SimOutput {
        let u = until.as_micros();
        let mut out = SimOutput::default();
        if u < self.released {
            return out;
        }
        while self.cursor <= u {
            let before = self.cursor;
            self.step();
            if self.cursor <= before {
                // Never happens by construction; keep time moving and the truth tiled anyway.
                self.wait(
                    before,
                    before + SEC,
                    loss(LossCategory::UNEXPLAINED),
                    "idle",
                );
            }
        }
        while self.pending.front().is_some_and(|e| e.at.as_micros() <= u) {
            if let Some(e) = self.pending.pop_front() {
                self.current[sig(e.signal)] = e.value.clone();
                out.events.push(e);
            }
        }
        while self.closed.front().is_some_and(|i| i.end.as_micros() <= u) {
            if let Some(i) = self.closed.pop_front() {
                out.truth.push(i);
            }
        }
        while self.floor.front().is_some_and(|e| e.at.as_micros() <= u) {
            if let Some(e) = self.floor.pop_front() {
                out.floor.push(e);
            }
        }
        self.released = u;
        out
    }

    /// Advances to `at` and closes the truth interval open at `at` there (a clean shutdown):
    /// after this, the truth released covers `[start, at)` exactly.
    pub fn finish(mut self, at: Timestamp) -> SimOutput {
        let mut out = self.advance(at);
        let last = match self.closed.pop_front() {
            Some(i) => Some(i),
            None => self.open.take().map(|o| self.to_interval(o)),
        };
        if let Some(mut i) = last {
            if i.start < at {
                i.end = at;
                out.truth.push(i);
            }
        }
        out
    }

    // ---- generation ------------------------------------------------------------------------

    /// Queues a floor event, kept in time order (a unit may plan one past later units' start).
    fn floor(&mut self, t: i64, what: Floor) {
        let i = self.floor.partition_point(|e| e.at.as_micros() <= t);
        self.floor.insert(
            i,
            FloorEvent {
                at: Timestamp::from_micros(t),
                what,
            },
        );
    }

    /// The ERP's list: the job in hand (unless it is finished), then the queue.
    fn dispatch(&mut self, t: i64, with_current: bool) {
        let mut ops = Vec::new();
        let current = self.job.clone().filter(|_| with_current);
        for j in current.iter().chain(self.queue.iter()) {
            let real = j.operation_for(&j.job);
            match &j.decoy {
                Some((decoy, first)) => {
                    let d = DispatchedOperation {
                        quantity: Some((j.quantity as u64 / 2).max(1)),
                        ..j.operation_for(decoy)
                    };
                    if *first {
                        ops.extend([d, real]);
                    } else {
                        ops.extend([real, d]);
                    }
                }
                None => ops.push(real),
            }
        }
        self.floor(t, Floor::Dispatch(ops));
    }

    fn hold_id(&self, n: u32) -> String {
        format!("QH-{}-{n}", self.id)
    }

    /// The operator says why the machine waits over `[t, end)`: most often while it waits,
    /// for someone who was away when they come back; sometimes not at all.
    fn explain(&mut self, t: i64, end: i64, category: LossCategory) {
        if category == LossCategory::NO_OPERATOR {
            if self.rng.chance(0.85) {
                let at = end + ms(self.rng.uniform(5.0, 60.0));
                self.floor(at, Floor::Reason(category));
            }
        } else if self.rng.chance(0.9) {
            let at = (t + ms(self.rng.uniform(60.0, 240.0)))
                .min(end - SEC)
                .max(t);
            self.floor(at, Floor::Reason(category));
        }
    }

    /// The next job from the ERP's queue (which is refilled).
    fn take_job(&mut self, t: i64) -> Job {
        while self.queue.len() <= QUEUE {
            let j = self.new_job(t);
            self.queue.push_back(j);
        }
        self.queue.pop_front().unwrap_or_else(|| self.new_job(t))
    }

    fn set(&mut self, t: i64, signal: &'static str, value: Value) {
        let k = sig(signal);
        if self.generated[k] != value {
            self.generated[k] = value.clone();
            self.pending.push_back(SimEvent {
                at: Timestamp::from_micros(t),
                signal,
                value,
            });
        }
    }

    fn text(&mut self, t: i64, signal: &'static str, s: &str) {
        self.set(t, signal, Value::text(s));
    }

    fn context(&self, t: i64) -> (JobContext, Option<String>) {
        let shift = match self.slot(t) {
            Slot::Work { shift, .. } | Slot::Coffee { shift, .. } | Slot::Lunch { shift, .. } => {
                Some(shift.to_string())
            }
            Slot::Off { .. } => None,
        };
        match &self.job {
            Some(j) => (
                JobContext {
                    job: Some(j.job.clone()),
                    operation: Some(j.operation.clone()),
                    part_number: Some(j.part_number.clone()),
                    shift,
                    ..JobContext::default()
                },
                Some(j.program.clone()),
            ),
            None => (
                JobContext {
                    shift,
                    ..JobContext::default()
                },
                None,
            ),
        }
    }

    fn to_interval(&self, o: OpenTruth) -> TruthInterval {
        TruthInterval {
            machine: self.id.clone(),
            start: Timestamp::from_micros(o.start),
            end: Timestamp::from_micros(o.end),
            category: o.category,
            context: o.context,
            program: o.program,
            activity: o.activity,
        }
    }

    /// Records `[start, end)` as `category`, merging with the open interval when it continues
    /// it unchanged. Moves the cursor to `end`.
    fn truth(&mut self, start: i64, end: i64, category: TimeCategory, activity: &'static str) {
        if end <= start {
            return;
        }
        let (context, program) = self.context(start);
        if let Some(o) = &mut self.open {
            if o.end == start
                && o.category == category
                && o.activity == activity
                && o.context == context
                && o.program == program
            {
                o.end = end;
                self.cursor = end;
                return;
            }
        }
        let new = OpenTruth {
            start,
            end,
            category,
            activity,
            context,
            program,
        };
        if let Some(o) = self.open.replace(new) {
            let i = self.to_interval(o);
            self.closed.push_back(i);
        }
        self.cursor = end;
    }

    /// An idle wait: spindle stopped, everything else as it is.
    fn wait(&mut self, t: i64, end: i64, category: TimeCategory, activity: &'static str) {
        self.spindle_stop(t);
        self.truth(t, end, category, activity);
    }

    fn spindle_stop(&mut self, t: i64) {
        self.set(t, signals::SPINDLE_SPEED, Value::Float(0.0));
        self.set(t, signals::SPINDLE_LOAD, Value::Float(0.0));
    }

    /// Cutting with spindle samples every 4–6 s over `[t, end)`.
    fn cut(&mut self, t: i64, end: i64, rpm: f64, load: f64) {
        let mut s = t;
        while s < end {
            let speed = (rpm * self.rng.normal(1.0, 0.004)).round();
            let l = (load * self.rng.normal(1.0, 0.08) * 10.0).round() / 10.0;
            self.set(s, signals::SPINDLE_SPEED, Value::Float(speed.max(0.0)));
            self.set(s, signals::SPINDLE_LOAD, Value::Float(l.clamp(0.0, 150.0)));
            s += ms(self.rng.uniform(4.0, 6.0));
        }
    }

    fn modes(&mut self, t: i64, controller: &str, functional: &str) {
        self.text(t, signals::CONTROLLER_MODE, controller);
        self.text(t, signals::FUNCTIONAL_MODE, functional);
    }

    /// Shop calendar: what time slot `t` is in, and when it ends.
    fn slot(&self, t: i64) -> Slot {
        let off = self.shop_offset;
        match self.slot_local(t.saturating_add(off)) {
            Slot::Work { shift, until } => Slot::Work {
                shift,
                until: until - off,
            },
            Slot::Coffee { shift, until } => Slot::Coffee {
                shift,
                until: until - off,
            },
            Slot::Lunch { shift, until } => Slot::Lunch {
                shift,
                until: until - off,
            },
            Slot::Off { until } => Slot::Off { until: until - off },
        }
    }

    /// [`MachineSim::slot`] in shop time.
    fn slot_local(&self, t: i64) -> Slot {
        let windows = self.windows();
        let day = t.div_euclid(DAY);
        let tod = t.rem_euclid(DAY);
        if is_workday(day) {
            for &(from, to, kind, shift) in &windows {
                if tod >= from && tod < to {
                    let until = day * DAY + to;
                    return match kind {
                        0 => Slot::Work { shift, until },
                        1 => Slot::Coffee { shift, until },
                        _ => Slot::Lunch { shift, until },
                    };
                }
            }
        }
        let first = windows.first().map(|w| w.0).unwrap_or(6 * HOUR);
        let mut d = if is_workday(day) && tod < first {
            day
        } else {
            day + 1
        };
        while !is_workday(d) {
            d += 1;
        }
        Slot::Off {
            until: d * DAY + first,
        }
    }

    /// `(from, to, kind (0 work, 1 coffee, 2 lunch), shift)` in time of day.
    fn windows(&self) -> Vec<(i64, i64, u8, u8)> {
        let h = |hh: i64, mm: i64| hh * HOUR + mm * MIN;
        let mut w = vec![
            (h(6, 0), h(9, 0), 0, 1),
            (h(9, 0), h(9, 15), 1, 1),
            (h(9, 15), h(11, 30), 0, 1),
            (h(11, 30), h(12, 0), 2, 1),
            (h(12, 0), h(14, 30), 0, 1),
        ];
        if self.two_shifts {
            w.extend([
                (h(14, 30), h(17, 30), 0, 2),
                (h(17, 30), h(17, 45), 1, 2),
                (h(17, 45), h(19, 30), 0, 2),
                (h(19, 30), h(20, 0), 2, 2),
                (h(20, 0), h(23, 0), 0, 2),
            ]);
        }
        w
    }

    fn new_job(&mut self, t: i64) -> Job {
        let r = &mut self.job_rng;
        let prefix = r.pick(PART_PREFIXES).copied().unwrap_or("HX");
        let pn = r.range(1000, 9899);
        let rev = (b'A' + r.range(0, 3) as u8) as char;
        let op = ["10", "20", "30"][r.range(0, 2) as usize];
        let program = match self.spec.programs {
            ProgramStyle::ONumber => format!("O{}", r.range(1000, 9999)),
            ProgramStyle::Okuma => format!("{prefix}-{pn}-{op}.MIN"),
            ProgramStyle::Heidenhain => format!("{pn}_OP{op}.H"),
        };
        let quantity = r.lognormal(40.0, 0.9, 4.0, 300.0).round() as i64;
        let cycle = ms(r.lognormal(240.0, 0.6, 60.0, 720.0));
        let tools = (0..r.range(2, 6))
            .map(|_| {
                let tool = r.range(1, 24) as i64;
                let rpm = (self.spec.max_rpm * r.uniform(0.15, 0.8)).round();
                (tool, rpm, r.uniform(15.0, 75.0))
            })
            .collect();
        Job {
            job: r.range(24000, 25999).to_string(),
            operation: op.to_string(),
            part_number: format!("{prefix}-{pn}-{rev}"),
            program,
            quantity,
            made: 0,
            cycle,
            load: ms(if self.spec.lathe {
                r.uniform(15.0, 40.0)
            } else {
                r.uniform(20.0, 60.0)
            }),
            tools,
            setup: ms(r.lognormal(70.0 * 60.0, 0.5, 20.0 * 60.0, 4.0 * 3600.0)),
            proveout: ms(r.lognormal(35.0 * 60.0, 0.5, 10.0 * 60.0, 2.0 * 3600.0)),
            rejected_once: false,
            // Due one to six working days out; some will be at risk.
            due: t + ms(r.uniform(1.0, 6.0) * 86_400.0),
            decoy: r
                .chance(0.05)
                .then(|| (r.range(26000, 26999).to_string(), r.chance(0.5))),
        }
    }

    fn initial_state(&mut self, t: i64) {
        let mut job = self.take_job(t);
        let roll = self.rng.f64();
        let (phase, functional, controller, execution) = if roll < 0.7 {
            job.made = self.rng.range(0, (job.quantity - 1).max(0) as u64) as i64;
            (
                Phase::Production,
                "PRODUCTION",
                "AUTOMATIC",
                "PROGRAM_COMPLETED",
            )
        } else if roll < 0.85 {
            let left = job.setup / 2;
            (Phase::Setup { left }, "SETUP", "MANUAL", "READY")
        } else {
            (Phase::ProgramLoad, "SETUP", "MANUAL", "READY")
        };
        let tool = job.tools.first().map(|x| x.0).unwrap_or(1);
        let powered = match self.slot(t) {
            Slot::Off { .. } => !self.off_after_shift,
            Slot::Lunch { .. } => !self.off_at_lunch,
            _ => true,
        };
        let init: [(&'static str, Value); N] = [
            (
                signals::AVAILABILITY,
                Value::text(if powered { "AVAILABLE" } else { "UNAVAILABLE" }),
            ),
            (signals::EXECUTION, Value::text(execution)),
            (signals::CONTROLLER_MODE, Value::text(controller)),
            (signals::FUNCTIONAL_MODE, Value::text(functional)),
            (signals::PROGRAM, Value::text(&job.program)),
            (signals::PART_COUNT, Value::Int(job.made)),
            (signals::SPINDLE_SPEED, Value::Float(0.0)),
            (signals::SPINDLE_LOAD, Value::Float(0.0)),
            (signals::FEED_OVERRIDE, Value::Int(100)),
            (signals::RAPID_OVERRIDE, Value::Int(100)),
            (signals::TOOL_NUMBER, Value::Int(tool)),
            (signals::SINGLE_BLOCK, Value::Bool(false)),
            (signals::OPTIONAL_STOP, Value::Bool(false)),
            (signals::ALARM, Value::text("")),
            (signals::DOOR, Value::text("CLOSED")),
            (signals::EMERGENCY_STOP, Value::text("ARMED")),
            (signals::BLOCK_LINE, Value::Int(0)),
        ];
        for (name, v) in init {
            let k = sig(name);
            self.generated[k] = v.clone();
            self.current[k] = v;
        }
        self.powered = powered;
        self.phase = phase;
        self.job = Some(job);
        self.dispatch(t, true);
        if let Slot::Work { shift, .. } = self.slot(t) {
            self.last_shift = Some(t.div_euclid(DAY) * 4 + i64::from(shift));
            self.floor(t, Floor::SignIn(self.operator(shift)));
        }
    }

    fn operator(&self, shift: u8) -> String {
        OPERATORS[(self.index * 2 + usize::from(shift)) % OPERATORS.len()].to_string()
    }

    /// Generates one unit from the cursor.
    fn step(&mut self) {
        let t = self.cursor;
        match self.slot(t) {
            Slot::Off { until } => {
                if self.last_shift.take().is_some() {
                    self.floor(t, Floor::SignOut);
                }
                let off = self.off_after_shift;
                self.planned_stop(t, until, off, "off shift");
            }
            Slot::Lunch { until, .. } => {
                let off = self.off_at_lunch;
                self.planned_stop(t, until, off, "lunch break");
            }
            Slot::Coffee { until, .. } => {
                self.power_on(t);
                self.wait(t, until, loss(LossCategory::NO_OPERATOR), "coffee break");
            }
            Slot::Work { shift, until } => {
                self.power_on(t);
                let shift_id = t.div_euclid(DAY) * 4 + i64::from(shift);
                if self.last_shift != Some(shift_id) {
                    self.last_shift = Some(shift_id);
                    self.floor(t, Floor::SignIn(self.operator(shift)));
                    if self.rng.chance(0.05) {
                        let d = ms(self.rng.lognormal(75.0 * 60.0, 0.4, 1800.0, 3.0 * 3600.0));
                        self.maintenance(t, (t + d).min(until));
                        return;
                    }
                }
                self.work(t, until);
            }
        }
    }

    fn planned_stop(&mut self, t: i64, until: i64, switch_off: bool, activity: &'static str) {
        if switch_off && self.powered {
            self.spindle_stop(t);
            self.text(t, signals::AVAILABILITY, "UNAVAILABLE");
            self.powered = false;
        }
        if !self.powered {
            self.truth(t, until, loss(LossCategory::PLANNED_DOWNTIME), activity);
        } else {
            self.wait(t, until, loss(LossCategory::PLANNED_DOWNTIME), activity);
        }
    }

    fn power_on(&mut self, t: i64) {
        if self.powered {
            return;
        }
        self.powered = true;
        self.text(t, signals::AVAILABILITY, "AVAILABLE");
        self.text(t, signals::EXECUTION, "READY");
        self.text(t, signals::EMERGENCY_STOP, "ARMED");
        self.text(t, signals::ALARM, "");
        self.spindle_stop(t);
    }

    fn maintenance(&mut self, t: i64, end: i64) {
        self.modes(t, "MANUAL", "MAINTENANCE");
        self.text(t, signals::EXECUTION, "READY");
        self.text(t, signals::DOOR, "OPEN");
        self.wait(
            t,
            end,
            loss(LossCategory::MAINTENANCE),
            "preventive maintenance",
        );
    }

    /// Chunked manual work (setup, teardown): returns the time used.
    fn manual_chunk(
        &mut self,
        t: i64,
        left: i64,
        until: i64,
        functional: &str,
        activity: &'static str,
    ) -> i64 {
        let chunk = ms(self.rng.uniform(300.0, 1200.0))
            .min(left)
            .min(until - t)
            .max(SEC);
        let controller = if self.rng.chance(0.5) {
            "MANUAL"
        } else {
            "MANUAL_DATA_INPUT"
        };
        self.modes(t, controller, functional);
        self.text(t, signals::EXECUTION, "READY");
        self.text(t, signals::DOOR, "OPEN");
        self.spindle_stop(t);
        if let Some(tool) = self.job.as_ref().and_then(|j| j.tools.first().map(|x| x.0)) {
            let tool = if self.rng.chance(0.5) {
                tool
            } else {
                self.rng.range(1, 24) as i64
            };
            self.set(t, signals::TOOL_NUMBER, Value::Int(tool));
        }
        // An MDI spindle burst (probing, indicating) somewhere in the chunk.
        if functional == "SETUP" && chunk > 2 * MIN && self.rng.chance(0.6) {
            let b0 = t + ms(self.rng.uniform(10.0, 60.0));
            let b1 = (b0 + ms(self.rng.uniform(10.0, 60.0))).min(t + chunk - SEC);
            if b1 > b0 {
                self.text(b0, signals::CONTROLLER_MODE, "MANUAL_DATA_INPUT");
                self.text(b0, signals::EXECUTION, "ACTIVE");
                let rpm = self.rng.range(300, 2000) as f64;
                self.cut(b0, b1, rpm, 4.0);
                self.text(b1, signals::EXECUTION, "READY");
                self.spindle_stop(b1);
            }
        }
        self.truth(t, t + chunk, loss(LossCategory::SETUP), activity);
        chunk
    }

    fn work(&mut self, t: i64, until: i64) {
        match self.phase {
            Phase::Between { waited } => {
                if !waited && self.rng.chance(0.25) {
                    let d = ms(self.rng.lognormal(30.0 * 60.0, 0.7, 300.0, 3.0 * 3600.0));
                    // Teardown is over: the machine waits, ready, for the next job's material.
                    self.text(t, signals::EXECUTION, "READY");
                    self.modes(t, "AUTOMATIC", "PRODUCTION");
                    let end = (t + d).min(until);
                    self.wait(t, end, loss(LossCategory::STARVED), "waiting for material");
                    self.explain(t, end, LossCategory::STARVED);
                    self.phase = Phase::Between { waited: true };
                } else {
                    let job = self.take_job(t);
                    self.job = Some(job);
                    self.dispatch(t, true);
                    self.phase = Phase::ProgramLoad;
                    self.work(t, until);
                }
            }
            Phase::ProgramLoad => {
                let d = ms(self.rng.uniform(60.0, 240.0)).min(until - t);
                let (program, setup, first_tool) = match &self.job {
                    Some(j) => (
                        j.program.clone(),
                        j.setup,
                        j.tools.first().map(|x| x.0).unwrap_or(1),
                    ),
                    None => return self.wait(t, until, loss(LossCategory::UNEXPLAINED), "idle"),
                };
                if let Some(j) = self.job.clone().filter(|j| j.decoy.is_some()) {
                    let after = ms(self.rng.uniform(120.0, 480.0));
                    self.floor(
                        t + after,
                        Floor::Confirm {
                            job: j.job,
                            operation: j.operation,
                        },
                    );
                }
                self.modes(t, "EDIT", "SETUP");
                self.text(t, signals::EXECUTION, "READY");
                self.text(t, signals::DOOR, "OPEN");
                self.spindle_stop(t);
                self.text(t, signals::PROGRAM, &program);
                self.set(t, signals::PART_COUNT, Value::Int(0));
                self.set(t, signals::BLOCK_LINE, Value::Int(0));
                self.set(t, signals::TOOL_NUMBER, Value::Int(first_tool));
                self.truth(t, t + d, loss(LossCategory::SETUP), "program load");
                self.phase = Phase::Setup { left: setup };
            }
            Phase::Setup { left } => {
                let used = self.manual_chunk(t, left, until, "SETUP", "setup");
                let left = left - used;
                self.phase = if left > 0 {
                    Phase::Setup { left }
                } else {
                    Phase::Proveout {
                        left: self.job.as_ref().map(|j| j.proveout).unwrap_or(20 * MIN),
                    }
                };
            }
            Phase::Proveout { left } => self.proveout(t, left),
            Phase::Inspection { left } => {
                let d = left.min(until - t);
                self.text(t, signals::EXECUTION, "PROGRAM_COMPLETED");
                self.text(t, signals::DOOR, "OPEN");
                self.wait(
                    t,
                    t + d,
                    loss(LossCategory::WAITING_INSPECTION),
                    "first-article inspection",
                );
                let left = left - d;
                self.phase = if left > 0 {
                    Phase::Inspection { left }
                } else {
                    let reject = match &mut self.job {
                        Some(j) if !j.rejected_once => {
                            j.rejected_once = true;
                            self.rng.chance(1.0 / 7.0)
                        }
                        _ => false,
                    };
                    self.floor(t + d, Floor::InspectionDone { accepted: !reject });
                    if reject {
                        Phase::Proveout {
                            left: ms(self.rng.uniform(600.0, 1800.0)),
                        }
                    } else {
                        Phase::Production
                    }
                };
            }
            Phase::Production => self.production(t, until),
            Phase::Hold { left, hold } => {
                // The QMS releases it when done, or by the end of the working period.
                let d = left.min(until - t);
                self.text(t, signals::EXECUTION, "READY");
                self.wait(t, t + d, loss(LossCategory::QUALITY_HOLD), "quality hold");
                self.floor(
                    t + d,
                    Floor::HoldReleased {
                        hold: self.hold_id(hold),
                    },
                );
                self.phase = Phase::Production;
            }
            Phase::Teardown { left } => {
                let used = self.manual_chunk(t, left, until, "TEARDOWN", "teardown");
                let left = left - used;
                if left > 0 {
                    self.phase = Phase::Teardown { left };
                } else {
                    self.job = None;
                    self.phase = Phase::Between { waited: false };
                }
            }
        }
    }

    /// One prove-out step: run some blocks in single block, then stop to measure.
    fn proveout(&mut self, t: i64, left: i64) {
        let Some(job) = self.job.clone() else {
            self.phase = Phase::Between { waited: false };
            return;
        };
        self.modes(t, "AUTOMATIC", "PROCESS_DEVELOPMENT");
        self.set(t, signals::SINGLE_BLOCK, Value::Bool(true));
        self.set(t, signals::OPTIONAL_STOP, Value::Bool(true));
        let fo = self.rng.range(2, 6) as i64 * 10;
        self.set(t, signals::FEED_OVERRIDE, Value::Int(fo));
        self.set(t, signals::RAPID_OVERRIDE, Value::Int(25));
        self.text(t, signals::DOOR, "CLOSED");
        self.text(t, signals::EXECUTION, "ACTIVE");
        let k = self.rng.range(0, job.tools.len().saturating_sub(1) as u64) as usize;
        let (tool, rpm, load) = job.tools.get(k).copied().unwrap_or((1, 1000.0, 20.0));
        self.set(t, signals::TOOL_NUMBER, Value::Int(tool));
        self.set(t, signals::BLOCK_LINE, Value::Int(100 * (k as i64 + 1)));
        let run = ms(self.rng.uniform(20.0, 180.0));
        self.cut(t, t + run, rpm, load * f64::from(fo as i32) / 100.0);
        let s = t + run;
        let finished = run >= left;
        if finished {
            self.text(s, signals::EXECUTION, "PROGRAM_COMPLETED");
            self.spindle_stop(s);
            let first_article = match &mut self.job {
                Some(j) if j.made == 0 => {
                    j.made = 1;
                    true
                }
                _ => false,
            };
            if first_article {
                self.set(s, signals::PART_COUNT, Value::Int(1));
            }
            self.truth(t, s, loss(LossCategory::PROGRAM_PROVEOUT), "prove-out");
            self.floor(
                s,
                Floor::InspectionRequested {
                    job: job.job.clone(),
                    operation: job.operation.clone(),
                },
            );
            self.phase = Phase::Inspection {
                left: ms(self.rng.lognormal(25.0 * 60.0, 0.5, 600.0, 2.0 * 3600.0)),
            };
            return;
        }
        let stop = ["OPTIONAL_STOP", "PROGRAM_STOPPED", "STOPPED"][self.rng.range(0, 2) as usize];
        self.text(s, signals::EXECUTION, stop);
        self.spindle_stop(s);
        self.text(s, signals::DOOR, "OPEN");
        let end = s + ms(self.rng.lognormal(90.0, 0.6, 20.0, 600.0));
        self.truth(t, end, loss(LossCategory::PROGRAM_PROVEOUT), "prove-out");
        self.phase = Phase::Proveout {
            left: left - (end - t),
        };
    }

    fn production(&mut self, t: i64, until: i64) {
        let Some(job) = self.job.clone() else {
            self.phase = Phase::Between { waited: false };
            return;
        };
        if job.made >= job.quantity {
            self.dispatch(t, false);
            self.phase = Phase::Teardown {
                left: ms(self.rng.lognormal(20.0 * 60.0, 0.5, 300.0, 5400.0)),
            };
            return self.work(t, until);
        }
        // Interruptions between parts.
        let r = self.rng.f64();
        let mut p = 0.0;
        let mut hit = |q: f64| {
            p += q;
            r < p
        };
        if hit(1.0 / 600.0) {
            // The QMS holds the job (a gauge found a problem on another machine's parts).
            self.holds += 1;
            let hold = self.holds;
            let d = ms(self.rng.lognormal(40.0 * 60.0, 0.5, 600.0, 3.0 * 3600.0));
            self.floor(
                t,
                Floor::HoldOpened {
                    hold: self.hold_id(hold),
                    job: job.job.clone(),
                },
            );
            self.phase = Phase::Hold { left: d, hold };
            return self.work(t, until);
        }
        if hit(1.0 / 35.0) {
            let d = ms(self.rng.lognormal(6.0 * 60.0, 0.5, 180.0, 1200.0));
            self.text(t, signals::CONTROLLER_MODE, "MANUAL");
            self.text(t, signals::EXECUTION, "READY");
            self.text(t, signals::DOOR, "OPEN");
            let tool = job.tools[self.rng.range(0, job.tools.len() as u64 - 1) as usize].0;
            self.set(t, signals::TOOL_NUMBER, Value::Int(tool));
            return self.wait(t, t + d, loss(LossCategory::TOOL_CHANGE), "insert change");
        }
        type Wait = (f64, LossCategory, &'static str, f64);
        let waits: [Wait; 4] = [
            (
                1.0 / 250.0,
                LossCategory::STARVED,
                "waiting for material",
                25.0,
            ),
            (
                1.0 / 150.0,
                LossCategory::NO_OPERATOR,
                "operator away",
                12.0,
            ),
            (1.0 / 400.0, LossCategory::BLOCKED, "parts rack full", 15.0),
            (1.0 / 200.0, LossCategory::UNEXPLAINED, "idle", 8.0),
        ];
        for (q, cat, activity, median_min) in waits {
            if hit(q) {
                let d = ms(self
                    .rng
                    .lognormal(median_min * 60.0, 0.6, 120.0, 3.0 * 3600.0));
                self.text(t, signals::CONTROLLER_MODE, "AUTOMATIC");
                let end = (t + d).min(until);
                self.wait(t, end, loss(cat.clone()), activity);
                if cat != LossCategory::UNEXPLAINED {
                    self.explain(t, end, cat);
                }
                return;
            }
        }
        self.cycle(t, &job);
    }

    /// Load/unload, then one part's cycle (or until an alarm/e-stop aborts it).
    fn cycle(&mut self, t: i64, job: &Job) {
        let prod = TimeCategory::Production;
        self.modes(t, "AUTOMATIC", "PRODUCTION");
        self.set(t, signals::SINGLE_BLOCK, Value::Bool(false));
        self.set(t, signals::OPTIONAL_STOP, Value::Bool(false));
        self.set(t, signals::FEED_OVERRIDE, Value::Int(100));
        self.set(t, signals::RAPID_OVERRIDE, Value::Int(100));
        self.text(t, signals::DOOR, "OPEN");
        self.spindle_stop(t);
        let load = job.load + ms(self.rng.uniform(-5.0, 5.0));
        self.truth(t, t + load, prod.clone(), "load/unload");
        let mut s = t + load;
        self.text(s, signals::DOOR, "CLOSED");
        self.text(s, signals::EXECUTION, "ACTIVE");
        let micro_stop_after = if self.rng.chance(0.08) {
            Some(self.rng.range(0, job.tools.len() as u64 - 1) as usize)
        } else {
            None
        };
        let fault = self.rng.f64();
        let (alarm_at, estop) = if fault < 1.0 / 180.0 {
            (
                Some(self.rng.range(0, job.tools.len() as u64 - 1) as usize),
                false,
            )
        } else if fault < 1.0 / 180.0 + 1.0 / 700.0 {
            (
                Some(self.rng.range(0, job.tools.len() as u64 - 1) as usize),
                true,
            )
        } else {
            (None, false)
        };
        let n = job.tools.len().max(1) as i64;
        for (k, &(tool, rpm, tload)) in job.tools.iter().enumerate() {
            let share = job.cycle / n + ms(self.rng.uniform(-2.0, 2.0));
            self.set(s, signals::TOOL_NUMBER, Value::Int(tool));
            self.set(s, signals::BLOCK_LINE, Value::Int(100 * (k as i64 + 1)));
            if alarm_at == Some(k) {
                let cut_until = s + share / 2;
                self.cut(s, cut_until, rpm, tload);
                self.truth(s, cut_until, prod.clone(), "cutting");
                let f = cut_until;
                self.spindle_stop(f);
                self.text(f, signals::EXECUTION, "INTERRUPTED");
                let (d, activity) = if estop {
                    self.text(f, signals::EMERGENCY_STOP, "TRIGGERED");
                    (ms(self.rng.uniform(60.0, 900.0)), "emergency stop")
                } else {
                    let list = match self.spec.id_prefix.split('-').next() {
                        Some("haas") => ALARMS_HAAS,
                        Some("okuma") => ALARMS_OKUMA,
                        _ => ALARMS_FANUC,
                    };
                    let text = self.rng.pick(list).copied().unwrap_or("ALARM");
                    self.text(f, signals::ALARM, text);
                    let d = ms(self.rng.lognormal(20.0 * 60.0, 0.9, 180.0, 4.0 * 3600.0));
                    (d, "alarm")
                };
                let r = f + d;
                self.text(r, signals::EMERGENCY_STOP, "ARMED");
                self.text(r, signals::ALARM, "");
                self.text(r, signals::EXECUTION, "READY");
                self.truth(f, r, loss(LossCategory::MACHINE_FAULT), activity);
                return;
            }
            self.cut(s, s + share, rpm, tload);
            self.truth(s, s + share, prod.clone(), "cutting");
            s += share;
            if micro_stop_after == Some(k) && k + 1 < job.tools.len() {
                let d = ms(self.rng.lognormal(60.0, 0.6, 20.0, 115.0));
                self.text(s, signals::EXECUTION, "FEED_HOLD");
                self.spindle_stop(s);
                self.text(s, signals::DOOR, "OPEN");
                self.text(s + d, signals::DOOR, "CLOSED");
                self.text(s + d, signals::EXECUTION, "ACTIVE");
                self.truth(s, s + d, loss(LossCategory::MICRO_STOP), "chip clearing");
                s += d;
            }
        }
        self.text(s, signals::EXECUTION, "PROGRAM_COMPLETED");
        self.spindle_stop(s);
        let made = job.made + 1;
        self.set(s, signals::PART_COUNT, Value::Int(made));
        if let Some(j) = &mut self.job {
            j.made = made;
        }
    }
}

/// Monday to Friday (1970-01-01, day 0, was a Thursday).
fn is_workday(day: i64) -> bool {
    (day + 3).rem_euclid(7) < 5
}

/// The shop offset (µs) that puts `start` at 08:00 shop time on a workday followed by another
/// (Monday to Thursday, the latest one on or before `start`'s UTC date): the demo uses it so
/// that a shop started at night or on a weekend is busy from its first minute, and a sped-up run
/// (the soak plays 30 hours) reaches the next working day, not a weekend.
pub fn demo_shop_offset(start: Timestamp) -> i64 {
    // Whole seconds, so that a calendar can name the offset.
    let t = start.as_micros().div_euclid(SEC) * SEC;
    let mut day = t.div_euclid(DAY);
    while !(is_workday(day) && is_workday(day + 1)) {
        day -= 1;
    }
    day * DAY + 8 * HOUR - t
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn a_demo_started_on_any_day_has_a_working_day_after_its_first() {
        // 2026-11-23 was a Monday; a start on each day of that week, at 23:30 UTC.
        for d in 23..30 {
            let start = Timestamp::parse_rfc3339(&format!("2026-11-{d}T23:30:00Z")).unwrap();
            let off = demo_shop_offset(start);
            let sim = MachineSim::new_in_shop(0, MachineId::new("m").unwrap(), 1, start, off);
            let t = start.as_micros();
            assert!(
                matches!(sim.slot(t), Slot::Work { shift: 1, .. }),
                "{d}: {:?}",
                sim.slot(t)
            );
            // 24 hours on: the next day's first shift, not a weekend.
            let next = t + 24 * HOUR;
            assert!(
                matches!(sim.slot(next), Slot::Work { shift: 1, .. }),
                "{d}: {:?}",
                sim.slot(next)
            );
        }
    }

    #[test]
    fn a_demo_started_on_a_saturday_night_is_mid_shift() {
        let start = Timestamp::parse_rfc3339("2026-11-28T23:30:00Z").unwrap();
        let off = demo_shop_offset(start);
        let sim = MachineSim::new_in_shop(0, MachineId::new("m").unwrap(), 1, start, off);
        assert!(
            matches!(sim.slot(start.as_micros()), Slot::Work { shift: 1, .. }),
            "{:?}",
            sim.slot(start.as_micros())
        );
        let plain = MachineSim::new(0, MachineId::new("m").unwrap(), 1, start);
        assert!(matches!(plain.slot(start.as_micros()), Slot::Off { .. }));
    }

    use super::*;
    use crate::sim::demo_machines;

    /// Monday 2026-11-23 05:00 UTC.
    fn monday_early() -> Timestamp {
        Timestamp::parse_rfc3339("2026-11-23T05:00:00Z").unwrap_or(Timestamp::from_micros(0))
    }

    fn sims(seed: u64, n: usize, start: Timestamp) -> Vec<MachineSim> {
        demo_machines(n)
            .into_iter()
            .enumerate()
            .map(|(i, (id, _, _))| MachineSim::new(i, id, seed, start))
            .collect()
    }

    /// Runs one machine for `span` in steps of `step`, collecting everything.
    fn run(mut sim: MachineSim, span: i64, step: i64) -> SimOutput {
        let start = sim.now().as_micros();
        let mut all = SimOutput::default();
        let mut t = start;
        while t < start + span {
            t = (t + step).min(start + span);
            let o = sim.advance(Timestamp::from_micros(t));
            all.events.extend(o.events);
            all.truth.extend(o.truth);
            all.floor.extend(o.floor);
        }
        let o = sim.finish(Timestamp::from_micros(start + span));
        all.events.extend(o.events);
        all.truth.extend(o.truth);
        all.floor.extend(o.floor);
        all
    }

    #[test]
    fn same_seed_same_output_however_time_is_chopped() {
        let start = monday_early();
        let a = run(sims(7, 3, start).remove(1), 2 * DAY, HOUR);
        let b = run(sims(7, 3, start).remove(1), 2 * DAY, 7 * SEC + 333);
        assert!(a.events.len() > 1000, "{}", a.events.len());
        assert_eq!(a, b);
        let c = run(sims(8, 3, start).remove(1), 2 * DAY, HOUR);
        assert_ne!(a.events, c.events);
        assert_ne!(a.truth, c.truth);
    }

    #[test]
    fn a_week_of_twelve_machines_tiles_time_and_visits_every_category() {
        let start = monday_early();
        let span = 7 * DAY;
        let mut seen: BTreeMap<String, i64> = BTreeMap::new();
        let mut signals_seen: BTreeSet<(&str, String)> = BTreeSet::new();
        let mut floor_seen: BTreeSet<String> = BTreeSet::new();
        for sim in sims(2026, 12, start) {
            let id = sim.id().clone();
            let out = run(sim, span, 15 * MIN);
            // Truth tiles [start, start + span) exactly.
            let mut t = start;
            for i in &out.truth {
                assert_eq!(i.start, t, "{id}: gap or overlap at {i:?}");
                assert!(i.end > i.start, "{id}: empty interval {i:?}");
                assert_eq!(i.machine, id);
                t = i.end;
                *seen.entry(i.category.to_string()).or_default() += i.end.micros_since(i.start);
            }
            assert_eq!(t.as_micros(), start.as_micros() + span, "{id}");
            assert!(out.floor.windows(2).all(|w| w[0].at <= w[1].at), "{id}");
            for e in &out.floor {
                let name = format!("{:?}", e.what);
                floor_seen.insert(name.split(['(', ' ']).next().unwrap_or("").to_string());
            }
            // Events are time-ordered and inside the span.
            assert!(out.events.windows(2).all(|w| w[0].at <= w[1].at), "{id}");
            assert!(
                out.events
                    .iter()
                    .all(|e| e.at >= start && e.at.as_micros() <= start.as_micros() + span)
            );
            // Part count only rises, except the reset to 0 at a program load.
            let mut last = None;
            let mut program_changed = false;
            for e in &out.events {
                match e.signal {
                    signals::PROGRAM => program_changed = true,
                    signals::PART_COUNT => {
                        let n = e.value.as_i64().unwrap_or(-1);
                        if let Some(prev) = last {
                            assert!(
                                n > prev || (n == 0 && program_changed),
                                "{id}: part count {prev} -> {n} at {}",
                                e.at
                            );
                        }
                        program_changed = false;
                        last = Some(n);
                    }
                    _ => {}
                }
                if let Some(s) = e.value.as_str() {
                    signals_seen.insert((e.signal, s.to_string()));
                }
            }
        }
        for cat in [
            "production",
            "setup",
            "program_proveout",
            "waiting_inspection",
            "tool_change",
            "machine_fault",
            "starved",
            "no_operator",
            "blocked",
            "maintenance",
            "planned_downtime",
            "unexplained",
            "quality_hold",
            "micro_stop",
        ] {
            assert!(seen.contains_key(cat), "{cat} never visited: {seen:?}");
        }
        // The floor (ERP, QMS, operators) said each kind of thing, in time order. (A confirmation
        // follows the rare repeat order listed with the same program: not every week has one.)
        for kind in [
            "Dispatch",
            "SignIn",
            "SignOut",
            "Reason",
            "InspectionRequested",
            "InspectionDone",
            "HoldOpened",
            "HoldReleased",
        ] {
            assert!(
                floor_seen.contains(kind),
                "the floor never said {kind}: {floor_seen:?}"
            );
        }
        for (s, v) in [
            ("execution", "FEED_HOLD"),
            ("execution", "INTERRUPTED"),
            ("execution", "OPTIONAL_STOP"),
            ("execution", "PROGRAM_STOPPED"),
            ("controller_mode", "MANUAL_DATA_INPUT"),
            ("functional_mode", "PROCESS_DEVELOPMENT"),
            ("functional_mode", "MAINTENANCE"),
            ("availability", "UNAVAILABLE"),
            ("emergency_stop", "TRIGGERED"),
        ] {
            assert!(
                signals_seen.contains(&(s, v.to_string())),
                "{s}={v} never emitted"
            );
        }
        // Sanity of the mix: production is the largest share of scheduled time, and the shop is
        // not planned-down more than two thirds of the week.
        let total: i64 = seen.values().sum();
        let share = |c: &str| seen.get(c).copied().unwrap_or(0) as f64 / total as f64;
        assert!(share("production") > 0.15, "{seen:?}");
        assert!(share("planned_downtime") < 0.7, "{seen:?}");
    }

    #[test]
    fn snapshot_follows_the_released_events() {
        let start = monday_early();
        let mut sim = sims(1, 1, start).remove(0);
        let snap0 = sim.current_signals();
        assert_eq!(snap0.len(), signals::ALL.len());
        let out = sim.advance(Timestamp::from_micros(start.as_micros() + 5 * HOUR));
        let mut expect: BTreeMap<&str, Value> = snap0.into_iter().collect();
        for e in out.events {
            expect.insert(e.signal, e.value);
        }
        let now: BTreeMap<&str, Value> = sim.current_signals().into_iter().collect();
        assert_eq!(now, expect);
        assert_eq!(
            now.get(signals::AVAILABILITY),
            Some(&Value::text("AVAILABLE"))
        );
        // Advancing into the past is a no-op.
        assert_eq!(sim.advance(start), SimOutput::default());
    }

    #[test]
    fn ten_sim_days_of_a_machine_run_in_a_blink() {
        // Pure code: ten days is a few hundred thousand events; this only has to finish.
        let sim = sims(3, 1, monday_early()).remove(0);
        let out = run(sim, 10 * DAY, DAY);
        assert!(out.truth.len() > 100);
    }

    #[test]
    fn the_calendar_has_shifts_breaks_and_weekends() {
        let sim = sims(1, 3, monday_early()).remove(2); // index 2: first shift only
        let at = |s: &str| {
            Timestamp::parse_rfc3339(s)
                .map(|t| t.as_micros())
                .unwrap_or(0)
        };
        assert!(matches!(
            sim.slot(at("2026-11-23T07:00:00Z")),
            Slot::Work { shift: 1, .. }
        ));
        assert!(matches!(
            sim.slot(at("2026-11-23T09:05:00Z")),
            Slot::Coffee { .. }
        ));
        assert!(matches!(
            sim.slot(at("2026-11-23T11:45:00Z")),
            Slot::Lunch { .. }
        ));
        assert_eq!(
            sim.slot(at("2026-11-23T15:00:00Z")),
            Slot::Off {
                until: at("2026-11-24T06:00:00Z")
            }
        );
        // Friday evening to Monday morning.
        assert_eq!(
            sim.slot(at("2026-11-27T15:00:00Z")),
            Slot::Off {
                until: at("2026-11-30T06:00:00Z")
            }
        );
    }
}
