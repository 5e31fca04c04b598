//! The context REST API against a real bridge (`shopbridge demo --no-erp`, so the test is the
//! only ERP, QMS and operator): dispatch lists and jobs are taken whole or refused whole with
//! the field named; holds open and release; an operator signs in and gives a reason and the
//! machine's live context shows it; re-classification answers; then `shopbridge score` reads
//! the stopped run.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::KillOnDrop;

static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
use serde_json::{Value, json};

fn start(dir: &std::path::Path) -> (KillOnDrop, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shopbridge"))
        .args([
            "demo",
            "--no-erp",
            "--no-opcua",
            "--no-mqtt",
            "--speed",
            "60",
            "--machines",
            "2",
            "--http-port",
            "0",
            "--data-dir",
        ])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the demo");
    let stdout = child.stdout.take().expect("stdout");
    let (base, _) = common::announced(stdout, false);
    (KillOnDrop(child), base)
}

/// Runs `shopbridge ARGS --data-dir DIR`; its standard output, once it succeeded.
fn shopbridge(args: &[&str], dir: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_shopbridge"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The demo's admin token (planner and admin calls need it; operator calls do not, on
/// loopback).
fn token(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("admin-token"))
        .expect("the demo writes its admin token")
        .trim()
        .to_string()
}

async fn call(c: &reqwest::Client, method: &str, url: &str, body: Value) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let planner = !["/reason", "/sign-in", "/sign-out", "/confirm", "/parts"]
        .iter()
        .any(|s| url.ends_with(s));
    let mut r = c.request(m, url).json(&body);
    if planner {
        r = r.bearer_auth(TOKEN.get().expect("token read"));
    }
    let r = r
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = r.status().as_u16();
    let v = r.json().await.unwrap_or(Value::Null);
    (status, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erp_qms_and_operator_input_through_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (mut guard, base) = start(dir.path());
    let _ = TOKEN.set(token(dir.path()));
    let c = reqwest::Client::new();
    let machines: Value = c
        .get(format!("{base}/api/v1/machines"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let m0 = machines[0]["id"].as_str().unwrap().to_string();
    let m1 = machines[1]["id"].as_str().unwrap().to_string();

    // A good list for m0.
    let op = |job: &str, program: &str| {
        json!({"job": job, "operation": "10", "programs": [program], "quantity": 20,
               "due": "2030-01-01", "part_number": "HX-1001", "part_revision": "B"})
    };
    let (s, v) = call(
        &c,
        "PUT",
        &format!("{base}/api/v1/machines/{m0}/dispatch"),
        json!({"operations": [op("24173", "O1001"), op("24174", "O1002")], "by": "erp"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["operations"], 2);
    assert_eq!(v["machines"][0], m0.as_str());
    // A bad one is refused whole, naming the field; the good one stays.
    let mut bad = op("24175", "O1003");
    bad["due"] = json!("next friday");
    let (s, v) = call(
        &c,
        "PUT",
        &format!("{base}/api/v1/machines/{m0}/dispatch"),
        json!([op("24175", "O1003"), bad, op("24175", "O1003")]),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["code"], "invalid_dispatch");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("operations[1].due"), "{msg}");
    assert!(
        msg.contains("operations[2]: job \"24175\" operation \"10\" is listed twice"),
        "{msg}"
    );
    let (s, v) = call(
        &c,
        "PUT",
        &format!("{base}/api/v1/machines/no-such-machine/dispatch"),
        json!([op("1", "O1")]),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("unknown_machine"))
    );
    let (s, v) = call(
        &c,
        "PUT",
        &format!("{base}/api/v1/machines/{m0}/dispatch"),
        json!({"operations": "x"}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );

    // A job with routing across both machines.
    let (s, v) = call(
        &c,
        "POST",
        &format!("{base}/api/v1/jobs"),
        json!({"job": "30001", "quantity": 10, "due": "2030-02-01T12:00:00Z",
               "operations": [
                   {"operation": "10", "machine": m0, "program": "P10"},
                   {"operation": "20", "machine": m1, "program": "P20"}]}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = call(
        &c,
        "POST",
        &format!("{base}/api/v1/jobs"),
        json!({"job": "30002", "operations": [{"operation": "10", "work_center": "WC-NOWHERE"}]}),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("operations[0].machine"),
        "{v}"
    );

    // QMS: a hold on a job everywhere, listed, released; an unknown hold is 404.
    let (s, v) = call(
        &c,
        "POST",
        &format!("{base}/api/v1/holds"),
        json!({"hold": "QH-7", "job": "30001", "reason": "bore out of tolerance"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["machines"].as_array().unwrap().len(), 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v: Value = c
            .get(format!("{base}/api/v1/holds"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["holds"]
            .as_array()
            .is_some_and(|h| h.iter().any(|x| x["hold"] == "QH-7"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "the hold never showed: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, v) = call(
        &c,
        "POST",
        &format!("{base}/api/v1/holds/QH-7/release"),
        json!({}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = call(
        &c,
        "POST",
        &format!("{base}/api/v1/holds/QH-8/release"),
        json!({}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("unknown_hold"))
    );
    let (s, v) = call(
        &c,
        "POST",
        &format!("{base}/api/v1/inspections"),
        json!({"machine": m1, "result": "maybe"}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_argument"))
    );

    // The operator at m1 signs in and says why it stopped; the live context shows it.
    let (s, v) = call(
        &c,
        "POST",
        &format!("{base}/api/v1/machines/{m1}/sign-in"),
        json!({"operator": "ana"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = call(
        &c,
        "POST",
        &format!("{base}/api/v1/machines/{m1}/reason"),
        json!({"reason": "coffee"}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_argument"))
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("starved"),
        "{v}"
    );
    let (s, v) = call(
        &c,
        "POST",
        &format!("{base}/api/v1/machines/{m1}/reason"),
        json!({"reason": "starved", "note": "no bar stock"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v: Value = c
            .get(format!("{base}/api/v1/machines/{m1}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["context"]["context"]["operator"] == "ana" {
            let src = &v["context"]["attribution"]["source"];
            assert!(src.is_string(), "{v}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the context never showed ana: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dispatch: Value = c
        .get(format!("{base}/api/v1/machines/{m1}/dispatch"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dispatch["operations"][0]["job"], "30001");
    assert_eq!(dispatch["operations"][0]["after"], "10");

    // Classified intervals are in the journal, with an attribution; re-classification runs.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let recs: Value = c
        .get(format!("{base}/api/v1/records?kind=interval&limit=50"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let first = &recs["records"][0];
    assert!(
        first["category"].is_string() && first["attribution"]["source"].is_string(),
        "{first}"
    );
    let (s, v) = call(
        &c,
        "POST",
        &format!("{base}/api/v1/reclassify"),
        json!({"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["intervals"].as_u64().unwrap() > 0, "{v}");
    // The CLI asks the running bridge, with the demo's admin token (the admin role is needed).
    let text = shopbridge(
        &[
            "reclassify",
            "--from",
            "2000-01-01T00:00:00Z",
            "--to",
            "2100-01-01T00:00:00Z",
        ],
        dir.path(),
    );
    assert!(text.contains("\"intervals\""), "{text}");

    // Stop, then score the run against the simulator's truth.
    let _ = Command::new("kill")
        .args(["-TERM", &guard.0.id().to_string()])
        .status();
    let _ = guard.0.wait();
    let text = shopbridge(&["score"], dir.path());
    let last = text.lines().last().unwrap_or("");
    assert!(last.starts_with("correct_time_pct="), "{text}");
    assert!(text.contains("unaccounted_seconds=0"), "{text}");
}
