//! Sequence tracking: where to read next from an agent, and when what we read has a hole.
//!
//! An agent numbers every observation it buffers. Its documents say, in their header, which
//! numbers it still holds (`firstSequence` … `lastSequence`), where the next read should start
//! (`nextSequence`) and which life of the agent this is (`instanceId`, new at every restart).
//! A client that asks for `from = nextSequence` of the previous document misses nothing, as
//! long as three things hold, and this module checks each:
//!
//! 1. **Same agent life.** A new `instanceId` means the agent restarted: its buffer and its
//!    numbering started over, and whatever happened in between is unknown.
//! 2. **Still in the buffer.** If our `from` is below `firstSequence`, the agent overwrote what we
//!    had not read yet (a buffer overrun: a slow reader, a long stall). We know how many:
//!    `firstSequence - from`. An agent may instead refuse such a `from` outright with an
//!    `OUT_OF_RANGE` error; then we do not know how many.
//! 3. **Moving forward.** A `nextSequence` below our `from` without a new instance is an agent
//!    that lost its mind; treated like a restart.
//!
//! After any of these the data has a hole: the driver reports it (a `Gap` link record) and
//! resynchronizes from `/current`, which gives every item's latest value and a fresh
//! `nextSequence`. A reconnect reads `/current` too, but resumes from its old position when
//! the agent still holds it (a dropped link loses nothing), and replays a restarted agent's
//! new buffer from its start ([`Baseline`]). Nothing here does I/O; it is numbers in,
//! decisions out.

use super::xml::StreamsHeader;

/// Why the data has a hole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GapReason {
    /// The agent's `instanceId` changed.
    AgentRestarted { old: u64, new: u64 },
    /// We asked for `from`, the agent's oldest is `first`.
    Overrun { from: u64, first: u64 },
    /// The agent answered `OUT_OF_RANGE` to our `from`.
    OutOfRange { from: Option<u64> },
    /// `nextSequence` went below our `from` within one agent life.
    WentBackwards { from: u64, next: u64 },
}

/// A hole in the data, as the `Gap` link record describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    pub reason: GapReason,
    /// Observations lost, when the agent's numbers tell.
    pub missed: Option<u64>,
}

impl Gap {
    /// The human-readable cause for the link record.
    pub fn detail(&self) -> String {
        match &self.reason {
            GapReason::AgentRestarted { old, new } => {
                format!("agent restarted: instanceId {old} → {new}")
            }
            GapReason::Overrun { from, first } => format!(
                "buffer overrun: {} observations missed (asked from {from}, the agent's oldest is {first})",
                first.saturating_sub(*from)
            ),
            GapReason::OutOfRange { from: Some(f) } => {
                format!("buffer overrun: the agent no longer holds sequence {f} (OUT_OF_RANGE)")
            }
            GapReason::OutOfRange { from: None } => {
                "buffer overrun: the agent answered OUT_OF_RANGE".to_string()
            }
            GapReason::WentBackwards { from, next } => format!(
                "agent sequence went backwards: expected {from} or later, found nextSequence {next}"
            ),
        }
    }
}

/// What to do after a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// All is well; the next read starts at `from`.
    Continue { from: u64 },
    /// Report the gap, then resynchronize with `/current`.
    Resync(Gap),
}

/// Where the stream starts after a `/current` ([`SeqTracker::on_current`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Baseline {
    /// Use the snapshot's values; stream from its `nextSequence`. A gap, when our old
    /// position was overwritten while we were away.
    Snapshot(Option<Gap>),
    /// Stream on from our position: the agent still holds everything since.
    Resume,
    /// The agent restarted (the gap): stream its new life from its `firstSequence`.
    Replay(Gap),
}

/// The tracker: one per agent connection's life, kept across resyncs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeqTracker {
    instance_id: Option<u64>,
    /// Where the next sample must start; `None` until a `/current` set a baseline.
    from: Option<u64>,
}

impl SeqTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// The `from` for the next `/sample`, once a baseline is set.
    pub fn from(&self) -> Option<u64> {
        self.from
    }

    pub fn instance_id(&self) -> Option<u64> {
        self.instance_id
    }

    /// A `/current` document (read at every connect) decides where the sample stream starts:
    ///
    /// - **Resume**: the same agent life and our position is still in its buffer (a dropped
    ///   link, a bridge that reconnected): stream on from where we were; the agent's buffer
    ///   holds every change since, so the snapshot is not needed and nothing is lost.
    /// - **Replay**: the agent restarted since the last document we saw. What its old life
    ///   held beyond our position is unknown (the returned gap), but its new life's buffer is
    ///   whole: stream from its `firstSequence` (the values its adapters resent at start, then
    ///   every change) instead of taking the snapshot.
    /// - **Snapshot**: first contact, a position lost after a hole, or our position overwritten
    ///   while we were away (the returned gap counts what was missed): take the snapshot's
    ///   values and stream from its `nextSequence`.
    pub fn on_current(&mut self, h: &StreamsHeader) -> Baseline {
        let old = self.instance_id.replace(h.instance_id);
        match (old, self.from) {
            (Some(old), _) if old != h.instance_id => {
                self.from = Some(h.first_sequence.max(1));
                Baseline::Replay(Gap {
                    reason: GapReason::AgentRestarted {
                        old,
                        new: h.instance_id,
                    },
                    missed: None,
                })
            }
            (Some(_), Some(from)) if from >= h.first_sequence && from <= h.next_sequence => {
                Baseline::Resume
            }
            (Some(_), Some(from)) if from < h.first_sequence => {
                self.from = Some(h.next_sequence);
                Baseline::Snapshot(Some(Gap {
                    reason: GapReason::Overrun {
                        from,
                        first: h.first_sequence,
                    },
                    missed: Some(h.first_sequence - from),
                }))
            }
            _ => {
                self.from = Some(h.next_sequence);
                Baseline::Snapshot(None)
            }
        }
    }

    /// A `/sample` document (or a streamed part) arrived.
    pub fn on_sample(&mut self, h: &StreamsHeader) -> Step {
        let (Some(instance), Some(from)) = (self.instance_id, self.from) else {
            // No baseline yet: this document is the best we know. (The driver always reads
            // /current first, so this is a safety net, not a path.)
            return self.adopt(h);
        };
        if h.instance_id != instance {
            // Remember the new life now, so that the resync's /current does not report the
            // same restart a second time, and its start: the resync resumes from there (the new
            // life's buffer is whole; this document's part of it comes again).
            self.instance_id = Some(h.instance_id);
            self.from = Some(h.first_sequence.max(1));
            return Step::Resync(Gap {
                reason: GapReason::AgentRestarted {
                    old: instance,
                    new: h.instance_id,
                },
                missed: None,
            });
        }
        if from < h.first_sequence {
            let missed = h.first_sequence - from;
            let mut gap = self.lose_gap(GapReason::Overrun {
                from,
                first: h.first_sequence,
            });
            gap.missed = Some(missed);
            return Step::Resync(gap);
        }
        if h.next_sequence < from {
            return self.lose(GapReason::WentBackwards {
                from,
                next: h.next_sequence,
            });
        }
        self.from = Some(h.next_sequence);
        Step::Continue {
            from: h.next_sequence,
        }
    }

    /// The agent answered `OUT_OF_RANGE`.
    pub fn on_out_of_range(&mut self) -> Gap {
        let from = self.from;
        self.lose_gap(GapReason::OutOfRange { from })
    }

    fn adopt(&mut self, h: &StreamsHeader) -> Step {
        self.instance_id = Some(h.instance_id);
        self.from = Some(h.next_sequence);
        Step::Continue {
            from: h.next_sequence,
        }
    }

    fn lose(&mut self, reason: GapReason) -> Step {
        Step::Resync(self.lose_gap(reason))
    }

    /// Forgets the position (a resync sets a new one) and describes the hole.
    fn lose_gap(&mut self, reason: GapReason) -> Gap {
        self.from = None;
        Gap {
            reason,
            missed: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(instance: u64, first: u64, next: u64) -> StreamsHeader {
        StreamsHeader {
            instance_id: instance,
            first_sequence: first,
            last_sequence: next.saturating_sub(1),
            next_sequence: next,
            buffer_size: 1000,
        }
    }

    #[test]
    fn follows_next_sequence() {
        let mut t = SeqTracker::new();
        assert_eq!(t.from(), None);
        assert_eq!(t.on_current(&h(1, 1, 100)), Baseline::Snapshot(None));
        assert_eq!(t.from(), Some(100));
        assert_eq!(t.on_sample(&h(1, 1, 150)), Step::Continue { from: 150 });
        // A heartbeat-only part: nothing new, same from.
        assert_eq!(t.on_sample(&h(1, 1, 150)), Step::Continue { from: 150 });
        // The buffer wraps but we are still inside it.
        assert_eq!(t.on_sample(&h(1, 150, 1200)), Step::Continue { from: 1200 });
        assert_eq!(t.from(), Some(1200));
    }

    #[test]
    fn restart_is_a_gap_of_unknown_size() {
        let mut t = SeqTracker::new();
        t.on_current(&h(1_700_000_000, 1, 100));
        let Step::Resync(gap) = t.on_sample(&h(1_700_000_123, 1, 5)) else {
            panic!("restart not seen");
        };
        assert_eq!(gap.missed, None);
        assert_eq!(
            gap.detail(),
            "agent restarted: instanceId 1700000000 → 1700000123"
        );
        // The resync's /current resumes from the new life's start.
        assert_eq!(t.from(), Some(1));
        assert_eq!(t.on_current(&h(1_700_000_123, 1, 7)), Baseline::Resume);
        assert_eq!(t.from(), Some(1));
        assert_eq!(t.instance_id(), Some(1_700_000_123));
        assert_eq!(
            t.on_sample(&h(1_700_000_123, 1, 9)),
            Step::Continue { from: 9 }
        );
    }

    #[test]
    fn overrun_counts_what_was_missed() {
        let mut t = SeqTracker::new();
        t.on_current(&h(1, 1, 100));
        assert_eq!(t.on_sample(&h(1, 1, 200)), Step::Continue { from: 200 });
        let Step::Resync(gap) = t.on_sample(&h(1, 1434, 1500)) else {
            panic!("overrun not seen");
        };
        assert_eq!(gap.missed, Some(1234));
        assert!(
            gap.detail()
                .starts_with("buffer overrun: 1234 observations missed"),
            "{}",
            gap.detail()
        );
        // Exactly at the first sequence is no overrun.
        t.on_current(&h(1, 1, 100));
        assert_eq!(t.on_sample(&h(1, 100, 120)), Step::Continue { from: 120 });
    }

    #[test]
    fn out_of_range_and_backwards() {
        let mut t = SeqTracker::new();
        t.on_current(&h(1, 1, 100));
        let gap = t.on_out_of_range();
        assert_eq!(gap.reason, GapReason::OutOfRange { from: Some(100) });
        assert_eq!(gap.missed, None);
        assert_eq!(t.from(), None);
        t.on_current(&h(1, 1, 100));
        assert!(matches!(
            t.on_sample(&h(1, 1, 50)),
            Step::Resync(Gap {
                reason: GapReason::WentBackwards {
                    from: 100,
                    next: 50
                },
                missed: None
            })
        ));
    }

    #[test]
    fn a_reconnect_resumes_replays_or_takes_the_snapshot() {
        let mut t = SeqTracker::new();
        assert_eq!(t.on_current(&h(5, 1, 100)), Baseline::Snapshot(None));
        assert_eq!(t.on_sample(&h(5, 1, 120)), Step::Continue { from: 120 });
        // Same agent life, our position still buffered: resume from it.
        assert_eq!(t.on_current(&h(5, 50, 180)), Baseline::Resume);
        assert_eq!(t.from(), Some(120));
        // Exactly at the oldest buffered is still whole.
        assert_eq!(t.on_current(&h(5, 120, 400)), Baseline::Resume);
        // Overwritten while away: the snapshot, and a gap counting the loss.
        let Baseline::Snapshot(Some(gap)) = t.on_current(&h(5, 150, 400)) else {
            panic!("overrun not seen");
        };
        assert_eq!(gap.missed, Some(30));
        assert_eq!(t.from(), Some(400));
        // Restarted: a gap of unknown size, then the new life from its start.
        let Baseline::Replay(gap) = t.on_current(&h(9, 1, 3)) else {
            panic!("restart not seen");
        };
        assert_eq!(gap.detail(), "agent restarted: instanceId 5 → 9");
        assert_eq!(t.from(), Some(1));
        // After a hole in the stream the position is gone: the snapshot.
        t.on_out_of_range();
        assert_eq!(t.on_current(&h(9, 1, 50)), Baseline::Snapshot(None));
    }

    #[test]
    fn without_baseline_adopts_the_document() {
        let mut t = SeqTracker::new();
        assert_eq!(t.on_sample(&h(3, 1, 40)), Step::Continue { from: 40 });
        assert_eq!(t.instance_id(), Some(3));
    }
}
