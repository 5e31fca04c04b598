//! Collection: one driver per connection to a machine (or to an agent that serves several).
//!
//! A driver emits raw observations `(machine, source key, value, source time?)` and link status,
//! in batches, into a bounded channel (back-pressure by construction). It never interprets what
//! it reads; normalization does. Link loss is reported as [`DriverEvent::Link`] with
//! [`LinkStatus::Lost`]; a driver never invents values.

pub mod sim;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::model::{LinkStatus, MachineId, Quality, SignalId, Timestamp, Value};

/// One value as read from a machine, before any profile has looked at it.
#[derive(Clone, Debug, PartialEq)]
pub struct RawObservation {
    pub machine: MachineId,
    /// The source's own key (an MTConnect data item id, a Haas Q-code, a register name), or a
    /// canonical signal id when the source already speaks the canonical model (the simulator).
    pub key: SignalId,
    pub value: Value,
    pub quality: Quality,
    /// The machine's own timestamp, if the protocol carries one.
    pub source_time: Option<Timestamp>,
    /// When the bridge read it (from the app's [`Clock`]).
    pub received: Timestamp,
}

/// What a driver reports.
#[derive(Clone, Debug, PartialEq)]
pub enum DriverEvent {
    Observation(RawObservation),
    Link {
        machine: MachineId,
        status: LinkStatus,
        at: Timestamp,
        detail: Option<String>,
        missed: Option<u64>,
    },
}

/// Drivers send batches: one per read or poll, so the channel is not a per-value cost.
pub type DriverBatch = Vec<DriverEvent>;

/// Everything a running driver gets from the app.
#[derive(Clone, Debug)]
pub struct DriverContext {
    /// The machine(s) this driver feeds.
    pub machines: Vec<MachineId>,
    pub tx: mpsc::Sender<DriverBatch>,
    pub shutdown: CancellationToken,
    pub clock: Clock,
}

impl DriverContext {
    /// Sends a batch; returns false when the pipeline is gone (shutting down).
    pub async fn send(&self, batch: DriverBatch) -> bool {
        if batch.is_empty() {
            return true;
        }
        self.tx.send(batch).await.is_ok()
    }
}
