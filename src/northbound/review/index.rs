//! The interval index: every machine's classified spans, newest revision of each, in memory.
//!
//! The journal keeps intervals among millions of observations; a daily review, a timeline or
//! an export of intervals must not decode a day of observations to find a few hundred spans.
//! So a consumer follows the journal (like the live view) and keeps each `interval` record in
//! a compact [`Span`] (about 64 bytes: 20,000 spans a day for 50 machines is about 1.3 MB),
//! keyed by (machine, start). A revision (same machine and start, higher seq) replaces the
//! span it revises, so the index always holds the newest revision of each, which is what
//! tiles a machine's time (see `context::reclassify`). The full record of a span is one
//! journal read away (`seq`).

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::model::{
    CategorySource, MachineId, Record, RecordKind, ShopState, StateInterval, Timestamp,
};

/// Strings that repeat (categories, jobs, operators, shifts) are kept once; 0 is "none".
#[derive(Debug, Default)]
pub struct Strings {
    ids: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Strings {
    fn id(&mut self, s: Option<&str>) -> u32 {
        let Some(s) = s else { return 0 };
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        self.names.push(s.into());
        let i = self.names.len() as u32;
        self.ids.insert(s.into(), i);
        i
    }

    pub fn get(&self, id: u32) -> Option<&str> {
        id.checked_sub(1)
            .and_then(|i| self.names.get(i as usize))
            .map(|s| &**s)
    }
}

/// One classified span of one machine's time, as the review needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    /// The interval record (its newest revision).
    pub seq: u64,
    pub start: Timestamp,
    pub end: Timestamp,
    pub shop_state: ShopState,
    /// `production` or the loss category (interned; 0: not classified).
    pub category: u32,
    pub source: Option<CategorySource>,
    pub shift: u32,
    pub job: u32,
    pub operation: u32,
    pub operator: u32,
    pub part_number: u32,
    pub provisional: bool,
    /// Revision number (0: as first written).
    pub revision: u32,
}

impl Span {
    pub fn seconds(&self) -> f64 {
        (self.end.as_micros() - self.start.as_micros()) as f64 / 1e6
    }

    /// Seconds of this span inside `[from, to)`.
    pub fn seconds_within(&self, from: Timestamp, to: Timestamp) -> f64 {
        let s = self.start.max(from).as_micros();
        let e = self.end.min(to).as_micros();
        (e - s).max(0) as f64 / 1e6
    }
}

#[derive(Debug, Default)]
pub struct Inner {
    pub machines: HashMap<MachineId, BTreeMap<Timestamp, Span>>,
    pub strings: Strings,
    /// Revisions applied (each replaced the span it revised).
    pub revisions: u64,
    /// The seqs of the earlier writings of revised spans, oldest first.
    pub history: HashMap<(MachineId, Timestamp), Vec<u64>>,
}

impl Inner {
    pub fn insert(&mut self, seq: u64, i: &StateInterval) {
        let category = self.strings.id(i.category.as_ref().map(|c| c.as_str()));
        let c = &i.context;
        let span = Span {
            seq,
            start: i.start,
            end: i.end,
            shop_state: i.shop_state,
            category,
            source: i.attribution.as_ref().map(|a| a.source),
            shift: self.strings.id(c.shift.as_deref()),
            job: self.strings.id(c.job.as_deref()),
            operation: self.strings.id(c.operation.as_deref()),
            operator: self.strings.id(c.operator.as_deref()),
            part_number: self.strings.id(c.part_number.as_deref()),
            provisional: i.provisional,
            revision: i.revision.as_ref().map_or(0, |r| r.n),
        };
        let spans = self.machines.entry(i.machine.clone()).or_default();
        match spans.get(&i.start) {
            Some(old) if old.seq >= seq => {}
            Some(old) => {
                self.revisions += 1;
                let older = old.seq;
                spans.insert(i.start, span);
                let h = self
                    .history
                    .entry((i.machine.clone(), i.start))
                    .or_default();
                h.push(older);
                h.sort_unstable();
                h.dedup();
            }
            None => {
                spans.insert(i.start, span);
            }
        }
    }

    /// A machine's spans overlapping `[from, to)`, oldest first.
    pub fn spans(&self, m: &MachineId, from: Timestamp, to: Timestamp) -> Vec<Span> {
        let Some(spans) = self.machines.get(m).filter(|_| from < to) else {
            return Vec::new();
        };
        // Spans tile time without overlapping: only the last one starting before `from` can
        // reach into the window.
        let before = spans.range(..from).next_back().map(|(_, s)| *s);
        before
            .into_iter()
            .filter(|s| s.end > from)
            .chain(spans.range(from..to).map(|(_, s)| *s))
            .collect()
    }
}

/// The index, shared by the HTTP handlers and fed by [`run`].
#[derive(Debug, Default)]
pub struct IntervalIndex {
    inner: RwLock<Inner>,
    position: AtomicU64,
    ready: AtomicBool,
}

impl IntervalIndex {
    pub fn apply(&self, records: &[Record]) {
        if let Ok(mut inner) = self.inner.write() {
            for r in records {
                if let RecordKind::Interval(i) = &r.kind {
                    inner.insert(r.seq, i);
                }
            }
            // Under the lock: a reader holding it sees the position of exactly what it reads.
            if let Some(last) = records.last() {
                self.position.store(last.seq, Ordering::Release);
            }
        }
    }

    /// Reads the index under its lock.
    pub fn read<R>(&self, f: impl FnOnce(&Inner) -> R) -> Option<R> {
        self.inner.read().ok().map(|g| f(&g))
    }

    /// Reads the index under its lock, with the last journal seq of exactly what it holds
    /// (`apply` moves the position under the write lock).
    pub fn read_through<R>(&self, f: impl FnOnce(&Inner, u64) -> R) -> Option<R> {
        self.inner.read().ok().map(|g| f(&g, self.position()))
    }

    /// The last journal seq the index has applied.
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }

    /// Whether the index has read the journal as it was when the bridge started.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Forgets spans that ended before `t` (the journal's retention removed their records).
    pub fn prune_before(&self, t: Timestamp) -> usize {
        let Ok(mut inner) = self.inner.write() else {
            return 0;
        };
        let mut removed = 0;
        for spans in inner.machines.values_mut() {
            // Spans tile a machine's time: those that ended before `t` are the first ones, so
            // a prune costs what it removes, not what the index holds.
            while let Some(first) = spans.first_entry() {
                if first.get().end > t {
                    break;
                }
                first.remove();
                removed += 1;
            }
        }
        inner.machines.retain(|_, spans| !spans.is_empty());
        inner.history.retain(|(_, start), _| *start >= t);
        removed
    }

    /// Spans held, over all machines.
    pub fn len(&self) -> usize {
        self.read(|i| i.machines.values().map(BTreeMap::len).sum())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How often the index looks for spans the journal no longer holds. Every ten minutes made
/// the index a saw of up to ten minutes of every machine's spans (1.8 MB for 200 machines at
/// the soak's speed 60), which a soak reads as memory rising; a prune removes only what ended.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Reads the whole journal into `index` (off the async threads), then follows it.
pub async fn run(
    journal: crate::journal::Journal,
    index: std::sync::Arc<IntervalIndex>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let (j, ix) = (journal.clone(), index.clone());
    let caught_up = tokio::task::spawn_blocking(move || {
        let end = j.last_seq();
        let mut pos = 0;
        while pos < end {
            match j.read(pos, 20_000) {
                Ok(batch) if !batch.is_empty() => {
                    pos = batch.last().map_or(end, |r| r.seq);
                    ix.apply(&batch);
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "the interval index cannot read the journal");
                    break;
                }
            }
        }
        pos.max(end)
    })
    .await
    .unwrap_or(0);
    index.mark_ready();
    tracing::debug!(spans = index.len(), "interval index ready");
    // The journal's retention removes old records; the index forgets their spans with them.
    let mut pruned = std::time::Instant::now();
    crate::northbound::live::follow_journal(
        &journal,
        caught_up,
        "interval index",
        &shutdown,
        |batch| {
            index.apply(batch);
            if pruned.elapsed() > PRUNE_EVERY {
                pruned = std::time::Instant::now();
                let first = journal.first_seq().saturating_sub(1);
                if let Ok(Some(r)) = journal.read(first, 1).map(|v| v.into_iter().next()) {
                    index.prune_before(r.kind.time());
                }
            }
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JobContext, MachineState, Revision, TimeCategory};

    fn interval(start: i64, end: i64, cat: &str, rev: Option<u32>) -> StateInterval {
        StateInterval {
            machine: MachineId::new("m1").unwrap(),
            start: Timestamp::from_micros(start * 1_000_000),
            end: Timestamp::from_micros(end * 1_000_000),
            shop_state: ShopState::Idle,
            state: MachineState::default(),
            category: Some(TimeCategory::parse(cat).unwrap()),
            context: JobContext {
                job: Some("J1".into()),
                ..JobContext::default()
            },
            attribution: None,
            provisional: false,
            revision: rev.map(|n| Revision {
                n,
                why: "operator reason".into(),
                previous_category: None,
                previous_source: None,
                previous_job: None,
                previous_operation: None,
                at: Timestamp::from_micros(0),
                by: None,
            }),
        }
    }

    #[test]
    fn the_newest_revision_of_a_span_wins_and_windows_find_overlaps() {
        let mut ix = Inner::default();
        ix.insert(1, &interval(0, 100, "unexplained", None));
        ix.insert(2, &interval(100, 250, "production", None));
        ix.insert(3, &interval(250, 300, "setup", None));
        ix.insert(4, &interval(0, 100, "starved", Some(1)));
        // An older revision arriving late (a replayed batch) changes nothing.
        ix.insert(1, &interval(0, 100, "unexplained", None));
        let m = MachineId::new("m1").unwrap();
        let t = |s: i64| Timestamp::from_micros(s * 1_000_000);
        let spans = ix.spans(&m, t(50), t(260));
        assert_eq!(spans.len(), 3);
        assert_eq!(ix.strings.get(spans[0].category), Some("starved"));
        assert_eq!((spans[0].seq, spans[0].revision), (4, 1));
        assert_eq!(spans[0].seconds_within(t(50), t(260)), 50.0);
        assert_eq!(ix.strings.get(spans[1].job), Some("J1"));
        assert!(ix.spans(&m, t(300), t(400)).is_empty());
        // An empty or reversed window finds nothing (and does not panic).
        assert!(ix.spans(&m, t(260), t(50)).is_empty());
        assert_eq!(ix.revisions, 1);
        assert_eq!(ix.history[&(m.clone(), t(0))], vec![1]);
        // Retention: spans that ended before the journal's oldest record are forgotten.
        let index = IntervalIndex {
            inner: RwLock::new(ix),
            ..IntervalIndex::default()
        };
        assert_eq!(index.prune_before(t(260)), 2);
        assert_eq!(index.len(), 1);
    }
}
