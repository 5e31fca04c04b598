//! Loader tests: error text pinned by snapshots, environment overrides, the example file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const ORIGIN: &str = "shopbridge.toml";

/// The errors for `text` (which must fail), one per line.
fn errs(text: &str) -> String {
    errs_env(text, &[])
}

fn errs_env(text: &str, env: &[(&str, &str)]) -> String {
    match load_str_with_env(text, ORIGIN, env_of(env)) {
        Ok(c) => panic!("expected errors, got {c:#?}"),
        Err(e) => e.to_string(),
    }
}

fn env_of(env: &[(&str, &str)]) -> Vec<(String, String)> {
    env.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn ok(text: &str) -> Config {
    match load_str(text, ORIGIN) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

const ONE_SHDR: &str = r#"
[http]
listen = "127.0.0.1:8080"
[journal]
dir = "./shopbridge-data"
[[machines]]
id = "okuma-1"
name = "Okuma MULTUS U3000"
profile = "okuma-osp"
[machines.driver]
type = "shdr"
address = "127.0.0.1:7878"
"#;

#[test]
fn the_issue_example_loads_with_defaults_elsewhere() {
    let c = ok(ONE_SHDR);
    assert_eq!(
        c.http.listen,
        "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.journal.dir, PathBuf::from("./shopbridge-data"));
    assert_eq!(c.journal.max_age, Duration::from_secs(30 * 86400));
    assert_eq!(c.journal.max_bytes, 2 << 30);
    assert_eq!(c.journal.hard_cap_bytes, 4 << 30);
    assert_eq!(c.journal.batch_max_records, 16384);
    assert_eq!(c.log, LogConfig::default());
    assert_eq!(c.sim, SimConfig::default());
    assert_eq!(c.taxonomy, Taxonomy::default());
    assert_eq!(c.machines.len(), 1);
    let m = &c.machines[0];
    assert_eq!(m.id.as_str(), "okuma-1");
    assert_eq!(m.name, "Okuma MULTUS U3000");
    assert_eq!(m.profile, "okuma-osp");
    assert_eq!(
        m.driver,
        DriverConfig::Shdr {
            address: "127.0.0.1:7878".into(),
            heartbeat: None,
            device: None,
            devices_file: None,
        }
    );
}

#[test]
fn an_empty_file_is_all_defaults() {
    let c = ok("");
    assert_eq!(c.http, HttpConfig::default());
    assert_eq!(c.journal, JournalConfig::default());
    assert!(c.machines.is_empty());
}

#[test]
fn every_key_set() {
    let c = ok(r#"
[http]
listen = "0.0.0.0:9090"
[journal]
dir = "/var/lib/shopbridge"
max_age = "12h"
max_bytes = "500MB"
hard_cap_bytes = 1000000000
batch_max_records = 100
[log]
level = "info,shopbridge::drivers=debug"
format = "json"
[sim]
speed = 10.0
seed = 42
[taxonomy]
categories = ["setup", "coffee_break"]
[[machines]]
id = "sim-1"
name = "Sim one"
profile = "okuma-osp"
[machines.driver]
type = "sim"
seed = 7
"#);
    assert_eq!(c.http.listen.port(), 9090);
    assert_eq!(c.journal.max_age, Duration::from_secs(12 * 3600));
    assert_eq!(c.journal.max_bytes, 500_000_000);
    assert_eq!(c.journal.hard_cap_bytes, 1_000_000_000);
    assert_eq!(c.journal.batch_max_records, 100);
    assert!(c.log.json);
    assert_eq!(c.log.level, "info,shopbridge::drivers=debug");
    assert_eq!(
        c.sim,
        SimConfig {
            speed: 10.0,
            seed: 42,
            shop_offset_micros: 0,
        }
    );
    assert_eq!(c.taxonomy.categories().len(), 3, "unexplained is added");
    assert_eq!(c.machines[0].driver, DriverConfig::Sim { seed: Some(7) });
}

#[test]
fn syntax_error() {
    insta::assert_snapshot!(errs("[http]\nlisten = \"127.0.0.1:8080\n[journal]\n"), @r#"shopbridge.toml:2:25: invalid TOML: invalid basic string, expected `"`"#);
    insta::assert_snapshot!(errs("[http]\nlisten 127.0.0.1\n"), @r#"shopbridge.toml:2:8: invalid TOML: key with no value, expected `=`"#);
}

#[test]
fn unknown_key_typo_lists_the_expected_keys() {
    let text = ONE_SHDR.replace("address =", "adress =");
    insta::assert_snapshot!(errs(&text), @r#"shopbridge.toml:12:1: machines[0].driver.adress: unknown key `adress`, expected one of `address`, `heartbeat`, `device`, `devices_file`"#);
    insta::assert_snapshot!(errs("[http]\nlisen = \"127.0.0.1:8080\"\n"), @r#"shopbridge.toml:2:1: http.lisen: unknown key `lisen`, expected one of `listen`, `local_role`, `tokens`, `max_connections`"#);
    insta::assert_snapshot!(errs("[htttp]\nlisten = \"127.0.0.1:8080\"\n"), @r#"shopbridge.toml:1:2: htttp: unknown section `htttp`, expected one of `http`, `journal`, `log`, `sim`, `taxonomy`, `profiles`, `opcua`, `sparkplug`, `mqtt`, `context`, `calendars`, `machines`, `plugins`"#);
}

#[test]
fn wrong_type() {
    insta::assert_snapshot!(errs("[http]\nlisten = 8080\n"), @r#"shopbridge.toml:2:10: http.listen: expected a string, found integer `8080`"#);
    insta::assert_snapshot!(errs("[journal]\nbatch_max_records = \"many\"\n"), @r#"shopbridge.toml:2:21: journal.batch_max_records: expected a whole number, found string "many""#);
    insta::assert_snapshot!(errs("[sim]\nspeed = \"fast\"\n"), @r#"shopbridge.toml:2:9: sim.speed: expected a number, found string "fast""#);
    insta::assert_snapshot!(errs("http = 5\n"), @r#"shopbridge.toml:1:8: http: expected a table (a [http] section), found integer"#);
    insta::assert_snapshot!(errs("[log]\nformat = \"xml\"\n"), @r#"shopbridge.toml:2:10: log.format: unknown variant `xml`, expected `text` or `json`"#);
}

#[test]
fn unknown_driver_type_lists_the_known_types() {
    insta::assert_snapshot!(errs(&ONE_SHDR.replace("\"shdr\"", "\"profinet\"")), @r#"shopbridge.toml:11:8: machines[0].driver.type: unknown driver type "profinet", expected one of `sim`, `shdr`, `mtconnect`, `haas`, `modbus`, `focas`, `opcua`, `plugin`"#);
    insta::assert_snapshot!(errs(&ONE_SHDR.replace("\"shdr\"", "\"modbuss\"")), @r#"shopbridge.toml:11:8: machines[0].driver.type: unknown driver type "modbuss", expected one of `sim`, `shdr`, `mtconnect`, `haas`, `modbus`, `focas`, `opcua`, `plugin`"#);
    insta::assert_snapshot!(errs(&ONE_SHDR.replace("type = \"shdr\"\n", "")), @r#"shopbridge.toml:10:1: machines[0].driver: missing key `type`, expected one of `sim`, `shdr`, `mtconnect`, `haas`, `modbus`, `focas`, `opcua`, `plugin`"#);
}

#[test]
fn missing_keys() {
    insta::assert_snapshot!(errs(&ONE_SHDR.replace("name = \"Okuma MULTUS U3000\"\n", "")), @r#"shopbridge.toml:6:1: machines[0]: missing key `name`"#);
    insta::assert_snapshot!(errs("[[machines]]\nid = \"a\"\nname = \"A\"\nprofile = \"p\"\n"), @r#"shopbridge.toml:1:1: machines[0]: missing key `driver`"#);
}

const TWO_SIMS: &str = r#"
[[machines]]
id = "sim-1"
name = "Sim one"
profile = "okuma-osp"
driver = { type = "sim" }

[[machines]]
id = "sim-1"
name = "Sim two"
profile = "okuma-osp"
driver = { type = "sim" }
"#;

#[test]
fn duplicate_machine_id_names_both_places() {
    insta::assert_snapshot!(errs(TWO_SIMS), @r#"shopbridge.toml:9:6: machines[1].id: duplicate machine id "sim-1", already used by machines[0].id at shopbridge.toml:3:6; every machine needs its own id"#);
}

#[test]
fn bad_machine_id_says_why() {
    insta::assert_snapshot!(errs(&ONE_SHDR.replace("\"okuma-1\"", "\"okuma/1\"")), @r#"shopbridge.toml:7:6: machines[0].id: invalid machine id "okuma/1": an id may hold only a-z, A-Z, 0-9, '-', '_' and '.', found '/' at position 5"#);
    insta::assert_snapshot!(errs(&ONE_SHDR.replace("\"okuma-1\"", "\"\"")), @r#"shopbridge.toml:7:6: machines[0].id: invalid machine id "": an id must not be empty"#);
}

#[test]
fn bad_address() {
    insta::assert_snapshot!(errs(&ONE_SHDR.replace("127.0.0.1:7878", "127.0.0.1:99999")), @r#"shopbridge.toml:12:11: machines[0].driver.address: expected "host:port" with a port 1-65535, found "127.0.0.1:99999""#);
    insta::assert_snapshot!(errs(&ONE_SHDR.replace("127.0.0.1:7878", "127.0.0.1")), @r#"shopbridge.toml:12:11: machines[0].driver.address: expected "host:port" with a port 1-65535, found "127.0.0.1""#);
    insta::assert_snapshot!(errs("[http]\nlisten = \"localhost:8080\"\n"), @r#"shopbridge.toml:2:10: http.listen: expected an IP address and port like "127.0.0.1:8080" or "0.0.0.0:8080", found "localhost:8080""#);
}

#[test]
fn bad_duration_and_size() {
    insta::assert_snapshot!(errs("[journal]\nmax_age = \"30 days\"\n"), @r#"shopbridge.toml:2:11: journal.max_age: expected a duration: a number with a unit ms, s, m, h or d, like "90s", "12h", "30d" or "1h30m", found "30 days" (unknown unit "days")"#);
    insta::assert_snapshot!(errs("[journal]\nmax_bytes = \"2 gigs\"\n"), @r#"shopbridge.toml:2:13: journal.max_bytes: expected a size: a whole number of bytes or a number with a unit B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), like "500MB" or "2GiB", found "2 gigs" (unknown unit "gigs")"#);
    insta::assert_snapshot!(errs(&ONE_SHDR.replace("address = \"127.0.0.1:7878\"", "address = \"127.0.0.1:7878\"\nheartbeat = \"10\"")), @r#"shopbridge.toml:13:13: machines[0].driver.heartbeat: expected a duration: a number with a unit ms, s, m, h or d, like "90s", "12h", "30d" or "1h30m", found "10" (the number 10 has no unit)"#);
}

#[test]
fn hard_cap_below_max_bytes() {
    insta::assert_snapshot!(errs("[journal]\nmax_bytes = \"8GiB\"\nhard_cap_bytes = \"6GiB\"\n"), @r#"shopbridge.toml:3:18: journal.hard_cap_bytes: hard_cap_bytes must be at least max_bytes: found hard_cap_bytes 6GiB < max_bytes 8GiB (max_bytes is where acknowledged records are removed, hard_cap_bytes is where even unacknowledged ones go)"#);
    // Only max_bytes given: the default cap (4GiB) is too small; reported at max_bytes.
    insta::assert_snapshot!(errs("[journal]\nmax_bytes = \"5GiB\"\n"), @r#"shopbridge.toml:2:13: journal.max_bytes: hard_cap_bytes must be at least max_bytes: found hard_cap_bytes 4GiB < max_bytes 5GiB (max_bytes is where acknowledged records are removed, hard_cap_bytes is where even unacknowledged ones go)"#);
}

#[test]
fn sim_speed_needs_all_sim_machines() {
    let text = format!("[sim]\nspeed = 60.0\n{ONE_SHDR}");
    insta::assert_snapshot!(errs(&text), @r#"shopbridge.toml:2:9: sim.speed: a speed other than 1 is only allowed when every machine uses the sim driver, because the timestamps of real machines cannot be scaled; found speed 60 and real machine "okuma-1" (machines[0])"#);
    insta::assert_snapshot!(errs("[sim]\nspeed = 0.0\n"), @r#"shopbridge.toml:2:9: sim.speed: expected a number greater than 0 (1.0 is real time), found 0"#);
    let c = ok(&format!("[sim]\nspeed = 60.0\n{TWO_SIMS}").replace(
        "id = \"sim-1\"\nname = \"Sim two\"",
        "id = \"sim-2\"\nname = \"Sim two\"",
    ));
    assert_eq!(c.sim.speed, 60.0);
}

#[test]
fn bad_loss_categories() {
    insta::assert_snapshot!(errs("[taxonomy]\ncategories = [\"setup\", \"Coffee Break\", \"production\", \"setup\"]\n"), @r#"
shopbridge.toml:2:24: taxonomy.categories[1]: a loss category is a snake_case word (a-z, 0-9, _), found "Coffee Break"
shopbridge.toml:2:40: taxonomy.categories[2]: "production" is cutting time, not a loss category
shopbridge.toml:2:54: taxonomy.categories[3]: loss category "setup" is already listed at taxonomy.categories[0]
"#);
}

#[test]
fn bad_log_level() {
    insta::assert_snapshot!(errs("[log]\nlevel = \"loud\"\n"), @r#"shopbridge.toml:2:9: log.level: unknown log level "loud", expected one of trace, debug, info, warn, error, off, or a filter like "info,shopbridge::drivers=debug""#);
}

#[test]
fn several_errors_are_all_reported() {
    let text = r#"
[http]
listen = "127.0.0.1"

[journal]
max_age = "forever"
max_bytes = "8GiB"
hard_cap_bytes = "1GiB"
batch_max_records = 0

[sim]
speed = 2.0

[[machines]]
id = "okuma 1"
name = ""
profile = "okuma-osp"
[machines.driver]
type = "shdr"
address = "127.0.0.1:99999"

[[machines]]
id = "fanuc-1"
nmae = "Fanuc 0i"
profile = "fanuc"
[machines.driver]
type = "profinet"
address = "10.0.0.5:8193"

[[machines]]
id = "sim-1"
name = "Sim"
profile = "okuma-osp"
[machines.driver]
type = "sim"
sed = 4
"#;
    insta::assert_snapshot!(errs(text), @r#"
shopbridge.toml:3:10: http.listen: expected an IP address and port like "127.0.0.1:8080" or "0.0.0.0:8080", found "127.0.0.1"
shopbridge.toml:6:11: journal.max_age: expected a duration: a number with a unit ms, s, m, h or d, like "90s", "12h", "30d" or "1h30m", found "forever"
shopbridge.toml:8:18: journal.hard_cap_bytes: hard_cap_bytes must be at least max_bytes: found hard_cap_bytes 1GiB < max_bytes 8GiB (max_bytes is where acknowledged records are removed, hard_cap_bytes is where even unacknowledged ones go)
shopbridge.toml:9:21: journal.batch_max_records: expected a whole number of at least 1, found 0
shopbridge.toml:12:9: sim.speed: a speed other than 1 is only allowed when every machine uses the sim driver, because the timestamps of real machines cannot be scaled; found speed 2 and real machine "okuma 1" (machines[0])
shopbridge.toml:15:6: machines[0].id: invalid machine id "okuma 1": an id may hold only a-z, A-Z, 0-9, '-', '_' and '.', found ' ' at position 5
shopbridge.toml:16:8: machines[0].name: expected a name for people to read, like "Okuma MULTUS U3000", found an empty string
shopbridge.toml:20:11: machines[0].driver.address: expected "host:port" with a port 1-65535, found "127.0.0.1:99999"
shopbridge.toml:24:1: machines[1].nmae: unknown key `nmae`, expected one of `id`, `name`, `profile`, `identification`, `calendar`, `parts_per_cycle`, `driver`
shopbridge.toml:27:8: machines[1].driver.type: unknown driver type "profinet", expected one of `sim`, `shdr`, `mtconnect`, `haas`, `modbus`, `focas`, `opcua`, `plugin`
shopbridge.toml:36:1: machines[2].driver.sed: unknown key `sed`, expected `seed`
"#);
}

#[test]
fn env_overrides_win_over_the_file() {
    let c = load_str_with_env(
        ONE_SHDR,
        ORIGIN,
        env_of(&[
            ("SHOPBRIDGE_HTTP__LISTEN", "0.0.0.0:9090"),
            ("SHOPBRIDGE_JOURNAL__DIR", "/var/lib/shopbridge"),
            ("SHOPBRIDGE_JOURNAL__MAX_BYTES", "1GiB"),
            ("SHOPBRIDGE_JOURNAL__BATCH_MAX_RECORDS", "99"),
            ("SHOPBRIDGE_LOG__FORMAT", "json"),
            ("SHOPBRIDGE_SIM__SEED", "5"),
            ("SHOPBRIDGE_TAXONOMY__CATEGORIES", "setup,coffee"),
            ("SHOPBRIDGE_MACHINES__0__DRIVER__ADDRESS", "10.0.0.9:7878"),
            ("SHOPBRIDGE_MACHINES__0__NAME", "Okuma (bay 2)"),
            // Not overrides: no section separator, or another prefix.
            ("SHOPBRIDGE_CONFIG", "/etc/shopbridge.toml"),
            ("OTHER_HTTP__LISTEN", "nonsense"),
        ]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.http.listen, "0.0.0.0:9090".parse::<SocketAddr>().unwrap());
    assert_eq!(c.journal.dir, PathBuf::from("/var/lib/shopbridge"));
    assert_eq!(c.journal.max_bytes, 1 << 30);
    assert_eq!(c.journal.batch_max_records, 99);
    assert!(c.log.json);
    assert_eq!(c.sim.seed, 5);
    assert_eq!(c.taxonomy.categories().len(), 3);
    assert_eq!(c.machines[0].name, "Okuma (bay 2)");
    assert_eq!(
        c.machines[0].driver,
        DriverConfig::Shdr {
            address: "10.0.0.9:7878".into(),
            heartbeat: None,
            device: None,
            devices_file: None,
        }
    );
}

#[test]
fn bad_env_values_name_the_variable() {
    insta::assert_snapshot!(errs_env(ONE_SHDR, &[("SHOPBRIDGE_HTTP__LISTEN", "0.0.0.0:99999")]), @r#"environment variable SHOPBRIDGE_HTTP__LISTEN: http.listen: expected an IP address and port like "127.0.0.1:8080" or "0.0.0.0:8080", found "0.0.0.0:99999""#);
    insta::assert_snapshot!(errs_env(ONE_SHDR, &[("SHOPBRIDGE_JOURNAL__BATCH_MAX_RECORDS", "lots")]), @r#"environment variable SHOPBRIDGE_JOURNAL__BATCH_MAX_RECORDS: journal.batch_max_records: expected an integer, found string "lots""#);
    insta::assert_snapshot!(errs_env(ONE_SHDR, &[("SHOPBRIDGE_HTTP__LISTN", "0.0.0.0:9090")]), @r#"environment variable SHOPBRIDGE_HTTP__LISTN: http.listn: unknown key `listn`, expected one of `listen`, `local_role`, `tokens`, `max_connections`"#);
    insta::assert_snapshot!(errs_env(ONE_SHDR, &[("SHOPBRIDGE_MACHINES__0__DRIVER__ADDRESS", "nowhere")]), @r#"environment variable SHOPBRIDGE_MACHINES__0__DRIVER__ADDRESS: machines[0].driver.address: expected "host:port" with a port 1-65535, found "nowhere""#);
    insta::assert_snapshot!(errs_env(ONE_SHDR, &[("SHOPBRIDGE_MACHINES__OKUMA__NAME", "x")]), @r#"environment variable SHOPBRIDGE_MACHINES__OKUMA__NAME: a machine is addressed by its position in the file (0 for the first): expected SHOPBRIDGE_MACHINES__<index>__<KEY>, like SHOPBRIDGE_MACHINES__0__DRIVER__ADDRESS"#);
    insta::assert_snapshot!(errs_env(ONE_SHDR, &[("SHOPBRIDGE_MACHINES__3__NAME", "x")]), @r#"environment variable SHOPBRIDGE_MACHINES__3__NAME: there is no machines[3]: the file defines 1 machine (counted from 0); an environment variable can only change a machine the file defines"#);
    insta::assert_snapshot!(errs_env(ONE_SHDR, &[("SHOPBRIDGE_SIM__SPEED", "10")]), @r#"environment variable SHOPBRIDGE_SIM__SPEED: sim.speed: a speed other than 1 is only allowed when every machine uses the sim driver, because the timestamps of real machines cannot be scaled; found speed 10 and real machine "okuma-1" (machines[0])"#);
}

#[test]
fn bad_env_values_inside_a_driver_or_section() {
    insta::assert_snapshot!(errs_env(TWO_SIMS.replace("id = \"sim-1\"\nname = \"Sim two\"", "id = \"sim-2\"\nname = \"Sim two\"").as_str(), &[("SHOPBRIDGE_MACHINES__1__DRIVER__SEED", "abc")]), @r#"environment variable SHOPBRIDGE_MACHINES__1__DRIVER__SEED: machines[1].driver.seed: expected a whole number, found string "abc""#);
    insta::assert_snapshot!(errs_env(ONE_SHDR, &[("SHOPBRIDGE_MACHINES__0__DRIVER__TYPE", "profinet")]), @r#"environment variable SHOPBRIDGE_MACHINES__0__DRIVER__TYPE: machines[0].driver.type: unknown driver type "profinet", expected one of `sim`, `shdr`, `mtconnect`, `haas`, `modbus`, `focas`, `opcua`, `plugin`"#);
    insta::assert_snapshot!(errs_env(ONE_SHDR, &[("SHOPBRIDGE_FOO__BAR", "1")]), @r#"environment variable SHOPBRIDGE_FOO__BAR: foo.bar: unknown section `foo`, expected one of `http`, `journal`, `log`, `sim`, `taxonomy`, `profiles`, `opcua`, `sparkplug`, `mqtt`, `context`, `calendars`, `machines`, `plugins`"#);
    insta::assert_snapshot!(errs_env(ONE_SHDR, &[("SHOPBRIDGE_HTTP__", "1")]), @r#"environment variable SHOPBRIDGE_HTTP__: expected SHOPBRIDGE_<SECTION>__<KEY> with no empty part, like SHOPBRIDGE_HTTP__LISTEN"#);
}

#[test]
fn inline_driver_tables_get_positions_too() {
    insta::assert_snapshot!(errs("[[machines]]\nid = \"a\"\nname = \"A\"\nprofile = \"p\"\ndriver = { type = \"shdr\", adress = \"x:1\" }\n"), @r#"shopbridge.toml:5:27: machines[0].driver.adress: unknown key `adress`, expected one of `address`, `heartbeat`, `device`, `devices_file`"#);
}

/// The one test that touches the process environment: the variable name is unique to it.
#[test]
fn process_env_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shopbridge.toml");
    std::fs::write(&path, "[journal]\nbatch_max_records = 10\n").unwrap();
    // SAFETY: set_var is unsafe because another thread may read the environment at the same
    // time; the other tests in this binary read it only through std (`vars_os` in `load`),
    // which takes std's environment lock, and none of them depends on this variable's value.
    unsafe { std::env::set_var("SHOPBRIDGE_JOURNAL__BATCH_MAX_RECORDS", "77") };
    let result = load(&path);
    unsafe { std::env::remove_var("SHOPBRIDGE_JOURNAL__BATCH_MAX_RECORDS") };
    assert_eq!(result.unwrap().journal.batch_max_records, 77);
}

#[test]
fn unreadable_file_names_the_path() {
    let (text, code) = check_command(Path::new("/nonexistent/shopbridge.toml"));
    assert_eq!(code, 2);
    insta::assert_snapshot!(text, @r#"
/nonexistent/shopbridge.toml: cannot read the configuration file: No such file or directory (os error 2)
1 error in /nonexistent/shopbridge.toml
"#);
}

#[test]
fn check_command_reports_ok_or_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shopbridge.toml");
    std::fs::write(&path, ONE_SHDR).unwrap();
    let (text, code) = check_command(&path);
    assert_eq!(code, 0);
    assert_eq!(text, "OK");
    let (text, code) = check_report(Path::new("shopbridge.toml"), load_str(TWO_SIMS, ORIGIN));
    assert_eq!(code, 2);
    insta::assert_snapshot!(text, @r#"
shopbridge.toml:9:6: machines[1].id: duplicate machine id "sim-1", already used by machines[0].id at shopbridge.toml:3:6; every machine needs its own id
1 error in shopbridge.toml
"#);
}

#[test]
fn the_example_file_passes_check() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/shopbridge.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let c = load_str(&text, "shopbridge.example.toml").unwrap_or_else(|e| panic!("{e}"));
    assert!(!c.machines.is_empty());
    assert!(c.machines.iter().all(|m| m.driver.is_sim()));
    // Every default the example documents is the real default.
    assert_eq!(c.http, HttpConfig::default());
    assert_eq!(c.journal, JournalConfig::default());
    assert_eq!(c.log, LogConfig::default());
    assert_eq!(c.sim, SimConfig::default());
    assert_eq!(c.taxonomy, Taxonomy::default());

    // The commented-out real machines are valid once uncommented.
    let start = text
        .find("# [[machines]]")
        .expect("the example has a commented-out machine");
    let uncommented: String = text[start..]
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l).trim_start_matches('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let with_shdr = format!("{}{uncommented}\n", &text[..start]);
    let c = load_str(&with_shdr, "shopbridge.example.toml").unwrap_or_else(|e| panic!("{e}"));
    let types: Vec<&str> = c.machines.iter().map(|m| m.driver.type_name()).collect();
    assert_eq!(
        types[types.len() - 5..],
        ["shdr", "mtconnect", "haas", "modbus", "focas"]
    );
}

#[test]
fn demo_config_uses_the_given_machines() {
    let machines = vec![MachineConfig {
        id: crate::model::MachineId::new("sim-1").unwrap(),
        name: "Sim".into(),
        profile: "okuma-osp".into(),
        identification: Default::default(),
        calendar: None,
        parts_per_cycle: 1,
        driver: DriverConfig::Sim { seed: None },
    }];
    let c = Config::demo(
        machines.clone(),
        PathBuf::from("/tmp/demo"),
        "127.0.0.1:0".parse().unwrap(),
        30.0,
        9,
        0,
    );
    assert_eq!(c.machines, machines);
    assert_eq!(c.journal.dir, PathBuf::from("/tmp/demo"));
    assert_eq!(
        c.sim,
        SimConfig {
            speed: 30.0,
            seed: 9,
            shop_offset_micros: 0,
        }
    );
    assert_eq!(c.journal.max_bytes, JournalConfig::default().max_bytes);
}

#[test]
fn sparkplug_and_mqtt_sections_compile_with_defaults() {
    let c = ok(&format!(
        "{ONE_SHDR}\n[sparkplug]\ngroup_id = \"plant-1\"\nedge_node_id = \"bridge-a\"\nprimary_host_id = \"scada\"\n[mqtt]\nurl = \"mqtts://broker.local\"\nusername = \"edge\"\npassword = \"pw\"\nca_file = \"/etc/ca.pem\"\n"
    ));
    let s = c.sparkplug.expect("sparkplug");
    assert_eq!(
        (s.group_id.as_str(), s.edge_node_id.as_str()),
        ("plant-1", "bridge-a")
    );
    assert_eq!(s.primary_host_id.as_deref(), Some("scada"));
    assert_eq!(s.rebirth_cooldown, Duration::from_secs(5));
    assert_eq!(s.mqtt.client_id, "shopbridge-plant-1-bridge-a");
    assert_eq!(s.mqtt.keep_alive, Duration::from_secs(30));
    assert_eq!(
        s.mqtt.broker,
        crate::config::MqttBroker::External {
            host: "broker.local".into(),
            port: 8883,
            tls: Some(crate::config::MqttTls {
                ca_file: Some("/etc/ca.pem".into()),
                client_cert: None
            })
        }
    );
    let c = ok(&format!(
        "{ONE_SHDR}\n[sparkplug]\ngroup_id = \"g\"\nedge_node_id = \"e\"\n[mqtt]\nembedded = true\n"
    ));
    assert_eq!(
        c.sparkplug.unwrap().mqtt.broker,
        crate::config::MqttBroker::Embedded { port: 1883 }
    );
    assert!(ok(ONE_SHDR).sparkplug.is_none());
}

#[test]
fn sparkplug_mistakes_name_their_key() {
    let e = errs(&format!(
        "{ONE_SHDR}\n[sparkplug]\ngroup_id = \"plant/1\"\nedge_node_id = \"e\"\n"
    ));
    assert!(
        e.contains("sparkplug.group_id: expected an id without spaces"),
        "{e}"
    );
    assert!(e.contains("mqtt.url: [sparkplug] needs a broker"), "{e}");
    let e = errs(&format!(
        "{ONE_SHDR}\n[sparkplug]\ngroup_id = \"g\"\nedge_node_id = \"e\"\n[mqtt]\nurl = \"tcp://b:1883\"\n"
    ));
    assert!(e.contains("mqtt.url: expected mqtt://host:port"), "{e}");
    let e = errs(&format!(
        "{ONE_SHDR}\n[sparkplug]\ngroup_id = \"g\"\nedge_node_id = \"e\"\n[mqtt]\nurl = \"mqtt://b\"\nembedded = true\nca_file = \"x\"\n"
    ));
    assert!(e.contains("mqtt.embedded:"), "{e}");
    let e = errs(&format!("{ONE_SHDR}\n[mqtt]\nurl = \"mqtt://b\"\n"));
    assert!(e.contains("[mqtt] is only used by [sparkplug]"), "{e}");
    let e = errs(&format!(
        "{ONE_SHDR}\n[sparkplug]\ngroup_id = \"g\"\nedge_node_id = \"e\"\n[mqtt]\nurl = \"mqtt://b\"\nkeep_alive = \"500ms\"\n"
    ));
    assert!(e.contains("mqtt.keep_alive: expected whole seconds"), "{e}");
}

#[test]
fn mqtt_urls_parse_hosts_ports_and_tls() {
    use super::compile::parse_mqtt_url;
    assert_eq!(
        parse_mqtt_url("mqtt://10.0.4.5"),
        Ok(("10.0.4.5".into(), 1883, false))
    );
    assert_eq!(
        parse_mqtt_url("mqtts://b:8884/"),
        Ok(("b".into(), 8884, true))
    );
    assert_eq!(
        parse_mqtt_url("mqtt://[::1]:1884"),
        Ok(("::1".into(), 1884, false))
    );
    assert!(parse_mqtt_url("mqtt://b:0").is_err());
    assert!(parse_mqtt_url("mqtt://b:1883/x").is_err());
    assert!(parse_mqtt_url("http://b").is_err());
}

#[test]
fn calendars_rules_and_work_centers_compile_and_name_their_mistakes() {
    let text = format!(
        "{}\n[context]\nwork_centers = {{ \"WC-MILL-1\" = \"okuma-1\" }}\n\
         [[context.rules]]\nname = \"bar feeder\"\nwhen = \"program == 'O9001'\"\ncategory = \"starved\"\n\
         [calendars.Two-Shift]\ntime_zone = \"America/Chicago\"\n\
         [[calendars.Two-Shift.shifts]]\nname = \"night\"\ndays = [\"sun-thu\"]\nstart = \"22:00\"\nend = \"06:00\"\n\
         breaks = [{{ start = \"02:00\", end = \"02:30\" }}]\n",
        ONE_SHDR.replace("[[machines]]", "[[machines]]\ncalendar = \"Two-Shift\"")
    );
    let c = ok(&text);
    let cal = c
        .context
        .calendars
        .get("Two-Shift")
        .expect("calendar kept with its case");
    assert_eq!(cal.shifts[0].end, 30 * 3600);
    assert_eq!(cal.shifts[0].breaks[0].start, 26 * 3600);
    assert_eq!(
        c.context.work_centers.get("WC-MILL-1").map(|m| m.as_str()),
        Some("okuma-1")
    );
    assert_eq!(c.context.rules.rules[0].name, "bar feeder");
    assert_eq!(c.machines[0].calendar.as_deref(), Some("Two-Shift"));
    let bad = text
        .replace("America/Chicago", "Mars/Olympus")
        .replace("\"22:00\"", "\"25:00\"")
        .replace("program ==", "programme ==")
        .replace("= \"okuma-1\" }", "= \"sim-9\" }")
        .replace("calendar = \"Two-Shift\"", "calendar = \"three-shift\"");
    insta::assert_snapshot!(errs(&bad), @r#"
shopbridge.toml:7:12: machines[0].calendar: no calendar "three-shift" is configured; the [calendars.<name>] sections are: Two-Shift
shopbridge.toml:16:32: context.work_centers.WC-MILL-1: work center "WC-MILL-1" names machine "sim-9", which is not configured (machines: okuma-1)
shopbridge.toml:17:1: context.rules: rule 1 ("bar feeder"): when: unknown fact `programme` (at character 1); the facts a rule may read are availability, execution, controller_mode, functional_mode, emergency_stop, alarm, state, program, part_count, single_block, optional_stop, feed_override, tool_number, tool_changed, operator, signed_in, job, operation, operation_active, first_cycle_done, program_proven, hold, inspection_pending, upstream_incomplete, planned, on_shift, stop_seconds, span_seconds
shopbridge.toml:22:13: calendars.Two-Shift.time_zone: expected a time zone like "America/Chicago" or "+01:00", found "Mars/Olympus" (failed to find time zone `Mars/Olympus` in time zone database)
shopbridge.toml:26:9: calendars.Two-Shift.shifts[0].start: expected a time of day like "06:00" or "22:30:00", found "25:00"
"#);
}

#[test]
fn haas_over_ethernet_or_rs232() {
    use crate::drivers::haas::{HaasSpec, Transport};
    use crate::drivers::serial::{Flow, Parity, SerialSettings};
    let c = ok(&ONE_SHDR.replace(
        "type = \"shdr\"\naddress = \"127.0.0.1:7878\"",
        "type = \"haas\"\naddress = \"10.0.0.5:5051\"\nmacros = [3027, 5021, 3027]",
    ));
    assert_eq!(
        c.machines[0].driver,
        DriverConfig::Haas {
            spec: HaasSpec {
                transport: Transport::Tcp("10.0.0.5:5051".into()),
                macros: vec![3027, 5021],
                timeout: Duration::from_secs(2),
            },
            interval: Duration::from_secs(1),
        }
    );
    let c = ok(&ONE_SHDR.replace(
        "type = \"shdr\"\naddress = \"127.0.0.1:7878\"",
        "type = \"haas\"\nserial = { port = \"/dev/ttyUSB0\", flow = \"xonxoff\" }\ninterval = \"2s\"",
    ));
    let DriverConfig::Haas { spec, interval } = &c.machines[0].driver else {
        panic!("{:?}", c.machines[0].driver);
    };
    assert_eq!(*interval, Duration::from_secs(2));
    assert_eq!(
        spec.transport,
        Transport::Serial(SerialSettings {
            port: "/dev/ttyUSB0".into(),
            baud: 9600,
            data_bits: 7,
            parity: Parity::Even,
            stop_bits: 1,
            flow: Flow::Software,
        })
    );
    let bad = |driver: &str| {
        errs(&ONE_SHDR.replace(
            "type = \"shdr\"\naddress = \"127.0.0.1:7878\"",
            &format!("type = \"haas\"\n{driver}"),
        ))
    };
    insta::assert_snapshot!(bad("macros = [3027]"), @r#"shopbridge.toml:10:1: machines[0].driver: missing `address = "host:5051"` (Ethernet) or `serial = { port = "/dev/ttyUSB0" }` (RS-232)"#);
    insta::assert_snapshot!(bad("address = \"10.0.0.5\""), @r#"shopbridge.toml:12:11: machines[0].driver.address: expected "host:port" (the port of the control's Setting 143, often 5051), found "10.0.0.5""#);
    insta::assert_snapshot!(bad("address = \"10.0.0.5:5051\"\nserial = { port = \"/dev/ttyS0\" }"), @r#"shopbridge.toml:13:10: machines[0].driver.serial: give either `address` (Ethernet) or `serial` (RS-232), not both"#);
    insta::assert_snapshot!(bad("serial = { port = \"/dev/ttyS0\", baud = 9601, parity = \"mark\", data_bits = 9 }\nmacros = [0]"), @r#"
    shopbridge.toml:12:40: machines[0].driver.serial.baud: expected a baud rate (one of 300, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400), found 9601
    shopbridge.toml:12:55: machines[0].driver.serial.parity: expected "none", "even" or "odd", found "mark"
    shopbridge.toml:12:75: machines[0].driver.serial.data_bits: expected 7 or 8, found 9
    shopbridge.toml:13:11: machines[0].driver.macros[0]: expected a macro variable number 1-99999 (like 3027), found 0
    "#);
    insta::assert_snapshot!(bad("address = \"10.0.0.5:5051\"\nbaud = 9600"), @"shopbridge.toml:13:1: machines[0].driver.baud: unknown key `baud`, expected one of `address`, `serial`, `interval`, `timeout`, `macros`");
}

#[test]
fn modbus_over_tcp_or_rtu_and_a_profile_with_a_register_map() {
    use crate::drivers::modbus::Transport;
    let c = ok(&ONE_SHDR.replace(
        "profile = \"okuma-osp\"\n[machines.driver]\ntype = \"shdr\"\naddress = \"127.0.0.1:7878\"",
        "profile = \"moxa-e1212\"\n[machines.driver]\ntype = \"modbus\"\naddress = \"10.0.0.9:502\"",
    ));
    assert_eq!(
        c.machines[0].driver,
        DriverConfig::Modbus {
            transport: Transport::Tcp("10.0.0.9:502".into()),
            unit: 1,
            interval: Duration::from_millis(250),
            timeout: Duration::from_secs(1),
        }
    );
    let c = ok(&ONE_SHDR.replace(
        "type = \"shdr\"\naddress = \"127.0.0.1:7878\"",
        "type = \"modbus\"\nserial = { port = \"/dev/ttyUSB1\", baud = 9600 }\nunit = 3",
    ));
    let DriverConfig::Modbus {
        transport, unit, ..
    } = &c.machines[0].driver
    else {
        panic!("{:?}", c.machines[0].driver);
    };
    assert_eq!(*unit, 3);
    let Transport::Rtu(s) = transport else {
        panic!("{transport:?}");
    };
    assert_eq!((s.baud, s.data_bits, s.stop_bits), (9600, 8, 1));
    insta::assert_snapshot!(errs(&ONE_SHDR.replace(
        "type = \"shdr\"\naddress = \"127.0.0.1:7878\"",
        "type = \"modbus\"\naddress = \"10.0.0.9:502\"\nunit = 300",
    )), @"shopbridge.toml:13:8: machines[0].driver.unit: expected a unit (slave) id 0-247, found 300");
    // A profile without a register map cannot drive a Modbus machine: `check` says so.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("shopbridge.toml");
    std::fs::write(
        &path,
        ONE_SHDR.replace(
            "type = \"shdr\"\naddress = \"127.0.0.1:7878\"",
            "type = \"modbus\"\naddress = \"10.0.0.9:502\"",
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (text, code) = check_command(&path);
    assert_eq!(code, 2);
    assert!(
        text.contains("machines[0].profile: profile \"okuma-osp\" has no [[register]] map"),
        "{text}"
    );
}

#[test]
fn a_haas_control_or_a_serial_port_is_read_by_one_machine() {
    let two = |a: &str, b: &str| {
        format!(
            "[journal]\ndir = \"./d\"\n[[machines]]\nid = \"a\"\nname = \"A\"\nprofile = \"haas-ngc\"\n[machines.driver]\ntype = \"haas\"\n{a}\n[[machines]]\nid = \"b\"\nname = \"B\"\nprofile = \"moxa-e1212\"\n[machines.driver]\n{b}\n"
        )
    };
    insta::assert_snapshot!(errs(&two("address = \"10.0.0.5:5051\"", "type = \"haas\"\naddress = \"10.0.0.5:5051\"")), @r#"shopbridge.toml:16:11: machines[1].driver.address: the Haas control at "10.0.0.5:5051" is already read by machines[0]; a Haas control serves two MDC clients, and one machine is one control"#);
    insta::assert_snapshot!(errs(&two("serial = { port = \"/dev/ttyS0\" }", "type = \"modbus\"\nserial = { port = \"/dev/ttyS0\" }")), @r#"shopbridge.toml:16:19: machines[1].driver.serial.port: serial port "/dev/ttyS0" is already read by machines[0]; a serial port opens once (for several Modbus units on one bus, give one machine a profile whose registers name their `unit`)"#);
}

#[test]
fn opcua_endpoint_security_and_nodes() {
    use crate::drivers::opcua_client::{Identity, SecurityMode};
    let driver = |d: &str| {
        ONE_SHDR.replace(
            "type = \"shdr\"\naddress = \"127.0.0.1:7878\"",
            &format!("type = \"opcua\"\n{d}"),
        )
    };
    let c = ok(&driver(
        "endpoint = \"opc.tcp://10.0.0.20:4840\"\nsecurity_policy = \"Basic256Sha256\"\nuser = \"OpcUaClient\"\npassword = \"pw\"\nnodes = [\"ns=2;s=/Channel/State/progStatus\", { node = \"ns=2;i=7\", key = \"speed\", deadband = 2.5 }]",
    ));
    let DriverConfig::Opcua { spec } = &c.machines[0].driver else {
        panic!("{:?}", c.machines[0].driver);
    };
    assert_eq!(spec.security.mode, SecurityMode::SignAndEncrypt);
    assert_eq!(
        spec.identity,
        Identity::User {
            name: "OpcUaClient".into(),
            password: "pw".into()
        }
    );
    assert_eq!(spec.nodes[0].key, "/Channel/State/progStatus");
    assert_eq!(spec.nodes[1].key, "speed");
    assert_eq!(spec.nodes[1].deadband, Some(2.5));
    assert_eq!(spec.publishing_interval, Duration::from_millis(500));
    let c = ok(&driver(
        "endpoint = \"opc.tcp://10.0.0.21:4840\"\nbrowse = \"/Machines/Mill 1/\"",
    ));
    let DriverConfig::Opcua { spec } = &c.machines[0].driver else {
        panic!("{:?}", c.machines[0].driver);
    };
    assert_eq!(
        spec.browse.as_ref().map(|b| b.root.as_str()),
        Some("Machines/Mill 1")
    );
    assert_eq!(spec.identity, Identity::Anonymous);
    insta::assert_snapshot!(errs(&driver("endpoint = \"http://10.0.0.20:4840\"")), @r#"
    shopbridge.toml:10:1: machines[0].driver: nothing to read: give `browse = "Machines/<name>"` (a browse path or node id to read everything below) or `nodes = ["ns=2;s=…", …]`
    shopbridge.toml:12:12: machines[0].driver.endpoint: expected an OPC UA endpoint URL like "opc.tcp://10.0.0.20:4840", found "http://10.0.0.20:4840"
    "#);
    insta::assert_snapshot!(errs(&driver("endpoint = \"opc.tcp://h:4840\"\nbrowse = \"Machines/M\"\nsecurity_policy = \"Basic512\"\nsecurity_mode = \"Sign\"\nuser = \"x\"\nnodes = [\"s=1;x\", { node = \"i=5\", deadband = -1.0 }]")), @r#"
    shopbridge.toml:14:19: machines[0].driver.security_policy: unknown security policy "Basic512", expected one of `None`, `Basic256Sha256`, `Aes128_Sha256_RsaOaep`, `Aes256_Sha256_RsaPss`, `Basic128Rsa15`
    shopbridge.toml:16:8: machines[0].driver.user: a user needs `password` or `password_file`
    shopbridge.toml:17:46: machines[0].driver.nodes[1].deadband: expected a deadband of zero or more (in the node's units), found -1
    "#);
    insta::assert_snapshot!(errs(&driver("endpoint = \"opc.tcp://h:4840\"\nbrowse = \"Machines/M\"\nsecurity_mode = \"SignAndEncrypt\"\npassword = \"p\"\nbrowse_depth = 0")), @r#"
    shopbridge.toml:14:17: machines[0].driver.security_mode: security policy "None" goes with mode `None` (found mode SignAndEncrypt)
    shopbridge.toml:15:12: machines[0].driver.password: a password needs a non-empty `user`
    shopbridge.toml:16:16: machines[0].driver.browse_depth: expected 1-32, found 0
    "#);
}

#[test]
fn focas_with_its_default_port() {
    use crate::drivers::focas::FocasSpec;
    let focas = |driver: &str| {
        ONE_SHDR.replace(
            "type = \"shdr\"\naddress = \"127.0.0.1:7878\"",
            &format!("type = \"focas\"\n{driver}"),
        )
    };
    let c = ok(&focas(
        "address = \"10.0.0.7\"\nmacros = [3027, 500, 3027]\nparams = [6712]\ninterval = \"500ms\"",
    ));
    assert_eq!(
        c.machines[0].driver,
        DriverConfig::Focas {
            spec: FocasSpec {
                address: "10.0.0.7:8193".into(),
                macros: vec![3027, 500],
                params: vec![6712],
                timeout: Duration::from_secs(2),
            },
            interval: Duration::from_millis(500),
        }
    );
    let c = ok(&focas("address = \"cnc-5.shop:8194\""));
    let DriverConfig::Focas { spec, .. } = &c.machines[0].driver else {
        panic!("{:?}", c.machines[0].driver);
    };
    assert_eq!(spec.address, "cnc-5.shop:8194");
    insta::assert_snapshot!(errs(&focas("address = \"10.0.0.7:0\"\nmacros = [0]\nparams = [-1]\ntimeout = \"0s\"")), @r#"
    shopbridge.toml:12:11: machines[0].driver.address: expected "host" or "host:port" (the control's FOCAS/Ethernet port, 8193 unless set otherwise), found "10.0.0.7:0"
    shopbridge.toml:13:11: machines[0].driver.macros[0]: expected a macro variable number 1-99999 (like 3027), found 0
    shopbridge.toml:14:11: machines[0].driver.params[0]: expected a parameter number 0-65535 (like 6712), found -1
    shopbridge.toml:15:11: machines[0].driver.timeout: expected a duration longer than zero, found "0s"
    "#);
    insta::assert_snapshot!(errs(&focas("macros = [3027]")), @"shopbridge.toml:10:1: machines[0].driver: missing key `address`");
    insta::assert_snapshot!(errs(&focas("address = \"10.0.0.7\"\nserial = \"/dev/ttyS0\"")), @"shopbridge.toml:13:1: machines[0].driver.serial: unknown key `serial`, expected one of `address`, `interval`, `timeout`, `macros`, `params`");
}

#[test]
fn plugins_and_the_machines_that_name_them() {
    let with = |plugins: &str, driver: &str| {
        format!(
            "{plugins}\n{}",
            ONE_SHDR.replace(
                "type = \"shdr\"\naddress = \"127.0.0.1:7878\"",
                &format!("type = \"plugin\"\n{driver}"),
            )
        )
    };
    let c = ok(&with(
        "[[plugins]]\nid = \"lsv2\"\ncommand = \"python3\"\nargs = [\"p.py\"]\nsettings = { verbose = true }\nhealth_interval = \"2s\"\n[plugins.limits]\nmemory = \"256MiB\"\nopen_files = 128",
        "plugin = \"lsv2\"\nsettings = { address = \"10.0.0.30:19000\" }",
    ));
    let DriverConfig::Plugin { plugin, settings } = &c.machines[0].driver else {
        panic!("{:?}", c.machines[0].driver);
    };
    assert_eq!(plugin.id, "lsv2");
    assert_eq!(plugin.args, vec!["p.py".to_string()]);
    assert_eq!(plugin.limits.memory, Some(256 << 20));
    assert_eq!(plugin.limits.open_files, Some(128));
    assert_eq!(plugin.health_interval, Duration::from_secs(2));
    assert_eq!(plugin.settings["verbose"], serde_json::json!(true));
    assert_eq!(settings["address"], serde_json::json!("10.0.0.30:19000"));
    insta::assert_snapshot!(errs(&with("[[plugins]]\nid = \"lsv2\"\ncommand = \"python3\"", "plugin = \"lsv3\"")), @r#"shopbridge.toml:15:10: machines[0].driver.plugin: no plugin "lsv3" is configured; the [[plugins]] ids are: lsv2"#);
    insta::assert_snapshot!(errs(&with("[[plugins]]\nid = \"a b\"\ncommand = \"\"\n[plugins.limits]\nmemory = \"lots\"\nopen_files = 3", "plugin = \"x\"\nsettings = \"10.0.0.30\"")), @r#"
    shopbridge.toml:2:6: plugins[0].id: expected a plugin id of letters, digits, `-` and `_`, found "a b"
    shopbridge.toml:3:11: plugins[0].command: expected the program to run (`python3`, `/usr/lib/shopbridge/plugins/csv-log`)
    shopbridge.toml:5:10: plugins[0].limits.memory: expected a size like "256MiB", found "lots"
    shopbridge.toml:6:14: plugins[0].limits.open_files: expected 16-1048576, found 3
    shopbridge.toml:18:10: machines[0].driver.plugin: no plugin "x" is configured; the [[plugins]] ids are: (none)
    "#);
    insta::assert_snapshot!(errs(&with("[[plugins]]\nid = \"p\"\ncommand = \"x\"\n[[plugins]]\nid = \"p\"\ncommand = \"y\"", "plugin = \"p\"\nsettings = \"10.0.0.30\"")), @r#"
    shopbridge.toml:5:6: plugins[1].id: plugin id "p" is used twice
    shopbridge.toml:19:12: machines[0].driver.settings: expected a table of settings for the plugin, like { address = "10.0.0.30:19000" }
    "#);
}
