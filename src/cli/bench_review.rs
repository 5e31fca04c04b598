//! `shopbridge bench review`: the daily review of N machines × 3 shifts, computed from an
//! interval index holding weeks of history (what a running bridge holds).

use std::time::Instant;

use clap::Args;

use crate::model::{
    Attribution, CategorySource, JobContext, MachineId, MachineState, ShopState, StateInterval,
    TimeCategory, Timestamp,
};
use crate::northbound::review::{self, DayInput, ShiftWindow, index::Inner};

#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// Machines in the shop.
    #[arg(long, default_value_t = 50)]
    pub machines: u32,
    /// Days of history in the index (the review is of the last one).
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Mean span length in seconds (a state change, a shift or job boundary every so often).
    #[arg(long, default_value_t = 180.0)]
    pub span_seconds: f64,
    /// Times the review is computed (the figures are over these runs).
    #[arg(long, default_value_t = 20)]
    pub runs: u32,
}

const DAY: i64 = 86_400_000_000;

/// A small deterministic generator (xorshift64*), so that every run reviews the same shop.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub fn run(a: ReviewArgs) -> anyhow::Result<i32> {
    let categories = [
        ("production", 55),
        ("setup", 8),
        ("program_proveout", 3),
        ("waiting_inspection", 4),
        ("starved", 5),
        ("no_operator", 4),
        ("tool_change", 3),
        ("machine_fault", 3),
        ("micro_stop", 6),
        ("planned_downtime", 5),
        ("unexplained", 4),
    ];
    let weights: u64 = categories.iter().map(|c| c.1).sum();
    let mut rng = Rng(0x005E_ED0F_5B0B);
    let start = Timestamp::parse_rfc3339("2026-10-01T00:00:00Z")
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .as_micros();
    let end = start + i64::from(a.days) * DAY;
    let machines: Vec<(MachineId, String)> = (0..a.machines)
        .map(|i| {
            let id = MachineId::new(&format!("m-{i:03}")).map_err(|e| anyhow::anyhow!("{e}"));
            id.map(|id| (id, format!("Machine {i}")))
        })
        .collect::<anyhow::Result<_>>()?;
    let built = Instant::now();
    let mut ix = Inner::default();
    let mut seq = 0u64;
    for (id, _) in &machines {
        let mut t = start;
        let mut job = 1000 + rng.next() % 100;
        while t < end {
            let len = (rng.unit() * 2.0 * a.span_seconds * 1e6) as i64 + 1_000_000;
            // Spans end at shift boundaries (06:00, 14:00, 22:00), as the context layer cuts them.
            let tod = (t - start).rem_euclid(DAY);
            let next_boundary = [6, 14, 22, 30]
                .iter()
                .map(|h| h * 3_600_000_000)
                .find(|b| *b > tod)
                .unwrap_or(DAY + 6 * 3_600_000_000);
            let e = (t + len).min(t - tod + next_boundary).min(end);
            let shift = match tod / 3_600_000_000 {
                6..=13 => "1",
                14..=21 => "2",
                _ => "3",
            };
            let mut pick = rng.next() % weights;
            let category = categories
                .iter()
                .find(|c| {
                    if pick < c.1 {
                        true
                    } else {
                        pick -= c.1;
                        false
                    }
                })
                .map_or("unexplained", |c| c.0);
            if rng.next() % 40 == 0 {
                job += 1;
            }
            seq += 1;
            ix.insert(
                seq,
                &StateInterval {
                    machine: id.clone(),
                    start: Timestamp::from_micros(t),
                    end: Timestamp::from_micros(e),
                    shop_state: if category == "production" {
                        ShopState::Run
                    } else {
                        ShopState::Idle
                    },
                    state: MachineState::default(),
                    category: TimeCategory::parse(category).ok(),
                    context: JobContext {
                        job: Some(job.to_string()),
                        operation: Some("10".into()),
                        shift: Some(shift.into()),
                        ..JobContext::default()
                    },
                    attribution: Some(Attribution {
                        source: if category == "planned_downtime" {
                            CategorySource::Planner
                        } else {
                            CategorySource::Rule
                        },
                        rule: None,
                        confidence: 0.9,
                        by: None,
                        record: None,
                    }),
                    provisional: false,
                    revision: None,
                },
            );
            t = e;
        }
    }
    let build_s = built.elapsed().as_secs_f64();
    let from = Timestamp::from_micros(end - DAY);
    let to = Timestamp::from_micros(end);
    let shifts: Vec<ShiftWindow> = [("3", -2, 6), ("1", 6, 14), ("2", 14, 22)]
        .iter()
        .map(|(n, s, e)| ShiftWindow {
            name: n.to_string(),
            start: Timestamp::from_micros(from.as_micros() + s * 3_600_000_000),
            end: Timestamp::from_micros(from.as_micros() + e * 3_600_000_000),
        })
        .collect();
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..a.runs.max(1) {
        let t0 = Instant::now();
        let r = review::daily(
            &ix,
            DayInput {
                date: "bench".into(),
                today: "bench".into(),
                zone: "UTC".into(),
                from,
                to,
                now: to,
                shifts: shifts.clone(),
                machines: &machines,
                jobs: Vec::new(),
                through_seq: seq,
            },
        );
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        last = Some(r);
    }
    times.sort_by(f64::total_cmp);
    let spans_total: usize = ix.machines.values().map(|m| m.len()).sum();
    let day_spans: usize = machines
        .iter()
        .map(|(m, _)| ix.spans(m, from, to).len())
        .sum();
    let r = last.ok_or_else(|| anyhow::anyhow!("no run"))?;
    println!(
        "review: {} machines, {} shifts, {} spans in the day ({} in the index, {} days, built in {:.2} s, ~{:.1} MB of spans)",
        a.machines,
        r.by_shift.len(),
        day_spans,
        spans_total,
        a.days,
        build_s,
        (spans_total * std::mem::size_of::<review::Span>()) as f64 / 1e6
    );
    println!(
        "review computed: p50 {:.2} ms, max {:.2} ms over {} runs (goal: <= 200 ms); utilization {:.1} %, {} unexplained spans",
        times[times.len() / 2],
        times[times.len() - 1],
        times.len(),
        r.totals.utilization.unwrap_or(0.0) * 100.0,
        r.unexplained_total.count
    );
    Ok(0)
}
