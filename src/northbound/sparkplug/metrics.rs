//! What a machine publishes as a Sparkplug device: a fixed list of metrics (declared whole in
//! its DBIRTH), their values from the live view, and the writable `Commands/…` metrics a host
//! may send as DCMD.

use super::node::MetricDef;
use super::payload::{DataType, MetricValue};
use crate::context::commands::{CommandError, Commands};
use crate::model::{Command, Timestamp, Value};
use crate::northbound::live::LiveMachine;

/// Metrics every machine publishes, before its profile's `Signals/…`.
pub const STATE_METRICS: [(&str, DataType); 28] = [
    ("State/Shop", DataType::String),
    ("State/Availability", DataType::String),
    ("State/Execution", DataType::String),
    ("State/ControllerMode", DataType::String),
    ("State/FunctionalMode", DataType::String),
    ("State/EmergencyStop", DataType::String),
    ("State/Alarm", DataType::Boolean),
    ("State/Since", DataType::DateTime),
    ("State/ActiveConditions", DataType::Int64),
    ("Program/Name", DataType::String),
    ("Counts/Parts", DataType::Int64),
    ("Counts/Good", DataType::Int64),
    ("Counts/Scrap", DataType::Int64),
    ("Counts/Rework", DataType::Int64),
    ("Context/Job", DataType::String),
    ("Context/Operation", DataType::String),
    ("Context/Operator", DataType::String),
    ("Context/Shift", DataType::String),
    ("Context/PartNumber", DataType::String),
    ("Context/Provisional", DataType::Boolean),
    ("Loss/Category", DataType::String),
    ("Loss/Since", DataType::DateTime),
    ("Loss/Source", DataType::String),
    ("Loss/StopReason", DataType::String),
    ("Schedule/CycleTime", DataType::Double),
    ("Schedule/PartsRemaining", DataType::Int64),
    ("Schedule/EstimatedCompletion", DataType::DateTime),
    ("Schedule/AtRisk", DataType::Boolean),
];

/// The metrics a host may write (DCMD). Values are Strings:
/// - `Commands/StopReason`: `code` or `code: note` (a loss category of the taxonomy);
/// - `Commands/SignIn`: the operator id;
/// - `Commands/SignOut`: anything (or Boolean true);
/// - `Commands/ConfirmOperation`: `job/operation`;
/// - `Commands/Dispatch`: the machine's dispatch list as JSON (as `PUT
///   /api/v1/machines/{id}/dispatch` takes it), replacing the previous one.
pub const WRITABLE: [&str; 5] = [
    "Commands/StopReason",
    "Commands/SignIn",
    "Commands/SignOut",
    "Commands/ConfirmOperation",
    "Commands/Dispatch",
];

/// A `Commands/Dispatch` value: `[operation, …]` or `{"operations": […]}`, checked whole.
pub fn dispatch_list(
    value: &MetricValue,
) -> Result<Vec<crate::model::DispatchedOperation>, CommandError> {
    use crate::context::dispatch::{OperationInput, check_list};
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Body {
        List(Vec<OperationInput>),
        Object { operations: Vec<OperationInput> },
    }
    let bad = |why: String| CommandError::BadArgument {
        argument: "Commands/Dispatch",
        why,
    };
    let MetricValue::String(text) = value else {
        return Err(bad(format!(
            "expected a String holding the list as JSON, found {value:?}"
        )));
    };
    let ops = match serde_json::from_str::<Body>(text) {
        Ok(Body::List(l)) => l,
        Ok(Body::Object { operations }) => operations,
        Err(e) => {
            return Err(bad(format!(
                "expected [operation, …] or {{\"operations\": […]}} as JSON: {e}"
            )));
        }
    };
    check_list(&ops, "operations").map_err(|ps| {
        bad(ps
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "))
    })
}

/// The whole metric list of a machine whose profile has `signals`: state, counts, context,
/// the writable commands (published as empty strings) and `Signals/<signal>` as Strings
/// (a signal's kind can change with the machine's reports; the text form is exact).
pub fn device_metrics(signals: &[String]) -> Vec<MetricDef> {
    let mut out: Vec<MetricDef> = STATE_METRICS
        .iter()
        .map(|(name, datatype)| MetricDef {
            name: name.to_string(),
            datatype: *datatype,
        })
        .collect();
    out.extend(WRITABLE.iter().map(|name| MetricDef {
        name: name.to_string(),
        datatype: DataType::String,
    }));
    out.extend(signals.iter().map(|s| MetricDef {
        name: format!("Signals/{s}"),
        datatype: DataType::String,
    }));
    out
}

pub(super) fn ms(t: Timestamp) -> u64 {
    (t.as_micros() / 1000).max(0) as u64
}

pub(super) fn text(s: Option<String>) -> Option<MetricValue> {
    s.map(MetricValue::String)
}

/// A metric update: name, value (None = null), time in ms.
pub type Update = (String, Option<MetricValue>, u64);

/// `State/…` (the canonical state and how many conditions are active), at `at`.
pub(super) fn state_values(m: &LiveMachine, at: u64) -> Vec<Update> {
    let c = &m.current;
    let word = |w: Option<String>| (text(w), at);
    [
        ("State/Shop", word(Some(m.state.to_string()))),
        ("State/Availability", word(Some(c.availability.to_string()))),
        ("State/Execution", word(c.execution.map(|e| e.to_string()))),
        (
            "State/ControllerMode",
            word(c.controller_mode.map(|e| e.to_string())),
        ),
        (
            "State/FunctionalMode",
            word(c.functional_mode.map(|e| e.to_string())),
        ),
        (
            "State/EmergencyStop",
            word(c.emergency_stop.map(|e| e.to_string())),
        ),
        ("State/Alarm", (Some(MetricValue::Boolean(c.alarm)), at)),
        (
            "State/Since",
            (m.since.map(|t| MetricValue::DateTime(ms(t))), at),
        ),
        (
            "State/ActiveConditions",
            (Some(MetricValue::Int64(m.conditions.len() as i64)), at),
        ),
    ]
    .into_iter()
    .map(|(name, (v, t))| (name.to_string(), v, t))
    .collect()
}

/// What the context layer says about the machine now (job, operation, operator, shift, how
/// its current span was classified, the running operation's schedule), at `at`.
pub(super) fn context_values(m: &LiveMachine, at: u64) -> Vec<Update> {
    let ctx = m.context.as_ref();
    let fb = ctx.and_then(|c| c.feedback.as_ref());
    let mut out = vec![
        (
            "Context/Job".to_string(),
            text(m.operation.as_ref().map(|o| o.job.clone())),
            at,
        ),
        (
            "Context/Operation".into(),
            text(m.operation.as_ref().map(|o| o.operation.clone())),
            at,
        ),
        ("Context/Operator".into(), text(m.operator.clone()), at),
        (
            "Context/Shift".into(),
            text(ctx.and_then(|c| c.context.shift.clone())),
            at,
        ),
        (
            "Context/PartNumber".into(),
            text(ctx.and_then(|c| c.context.part_number.clone())),
            at,
        ),
        (
            "Context/Provisional".into(),
            ctx.map(|c| MetricValue::Boolean(c.provisional)),
            at,
        ),
        (
            "Loss/Source".into(),
            text(ctx.map(|c| c.attribution.source.as_str().to_string())),
            at,
        ),
        (
            "Loss/StopReason".into(),
            text(
                m.stop_reason
                    .as_ref()
                    .map(|r| r.reason.as_str().to_string()),
            ),
            at,
        ),
        (
            "Counts/Scrap".into(),
            Some(MetricValue::Int64(
                fb.map_or(0, |f| f.parts.scrap.min(i64::MAX as u64) as i64),
            )),
            at,
        ),
        (
            "Counts/Rework".into(),
            Some(MetricValue::Int64(
                fb.map_or(0, |f| f.parts.rework.min(i64::MAX as u64) as i64),
            )),
            at,
        ),
        (
            "Schedule/CycleTime".into(),
            fb.and_then(|f| f.cycle_seconds).map(MetricValue::Double),
            at,
        ),
        (
            "Schedule/PartsRemaining".into(),
            fb.and_then(|f| f.remaining)
                .map(|r| MetricValue::Int64(r.min(i64::MAX as u64) as i64)),
            at,
        ),
        (
            "Schedule/EstimatedCompletion".into(),
            fb.and_then(|f| f.estimated_completion)
                .map(|t| MetricValue::DateTime(ms(t))),
            at,
        ),
        (
            "Schedule/AtRisk".into(),
            fb.map(|f| MetricValue::Boolean(f.at_risk)),
            at,
        ),
    ];
    out.extend(loss_values(m, at));
    out
}

/// `Loss/Category` and `Loss/Since`, at `at`.
pub(super) fn loss_values(m: &LiveMachine, at: u64) -> Vec<Update> {
    let loss = m.loss_category();
    vec![
        (
            "Loss/Category".into(),
            text(loss.as_ref().map(|(l, _)| l.as_str().to_string())),
            at,
        ),
        (
            "Loss/Since".into(),
            loss.and_then(|(_, s)| s)
                .map(|t| MetricValue::DateTime(ms(t))),
            at,
        ),
    ]
}

/// Every metric's current value (None = null) and time (ms), from the live view.
pub fn device_values(m: &LiveMachine, now: Timestamp) -> Vec<Update> {
    let since = m.since.map(ms).unwrap_or_else(|| ms(now));
    let c = &m.current;
    let mut out = state_values(m, since);
    let program_time = m
        .signals
        .get(crate::model::signals::PROGRAM)
        .map(|s| ms(s.time))
        .unwrap_or(since);
    out.push(("Program/Name".into(), text(c.program.clone()), program_time));
    let parts_time = m
        .signals
        .get(crate::model::signals::PART_COUNT)
        .map(|s| ms(s.time))
        .unwrap_or(since);
    out.push((
        "Counts/Parts".into(),
        c.part_count.map(MetricValue::Int64),
        parts_time,
    ));
    // Good: the operation's parts less scrap when the context layer tracks one, else the
    // counter.
    let good = match m.context.as_ref().and_then(|x| x.feedback.as_ref()) {
        Some(f) => Some(MetricValue::Int64(
            f.parts.good().min(i64::MAX as u64) as i64
        )),
        None => c.part_count.map(MetricValue::Int64),
    };
    out.push(("Counts/Good".into(), good, parts_time));
    let context_time = m.context.as_ref().map(|c| ms(c.at)).unwrap_or(since);
    out.extend(context_values(m, context_time));
    for (name, s) in &m.signals {
        let v = match &s.value {
            Value::Unavailable => None,
            other => Some(MetricValue::String(other.to_string())),
        };
        out.push((format!("Signals/{name}"), v, ms(s.time)));
    }
    out
}

/// A DCMD metric as a command for the context layer.
pub fn command(
    commands: &Commands,
    metric: &str,
    value: &MetricValue,
) -> Result<Command, CommandError> {
    let text = match value {
        MetricValue::String(s) => s.trim().to_string(),
        MetricValue::Boolean(b) => b.to_string(),
        other => format!("{other:?}"),
    };
    match metric {
        "Commands/StopReason" => {
            let (code, note) = text.split_once(':').unwrap_or((text.as_str(), ""));
            commands.stop_reason(code, note)
        }
        "Commands/SignIn" => Ok(Command::SignIn { operator: text }),
        "Commands/SignOut" => Ok(Command::SignOut),
        "Commands/ConfirmOperation" => match text.split_once('/') {
            Some((job, op)) => Ok(Command::ConfirmOperation {
                job: job.trim().to_string(),
                operation: op.trim().to_string(),
            }),
            None => Err(CommandError::BadArgument {
                argument: "Commands/ConfirmOperation",
                why: format!("expected \"job/operation\", like \"24173/20\", found {text:?}"),
            }),
        },
        other => Err(CommandError::BadArgument {
            argument: "metric",
            why: format!("{other:?} is not one of {WRITABLE:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::journal::{Journal, JournalOptions};
    use crate::model::{MachineId, ShopState, Taxonomy};

    #[test]
    fn a_dispatch_dcmd_is_a_json_list_checked_whole() {
        let ok = MetricValue::String(
            r#"{"operations":[{"job":"24173","operation":"20","programs":["O1"],"quantity":5}]}"#
                .into(),
        );
        let list = dispatch_list(&ok).unwrap();
        assert_eq!((list[0].job.as_str(), list[0].quantity), ("24173", Some(5)));
        let bad = MetricValue::String(r#"[{"job":"1","operation":"10","quantity":0}]"#.into());
        let e = dispatch_list(&bad).unwrap_err().to_string();
        assert!(e.contains("operations[0].quantity"), "{e}");
        assert!(dispatch_list(&MetricValue::Int64(3)).is_err());
        assert!(dispatch_list(&MetricValue::String("not json".into())).is_err());
    }

    #[test]
    fn every_value_published_is_declared_in_the_birth_with_its_type() {
        let signals = vec!["spindle_speed".to_string(), "program".to_string()];
        let defs = device_metrics(&signals);
        let mut m = LiveMachine::new(
            MachineId::new("m1").unwrap(),
            "M1".into(),
            "p".into(),
            "shdr".into(),
        );
        m.state = ShopState::Idle;
        m.current.part_count = Some(-2);
        m.signals.insert(
            "spindle_speed".into(),
            crate::northbound::live::LiveSignal {
                value: Value::Float(1200.5),
                quality: Default::default(),
                time: Timestamp::from_micros(5_000_000),
            },
        );
        let values = device_values(&m, Timestamp::from_micros(9_000_000));
        for (name, v, _) in &values {
            let def = defs
                .iter()
                .find(|d| &d.name == name)
                .unwrap_or_else(|| panic!("{name} is published but not declared"));
            if let Some(v) = v {
                assert_eq!(v.datatype(), def.datatype, "{name}");
            }
        }
        let get = |n: &str| values.iter().find(|(name, _, _)| name == n).unwrap();
        assert_eq!(get("Counts/Parts").1, Some(MetricValue::Int64(-2)));
        assert_eq!(
            get("Loss/Category").1,
            Some(MetricValue::String("unexplained".into()))
        );
        assert_eq!(
            get("Signals/spindle_speed").1,
            Some(MetricValue::String("1200.5".into()))
        );
        assert_eq!(get("Signals/spindle_speed").2, 5_000);
    }

    #[test]
    fn dcmd_values_become_checked_commands() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
        let c = Commands::new(
            journal,
            Taxonomy::default(),
            [MachineId::new("m1").unwrap()],
            Clock::system(),
        );
        let s = |t: &str| MetricValue::String(t.into());
        assert!(matches!(
            command(&c, "Commands/StopReason", &s("setup: new fixture")),
            Ok(Command::StopReason { reason, note: Some(n) }) if reason.as_str() == "setup" && n == "new fixture"
        ));
        assert!(command(&c, "Commands/StopReason", &s("coffee")).is_err());
        assert_eq!(
            command(&c, "Commands/ConfirmOperation", &s("24173/20")).unwrap(),
            Command::ConfirmOperation {
                job: "24173".into(),
                operation: "20".into()
            }
        );
        assert!(command(&c, "Commands/ConfirmOperation", &s("24173")).is_err());
        assert_eq!(
            command(&c, "Commands/SignOut", &MetricValue::Boolean(true)).unwrap(),
            Command::SignOut
        );
    }
}
