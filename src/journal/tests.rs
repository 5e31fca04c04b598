//! The journal against a `Vec` model, restarts included, plus retention and cursor behaviour.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::clock::Clock;
use crate::model::{
    LinkEvent, LinkStatus, MachineId, Observation, Quality, RecordKind, SignalId, Timestamp,
    Timestamps, Value,
};

fn obs(machine: u8, signal: u8, v: i64, t: i64) -> RecordKind {
    RecordKind::Observation(Observation {
        machine: MachineId::new(&format!("m{machine}")).unwrap(),
        signal: SignalId::new(&format!("s{signal}")),
        value: Value::Int(v),
        quality: Quality::Good,
        time: Timestamps {
            source: None,
            received: Timestamp::from_micros(t),
            aligned: Timestamp::from_micros(t),
        },
    })
}

fn opts() -> JournalOptions {
    JournalOptions {
        block_records: 7,
        retention_interval: Duration::from_secs(3600),
        ..JournalOptions::default()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn append_read_and_reopen_keep_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts()).unwrap();
    let r = j
        .append_blocking((0..20).map(|i| obs(1, 1, i, 1000 + i)).collect())
        .unwrap();
    assert_eq!(r, 1..21);
    let r = j.append_blocking(vec![obs(2, 2, 5, 5000)]).unwrap();
    assert_eq!(r, 21..22);
    assert_eq!(j.last_seq(), 21);
    let all = j.read(0, 1000).unwrap();
    assert_eq!(all.len(), 21);
    assert!(all.iter().enumerate().all(|(i, r)| r.seq == i as u64 + 1));
    assert_eq!(
        j.read(10, 3)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect::<Vec<_>>(),
        vec![11, 12, 13]
    );
    j.close();
    let j = Journal::open(dir.path(), opts()).unwrap();
    assert_eq!(j.last_seq(), 21);
    assert_eq!(j.append_blocking(vec![obs(3, 1, 1, 9000)]).unwrap(), 22..23);
    let all = j.read(0, 1000).unwrap();
    assert_eq!(all[21].kind, obs(3, 1, 1, 9000));
    assert_eq!(all[20].kind, obs(2, 2, 5, 5000));
    j.close();
    assert!(matches!(
        j.append_blocking(vec![obs(1, 1, 1, 1)]),
        Err(JournalError::Closed)
    ));
}

#[test]
fn a_second_writer_on_the_same_directory_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts()).unwrap();
    let e = Journal::open(dir.path(), opts()).err().unwrap();
    assert!(matches!(e, JournalError::AlreadyOpen { .. }), "{e}");
    assert!(e.to_string().contains("running shopbridge"), "{e}");
    j.close();
    assert!(ReadOnlyJournal::open(dir.path()).is_ok());
}

/// A journal holding records 1..=30 (one a second) and the cursor `mqtt` at its beginning.
async fn thirty_records_and_a_cursor(dir: &std::path::Path) -> (Journal, Cursor) {
    let j = Journal::open(dir, opts()).unwrap();
    j.append((1..=30).map(|i| obs(1, 1, i, i * 1_000_000)).collect())
        .await
        .unwrap();
    let c = j.cursor("mqtt", StartAt::Beginning).await.unwrap();
    (j, c)
}

#[test]
fn cursors_resume_after_their_last_ack_and_start_where_asked() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (j, mut c) = thirty_records_and_a_cursor(dir.path()).await;
        let b = c.next_batch(10).unwrap();
        assert_eq!(b.records.first().unwrap().seq, 1);
        let b = c.next_batch(10).unwrap();
        assert_eq!(b.records.last().unwrap().seq, 20);
        c.ack(12).await.unwrap();
        let mut t = j
            .cursor("late", StartAt::Time(Timestamp::from_micros(25_000_000)))
            .await
            .unwrap();
        assert_eq!(t.next_batch(1).unwrap().records[0].seq, 25);
        let mut s = j.cursor("from-seq", StartAt::Sequence(17)).await.unwrap();
        assert_eq!(s.next_batch(1).unwrap().records[0].seq, 17);
        let mut e = j.cursor("tail", StartAt::End).await.unwrap();
        assert!(e.next_batch(10).unwrap().records.is_empty());
        assert!(j.cursor("Bad Name", StartAt::End).await.is_err());
        j.close_async().await;

        let j = Journal::open(dir.path(), opts()).unwrap();
        let mut c = j.cursor("mqtt", StartAt::End).await.unwrap();
        assert_eq!(c.acked(), 12);
        assert_eq!(c.next_batch(1).unwrap().records[0].seq, 13);
        assert_eq!(j.stats().cursors.get("mqtt"), Some(&12));
        j.close_async().await;
    });
}

#[test]
fn a_soon_ack_rides_on_the_next_commit_and_is_kept_by_closing() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (j, mut c) = thirty_records_and_a_cursor(dir.path()).await;
        c.next_batch(20).unwrap();
        let commits = j.stats().commits_total;
        c.ack_soon(15);
        // Counted at once for this cursor, but no commit of its own.
        assert_eq!(c.acked(), 15);
        c.rewind();
        assert_eq!(c.next_batch(1).unwrap().records[0].seq, 16);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(j.stats().commits_total, commits);
        assert_eq!(j.stats().cursors.get("mqtt"), Some(&0));
        // The next append's commit carries it.
        j.append(vec![obs(1, 1, 31, 31_000_000)]).await.unwrap();
        assert_eq!(j.stats().commits_total, commits + 1);
        assert_eq!(j.stats().cursors.get("mqtt"), Some(&15));
        // One still pending when the journal closes is kept.
        c.ack_soon(25);
        j.close_async().await;

        let j = Journal::open(dir.path(), opts()).unwrap();
        let mut c = j.cursor("mqtt", StartAt::End).await.unwrap();
        assert_eq!(c.acked(), 25);
        assert_eq!(c.next_batch(1).unwrap().records[0].seq, 26);
        // Never past what is stored, and never backwards.
        c.ack_soon(1_000);
        c.ack_soon(3);
        j.append(vec![obs(1, 1, 32, 32_000_000)]).await.unwrap();
        assert_eq!(j.stats().cursors.get("mqtt"), Some(&31));
        j.close_async().await;
    });
}

#[test]
fn retention_keeps_unacknowledged_records_until_the_hard_cap() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let clock = Clock::scaled(Timestamp::from_micros(10_000_000_000), 1.0);
        let o = JournalOptions {
            max_age: Duration::from_secs(60),
            max_bytes: u64::MAX / 2,
            hard_cap_bytes: u64::MAX / 2,
            block_records: 10,
            retention_interval: Duration::from_millis(1),
            clock,
            ..JournalOptions::default()
        };
        let j = Journal::open(dir.path(), o.clone()).unwrap();
        let mut c = j.cursor("slow", StartAt::Beginning).await.unwrap();
        // 100 old records (time 1 s), far older than max_age.
        j.append((0..100).map(|i| obs(1, 1, i, 1_000_000)).collect())
            .await
            .unwrap();
        c.next_batch(45).unwrap();
        c.ack(45).await.unwrap();
        // Nudge the writer so retention runs.
        tokio::time::sleep(Duration::from_millis(5)).await;
        j.append(vec![obs(1, 1, 0, 9_999_000_000)]).await.unwrap();
        // Blocks 1-10 .. 31-40 are fully acknowledged and old: gone. 41-50 holds 46..: kept.
        assert_eq!(j.first_seq(), 41);
        assert_eq!(j.stats().dropped_total, 0);
        j.close_async().await;

        // Now a hard cap smaller than what is stored: the oldest go although unacknowledged.
        let o2 = JournalOptions {
            hard_cap_bytes: 1,
            max_bytes: 1,
            ..o
        };
        let j = Journal::open(dir.path(), o2).unwrap();
        j.append(vec![obs(1, 1, 0, 9_999_000_001)]).await.unwrap();
        let mut st = j.stats();
        for _ in 0..200 {
            if st.dropped_total > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            st = j.stats();
        }
        assert!(st.dropped_total > 0, "{st:?}");
        let mut c = j.cursor("slow", StartAt::Beginning).await.unwrap();
        let b = c.next_batch(100).unwrap();
        assert!(b.lost > 0, "a cursor is told what it lost");
        j.close_async().await;
    });
}

#[test]
fn other_record_kinds_round_trip_through_storage() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts()).unwrap();
    let link = RecordKind::Link(LinkEvent {
        machine: MachineId::new("m1").unwrap(),
        at: Timestamp::from_micros(77),
        status: LinkStatus::Gap,
        detail: Some("agent restarted".into()),
        missed: Some(3),
    });
    j.append_blocking(vec![obs(1, 1, 1, 1), link.clone()])
        .unwrap();
    assert_eq!(j.read(1, 10).unwrap()[0].kind, link);
    j.close();
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<(u8, u8, i64)>),
    Reopen,
    Next(u8, u8),
    Ack(u8),
    AckSoon(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec((0u8..4, 0u8..5, any::<i64>()), 0..30).prop_map(Op::Append),
        1 => Just(Op::Reopen),
        2 => (0u8..2, 1u8..20).prop_map(|(c, n)| Op::Next(c, n)),
        2 => (0u8..2).prop_map(Op::Ack),
        1 => (0u8..2).prop_map(Op::AckSoon),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// The journal behaves like a Vec of records, whatever the interleaving of appends, reads,
    /// acknowledgements (waited for or riding on the next commit) and restarts.
    #[test]
    fn journal_matches_a_vec_model(ops in prop::collection::vec(op(), 1..25), small_blocks in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        // Small blocks split by count; default blocks split by encoded size.
        let opts = || if small_blocks { opts() } else { JournalOptions::default() };
        let rt = rt();
        rt.block_on(async {
            let mut model: Vec<RecordKind> = Vec::new();
            let mut j = Journal::open(dir.path(), opts()).unwrap();
            let names = ["a", "b"];
            // model cursor state: (position, acked)
            let mut mc = [(0u64, 0u64); 2];
            let mut cursors = Vec::new();
            for n in names { cursors.push(j.cursor(n, StartAt::Beginning).await.unwrap()); }
            let mut t = 0i64;
            for op in ops {
                match op {
                    Op::Append(v) => {
                        let recs: Vec<_> = v.iter().map(|(m, s, x)| {
                            t += 1;
                            if *m == 3 && *s == 4 {
                                // Now and then a big record, so blocks also split by size.
                                RecordKind::Link(LinkEvent {
                                    machine: MachineId::new("m3").unwrap(),
                                    at: Timestamp::from_micros(t),
                                    status: LinkStatus::Lost,
                                    detail: Some("x".repeat((x.unsigned_abs() % 40_000) as usize)),
                                    missed: None,
                                })
                            } else {
                                obs(*m, *s, *x, t)
                            }
                        }).collect();
                        let r = j.append(recs.clone()).await.unwrap();
                        prop_assert_eq!(r.start, model.len() as u64 + 1);
                        prop_assert_eq!(r.end, model.len() as u64 + 1 + recs.len() as u64);
                        model.extend(recs);
                    }
                    Op::Reopen => {
                        drop(cursors);
                        j.close_async().await;
                        j = Journal::open(dir.path(), opts()).unwrap();
                        cursors = Vec::new();
                        for (i, n) in names.iter().enumerate() {
                            let c = j.cursor(n, StartAt::End).await.unwrap();
                            prop_assert_eq!(c.acked(), mc[i].1);
                            mc[i].0 = mc[i].1;
                            cursors.push(c);
                        }
                    }
                    Op::Next(c, n) => {
                        let b = cursors[c as usize].next_batch(n as usize).unwrap();
                        let (pos, _) = mc[c as usize];
                        let expect: Vec<_> = model.iter().skip(pos as usize).take(n as usize).cloned().collect();
                        prop_assert_eq!(b.records.iter().map(|r| r.kind.clone()).collect::<Vec<_>>(), expect.clone());
                        for (k, r) in b.records.iter().enumerate() {
                            prop_assert_eq!(r.seq, pos + 1 + k as u64);
                        }
                        mc[c as usize].0 = pos + expect.len() as u64;
                    }
                    Op::Ack(c) => {
                        let pos = mc[c as usize].0;
                        cursors[c as usize].ack(pos).await.unwrap();
                        mc[c as usize].1 = mc[c as usize].1.max(pos);
                    }
                    Op::AckSoon(c) => {
                        // Durable by the next commit at the latest, closing included.
                        let pos = mc[c as usize].0;
                        cursors[c as usize].ack_soon(pos);
                        mc[c as usize].1 = mc[c as usize].1.max(pos);
                    }
                }
                prop_assert_eq!(j.last_seq(), model.len() as u64);
            }
            let all = j.read(0, usize::MAX).unwrap();
            prop_assert_eq!(all.len(), model.len());
            for (i, (r, m)) in all.iter().zip(&model).enumerate() {
                prop_assert_eq!(r.seq, i as u64 + 1);
                prop_assert_eq!(&r.kind, m);
            }
            j.close_async().await;
            Ok(())
        })?;
    }
}

#[test]
#[ignore = "measurement: cargo test --release --lib journal::tests::small_commit_footprint -- --ignored --nocapture"]
fn small_commit_footprint() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let mut n = 0;
    for c in 0..10000 {
        let recs: Vec<_> = (0..3)
            .map(|i| obs((c % 50) as u8, i, c as i64, 1_000_000 + c as i64 * 80_000))
            .collect();
        n += recs.len();
        j.append_blocking(recs).unwrap();
    }
    let st = j.stats();
    println!(
        "{n} records in 10000 commits: encoded {} B ({:.1}/rec), file {} B ({:.1}/rec)",
        st.bytes,
        st.bytes as f64 / n as f64,
        st.file_bytes,
        st.file_bytes as f64 / n as f64
    );
    j.close();
}
