//! The real Okuma OSP-P300 capture (IMTS 2022, ../shared/data/mtconnect/okuma-osp-p300.shdr)
//! replayed through a TCP socket into a running bridge: its SHDR driver, the `okuma-osp`
//! profile, the pipeline and the journal. The facts asserted are the capture's own (counted
//! from the file): four programs, the READY / ACTIVE / PROGRAM_COMPLETED cycles, part counts
//! 0 → 1 and 2 → 3, the condition items all NORMAL, 118 cutting-tool assets with their
//! removals. A garbage line injected mid-stream is counted and survived.

use std::path::{Path, PathBuf};
use std::time::Duration;

use shopbridge::app::{self, RunOptions};
use shopbridge::clock::Clock;
use shopbridge::journal::ReadOnlyJournal;
use shopbridge::model::{
    AssetAction, ConditionLevel, Record, RecordKind, ShopState, TimeCategory, Value,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

fn capture() -> Option<PathBuf> {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mtconnect/okuma-osp-p300.shdr");
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: {} is not here (it is third-party data kept beside the project, not in it)",
            p.display()
        );
        None
    }
}

/// Serves the capture to the first client, paced by its timestamps (200× faster) in uneven chunks
/// (lines split anywhere), with one garbage line after line 5000; answers PINGs and keeps the
/// connection open.
async fn adapter(listener: tokio::net::TcpListener, bytes: Vec<u8>) {
    let Ok((sock, _)) = listener.accept().await else {
        return;
    };
    let (r, mut w) = sock.into_split();
    let (pong_tx, mut pong_rx) = tokio::sync::mpsc::channel::<()>(16);
    tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            if l.starts_with("* PING") && pong_tx.send(()).await.is_err() {
                return;
            }
        }
    });
    let text = String::from_utf8_lossy(&bytes).into_owned();
    // Paced by the capture's own clock, 200 times faster (a real adapter sends as things
    // happen; the capture's four sessions take 22 minutes), flushed in chunks of 1 byte to
    // ~16 KiB that split lines anywhere.
    let mut pending: Vec<u8> = Vec::new();
    let mut last: Option<i64> = None;
    let mut owed = Duration::ZERO;
    let mut step = 1usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        pending.extend_from_slice(line.as_bytes());
        if i == 5000 {
            pending.extend_from_slice(b"this line is not SHDR at all \xff\xfe|||\n");
        }
        let t = line
            .split('|')
            .next()
            .and_then(|f| shopbridge::model::Timestamp::parse_rfc3339(f).ok())
            .map(|t| t.as_micros());
        if let (Some(t), Some(l)) = (t, last) {
            // Assets carry old times and the sessions jump: only short steps forward count.
            if t > l && t - l < 10_000_000 {
                owed += Duration::from_micros(((t - l) / 200) as u64);
            }
        }
        if t.is_some() {
            last = t;
        }
        if owed < Duration::from_millis(5) {
            continue;
        }
        let mut pos = 0;
        while pos < pending.len() {
            step = (step * 7 + 13) % 16_381 + 1;
            let end = (pos + step).min(pending.len());
            if w.write_all(&pending[pos..end]).await.is_err() {
                return;
            }
            pos = end;
        }
        pending.clear();
        while pong_rx.try_recv().is_ok() {
            let _ = w.write_all(b"* PONG 10000\n").await;
        }
        tokio::time::sleep(owed).await;
        owed = Duration::ZERO;
    }
    if w.write_all(&pending).await.is_err() {
        return;
    }
    while pong_rx.recv().await.is_some() {
        if w.write_all(b"* PONG 10000\n").await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_okuma_capture_becomes_canonical_records() {
    let Some(path) = capture() else { return };
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(adapter(listener, bytes));

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[journal]\ndir = {:?}\n\n[[machines]]\nid = \"okuma-1\"\nname = \"Okuma MULTUS U3000\"\nprofile = \"okuma-osp\"\n[machines.driver]\ntype = \"shdr\"\naddress = \"{addr}\"\n",
        dir.path().display().to_string()
    );
    let config =
        shopbridge::config::load_str(&config, "test.toml").unwrap_or_else(|e| panic!("{e}"));
    let stop = CancellationToken::new();
    let bridge = tokio::spawn(app::run(
        config,
        RunOptions {
            clock: Clock::system(),
            announce: false,
            http_bound: None,
        },
        stop.clone(),
    ));
    // The bridge names its HTTP address in bridge.json; wait until its SHDR driver has read
    // every line and the journal holds all that came of them.
    let mut http = String::new();
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if http.is_empty() {
            let bridge_json =
                std::fs::read_to_string(dir.path().join("bridge.json")).unwrap_or_default();
            http = serde_json::from_str::<serde_json::Value>(&bridge_json)
                .ok()
                .and_then(|v| v["http"].as_str().map(str::to_string))
                .unwrap_or_default();
            continue;
        }
        // Every line read: the capture's 10,770 and the garbage one.
        let metrics = match client.get(format!("http://{http}/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => continue,
        };
        let counter = |name: &str| -> u64 {
            metrics
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        if counter("shopbridge_driver_messages_total{driver=\"shdr\"") >= 10_771 {
            // All read; give the pipeline and the journal's group commit a moment.
            tokio::time::sleep(Duration::from_millis(1000)).await;
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the capture did not arrive in 60 s"
        );
    }
    // The garbage line was counted as bad input (the bridge names its address in bridge.json).
    let metrics = client
        .get(format!("http://{http}/metrics"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET /metrics: {e}"))
        .text()
        .await
        .unwrap_or_default();
    let bad = metrics
        .lines()
        .find(|l| l.starts_with("shopbridge_driver_bad_input_total{driver=\"shdr\""))
        .unwrap_or_default();
    assert!(bad.ends_with(" 1"), "{bad:?}");
    stop.cancel();
    bridge
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));

    let journal = ReadOnlyJournal::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let records: Vec<Record> = journal
        .read(0, usize::MAX)
        .unwrap_or_else(|e| panic!("{e}"));
    let values = |signal: &str| -> Vec<Value> {
        records
            .iter()
            .filter_map(|r| match &r.kind {
                RecordKind::Observation(o) if o.signal.as_str() == signal => Some(o.value.clone()),
                _ => None,
            })
            .collect()
    };
    let words =
        |signal: &str| -> Vec<String> { values(signal).iter().map(|v| v.to_string()).collect() };

    // Programs, in the order the four recordings loaded them.
    let mut programs = words("program");
    programs.dedup();
    assert_eq!(
        programs,
        [
            "IMTS-2022-2-HOB.MIN",
            "IMTS-2022-1E-mm.MIN",
            "IMTS-2022-4B-mm.MIN",
            "IMTS-2022-3-TRAN.MIN"
        ]
    );
    // Execution: each recording is READY → ACTIVE → PROGRAM_COMPLETED → READY.
    let exec = words("execution");
    let cycle = ["READY", "ACTIVE", "PROGRAM_COMPLETED", "READY"];
    assert_eq!(exec, cycle.repeat(4), "{exec:?}");
    // Part counts as the control reported them (integers through the profile's type).
    assert_eq!(
        values("part_count"),
        [0, 1, 0, 1, 2, 3, 0, 1].map(Value::Int).to_vec()
    );
    // Spindle speed comes from S1 only; X1actm passes through under its own key.
    assert_eq!(values("spindle_speed").len(), 251);
    assert_eq!(values("X1actm").len(), 1312);
    // Conditions: every condition line is a record, all NORMAL, and none raised the alarm.
    let conditions: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.kind {
            RecordKind::Condition(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(conditions.len(), 40, "{conditions:?}");
    assert!(conditions.iter().all(|c| c.level == ConditionLevel::Normal));
    assert!(
        conditions
            .iter()
            .any(|c| c.signal.as_str() == "CoolantSystem1_cond")
    );
    // Assets survived: every cutting tool document, and the removals.
    let assets: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.kind {
            RecordKind::Asset(a) => Some(a),
            _ => None,
        })
        .collect();
    let changed: Vec<_> = assets
        .iter()
        .filter(|a| a.action == AssetAction::Changed)
        .collect();
    assert_eq!(changed.len(), 118);
    assert!(changed.iter().all(|a| {
        a.asset_type.as_deref() == Some("CuttingTool")
            && a.document
                .as_deref()
                .is_some_and(|d| d.starts_with("<CuttingTool") && d.contains("</CuttingTool>"))
    }));
    assert_eq!(
        assets
            .iter()
            .filter(|a| a.action == AssetAction::Removed)
            .count(),
        30
    );
    assert_eq!(
        assets
            .iter()
            .filter(|a| a.action == AssetAction::RemovedAll)
            .count(),
        4
    );
    // The machine ran: production intervals, and every state change is on a monotonic time line.
    let running: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.kind {
            RecordKind::Interval(i) if i.shop_state == ShopState::Run => Some(i),
            _ => None,
        })
        .collect();
    // One cutting stretch per session; session 2 switches from PROCESS_DEVELOPMENT to
    // PRODUCTION while cutting, which starts a new interval.
    let mut run_programs: Vec<_> = running
        .iter()
        .filter_map(|i| i.state.program.clone())
        .collect();
    run_programs.dedup();
    assert_eq!(run_programs, programs, "{running:?}");
    assert_eq!(running.len(), 5, "{running:?}");
    // Cutting is production, except cutting in PROCESS_DEVELOPMENT before the program made a
    // part: the context layer calls that program prove-out.
    for i in &running {
        let proving =
            i.state.functional_mode == Some(shopbridge::model::FunctionalMode::ProcessDevelopment);
        let expected = if proving {
            TimeCategory::Loss(shopbridge::model::LossCategory::PROGRAM_PROVEOUT)
        } else {
            TimeCategory::Production
        };
        assert_eq!(i.category.as_ref(), Some(&expected), "{i:?}");
    }
    assert!(
        running
            .iter()
            .any(|i| i.category == Some(TimeCategory::Production))
    );
    let mut last = None;
    for r in &records {
        if let RecordKind::StateChange(s) = &r.kind {
            assert!(
                last.is_none_or(|l| s.at >= l),
                "state changes go back in time"
            );
            last = Some(s.at);
        }
    }
    // The garbage line did not end the connection: one link Connected, no Lost before stop.
    let links: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.kind {
            RecordKind::Link(l) => Some(l.status),
            _ => None,
        })
        .collect();
    assert_eq!(
        links.first(),
        Some(&shopbridge::model::LinkStatus::Connected),
        "{links:?}"
    );
    assert_eq!(
        links
            .iter()
            .filter(|s| **s == shopbridge::model::LinkStatus::Connected)
            .count(),
        1,
        "{links:?}"
    );
}
