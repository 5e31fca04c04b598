//! `shopbridge bench soak` in miniature: a simulated shop, a bridge reading it, samples taken
//! and summarised, and no child process left behind.

use std::process::Command;

#[test]
fn a_short_soak_samples_the_bridge_and_summarises_the_trends() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("soak.csv");
    let out = Command::new(env!("CARGO_BIN_EXE_shopbridge"))
        .args(["bench", "soak", "--machines", "5", "--speed", "10"])
        .args(["--minutes", "0.4", "--warmup", "0.1", "--sample", "2"])
        .args(["--broker", "none", "--poll", "1", "--csv"])
        .arg(&csv)
        .arg("--data-dir")
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for want in [
        "  RSS: first ",
        "  open fds: first ",
        "  journal: encoded bytes max ",
    ] {
        assert!(stdout.contains(want), "no {want:?} in\n{stdout}");
    }

    // One CSV row per sample (24 s / 2 s, plus the first), each with the bridge's memory and
    // descriptors, and a journal that grew while the shop ran.
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<Vec<f64>> = text
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .map(|v| v.parse().unwrap_or(f64::NAN))
                .collect()
        })
        .collect();
    assert!(rows.len() >= 10, "{} samples:\n{text}", rows.len());
    assert!(rows.iter().all(|r| r[1] > 1e6 && r[2] > 3.0), "{text}");
    let (first, last) = (&rows[0], &rows[rows.len() - 1]);
    assert!(last[8] > first[8], "the journal did not grow:\n{text}");
    assert!(last[13] > 0.0, "no REST request succeeded:\n{text}");

    // The bridge and the simulator were stopped: the bridge's journal directory is no longer
    // locked by a running process (its pid in the summary is gone).
    let pid = stderr
        .split("bridge pid ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .unwrap_or("");
    assert!(!pid.is_empty(), "{stderr}");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the bridge (pid {pid}) is still running"
    );
}
