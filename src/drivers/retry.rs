//! What every driver needs when a link fails or a source misbehaves: an exponential backoff
//! with jitter (so that many drivers restarted together do not retry in step), and a limiter
//! that lets a repeated warning through once per period and counts what it held back.

use std::ops::RangeInclusive;
use std::time::Duration;

use tokio::time::Instant;

/// Exponential backoff: each wait is the nominal delay times a random factor from `jitter`,
/// the nominal delay doubling from `start` to `cap`.
#[derive(Debug, Clone)]
pub struct Backoff {
    start: Duration,
    cap: Duration,
    next: Duration,
    jitter: RangeInclusive<f64>,
    rng: u64,
}

impl Backoff {
    pub fn new(start: Duration, cap: Duration, jitter: RangeInclusive<f64>) -> Self {
        // Seeded from the time so that many bridges restarted together spread out.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9);
        Self {
            start,
            cap,
            next: start,
            jitter,
            rng: seed | 1,
        }
    }

    /// Back to the first delay (after a connection that worked).
    pub fn reset(&mut self) {
        self.next = self.start;
    }

    /// How long to wait before the next attempt.
    pub fn next_wait(&mut self) -> Duration {
        // xorshift64: plenty for jitter.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let d = self.next;
        self.next = (d * 2).min(self.cap);
        let unit = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        let (lo, hi) = (*self.jitter.start(), *self.jitter.end());
        d.mul_f64(lo + unit * (hi - lo))
    }
}

/// Lets a repeated log line through once per `every`, counting what it held back.
#[derive(Debug, Clone)]
pub struct LogLimiter {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl LogLimiter {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            held: 0,
        }
    }

    /// `Some(lines held back since the last one)` when this one may be logged.
    pub fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < self.every => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_within_their_jitter_up_to_the_cap() {
        let start = Duration::from_millis(500);
        let cap = Duration::from_secs(30);
        let mut b = Backoff::new(start, cap, 0.8..=1.2);
        let mut nominal = start;
        for _ in 0..12 {
            let w = b.next_wait();
            assert!(
                w >= nominal.mul_f64(0.8) && w <= nominal.mul_f64(1.2),
                "{w:?}"
            );
            nominal = (nominal * 2).min(cap);
        }
        b.reset();
        assert!(b.next_wait() <= start.mul_f64(1.2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_limiter_counts_what_it_holds_back() {
        let mut l = LogLimiter::new(Duration::from_secs(10));
        assert_eq!(l.allow(), Some(0));
        assert_eq!(l.allow(), None);
        assert_eq!(l.allow(), None);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(l.allow(), Some(2));
    }
}
