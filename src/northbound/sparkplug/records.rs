//! From journal records to Sparkplug metric updates, one record at a time (so that a backlog
//! replays every record, not just the final state). The caller applies the record to its
//! [`LiveMachine`] mirror first and passes the machine as it is after the record.

use super::metrics::{context_values, loss_values, ms, state_values, text};
use super::payload::MetricValue;
use crate::model::{Record, RecordKind, Value, signals};
use crate::northbound::live::LiveMachine;

/// What a record means for its device.
#[derive(Clone, Debug, PartialEq)]
pub enum DeviceUpdate {
    /// These metrics changed (name, value or null, time in ms).
    Metrics(Vec<(String, Option<MetricValue>, u64)>),
    /// The link to the machine dropped: DDEATH.
    Died,
    /// The link came back: DBIRTH with the current values.
    Reborn,
    /// Nothing to publish.
    Nothing,
}

/// The metrics `record` touches, read from `m` (the machine after the record).
pub fn update(record: &Record, m: &LiveMachine) -> DeviceUpdate {
    let c = &m.current;
    let at = ms(record.kind.time());
    let metrics = match &record.kind {
        RecordKind::Observation(o) => {
            // A value the device refused (its text is the refusal) is published as null.
            let value = match &o.value {
                Value::Unavailable => None,
                _ if matches!(o.quality, crate::model::Quality::Bad(_)) => None,
                v => Some(MetricValue::String(v.to_string())),
            };
            let mut out = vec![(format!("Signals/{}", o.signal.as_str()), value, at)];
            match o.signal.as_str() {
                signals::PROGRAM => out.push(("Program/Name".into(), text(c.program.clone()), at)),
                signals::PART_COUNT => {
                    let n = c.part_count.map(MetricValue::Int64);
                    out.push(("Counts/Parts".into(), n.clone(), at));
                    // With an operation tracked, Good follows its context record instead.
                    if m.context.as_ref().is_none_or(|x| x.feedback.is_none()) {
                        out.push(("Counts/Good".into(), n, at));
                    }
                }
                _ => {}
            }
            out
        }
        RecordKind::StateChange(_) => {
            let mut out = state_values(m, at);
            out.extend(loss_values(m, at));
            out
        }
        RecordKind::Command(_) | RecordKind::Context(_) => {
            let mut out = context_values(m, at);
            if let Some(f) = m.context.as_ref().and_then(|x| x.feedback.as_ref()) {
                let good = f.parts.good().min(i64::MAX as u64) as i64;
                out.push(("Counts/Good".into(), Some(MetricValue::Int64(good)), at));
            }
            out
        }
        RecordKind::Condition(_) => vec![(
            "State/ActiveConditions".into(),
            Some(MetricValue::Int64(m.conditions.len() as i64)),
            at,
        )],
        RecordKind::Link(l) => {
            return match l.status {
                crate::model::LinkStatus::Lost => DeviceUpdate::Died,
                crate::model::LinkStatus::Connected => DeviceUpdate::Reborn,
                crate::model::LinkStatus::Gap => DeviceUpdate::Nothing,
            };
        }
        RecordKind::Interval(_)
        | RecordKind::Asset(_)
        | RecordKind::Dispatch(_)
        | RecordKind::Quality(_)
        | RecordKind::Operation(_) => return DeviceUpdate::Nothing,
    };
    DeviceUpdate::Metrics(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MachineId, Observation, SignalId, Timestamp, Timestamps};
    use crate::northbound::live::LiveView;
    use crate::northbound::sparkplug::metrics::device_metrics;

    fn observation(seq: u64, signal: &str, value: Value, t: i64) -> Record {
        Record {
            seq,
            kind: RecordKind::Observation(Observation {
                machine: MachineId::new("m1").unwrap(),
                signal: SignalId::new(signal),
                value,
                quality: Default::default(),
                time: Timestamps {
                    source: None,
                    received: Timestamp::from_micros(t),
                    aligned: Timestamp::from_micros(t),
                },
            }),
        }
    }

    #[test]
    fn a_refused_read_is_published_as_null_not_as_its_text() {
        let view = LiveView::new([LiveMachine::new(
            MachineId::new("m1").unwrap(),
            "M1".into(),
            "p".into(),
            "modbus".into(),
        )]);
        let mut r = observation(
            1,
            "load",
            Value::text("modbus exception 2 (illegal data address)"),
            1_000,
        );
        if let RecordKind::Observation(o) = &mut r.kind {
            o.quality = crate::model::Quality::Bad(crate::model::QualityReason::DeviceError);
        }
        view.apply(std::slice::from_ref(&r));
        let m = view.get("m1").unwrap();
        let DeviceUpdate::Metrics(ms) = update(&r, &m) else {
            panic!("{r:?}")
        };
        assert_eq!(ms, vec![("Signals/load".to_string(), None, 1)]);
    }

    #[test]
    fn each_record_updates_only_declared_metrics_at_its_own_time() {
        let view = LiveView::new([LiveMachine::new(
            MachineId::new("m1").unwrap(),
            "M1".into(),
            "p".into(),
            "shdr".into(),
        )]);
        let defs = device_metrics(&["part_count".to_string(), "spindle_speed".to_string()]);
        let records = [
            observation(1, "part_count", Value::Int(7), 1_000_000),
            observation(2, "spindle_speed", Value::Float(800.0), 2_000_000),
            observation(3, "spindle_speed", Value::Unavailable, 3_000_000),
        ];
        let mut seen = Vec::new();
        for r in &records {
            view.apply(std::slice::from_ref(r));
            let m = view.get("m1").unwrap();
            let DeviceUpdate::Metrics(ms) = update(r, &m) else {
                panic!("{r:?}")
            };
            for (name, v, t) in ms {
                let def = defs
                    .iter()
                    .find(|d| d.name == name)
                    .unwrap_or_else(|| panic!("{name}"));
                if let Some(v) = &v {
                    assert_eq!(v.datatype(), def.datatype, "{name}");
                }
                seen.push((name, v, t));
            }
        }
        assert!(seen.contains(&("Counts/Parts".into(), Some(MetricValue::Int64(7)), 1_000)));
        assert!(seen.contains(&(
            "Signals/spindle_speed".into(),
            Some(MetricValue::String("800".into())),
            2_000
        )));
        // UNAVAILABLE is a null of the declared type.
        assert!(seen.contains(&("Signals/spindle_speed".into(), None, 3_000)));
    }
}
