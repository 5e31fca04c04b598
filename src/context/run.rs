//! The context layer as a journal consumer: reads every record through the durable cursor
//! `context`, runs the [`Engine`], and appends what it derives in the same commit that
//! acknowledges the records it read. Every few seconds (and at shutdown) that commit also
//! saves the engine's state with the position it was taken at.
//!
//! After a crash the engine restores the saved state and runs the records between the state's
//! position and the cursor again, discarding what they derive (it is in the journal already:
//! the engine is deterministic), so nothing is written twice and nothing is lost.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::engine::Engine;
use crate::clock::Clock;
use crate::journal::{Journal, JournalError, StartAt};
use crate::model::RecordKind;

/// The cursor (and saved state) name.
pub const CURSOR: &str = "context";
/// Records read per pass.
const BATCH: usize = 4096;
/// How often, when no records come, the live context is re-decided on how long spans lasted.
const TICK: Duration = Duration::from_secs(1);
/// How often the engine's state is saved.
const SAVE_EVERY: Duration = Duration::from_secs(10);

/// The saved state: the position it was taken at, then the engine's snapshot.
fn encode_state(position: u64, engine: &Engine) -> Vec<u8> {
    let mut v = position.to_le_bytes().to_vec();
    v.extend(engine.snapshot());
    v
}

/// Restores the saved state into `engine`; returns its position (0 when none).
pub fn restore(journal_state: Option<Vec<u8>>, engine: &mut Engine) -> u64 {
    let Some(bytes) = journal_state else {
        return 0;
    };
    let (pos, body) = bytes.split_at(8.min(bytes.len()));
    let position = pos.try_into().map(u64::from_le_bytes).unwrap_or(0);
    match engine.restore(body) {
        Ok(()) => position,
        Err(e) => {
            tracing::warn!(error = %e, "the context engine's saved state cannot be read; it starts afresh from the journal");
            0
        }
    }
}

/// Runs until `shutdown`, then drains what is durable, closes every open span at the clock's
/// now, and saves the state.
pub async fn run(
    journal: Journal,
    mut engine: Engine,
    view: std::sync::Arc<super::ContextView>,
    clock: Clock,
    written: Written,
    shutdown: CancellationToken,
) {
    if let Err(e) = run_inner(&journal, &mut engine, &view, &clock, &written, &shutdown).await {
        tracing::error!(error = %e, "the context layer stopped: intervals and categories are not being written");
    }
}

/// Told about every batch of records the context layer writes (for counters).
pub type Written = Box<dyn Fn(&[RecordKind]) + Send + Sync>;

async fn run_inner(
    journal: &Journal,
    engine: &mut Engine,
    view: &super::ContextView,
    clock: &Clock,
    written: &Written,
    shutdown: &CancellationToken,
) -> Result<(), JournalError> {
    let saved_at = restore(journal.state(CURSOR)?, engine);
    let mut cursor = journal.cursor(CURSOR, StartAt::Beginning).await?;
    // Catch up from the saved state to the cursor without writing anything again.
    let mut pos = saved_at;
    if saved_at > 0 && saved_at < cursor.acked() {
        let mut discard = Vec::new();
        'replay: loop {
            let records = journal.read(pos, BATCH)?;
            if records.is_empty() {
                break;
            }
            for r in &records {
                if r.seq > cursor.acked() {
                    break 'replay;
                }
                engine.apply(r, &mut discard);
                pos = r.seq;
            }
            discard.clear();
        }
        tracing::info!(
            from = saved_at,
            to = pos,
            "context engine resumed from its saved state"
        );
    }
    let all: Vec<crate::model::MachineId> = engine.machine_ids().cloned().collect();
    view.update(engine, &all);
    let mut last_save = Instant::now();
    let mut last_tick = Instant::now();
    let mut out = Vec::new();
    loop {
        let batch = match cursor.next_batch(BATCH) {
            Ok(b) => b,
            // The journal reopening its file after a failed write: try again shortly.
            Err(e) if !shutdown.is_cancelled() && !matches!(e, JournalError::Closed) => {
                tracing::warn!(error = %e, "the context layer cannot read the journal; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        if batch.lost > 0 {
            tracing::error!(
                lost = batch.lost,
                "records were removed by the journal's hard cap before the context layer read them; their time is not classified"
            );
        }
        let Some(last) = batch.records.last().map(|r| r.seq) else {
            if shutdown.is_cancelled() {
                break;
            }
            // Nothing new: let the live context catch up with how long spans have lasted.
            let waited = tokio::select! {
                w = cursor.wait(shutdown) => w,
                _ = tokio::time::sleep(TICK) => true,
            };
            if !waited {
                // One more pass picks up what the pipeline flushed on its way out.
                continue;
            }
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                engine.tick(clock.now(), &mut out);
                if !out.is_empty() {
                    let pos = cursor.position();
                    written(&out);
                    journal
                        .append_derived(std::mem::take(&mut out), CURSOR, pos, None)
                        .await?;
                }
            }
            continue;
        };
        let mut inputs_changed = Vec::new();
        for r in &batch.records {
            engine.apply(r, &mut out);
            if matches!(r.kind, RecordKind::Dispatch(_) | RecordKind::Quality(_)) {
                inputs_changed.push(r.kind.machine().clone());
            }
        }
        if last_tick.elapsed() >= TICK {
            last_tick = Instant::now();
            engine.tick(clock.now(), &mut out);
        }
        let save = last_save.elapsed() >= SAVE_EVERY;
        if out.is_empty() && !save {
            // Nothing derived: only the position moves, and it needs no commit of its own.
            // Should a crash take it back, the same records are read again from the same
            // state and derive nothing again.
            cursor.ack_soon(last);
        } else {
            let state = save.then(|| encode_state(last, engine));
            written(&out);
            journal
                .append_derived(std::mem::take(&mut out), CURSOR, last, state)
                .await?;
        }
        if save {
            last_save = Instant::now();
        }
        // After the commit: what the API reads is what the journal holds.
        view.update(engine, &inputs_changed);
    }
    engine.close_all(clock.now(), &mut out);
    let upto = cursor.position();
    written(&out);
    journal
        .append_derived(out, CURSOR, upto, Some(encode_state(upto, engine)))
        .await?;
    Ok(())
}
