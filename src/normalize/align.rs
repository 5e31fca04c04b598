//! Time alignment: a machine's clock, corrected onto the bridge's time line.
//!
//! Each sample `received - source` is the machine's clock offset plus the transport delay.
//! The delay is never negative, so the smallest recent sample is the best estimate of the
//! offset (the NTP minimum filter). The aligned time is `source + offset`: never later than
//! the receive time, and forced monotonic per machine so that a planner never sees a machine
//! go back in time. A machine with no clock of its own gets its receive time.
//!
//! A clock step (somebody set the control's clock, daylight saving done wrong) shows up as many
//! samples in a row far from the estimate and agreeing with each other (an agent's `/current`
//! snapshot, whose values carry the times they last changed, is far but scattered, and is not
//! taken for a step): after [`STEP_CONFIRM`] of them the window restarts,
//! so the estimate follows the new clock instead of clamping everything for a window. Until it
//! is confirmed, a far sample is placed at its arrival time: neither its old offset (which could
//! put it in the past of records already written) nor a pile-up at the last instant.

use std::collections::VecDeque;

use crate::model::Timestamp;

/// Samples kept for the minimum filter.
const WINDOW: usize = 64;
/// A sample this far (µs) from the estimate counts toward a clock step.
const STEP_THRESHOLD_US: i64 = 30_000_000;
/// Consecutive far samples that confirm a clock step.
const STEP_CONFIRM: u32 = 8;

#[derive(Debug, Default, Clone)]
pub struct ClockAlign {
    samples: VecDeque<i64>,
    offset: Option<i64>,
    far_in_a_row: u32,
    /// The offset the far samples in a row agree on (a step moves every sample alike; the
    /// old timestamps of a snapshot, each from whenever its value last changed, do not).
    far_candidate: Option<i64>,
    last_aligned: Option<Timestamp>,
    /// Smoothed delay above the minimum (µs): how much arrival times wander.
    jitter: f64,
}

impl ClockAlign {
    /// The current offset estimate (µs to add to the machine's time), if it has sent any.
    pub fn offset_micros(&self) -> Option<i64> {
        self.offset
    }

    /// The transport jitter: an exponentially smoothed mean (1/16 per sample, as RFC 3550
    /// does) of each sample's delay above the minimum, in µs. Zero before any sample.
    pub fn jitter_micros(&self) -> i64 {
        self.jitter.round() as i64
    }

    pub fn align(&mut self, source: Option<Timestamp>, received: Timestamp) -> Timestamp {
        let t = match source {
            None => received,
            Some(s) => {
                let sample = received.micros_since(s);
                let mut far = false;
                match self.offset {
                    Some(o) if (sample - o).abs() > STEP_THRESHOLD_US => {
                        far = true;
                        match self.far_candidate {
                            Some(c) if (sample - c).abs() <= STEP_THRESHOLD_US => {
                                self.far_in_a_row += 1
                            }
                            _ => {
                                self.far_candidate = Some(sample);
                                self.far_in_a_row = 1;
                            }
                        }
                        if self.far_in_a_row >= STEP_CONFIRM {
                            self.samples.clear();
                            self.far_in_a_row = 0;
                            self.far_candidate = None;
                            self.offset = None;
                        }
                    }
                    _ => {
                        self.far_in_a_row = 0;
                        self.far_candidate = None;
                    }
                }
                if self.samples.len() == WINDOW {
                    self.samples.pop_front();
                }
                self.samples.push_back(sample);
                let o = match self.offset {
                    // Cheap path: a new minimum, or the old minimum still in the window.
                    Some(o) if sample <= o => sample,
                    Some(o) if self.samples.len() < WINDOW || self.samples.contains(&o) => o,
                    _ => self.samples.iter().copied().min().unwrap_or(sample),
                };
                self.offset = Some(o);
                let excess = (sample - o) as f64;
                if !far {
                    self.jitter += (excess - self.jitter) / 16.0;
                }
                if far && self.offset.is_some() {
                    // The machine's clock may just have stepped (or a burst is very late):
                    // until that is confirmed, its time is not trusted and the arrival time
                    // is used, so that what it reports keeps its order and spacing instead of
                    // piling up at one instant.
                    received
                } else {
                    Timestamp::from_micros(s.as_micros().saturating_add(o)).min(received)
                }
            }
        };
        let t = match self.last_aligned {
            Some(last) if t < last => last,
            _ => t,
        };
        self.last_aligned = Some(t);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(us: i64) -> Timestamp {
        Timestamp::from_micros(us)
    }

    #[test]
    fn offset_is_the_minimum_delay_and_aligned_time_is_monotonic() {
        let mut a = ClockAlign::default();
        // Machine clock 10 s behind; delays 5 ms then 1 ms.
        let off = 10_000_000;
        assert_eq!(
            a.align(Some(ts(1_000_000)), ts(1_000_000 + off + 5_000)),
            ts(1_000_000 + off + 5_000)
        );
        let t = a.align(Some(ts(2_000_000)), ts(2_000_000 + off + 1_000));
        assert_eq!(t, ts(2_000_000 + off + 1_000));
        // A delayed sample is placed at source + best offset, not at its late arrival.
        let t = a.align(Some(ts(3_000_000)), ts(3_000_000 + off + 400_000));
        assert_eq!(t, ts(3_000_000 + off + 1_000));
        // An older source time (out of order) never moves the machine back in time.
        let t2 = a.align(Some(ts(2_500_000)), ts(3_100_000 + off));
        assert_eq!(t2, t);
        // No source time: the receive time.
        assert_eq!(a.align(None, ts(9_000_000 + off)), ts(9_000_000 + off));
    }

    #[test]
    fn a_clock_step_is_followed_after_confirmation() {
        let mut a = ClockAlign::default();
        for i in 0..20 {
            a.align(Some(ts(i * 1_000_000)), ts(i * 1_000_000 + 1_000));
        }
        // The control's clock jumps back one hour.
        let hour = 3_600_000_000;
        let mut last = ts(0);
        for i in 20..40 {
            last = a.align(Some(ts(i * 1_000_000 - hour)), ts(i * 1_000_000 + 1_000));
        }
        assert_eq!(last, ts(39 * 1_000_000 + 1_000));
        assert_eq!(a.offset_micros(), Some(hour + 1_000));
    }

    #[test]
    fn a_snapshot_of_old_values_is_not_a_clock_step() {
        let mut a = ClockAlign::default();
        for i in 0..20 {
            a.align(Some(ts(i * 1_000_000)), ts(i * 1_000_000 + 2_000));
        }
        // A reconnect: twenty values that last changed minutes to hours ago, all arriving now.
        let now = 30_000_000;
        for k in 1..=20 {
            let t = a.align(Some(ts(now - k * 97_000_000)), ts(now));
            assert_eq!(t, ts(now), "far values are placed at their arrival");
        }
        // The estimate survived.
        assert_eq!(a.offset_micros(), Some(2_000));
    }

    #[test]
    fn jitter_follows_the_delay_spread_and_a_skewed_clock_lines_up() {
        let mut a = ClockAlign::default();
        // A control three minutes fast, delays alternating 1 ms and 9 ms.
        let skew = 180_000_000;
        let mut last = ts(0);
        for i in 0..200 {
            let delay = if i % 2 == 0 { 1_000 } else { 9_000 };
            let true_time = 1_000_000_000 + i * 1_000_000;
            last = a.align(Some(ts(true_time + skew)), ts(true_time + delay));
            // Aligned within the minimum delay of the true time, never ahead of arrival.
            assert!((last.as_micros() - true_time - 1_000).abs() <= 8_000, "{i}");
        }
        assert_eq!(a.offset_micros(), Some(-skew + 1_000));
        let j = a.jitter_micros();
        assert!((3_000..=5_000).contains(&j), "jitter {j}");
        assert!(last.as_micros() > 0);
    }
}
