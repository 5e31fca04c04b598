//! The daily review: one local day of every machine, by shift — where the time went, the
//! biggest losses (Pareto by category, machine and job), shift against shift, the time nobody
//! has explained yet, and the jobs at risk. Pure: spans in, report out.
//!
//! Definitions (also in docs/data-model.md):
//! - `seconds`: time covered by closed intervals inside the day (what the bridge saw);
//! - `planned_seconds`: time the calendar planned off (attribution source `planner`, or the
//!   category `planned_downtime`): breaks, off shift, holidays, planned windows;
//! - `production_seconds`: category `production`;
//! - `loss_seconds`: everything else (setup, waiting, faults, unexplained …);
//! - `utilization` = production / seconds; `availability` = production / (seconds − planned);
//! - `unobserved_seconds`: the part of the day no closed interval covers (the bridge was not
//!   running, the link had not come up, or the span is still open).

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::index::{Inner, Span};
use crate::model::{CategorySource, MachineId, Timestamp};

pub const PRODUCTION: &str = "production";
pub const UNEXPLAINED: &str = "unexplained";
pub const PLANNED_DOWNTIME: &str = "planned_downtime";

/// Seconds by category, and what they add up to.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Summary {
    pub seconds: f64,
    pub production_seconds: f64,
    pub loss_seconds: f64,
    pub planned_seconds: f64,
    pub unexplained_seconds: f64,
    pub unobserved_seconds: f64,
    /// production / seconds (null when nothing was observed).
    pub utilization: Option<f64>,
    /// production / (seconds − planned) (null when no time was planned for production).
    pub availability: Option<f64>,
    /// Seconds per category (`production` and every loss category seen).
    pub categories: BTreeMap<String, f64>,
}

impl Summary {
    fn add(&mut self, category: &str, planned: bool, secs: f64) {
        self.seconds += secs;
        *self.categories.entry(category.to_string()).or_default() += secs;
        if category == PRODUCTION {
            self.production_seconds += secs;
        } else if planned {
            self.planned_seconds += secs;
        } else {
            self.loss_seconds += secs;
        }
        if category == UNEXPLAINED {
            self.unexplained_seconds += secs;
        }
    }

    fn merge(&mut self, o: &Summary) {
        self.seconds += o.seconds;
        self.production_seconds += o.production_seconds;
        self.loss_seconds += o.loss_seconds;
        self.planned_seconds += o.planned_seconds;
        self.unexplained_seconds += o.unexplained_seconds;
        self.unobserved_seconds += o.unobserved_seconds;
        for (k, v) in &o.categories {
            *self.categories.entry(k.clone()).or_default() += v;
        }
    }

    fn finish(&mut self) {
        let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
        self.utilization = ratio(self.production_seconds, self.seconds);
        self.availability = ratio(self.production_seconds, self.seconds - self.planned_seconds);
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShiftSummary {
    /// The shift's name (null: off shift).
    pub shift: Option<String>,
    #[serde(flatten)]
    pub summary: Summary,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MachineSummary {
    pub machine: MachineId,
    pub name: String,
    pub total: Summary,
    pub by_shift: Vec<ShiftSummary>,
}

/// A shift worked on the day, from the calendar.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShiftWindow {
    pub name: String,
    pub start: Timestamp,
    pub end: Timestamp,
}

/// One bar of a Pareto chart: loss seconds, its share of all loss, and the running total.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ParetoBar {
    pub key: String,
    pub label: String,
    pub seconds: f64,
    pub share: f64,
    pub cumulative: f64,
    /// The biggest loss category within this bar (machine and job Paretos).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_category: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Pareto {
    pub by_category: Vec<ParetoBar>,
    pub by_machine: Vec<ParetoBar>,
    pub by_job: Vec<ParetoBar>,
}

/// A span nobody has explained yet (category `unexplained`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UnexplainedSpan {
    /// Its interval record: `GET /api/v1/intervals/{seq}`.
    pub seq: u64,
    pub machine: MachineId,
    pub start: Timestamp,
    pub end: Timestamp,
    /// Seconds inside the day.
    pub seconds: f64,
    pub shift: Option<String>,
    pub job: Option<String>,
    pub operation: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct UnexplainedTotal {
    pub count: u64,
    pub seconds: f64,
}

/// A dispatched operation with its projected completion.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobStatus {
    pub job: String,
    pub operation: String,
    pub machine: MachineId,
    pub part_number: Option<String>,
    pub due: Option<Timestamp>,
    pub estimated_completion: Option<Timestamp>,
    pub quantity: Option<u64>,
    pub good: u64,
    /// `running` (on the machine now) or `queued` (later in its dispatch list).
    pub status: String,
    pub at_risk: bool,
    pub late_by_seconds: Option<f64>,
    /// Why it is at risk, or why it cannot be told.
    pub why: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DailyReport {
    /// The local date reviewed.
    pub date: String,
    /// Today's local date (by the bridge's clock), for a page's "today so far".
    pub today: String,
    /// The time zone the day is taken in.
    pub zone: String,
    pub from: Timestamp,
    pub to: Timestamp,
    pub generated_at: Timestamp,
    /// The report reflects the journal through this seq (records after it are not in it).
    pub through_seq: u64,
    pub compute_ms: f64,
    /// False while the day is still going.
    pub complete: bool,
    pub shifts: Vec<ShiftWindow>,
    pub totals: Summary,
    pub by_shift: Vec<ShiftSummary>,
    pub machines: Vec<MachineSummary>,
    pub pareto: Pareto,
    pub jobs_at_risk: Vec<JobStatus>,
    /// The longest unexplained spans (at most 50), longest first.
    pub unexplained: Vec<UnexplainedSpan>,
    pub unexplained_total: UnexplainedTotal,
}

/// What the report is computed from.
pub struct DayInput<'a> {
    pub date: String,
    pub today: String,
    pub zone: String,
    pub from: Timestamp,
    pub to: Timestamp,
    pub now: Timestamp,
    pub shifts: Vec<ShiftWindow>,
    /// Every configured machine and its name, in display order.
    pub machines: &'a [(MachineId, String)],
    pub jobs: Vec<JobStatus>,
    pub through_seq: u64,
}

fn is_planned(category: &str, s: &Span) -> bool {
    s.source == Some(CategorySource::Planner) || category == PLANNED_DOWNTIME
}

fn pareto(
    items: BTreeMap<String, (String, f64, BTreeMap<String, f64>)>,
    total: f64,
) -> Vec<ParetoBar> {
    let mut v: Vec<_> = items.into_iter().filter(|(_, x)| x.1 > 0.0).collect();
    v.sort_by(|a, b| b.1.1.total_cmp(&a.1.1).then_with(|| a.0.cmp(&b.0)));
    let mut cumulative = 0.0;
    v.into_iter()
        .map(|(key, (label, seconds, cats))| {
            let share = if total > 0.0 { seconds / total } else { 0.0 };
            cumulative += share;
            ParetoBar {
                key,
                label,
                seconds,
                share,
                cumulative: cumulative.min(1.0),
                top_category: cats
                    .into_iter()
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(k, _)| k),
            }
        })
        .collect()
}

/// Computes the review of `input`'s day from the spans in `index`.
pub fn daily(index: &Inner, input: DayInput<'_>) -> DailyReport {
    let started = std::time::Instant::now();
    let end = input.to.min(input.now.max(input.from));
    let window = (end.as_micros() - input.from.as_micros()).max(0) as f64 / 1e6;
    let names = &index.strings;
    let order: BTreeMap<&str, usize> = input
        .shifts
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let shift_rank = |s: &Option<String>| match s {
        Some(n) => (
            order.get(n.as_str()).copied().unwrap_or(usize::MAX - 1),
            n.clone(),
        ),
        None => (usize::MAX, String::new()),
    };

    let mut totals = Summary::default();
    let mut by_shift: BTreeMap<Option<String>, Summary> = BTreeMap::new();
    let mut machines = Vec::new();
    let mut by_category: BTreeMap<String, (String, f64, BTreeMap<String, f64>)> = BTreeMap::new();
    let mut by_machine = BTreeMap::new();
    let mut by_job: BTreeMap<String, (String, f64, BTreeMap<String, f64>)> = BTreeMap::new();
    let mut unexplained = Vec::new();
    let mut unexplained_total = UnexplainedTotal::default();

    for (id, name) in input.machines {
        let mut total = Summary::default();
        let mut shifts: BTreeMap<Option<String>, Summary> = BTreeMap::new();
        let mut machine_losses: BTreeMap<String, f64> = BTreeMap::new();
        for s in index.spans(id, input.from, end) {
            let secs = s.seconds_within(input.from, end);
            if secs <= 0.0 {
                continue;
            }
            let category = names.get(s.category).unwrap_or(UNEXPLAINED);
            let planned = is_planned(category, &s);
            let shift = names.get(s.shift).map(str::to_string);
            total.add(category, planned, secs);
            shifts
                .entry(shift.clone())
                .or_default()
                .add(category, planned, secs);
            if category == PRODUCTION || planned {
                continue;
            }
            by_category
                .entry(category.to_string())
                .or_insert_with(|| (category.to_string(), 0.0, BTreeMap::new()))
                .1 += secs;
            *machine_losses.entry(category.to_string()).or_default() += secs;
            let job = names.get(s.job).unwrap_or("");
            let e = by_job.entry(job.to_string()).or_insert_with(|| {
                (
                    if job.is_empty() {
                        "no job".to_string()
                    } else {
                        job.to_string()
                    },
                    0.0,
                    BTreeMap::new(),
                )
            });
            e.1 += secs;
            *e.2.entry(category.to_string()).or_default() += secs;
            if category == UNEXPLAINED {
                unexplained_total.count += 1;
                unexplained_total.seconds += secs;
                unexplained.push(UnexplainedSpan {
                    seq: s.seq,
                    machine: id.clone(),
                    start: s.start,
                    end: s.end,
                    seconds: secs,
                    shift,
                    job: names.get(s.job).map(str::to_string),
                    operation: names.get(s.operation).map(str::to_string),
                });
            }
        }
        total.unobserved_seconds = (window - total.seconds).max(0.0);
        let loss: f64 = machine_losses.values().sum();
        by_machine.insert(
            id.as_str().to_string(),
            (name.clone(), loss, machine_losses),
        );
        for (k, v) in &shifts {
            by_shift.entry(k.clone()).or_default().merge(v);
        }
        totals.merge(&total);
        total.finish();
        let mut shifts: Vec<ShiftSummary> = shifts
            .into_iter()
            .map(|(shift, mut summary)| {
                summary.finish();
                ShiftSummary { shift, summary }
            })
            .collect();
        shifts.sort_by_key(|s| shift_rank(&s.shift));
        machines.push(MachineSummary {
            machine: id.clone(),
            name: name.clone(),
            total,
            by_shift: shifts,
        });
    }
    totals.finish();
    let loss_total = totals.loss_seconds;
    let mut by_shift: Vec<ShiftSummary> = by_shift
        .into_iter()
        .map(|(shift, mut summary)| {
            summary.finish();
            ShiftSummary { shift, summary }
        })
        .collect();
    by_shift.sort_by_key(|s| shift_rank(&s.shift));
    unexplained.sort_by(|a, b| b.seconds.total_cmp(&a.seconds).then(a.seq.cmp(&b.seq)));
    unexplained.truncate(50);
    let mut jobs_at_risk: Vec<JobStatus> = input.jobs.into_iter().filter(|j| j.at_risk).collect();
    jobs_at_risk.sort_by(|a, b| {
        b.late_by_seconds
            .unwrap_or(0.0)
            .total_cmp(&a.late_by_seconds.unwrap_or(0.0))
    });
    DailyReport {
        date: input.date,
        today: input.today,
        zone: input.zone,
        from: input.from,
        to: input.to,
        generated_at: input.now,
        through_seq: input.through_seq,
        compute_ms: started.elapsed().as_secs_f64() * 1e3,
        complete: input.now >= input.to,
        shifts: input.shifts,
        totals,
        by_shift,
        machines,
        pareto: Pareto {
            by_category: pareto(by_category, loss_total),
            by_machine: pareto(by_machine, loss_total),
            by_job: pareto(by_job, loss_total),
        },
        jobs_at_risk,
        unexplained,
        unexplained_total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        Attribution, JobContext, MachineState, ShopState, StateInterval, TimeCategory,
    };

    fn t(s: i64) -> Timestamp {
        Timestamp::from_micros(s * 1_000_000)
    }

    fn add(ix: &mut Inner, seq: u64, m: &str, span: (i64, i64), cat: &str, shift: &str, job: &str) {
        let source = if cat == PLANNED_DOWNTIME {
            CategorySource::Planner
        } else {
            CategorySource::Rule
        };
        ix.insert(
            seq,
            &StateInterval {
                machine: MachineId::new(m).unwrap(),
                start: t(span.0),
                end: t(span.1),
                shop_state: ShopState::Idle,
                state: MachineState::default(),
                category: Some(TimeCategory::parse(cat).unwrap()),
                context: JobContext {
                    job: (!job.is_empty()).then(|| job.to_string()),
                    shift: (!shift.is_empty()).then(|| shift.to_string()),
                    ..JobContext::default()
                },
                attribution: Some(Attribution {
                    source,
                    rule: None,
                    confidence: 1.0,
                    by: None,
                    record: None,
                }),
                provisional: false,
                revision: None,
            },
        );
    }

    #[test]
    fn totals_shifts_paretos_and_unexplained_add_up() {
        let mut ix = Inner::default();
        // A day is [1000, 2000); m1 has a span reaching in from before the day.
        add(&mut ix, 1, "m1", (900, 1100), "setup", "1", "J1");
        add(&mut ix, 2, "m1", (1100, 1500), "production", "1", "J1");
        add(&mut ix, 3, "m1", (1500, 1600), "unexplained", "2", "J1");
        add(&mut ix, 4, "m1", (1600, 2100), "planned_downtime", "", "");
        add(&mut ix, 5, "m2", (1000, 1300), "unexplained", "1", "");
        add(&mut ix, 6, "m2", (1300, 1400), "production", "1", "J2");
        let machines = vec![
            (MachineId::new("m1").unwrap(), "One".to_string()),
            (MachineId::new("m2").unwrap(), "Two".to_string()),
        ];
        let r = daily(
            &ix,
            DayInput {
                date: "d".into(),
                today: "d".into(),
                zone: "UTC".into(),
                from: t(1000),
                to: t(2000),
                now: t(5000),
                shifts: vec![
                    ShiftWindow {
                        name: "1".into(),
                        start: t(1000),
                        end: t(1500),
                    },
                    ShiftWindow {
                        name: "2".into(),
                        start: t(1500),
                        end: t(2000),
                    },
                ],
                machines: &machines,
                jobs: Vec::new(),
                through_seq: 6,
            },
        );
        assert!(r.complete);
        let tot = &r.totals;
        assert_eq!(tot.seconds, 1000.0 + 400.0);
        assert_eq!(tot.production_seconds, 400.0 + 100.0);
        assert_eq!(tot.planned_seconds, 400.0);
        assert_eq!(tot.loss_seconds, 100.0 + 100.0 + 300.0);
        assert_eq!(tot.unexplained_seconds, 400.0);
        assert_eq!(tot.unobserved_seconds, 600.0);
        assert_eq!(tot.utilization, Some(500.0 / 1400.0));
        assert_eq!(tot.availability, Some(500.0 / 1000.0));
        // Shift against shift, in the calendar's order, off shift last.
        let names: Vec<_> = r.by_shift.iter().map(|s| s.shift.clone()).collect();
        assert_eq!(names, vec![Some("1".into()), Some("2".into()), None]);
        assert_eq!(r.by_shift[0].summary.seconds, 900.0);
        // Pareto by category: unexplained 400 of 500 loss, then setup.
        let cats: Vec<_> = r
            .pareto
            .by_category
            .iter()
            .map(|b| (b.key.as_str(), b.seconds))
            .collect();
        assert_eq!(cats, vec![("unexplained", 400.0), ("setup", 100.0)]);
        assert!((r.pareto.by_category[1].cumulative - 1.0).abs() < 1e-9);
        let jobs: Vec<_> = r
            .pareto
            .by_job
            .iter()
            .map(|b| (b.label.as_str(), b.seconds))
            .collect();
        assert_eq!(jobs, vec![("no job", 300.0), ("J1", 200.0)]);
        assert_eq!(r.pareto.by_machine[0].key, "m2");
        assert_eq!(
            r.pareto.by_machine[0].top_category.as_deref(),
            Some("unexplained")
        );
        assert_eq!(r.unexplained.len(), 2);
        assert_eq!(r.unexplained[0].seconds, 300.0);
        assert_eq!(r.unexplained_total.count, 2);
        assert_eq!(r.machines[0].by_shift.len(), 3);
    }

    #[test]
    fn a_day_still_going_counts_up_to_now() {
        let mut ix = Inner::default();
        add(&mut ix, 1, "m1", (1000, 1400), "production", "1", "");
        let machines = vec![(MachineId::new("m1").unwrap(), "One".to_string())];
        let r = daily(
            &ix,
            DayInput {
                date: "d".into(),
                today: "d".into(),
                zone: "UTC".into(),
                from: t(1000),
                to: t(2000),
                now: t(1500),
                shifts: Vec::new(),
                machines: &machines,
                jobs: Vec::new(),
                through_seq: 1,
            },
        );
        assert!(!r.complete);
        assert_eq!(r.totals.seconds, 400.0);
        assert_eq!(r.totals.unobserved_seconds, 100.0);
    }
}
