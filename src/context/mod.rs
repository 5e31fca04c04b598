//! Context and rules: job / operation / operator / shift, and the classification of every
//! second of every machine into production or one loss category of the taxonomy.
//!
//! - [`calendar`]: the shift calendar (shifts, breaks, holidays, planned windows, time zone);
//! - [`rules`]: the classification rules, configuration in the profile expression language;
//! - [`engine`]: the pure state machine that derives intervals, operations and the live
//!   context from the journal's records;
//! - [`run`]: the engine as a journal consumer (durable, exactly once);
//! - [`commands`]: operator, ERP and QMS inputs checked and written to the journal.

pub mod calendar;
pub mod commands;
pub mod dispatch;
pub mod drop_folder;
pub mod engine;
pub mod reclassify;
pub mod rules;
pub mod run;

pub use engine::{ContextView, Engine, EngineConfig, MachineInputs, MachineSettings};

#[cfg(test)]
mod engine_tests;
