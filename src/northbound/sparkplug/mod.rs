//! The northbound Sparkplug B 3.0 edge node (issue 5, in progress on branch wip-sparkplug).
//!
//! - [`payload`]: the protobuf payload, written from the specification;
//! - [`node`]: the edge node's protocol state (topics, bdSeq, seq, aliases, births, deaths,
//!   data, commands) without I/O, so every normative statement is unit-tested.

pub mod bdseq;
pub mod metrics;
pub mod node;
pub mod payload;
pub mod records;
pub mod transport;
