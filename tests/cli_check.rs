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
