//! Normalization: raw observations become canonical, time-aligned records.
//!
//! Until machine profiles arrive (the MTConnect issue), keys pass through unchanged, and the
//! canonical signals (see [`crate::model::signals`]) drive the canonical machine state. Every
//! interval-defining state change closes a [`StateInterval`] and opens the next.

pub mod align;

use std::collections::HashMap;

use crate::drivers::DriverEvent;
use crate::model::{
    AssetRecord, Availability, ConditionRecord, EmergencyStop, JobContext, LinkEvent, LinkStatus,
    MachineId, MachineState, Observation, Quality, QualityReason, RecordKind, StateChange,
    StateInterval, Timestamp, Timestamps, Value, signals,
};
use align::ClockAlign;

/// Per-machine normalization state.
#[derive(Debug, Default)]
struct Track {
    align: ClockAlign,
    state: MachineState,
    /// When the current interval began (None until the machine first reports).
    since: Option<Timestamp>,
    /// Index in the current output of this machine's last state change, while it is still at
    /// `since`: further changes at the same instant amend it instead of adding records (an
    /// SHDR line or a snapshot sets several items at once).
    open_change: Option<usize>,
}

impl Track {
    /// The interval from `since` to `end`, if it has any length. Its category is left to the
    /// context layer ([`crate::context::classify`]).
    fn close_interval(&self, machine: &MachineId, end: Timestamp) -> Option<RecordKind> {
        let start = self.since.filter(|s| end > *s)?;
        Some(RecordKind::Interval(StateInterval {
            machine: machine.clone(),
            start,
            end,
            shop_state: self.state.shop_state(),
            state: self.state.clone(),
            category: None,
            context: JobContext::default(),
        }))
    }
}

/// Counters the normalizer keeps (for `/metrics`).
#[derive(Debug, Default, Clone, Copy)]
pub struct NormalizeStats {
    pub observations: u64,
    pub state_changes: u64,
    pub intervals: u64,
    pub decode_errors: u64,
}

/// Turns driver events into records. Pure: no I/O, no clock (times come with the events).
#[derive(Debug, Default)]
pub struct Normalizer {
    tracks: HashMap<MachineId, Track>,
    pub stats: NormalizeStats,
}

/// Reads an alarm signal: any non-empty text other than NORMAL/NONE/0 is an active alarm.
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
                || t == "0")
        }
        Value::Unavailable => false,
    }
}

impl Normalizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The machine's current canonical state as normalization sees it.
    pub fn state(&self, machine: &MachineId) -> Option<&MachineState> {
        self.tracks.get(machine).map(|t| &t.state)
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

    /// Normalizes one event, appending the resulting records to `out`.
    fn process(&mut self, ev: DriverEvent, out: &mut Vec<RecordKind>) {
        match ev {
            DriverEvent::Observation(raw) => {
                let track = self.tracks.entry(raw.machine.clone()).or_default();
                let aligned = track.align.align(raw.source_time, raw.received);
                let mut next = track.state.clone();
                let mut quality = raw.quality;
                if apply_signal(&mut next, raw.key.as_str(), &raw.value).is_err() {
                    self.stats.decode_errors += 1;
                    if quality.is_good() {
                        quality = Quality::Uncertain(QualityReason::DecodeError);
                    }
                }
                self.stats.observations += 1;
                let machine = raw.machine.clone();
                out.push(RecordKind::Observation(Observation {
                    machine: raw.machine,
                    signal: raw.key,
                    value: raw.value,
                    quality,
                    time: Timestamps {
                        source: raw.source_time,
                        received: raw.received,
                        aligned,
                    },
                }));
                self.transition(&machine, next, aligned, out);
            }
            DriverEvent::Condition(c) => {
                let track = self.tracks.entry(c.machine.clone()).or_default();
                let aligned = track.align.align(c.source_time, c.received);
                self.stats.observations += 1;
                out.push(RecordKind::Condition(ConditionRecord {
                    machine: c.machine,
                    signal: c.key,
                    level: c.level,
                    native_code: c.native_code,
                    native_severity: c.native_severity,
                    qualifier: c.qualifier,
                    message: c.message,
                    time: Timestamps {
                        source: c.source_time,
                        received: c.received,
                        aligned,
                    },
                }));
            }
            DriverEvent::Asset(a) => {
                let track = self.tracks.entry(a.machine.clone()).or_default();
                // Asset documents often carry old times (when the tool was measured); they
                // must not drag the clock estimate, so they are aligned by receive time.
                let aligned = track.align.align(None, a.received);
                out.push(RecordKind::Asset(AssetRecord {
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
                }));
            }
            DriverEvent::Link {
                machine,
                status,
                at,
                detail,
                missed,
            } => {
                let track = self.tracks.entry(machine.clone()).or_default();
                // Link events carry the bridge's time; keep them on the monotonic time line.
                let at = track.align.align(None, at);
                let mut next = track.state.clone();
                match status {
                    LinkStatus::Lost => {
                        // Nothing is known about a machine we cannot reach: MTConnect's
                        // UNAVAILABLE for every state item.
                        next = MachineState {
                            program: next.program,
                            part_count: next.part_count,
                            ..MachineState::default()
                        };
                    }
                    LinkStatus::Connected => next.availability = Availability::Available,
                    LinkStatus::Gap => {}
                }
                out.push(RecordKind::Link(LinkEvent {
                    machine: machine.clone(),
                    at,
                    status,
                    detail,
                    missed,
                }));
                self.transition(&machine, next, at, out);
            }
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
        if let Some(interval) = track.close_interval(machine, at) {
            self.stats.intervals += 1;
            out.push(interval);
        }
        track.since = Some(at);
        self.stats.state_changes += 1;
        track.open_change = Some(out.len());
        out.push(RecordKind::StateChange(StateChange {
            machine: machine.clone(),
            at,
            shop_state: next.shop_state(),
            state: next.clone(),
        }));
        track.state = next;
    }

    /// Closes every open interval at `at` (clean shutdown), so the record holds where every
    /// minute went up to the stop.
    pub fn close_all(&mut self, at: Timestamp, out: &mut Vec<RecordKind>) {
        for (machine, track) in &mut self.tracks {
            if let Some(interval) = track.close_interval(machine, at) {
                self.stats.intervals += 1;
                out.push(interval);
            }
            track.since = track.since.map(|since| at.max(since));
        }
    }
}

/// Applies a canonical signal's value to the state. Non-canonical keys are ignored (they pass
/// through as observations). Err when a canonical signal's value is not one of its words.
fn apply_signal(state: &mut MachineState, key: &str, v: &Value) -> Result<(), ()> {
    fn word<T: std::str::FromStr>(v: &Value) -> Result<Option<T>, ()> {
        match v {
            Value::Unavailable => Ok(None),
            Value::Text(t) if t.trim().is_empty() || t.trim() == "UNAVAILABLE" => Ok(None),
            Value::Text(t) => t.parse().map(Some).map_err(|_| ()),
            _ => Err(()),
        }
    }
    match key {
        signals::AVAILABILITY => {
            state.availability = word(v)?.unwrap_or(Availability::Unavailable);
        }
        signals::EXECUTION => state.execution = word(v)?,
        signals::CONTROLLER_MODE => state.controller_mode = word(v)?,
        signals::FUNCTIONAL_MODE => state.functional_mode = word(v)?,
        signals::EMERGENCY_STOP => {
            state.emergency_stop = match v {
                Value::Bool(b) => Some(if *b {
                    EmergencyStop::Triggered
                } else {
                    EmergencyStop::Armed
                }),
                _ => word(v)?,
            }
        }
        signals::ALARM => state.alarm = alarm_active(v),
        signals::PROGRAM => {
            state.program = match v {
                Value::Unavailable => None,
                other => Some(other.to_string()).filter(|s| !s.is_empty()),
            }
        }
        signals::PART_COUNT => {
            state.part_count = match v {
                Value::Unavailable => None,
                other => Some(other.as_i64().ok_or(())?),
            }
        }
        _ => {}
    }
    Ok(())
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
    fn state_changes_close_intervals_and_program_changes_do_not() {
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
        let intervals: Vec<_> = out
            .iter()
            .filter_map(|r| match r {
                RecordKind::Interval(i) => Some(i),
                _ => None,
            })
            .collect();
        assert_eq!(intervals.len(), 2, "{out:#?}");
        assert_eq!(intervals[1].start.as_micros(), 2_000_100);
        assert_eq!(intervals[1].end.as_micros(), 4_000_100);
        assert_eq!(intervals[1].shop_state, ShopState::Idle);
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
        let last_interval = out
            .iter()
            .rev()
            .find_map(|r| match r {
                RecordKind::Interval(i) => Some(i),
                _ => None,
            })
            .unwrap();
        assert_eq!(last_interval.shop_state, ShopState::Run);
        assert_eq!(last_interval.end.as_micros(), 5_000_000);
    }
}
