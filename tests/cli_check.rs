//! `shopbridge check` as a user runs it: OK and exit 0 for the shipped example, every error with
//! file:line:column and exit 2 for a broken file.

use std::process::Command;

fn check(path: &std::path::Path) -> (String, i32) {
    let out = Command::new(env!("CARGO_BIN_EXE_shopbridge"))
        .args(["check", "--config"])
        .arg(path)
        .output()
        .expect("run check");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

#[test]
fn the_shipped_example_checks_ok() {
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/shopbridge.example.toml");
    assert_eq!(check(&example), ("OK\n".to_string(), 0));
}

#[test]
fn a_broken_file_lists_every_error_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shopbridge.toml");
    std::fs::write(
        &path,
        "[http]\nlisten = \"127.0.0.1:99999\"\n\n[journal]\nmax_age = \"forever\"\n\n[[machines]]\nid = \"okuma-1\"\nname = \"Okuma\"\nprofile = \"okuma-osp\"\n[machines.driver]\ntype = \"shdr\"\nadress = \"10.0.0.5:7878\"\n",
    )
    .unwrap();
    let (text, code) = check(&path);
    assert_eq!(code, 2, "{text}");
    let p = path.display().to_string();
    assert!(text.contains(&format!("{p}:2:10: http.listen")), "{text}");
    assert!(
        text.contains(&format!("{p}:5:11: journal.max_age")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{p}:13:1: machines[0].driver.adress: unknown key `adress`"
        )),
        "{text}"
    );
    assert!(
        text.trim_end().ends_with(&format!("3 errors in {p}")),
        "{text}"
    );
}

#[test]
fn run_refuses_a_broken_file_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[htp]\nlisten = \"127.0.0.1:8080\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_shopbridge"))
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:1:"), "{err}");
}

fn check_args(args: &[&std::ffi::OsStr]) -> (String, i32) {
    let out = Command::new(env!("CARGO_BIN_EXE_shopbridge"))
        .arg("check")
        .args(args)
        .output()
        .expect("run check");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

#[test]
fn profiles_are_checked_with_positions_and_unknown_ones_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let profiles = dir.path().join("profiles");
    std::fs::create_dir(&profiles).unwrap();
    let broken = profiles.join("my-lathe.toml");
    std::fs::write(
        &broken,
        "extends = \"mtconnect-generic\"\n\n[[signal]]\nid = \"running\"\nexpr = \"execution == 'ACTIVE' &&\"\n",
    )
    .unwrap();
    let config = dir.path().join("shopbridge.toml");
    std::fs::write(
        &config,
        format!(
            "[profiles]\ndir = {:?}\n\n[[machines]]\nid = \"a\"\nname = \"A\"\nprofile = \"my-lathe\"\n[machines.driver]\ntype = \"sim\"\n\n[[machines]]\nid = \"b\"\nname = \"B\"\nprofile = \"okuma\"\n[machines.driver]\ntype = \"sim\"\n",
            profiles.display().to_string()
        ),
    )
    .unwrap();
    // The unknown profile is a configuration error at its key.
    let (text, code) = check_args(&["--config".as_ref(), config.as_os_str()]);
    assert_eq!(code, 2, "{text}");
    let c = config.display().to_string();
    assert!(
        text.contains(&format!(
            "{c}:14:11: machines[1].profile: unknown profile \"okuma\""
        )),
        "{text}"
    );
    // Once it is fixed, the broken profile is reported at its own line and column.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("\"okuma\"", "\"okuma-osp\""),
    )
    .unwrap();
    let (text, code) = check_args(&["--config".as_ref(), config.as_os_str()]);
    assert_eq!(code, 2, "{text}");
    let b = broken.display().to_string();
    assert!(
        text.contains(&format!("{b}:5:33: signal[0].expr: expected a signal")),
        "{text}"
    );
    let (text, code) = check_args(&["--profile".as_ref(), broken.as_os_str()]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains(&format!("{b}:5:33:")), "{text}");
    // Every shipped profile checks OK on its own.
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    for name in ["okuma-osp", "mazak", "fanuc-mtconnect", "mtconnect-generic"] {
        let p = shipped.join(format!("{name}.toml"));
        assert_eq!(
            check_args(&["--profile".as_ref(), p.as_os_str()]),
            ("OK\n".to_string(), 0)
        );
    }
}
