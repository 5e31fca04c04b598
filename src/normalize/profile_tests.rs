//! Profile language tests: every shipped profile compiles, errors say where, and each
//! transform does what profiles/README.md says, driven through the normalizer.

use std::sync::Arc;

use super::profile::{BUILTIN, ProfileSource, load_str};
use super::*;
use crate::drivers::RawObservation;
use crate::model::{Execution, ShopState};

fn compile(text: &str) -> Result<Profile, String> {
    load_str("test", text, &ProfileSource::default()).map_err(|e| e.to_string())
}

fn m() -> MachineId {
    MachineId::new("m1").unwrap_or_else(|e| panic!("{e}"))
}

fn obs(key: &str, v: Value, t_ms: i64) -> DriverEvent {
    DriverEvent::Observation(RawObservation {
        machine: m(),
        key: SignalId::new(key),
        value: v,
        quality: Quality::Good,
        source_time: Some(Timestamp::from_millis(t_ms)),
        received: Timestamp::from_millis(t_ms),
        meta: None,
    })
}

fn normalizer(text: &str) -> Normalizer {
    let p = compile(text).unwrap_or_else(|e| panic!("{e}"));
    let mut n = Normalizer::new();
    n.set_profile(m(), Arc::new(p));
    n
}

fn values_of<'a>(out: &'a [RecordKind], signal: &str) -> Vec<&'a Value> {
    out.iter()
        .filter_map(|r| match r {
            RecordKind::Observation(o) if o.signal.as_str() == signal => Some(&o.value),
            _ => None,
        })
        .collect()
}

#[test]
fn every_profile_in_the_profiles_folder_compiles() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{e}")) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        if path.extension().is_some_and(|x| x == "toml") {
            if let Err(e) = profile::load_file(&path) {
                panic!("{}: {e}", path.display());
            }
            n += 1;
        }
    }
    assert!(n >= 4, "{n} profiles");
    // And the built-in copies are those files.
    for (name, _) in BUILTIN {
        assert!(dir.join(format!("{name}.toml")).exists(), "{name}");
        ProfileSource::default()
            .load(name)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn errors_name_the_file_line_column_and_what_was_expected() {
    insta::assert_snapshot!(compile("[[signal]]\nid = \"execution\"\nfrom = { key = \"exec\" }\nmpa = {}\n").unwrap_err(), @"profiles/test.toml:4:1: unknown field `mpa`, expected one of `id`, `from`, `expr`, `map`, `unmapped`, `type`, `scale`, `offset`, `threshold`, `debounce`, `min_hold`, `advancing`, `blink`, `levels`, `hysteresis`, `alarm_level`");
    insta::assert_snapshot!(compile("[[signal]]\nid = \"running\"\nexpr = \"execution = 'ACTIVE'\"\n").unwrap_err(), @"profiles/test.toml:3:19: signal[0].expr: expected `==` to compare, found a single `=`");
    insta::assert_snapshot!(compile("[[signal]]\nid = \"running\"\nexpr = \"exection == 'ACTIVE'\"\n").unwrap_err(), @"profiles/test.toml:3:9: signal[0].expr: unknown signal `exection`: expected a canonical signal or one this profile defines above (quote words: 'exection')");
    insta::assert_snapshot!(compile("[[signal]]\nid = \"spindle_on\"\nfrom = { key = \"amps\" }\nthreshold = { on = 2.0, off = 5.0 }\ndebounce = \"2 parsecs\"\n").unwrap_err(), @r#"
    profiles/test.toml:4:13: signal[0].threshold: expected off <= on (the signal turns on at `on` and off at `off`), found on = 2, off = 5
    profiles/test.toml:5:12: signal[0].debounce: expected a duration: a number with a unit ms, s, m, h or d, like "90s", "12h", "30d" or "1h30m", found "2 parsecs" (unknown unit "parsecs")
    "#);
    insta::assert_snapshot!(compile("[state]\nexecution = [{ when = \"true\", value = \"RUNNING\" }]\n").unwrap_err(), @"profiles/test.toml:2:39: state.execution[0].value: expected one of READY, ACTIVE, INTERRUPTED, FEED_HOLD, STOPPED, OPTIONAL_STOP, PROGRAM_STOPPED, PROGRAM_COMPLETED, WAIT, found \"RUNNING\"");
    insta::assert_snapshot!(compile("extends = \"okuma\"\n").unwrap_err(), @"profiles/test.toml:1:11: extends: unknown profile \"okuma\"; known: advantech-adam-6050, fanuc-focas, fanuc-mtconnect, haas-ngc, heidenhain-lsv2, mazak, moxa-e1212, moxa-e1240-current, mtconnect-generic, okuma-osp, opcua-machine-tool, sinumerik-opcua");
    insta::assert_snapshot!(compile("[[signal]]\nid = \"x\"\n").unwrap_err(), @"profiles/test.toml:1:1: signal[0]: signal \"x\" needs `from` (which source items feed it) or `expr` (how to compute it)");
}

#[test]
fn value_maps_scaling_and_types() {
    let mut n = normalizer(
        r#"
[[signal]]
id = "execution"
from = { key = "Q500" }
map = { "FEED HOLD" = "FEED_HOLD", BUSY = "ACTIVE", IDLE = "READY", "ALARM ON" = "INTERRUPTED" }
[[signal]]
id = "spindle_load"
from = { key = "amps" }
scale = 2.5
offset = -1
"#,
    );
    let mut out = Vec::new();
    n.process_batch(
        [
            obs("Q500", Value::text("busy"), 1_000),
            obs("amps", Value::text("10"), 1_000),
            obs("Q500", Value::text("FEED HOLD"), 2_000),
        ],
        &mut out,
    );
    assert_eq!(
        values_of(&out, "execution"),
        vec![&Value::text("ACTIVE"), &Value::text("FEED_HOLD")]
    );
    assert_eq!(values_of(&out, "spindle_load"), vec![&Value::Float(24.0)]);
    assert_eq!(
        n.state(&m()).and_then(|s| s.execution),
        Some(Execution::FeedHold)
    );
    // A value that cannot be scaled is kept, flagged, and counted.
    n.process_batch([obs("amps", Value::text("n/a"), 3_000)], &mut out);
    assert_eq!(n.stats.decode_errors, 1);
}

#[test]
fn thresholds_have_hysteresis_and_rules_derive_the_state() {
    // A legacy machine: a spindle current sensor and a cycle relay on a Modbus module.
    let mut n = normalizer(
        r#"
[[signal]]
id = "spindle_on"
from = { key = "spindle_amps" }
threshold = { on = 4.0, off = 2.0 }
[[signal]]
id = "cycle"
from = { key = "cycle_relay" }
type = "bool"
[[signal]]
id = "cutting"
expr = "cycle && spindle_on"

[state]
availability = [{ value = "AVAILABLE" }]
execution = [
  { when = "cutting", value = "ACTIVE" },
  { when = "cycle", value = "FEED_HOLD" },
  { value = "READY" },
]
controller_mode = [{ value = "AUTOMATIC" }]
"#,
    );
    let mut out = Vec::new();
    let feed = [
        ("cycle_relay", Value::Int(1), 1_000),
        ("spindle_amps", Value::Float(3.0), 2_000), // below on: still off
        ("spindle_amps", Value::Float(4.5), 3_000), // on
        ("spindle_amps", Value::Float(3.0), 4_000), // between: stays on
        ("spindle_amps", Value::Float(1.5), 5_000), // off
    ];
    let mut shop = Vec::new();
    for (k, v, t) in feed {
        n.process_batch([obs(k, v, t)], &mut out);
        shop.push(n.state(&m()).map(|s| s.shop_state()));
    }
    assert_eq!(
        values_of(&out, "spindle_on"),
        vec![
            &Value::Bool(false),
            &Value::Bool(true),
            &Value::Bool(true),
            &Value::Bool(false)
        ]
    );
    assert_eq!(
        values_of(&out, "cutting"),
        vec![&Value::Bool(false), &Value::Bool(true), &Value::Bool(false)]
    );
    assert_eq!(
        shop,
        vec![
            Some(ShopState::Idle),
            Some(ShopState::Idle),
            Some(ShopState::Run),
            Some(ShopState::Run),
            Some(ShopState::Idle)
        ]
    );
    assert_eq!(
        n.state(&m()).and_then(|s| s.execution),
        Some(Execution::FeedHold)
    );
}

#[test]
fn debounce_drops_blips_and_keeps_the_edge_time() {
    let mut n = normalizer(
        r#"
[[signal]]
id = "execution"
from = { key = "exec" }
debounce = "2s"
"#,
    );
    let mut out = Vec::new();
    n.process_batch([obs("exec", Value::text("READY"), 0)], &mut out);
    n.tick(Timestamp::from_millis(2_000), &mut out);
    assert_eq!(values_of(&out, "execution"), vec![&Value::text("READY")]);
    // A 500 ms blip to ACTIVE is dropped.
    n.process_batch([obs("exec", Value::text("ACTIVE"), 10_000)], &mut out);
    n.process_batch([obs("exec", Value::text("READY"), 10_500)], &mut out);
    n.tick(Timestamp::from_millis(20_000), &mut out);
    assert_eq!(values_of(&out, "execution").len(), 1);
    // A real change is accepted after 2 s, at the time it happened.
    n.process_batch([obs("exec", Value::text("ACTIVE"), 30_000)], &mut out);
    n.tick(Timestamp::from_millis(31_000), &mut out);
    assert_eq!(values_of(&out, "execution").len(), 1);
    n.tick(Timestamp::from_millis(32_000), &mut out);
    assert_eq!(
        values_of(&out, "execution"),
        vec![&Value::text("READY"), &Value::text("ACTIVE")]
    );
    let change = out
        .iter()
        .rev()
        .find_map(|r| match r {
            RecordKind::StateChange(s) => Some(s),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no state change"));
    assert_eq!(change.at, Timestamp::from_millis(30_000));
}

#[test]
fn advancing_turns_a_timer_that_goes_up_into_motion() {
    let mut n = normalizer(
        r#"
[[signal]]
id = "motion_time"
from = { key = "Q301" }
type = "int"

[[signal]]
id = "motion"
expr = "motion_time"
advancing = "3s"

[state]
availability = [{ value = "AVAILABLE" }]
execution = [{ when = "motion", value = "ACTIVE" }, { value = "READY" }]
"#,
    );
    let mut out = Vec::new();
    // The first reading says nothing; then the timer goes up every second, then stops.
    for (i, secs) in [100, 101, 102, 103, 103, 103].iter().enumerate() {
        let t = i as i64 * 1_000;
        n.process_batch([obs("Q301", Value::Int(*secs), t)], &mut out);
        n.tick(Timestamp::from_millis(t), &mut out);
    }
    assert_eq!(
        values_of(&out, "motion"),
        vec![&Value::Bool(false), &Value::Bool(true)]
    );
    assert_eq!(
        n.state(&m()).and_then(|s| s.execution),
        Some(Execution::Active)
    );
    // Three seconds after the last advance (at 3 s) it is over, at that time.
    n.tick(Timestamp::from_millis(5_999), &mut out);
    assert_eq!(values_of(&out, "motion").len(), 2);
    n.tick(Timestamp::from_millis(6_000), &mut out);
    assert_eq!(
        values_of(&out, "motion"),
        vec![&Value::Bool(false), &Value::Bool(true), &Value::Bool(false)]
    );
    assert_eq!(
        n.state(&m()).and_then(|s| s.execution),
        Some(Execution::Ready)
    );
    let change = out
        .iter()
        .rev()
        .find_map(|r| match r {
            RecordKind::StateChange(s) => Some(s),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no state change"));
    assert_eq!(change.at, Timestamp::from_millis(6_000));
    // The timer itself is journaled under its own signal.
    assert_eq!(values_of(&out, "motion_time").len(), 6);
}

#[test]
fn blink_tells_a_flashing_lamp_from_a_steady_one() {
    let mut n = normalizer(
        r#"
[[signal]]
id = "amber"
from = { key = "di1" }
type = "bool"
blink = "2s"
"#,
    );
    let mut out = Vec::new();
    let at = |n: &mut Normalizer, v: bool, t: i64, out: &mut Vec<RecordKind>| {
        n.process_batch([obs("di1", Value::Bool(v), t)], out);
        n.tick(Timestamp::from_millis(t), out);
    };
    at(&mut n, false, 0, &mut out);
    at(&mut n, true, 1_000, &mut out);
    // Flashing at 1 Hz: on, off, on within the window is BLINKING, and it stays so.
    for (i, v) in [false, true, false, true, false].iter().enumerate() {
        at(&mut n, *v, 1_500 + i as i64 * 500, &mut out);
    }
    assert_eq!(
        values_of(&out, "amber"),
        vec![
            &Value::text("OFF"),
            &Value::text("ON"),
            &Value::text("OFF"),
            &Value::text("BLINKING"),
        ]
    );
    // It stops flashing, off: a window after the last change it is OFF.
    n.tick(Timestamp::from_millis(5_000), &mut out);
    assert_eq!(values_of(&out, "amber").len(), 4);
    n.tick(Timestamp::from_millis(5_500), &mut out);
    assert_eq!(values_of(&out, "amber").last(), Some(&&Value::text("OFF")));
    // A steady lamp is ON and stays ON.
    at(&mut n, true, 20_000, &mut out);
    n.tick(Timestamp::from_millis(30_000), &mut out);
    assert_eq!(values_of(&out, "amber").last(), Some(&&Value::text("ON")));
    assert_eq!(values_of(&out, "amber").len(), 6);
}

#[test]
fn a_refused_read_is_journaled_as_said_and_the_signal_is_unknown() {
    let mut n = normalizer(
        r#"
[[signal]]
id = "part_count"
from = { key = "Q402" }
type = "int"
"#,
    );
    let mut out = Vec::new();
    n.process_batch([obs("Q402", Value::Int(7), 0)], &mut out);
    assert_eq!(n.state(&m()).and_then(|s| s.part_count), Some(7));
    let mut bad = obs("Q402", Value::text("Q402: ?, ?Q402"), 1_000);
    if let DriverEvent::Observation(o) = &mut bad {
        o.quality = Quality::Bad(QualityReason::DeviceError);
    }
    n.process_batch([bad], &mut out);
    match out.last() {
        Some(RecordKind::Observation(o)) => {
            assert_eq!(o.signal.as_str(), "part_count");
            assert_eq!(o.value, Value::text("Q402: ?, ?Q402"));
            assert_eq!(o.quality, Quality::Bad(QualityReason::DeviceError));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(n.stats.decode_errors, 0);
    assert_eq!(n.state(&m()).and_then(|s| s.part_count), None);
}

#[test]
fn min_hold_keeps_a_value_and_moves_the_next_edge() {
    let mut n = normalizer(
        r#"
[[signal]]
id = "execution"
from = { key = "exec" }
min_hold = "10s"
"#,
    );
    let mut out = Vec::new();
    n.process_batch([obs("exec", Value::text("ACTIVE"), 0)], &mut out);
    n.process_batch([obs("exec", Value::text("READY"), 3_000)], &mut out);
    assert_eq!(values_of(&out, "execution"), vec![&Value::text("ACTIVE")]);
    n.tick(Timestamp::from_millis(10_000), &mut out);
    assert_eq!(
        values_of(&out, "execution"),
        vec![&Value::text("ACTIVE"), &Value::text("READY")]
    );
    let last = out.iter().rev().find_map(|r| match r {
        RecordKind::Observation(o) => Some(o.time.aligned),
        _ => None,
    });
    assert_eq!(last, Some(Timestamp::from_millis(10_000)));
}

#[test]
fn conditions_raise_and_clear_the_alarm_by_native_code() {
    let p = ProfileSource::default()
        .load("okuma-osp")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut n = Normalizer::new();
    n.set_profile(m(), Arc::new(p));
    let cond = |level, code: Option<&str>, t| {
        DriverEvent::Condition(Box::new(RawCondition {
            machine: m(),
            key: SignalId::new("CoolantSystem1_cond"),
            level,
            native_code: code.map(str::to_string),
            native_severity: None,
            qualifier: None,
            message: code.map(|c| format!("alarm {c}")),
            source_time: Some(Timestamp::from_millis(t)),
            received: Timestamp::from_millis(t),
            meta: None,
        }))
    };
    let mut out = Vec::new();
    n.process_batch(
        [
            obs("avail", Value::text("AVAILABLE"), 0),
            cond(ConditionLevel::Fault, Some("1719"), 1_000),
            cond(ConditionLevel::Fault, Some("1720"), 2_000),
        ],
        &mut out,
    );
    assert_eq!(n.state(&m()).map(|s| s.alarm), Some(true));
    n.process_batch(
        [cond(ConditionLevel::Normal, Some("1719"), 3_000)],
        &mut out,
    );
    assert_eq!(n.state(&m()).map(|s| s.alarm), Some(true));
    n.process_batch([cond(ConditionLevel::Normal, None, 4_000)], &mut out);
    assert_eq!(n.state(&m()).map(|s| s.alarm), Some(false));
    assert_eq!(
        out.iter()
            .filter(|r| matches!(r, RecordKind::Condition(_)))
            .count(),
        4
    );
}

#[test]
fn agent_items_match_by_type_and_brand_keys_win() {
    let p = ProfileSource::default()
        .load("okuma-osp")
        .unwrap_or_else(|e| panic!("{e}"));
    let meta = |id: &str, t: &str, sub: Option<&str>| {
        Some(Arc::new(DataItemMeta {
            id: id.into(),
            item_type: t.into(),
            sub_type: sub.map(str::to_string),
            category: Some(ItemCategory::Sample),
            ..DataItemMeta::default()
        }))
    };
    let route = |key: &str, m: Option<Arc<DataItemMeta>>| {
        p.route(key, m.as_deref())
            .map(|r| p.signals[p.sources[r].signal].to_string())
    };
    assert_eq!(route("pexecution", None).as_deref(), Some("execution"));
    assert_eq!(
        route("Lpexecution", meta("Lpexecution", "EXECUTION", None)).as_deref(),
        Some("execution")
    );
    assert_eq!(route("S1speed", None).as_deref(), Some("spindle_speed"));
    // The second spindle is not the main spindle.
    assert_eq!(
        route(
            "S2speed",
            meta("S2speed", "ROTARY_VELOCITY", Some("ACTUAL"))
        ),
        None
    );
    assert_eq!(route("X1actm", None), None);
}

#[test]
fn every_profile_example_in_the_reference_compiles() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/README.md");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
    let mut n = 0;
    for block in text.split("```toml\n").skip(1) {
        let body = block.split("```").next().unwrap_or_default();
        if body.contains("[[machines]]") || body.contains("[profiles]") {
            continue; // configuration, not a profile
        }
        compile(body).unwrap_or_else(|e| panic!("{e}\n--- in ---\n{body}"));
        n += 1;
    }
    assert!(n >= 6, "{n} examples");
}

#[test]
fn a_redefined_signal_keeps_its_place_in_the_parents_order() {
    // okuma-osp redefines part_count with a PART_COUNT fallback; the generic part_count_target
    // (PART_COUNT + TARGET) must still be tried first.
    let p = ProfileSource::default()
        .load("okuma-osp")
        .unwrap_or_else(|e| panic!("{e}"));
    let meta = |sub: Option<&str>| DataItemMeta {
        id: "pc".into(),
        item_type: "PART_COUNT".into(),
        sub_type: sub.map(str::to_string),
        category: Some(ItemCategory::Event),
        ..DataItemMeta::default()
    };
    let route = |m: &DataItemMeta| {
        p.route("pc", Some(m))
            .map(|r| p.signals[p.sources[r].signal].to_string())
    };
    assert_eq!(
        route(&meta(Some("TARGET"))).as_deref(),
        Some("part_count_target")
    );
    assert_eq!(route(&meta(None)).as_deref(), Some("part_count"));
    assert_eq!(route(&meta(Some("ALL"))).as_deref(), Some("part_count"));
    // And the brand's key still wins over a type match.
    assert_eq!(
        p.route("ppartcount", None)
            .map(|r| p.signals[p.sources[r].signal].to_string())
            .as_deref(),
        Some("part_count")
    );
}

proptest::proptest! {
    /// Whatever a profile file holds, loading it gives a profile or errors, never a panic.
    #[test]
    fn loading_any_text_never_panics(text in "(\\[\\[signal\\]\\]\n|id = \"[a-z_]{1,8}\"\n|from = \\{ key = \"[a-z]{1,5}\" \\}\n|expr = \".{0,20}\"\n|threshold = \\{ on = -?[0-9]{1,2}\\.0, off = [0-9]\\.0 \\}\n|debounce = \"[0-9a-z ]{0,4}\"\n|\\[state\\]\n|execution = \\[\\{ when = \".{0,12}\", value = \"[A-Z_]{1,8}\" \\}\\]\n|extends = \"[a-z-]{0,18}\"\n|.{0,12}\n){0,12}") {
        let _ = load_str("fuzz", &text, &ProfileSource::default());
    }

    #[test]
    fn loading_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
        let _ = load_str("fuzz", &String::from_utf8_lossy(&bytes), &ProfileSource::default());
    }
}

#[test]
fn a_state_rule_may_say_an_emergency_stop_is_true_as_the_reference_says() {
    compile("[state]\nemergency_stop = [{ when = \"true\", value = true }]\n")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(compile("[state]\nalarm = [{ value = \"FAULT\" }]\n").is_err());
}

#[test]
fn levels_place_an_analog_value_in_bands_with_hysteresis() {
    let mut n = normalizer(
        r#"
[[signal]]
id = "spindle_state"
from = { key = "amps" }
levels = [{ below = 1.0, value = "OFF" }, { below = 6.0, value = "IDLE" }, { value = "RUNNING" }]
hysteresis = 0.5
"#,
    );
    let mut out = Vec::new();
    for (i, amps) in [0.2, 1.2, 5.8, 6.2, 5.7, 6.6, 5.4, 0.7, 0.4]
        .iter()
        .enumerate()
    {
        n.process_batch(
            [obs("amps", Value::Float(*amps), i as i64 * 1_000)],
            &mut out,
        );
    }
    let words: Vec<String> = values_of(&out, "spindle_state")
        .iter()
        .map(|v| v.to_string())
        .collect();
    // 1.2 is within 0.5 of the OFF/IDLE edge, so it stays OFF; 6.2 stays IDLE; 5.7 stays RUNNING.
    assert_eq!(
        words,
        [
            "OFF", "OFF", "IDLE", "IDLE", "IDLE", "RUNNING", "IDLE", "IDLE", "OFF"
        ]
    );
    let e = compile(
        "[[signal]]\nid = \"s\"\nfrom = { key = \"a\" }\nlevels = [{ below = 5.0, value = \"A\" }, { below = 2.0, value = \"B\" }, { value = \"C\" }]\n",
    )
    .unwrap_err();
    assert!(
        e.contains("signal[0].levels[1].below: expected the bands in rising order"),
        "{e}"
    );
}

#[test]
fn register_maps_are_checked_and_inherited_by_key() {
    let p = ProfileSource::default()
        .load("advantech-adam-6050")
        .unwrap_or_else(|e| panic!("{e}"));
    let keys: Vec<&str> = p.registers.iter().map(|r| &*r.key).collect();
    assert_eq!(
        keys,
        [
            "di0_red",
            "di1_amber",
            "di2_green",
            "di3_cycle",
            "di4_counter"
        ]
    );
    let counter = &p.registers[4];
    assert_eq!(counter.address, 8);
    assert!(!counter.word_big);
    insta::assert_snapshot!(compile(r#"
[[register]]
key = "a"
table = "holdings"
address = 70000

[[register]]
key = "b"
table = "coil"
address = 1
type = "u16"

[[register]]
key = "c"
table = "input"
address = 2
type = "string"

[[register]]
key = "d"
table = "holding"
address = 3
bit = 16
word_order = "middle"
"#).unwrap_err(), @r#"
profiles/test.toml:4:9: register[0].table: expected "coil" (function 1), "discrete_input" (2), "holding" (3) or "input" (4), found "holdings"
profiles/test.toml:5:11: register[0].address: expected a 0-based address 0-65535 (holding register 40001 is 0), found 70000
profiles/test.toml:11:8: register[1].type: coils and discrete inputs are bits: expected "bool", found "u16"
profiles/test.toml:17:8: register[2].type: a string needs `length`: the registers it spans
profiles/test.toml:23:7: register[3].bit: expected a bit 0-15 (0 = least significant), found 16
profiles/test.toml:24:14: register[3].word_order: expected "big" or "little", found "middle"
"#);
}

#[test]
fn fanuc_focas_maps_statinfo_and_alarm_conditions() {
    use crate::model::{ControllerMode, EmergencyStop};
    let p = ProfileSource::default()
        .load("fanuc-focas")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut n = Normalizer::new();
    n.set_profile(m(), Arc::new(p));
    let mut out = Vec::new();
    let state = |n: &Normalizer| {
        n.state(&m())
            .map(|s| (s.execution, s.controller_mode, s.emergency_stop, s.alarm))
    };
    n.process_batch(
        [
            obs("statinfo.aut", Value::Int(1), 0),
            obs("statinfo.run", Value::Int(3), 0),
            obs("statinfo.emergency", Value::Int(0), 0),
            obs("statinfo.alarm", Value::Int(0), 0),
            obs("program.name", Value::text("O4417"), 0),
            obs("param.6711", Value::Int(12), 0),
            obs("#3027", Value::Float(4500.0), 0),
        ],
        &mut out,
    );
    assert_eq!(
        state(&n),
        Some((
            Some(Execution::Active),
            Some(ControllerMode::Automatic),
            Some(EmergencyStop::Armed),
            false
        ))
    );
    assert_eq!(values_of(&out, "program"), vec![&Value::text("O4417")]);
    assert_eq!(values_of(&out, "part_count"), vec![&Value::Int(12)]);
    assert_eq!(
        values_of(&out, "spindle_speed"),
        vec![&Value::Float(4500.0)]
    );
    // HOLD in MDI; then STOP in EDIT with the e-stop pressed.
    n.process_batch(
        [
            obs("statinfo.run", Value::Int(2), 1_000),
            obs("statinfo.aut", Value::Int(0), 1_000),
        ],
        &mut out,
    );
    assert_eq!(
        state(&n).map(|s| (s.0, s.1)),
        Some((
            Some(Execution::FeedHold),
            Some(ControllerMode::ManualDataInput)
        ))
    );
    n.process_batch(
        [
            obs("statinfo.run", Value::Int(1), 2_000),
            obs("statinfo.aut", Value::Int(3), 2_000),
            obs("statinfo.emergency", Value::Int(1), 2_000),
        ],
        &mut out,
    );
    assert_eq!(
        state(&n).map(|s| (s.0, s.1, s.2)),
        Some((
            Some(Execution::Stopped),
            Some(ControllerMode::Edit),
            Some(EmergencyStop::Triggered)
        ))
    );
    // An alarm the driver reads as a condition, and statinfo's ALM: the machine is in alarm;
    // a low battery (2) is not.
    let cond = |level, code: Option<&str>, t| {
        DriverEvent::Condition(Box::new(RawCondition {
            machine: m(),
            key: SignalId::new("alarm"),
            level,
            native_code: code.map(str::to_string),
            native_severity: None,
            qualifier: None,
            message: code.map(|_| "OVER TRAVEL ( +1 )".to_string()),
            source_time: Some(Timestamp::from_millis(t)),
            received: Timestamp::from_millis(t),
            meta: None,
        }))
    };
    n.process_batch(
        [
            obs("statinfo.emergency", Value::Int(0), 3_000),
            obs("statinfo.alarm", Value::Int(2), 3_000),
        ],
        &mut out,
    );
    assert_eq!(state(&n).map(|s| s.3), Some(false));
    n.process_batch(
        [cond(ConditionLevel::Fault, Some("OT0500"), 4_000)],
        &mut out,
    );
    assert_eq!(state(&n).map(|s| s.3), Some(true));
    n.process_batch(
        [cond(ConditionLevel::Normal, Some("OT0500"), 5_000)],
        &mut out,
    );
    assert_eq!(state(&n).map(|s| s.3), Some(false));
    n.process_batch([obs("statinfo.alarm", Value::Int(1), 6_000)], &mut out);
    assert_eq!(state(&n).map(|s| s.3), Some(true));
}
