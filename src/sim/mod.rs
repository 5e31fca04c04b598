//! The simulated job shop: machines that behave like a real shift, with ground truth.
//!
//! Every driver has a simulator beside it (DESIGN section 1). This module holds the part they
//! share: [`MachineSim`], a pure, I/O-free, deterministic state machine per machine that walks a
//! realistic shift and says, for every microsecond of it, what the machine *really* did
//! ([`TruthInterval`]). Protocol faces (MTConnect, SHDR, Haas, Modbus, FOCAS, in later issues)
//! and the in-process `sim` driver ([`crate::drivers::sim`]) only translate its
//! [`SimEvent`]s; [`TruthWriter`] appends the ground truth to `<data_dir>/truth.jsonl` so that
//! the bridge's classification can be scored against it.
//!
//! # Determinism
//!
//! A machine's behaviour is a function of `(shop seed, machine index, start time)` only. It
//! draws from its own xoshiro256** stream ([`rng`]), written here so that no dependency update
//! changes the output for a seed. It does not matter how time is chopped into `advance` calls:
//! the events and truth up to `t` are the same whether one calls `advance(t)` once or a
//! thousand times on the way (tested).
//!
//! # The shop calendar (shop time = UTC)
//!
//! Monday to Friday. First shift 06:00–14:30 (coffee 09:00–09:15, lunch 11:30–12:00); second
//! shift 14:30–23:00 (coffee 17:30–17:45, lunch 19:30–20:00). Every third machine (index 2, 5,
//! 8 …) runs the first shift only. Nights and weekends are not scheduled. Three machines in four
//! are switched off at the end of the shift (availability UNAVAILABLE); the fourth is left on,
//! idle. One machine in four (index 0, 4, 8 …) is also switched off over lunch.
//!
//! # What a machine does
//!
//! Each machine works through an endless queue of jobs: job number (`24173`), operation
//! (`10`, `20`, `30`), part number (`HX-2231-B`), program (`O4417` on Haas/Fanuc/Mazak/Doosan,
//! `HX-2231-10.MIN` on Okuma, `2231_OP10.H` on the Heidenhain DMU), planned quantity 4–300,
//! cutting time per part 1–12 min. A job goes:
//!
//! 1. **program load** (1–4 min): controller EDIT, functional SETUP, program changes, part
//!    count reset to 0.
//! 2. **setup** (median 70 min, 20 min–4 h): MANUAL and MANUAL_DATA_INPUT, door open, tools
//!    loaded (tool number changes), short MDI spindle bursts (execution ACTIVE in MDI, low
//!    load) for probing and indicating. No cutting.
//! 3. **prove-out** (median 35 min): functional PROCESS_DEVELOPMENT, AUTOMATIC, single block
//!    and optional stop on, feed override 20–60 %, rapid override 25 %; execution cycles
//!    between ACTIVE (with spindle) and OPTIONAL_STOP / PROGRAM_STOPPED / STOPPED while the
//!    setter measures. Ends PROGRAM_COMPLETED with the first article counted (part count 1).
//! 4. **waiting for first-article inspection** (median 25 min): AUTOMATIC, PROGRAM_COMPLETED,
//!    door open. One in seven first articles is rejected: a shorter second prove-out and a
//!    second inspection follow.
//! 5. **production**: per part, load/unload (door open, 15–60 s) then the cycle (door closed,
//!    functional PRODUCTION, execution ACTIVE, tool number and line change per tool, spindle
//!    speed and load sampled every 4–6 s), ending PROGRAM_COMPLETED with part count + 1.
//!    Per part there is a chance of: a micro-stop (8 %: FEED_HOLD, door open, 20 s–3 min of
//!    chip clearing); an insert change (1 in 35: MANUAL, door open, 3–20 min, tool number
//!    changes); an alarm (1 in 180: INTERRUPTED, alarm text, repair median 20 min up to 4 h,
//!    then reset; the part is scrapped and the cycle restarts); an e-stop (1 in 700:
//!    emergency stop TRIGGERED, 1–15 min); waiting for blanks (1 in 250); operator away at
//!    another machine (1 in 150); finished-parts rack full (1 in 400); idle nobody explains
//!    (1 in 200).
//! 6. **teardown** (median 20 min): functional TEARDOWN, MANUAL, door open.
//! 7. between jobs, one time in four the machine waits for material (median 30 min).
//!
//! At the first work of a shift a machine goes to **maintenance** with probability 5 %
//! (functional MAINTENANCE, MANUAL, 30 min–3 h). A cycle that is running when a break or the
//! end of the shift comes finishes first (the machine runs unattended); every other activity
//! pauses and resumes after. At a coffee break the machine sits idle; at lunch and off shift it
//! is planned downtime (switched off or idle, see above). Simulation starts part-way into a job
//! (most machines in production) so that a demo is busy from its first minute.
//!
//! # Signals
//!
//! Canonical ids ([`crate::model::signals`]); a value is emitted only when it changes (spindle
//! samples always change). `availability` AVAILABLE/UNAVAILABLE, `execution`,
//! `controller_mode`, `functional_mode` and `emergency_stop` (ARMED/TRIGGERED) as the MTConnect
//! words ([`Value::Text`]); `program` text; `part_count`, `tool_number`, `line`,
//! `feed_override`, `rapid_override` as [`Value::Int`] (overrides in %); `spindle_speed` (rpm)
//! and `spindle_load` (%) as [`Value::Float`]; `single_block`, `optional_stop` as
//! [`Value::Bool`]; `door` OPEN/CLOSED; `alarm` the active alarm's text (`"1012 SPINDLE
//! OVERLOAD"`), or the empty text `""` when no alarm is active. While a machine is switched
//! off only `availability` changes; a protocol face reports its other items UNAVAILABLE then.
//! `part_count` only increases within a job; it resets to 0 only at the program load that
//! starts a new job (operators reset the counter per job).
//!
//! # Ground truth: categories
//!
//! Truth intervals tile each machine's time line exactly (no gaps, no overlaps; adjacent
//! intervals with the same category, activity and context are merged):
//!
//! | what the machine did | category | activity |
//! |---|---|---|
//! | cutting in a production cycle | production | `cutting` |
//! | part load/unload between cycles (part of the standard cycle) | production | `load/unload` |
//! | program load, setup | setup | `program load`, `setup` |
//! | teardown after the last part | setup | `teardown` |
//! | prove-out, including its ACTIVE moments | program_proveout | `prove-out` |
//! | waiting for first-article inspection | waiting_inspection | `first-article inspection` |
//! | insert / tool change | tool_change | `insert change` |
//! | alarm until reset, e-stop | machine_fault | `alarm`, `emergency stop` |
//! | waiting for material or blanks | starved | `waiting for material` |
//! | coffee break, operator at another machine | no_operator | `coffee break`, `operator away` |
//! | finished-parts rack full | blocked | `parts rack full` |
//! | maintenance | maintenance | `preventive maintenance` |
//! | lunch, off shift, weekend | planned_downtime | `lunch break`, `off shift` |
//! | the QMS holds the job (until released, or the working period ends) | quality_hold | `quality hold` |
//! | feed hold for chip clearing (under two minutes) | micro_stop | `chip clearing` |
//! | idle nobody explains | unexplained | `idle` |
//!
//! Around the machines, the floor ([`machine::Floor`]): the ERP sends each machine's dispatch
//! list (now and then with a repeat order under the same program, which the operator then
//! confirms), the QMS opens and releases holds and requests and decides first-article
//! inspections, and operators sign in per shift and say why their machine waited (mostly;
//! not always). The demo sends all of it to the bridge's REST API ([`floor`]).

pub mod agent_face;
pub mod dialect;
pub mod floor;
pub mod focas_face;
pub mod haas_face;
pub mod machine;
pub mod modbus_face;
pub mod rng;
pub mod score;
pub mod serve;
pub mod shdr_face;
pub mod shop;
mod truth;

pub use machine::{MachineSim, SimEvent, SimOutput, TruthInterval, demo_shop_offset};
pub use truth::{TRUTH_FILE, TruthError, TruthLine, TruthSink, TruthStats, TruthWriter};

use crate::model::MachineId;

/// How a simulated controller names its programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramStyle {
    /// Fanuc-like `O1234` (Haas, Fanuc, Mazak in EIA mode, Doosan).
    ONumber,
    /// Okuma `ABC-123.MIN`.
    Okuma,
    /// Heidenhain `1234_OP10.H`.
    Heidenhain,
}

/// One machine model of the demo fleet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelSpec {
    /// The id's prefix: `haas-vf2` gives `haas-vf2-01`.
    pub id_prefix: &'static str,
    /// The display name's prefix: `Haas VF-2` gives `Haas VF-2 #1`.
    pub name: &'static str,
    /// The profile (controller family) a protocol face of this machine speaks.
    pub profile: &'static str,
    pub lathe: bool,
    pub max_rpm: f64,
    pub programs: ProgramStyle,
}

/// The demo fleet's models, in the order machines are assigned (machine `i` is model
/// `i % FLEET.len()`).
pub const FLEET: &[ModelSpec] = &[
    ModelSpec {
        id_prefix: "haas-vf2",
        name: "Haas VF-2",
        profile: "haas-ngc",
        lathe: false,
        max_rpm: 8100.0,
        programs: ProgramStyle::ONumber,
    },
    ModelSpec {
        id_prefix: "okuma-lb3000",
        name: "Okuma LB3000 EX II",
        profile: "okuma-osp",
        lathe: true,
        max_rpm: 4200.0,
        programs: ProgramStyle::Okuma,
    },
    ModelSpec {
        id_prefix: "mazak-qtn",
        name: "Mazak QT-Nexus 250",
        profile: "mazak",
        lathe: true,
        max_rpm: 4000.0,
        programs: ProgramStyle::ONumber,
    },
    ModelSpec {
        id_prefix: "dmg-dmu50",
        name: "DMG MORI DMU 50",
        profile: "mtconnect-generic",
        lathe: false,
        max_rpm: 14000.0,
        programs: ProgramStyle::Heidenhain,
    },
    ModelSpec {
        id_prefix: "fanuc-robodrill",
        name: "Fanuc Robodrill α-D21MiB5",
        profile: "fanuc-mtconnect",
        lathe: false,
        max_rpm: 24000.0,
        programs: ProgramStyle::ONumber,
    },
    ModelSpec {
        id_prefix: "haas-st20",
        name: "Haas ST-20",
        profile: "haas-ngc",
        lathe: true,
        max_rpm: 4000.0,
        programs: ProgramStyle::ONumber,
    },
    ModelSpec {
        id_prefix: "okuma-genos-m560",
        name: "Okuma GENOS M560-V",
        profile: "okuma-osp",
        lathe: false,
        max_rpm: 15000.0,
        programs: ProgramStyle::Okuma,
    },
    ModelSpec {
        id_prefix: "mori-sl25",
        name: "Mori Seiki SL-25 (1996, stack-light retrofit)",
        profile: "moxa-e1212",
        lathe: true,
        max_rpm: 3500.0,
        programs: ProgramStyle::ONumber,
    },
];

/// The model of machine `index`.
pub fn model_of(index: usize) -> &'static ModelSpec {
    &FLEET[index % FLEET.len()]
}

/// The shift calendar machine `index` works (`two-shift` or `one-shift`; see
/// [`demo_calendars`]).
pub fn calendar_of(index: usize) -> &'static str {
    if MachineSim::works_two_shifts(index) {
        "two-shift"
    } else {
        "one-shift"
    }
}

/// The simulated shop's calendars as a bridge configures them: Monday to Friday, shift 1
/// 06:00–14:30 and shift 2 14:30–23:00, each with a 15-minute coffee break (nobody at the
/// machines: `no_operator`) and a 30-minute lunch (`planned_downtime`), in shop time
/// (UTC + `shop_offset_micros`, whole seconds).
pub fn demo_calendars(
    shop_offset_micros: i64,
) -> std::collections::BTreeMap<String, std::sync::Arc<crate::context::calendar::Calendar>> {
    use crate::context::calendar::{Break, Calendar, Shift, Zone};
    use crate::model::LossCategory;
    let h = |hh: i64, mm: i64| hh * 3600 + mm * 60;
    let weekdays = [true, true, true, true, true, false, false];
    let shift = |name: &str, start, end, coffee: (i64, i64), lunch: (i64, i64)| Shift {
        name: name.to_string(),
        days: weekdays,
        start,
        end,
        breaks: vec![
            Break {
                start: coffee.0,
                end: coffee.1,
                category: LossCategory::NO_OPERATOR,
            },
            Break {
                start: lunch.0,
                end: lunch.1,
                category: LossCategory::PLANNED_DOWNTIME,
            },
        ],
    };
    let first = shift(
        "1",
        h(6, 0),
        h(14, 30),
        (h(9, 0), h(9, 15)),
        (h(11, 30), h(12, 0)),
    );
    let second = shift(
        "2",
        h(14, 30),
        h(23, 0),
        (h(17, 30), h(17, 45)),
        (h(19, 30), h(20, 0)),
    );
    let zone = Zone::Fixed {
        seconds: shop_offset_micros.div_euclid(1_000_000),
    };
    let cal = |name: &str, shifts: Vec<Shift>| {
        (
            name.to_string(),
            std::sync::Arc::new(Calendar {
                name: name.to_string(),
                zone: zone.clone(),
                shifts,
                holidays: Vec::new(),
                planned: Vec::new(),
            }),
        )
    };
    [
        cal("two-shift", vec![first.clone(), second]),
        cal("one-shift", vec![first]),
    ]
    .into_iter()
    .collect()
}

/// The id and display name of machine `index` (`haas-vf2-01`, `Haas VF-2 #1`).
pub fn machine_name(index: usize) -> (String, String) {
    let m = model_of(index);
    let n = index + 1;
    (
        format!("{}-{n:02}", m.id_prefix),
        format!("{} #{n}", m.name),
    )
}

/// A simulated machine's nameplate, as its configuration would state it: the maker and model
/// from its display name (`Haas VF-2 #1`), its MTConnect uuid as the serial number.
pub fn nameplate(name: &str, uuid: &str) -> crate::config::Identification {
    let model_name = name.split(" #").next().unwrap_or(name);
    let (maker, model) = model_name.split_once(' ').unwrap_or((model_name, ""));
    crate::config::Identification {
        manufacturer: Some(maker.to_string()),
        model: Some(model.to_string()).filter(|m| !m.is_empty()),
        serial_number: Some(uuid.to_string()),
        software_revision: None,
        location: None,
    }
}

/// A realistic mixed fleet of `n` machines: `(id, display name, profile)`. Ids are unique for
/// any `n` (the number is the machine's position, 1-based).
pub fn demo_machines(n: usize) -> Vec<(MachineId, String, String)> {
    (0..n)
        .filter_map(|i| {
            let (id, name) = machine_name(i);
            // Ids built from FLEET prefixes and digits are always valid; skip rather than panic.
            MachineId::new(&id)
                .ok()
                .map(|id| (id, name, model_of(i).profile.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn demo_fleet_ids_are_unique_and_valid() {
        let fleet = demo_machines(1000);
        assert_eq!(fleet.len(), 1000);
        let ids: HashSet<_> = fleet.iter().map(|(id, _, _)| id.clone()).collect();
        assert_eq!(ids.len(), 1000);
        assert_eq!(fleet[0].0.as_str(), "haas-vf2-01");
        assert_eq!(fleet[0].1, "Haas VF-2 #1");
        assert_eq!(fleet[0].2, "haas-ngc");
        assert_eq!(fleet[1].0.as_str(), "okuma-lb3000-02");
        assert_eq!(fleet[4].0.as_str(), "fanuc-robodrill-05");
        assert_eq!(fleet[999].0.as_str(), "mori-sl25-1000");
    }
}
