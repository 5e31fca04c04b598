//! The web pages in a real browser: Playwright (`playwright-core`, npm) driving Debian's
//! headless Chromium against the demo. The scenarios are `tests/web/*.mjs` (see its README):
//! the floor view shows every machine and follows them live; an operator taps a reason on the
//! tablet page and the category changes in REST and in the timeline; the daily review's totals
//! equal those computed from the journal's interval records; the floor view of 50 machines
//! stays within its page weight. Screenshots are kept under target/web-screenshots.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> PathBuf {
    let p = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        p.is_file(),
        "{} is missing: run ./scripts/test, which installs Debian's chromium",
        p.display()
    );
    p
}

fn web_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web");
    assert!(
        d.join("node_modules/playwright-core").is_dir(),
        "tests/web/node_modules is missing: run ./scripts/test (it runs npm ci there)"
    );
    d
}

/// Runs one scenario against `base`; panics with its output when it fails.
async fn scenario(name: &str, base: &str) -> String {
    let (web, browser) = (web_dir(), chromium());
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/web-screenshots");
    let (name, base) = (name.to_string(), base.to_string());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(web.join(format!("{name}.mjs")))
            .env("SHOPBRIDGE_URL", &base)
            .env("CHROMIUM", &browser)
            .env("SCREENSHOTS", &shots)
            .output()
            .map(|o| (name, o))
    })
    .await
    .unwrap()
    .expect("node runs (the README's test command installs Node.js' npm packages)");
    let (name, out) = out;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "scenario {name} failed:\n{text}");
    for l in text.lines().filter(|l| l.contains("FIGURE")) {
        println!("{name}: {l}");
    }
    text
}

/// One browser and one demo at a time: the machine has two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floor_tablet_timeline_and_review_in_chromium() {
    let _one = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (_guard, base) = common::demo(dir.path(), &["--speed", "60"]);
    common::index_ready(&base).await;
    scenario("floor", &base).await;
    scenario("tablet", &base).await;
    scenario("review", &base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floor_view_of_50_machines_stays_within_its_weight() {
    let _one = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (_guard, base) = common::demo(dir.path(), &["--machines", "50", "--speed", "10"]);
    common::index_ready(&base).await;
    scenario("weight", &base).await;
}
