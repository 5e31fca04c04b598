//! Re-classification: derive a period's intervals again from the journal's raw records under
//! today's rules and calendars, and write what changed as revisions.
//!
//! The engine runs over every stored record up to the period's end (it needs the state from
//! before the period: the operation running, the operator signed in, the holds open). Its
//! intervals are then laid over the intervals already written: each old interval keeps its
//! place in time, and where the new derivation gives it a different category or context it is
//! written again as a revision (`why: "reclassified"`); where the new rules cut an old interval
//! in several, the first piece revises it (with its new end) and the others are written as new
//! intervals. So the newest revision of each (machine, start) still tiles the machine's time,
//! and nothing is invented for time the bridge did not see (a restart's gap stays a gap).
//! Operator reasons and confirmations are journal records too: they survive re-classification.

use std::collections::{BTreeMap, HashMap};

use super::engine::{Engine, EngineConfig};
use crate::model::{MachineId, Record, RecordKind, Revision, StateInterval, Timestamp};

/// What a re-classification did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Reclassified {
    /// Records read.
    pub records: u64,
    /// Intervals of the period that were compared.
    pub intervals: u64,
    /// Intervals written again with a new category or context.
    pub revised: u64,
    /// Intervals added where the new rules cut an old one.
    pub added: u64,
}

/// Runs the engine over `records` (in sequence order, from the oldest stored) and returns the
/// revisions for intervals overlapping `[from, to)`, stamped `now`.
pub fn reclassify(
    records: impl IntoIterator<Item = Record>,
    config: EngineConfig,
    from: Timestamp,
    to: Timestamp,
    now: Timestamp,
) -> (Vec<RecordKind>, Reclassified) {
    let mut stats = Reclassified::default();
    let mut engine = Engine::new(config);
    let mut old: HashMap<(MachineId, Timestamp), StateInterval> = HashMap::new();
    let mut fresh: HashMap<(MachineId, Timestamp), StateInterval> = HashMap::new();
    let mut out = Vec::new();
    let overlaps = |i: &StateInterval| i.start < to && i.end > from;
    for r in records {
        stats.records += 1;
        if let RecordKind::Interval(i) = &r.kind {
            if overlaps(i) {
                old.insert((i.machine.clone(), i.start), (**i).clone());
            }
            continue;
        }
        engine.apply(&r, &mut out);
        for d in out.drain(..) {
            if let RecordKind::Interval(i) = d {
                if overlaps(&i) {
                    fresh.insert((i.machine.clone(), i.start), *i);
                }
            }
        }
    }
    let mut new_by: BTreeMap<MachineId, Vec<StateInterval>> = BTreeMap::new();
    for (_, i) in fresh {
        new_by.entry(i.machine.clone()).or_default().push(i);
    }
    for v in new_by.values_mut() {
        v.sort_by_key(|i| i.start);
    }
    let mut olds: Vec<StateInterval> = old.into_values().collect();
    olds.sort_by(|a, b| (&a.machine, a.start).cmp(&(&b.machine, b.start)));
    let mut written = Vec::new();
    for o in olds {
        stats.intervals += 1;
        let Some(news) = new_by.get(&o.machine) else {
            continue;
        };
        // The new intervals over the old one's span, clipped to it, equal neighbours merged.
        let first = news.partition_point(|n| n.end <= o.start);
        let mut pieces: Vec<StateInterval> = Vec::new();
        for n in news[first..].iter().take_while(|n| n.start < o.end) {
            let mut p = n.clone();
            p.start = p.start.max(o.start);
            p.end = p.end.min(o.end);
            if p.end <= p.start {
                continue;
            }
            match pieces.last_mut() {
                Some(last) if same(last, &p) && last.end == p.start => last.end = p.end,
                _ => pieces.push(p),
            }
        }
        // Time the new derivation does not cover (the end of the journal) stays as it was.
        let covered = pieces.first().is_some_and(|p| p.start == o.start)
            && pieces.last().is_some_and(|p| p.end == o.end)
            && pieces.windows(2).all(|w| w[0].end == w[1].start);
        if !covered || (pieces.len() == 1 && same(&pieces[0], &o)) {
            continue;
        }
        for (k, mut p) in pieces.into_iter().enumerate() {
            p.revision = Some(Revision {
                n: if k == 0 {
                    o.revision.as_ref().map_or(1, |r| r.n + 1)
                } else {
                    1
                },
                why: "reclassified".into(),
                previous_category: o.category.clone(),
                previous_source: o.attribution.as_ref().map(|a| a.source),
                previous_job: o.context.job.clone(),
                previous_operation: o.context.operation.clone(),
                at: now,
                by: Some("reclassify".into()),
            });
            if k == 0 {
                stats.revised += 1;
            } else {
                stats.added += 1;
            }
            written.push(RecordKind::Interval(Box::new(p)));
        }
    }
    (written, stats)
}

/// Same category, context and decision source (the revision ledger aside).
fn same(a: &StateInterval, b: &StateInterval) -> bool {
    a.category == b.category
        && a.context == b.context
        && a.provisional == b.provisional
        && a.attribution.as_ref().map(|x| (x.source, &x.rule))
            == b.attribution.as_ref().map(|x| (x.source, &x.rule))
}
