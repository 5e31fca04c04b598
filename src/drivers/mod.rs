//! Collection: one driver per connection to a machine (or to an agent that serves several).
//!
//! A driver emits raw observations `(machine, source key, value, source time?)` and link status,
//! in batches, into a bounded channel (back-pressure by construction). It never interprets what
//! it reads; normalization does. Link loss is reported as [`DriverEvent::Link`] with
//! [`LinkStatus::Lost`]; a driver never invents values.

pub mod focas;
pub mod haas;
pub mod modbus;
pub mod mtconnect;
pub mod opcua_client;
pub mod plugin;
pub mod poll;
pub mod retry;
pub mod serial;
pub mod shdr;
pub mod sim;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::model::{
    AssetAction, ConditionLevel, LinkStatus, MachineId, Quality, SignalId, Timestamp, Value,
};

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
    /// What the source says this item is (an MTConnect probe's data item, or a Devices file
    /// given to an SHDR driver), so profiles can match by type and sub-type. Shared, not copied.
    pub meta: Option<Arc<DataItemMeta>>,
}

/// An MTConnect data item category.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ItemCategory {
    Sample,
    Event,
    Condition,
}

/// How an item's value is laid out on an SHDR line, after its key: one field for a plain value,
/// five for a condition (`level|native_code|native_severity|qualifier|message`), two for a
/// message (`native_code|text`), three for a time series (`count|rate|v1 v2 …`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ItemShape {
    #[default]
    Value,
    Condition,
    Message,
    TimeSeries,
}

impl ItemShape {
    /// Fields that follow the key on an SHDR line.
    pub fn fields(self) -> usize {
        match self {
            ItemShape::Value => 1,
            ItemShape::Condition => 5,
            ItemShape::Message => 2,
            ItemShape::TimeSeries => 3,
        }
    }
}

/// A data item as a source describes it (MTConnect `DataItem` attributes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataItemMeta {
    pub id: String,
    pub name: Option<String>,
    /// `SAMPLE` / `EVENT` / `CONDITION`; None when the source did not say.
    pub category: Option<ItemCategory>,
    /// MTConnect type in its XML spelling (`EXECUTION`, `PART_COUNT`, `SPINDLE_SPEED`…).
    pub item_type: String,
    pub sub_type: Option<String>,
    pub units: Option<String>,
    /// The type of the component holding it (`Controller`, `Path`, `Rotary`, `Linear`…).
    pub component: Option<String>,
    /// The component's name (`S1`, `path1`), when it has one.
    pub component_name: Option<String>,
    /// `VALUE` (default), `TIME_SERIES`, `DATA_SET`, `TABLE`, `DISCRETE`.
    pub representation: Option<String>,
}

impl DataItemMeta {
    /// The SHDR layout of this item's values.
    pub fn shape(&self) -> ItemShape {
        if self.category == Some(ItemCategory::Condition) {
            ItemShape::Condition
        } else if self.item_type.eq_ignore_ascii_case("MESSAGE") {
            ItemShape::Message
        } else if self
            .representation
            .as_deref()
            .is_some_and(|r| r.eq_ignore_ascii_case("TIME_SERIES"))
        {
            ItemShape::TimeSeries
        } else {
            ItemShape::Value
        }
    }
}

/// A condition as read from a source (an SHDR condition line, an agent's `Normal`/`Warning`/
/// `Fault`/`Unavailable` element).
#[derive(Clone, Debug, PartialEq)]
pub struct RawCondition {
    pub machine: MachineId,
    pub key: SignalId,
    pub level: ConditionLevel,
    pub native_code: Option<String>,
    pub native_severity: Option<String>,
    pub qualifier: Option<String>,
    pub message: Option<String>,
    pub source_time: Option<Timestamp>,
    pub received: Timestamp,
    pub meta: Option<Arc<DataItemMeta>>,
}

/// An asset change as read from a source (`@ASSET@`, `@REMOVE_ASSET@`, `@REMOVE_ALL_ASSETS@`,
/// or an agent's `AssetChanged`/`AssetRemoved` events).
#[derive(Clone, Debug, PartialEq)]
pub struct RawAsset {
    pub machine: MachineId,
    pub action: AssetAction,
    pub asset_id: String,
    pub asset_type: Option<String>,
    /// The asset document (XML) for [`AssetAction::Changed`].
    pub document: Option<String>,
    pub source_time: Option<Timestamp>,
    pub received: Timestamp,
}

/// What a driver reports.
#[derive(Clone, Debug, PartialEq)]
pub enum DriverEvent {
    Observation(RawObservation),
    /// Boxed, so that a batch of observations does not carry their size.
    Condition(Box<RawCondition>),
    Asset(Box<RawAsset>),
    Link {
        machine: MachineId,
        status: LinkStatus,
        at: Timestamp,
        detail: Option<String>,
        missed: Option<u64>,
    },
}

impl DriverEvent {
    /// The machine this event is about.
    pub fn machine(&self) -> &MachineId {
        match self {
            DriverEvent::Observation(o) => &o.machine,
            DriverEvent::Condition(c) => &c.machine,
            DriverEvent::Asset(a) => &a.machine,
            DriverEvent::Link { machine, .. } => machine,
        }
    }
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
    /// This driver's counters, shown at `/metrics` labelled with the driver type and source.
    pub counters: Arc<DriverCounters>,
}

/// What every driver counts. Labels are the driver type and its source (an address or URL).
#[derive(Debug, Default)]
pub struct DriverCounters {
    /// `shdr`, `mtconnect`, …
    pub driver: &'static str,
    /// The address or URL the driver reads.
    pub source: String,
    /// Protocol units read (SHDR lines, MTConnect documents, poll replies).
    pub messages: std::sync::atomic::AtomicU64,
    /// Bytes read from the source.
    pub bytes: std::sync::atomic::AtomicU64,
    /// Input that could not be understood (a malformed line, an unparsable document); each
    /// is logged (rate-limited) and skipped.
    pub bad_input: std::sync::atomic::AtomicU64,
    /// Connection attempts that failed, and links lost.
    pub link_errors: std::sync::atomic::AtomicU64,
    /// Holes in the source's data (an agent restart, a buffer overrun).
    pub gaps: std::sync::atomic::AtomicU64,
    /// Reads the device refused (a Modbus exception, a Haas `?` or `INVALID NUMBER`), counted
    /// when an item turns Bad.
    pub device_errors: std::sync::atomic::AtomicU64,
}

impl DriverCounters {
    pub fn new(driver: &'static str, source: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            driver,
            source: source.into(),
            ..Self::default()
        })
    }

    pub fn add(c: &std::sync::atomic::AtomicU64, n: u64) {
        c.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}

impl DriverContext {
    /// Reports a machine's link status now; false when the pipeline is gone.
    pub async fn link(&self, machine: &MachineId, status: LinkStatus, detail: String) -> bool {
        self.send(vec![DriverEvent::Link {
            machine: machine.clone(),
            status,
            at: self.clock.now(),
            detail: Some(detail),
            missed: None,
        }])
        .await
    }

    /// After a connection failed or ended: counts it, reports the machine's link lost (once
    /// per outage, `lost_reported` keeps track) and waits the backoff's next delay. False when
    /// the bridge is shutting down.
    pub async fn link_down(
        &self,
        machine: &MachineId,
        why: String,
        lost_reported: &mut bool,
        backoff: &mut retry::Backoff,
    ) -> bool {
        DriverCounters::add(&self.counters.link_errors, 1);
        if !*lost_reported {
            if !self.link(machine, LinkStatus::Lost, why).await {
                return false;
            }
            *lost_reported = true;
        }
        let delay = backoff.next_wait();
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            _ = self.clock.sleep(delay) => true,
        }
    }

    /// Sends a batch; returns false when the pipeline is gone (shutting down).
    pub async fn send(&self, batch: DriverBatch) -> bool {
        if batch.is_empty() {
            return true;
        }
        self.tx.send(batch).await.is_ok()
    }
}
