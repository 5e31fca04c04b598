//! The northbound Sparkplug B 3.0 edge node: one node per bridge, each machine a device.
//!
//! - [`payload`]: the protobuf payload, written from the specification's field numbers;
//! - [`node`]: the edge node's protocol state (topics, bdSeq, seq, aliases, births, deaths,
//!   data, commands) without I/O, so every normative statement is unit-tested;
//! - [`metrics`]: what a machine publishes (and may be commanded through);
//! - [`records`]: journal records as metric updates, one record at a time;
//! - [`transport`]: the MQTT connection, primary host awareness and store-and-forward;
//! - [`broker`]: the embedded rumqttd broker of the demo;
//! - [`bdseq`]: the birth/death sequence number, kept in the data directory.

pub mod bdseq;
pub mod broker;
pub mod metrics;
pub mod node;
pub mod payload;
pub mod records;
pub mod transport;
