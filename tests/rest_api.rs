//! The REST API as an integrator meets it: Schemathesis (an independent OpenAPI fuzzer, PyPI
//! `schemathesis`) drives every operation of `/api/v1/openapi.json` with generated requests
//! and finds no server error, no answer outside the documented schemas, status codes and
//! content types; and tokens with roles are enforced (401 without a valid token, 403 for a
//! role too low, the OpenAPI document and the pages public).

mod common;

use std::process::Command;

use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_undocumented_answer() {
    let st = common::tool("schemathesis");
    let dir = tempfile::tempdir().unwrap();
    let (_guard, base) = common::demo(dir.path(), &["--machines", "3", "--speed", "60"]);
    common::index_ready(&base).await;
    let token = std::fs::read_to_string(dir.path().join("admin-token")).unwrap();
    let report = dir.path().join("schemathesis");
    std::fs::create_dir_all(&report).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(st)
            // Schemathesis keeps a cache in its working directory: not in the repository.
            .current_dir(&report)
            .args(["run", &format!("{base}/api/v1/openapi.json")])
            .args([
                "--checks",
                "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
                // The event stream never ends: it is tested in the browser.
                "--exclude-path",
                "/api/v1/events",
                "--max-examples",
                "25",
                "--seed",
                "1",
                "--request-timeout",
                "30",
                "--header",
                &format!("Authorization: Bearer {}", token.trim()),
                "--report-dir",
            ])
            .arg(&report)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("passed"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_roles_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let token = |role: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_shopbridge"))
            .args(["new-token", "--name", &format!("t-{role}"), "--role", role])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        let t = text
            .split_whitespace()
            .find(|w| w.starts_with("sbt_"))
            .unwrap()
            .to_string();
        let entry = text[text.find("[[http.tokens]]").unwrap()..].to_string();
        (t, entry)
    };
    let (viewer, viewer_entry) = token("viewer");
    let (operator, operator_entry) = token("operator");
    let port = common::free_port();
    let cfg = dir.path().join("shopbridge.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\nlocal_role = \"none\"\n\n{viewer_entry}\n{operator_entry}\n\
             [journal]\ndir = {:?}\n\n[[machines]]\nid = \"m1\"\nname = \"Machine 1\"\nprofile = \"mtconnect-generic\"\ndriver = {{ type = \"sim\" }}\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let _bridge = common::KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_shopbridge"))
            .args(["run", "--config"])
            .arg(&cfg)
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let c = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while c.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the bridge did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let get = |path: &str, t: Option<&str>| {
        let mut r = c.get(format!("{base}{path}"));
        if let Some(t) = t {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    // Public: the document and the pages.
    assert_eq!(
        get("/api/v1/openapi.json", None).await.unwrap().status(),
        200
    );
    assert_eq!(get("/", None).await.unwrap().status(), 200);
    // local_role = "none": even this host needs a token.
    let r = get("/api/v1/machines", None).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unauthorized", "{v}");
    let r = get("/api/v1/machines", Some("sbt_not-a-token"))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        get("/api/v1/machines", Some(&viewer))
            .await
            .unwrap()
            .status(),
        200
    );
    // The event stream takes the token in the query (EventSource sends no headers).
    let r = c
        .get(format!("{base}/api/v1/whoami?access_token={viewer}"))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["role"], "viewer", "{v}");
    assert_eq!(v["user"], "t-viewer", "{v}");
    // A viewer may not give a stop reason; an operator may, and is recorded as who said it.
    let reason = |t: &str| {
        c.post(format!("{base}/api/v1/machines/m1/reason"))
            .bearer_auth(t)
            .json(&json!({"reason": "starved"}))
            .send()
    };
    let r = reason(&viewer).await.unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "forbidden");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("operator"),
        "{v}"
    );
    let r = reason(&operator).await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    // A page of another site cannot make a browser write here (cross-site request forgery).
    let r = c
        .post(format!("{base}/api/v1/machines/m1/reason"))
        .bearer_auth(&operator)
        .header("Origin", "http://evil.example")
        .json(&json!({"reason": "starved"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "cross_site", "{v}");
    let v: Value = get("/api/v1/records?kind=command&machine=m1", Some(&operator))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["records"][0]["origin"]["user"], "t-operator", "{v}");
    // An operator may not replace a dispatch list (planner).
    let r = c
        .put(format!("{base}/api/v1/machines/m1/dispatch"))
        .bearer_auth(&operator)
        .json(&json!([]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}
