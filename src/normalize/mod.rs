//! Normalization: raw observations become canonical, time-aligned records.
//!
//! Each machine runs its [`Profile`] (see `profiles/README.md`): a source item (an SHDR key, an
//! MTConnect data item) is routed to the first profile signal whose `from` matches it, its
//! value goes through the signal's transform (`map`, `type`, `scale`/`offset`, `threshold`,
//! then the time filters `debounce` and `min_hold`), signals computed by expressions follow,
//! and the canonical machine state is derived from the signals and the profile's state rules.
//! Every change of an interval-defining state field is a [`StateChange`]; the context layer
//! cuts the machine's time into classified intervals from them. Items no profile signal claims pass through under their own key, so nothing a machine
//! says is dropped; a key that is already a canonical signal id maps onto that signal (the
//! in-process simulator speaks canonical ids).
//!
//! Time: every record carries the source time, the receive time and the aligned time
//! ([`align`]). A debounced value keeps its original time (the filter removes blips; it does
//! not move edges), so a state change may carry a time up to the debounce window earlier than
//! observations journaled just before it; `min_hold` moves an edge to the end of the hold.

pub mod align;
pub mod expr;
pub mod profile;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::drivers::{DataItemMeta, DriverEvent, ItemCategory, RawCondition, RawObservation};
use crate::model::{
    ActiveConditions, AssetRecord, Availability, ConditionLevel, ConditionRecord, EmergencyStop,
    LinkEvent, LinkStatus, MachineId, MachineState, Observation, Quality, QualityReason,
    RecordKind, SignalId, StateChange, Timestamp, Timestamps, Value, signals,
};
use align::ClockAlign;
pub use profile::{Profile, ProfileLoadError, ProfileSource};

/// Where a source key goes, decided once per key and cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// A profile source rule (index into `Profile::sources`).
    Rule(usize),
    /// A canonical signal id used as the key itself.
    Canonical(usize),
    /// No signal claims it: it passes through under its own key.
    Pass,
}

/// A value waiting for its debounce window or hold time.
#[derive(Clone, Debug)]
struct Pending {
    value: Value,
    quality: Quality,
    time: Timestamps,
}

#[derive(Clone, Debug, Default)]
struct Filter {
    pending: Option<Pending>,
    /// No change is accepted before this (aligned time).
    hold_until: Option<Timestamp>,
    /// `advancing` and `blink`: the last number read (a lamp as 0 or 1).
    last_raw: Option<f64>,
    /// `blink`: when the lamp changed, within the window.
    edges: Vec<Timestamp>,
    /// `advancing` and `blink`: the value the signal takes at this time unless a reading
    /// comes first (not advancing any more; a lamp that settled).
    timer: Option<(Timestamp, Value)>,
}

impl Filter {
    fn is_waiting(&self) -> bool {
        self.pending.is_some() || self.timer.is_some()
    }
}

/// A lamp's steady word.
fn lamp(on: bool) -> Value {
    Value::text(if on { "ON" } else { "OFF" })
}

/// Per-machine normalization state.
#[derive(Debug)]
struct Track {
    profile: Arc<Profile>,
    inputs: StateInputs,
    align: ClockAlign,
    state: MachineState,
    /// Current value of every profile signal (index = `Profile::signals`).
    values: Vec<Value>,
    /// Debounce and hold state, for signals that have those filters.
    filters: HashMap<usize, Filter>,
    /// Active conditions per signal fed by conditions.
    conditions: HashMap<usize, ActiveConditions>,
    routes: HashMap<SignalId, Route>,
    /// The same routes by the key's address (see [`Track::route`]).
    route_by_ptr: HashMap<usize, (SignalId, Route), BuildHasherDefault<AddrHasher>>,
    /// When the current interval began (None until the machine first reports).
    since: Option<Timestamp>,
    /// Index in the current output of this machine's last state change, while it is still at
    /// `since`: further changes at the same instant amend it instead of adding records (an
    /// SHDR line or a snapshot sets several items at once).
    open_change: Option<usize>,
}

impl Track {
    fn new(profile: Arc<Profile>) -> Self {
        Self {
            values: vec![Value::Unavailable; profile.signals.len()],
            inputs: StateInputs::of(&profile),
            profile,
            align: ClockAlign::default(),
            state: MachineState::default(),
            filters: HashMap::new(),
            conditions: HashMap::new(),
            routes: HashMap::new(),
            route_by_ptr: HashMap::default(),
            since: None,
            open_change: None,
        }
    }

    fn route(&mut self, key: &SignalId, meta: Option<&DataItemMeta>) -> Route {
        // Drivers send the same (cached) key each time: find it by address first, which costs
        // no string hashing; the cache holds a clone, so the address is not reused meanwhile.
        if let Some((k, r)) = self.route_by_ptr.get(&key.ptr()) {
            if k.same(key) {
                return *r;
            }
        }
        if let Some(r) = self.routes.get(key) {
            let r = *r;
            self.remember_ptr(key, r);
            return r;
        }
        let r = match self.profile.route(key.as_str(), meta) {
            Some(i) => Route::Rule(i),
            None => match self.profile.signal_index(key.as_str()) {
                Some(i) if i < signals::ALL.len() => Route::Canonical(i),
                _ => Route::Pass,
            },
        };
        // Bounded: a source that invents keys endlessly stops being cached, not remembered.
        if self.routes.len() < 65_536 {
            self.routes.insert(key.clone(), r);
        }
        self.remember_ptr(key, r);
        r
    }

    fn remember_ptr(&mut self, key: &SignalId, r: Route) {
        // A driver that makes a fresh id per value would fill this: start over instead.
        if self.route_by_ptr.len() >= 4096 {
            self.route_by_ptr.clear();
        }
        self.route_by_ptr.insert(key.ptr(), (key.clone(), r));
    }

    fn has_pending(&self) -> bool {
        self.filters.values().any(Filter::is_waiting)
    }
}

/// Hashes an address: the low bits are alignment, the rest are already well spread.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = ((n as u64) >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Every machine's track, found by id; the last one found is checked first (a batch is usually
/// one machine's), which spares hashing the id per event.
#[derive(Debug, Default)]
struct Tracks {
    list: Vec<(MachineId, Track)>,
    index: HashMap<MachineId, usize>,
    last: std::cell::Cell<usize>,
}

impl Tracks {
    fn find(&self, m: &MachineId) -> Option<usize> {
        let last = self.last.get();
        if self.list.get(last).is_some_and(|(id, _)| id == m) {
            return Some(last);
        }
        let i = *self.index.get(m)?;
        self.last.set(i);
        Some(i)
    }

    fn get(&self, m: &MachineId) -> Option<&Track> {
        self.find(m).map(|i| &self.list[i].1)
    }

    fn get_mut(&mut self, m: &MachineId) -> Option<&mut Track> {
        self.find(m).map(|i| &mut self.list[i].1)
    }

    fn contains_key(&self, m: &MachineId) -> bool {
        self.find(m).is_some()
    }

    /// Adds a track, or replaces the machine's track.
    fn insert(&mut self, m: MachineId, t: Track) {
        match self.find(&m) {
            Some(i) => self.list[i].1 = t,
            None => {
                self.index.insert(m.clone(), self.list.len());
                self.list.push((m, t));
            }
        }
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut Track> {
        self.list.iter_mut().map(|(_, t)| t)
    }

    fn iter(&self) -> impl Iterator<Item = (&MachineId, &Track)> {
        self.list.iter().map(|(m, t)| (m, t))
    }
}

/// A machine's clock as the aligner sees it (for `/metrics` and `/api/v1/machines`).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct ClockInfo {
    /// What is added to the machine's time to put it on the bridge's time line (µs): a
    /// machine whose clock is 3 minutes fast has about -180 000 000.
    pub offset_micros: Option<i64>,
    /// How much arrival delays wander (µs).
    pub jitter_micros: i64,
}

/// Counters the normalizer keeps (for `/metrics`).
#[derive(Debug, Default, Clone, Copy)]
pub struct NormalizeStats {
    pub observations: u64,
    pub state_changes: u64,
    pub decode_errors: u64,
    pub conditions: u64,
    pub assets: u64,
}

/// Turns driver events into records. Pure: no I/O, no clock (times come with the events, and
/// the caller's [`Normalizer::tick`] releases what the time filters hold).
#[derive(Debug, Default)]
pub struct Normalizer {
    tracks: Tracks,
    profiles: HashMap<MachineId, Arc<Profile>>,
    identity: Option<Arc<Profile>>,
    pub stats: NormalizeStats,
}

/// Reads an alarm signal: true, a non-zero number, or any text other than NORMAL/NONE/0/OFF.
fn alarm_active(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::Float(f) => *f != 0.0,
        Value::Text(t) => {
            let t = t.trim();
            !(t.is_empty()
                || t.eq_ignore_ascii_case("normal")
                || t.eq_ignore_ascii_case("none")
                || t.eq_ignore_ascii_case("off")
                || t.eq_ignore_ascii_case("false")
                || t == "0")
        }
        Value::Unavailable => false,
    }
}

fn word<T: std::str::FromStr>(v: &Value) -> Result<Option<T>, ()> {
    match v {
        Value::Unavailable => Ok(None),
        Value::Text(t) if t.trim().is_empty() || t.trim() == "UNAVAILABLE" => Ok(None),
        Value::Text(t) => t.trim().parse().map(Some).map_err(|_| ()),
        _ => Err(()),
    }
}

/// Whether `v` is a valid value for canonical state signal `id` (other signals: always).
fn valid_for(id: &str, v: &Value) -> bool {
    match id {
        signals::AVAILABILITY => word::<Availability>(v).is_ok(),
        signals::EXECUTION => word::<crate::model::Execution>(v).is_ok(),
        signals::CONTROLLER_MODE => word::<crate::model::ControllerMode>(v).is_ok(),
        signals::FUNCTIONAL_MODE => word::<crate::model::FunctionalMode>(v).is_ok(),
        signals::EMERGENCY_STOP => matches!(v, Value::Bool(_)) || word::<EmergencyStop>(v).is_ok(),
        signals::PART_COUNT => {
            v.is_unavailable()
                || v.as_i64().is_some()
                || matches!(v, Value::Text(t) if t.trim().parse::<f64>().is_ok())
        }
        _ => true,
    }
}

/// The canonical machine state from a machine's signals and its profile's state rules.
/// Where a profile keeps the signals the state is made of: the six [`profile::STATE_FIELDS`],
/// then program and part count; and which signals the state depends on at all (those, and
/// whatever the state rules read), so that other signals do not recompute it.
#[derive(Debug, Clone)]
struct StateInputs {
    index: [Option<usize>; 8],
    affects: Vec<bool>,
}

impl StateInputs {
    fn of(profile: &Profile) -> Self {
        let mut index = [None; 8];
        let ids = profile::STATE_FIELDS
            .iter()
            .chain([&signals::PROGRAM, &signals::PART_COUNT]);
        for (slot, id) in index.iter_mut().zip(ids) {
            *slot = profile.signal_index(id);
        }
        let mut affects = vec![false; profile.signals.len()];
        for i in index.iter().flatten() {
            affects[*i] = true;
        }
        for rules in profile.state.iter().flatten() {
            for r in rules {
                let mut reads = Vec::new();
                if let Some(w) = &r.when {
                    w.reads(&mut reads);
                }
                for i in reads {
                    if let Some(a) = affects.get_mut(i) {
                        *a = true;
                    }
                }
            }
        }
        Self { index, affects }
    }
}

fn derive_state(profile: &Profile, inputs: &StateInputs, values: &[Value]) -> MachineState {
    let field = |f: usize| -> Value {
        if let Some(rules) = &profile.state[f] {
            for r in rules {
                if r.when.as_ref().is_none_or(|w| w.eval(values)) {
                    return r.value.clone();
                }
            }
        }
        inputs.index[f]
            .and_then(|i| values.get(i).cloned())
            .unwrap_or(Value::Unavailable)
    };
    let emergency_stop = match field(4) {
        Value::Bool(b) => Some(if b {
            EmergencyStop::Triggered
        } else {
            EmergencyStop::Armed
        }),
        other => word(&other).ok().flatten(),
    };
    let text_of = |slot: usize| inputs.index[slot].and_then(|i| values.get(i));
    MachineState {
        availability: word(&field(0))
            .ok()
            .flatten()
            .unwrap_or(Availability::Unavailable),
        execution: word(&field(1)).ok().flatten(),
        controller_mode: word(&field(2)).ok().flatten(),
        functional_mode: word(&field(3)).ok().flatten(),
        emergency_stop,
        alarm: alarm_active(&field(5)),
        program: text_of(6)
            .filter(|v| !v.is_unavailable())
            .map(|v| v.to_string())
            .filter(|s| !s.is_empty()),
        part_count: text_of(7).and_then(|v| match v {
            Value::Text(t) => t.trim().parse::<f64>().ok().map(|x| x as i64),
            other => other.as_i64(),
        }),
    }
}

impl Normalizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `profile` for `machine` (machines without one use the identity profile: canonical
    /// keys only, everything else passes through).
    pub fn set_profile(&mut self, machine: MachineId, profile: Arc<Profile>) {
        if self.tracks.contains_key(&machine) {
            self.tracks
                .insert(machine.clone(), Track::new(profile.clone()));
        }
        self.profiles.insert(machine, profile);
    }

    /// The machine's current canonical state as normalization sees it.
    pub fn state(&self, machine: &MachineId) -> Option<&MachineState> {
        self.tracks.get(machine).map(|t| &t.state)
    }

    /// Every machine's clock estimate.
    /// Whether a machine has a signal with a time filter (debounce or hold), whose values
    /// [`Normalizer::tick`] must release on time.
    pub fn has_filters(&self) -> bool {
        self.tracks.iter().any(|(_, t)| !t.filters.is_empty())
    }

    pub fn clocks(&self) -> impl Iterator<Item = (&MachineId, ClockInfo)> {
        self.tracks.iter().map(|(m, t)| {
            (
                m,
                ClockInfo {
                    offset_micros: t.align.offset_micros(),
                    jitter_micros: t.align.jitter_micros(),
                },
            )
        })
    }

    fn track(&mut self, machine: &MachineId) -> &mut Track {
        let i = match self.tracks.find(machine) {
            Some(i) => i,
            None => {
                let profile = match self.profiles.get(machine) {
                    Some(p) => p.clone(),
                    None => self
                        .identity
                        .get_or_insert_with(|| Arc::new(profile::identity()))
                        .clone(),
                };
                self.tracks.insert(machine.clone(), Track::new(profile));
                self.tracks.list.len() - 1
            }
        };
        &mut self.tracks.list[i].1
    }

    /// Normalizes a batch of events (one driver read, or several), appending the records to
    /// `out`, which must be empty or hold only this batch's records.
    pub fn process_batch(
        &mut self,
        events: impl IntoIterator<Item = DriverEvent>,
        out: &mut Vec<RecordKind>,
    ) {
        for t in self.tracks.values_mut() {
            t.open_change = None;
        }
        for ev in events {
            self.process(ev, out);
        }
        for t in self.tracks.values_mut() {
            t.open_change = None;
        }
    }

    /// Releases values whose debounce window or hold time has passed by `now` (the bridge's
    /// clock). The pipeline calls it a few times a second.
    pub fn tick(&mut self, now: Timestamp, out: &mut Vec<RecordKind>) {
        let due: Vec<MachineId> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.has_pending())
            .map(|(m, _)| m.clone())
            .collect();
        for m in due {
            if let Some(t) = self.tracks.get_mut(&m) {
                t.open_change = None;
            }
            self.release_due(&m, now, out);
        }
    }

    /// Normalizes one event, appending the resulting records to `out`.
    fn process(&mut self, ev: DriverEvent, out: &mut Vec<RecordKind>) {
        match ev {
            DriverEvent::Observation(raw) => self.observation(raw, out),
            DriverEvent::Condition(c) => self.condition(*c, out),
            DriverEvent::Asset(a) => {
                let track = self.track(&a.machine);
                // Asset documents often carry old times (when the tool was measured); they
                // must not drag the clock estimate, so they are aligned by receive time.
                let aligned = track.align.align(None, a.received);
                self.stats.assets += 1;
                out.push(RecordKind::Asset(Box::new(AssetRecord {
                    machine: a.machine,
                    action: a.action,
                    asset_id: a.asset_id,
                    asset_type: a.asset_type,
                    document: a.document,
                    time: Timestamps {
                        source: a.source_time,
                        received: a.received,
                        aligned,
                    },
                })));
            }
            DriverEvent::Link {
                machine,
                status,
                at,
                detail,
                missed,
            } => self.link(machine, status, at, detail, missed, out),
        }
    }

    /// The three times of something `machine` reported, after releasing what its filters
    /// held until then.
    fn times(
        &mut self,
        machine: &MachineId,
        source: Option<Timestamp>,
        received: Timestamp,
        out: &mut Vec<RecordKind>,
    ) -> Timestamps {
        let aligned = self.track(machine).align.align(source, received);
        self.release_due(machine, aligned, out);
        Timestamps {
            source,
            received,
            aligned,
        }
    }

    fn observation(&mut self, raw: RawObservation, out: &mut Vec<RecordKind>) {
        let machine = raw.machine.clone();
        let time = self.times(&machine, raw.source_time, raw.received, out);
        let Some(track) = self.tracks.get_mut(&machine) else {
            return;
        };
        self.stats.observations += 1;
        let route = track.route(&raw.key, raw.meta.as_deref());
        if let (Quality::Bad(_), Route::Rule(_) | Route::Canonical(_)) = (raw.quality, route) {
            // The device refused the read: no transform or filter applies to its answer.
            let sig = match route {
                Route::Rule(r) => track.profile.sources[r].signal,
                Route::Canonical(i) => i,
                Route::Pass => return,
            };
            track.filters.remove(&sig);
            self.commit(&machine, sig, raw.value, raw.quality, time, out);
            return;
        }
        match route {
            Route::Pass => out.push(RecordKind::Observation(Observation {
                machine,
                signal: raw.key,
                value: raw.value,
                quality: raw.quality,
                time,
            })),
            Route::Canonical(sig) => {
                self.offer(&machine, sig, raw.value, raw.quality, time, None, out)
            }
            Route::Rule(r) => {
                let profile = track.profile.clone();
                let rule = &profile.sources[r];
                let previous = &track.values[rule.signal];
                match rule.transform.apply(raw.value.clone(), previous) {
                    Ok(v) => self.offer(
                        &machine,
                        rule.signal,
                        v,
                        raw.quality,
                        time,
                        Some(&rule.transform),
                        out,
                    ),
                    Err(_) => {
                        // Kept, under the signal's id, flagged; the state does not use it.
                        self.stats.decode_errors += 1;
                        out.push(RecordKind::Observation(Observation {
                            machine,
                            signal: profile.signals[rule.signal].clone(),
                            value: raw.value,
                            quality: Quality::Uncertain(QualityReason::DecodeError),
                            time,
                        }));
                    }
                }
            }
        }
    }

    fn condition(&mut self, c: RawCondition, out: &mut Vec<RecordKind>) {
        let machine = c.machine.clone();
        let time = self.times(&machine, c.source_time, c.received, out);
        self.stats.conditions += 1;
        let record = ConditionRecord {
            machine: machine.clone(),
            signal: c.key.clone(),
            level: c.level,
            native_code: c.native_code,
            native_severity: c.native_severity,
            qualifier: c.qualifier,
            message: c.message,
            time,
        };
        let Some(track) = self.tracks.get_mut(&machine) else {
            return;
        };
        // A condition from a source that did not describe it is still a condition.
        let synthesized;
        let meta = match c.meta.as_deref() {
            Some(m) => m,
            None => {
                synthesized = DataItemMeta {
                    id: c.key.to_string(),
                    category: Some(ItemCategory::Condition),
                    ..DataItemMeta::default()
                };
                &synthesized
            }
        };
        let routed = match track.route(&c.key, Some(meta)) {
            Route::Rule(r) => {
                let rule = &track.profile.sources[r];
                Some((rule.signal, rule.alarm_level))
            }
            Route::Canonical(i) => Some((i, ConditionLevel::Fault)),
            Route::Pass => None,
        };
        let on = routed.map(|(sig, level)| {
            let active = track.conditions.entry(sig).or_default();
            active.apply(&record);
            (sig, active.any_at_least(level))
        });
        out.push(RecordKind::Condition(Box::new(record)));
        let Some((sig, on)) = on else {
            return;
        };
        if track.values[sig] != Value::Bool(on) {
            let transform = match track.route(&c.key, Some(meta)) {
                Route::Rule(r) => Some(track.profile.sources[r].transform.clone()),
                _ => None,
            };
            self.offer(
                &machine,
                sig,
                Value::Bool(on),
                Quality::Good,
                time,
                transform.as_ref(),
                out,
            );
        }
    }

    fn link(
        &mut self,
        machine: MachineId,
        status: LinkStatus,
        at: Timestamp,
        detail: Option<String>,
        missed: Option<u64>,
        out: &mut Vec<RecordKind>,
    ) {
        let track = self.track(&machine);
        // Link events carry the bridge's time; keep them on the monotonic time line.
        let at = track.align.align(None, at);
        match status {
            LinkStatus::Lost => {
                // Nothing is known about a machine we cannot reach: MTConnect's UNAVAILABLE
                // for every signal, except what identifies the work (program, part count).
                let keep = [signals::PROGRAM, signals::PART_COUNT];
                for (i, v) in track.values.iter_mut().enumerate() {
                    if !keep.contains(&track.profile.signals[i].as_str()) {
                        *v = Value::Unavailable;
                    }
                }
                track.filters.clear();
                track.conditions.clear();
            }
            LinkStatus::Connected => {
                // A reachable source is available until it says otherwise (as an MTConnect
                // agent does for a connected adapter).
                if let Some(i) = track.profile.signal_index(signals::AVAILABILITY) {
                    if track.values[i].is_unavailable() {
                        track.values[i] = Value::text("AVAILABLE");
                    }
                }
            }
            LinkStatus::Gap => {}
        }
        out.push(RecordKind::Link(LinkEvent {
            machine: machine.clone(),
            at,
            status,
            detail,
            missed,
        }));
        let next = derive_state(&track.profile, &track.inputs, &track.values);
        self.transition(&machine, next, at, out);
    }

    /// Offers a signal value: through the time filters when the signal has them, else
    /// committed at once. `advancing` and `blink` first turn the reading into the signal's
    /// value (or into nothing, when it does not change it).
    #[allow(clippy::too_many_arguments)]
    fn offer(
        &mut self,
        machine: &MachineId,
        sig: usize,
        value: Value,
        quality: Quality,
        time: Timestamps,
        transform: Option<&profile::Transform>,
        out: &mut Vec<RecordKind>,
    ) {
        let (advancing, blink) = transform.map_or((None, None), |t| (t.advancing, t.blink));
        if (advancing.is_some() || blink.is_some()) && !value.is_unavailable() {
            let Some(track) = self.tracks.get_mut(machine) else {
                return;
            };
            let current = track.values[sig].clone();
            let f = track.filters.entry(sig).or_default();
            let Some(x) = profile::as_number(&value) else {
                self.stats.decode_errors += 1;
                out.push(RecordKind::Observation(Observation {
                    machine: machine.clone(),
                    signal: track.profile.signals[sig].clone(),
                    value,
                    quality: Quality::Uncertain(QualityReason::DecodeError),
                    time,
                }));
                return;
            };
            let previous = f.last_raw.replace(x);
            let next = if let Some(window) = advancing {
                match previous {
                    Some(p) if x > p => {
                        f.timer = Some((time.aligned.saturating_add(window), Value::Bool(false)));
                        Value::Bool(true)
                    }
                    // A first reading says nothing about motion yet; a reset is no advance.
                    None => Value::Bool(false),
                    Some(_) => return,
                }
            } else {
                let window = blink.unwrap_or_default();
                let on = x != 0.0;
                if previous.is_some_and(|p| (p != 0.0) != on) {
                    f.edges.push(time.aligned);
                }
                let since = time.aligned.saturating_sub(window);
                f.edges.retain(|t| *t >= since);
                if f.edges.len() >= profile::BLINK_EDGES {
                    f.timer = Some((time.aligned.saturating_add(window), lamp(on)));
                    Value::text("BLINKING")
                } else if f.timer.is_some() {
                    // Still within a blink's window: the settled word comes with the timer.
                    f.timer = Some((time.aligned.saturating_add(window), lamp(on)));
                    return;
                } else {
                    lamp(on)
                }
            };
            if next == current && f.pending.is_none() {
                return;
            }
            self.offer_filtered(machine, sig, next, quality, time, transform, out);
            return;
        }
        self.offer_filtered(machine, sig, value, quality, time, transform, out);
    }

    /// The debounce and hold filters, then the signal.
    #[allow(clippy::too_many_arguments)]
    fn offer_filtered(
        &mut self,
        machine: &MachineId,
        sig: usize,
        value: Value,
        quality: Quality,
        time: Timestamps,
        transform: Option<&profile::Transform>,
        out: &mut Vec<RecordKind>,
    ) {
        let (debounce, hold) = transform.map_or((None, None), |t| (t.debounce, t.min_hold));
        if debounce.is_none() && hold.is_none() {
            self.commit(machine, sig, value, quality, time, out);
            return;
        }
        let Some(track) = self.tracks.get_mut(machine) else {
            return;
        };
        let current = track.values[sig].clone();
        let f = track.filters.entry(sig).or_default();
        if value == current {
            // The blip ended before it was confirmed: nothing changed.
            f.pending = None;
            return;
        }
        if debounce.is_none() && f.hold_until.is_none_or(|h| time.aligned >= h) {
            f.hold_until = hold.map(|h| time.aligned.saturating_add(h));
            f.pending = None;
            self.commit(machine, sig, value, quality, time, out);
            return;
        }
        if f.pending.as_ref().is_some_and(|p| p.value == value) {
            return; // keep the earliest time of the same value
        }
        f.pending = Some(Pending {
            value,
            quality,
            time,
        });
    }

    /// Commits what the filters of `machine` hold and is due at `now`.
    fn release_due(&mut self, machine: &MachineId, now: Timestamp, out: &mut Vec<RecordKind>) {
        let Some(track) = self.tracks.get_mut(machine) else {
            return;
        };
        if !track.has_pending() {
            return;
        }
        let profile = track.profile.clone();
        let mut due = Vec::new();
        let mut timers = Vec::new();
        for (sig, f) in track.filters.iter_mut() {
            if let Some((at, v)) = f.timer.take_if(|(at, _)| *at <= now) {
                f.edges.clear();
                timers.push((*sig, at, v));
            }
            let Some(p) = &f.pending else { continue };
            let transform = profile.transform_of(*sig);
            let debounce = transform.and_then(|t| t.debounce).unwrap_or_default();
            let hold = transform.and_then(|t| t.min_hold);
            let confirmed = p.time.aligned.saturating_add(debounce);
            let at = f
                .hold_until
                .map_or(p.time.aligned, |h| h.max(p.time.aligned));
            if confirmed.max(at) > now {
                continue;
            }
            if let Some(mut p) = f.pending.take() {
                if at > p.time.aligned {
                    // Held: the edge moves to the end of the hold.
                    p.time.aligned = at;
                }
                f.hold_until = hold.map(|h| p.time.aligned.saturating_add(h));
                due.push((*sig, p));
            }
        }
        due.sort_by_key(|(_, p)| p.time.aligned);
        for (sig, p) in due {
            self.commit(machine, sig, p.value, p.quality, p.time, out);
        }
        timers.sort_by_key(|(_, at, _)| *at);
        for (sig, at, v) in timers {
            let Some(track) = self.tracks.get(machine) else {
                return;
            };
            if track.values[sig] == v {
                continue;
            }
            let transform = profile.transform_of(sig).cloned();
            let time = Timestamps {
                source: None,
                received: at,
                aligned: at,
            };
            self.offer_filtered(
                machine,
                sig,
                v,
                Quality::Good,
                time,
                transform.as_ref(),
                out,
            );
        }
    }

    /// Sets a signal, records it, recomputes the signals computed from it and the state.
    fn commit(
        &mut self,
        machine: &MachineId,
        sig: usize,
        value: Value,
        mut quality: Quality,
        time: Timestamps,
        out: &mut Vec<RecordKind>,
    ) {
        let Some(track) = self.tracks.get_mut(machine) else {
            return;
        };
        let profile = track.profile.clone();
        let id = &profile.signals[sig];
        // A device's refusal is journaled as it said it, and the signal is unknown meanwhile.
        let refused = matches!(quality, Quality::Bad(_));
        if !refused && !valid_for(id.as_str(), &value) {
            self.stats.decode_errors += 1;
            if quality.is_good() {
                quality = Quality::Uncertain(QualityReason::DecodeError);
            }
        }
        track.values[sig] = if refused {
            Value::Unavailable
        } else {
            value.clone()
        };
        out.push(RecordKind::Observation(Observation {
            machine: machine.clone(),
            signal: id.clone(),
            value,
            quality,
            time,
        }));
        // Computed signals, in profile order, each at most once per commit.
        let mut changed = vec![sig];
        let mut deferred = Vec::new();
        for d in &profile.derived {
            if !d.reads.iter().any(|r| changed.contains(r)) {
                continue;
            }
            let raw = d.expr.value(&track.values);
            let Ok(v) = d.transform.apply(raw, &track.values[d.signal]) else {
                self.stats.decode_errors += 1;
                continue;
            };
            if v == track.values[d.signal] {
                continue;
            }
            if d.transform.is_timed() {
                deferred.push((d.signal, v));
                continue;
            }
            track.values[d.signal] = v.clone();
            changed.push(d.signal);
            out.push(RecordKind::Observation(Observation {
                machine: machine.clone(),
                signal: profile.signals[d.signal].clone(),
                value: v,
                quality: Quality::Good,
                time: Timestamps {
                    source: None,
                    ..time
                },
            }));
        }
        if changed
            .iter()
            .any(|i| track.inputs.affects.get(*i).copied().unwrap_or(true))
        {
            let next = derive_state(&profile, &track.inputs, &track.values);
            self.transition(machine, next, time.aligned, out);
        }
        for (s, v) in deferred {
            let transform = profile
                .derived
                .iter()
                .find(|d| d.signal == s)
                .map(|d| d.transform.clone());
            let t = Timestamps {
                source: None,
                ..time
            };
            self.offer(machine, s, v, Quality::Good, t, transform.as_ref(), out);
        }
    }

    /// Emits the interval that closes and the state change, if `next` differs in an
    /// interval-defining way; otherwise just keeps `next` (program, part count).
    fn transition(
        &mut self,
        machine: &MachineId,
        next: MachineState,
        at: Timestamp,
        out: &mut Vec<RecordKind>,
    ) {
        let Some(track) = self.tracks.get_mut(machine) else {
            return;
        };
        let changed = !track.state.same_interval_as(&next) || track.since.is_none();
        if !changed {
            track.state = next;
            return;
        }
        // Never before the open interval began (a debounced edge can be older).
        let at = track.since.map_or(at, |s| at.max(s));
        // A second change at the same instant: amend the state change just emitted.
        if track.since == Some(at) {
            if let Some(RecordKind::StateChange(sc)) =
                track.open_change.and_then(|i| out.get_mut(i))
            {
                sc.shop_state = next.shop_state();
                sc.state = next.clone();
                track.state = next;
                return;
            }
        }
        track.since = Some(at);
        self.stats.state_changes += 1;
        track.open_change = Some(out.len());
        out.push(RecordKind::StateChange(Box::new(StateChange {
            machine: machine.clone(),
            at,
            shop_state: next.shop_state(),
            state: next.clone(),
        })));
        track.state = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::RawObservation;
    use crate::model::{Execution, ShopState, SignalId};

    fn raw(m: &str, k: &str, v: Value, t: i64) -> DriverEvent {
        DriverEvent::Observation(RawObservation {
            machine: MachineId::new(m).unwrap(),
            key: SignalId::new(k),
            value: v,
            quality: Quality::Good,
            source_time: Some(Timestamp::from_micros(t)),
            received: Timestamp::from_micros(t + 100),
            meta: None,
        })
    }

    #[test]
    fn state_fields_make_state_changes_and_program_changes_do_not() {
        let mut n = Normalizer::new();
        let mut out = Vec::new();
        n.process_batch(
            [raw(
                "m1",
                "availability",
                Value::text("AVAILABLE"),
                1_000_000,
            )],
            &mut out,
        );
        n.process_batch(
            [raw("m1", "execution", Value::text("READY"), 2_000_000)],
            &mut out,
        );
        n.process_batch(
            [raw("m1", "program", Value::text("O1234"), 3_000_000)],
            &mut out,
        );
        n.process_batch(
            [raw("m1", "execution", Value::text("ACTIVE"), 4_000_000)],
            &mut out,
        );
        n.process_batch([raw("m1", "Xact", Value::Float(12.5), 4_500_000)], &mut out);
        let changes: Vec<_> = out
            .iter()
            .filter_map(|r| match r {
                RecordKind::StateChange(c) => Some(c),
                _ => None,
            })
            .collect();
        assert_eq!(changes.len(), 3, "{out:#?}");
        assert_eq!(changes[1].at.as_micros(), 2_000_100);
        assert_eq!(changes[1].shop_state, ShopState::Idle);
        assert_eq!(changes[2].at.as_micros(), 4_000_100);
        let st = n.state(&MachineId::new("m1").unwrap()).unwrap();
        assert_eq!(st.execution, Some(Execution::Active));
        assert_eq!(st.program.as_deref(), Some("O1234"));
        assert_eq!(
            out.iter()
                .filter(|r| matches!(r, RecordKind::Observation(_)))
                .count(),
            5
        );
    }

    #[test]
    fn several_items_at_one_instant_make_one_state_change() {
        let mut n = Normalizer::new();
        let mut out = Vec::new();
        n.process_batch(
            [
                raw("m1", "availability", Value::text("AVAILABLE"), 1_000_000),
                raw("m1", "controller_mode", Value::text("AUTOMATIC"), 1_000_000),
                raw("m1", "execution", Value::text("ACTIVE"), 1_000_000),
            ],
            &mut out,
        );
        let changes: Vec<_> = out
            .iter()
            .filter_map(|r| match r {
                RecordKind::StateChange(s) => Some(s),
                _ => None,
            })
            .collect();
        assert_eq!(changes.len(), 1, "{out:#?}");
        assert_eq!(changes[0].shop_state, ShopState::Run);
        assert!(!out.iter().any(|r| matches!(r, RecordKind::Interval(_))));
    }

    #[test]
    fn a_bad_word_is_kept_but_flagged_and_counted() {
        let mut n = Normalizer::new();
        let mut out = Vec::new();
        n.process_batch(
            [raw("m1", "execution", Value::text("RUNNING"), 1_000_000)],
            &mut out,
        );
        assert_eq!(n.stats.decode_errors, 1);
        match &out[0] {
            RecordKind::Observation(o) => {
                assert_eq!(o.quality, Quality::Uncertain(QualityReason::DecodeError));
                assert_eq!(o.value, Value::text("RUNNING"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn link_loss_makes_the_machine_unavailable() {
        let mut n = Normalizer::new();
        let mut out = Vec::new();
        let m = MachineId::new("m1").unwrap();
        n.process_batch(
            [raw(
                "m1",
                "availability",
                Value::text("AVAILABLE"),
                1_000_000,
            )],
            &mut out,
        );
        n.process_batch(
            [raw("m1", "execution", Value::text("ACTIVE"), 1_000_000)],
            &mut out,
        );
        n.process_batch(
            [DriverEvent::Link {
                machine: m.clone(),
                status: LinkStatus::Lost,
                at: Timestamp::from_micros(5_000_000),
                detail: Some("connection reset".into()),
                missed: None,
            }],
            &mut out,
        );
        assert_eq!(n.state(&m).unwrap().shop_state(), ShopState::Off);
        assert!(
            out.iter()
                .any(|r| matches!(r, RecordKind::Link(l) if l.status == LinkStatus::Lost))
        );
        let last_change = out
            .iter()
            .rev()
            .find_map(|r| match r {
                RecordKind::StateChange(c) => Some(c),
                _ => None,
            })
            .unwrap();
        assert_eq!(last_change.shop_state, ShopState::Off);
        assert_eq!(last_change.at.as_micros(), 5_000_000);
    }
}

#[cfg(test)]
mod profile_tests;
