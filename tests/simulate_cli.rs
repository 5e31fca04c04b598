//! The two-process setup a user follows: `shopbridge simulate --print-config` serves a
//! simulated shop and prints a configuration for it; `shopbridge check` accepts that file and
//! `shopbridge run` reads every machine through its SHDR adapter or the MTConnect agent.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shopbridge"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_prints_a_configuration_that_run_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = Kill(
        bin()
            .args([
                "simulate",
                "--machines",
                "4",
                "--shdr-base-port",
                "0",
                "--mtconnect-port",
                "0",
                "--haas-base-port",
                "0",
                "--print-config",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start simulate"),
    );
    // The configuration comes first, then the line that says where the shop is.
    let mut config = String::new();
    let stdout = sim.0.stdout.take().expect("stdout");
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if line.starts_with("simulated shop:") {
            break;
        }
        config.push_str(&line);
        config.push('\n');
    }
    assert!(
        config.contains("type = \"shdr\"")
            && config.contains("type = \"mtconnect\"")
            && config.contains("type = \"haas\""),
        "{config}"
    );
    let data = dir.path().join("data");
    let config = config.replace(
        "dir = \"./shopbridge-data\"",
        &format!(
            "dir = {:?}\n\n[http]\nlisten = \"127.0.0.1:0\"",
            data.display().to_string()
        ),
    );
    let path = dir.path().join("shopbridge.toml");
    std::fs::write(&path, &config).unwrap();
    let check = bin()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&check.stdout), "OK\n", "{config}");

    let run = Kill(
        bin()
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start run"),
    );
    // The bridge names its address in bridge.json; every machine must connect.
    let deadline = Instant::now() + Duration::from_secs(30);
    let machines = loop {
        assert!(
            Instant::now() < deadline,
            "machines did not connect within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let Ok(bridge) = std::fs::read_to_string(data.join("bridge.json")) else {
            continue;
        };
        let http = serde_json::from_str::<serde_json::Value>(&bridge)
            .ok()
            .and_then(|v| v["http"].as_str().map(str::to_string))
            .unwrap_or_default();
        let Ok(resp) = reqwest::get(format!("http://{http}/api/v1/machines")).await else {
            continue;
        };
        let v: serde_json::Value = resp.json().await.unwrap_or_default();
        let Some(list) = v.as_array() else { continue };
        if list.len() == 4
            && list
                .iter()
                .all(|m| m["link"] == "connected" && !m["execution"].is_null())
        {
            break list.clone();
        }
    };
    let drivers: std::collections::BTreeSet<&str> = machines
        .iter()
        .filter_map(|m| m["driver"].as_str())
        .collect();
    assert_eq!(
        drivers.into_iter().collect::<Vec<_>>(),
        ["haas", "mtconnect", "shdr"]
    );
    drop(run);
    drop(sim);
}
