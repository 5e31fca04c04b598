//! The one clock every component takes time from (DESIGN section 5).
//!
//! `Clock::system()` is wall time. `Clock::scaled(start, speed)` runs `speed` times faster than
//! wall time from `start`: the demo uses it so that `--speed 60` plays an hour of a shift in a
//! minute, and every timestamp in the journal (received, aligned, interval bounds) is on the same
//! simulated time line. Both are built on `tokio::time::Instant`, so tests with paused tokio time
//! drive them.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::model::Timestamp;

#[derive(Clone, Debug)]
pub struct Clock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    origin_instant: tokio::time::Instant,
    origin: Timestamp,
    speed: f64,
    /// The system clock follows SystemTime (so NTP steps are seen); scaled clocks follow Instant.
    system: bool,
}

fn system_now() -> Timestamp {
    let us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp::from_micros(us)
}

impl Clock {
    /// Wall-clock time.
    pub fn system() -> Self {
        Self {
            inner: Arc::new(Inner {
                origin_instant: tokio::time::Instant::now(),
                origin: system_now(),
                speed: 1.0,
                system: true,
            }),
        }
    }

    /// A clock that starts at `start` and runs `speed` times faster than real time.
    /// `speed` must be finite and positive; anything else is treated as 1.
    pub fn scaled(start: Timestamp, speed: f64) -> Self {
        let speed = if speed.is_finite() && speed > 0.0 {
            speed
        } else {
            1.0
        };
        Self {
            inner: Arc::new(Inner {
                origin_instant: tokio::time::Instant::now(),
                origin: start,
                speed,
                system: false,
            }),
        }
    }

    /// Current time on this clock.
    pub fn now(&self) -> Timestamp {
        if self.inner.system {
            return system_now();
        }
        let elapsed = self.inner.origin_instant.elapsed();
        let scaled_us = elapsed.as_secs_f64() * 1e6 * self.inner.speed;
        Timestamp::from_micros(
            self.inner
                .origin
                .as_micros()
                .saturating_add(scaled_us as i64),
        )
    }

    pub fn speed(&self) -> f64 {
        self.inner.speed
    }

    /// The wall-clock duration that `d` of this clock's time takes.
    pub fn to_wall(&self, d: Duration) -> Duration {
        Duration::from_secs_f64(d.as_secs_f64() / self.inner.speed)
    }

    /// The wall-clock duration `d` of this clock's time takes, never shorter than `floor` (nor
    /// than `d` itself when `d` is under the floor): a protocol timer a sped-up demo shrinks
    /// must still leave a real peer time to answer.
    pub fn to_wall_at_least(&self, d: Duration, floor: Duration) -> Duration {
        self.to_wall(d).max(d.min(floor))
    }

    /// Sleeps `d` of this clock's time.
    pub async fn sleep(&self, d: Duration) {
        tokio::time::sleep(self.to_wall(d)).await
    }

    /// Sleeps until this clock reads `t` (returns at once if it already has).
    pub async fn sleep_until(&self, t: Timestamp) {
        let now = self.now();
        if t > now {
            self.sleep(t.duration_since(now)).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn scaled_clock_runs_fast_under_paused_time() {
        let start = Timestamp::from_micros(1_000_000_000_000);
        let c = Clock::scaled(start, 60.0);
        c.sleep(Duration::from_secs(3600)).await;
        let elapsed = c.now().micros_since(start);
        assert!(
            (3_600_000_000..3_601_000_000).contains(&elapsed),
            "{elapsed}"
        );
    }
}
