//! kill -9 at any moment: after a restart no record that was reported durable is missing, and
//! no sequence number is ever handed out twice.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use shopbridge::journal::{Journal, JournalOptions};
use shopbridge::model::Record;

fn run_and_kill(dir: &std::path::Path, after: Duration) -> u64 {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shopbridge"))
        .arg("journal-append-loop")
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the append loop");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut last = 0u64;
        let mut first_line = true;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut parts = line.split_whitespace();
            if parts.next() != Some("durable") {
                continue;
            }
            let _start: u64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            last = parts.next().and_then(|s| s.parse().ok()).unwrap_or(last);
            if first_line {
                let _ = tx.send(());
                first_line = false;
            }
        }
        last
    });
    // Wait until it is appending, then kill it mid-stream.
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the loop started appending");
    std::thread::sleep(after);
    child.kill().expect("kill -9");
    let _ = child.wait();
    reader.join().expect("reader")
}

#[test]
fn kill_minus_nine_loses_no_durable_record_and_reuses_no_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen: Vec<Record> = Vec::new();
    for (cycle, ms) in [150u64, 400, 50, 700, 250].into_iter().enumerate() {
        let reported = run_and_kill(dir.path(), Duration::from_millis(ms));
        assert!(
            reported > 0,
            "cycle {cycle}: the child reported nothing durable"
        );
        let j = Journal::open(dir.path(), JournalOptions::default()).expect("reopen after kill -9");
        let last = j.last_seq();
        assert!(
            last >= reported,
            "cycle {cycle}: the child was told {reported} was durable, the journal holds only up to {last}"
        );
        let all = j.read(0, usize::MAX).expect("read back");
        assert_eq!(all.len() as u64, last, "cycle {cycle}: records missing");
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.seq, i as u64 + 1, "cycle {cycle}: gap or reorder at {i}");
        }
        // What earlier cycles saw is unchanged: no sequence number was reused.
        for old in &seen {
            assert_eq!(
                &all[(old.seq - 1) as usize],
                old,
                "cycle {cycle}: seq {} changed",
                old.seq
            );
        }
        seen = all;
        let r = j
            .append_blocking(vec![seen[0].kind.clone()])
            .expect("append after restart");
        assert_eq!(
            r.start,
            last + 1,
            "cycle {cycle}: the next seq continues the sequence"
        );
        seen.push(Record {
            seq: r.start,
            kind: seen[0].kind.clone(),
        });
        j.close();
    }
}
