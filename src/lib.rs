//! shopbridge: an IT/OT integration appliance for CNC job shops.
//!
//! Data flows one way through four layers (see `DESIGN.md`): [`drivers`] collect raw
//! observations, [`normalize`] turns them into canonical, time-aligned records, [`context`]
//! attaches job context and classifies stops, the [`journal`] keeps every record durably, and
//! [`northbound`] consumers serve them. [`app`] wires the layers together.

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod context;
pub mod drivers;
pub mod journal;
pub mod memory;
pub mod model;
pub mod normalize;
pub mod northbound;
pub mod sim;
