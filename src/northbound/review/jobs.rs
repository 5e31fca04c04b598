//! Jobs and their projected completion: the operation on each machine now (with the context
//! layer's schedule feedback: measured cycle time, parts made, estimated completion) and the
//! operations queued behind it on the machine's dispatch list, each projected to start when
//! the one before it ends (planned setup + quantity × cycle time).

use super::daily::JobStatus;
use crate::model::{DispatchedOperation, MachineId, ScheduleFeedback, Timestamp};

/// What is known of one machine's work.
pub struct MachineWork<'a> {
    pub machine: &'a MachineId,
    pub dispatch: &'a [DispatchedOperation],
    /// The operation in process (job, operation) and its feedback.
    pub current: Option<(&'a str, &'a str, Option<&'a ScheduleFeedback>)>,
}

fn micros(secs: f64) -> i64 {
    (secs * 1e6).round() as i64
}

fn hhmm(t: Timestamp) -> String {
    let s = t.to_rfc3339();
    s.get(11..16).unwrap_or(&s).to_string()
}

/// Every dispatched operation of `work` (the current one first, then the ones after it in the
/// list), projected from `now`.
pub fn project(work: &MachineWork<'_>, now: Timestamp) -> Vec<JobStatus> {
    let mut out = Vec::new();
    // Operations before the one in process are done (the list is in the ERP's order).
    let (first_queued, mut cursor) = match work.current {
        Some((job, operation, feedback)) => {
            let pos = work
                .dispatch
                .iter()
                .position(|o| o.job == job && o.operation == operation);
            let op = pos.map(|p| &work.dispatch[p]);
            let est = feedback.and_then(|f| f.estimated_completion);
            let due = feedback.and_then(|f| f.due).or(op.and_then(|o| o.due));
            let good = feedback.map_or(0, |f| f.parts.good());
            let quantity = feedback
                .and_then(|f| f.quantity)
                .or(op.and_then(|o| o.quantity));
            out.push(status(
                work.machine,
                job,
                operation,
                op.and_then(|o| o.part_number.clone()),
                due,
                est,
                quantity,
                good,
                "running",
                est.is_none()
                    .then_some("no estimate yet (no cycle time measured)"),
            ));
            (pos.map_or(0, |p| p + 1), est)
        }
        None => (0, Some(now)),
    };
    for op in work.dispatch.iter().skip(first_queued) {
        let duration = match (op.quantity, op.cycle_seconds) {
            (Some(q), Some(c)) => Some(op.setup_seconds.unwrap_or(0.0) + q as f64 * c),
            _ => None,
        };
        let est = match (cursor, duration) {
            (Some(c), Some(d)) => Some(Timestamp::from_micros(
                c.max(now).as_micros().saturating_add(micros(d)),
            )),
            _ => None,
        };
        let missing = if cursor.is_none() {
            Some("no estimate: the operation before it has none")
        } else if duration.is_none() {
            Some("no estimate: the dispatch list gives no quantity or cycle time")
        } else {
            None
        };
        out.push(status(
            work.machine,
            &op.job,
            &op.operation,
            op.part_number.clone(),
            op.due,
            est,
            op.quantity,
            0,
            "queued",
            missing,
        ));
        cursor = est;
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn status(
    machine: &MachineId,
    job: &str,
    operation: &str,
    part_number: Option<String>,
    due: Option<Timestamp>,
    est: Option<Timestamp>,
    quantity: Option<u64>,
    good: u64,
    state: &str,
    missing: Option<&str>,
) -> JobStatus {
    let late = match (due, est) {
        (Some(d), Some(e)) if e > d => Some((e.as_micros() - d.as_micros()) as f64 / 1e6),
        _ => None,
    };
    let why = match (late, due, est, missing) {
        (Some(_), Some(d), Some(e), _) => format!(
            "estimated completion {} is after due {} (UTC)",
            hhmm(e),
            hhmm(d)
        ),
        (_, _, _, Some(m)) => m.to_string(),
        (None, None, _, None) => "no due date".to_string(),
        _ => "on time".to_string(),
    };
    JobStatus {
        job: job.to_string(),
        operation: operation.to_string(),
        machine: machine.clone(),
        part_number,
        due,
        estimated_completion: est,
        quantity,
        good,
        status: state.to_string(),
        at_risk: late.is_some(),
        late_by_seconds: late,
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PartCounts;

    fn op(job: &str, q: u64, cycle: f64, due: i64) -> DispatchedOperation {
        DispatchedOperation {
            job: job.into(),
            operation: "10".into(),
            quantity: Some(q),
            cycle_seconds: Some(cycle),
            setup_seconds: Some(600.0),
            due: Some(Timestamp::from_micros(due * 1_000_000)),
            ..DispatchedOperation::default()
        }
    }

    #[test]
    fn queued_operations_start_when_the_one_before_ends() {
        let m = MachineId::new("m1").unwrap();
        let list = vec![
            op("A", 10, 60.0, 5000),
            op("B", 10, 60.0, 3000),
            op("C", 1, 60.0, 100_000),
        ];
        let fb = ScheduleFeedback {
            cycle_seconds: Some(60.0),
            parts: PartCounts {
                made: 4,
                scrap: 1,
                rework: 0,
            },
            quantity: Some(10),
            remaining: Some(7),
            estimated_completion: Some(Timestamp::from_micros(1_420 * 1_000_000)),
            due: Some(Timestamp::from_micros(5_000 * 1_000_000)),
            at_risk: false,
        };
        let work = MachineWork {
            machine: &m,
            dispatch: &list,
            current: Some(("A", "10", Some(&fb))),
        };
        let v = project(&work, Timestamp::from_micros(1_000 * 1_000_000));
        assert_eq!(v.len(), 3);
        assert_eq!(
            (v[0].status.as_str(), v[0].good, v[0].at_risk),
            ("running", 3, false)
        );
        // B starts at 1420, takes 600 + 600: done at 2620, due 3000: on time.
        assert_eq!(
            v[1].estimated_completion,
            Some(Timestamp::from_micros(2_620 * 1_000_000))
        );
        assert!(!v[1].at_risk);
        let list = vec![op("A", 10, 60.0, 5000), op("B", 30, 60.0, 3000)];
        let work = MachineWork {
            machine: &m,
            dispatch: &list,
            current: Some(("A", "10", Some(&fb))),
        };
        let v = project(&work, Timestamp::from_micros(1_000 * 1_000_000));
        // B: 1420 + 600 + 1800 = 3820 > 3000.
        assert!(v[1].at_risk);
        assert_eq!(v[1].late_by_seconds, Some(820.0));
        assert!(v[1].why.contains("after due"), "{}", v[1].why);
    }
}
