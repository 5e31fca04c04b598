//! The context engine on crafted signal sequences: every rule, the calendar, holds,
//! inspections, operator reasons and their ledger, operation matching and confirmation,
//! routing, part counts, and exact resumption from a snapshot.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::calendar::{Break, Calendar, Shift, Zone};
use super::engine::{Engine, EngineConfig, MachineSettings};
use super::rules::Rules;
use crate::model::*;

const S: i64 = 1_000_000;
const T0: i64 = 1_796_018_400 * S; // 2026-11-30T06:00:00Z, a Monday

fn m1() -> MachineId {
    MachineId::new("m1").unwrap()
}

fn calendar() -> Calendar {
    Calendar {
        name: "main".into(),
        zone: Zone::Fixed { seconds: 0 },
        shifts: vec![Shift {
            name: "1".into(),
            days: [true; 7],
            start: 6 * 3600,
            end: 14 * 3600,
            breaks: vec![Break {
                start: 10 * 3600,
                end: 10 * 3600 + 1800,
                category: LossCategory::PLANNED_DOWNTIME,
            }],
        }],
        holidays: vec![],
        planned: vec![],
    }
}

/// Feeds records to an engine and keeps what it derives.
struct Feed {
    engine: Engine,
    seq: u64,
    out: Vec<RecordKind>,
    state: MachineState,
    /// Everything as a journal would hold it: each input, then what the engine derived.
    log: Vec<Record>,
}

impl Feed {
    fn new() -> Feed {
        Feed::with(Calendar::always())
    }

    fn with(cal: Calendar) -> Feed {
        let mut machines = std::collections::HashMap::new();
        machines.insert(
            m1(),
            MachineSettings {
                calendar: Arc::new(cal),
                parts_per_cycle: 1,
            },
        );
        machines.insert(MachineId::new("m2").unwrap(), MachineSettings::default());
        Feed {
            engine: Engine::new(EngineConfig {
                rules: Arc::new(Rules::defaults()),
                machines,
            }),
            seq: 0,
            out: Vec::new(),
            log: Vec::new(),
            state: MachineState {
                availability: Availability::Available,
                execution: Some(Execution::Ready),
                controller_mode: Some(ControllerMode::Automatic),
                functional_mode: Some(FunctionalMode::Production),
                emergency_stop: Some(EmergencyStop::Armed),
                alarm: false,
                program: None,
                part_count: None,
            },
        }
    }

    fn push(&mut self, kind: RecordKind) {
        self.seq += 1;
        let r = Record {
            seq: self.seq,
            kind,
        };
        let before = self.out.len();
        self.engine.apply(&r, &mut self.out);
        self.log.push(r);
        for d in self.out[before..].iter().cloned() {
            self.seq += 1;
            self.log.push(Record {
                seq: self.seq,
                kind: d,
            });
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_micros(T0 + secs * S)
    }

    fn state(&mut self, secs: i64, f: impl FnOnce(&mut MachineState)) {
        f(&mut self.state);
        let st = self.state.clone();
        self.push(RecordKind::StateChange(Box::new(StateChange {
            machine: m1(),
            at: Self::at(secs),
            shop_state: st.shop_state(),
            state: st,
        })));
    }

    fn exec(&mut self, secs: i64, e: Execution) {
        self.state(secs, |s| s.execution = Some(e));
    }

    fn obs(&mut self, secs: i64, signal: &str, value: Value) {
        let t = Self::at(secs);
        self.push(RecordKind::Observation(Observation {
            machine: m1(),
            signal: SignalId::new(signal),
            value,
            quality: Quality::Good,
            time: Timestamps {
                source: None,
                received: t,
                aligned: t,
            },
        }));
    }

    fn command(&mut self, secs: i64, command: Command) {
        self.push(RecordKind::Command(Box::new(CommandRecord {
            machine: m1(),
            at: Self::at(secs),
            origin: CommandOrigin {
                channel: "rest".into(),
                user: Some("ann".into()),
            },
            command,
        })));
    }

    fn quality(&mut self, secs: i64, event: QualityEvent) {
        self.push(RecordKind::Quality(Box::new(QualityRecord {
            machine: m1(),
            at: Self::at(secs),
            origin: CommandOrigin {
                channel: "rest".into(),
                user: Some("qms".into()),
            },
            event,
        })));
    }

    fn dispatch(&mut self, secs: i64, ops: Vec<DispatchedOperation>) {
        self.push(RecordKind::Dispatch(Box::new(DispatchRecord {
            machine: m1(),
            at: Self::at(secs),
            origin: CommandOrigin {
                channel: "rest".into(),
                user: None,
            },
            operations: ops,
        })));
    }

    /// A cycle: ACTIVE for `cut` seconds from `secs`, then PROGRAM_COMPLETED and the counter
    /// steps to `count`.
    fn cycle(&mut self, secs: i64, cut: i64, count: i64) {
        self.exec(secs, Execution::Active);
        self.exec(secs + cut, Execution::ProgramCompleted);
        self.obs(secs + cut, signals::PART_COUNT, Value::Int(count));
    }

    fn finish(&mut self, secs: i64) {
        let before = self.out.len();
        self.engine.close_all(Self::at(secs), &mut self.out);
        for d in self.out[before..].iter().cloned() {
            self.seq += 1;
            self.log.push(Record {
                seq: self.seq,
                kind: d,
            });
        }
    }

    /// The newest revision of every interval, by start.
    fn intervals(&self) -> Vec<StateInterval> {
        let mut by_start: BTreeMap<Timestamp, StateInterval> = BTreeMap::new();
        for r in &self.out {
            if let RecordKind::Interval(i) = r {
                by_start.insert(i.start, (**i).clone());
            }
        }
        by_start.into_values().collect()
    }

    /// The category covering second `secs`.
    fn category_at(&self, secs: i64) -> String {
        let t = Self::at(secs);
        self.intervals()
            .iter()
            .find(|i| i.start <= t && t < i.end)
            .and_then(|i| i.category.as_ref().map(|c| c.to_string()))
            .unwrap_or_else(|| "none".into())
    }

    fn operations(&self) -> Vec<OperationRecord> {
        self.out
            .iter()
            .filter_map(|r| match r {
                RecordKind::Operation(o) => Some((**o).clone()),
                _ => None,
            })
            .collect()
    }
}

fn op(job: &str, operation: &str, program: &str, quantity: u64) -> DispatchedOperation {
    DispatchedOperation {
        job: job.into(),
        operation: operation.into(),
        programs: vec![program.into()],
        quantity: Some(quantity),
        ..DispatchedOperation::default()
    }
}

/// Every second from the first record to the close belongs to exactly one interval.
fn assert_tiles(f: &Feed, from: i64, to: i64) {
    let iv = f.intervals();
    assert_eq!(iv.first().map(|i| i.start), Some(Feed::at(from)), "{iv:#?}");
    assert_eq!(iv.last().map(|i| i.end), Some(Feed::at(to)));
    for w in iv.windows(2) {
        assert_eq!(w[0].end, w[1].start, "gap or overlap: {:#?}", w);
    }
}

#[test]
fn cutting_load_unload_micro_stops_and_faults() {
    let mut f = Feed::new();
    f.command(
        0,
        Command::SignIn {
            operator: "ann".into(),
        },
    );
    f.obs(0, signals::PROGRAM, Value::text("O1000"));
    f.exec(0, Execution::Ready);
    f.cycle(100, 200, 1); // 0..100 idle before the first cycle of the program
    f.cycle(330, 200, 2); // 300..330: 30 s load/unload → production
    f.exec(560, Execution::Active); // 530..560 load/unload
    f.exec(650, Execution::FeedHold); // 650..710: a 60 s micro-stop mid-cycle
    f.exec(710, Execution::Active);
    f.exec(800, Execution::ProgramCompleted);
    f.state(1000, |s| s.alarm = true); // 800..1000: 200 s idle, signed in: unexplained
    f.state(1300, |s| {
        s.alarm = false;
        s.execution = Some(Execution::Ready);
    });
    f.finish(1400);
    assert_eq!(
        f.category_at(50),
        "micro_stop",
        "a short idle before the first cycle"
    );
    assert_eq!(f.category_at(150), "production");
    assert_eq!(f.category_at(310), "production", "load and unload");
    assert_eq!(f.category_at(545), "production");
    assert_eq!(f.category_at(680), "micro_stop");
    assert_eq!(f.category_at(900), "unexplained");
    assert_eq!(f.category_at(1100), "machine_fault");
    assert_tiles(&f, 0, 1400);
}

#[test]
fn modes_give_setup_prove_out_maintenance_and_tool_change() {
    let mut f = Feed::new();
    f.command(
        0,
        Command::SignIn {
            operator: "ann".into(),
        },
    );
    // Tool changes are told from setup by the operation: it is running, not new.
    f.dispatch(0, vec![op("9", "10", "O2000", 50)]);
    f.state(0, |s| {
        s.controller_mode = Some(ControllerMode::Edit);
        s.functional_mode = Some(FunctionalMode::Setup);
    });
    f.obs(10, signals::PROGRAM, Value::text("O2000"));
    f.state(300, |s| s.controller_mode = Some(ControllerMode::Manual));
    // Prove-out: single block, 50 % feed, cutting and stopping.
    f.obs(2000, signals::SINGLE_BLOCK, Value::Bool(true));
    f.obs(2000, signals::FEED_OVERRIDE, Value::Int(50));
    f.state(2000, |s| {
        s.controller_mode = Some(ControllerMode::Automatic);
        s.functional_mode = Some(FunctionalMode::ProcessDevelopment);
        s.execution = Some(Execution::Active);
    });
    f.exec(2100, Execution::OptionalStop);
    f.exec(2200, Execution::Active);
    f.exec(2300, Execution::ProgramCompleted);
    f.obs(2300, signals::PART_COUNT, Value::Int(1));
    // Production.
    f.obs(2400, signals::SINGLE_BLOCK, Value::Bool(false));
    f.obs(2400, signals::FEED_OVERRIDE, Value::Int(100));
    f.state(2400, |s| {
        s.functional_mode = Some(FunctionalMode::Production)
    });
    f.cycle(2400, 200, 2);
    // A tool change mid-operation: manual mode.
    f.state(2700, |s| s.controller_mode = Some(ControllerMode::Manual));
    f.obs(2710, signals::TOOL_NUMBER, Value::Int(7));
    f.state(3000, |s| {
        s.controller_mode = Some(ControllerMode::Automatic)
    });
    f.cycle(3030, 200, 3);
    // Maintenance.
    f.state(3400, |s| {
        s.functional_mode = Some(FunctionalMode::Maintenance);
        s.controller_mode = Some(ControllerMode::Manual);
    });
    f.finish(5000);
    assert_eq!(f.category_at(100), "setup");
    assert_eq!(f.category_at(1000), "setup");
    assert_eq!(f.category_at(2050), "program_proveout");
    assert_eq!(f.category_at(2150), "program_proveout", "a prove-out stop");
    assert_eq!(f.category_at(2250), "program_proveout");
    assert_eq!(f.category_at(2500), "production");
    assert_eq!(f.category_at(2800), "tool_change");
    assert_eq!(f.category_at(3100), "production");
    assert_eq!(f.category_at(4000), "maintenance");
    assert_tiles(&f, 0, 5000);
}

#[test]
fn intervals_split_at_breaks_and_shift_end() {
    let mut f = Feed::with(calendar());
    f.command(
        0,
        Command::SignIn {
            operator: "ann".into(),
        },
    );
    f.state(0, |s| s.controller_mode = Some(ControllerMode::Manual));
    // Idle in manual from 06:00 through the 10:00 break and past the 14:00 shift end.
    f.obs(9 * 3600, signals::TOOL_NUMBER, Value::Int(3));
    f.finish(9 * 3600);
    let iv = f.intervals();
    let bounds: Vec<(i64, i64, String, Option<String>)> = iv
        .iter()
        .map(|i| {
            (
                (i.start.as_micros() - T0) / S / 60,
                (i.end.as_micros() - T0) / S / 60,
                i.category
                    .as_ref()
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
                i.context.shift.clone(),
            )
        })
        .collect();
    assert_eq!(
        bounds,
        vec![
            (0, 240, "setup".into(), Some("1".into())),
            (240, 270, "planned_downtime".into(), Some("1".into())),
            (270, 480, "setup".into(), Some("1".into())),
            (480, 540, "planned_downtime".into(), None),
        ]
    );
}

#[test]
fn a_hold_opened_mid_stop_and_an_inspection_classify_from_then_on() {
    let mut f = Feed::new();
    f.command(
        0,
        Command::SignIn {
            operator: "ann".into(),
        },
    );
    f.obs(0, signals::PROGRAM, Value::text("O1"));
    f.cycle(0, 100, 1);
    f.cycle(110, 100, 2);
    // Stopped at 210; the QMS puts the machine on hold at 500, releases it at 900.
    f.quality(
        500,
        QualityEvent::HoldOpened {
            hold: "H1".into(),
            job: None,
            operation: None,
            reason: Some("burr on bore".into()),
        },
    );
    f.quality(900, QualityEvent::HoldReleased { hold: "H1".into() });
    f.quality(
        1000,
        QualityEvent::InspectionRequested {
            job: None,
            operation: None,
        },
    );
    f.quality(
        1600,
        QualityEvent::InspectionDispositioned {
            accepted: true,
            note: None,
        },
    );
    f.finish(2000);
    assert_eq!(f.category_at(300), "unexplained");
    assert_eq!(f.category_at(600), "quality_hold");
    assert_eq!(f.category_at(950), "unexplained");
    assert_eq!(f.category_at(1200), "waiting_inspection");
    assert_eq!(f.category_at(1700), "unexplained");
    let hold = f
        .intervals()
        .into_iter()
        .find(|i| i.start == Feed::at(500))
        .unwrap();
    assert_eq!(hold.attribution.unwrap().source, CategorySource::Qms);
    assert_tiles(&f, 0, 2000);
}

#[test]
fn an_operator_reason_overrides_the_rule_and_the_ledger_keeps_the_old_answer() {
    let mut f = Feed::new();
    f.command(
        0,
        Command::SignIn {
            operator: "ann".into(),
        },
    );
    f.obs(0, signals::PROGRAM, Value::text("O1"));
    f.cycle(0, 100, 1);
    // Stop at 100; signed out at 400 (the span splits); the reason comes at 700.
    f.command(400, Command::SignOut);
    f.command(
        700,
        Command::StopReason {
            reason: LossCategory::STARVED,
            note: None,
        },
    );
    f.exec(1000, Execution::Active);
    f.exec(1100, Execution::ProgramCompleted);
    // A reason given after the next stop began belongs to that stop only.
    f.command(
        1500,
        Command::StopReason {
            reason: LossCategory::BLOCKED,
            note: None,
        },
    );
    f.finish(1600);
    assert_eq!(f.category_at(200), "starved");
    assert_eq!(f.category_at(500), "starved");
    assert_eq!(f.category_at(900), "starved");
    assert_eq!(f.category_at(1050), "production");
    assert_eq!(f.category_at(1300), "blocked");
    let first = f
        .out
        .iter()
        .filter_map(|r| match r {
            RecordKind::Interval(i) if i.start == Feed::at(100) => Some(i.clone()),
            _ => None,
        })
        .collect::<Vec<_>>();
    assert_eq!(first.len(), 2, "written, then revised: {first:#?}");
    let rev = first[1].revision.as_ref().unwrap();
    assert_eq!(rev.n, 1);
    assert_eq!(
        rev.previous_category.as_ref().unwrap().as_str(),
        "unexplained"
    );
    assert_eq!(rev.by.as_deref(), Some("ann"));
    assert_eq!(rev.at, Feed::at(700));
    let a = first[1].attribution.as_ref().unwrap();
    assert_eq!((a.source, a.confidence), (CategorySource::Operator, 1.0));
    assert_tiles(&f, 0, 1600);
}

#[test]
fn a_reason_after_the_machine_restarted_revises_the_last_stop() {
    let mut f = Feed::new();
    f.command(
        0,
        Command::SignIn {
            operator: "ann".into(),
        },
    );
    f.obs(0, signals::PROGRAM, Value::text("O1"));
    f.cycle(0, 100, 1);
    f.exec(600, Execution::Active);
    f.command(
        650,
        Command::StopReason {
            reason: LossCategory::NO_OPERATOR,
            note: None,
        },
    );
    f.exec(700, Execution::ProgramCompleted);
    f.finish(750);
    assert_eq!(f.category_at(300), "no_operator");
    assert_eq!(f.category_at(650), "production");
}

#[test]
fn programs_start_dispatched_operations_and_ambiguity_waits_for_a_confirmation() {
    let mut f = Feed::new();
    f.command(
        0,
        Command::SignIn {
            operator: "ann".into(),
        },
    );
    f.dispatch(
        0,
        vec![
            op("24173", "10", "O5000", 3),
            op("24180", "20", "O6000", 2),
            op("24181", "20", "O6000", 2),
        ],
    );
    f.obs(10, signals::PROGRAM, Value::text("O5000"));
    f.cycle(100, 100, 1);
    f.cycle(210, 100, 2);
    f.cycle(320, 100, 3);
    // Completed; the next program matches two operations.
    f.obs(500, signals::PROGRAM, Value::text("o6000"));
    f.cycle(600, 100, 1);
    f.command(
        800,
        Command::ConfirmOperation {
            job: "24181".into(),
            operation: "20".into(),
        },
    );
    f.cycle(900, 100, 2);
    f.finish(1100);
    let ops = f.operations();
    let events: Vec<String> = ops
        .iter()
        .map(|o| {
            let e = serde_json::to_value(&o.event).unwrap();
            format!("{}/{} {}", o.job, o.operation, e["event"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        events,
        vec![
            "24173/10 started",
            "24173/10 completed",
            "24180/20 started",
            "24180/20 ambiguous",
            "24181/20 started",
            "24181/20 confirmed",
            "24181/20 completed",
        ],
        "{ops:#?}"
    );
    let iv = f.intervals();
    let at = |s: i64| {
        iv.iter()
            .find(|i| i.start <= Feed::at(s) && Feed::at(s) < i.end)
            .unwrap()
            .clone()
    };
    assert_eq!(at(150).context.job.as_deref(), Some("24173"));
    // The provisional time was re-attributed to the confirmed operation.
    let before = at(650);
    assert_eq!(before.context.job.as_deref(), Some("24181"));
    assert!(!before.provisional);
    let rev = before.revision.unwrap();
    assert_eq!(rev.previous_job.as_deref(), Some("24180"));
    assert_eq!(rev.why, "operation corrected");
    let fb = ops.last().unwrap().feedback.clone().unwrap();
    assert_eq!(
        (fb.parts.made, fb.quantity, fb.remaining),
        (2, Some(2), Some(0))
    );
    // The machine's time starts with its first state.
    assert_tiles(&f, 100, 1100);
}

#[test]
fn a_second_correction_revises_again_and_a_repeated_confirmation_writes_nothing() {
    let mut f = Feed::new();
    f.dispatch(
        0,
        vec![
            op("24180", "20", "O6000", 5),
            op("24181", "20", "O6000", 5),
            op("24182", "20", "O6000", 5),
        ],
    );
    f.obs(10, signals::PROGRAM, Value::text("O6000"));
    f.cycle(100, 100, 1);
    f.cycle(300, 100, 2);
    let confirm = |f: &mut Feed, secs: i64, job: &str| {
        f.command(
            secs,
            Command::ConfirmOperation {
                job: job.into(),
                operation: "20".into(),
            },
        );
    };
    confirm(&mut f, 500, "24181");
    let first = f.intervals();
    confirm(&mut f, 520, "24182");
    let second = f.intervals();
    // Every interval of the operation so far was revised a second time, from 24181 to 24182.
    let revised: Vec<&StateInterval> = second
        .iter()
        .filter(|i| i.start < Feed::at(500) && i.start >= Feed::at(10))
        .collect();
    assert!(!revised.is_empty());
    for i in &revised {
        assert_eq!(i.context.job.as_deref(), Some("24182"), "{i:#?}");
        let rev = i.revision.as_ref().unwrap();
        assert_eq!(rev.n, 2, "{i:#?}");
        assert_eq!(rev.previous_job.as_deref(), Some("24181"));
        let before = first.iter().find(|b| b.start == i.start).unwrap();
        assert_eq!(before.revision.as_ref().unwrap().n, 1);
    }
    // Confirming what is already confirmed re-writes no interval.
    let written = |f: &Feed| {
        f.out
            .iter()
            .filter(|r| matches!(r, RecordKind::Interval(_)))
            .count()
    };
    let before = written(&f);
    confirm(&mut f, 540, "24182");
    let after = written(&f);
    // Only the span in hand when the command came (520..540) is written.
    assert_eq!(after - before, 1, "{:#?}", &f.out[f.out.len() - 4..]);
}

#[test]
fn schedule_feedback_estimates_completion_and_flags_risk() {
    let mut f = Feed::new();
    let mut o = op("1", "10", "P1", 10);
    o.due = Some(Feed::at(1000));
    f.dispatch(0, vec![o]);
    f.obs(0, signals::PROGRAM, Value::text("P1"));
    for k in 0..4 {
        f.cycle(k * 120, 100, k + 1);
    }
    let ctx = f
        .out
        .iter()
        .rev()
        .find_map(|r| match r {
            RecordKind::Context(c) => c.feedback.clone(),
            _ => None,
        })
        .unwrap();
    assert_eq!(ctx.parts.made, 4);
    assert_eq!(ctx.remaining, Some(6));
    assert_eq!(ctx.cycle_seconds, Some(120.0));
    // 6 parts × 120 s after 460 s: 1180 s, after the due time 1000 s.
    assert_eq!(ctx.estimated_completion, Some(Feed::at(460 + 720)));
    assert!(ctx.at_risk);
}

#[test]
fn idle_while_the_upstream_operation_is_incomplete_is_starved() {
    let mut f = Feed::new();
    f.command(
        0,
        Command::SignIn {
            operator: "ann".into(),
        },
    );
    // m2 runs operation 10 of job 7; m1's next is operation 20, after 10.
    f.push(RecordKind::Dispatch(Box::new(DispatchRecord {
        machine: MachineId::new("m2").unwrap(),
        at: Feed::at(0),
        origin: CommandOrigin {
            channel: "rest".into(),
            user: None,
        },
        operations: vec![op("7", "10", "A", 5)],
    })));
    let mut second = op("7", "20", "B", 5);
    second.after = Some("10".into());
    f.dispatch(0, vec![second]);
    f.exec(0, Execution::Ready);
    f.exec(300, Execution::Wait);
    f.finish(600);
    assert_eq!(f.category_at(400), "starved");
}

#[test]
fn nobody_signed_in_idle_in_automatic_is_no_operator() {
    let mut f = Feed::new();
    f.exec(0, Execution::Ready);
    f.exec(10, Execution::Wait);
    f.finish(600);
    assert_eq!(f.category_at(300), "no_operator");
}

type Step = Box<dyn Fn(&mut Feed)>;

fn sign_in(at: i64, who: &'static str) -> Step {
    Box::new(move |f: &mut Feed| {
        f.command(
            at,
            Command::SignIn {
                operator: who.into(),
            },
        )
    })
}

fn reason(at: i64, reason: LossCategory) -> Step {
    Box::new(move |f: &mut Feed| {
        f.command(
            at,
            Command::StopReason {
                reason: reason.clone(),
                note: None,
            },
        )
    })
}

/// Runs `steps` whole, and again split at `at` with the engine's state saved and restored there
/// (the saved bytes passed through `edit` with the first half's feed): asserts both derived the
/// same records, and gives back the whole run and the second half's feed.
fn whole_and_split(
    steps: impl Fn() -> Vec<Step>,
    at: usize,
    edit: impl Fn(&Feed, Vec<u8>) -> Vec<u8>,
) -> (Feed, Feed) {
    let mut whole = Feed::new();
    steps().iter().for_each(|s| s(&mut whole));
    let mut first = Feed::new();
    steps()[..at].iter().for_each(|s| s(&mut first));
    let snap = edit(&first, first.engine.snapshot());
    let mut second = Feed::new();
    second.engine.restore(&snap).unwrap();
    second.seq = first.seq;
    second.state = first.state.clone();
    steps()[at..].iter().for_each(|s| s(&mut second));
    let mut joined = first.out.clone();
    joined.extend(second.out.clone());
    assert_eq!(joined, whole.out);
    (whole, second)
}

#[test]
fn a_restored_snapshot_continues_exactly_like_an_uninterrupted_run() {
    let steps = || -> Vec<Step> {
        vec![
            sign_in(0, "ann"),
            Box::new(|f| f.dispatch(0, vec![op("1", "10", "P1", 5)])),
            Box::new(|f| f.obs(5, signals::PROGRAM, Value::text("P1"))),
            Box::new(|f| f.cycle(10, 100, 1)),
            Box::new(|f| f.cycle(130, 100, 2)),
            Box::new(|f| f.exec(400, Execution::Wait)),
            reason(500, LossCategory::BLOCKED),
            Box::new(|f| f.cycle(700, 100, 3)),
            Box::new(|f| f.finish(900)),
        ]
    };
    whole_and_split(steps, 5, |_, snap| snap);
}

#[test]
fn a_stops_spans_saved_whole_by_an_older_version_take_a_reason_after_the_restore() {
    let steps = || -> Vec<Step> {
        vec![
            sign_in(0, "ann"),
            Box::new(|f| f.obs(0, signals::PROGRAM, Value::text("O1"))),
            Box::new(|f| f.cycle(0, 100, 1)),
            // The stop from 100 is cut at 400 (signed out) and 700 (signed in): two spans
            // written before the save.
            Box::new(|f| f.command(400, Command::SignOut)),
            sign_in(700, "bob"),
            reason(800, LossCategory::STARVED),
            Box::new(|f| f.exec(1000, Execution::Active)),
            Box::new(|f| f.exec(1100, Execution::ProgramCompleted)),
            Box::new(|f| f.finish(1200)),
        ]
    };
    // The save as versions before compact stop spans wrote it: each span whole, by its
    // newest writing, with the rule's decision beside it.
    let old_format = |first: &Feed, snap: Vec<u8>| {
        let mut snap: serde_json::Value = serde_json::from_slice(&snap).unwrap();
        let written = first.intervals();
        let mut converted = 0;
        for entry in snap["machines"].as_array_mut().unwrap() {
            let ctx = entry[1].as_object_mut().unwrap();
            let spans = ctx.remove("stop_spans").unwrap();
            let old: Vec<serde_json::Value> = spans
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    let start: Timestamp = serde_json::from_value(s["start"].clone()).unwrap();
                    let interval = written.iter().rev().find(|i| i.start == start).unwrap();
                    converted += 1;
                    serde_json::json!({
                        "interval": interval,
                        "rule": s["rule"]["category"],
                        "rule_attribution": s["rule"]["attribution"],
                    })
                })
                .collect();
            ctx.insert("stop_segments".into(), serde_json::Value::Array(old));
        }
        assert_eq!(converted, 2, "{snap:#}");
        serde_json::to_vec(&snap).unwrap()
    };
    let (whole, second) = whole_and_split(steps, 5, old_format);
    assert_eq!(whole.category_at(200), "starved");
    assert_eq!(whole.category_at(500), "starved");
    // Saved again, the spans are compact and the old field is gone.
    let again = String::from_utf8(second.engine.snapshot()).unwrap();
    assert!(
        again.contains("\"stop_spans\"") && !again.contains("stop_segments"),
        "{again}"
    );
}

#[test]
fn reclassify_under_the_same_rules_changes_nothing_and_under_new_rules_revises() {
    use super::reclassify::reclassify;
    let mut f = Feed::new();
    f.command(
        0,
        Command::SignIn {
            operator: "ann".into(),
        },
    );
    f.obs(0, signals::PROGRAM, Value::text("O1"));
    f.cycle(0, 100, 1);
    f.cycle(130, 100, 2); // 100..130 load and unload
    f.exec(500, Execution::Active); // 230..500: 270 s unexplained
    f.exec(600, Execution::ProgramCompleted);
    f.command(
        650,
        Command::StopReason {
            reason: LossCategory::BLOCKED,
            note: None,
        },
    );
    f.exec(900, Execution::Active); // 600..900: blocked, said the operator
    f.finish(1000);
    let config = |rules: Rules| {
        let mut machines = std::collections::HashMap::new();
        machines.insert(m1(), MachineSettings::default());
        EngineConfig {
            rules: Arc::new(rules),
            machines,
        }
    };
    let (from, to, now) = (Feed::at(0), Feed::at(1000), Feed::at(2000));
    let (same, stats) = reclassify(f.log.clone(), config(Rules::defaults()), from, to, now);
    assert!(same.is_empty(), "{same:#?}");
    assert_eq!(stats.revised, 0);
    assert!(stats.intervals >= 5, "{stats:?}");
    // A new site rule: an idle machine in automatic with a program loaded is starved.
    let mut raw = vec![super::rules::RawRule {
        name: "idle means no material".into(),
        when: "state == 'IDLE' and stop_seconds >= 120".into(),
        category: "starved".into(),
        source: None,
        confidence: Some(0.5),
    }];
    raw.extend(super::rules::default_raw());
    let rules = Rules::compile(&raw, &Taxonomy::default()).unwrap();
    let (revised, stats) = reclassify(f.log.clone(), config(rules), from, to, now);
    assert_eq!(stats.revised, 1, "{revised:#?}");
    let RecordKind::Interval(i) = &revised[0] else {
        panic!("{revised:?}")
    };
    assert_eq!(i.start, Feed::at(230));
    assert_eq!(i.category.as_ref().map(|c| c.as_str()), Some("starved"));
    let rev = i.revision.as_ref().unwrap();
    assert_eq!(rev.why, "reclassified");
    assert_eq!(
        rev.previous_category.as_ref().map(|c| c.as_str()),
        Some("unexplained")
    );
    // The operator's reason still holds under the new rules.
    let mut all = f.log.clone();
    all.extend(revised.into_iter().enumerate().map(|(k, kind)| Record {
        seq: 10_000 + k as u64,
        kind,
    }));
    let (ivs, _) = crate::sim::score::latest(all.into_iter().filter_map(|r| match r.kind {
        RecordKind::Interval(i) => Some(*i),
        _ => None,
    }));
    let at = |s: i64| {
        ivs.iter()
            .find(|i| i.start <= Feed::at(s) && Feed::at(s) < i.end)
            .and_then(|i| i.category.as_ref().map(|c| c.to_string()))
    };
    assert_eq!(at(300).as_deref(), Some("starved"));
    assert_eq!(at(700).as_deref(), Some("blocked"));
    assert_eq!(at(110).as_deref(), Some("production"));
}

#[test]
fn the_live_context_follows_how_long_a_span_has_lasted() {
    let mut f = Feed::new();
    f.command(
        0,
        Command::SignIn {
            operator: "ann".into(),
        },
    );
    f.obs(0, signals::PROGRAM, Value::text("O1"));
    f.cycle(0, 100, 1);
    let live = |f: &Feed| {
        f.out
            .iter()
            .rev()
            .find_map(|r| match r {
                RecordKind::Context(c) => Some(c.category.to_string()),
                _ => None,
            })
            .unwrap()
    };
    // Just stopped after a cycle: unloading, as far as anyone can tell.
    assert_eq!(live(&f), "production");
    f.engine.tick(Feed::at(130), &mut f.out);
    assert_eq!(live(&f), "production");
    // Still idle four minutes later: not a part change any more.
    f.engine.tick(Feed::at(340), &mut f.out);
    assert_eq!(live(&f), "unexplained");
    // Ticks write no intervals.
    assert!(
        !f.out
            .iter()
            .any(|r| matches!(r, RecordKind::Interval(i) if i.start == Feed::at(100)))
    );
}

#[test]
fn a_long_stop_pauses_the_operation_and_running_again_resumes_it() {
    let mut f = Feed::new();
    f.dispatch(0, vec![op("5", "10", "P5", 10)]);
    f.obs(0, signals::PROGRAM, Value::text("P5"));
    f.cycle(0, 100, 1);
    f.obs(1000, signals::TOOL_NUMBER, Value::Int(2));
    f.obs(2000, signals::TOOL_NUMBER, Value::Int(3)); // 31 min into the stop
    f.exec(2500, Execution::Active);
    let events: Vec<String> = f
        .operations()
        .iter()
        .map(|o| {
            serde_json::to_value(&o.event).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(events, vec!["started", "paused", "resumed"]);
    assert_eq!(f.operations()[1].at, Feed::at(2000));
}

#[test]
fn operations_no_list_names_for_a_week_are_forgotten_unless_a_machine_runs_them() {
    let day = 24 * 3600;
    let remembered = |f: &Feed| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(&f.engine.snapshot()).unwrap();
        let mut ops: Vec<String> = v["ops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{}/{}",
                    e[0][0].as_str().unwrap(),
                    e[0][1].as_str().unwrap()
                )
            })
            .collect();
        ops.sort();
        ops
    };
    let mut f = Feed::new();
    f.dispatch(
        0,
        vec![op("24173", "10", "O5000", 1), op("24174", "10", "O5001", 5)],
    );
    f.obs(10, signals::PROGRAM, Value::text("O5000"));
    f.cycle(100, 100, 1);
    // 24173/10 is complete and the ERP drops it; the machine moves on to 24174/10.
    f.dispatch(day, vec![op("24174", "10", "O5001", 5)]);
    f.obs(day + 10, signals::PROGRAM, Value::text("O5001"));
    f.cycle(day + 100, 100, 1);
    // A day later it is still remembered (a re-dispatch would find it complete) ...
    f.dispatch(2 * day, vec![op("24174", "10", "O5001", 5)]);
    assert_eq!(remembered(&f), ["24173/10", "24174/10"]);
    // ... a week after the last list named it, it is gone; the running one stays although no
    // list has named it since.
    f.dispatch(10 * day, vec![]);
    assert_eq!(remembered(&f), ["24174/10"]);
}
