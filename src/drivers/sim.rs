//! The in-process `sim` driver: feeds one [`MachineSim`] into the pipeline without a protocol.
//!
//! It reports [`LinkStatus::Connected`], then sends the machine's full signal snapshot as its
//! first batch (the link event first in it), then, every step of the app's [`Clock`], the
//! signal changes since the last step as one batch (source time = the simulated event time).
//! A step is one simulated second, but never less than 5 ms of wall time (at `--speed 600` a
//! step is 3 simulated seconds). Closed ground-truth intervals go to the [`TruthSink`]. On
//! shutdown it closes the open truth interval at the clock's now and returns.

use std::time::Duration;

use crate::model::{LinkStatus, Quality, SignalId, Timestamp, Value};
use crate::sim::{MachineSim, SimOutput, TruthSink};

use super::{DriverBatch, DriverContext, DriverEvent, RawObservation};

/// The simulated time between two steps, before the 5 ms wall-time floor.
pub const STEP: Duration = Duration::from_secs(1);
/// The least wall time between two steps.
pub const MIN_WALL_STEP: Duration = Duration::from_millis(5);

/// Runs `sim` until `ctx.shutdown` is cancelled or the pipeline goes away.
pub async fn run(mut sim: MachineSim, ctx: DriverContext, truth: TruthSink) {
    let machine = sim.id().clone();
    let clock = ctx.clock.clone();
    let step = STEP.max(Duration::from_secs_f64(
        MIN_WALL_STEP.as_secs_f64() * clock.speed(),
    ));

    // Catch up to now (the sim may have been built a moment ago), then connect with a snapshot.
    let now = clock.now();
    let caught_up = sim.advance(now);
    truth.send(caught_up.truth).await;
    let mut batch: DriverBatch = vec![DriverEvent::Link {
        machine: machine.clone(),
        status: LinkStatus::Connected,
        at: now,
        detail: Some("in-process simulator".into()),
        missed: None,
    }];
    let snapshot_time = sim.now();
    batch.extend(
        sim.current_signals()
            .into_iter()
            .map(|(signal, value)| observation(&sim, signal, value, snapshot_time, now)),
    );
    if !send(&ctx, batch).await {
        finish(sim, &ctx, &truth).await;
        return;
    }
    tracing::debug!(machine = %machine, step_ms = step.as_millis() as u64, "simulator connected");

    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            _ = clock.sleep(step) => {}
        }
        let now = clock.now();
        // The in-process simulator has no ERP or QMS around it: its floor events are dropped.
        let SimOutput {
            events,
            truth: intervals,
            ..
        } = sim.advance(now);
        let batch: DriverBatch = events
            .into_iter()
            .map(|e| observation(&sim, e.signal, e.value, e.at, now))
            .collect();
        if !truth.send(intervals).await {
            tracing::debug!(machine = %machine, "truth writer gone");
        }
        if !send(&ctx, batch).await {
            break;
        }
    }
    finish(sim, &ctx, &truth).await;
}

fn observation(
    sim: &MachineSim,
    signal: &str,
    value: Value,
    at: Timestamp,
    received: Timestamp,
) -> DriverEvent {
    DriverEvent::Observation(RawObservation {
        machine: sim.id().clone(),
        key: SignalId::new(signal),
        value,
        quality: Quality::Good,
        source_time: Some(at),
        received,
        meta: None,
    })
}

/// Sends unless shutdown comes first; false when the pipeline is gone or shutting down.
async fn send(ctx: &DriverContext, batch: DriverBatch) -> bool {
    tokio::select! {
        _ = ctx.shutdown.cancelled() => false,
        ok = ctx.send(batch) => ok,
    }
}

/// Closes the open truth interval at now and hands the rest of the truth to the sink. The
/// last signal changes are offered to the pipeline only if it has room (it is shutting down).
async fn finish(sim: MachineSim, ctx: &DriverContext, truth: &TruthSink) {
    let now = ctx.clock.now();
    let id = sim.id().clone();
    let out = sim.finish(now);
    let batch: DriverBatch = out
        .events
        .into_iter()
        .map(|e| {
            DriverEvent::Observation(RawObservation {
                machine: id.clone(),
                key: SignalId::new(e.signal),
                value: e.value,
                quality: Quality::Good,
                source_time: Some(e.at),
                received: now,
                meta: None,
            })
        })
        .collect();
    if !batch.is_empty() {
        let _ = ctx.tx.try_send(batch);
    }
    truth.send(out.truth).await;
    tracing::debug!(machine = %id, "simulator stopped");
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::clock::Clock;
    use crate::model::MachineId;
    use crate::sim::{TruthLine, TruthWriter, demo_machines};

    #[tokio::test(start_paused = true)]
    async fn drives_a_shop_hour_by_hour_and_writes_truth() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("tempdir: {e}"),
        };
        let start = Timestamp::parse_rfc3339("2026-11-24T07:00:00Z").unwrap_or_default();
        let clock = Clock::scaled(start, 600.0);
        let (writer, sink) = TruthWriter::open(dir.path())
            .await
            .expect("open truth file");
        let (tx, mut rx) = mpsc::channel(64);
        let shutdown = CancellationToken::new();
        let fleet = demo_machines(3);
        let ids: Vec<MachineId> = fleet.iter().map(|m| m.0.clone()).collect();
        let mut tasks = Vec::new();
        for (i, (id, _, _)) in fleet.into_iter().enumerate() {
            let sim = MachineSim::new(i, id.clone(), 99, start);
            let ctx = DriverContext {
                machines: vec![id],
                tx: tx.clone(),
                shutdown: shutdown.clone(),
                clock: clock.clone(),
                counters: crate::drivers::DriverCounters::new("sim", "test"),
            };
            tasks.push(tokio::spawn(run(sim, ctx, sink.clone())));
        }
        drop(tx);
        drop(sink);

        // Four simulated hours = 24 s of (paused) wall time.
        let mut batches: Vec<DriverBatch> = Vec::new();
        let deadline = start.saturating_add(Duration::from_secs(4 * 3600));
        while clock.now() < deadline {
            tokio::select! {
                b = rx.recv() => match b { Some(b) => batches.push(b), None => break },
                _ = clock.sleep_until(deadline) => {}
            }
        }
        shutdown.cancel();
        for t in tasks {
            t.await.expect("driver task");
        }
        while let Ok(b) = rx.try_recv() {
            batches.push(b);
        }
        let stats = writer.close().await.expect("close truth");

        for id in &ids {
            let mine: Vec<&DriverBatch> = batches
                .iter()
                .filter(|b| b.first().is_some_and(|e| e.machine() == id))
                .collect();
            assert!(mine.len() > 100, "{id}: {} batches", mine.len());
            // The first batch: link Connected, then one value per canonical signal.
            let first = mine[0];
            assert!(
                matches!(
                    first[0],
                    DriverEvent::Link {
                        status: LinkStatus::Connected,
                        ..
                    }
                ),
                "{first:?}"
            );
            assert_eq!(first.len(), 1 + crate::model::signals::ALL.len());
            // Later batches carry observations with source times in order, never in the future.
            let mut last = Timestamp::MIN;
            let mut n = 0;
            for b in &mine[1..] {
                for e in b.iter() {
                    let DriverEvent::Observation(o) = e else {
                        panic!("{e:?}")
                    };
                    let at = o.source_time.unwrap_or(Timestamp::MAX);
                    assert!(at >= last && at <= o.received, "{o:?}");
                    last = at;
                    n += 1;
                }
            }
            assert!(n > 500, "{id}: only {n} observations in 4 h");
        }

        // Truth: every line parses, and per machine the lines tile [start, shutdown).
        let text = std::fs::read_to_string(dir.path().join(crate::sim::TRUTH_FILE))
            .expect("read truth file");
        let lines: Vec<TruthLine> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len() as u64, stats.written);
        assert_eq!(stats.lost, 0);
        for id in &ids {
            let mine: Vec<&TruthLine> = lines.iter().filter(|l| &l.machine == id).collect();
            assert!(mine.len() > 3, "{id}");
            assert_eq!(mine[0].start, start, "{id}");
            for w in mine.windows(2) {
                assert_eq!(w[0].end, w[1].start, "{id}");
            }
            let end = mine.last().map(|l| l.end).unwrap_or(start);
            assert!(end >= deadline, "{id}: truth ends at {end}");
        }
        let raw: serde_json::Value =
            serde_json::from_str(text.lines().next().unwrap_or("{}")).unwrap_or_default();
        for key in ["machine", "start", "end", "seconds", "category", "activity"] {
            assert!(raw.get(key).is_some(), "{key} missing: {raw}");
        }
    }
}
