//! The simulated shop as the network sees it: every [`MachineSim`] stepped on one clock, and
//! its signal changes published, in each machine's own vocabulary ([`super::dialect`]), to the
//! protocol faces (the SHDR adapters and the MTConnect agent of `shopbridge simulate`).
//!
//! A face calls [`SimShop::subscribe`] and gets the current value of every item plus a
//! receiver of each step's changes. Both are taken under one lock, so nothing falls between the
//! snapshot and the first change. A face that falls behind gets `Lagged` from the receiver and
//! should resend a snapshot (what a real adapter does after a reconnect).
//!
//! A machine can run with a skewed clock (`skew`): its faces then stamp every value with the
//! machine's wrong time, the way a control whose clock nobody set does.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::dialect::{Conv, ItemDef, items_for};
use super::{MachineSim, SimOutput, TruthSink, machine_name, model_of};
use crate::clock::Clock;
use crate::drivers::DataItemMeta;
use crate::model::{ConditionLevel, MachineId, Timestamp, Value};

/// The simulated time between two steps, before the wall-time floor.
pub const STEP: Duration = Duration::from_secs(1);
/// The least wall time between two steps.
pub const MIN_WALL_STEP: Duration = Duration::from_millis(5);
/// Change batches a slow face may fall behind before it must resnapshot.
const FEED_CAPACITY: usize = 4096;

/// One machine of the shop, as its protocol faces describe it.
#[derive(Debug)]
pub struct ShopMachine {
    pub id: MachineId,
    pub name: String,
    /// The profile a bridge should use for it (`okuma-osp`, `mazak`…).
    pub profile: &'static str,
    /// Its MTConnect device name (the machine id).
    pub device: String,
    pub uuid: String,
    /// Its data items; `items[i].id` is also its SHDR key.
    pub items: Vec<Arc<DataItemMeta>>,
    /// How far its clock is off (µs, positive = ahead).
    pub skew_micros: i64,
    defs: &'static [ItemDef],
}

/// A value of one item at one time, in the machine's own words.
#[derive(Clone, Debug, PartialEq)]
pub struct FaceEvent {
    /// Index into [`ShopMachine::items`].
    pub item: usize,
    /// The machine's own clock (skewed if the machine is).
    pub at: Timestamp,
    pub value: FaceValue,
}

#[derive(Clone, Debug, PartialEq)]
pub enum FaceValue {
    Value(Value),
    Condition {
        level: ConditionLevel,
        native_code: Option<String>,
        message: Option<String>,
    },
}

/// How to build the shop.
#[derive(Clone, Debug)]
pub struct ShopOptions {
    pub machines: usize,
    pub seed: u64,
    /// Where the simulation starts (the clock's now).
    pub start: Timestamp,
    /// Shop time = UTC + this (shifts follow shop time).
    pub shop_offset_micros: i64,
    /// `(machine index, µs)`: machines whose clocks are off.
    pub skews: Vec<(usize, i64)>,
}

struct Feed {
    current: Vec<Option<FaceEvent>>,
    tx: broadcast::Sender<Arc<[FaceEvent]>>,
}

struct Inner {
    machines: Vec<ShopMachine>,
    feeds: Vec<Mutex<Feed>>,
    /// The simulated time the shop has been stepped to (µs).
    now: std::sync::atomic::AtomicI64,
}

/// A handle on the running shop; cheap to clone.
#[derive(Clone)]
pub struct SimShop {
    inner: Arc<Inner>,
}

/// Owns the machines' simulations; [`run`] steps them.
pub struct ShopRunner {
    shop: SimShop,
    sims: Vec<MachineSim>,
}

impl SimShop {
    /// Builds the shop with every machine's state at `opts.start` already published.
    pub fn new(opts: &ShopOptions) -> (SimShop, ShopRunner) {
        let mut machines = Vec::with_capacity(opts.machines);
        let mut feeds = Vec::with_capacity(opts.machines);
        let mut sims = Vec::with_capacity(opts.machines);
        for index in 0..opts.machines {
            let (id, name) = machine_name(index);
            let Ok(id) = MachineId::new(&id) else {
                continue;
            };
            let profile = model_of(index).profile;
            let defs = items_for(profile);
            let skew = opts
                .skews
                .iter()
                .find(|(i, _)| *i == index)
                .map_or(0, |(_, s)| *s);
            let sim = MachineSim::new_in_shop(
                index,
                id.clone(),
                opts.seed,
                opts.start,
                opts.shop_offset_micros,
            );
            let machine = ShopMachine {
                device: id.to_string(),
                uuid: format!("shopbridge-sim-{}-{}", opts.seed, id),
                id,
                name,
                profile,
                items: defs.iter().map(ItemDef::meta).collect(),
                skew_micros: skew,
                defs,
            };
            let mut current = vec![None; defs.len()];
            let at = sim.now();
            for (signal, value) in sim.current_signals() {
                if let Some(ev) = machine.face_event(signal, value, at) {
                    let i = ev.item;
                    current[i] = Some(ev);
                }
            }
            let (tx, _) = broadcast::channel(FEED_CAPACITY);
            feeds.push(Mutex::new(Feed { current, tx }));
            machines.push(machine);
            sims.push(sim);
        }
        let shop = SimShop {
            inner: Arc::new(Inner {
                machines,
                feeds,
                now: std::sync::atomic::AtomicI64::new(opts.start.as_micros()),
            }),
        };
        let runner = ShopRunner {
            shop: shop.clone(),
            sims,
        };
        (shop, runner)
    }

    pub fn machines(&self) -> &[ShopMachine] {
        &self.inner.machines
    }

    /// Machine `machine`'s clock now (the shop's time plus the machine's skew): what an
    /// adapter stamps a snapshot with.
    pub fn now(&self, machine: usize) -> Timestamp {
        let t = self.inner.now.load(std::sync::atomic::Ordering::Relaxed);
        let skew = self
            .inner
            .machines
            .get(machine)
            .map_or(0, |m| m.skew_micros);
        Timestamp::from_micros(t.saturating_add(skew))
    }

    /// The current value of every item of machine `machine` (in item order; items that never
    /// had a value are left out), and a receiver of every later change batch.
    pub fn subscribe(
        &self,
        machine: usize,
    ) -> (Vec<FaceEvent>, broadcast::Receiver<Arc<[FaceEvent]>>) {
        let Some(feed) = self.inner.feeds.get(machine) else {
            let (tx, rx) = broadcast::channel(1);
            drop(tx);
            return (Vec::new(), rx);
        };
        let feed = match feed.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        (
            feed.current.iter().flatten().cloned().collect(),
            feed.tx.subscribe(),
        )
    }

    fn publish(&self, machine: usize, events: Vec<FaceEvent>) {
        if events.is_empty() {
            return;
        }
        let Some(feed) = self.inner.feeds.get(machine) else {
            return;
        };
        let mut feed = match feed.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        for e in &events {
            if let Some(slot) = feed.current.get_mut(e.item) {
                *slot = Some(e.clone());
            }
        }
        // No subscriber is fine: the faces may not have a client yet.
        let _ = feed.tx.send(events.into());
    }
}

impl ShopMachine {
    /// The canonical signal item `item` carries.
    pub fn signal_of(&self, item: usize) -> Option<&'static str> {
        self.defs.get(item).map(|d| d.signal)
    }

    /// A canonical signal's value as this machine's item says it, or None when the family has
    /// no such item.
    fn face_event(&self, signal: &str, value: Value, at: Timestamp) -> Option<FaceEvent> {
        let item = self.defs.iter().position(|d| d.signal == signal)?;
        let at = Timestamp::from_micros(at.as_micros().saturating_add(self.skew_micros));
        let value = match self.defs[item].conv {
            Conv::Same => FaceValue::Value(value),
            Conv::OnOff => FaceValue::Value(Value::text(match value {
                Value::Bool(true) => "ON",
                Value::Unavailable => "UNAVAILABLE",
                _ => "OFF",
            })),
            Conv::Condition => {
                let text = match &value {
                    Value::Text(t) => t.trim().to_string(),
                    _ => String::new(),
                };
                if value.is_unavailable() {
                    FaceValue::Condition {
                        level: ConditionLevel::Unavailable,
                        native_code: None,
                        message: None,
                    }
                } else if text.is_empty() {
                    FaceValue::Condition {
                        level: ConditionLevel::Normal,
                        native_code: None,
                        message: None,
                    }
                } else {
                    let (code, message) = text.split_once(' ').unwrap_or((&text, &text));
                    FaceValue::Condition {
                        level: ConditionLevel::Fault,
                        native_code: Some(code.to_string()),
                        message: Some(message.to_string()),
                    }
                }
            }
        };
        Some(FaceEvent { item, at, value })
    }
}

/// A face's picture of its machine, kept current by [`follow`].
pub trait Follow: Send + 'static {
    /// The machine's canonical `signal` changed to `value` at `at` (the machine's clock).
    fn apply(&mut self, signal: &str, value: &FaceValue, at: Timestamp);
}

/// Keeps `state` current with machine `machine` of `shop` until `stop`: what a protocol face
/// that answers requests (Haas MDC, a Modbus module) knows of its machine.
pub async fn follow<S: Follow>(
    shop: SimShop,
    machine: usize,
    state: Arc<Mutex<S>>,
    stop: CancellationToken,
) {
    let Some(m) = shop.machines().get(machine) else {
        return;
    };
    let apply = |events: &[FaceEvent]| {
        let mut c = match state.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        for e in events {
            if let Some(signal) = m.signal_of(e.item) {
                c.apply(signal, &e.value, e.at);
            }
        }
    };
    let (snapshot, mut rx) = shop.subscribe(machine);
    apply(&snapshot);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            batch = rx.recv() => match batch {
                Ok(events) => apply(&events),
                Err(RecvError::Lagged(_)) => {
                    let (snapshot, fresh) = shop.subscribe(machine);
                    rx = fresh;
                    apply(&snapshot);
                }
                Err(RecvError::Closed) => return,
            },
        }
    }
}

/// Steps every machine on `clock` until `shutdown`, publishing changes; closed truth intervals
/// go to `truth` when given. On shutdown the open truth intervals are closed at the clock's now.
pub async fn run(
    runner: ShopRunner,
    clock: Clock,
    truth: Option<TruthSink>,
    floor: Option<super::floor::FloorSink>,
    shutdown: CancellationToken,
) {
    let ShopRunner { shop, mut sims } = runner;
    let step = STEP.max(Duration::from_secs_f64(
        MIN_WALL_STEP.as_secs_f64() * clock.speed(),
    ));
    loop {
        let now = clock.now();
        for (i, sim) in sims.iter_mut().enumerate() {
            if i == 0 {
                shop.inner
                    .now
                    .store(now.as_micros(), std::sync::atomic::Ordering::Relaxed);
            }
            let SimOutput {
                events,
                truth: closed,
                floor: said,
            } = sim.advance(now);
            if let Some(f) = &floor {
                for e in said {
                    // The receiver gone (no bridge to tell) is fine.
                    let _ = f.send((sim.id().clone(), e));
                }
            }
            let machine = &shop.inner.machines[i];
            let face: Vec<FaceEvent> = events
                .into_iter()
                .filter_map(|e| machine.face_event(e.signal, e.value, e.at))
                .collect();
            shop.publish(i, face);
            if let Some(t) = &truth {
                t.send(closed).await;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = clock.sleep(step) => {}
        }
    }
    let now = clock.now();
    for sim in sims {
        let out = sim.finish(now);
        if let Some(t) = &truth {
            t.send(out.truth).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(n: usize) -> ShopOptions {
        ShopOptions {
            machines: n,
            seed: 7,
            start: Timestamp::parse_rfc3339("2026-11-24T08:00:00Z").unwrap_or_default(),
            shop_offset_micros: 0,
            skews: vec![(1, 180_000_000)],
        }
    }

    #[test]
    fn machines_speak_their_family_words_with_a_full_snapshot() {
        let (shop, _runner) = SimShop::new(&opts(4));
        assert_eq!(shop.machines().len(), 4);
        let okuma = &shop.machines()[1];
        assert_eq!(okuma.profile, "okuma-osp");
        let (snap, _rx) = shop.subscribe(1);
        let exec = okuma
            .items
            .iter()
            .position(|m| m.id == "pexecution")
            .unwrap_or(usize::MAX);
        assert!(snap.iter().any(|e| e.item == exec), "{snap:?}");
        // The skewed machine's snapshot is stamped three minutes ahead.
        assert!(
            snap.iter()
                .all(|e| e.at.as_micros() == opts(4).start.as_micros() + 180_000_000),
            "{snap:?}"
        );
        let alarm = okuma
            .items
            .iter()
            .position(|m| m.id == "system")
            .unwrap_or(usize::MAX);
        assert!(snap.iter().any(|e| e.item == alarm
            && matches!(
                e.value,
                FaceValue::Condition {
                    level: ConditionLevel::Normal,
                    ..
                }
            )));
    }

    #[tokio::test(start_paused = true)]
    async fn the_runner_publishes_changes_to_subscribers() {
        let o = opts(2);
        let (shop, runner) = SimShop::new(&o);
        let (_snap, mut rx) = shop.subscribe(0);
        let clock = Clock::scaled(o.start, 600.0);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(runner, clock, None, None, stop.clone()));
        let mut changes = 0;
        while changes < 20 {
            match rx.recv().await {
                Ok(batch) => changes += batch.len(),
                Err(e) => panic!("{e}"),
            }
        }
        stop.cancel();
        let _ = task.await;
    }
}
