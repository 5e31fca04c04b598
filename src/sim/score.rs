//! How well the bridge's classified intervals match what the simulated machines really did
//! (`truth.jsonl`): time overlap per (true category, bridge category), so every second the
//! bridge saw counts once. Pure: the CLI (`shopbridge score`) reads the files.
//!
//! The bridge's record of a machine starts when it first heard from it; the comparison covers
//! each machine from its first interval to its last. Inside that span, time no interval covers
//! is *unaccounted* (the goal is none).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use super::TruthLine;
use crate::model::{MachineId, OperationEvent, OperationRecord, StateInterval, Timestamp};

/// The comparison's result.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Score {
    /// Seconds by (true category, bridge category).
    pub confusion: BTreeMap<(String, String), f64>,
    pub machines: usize,
    /// Seconds compared.
    pub compared: f64,
    /// Seconds inside a machine's span that no bridge interval covers.
    pub unaccounted: f64,
    /// Seconds (with a true job) whose bridge interval names the same job.
    pub job_right: f64,
    /// Seconds with a true job.
    pub job_total: f64,
    pub operation_starts: usize,
    pub ambiguous_starts: usize,
    pub confirmations: usize,
    /// Intervals written again (operator reasons, confirmations).
    pub revisions: usize,
}

impl Score {
    pub fn correct(&self) -> f64 {
        self.confusion
            .iter()
            .filter(|((t, b), _)| t == b)
            .map(|(_, s)| s)
            .sum()
    }

    pub fn correct_pct(&self) -> f64 {
        if self.compared > 0.0 {
            100.0 * self.correct() / self.compared
        } else {
            0.0
        }
    }

    /// Operation starts the bridge attributed from the program alone (no operator input).
    pub fn automatic_starts_pct(&self) -> f64 {
        if self.operation_starts == 0 {
            return 100.0;
        }
        100.0 * (self.operation_starts - self.ambiguous_starts) as f64
            / self.operation_starts as f64
    }

    /// The report `shopbridge score` prints; its last line is `correct_time_pct=NN.N`.
    pub fn report(&self) -> String {
        let mut cats: Vec<&str> = self
            .confusion
            .keys()
            .flat_map(|(t, b)| [t.as_str(), b.as_str()])
            .collect();
        cats.sort_unstable();
        cats.dedup();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "compared {:.1} h of machine time on {} machine{} (each from the bridge's first interval to its last)",
            self.compared / 3600.0,
            self.machines,
            if self.machines == 1 { "" } else { "s" }
        );
        let _ = writeln!(
            out,
            "{:<20} {:>9} {:>9} {:>10} {:>7}",
            "category", "truth_h", "bridge_h", "precision", "recall"
        );
        for c in cats {
            // (`+ 0.0`: an empty float sum is -0.0.)
            let truth: f64 = self
                .confusion
                .iter()
                .filter(|((t, _), _)| t == c)
                .map(|(_, s)| s)
                .sum::<f64>()
                + 0.0;
            let bridge: f64 = self
                .confusion
                .iter()
                .filter(|((_, b), _)| b == c)
                .map(|(_, s)| s)
                .sum::<f64>()
                + 0.0;
            let right = self
                .confusion
                .get(&(c.to_string(), c.to_string()))
                .copied()
                .unwrap_or(0.0);
            let pct = |num: f64, den: f64| {
                if den > 0.0 {
                    format!("{:.1}%", 100.0 * num / den)
                } else {
                    "-".to_string()
                }
            };
            let _ = writeln!(
                out,
                "{:<20} {:>9.2} {:>9.2} {:>10} {:>7}",
                c,
                truth / 3600.0,
                bridge / 3600.0,
                pct(right, bridge),
                pct(right, truth)
            );
        }
        let mut worst: Vec<(&(String, String), &f64)> =
            self.confusion.iter().filter(|((t, b), _)| t != b).collect();
        worst.sort_by(|a, b| b.1.total_cmp(a.1));
        for ((t, b), s) in worst.iter().take(8) {
            let _ = writeln!(out, "  mistaken: {t} as {b}: {:.2} h", **s / 3600.0);
        }
        let _ = writeln!(out, "unaccounted_seconds={:.0}", self.unaccounted);
        let _ = writeln!(
            out,
            "job_attributed_pct={:.1}",
            if self.job_total > 0.0 {
                100.0 * self.job_right / self.job_total
            } else {
                0.0
            }
        );
        let _ = writeln!(
            out,
            "operation_starts={} ambiguous={} confirmed={} automatic_starts_pct={:.1}",
            self.operation_starts,
            self.ambiguous_starts,
            self.confirmations,
            self.automatic_starts_pct()
        );
        let _ = writeln!(out, "revisions={}", self.revisions);
        let _ = write!(out, "correct_time_pct={:.1}", self.correct_pct());
        out
    }
}

/// Keeps the newest revision of each interval (same machine and start).
pub fn latest(intervals: impl IntoIterator<Item = StateInterval>) -> (Vec<StateInterval>, usize) {
    let mut by: HashMap<(MachineId, Timestamp), StateInterval> = HashMap::new();
    let mut revisions = 0;
    for i in intervals {
        if i.revision.is_some() {
            revisions += 1;
        }
        by.insert((i.machine.clone(), i.start), i);
    }
    let mut v: Vec<StateInterval> = by.into_values().collect();
    v.sort_by(|a, b| (&a.machine, a.start).cmp(&(&b.machine, b.start)));
    (v, revisions)
}

fn secs(a: Timestamp, b: Timestamp) -> f64 {
    b.micros_since(a) as f64 / 1e6
}

/// Compares the bridge's intervals (newest revisions) and operation records with the truth.
pub fn score(
    intervals: &[StateInterval],
    operations: &[OperationRecord],
    truth: &[TruthLine],
) -> Score {
    let mut s = Score::default();
    let mut by_machine: BTreeMap<&MachineId, Vec<&StateInterval>> = BTreeMap::new();
    for i in intervals {
        by_machine.entry(&i.machine).or_default().push(i);
    }
    let mut truth_by: BTreeMap<&MachineId, Vec<&TruthLine>> = BTreeMap::new();
    for t in truth {
        truth_by.entry(&t.machine).or_default().push(t);
    }
    for (m, mut ivs) in by_machine {
        ivs.sort_by_key(|i| i.start);
        let Some(tr) = truth_by.get_mut(m) else {
            continue;
        };
        tr.sort_by_key(|t| t.start);
        let (Some(first), Some(last)) = (ivs.first(), ivs.last()) else {
            continue;
        };
        let (from, to) = (first.start, last.end);
        s.machines += 1;
        // Holes between intervals.
        for w in ivs.windows(2) {
            if w[1].start > w[0].end {
                s.unaccounted += secs(w[0].end, w[1].start);
            }
        }
        // Sweep the truth against the intervals.
        let mut k = 0;
        for t in tr.iter() {
            let (ts, te) = (t.start.max(from), t.end.min(to));
            if te <= ts {
                continue;
            }
            while k < ivs.len() && ivs[k].end <= ts {
                k += 1;
            }
            let mut j = k;
            while j < ivs.len() && ivs[j].start < te {
                let i = ivs[j];
                let (a, b) = (ts.max(i.start), te.min(i.end));
                if b > a {
                    let d = secs(a, b);
                    let bridge = i
                        .category
                        .as_ref()
                        .map_or("none".to_string(), |c| c.to_string());
                    *s.confusion
                        .entry((t.category.to_string(), bridge))
                        .or_default() += d;
                    s.compared += d;
                    if let Some(job) = &t.job {
                        s.job_total += d;
                        if i.context.job.as_ref() == Some(job) {
                            s.job_right += d;
                        }
                    }
                }
                j += 1;
            }
        }
    }
    for o in operations {
        match &o.event {
            // (A resumption after a pause is no new start.)
            OperationEvent::Started { .. } => s.operation_starts += 1,
            OperationEvent::Ambiguous { .. } => s.ambiguous_starts += 1,
            OperationEvent::Confirmed { .. } => s.confirmations += 1,
            _ => {}
        }
    }
    // A start settled by a confirmation writes a second `started`: count the operation once.
    s.operation_starts = s.operation_starts.saturating_sub(
        operations
            .iter()
            .filter(|o| matches!(&o.event, OperationEvent::Started { by } if by == "confirmation"))
            .count(),
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JobContext, MachineState, ShopState, TimeCategory};

    fn iv(start: i64, end: i64, cat: &str, job: Option<&str>) -> StateInterval {
        StateInterval {
            machine: MachineId::new("m").unwrap(),
            start: Timestamp::from_micros(start * 1_000_000),
            end: Timestamp::from_micros(end * 1_000_000),
            shop_state: ShopState::Idle,
            state: MachineState::default(),
            category: TimeCategory::parse(cat).ok(),
            context: JobContext {
                job: job.map(str::to_string),
                ..JobContext::default()
            },
            attribution: None,
            provisional: false,
            revision: None,
        }
    }

    fn truth(start: i64, end: i64, cat: &str, job: Option<&str>) -> TruthLine {
        TruthLine {
            machine: MachineId::new("m").unwrap(),
            start: Timestamp::from_micros(start * 1_000_000),
            end: Timestamp::from_micros(end * 1_000_000),
            seconds: (end - start) as f64,
            category: TimeCategory::parse(cat).unwrap(),
            job: job.map(str::to_string),
            operation: None,
            part_number: None,
            program: None,
            shift: None,
            activity: String::new(),
        }
    }

    #[test]
    fn overlap_is_counted_once_and_holes_are_unaccounted() {
        let mut revised = iv(100, 200, "starved", Some("1"));
        revised.revision = Some(crate::model::Revision {
            n: 1,
            why: "operator reason".into(),
            previous_category: TimeCategory::parse("unexplained").ok(),
            previous_source: None,
            previous_job: None,
            previous_operation: None,
            at: Timestamp::from_micros(0),
            by: None,
        });
        let (ivs, revisions) = latest([
            iv(10, 100, "production", Some("1")),
            iv(100, 200, "unexplained", Some("1")),
            revised,
            iv(210, 300, "setup", None),
        ]);
        assert_eq!((ivs.len(), revisions), (3, 1));
        let t = [
            truth(0, 150, "production", Some("1")),
            truth(150, 250, "starved", Some("1")),
            truth(250, 400, "setup", None),
        ];
        let s = score(&ivs, &[], &t);
        // Compared from 10 to 300, minus the 10 s hole.
        assert_eq!(s.compared, 280.0);
        assert_eq!(s.unaccounted, 10.0);
        assert_eq!(
            s.confusion.get(&("production".into(), "starved".into())),
            Some(&50.0)
        );
        assert_eq!(s.correct(), 90.0 + 50.0 + 50.0);
        assert!(
            s.report().ends_with("correct_time_pct=67.9"),
            "{}",
            s.report()
        );
        assert_eq!(s.job_total, 230.0);
        assert_eq!(s.job_right, 190.0);
    }
}
