//! The one polling runner that every request/response protocol shares (Haas MDC, Modbus, and
//! later FOCAS). A polling driver implements only [`Poller::connect`] and [`Poller::poll`];
//! the runner owns everything around them:
//!
//! - the poll interval, on the app's clock (a sped-up demo polls faster in wall time, down to
//!   [`WALL_FLOOR`]), with a late poll delaying the next one rather than bunching;
//! - connecting, with a timeout, and reconnecting with jittered exponential backoff;
//! - link status: `Connected` once per connection, `Lost` once per outage (with the reason),
//!   never a second connection while one is open (some controls allow only two clients);
//! - report by exception: a value is sent when it differs from the last one sent for that key
//!   (value or quality), and every key again after a reconnect, so the journal holds changes,
//!   not a sample per poll;
//! - counters and rate-limited logs;
//! - conditions by exception: a driver that reads a control's active alarms lists them each
//!   poll ([`Readings::conditions`]); the runner raises (`Fault`) the codes that appeared and
//!   clears (`Normal` with the code) the ones that went, and on a new connection first clears
//!   the key (`Normal` without a code), so an alarm reset while the link was down does not
//!   stay active.
//!
//! Errors are kept apart in the types, the way tokio-modbus does it: a [`LinkError`] from
//! `connect` or `poll` ends the connection (reconnect), while a device's answer that one item is
//! wrong (a Modbus exception, a Haas `?`) is a reading with quality Bad
//! ([`Readings::bad`]); polling goes on.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use super::retry::{Backoff, LogLimiter};
use super::{DriverContext, DriverCounters, DriverEvent, RawCondition, RawObservation};
use crate::model::{ConditionLevel, LinkStatus, Quality, QualityReason, SignalId, Value};

/// The least wall time between two polls, however fast a demo clock runs.
pub const WALL_FLOOR: Duration = Duration::from_millis(20);
/// The first reconnect delay; it doubles per failed attempt up to [`BACKOFF_MAX`].
pub const BACKOFF_START: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Repeated complaints about the same thing are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Why a connection ended or could not be made: the runner reconnects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LinkError(pub String);

impl LinkError {
    pub fn new(why: impl Into<String>) -> Self {
        Self(why.into())
    }
}

/// One value a poll read.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub key: SignalId,
    pub value: Value,
    pub quality: Quality,
}

/// What one poll read, in the order read.
#[derive(Debug, Default)]
pub struct Readings {
    items: Vec<Reading>,
    /// Protocol replies this poll took (for `shopbridge_driver_messages_total`).
    pub replies: u64,
    /// Bytes read (for `shopbridge_driver_bytes_total`).
    pub bytes: u64,
    /// Input that could not be read (for `shopbridge_driver_bad_input_total`).
    pub bad_input: u64,
    conditions: Vec<ActiveSet>,
}

/// The conditions active on one key, as a poll read them.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveSet {
    pub key: SignalId,
    /// `(native code, message)` of each active condition (all at level Fault).
    pub active: Vec<(String, String)>,
}

impl Readings {
    pub fn good(&mut self, key: &SignalId, value: Value) {
        self.items.push(Reading {
            key: key.clone(),
            value,
            quality: Quality::Good,
        });
    }

    /// The device answered that this item is wrong (`why` names the answer, e.g.
    /// `modbus exception 2 (illegal data address)`): the value is journaled as that text with
    /// quality Bad, and the signal is unknown until a good reading.
    pub fn bad(&mut self, key: &SignalId, why: impl Into<String>) {
        self.items.push(Reading {
            key: key.clone(),
            value: Value::text(&why.into()),
            quality: Quality::Bad(QualityReason::DeviceError),
        });
    }

    /// A value with a quality of its own (a value the driver could not decode).
    pub fn push(&mut self, key: &SignalId, value: Value, quality: Quality) {
        self.items.push(Reading {
            key: key.clone(),
            value,
            quality,
        });
    }

    /// The conditions now active on `key` (all of them; an empty list clears the key). Not
    /// calling this in a poll (the read failed) leaves the key as it was.
    pub fn conditions(&mut self, key: &SignalId, active: Vec<(String, String)>) {
        self.conditions.push(ActiveSet {
            key: key.clone(),
            active,
        });
    }

    pub fn items(&self) -> &[Reading] {
        &self.items
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// A request/response protocol, as the runner drives it.
pub trait Poller: Send {
    /// An open connection.
    type Link: Send;
    /// The address or port polled (logs, `/metrics`).
    fn source(&self) -> &str;
    /// Opens the connection (the runner bounds it with its own timeout too).
    fn connect(&mut self) -> impl Future<Output = Result<Self::Link, LinkError>> + Send;
    /// Reads everything once into `out`. A `LinkError` drops the connection.
    fn poll(
        &mut self,
        link: &mut Self::Link,
        out: &mut Readings,
    ) -> impl Future<Output = Result<(), LinkError>> + Send;
    /// Says goodbye on a link that is still good, at shutdown (best effort: the runner bounds
    /// it with a short timeout). By default the link is just dropped.
    fn close(&mut self, link: Self::Link) -> impl Future<Output = ()> + Send {
        drop(link);
        std::future::ready(())
    }
}

/// How often to poll and how long a connection attempt may take.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub interval: Duration,
    pub connect_timeout: Duration,
}

/// Polls until shutdown, feeding the context's first machine.
pub async fn run<P: Poller>(mut poller: P, timing: Timing, ctx: DriverContext) {
    let Some(machine) = ctx.machines.first().cloned() else {
        tracing::error!(
            source = poller.source(),
            "polling driver has no machine to feed; not started"
        );
        return;
    };
    let source = poller.source().to_string();
    let mut backoff = Backoff::new(BACKOFF_START, BACKOFF_MAX, 0.8..=1.2);
    let mut connect_log = LogLimiter::new(LOG_EVERY);
    let mut lost_reported = false;
    let mut sent: HashMap<SignalId, (Value, Quality)> = HashMap::new();
    loop {
        let attempt = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            r = tokio::time::timeout(ctx.clock.to_wall_at_least(timing.connect_timeout, Duration::from_secs(1)), poller.connect()) => r,
        };
        let why = match attempt {
            Ok(Ok(mut link)) => {
                tracing::info!(%machine, source = %source, "connected");
                if !ctx
                    .link(
                        &machine,
                        LinkStatus::Connected,
                        format!("connected to {source}"),
                    )
                    .await
                {
                    return;
                }
                lost_reported = false;
                connect_log = LogLimiter::new(LOG_EVERY);
                sent.clear();
                let (why, delivered) =
                    match connection(&mut poller, &mut link, timing, &ctx, &machine, &mut sent)
                        .await
                    {
                        Some(r) => r,
                        None => {
                            let _ =
                                tokio::time::timeout(Duration::from_secs(1), poller.close(link))
                                    .await;
                            return;
                        }
                    };
                // Closed before the next attempt: never two connections to one control.
                drop(link);
                if delivered {
                    backoff.reset();
                }
                tracing::warn!(%machine, source = %source, reason = %why, "link lost; reconnecting");
                why
            }
            Ok(Err(e)) => {
                if let Some(more) = connect_log.allow() {
                    tracing::warn!(%machine, source = %source, reason = %e, failed_attempts_since_last_log = more, "cannot connect; retrying with backoff");
                }
                e.0
            }
            Err(_) => {
                let why = format!(
                    "no answer from {source} within {} ms",
                    timing.connect_timeout.as_millis()
                );
                if let Some(more) = connect_log.allow() {
                    tracing::warn!(%machine, source = %source, reason = %why, failed_attempts_since_last_log = more, "cannot connect; retrying with backoff");
                }
                why
            }
        };
        if !ctx
            .link_down(&machine, why, &mut lost_reported, &mut backoff)
            .await
        {
            return;
        }
    }
}

/// Polls one connection until it fails: `Some((why, anything delivered))`, or `None` to stop.
async fn connection<P: Poller>(
    poller: &mut P,
    link: &mut P::Link,
    timing: Timing,
    ctx: &DriverContext,
    machine: &crate::model::MachineId,
    sent: &mut HashMap<SignalId, (Value, Quality)>,
) -> Option<(String, bool)> {
    let mut ticker = tokio::time::interval(ctx.clock.to_wall_at_least(timing.interval, WALL_FLOOR));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut delivered = false;
    let mut device_log = LogLimiter::new(LOG_EVERY);
    // Conditions raised on this connection, per key: native code → message.
    let mut raised: HashMap<SignalId, HashMap<String, String>> = HashMap::new();
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return None,
            _ = ticker.tick() => {}
        }
        let mut out = Readings::default();
        let polled = tokio::select! {
            _ = ctx.shutdown.cancelled() => return None,
            r = poller.poll(link, &mut out) => r,
        };
        DriverCounters::add(&ctx.counters.messages, out.replies);
        DriverCounters::add(&ctx.counters.bytes, out.bytes);
        DriverCounters::add(&ctx.counters.bad_input, out.bad_input);
        let received = ctx.clock.now();
        let mut batch = Vec::new();
        for set in std::mem::take(&mut out.conditions) {
            conditions(&mut raised, set, machine, received, &mut batch);
        }
        for r in out.items {
            if let Quality::Bad(_) = r.quality {
                if sent.get(&r.key).is_none_or(|(v, _)| *v != r.value) {
                    DriverCounters::add(&ctx.counters.device_errors, 1);
                    if let Some(more) = device_log.allow() {
                        tracing::warn!(%machine, key = %r.key, answer = %r.value, errors_since_last_log = more, "device refused a read; the value is Bad until it answers");
                    }
                }
            }
            if sent
                .get(&r.key)
                .is_some_and(|(v, q)| *v == r.value && *q == r.quality)
            {
                continue;
            }
            sent.insert(r.key.clone(), (r.value.clone(), r.quality));
            batch.push(DriverEvent::Observation(RawObservation {
                machine: machine.clone(),
                key: r.key,
                value: r.value,
                quality: r.quality,
                source_time: None,
                received,
                meta: None,
            }));
        }
        if !batch.is_empty() {
            delivered = true;
            if !ctx.send(batch).await {
                return None;
            }
        }
        if let Err(e) = polled {
            return Some((e.0, delivered));
        }
    }
}

/// The condition events that take `raised` to `set`.
fn conditions(
    raised: &mut HashMap<SignalId, HashMap<String, String>>,
    set: ActiveSet,
    machine: &crate::model::MachineId,
    received: crate::model::Timestamp,
    batch: &mut Vec<DriverEvent>,
) {
    let event = |level, code: Option<&str>, message: Option<&str>| {
        DriverEvent::Condition(Box::new(RawCondition {
            machine: machine.clone(),
            key: set.key.clone(),
            level,
            native_code: code.map(str::to_string),
            native_severity: None,
            qualifier: None,
            message: message.map(str::to_string),
            source_time: None,
            received,
            meta: None,
        }))
    };
    let known = raised.contains_key(&set.key);
    let was = raised.entry(set.key.clone()).or_default();
    if !known {
        // First read on this connection: whatever was active before is cleared.
        batch.push(event(ConditionLevel::Normal, None, None));
    }
    let now: HashMap<String, String> = set.active.iter().cloned().collect();
    for (code, message) in &set.active {
        if was.get(code) != Some(message) {
            batch.push(event(ConditionLevel::Fault, Some(code), Some(message)));
        }
    }
    for code in was.keys() {
        if !now.contains_key(code) {
            batch.push(event(ConditionLevel::Normal, Some(code), None));
        }
    }
    *was = now;
}
