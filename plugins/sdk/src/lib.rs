//! Write [shopbridge](https://github.com/shopbridge/shopbridge) driver plugins in Rust.
//!
//! A plugin is a program the bridge starts. It reads the bridge's messages on stdin and writes
//! its own on stdout, one JSON object per line; the protocol is described in
//! `plugins/PROTOCOL.md`. This crate gives you:
//!
//! - [`message`]: the protocol v1 messages as types, and their line encoding;
//! - [`Plugin`] / [`Session`]: the runtime, which writes `hello`, reads `init`, answers every
//!   `ping` from its own thread and turns `shutdown` (or stdin closing) into a [`ShutdownSignal`];
//! - [`Emitter`]: a thread-safe, buffered writer for observations, conditions and link changes.
//!
//! ```no_run
//! use std::time::Duration;
//! use shopbridge_plugin_sdk::Plugin;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let session = Plugin::new("counter", "0.1.0").start()?;
//!     let out = session.emitter();
//!     for m in &session.init().machines {
//!         out.link_connected(&m.id)?;
//!     }
//!     let mut n = 0i64;
//!     while !session.shutdown().wait_timeout(Duration::from_secs(1)) {
//!         n += 1;
//!         for m in &session.init().machines {
//!             out.obs(&m.id, "count", n)?;
//!         }
//!     }
//!     session.finish()?;
//!     Ok(())
//! }
//! ```

#![warn(missing_docs)]

pub mod message;
mod runtime;
pub mod time;

pub use message::{
    Condition, FromPlugin, Init, Level, Link, LinkStatus, MachineInit, Obs, Quality, Reason,
    Settings, ToPlugin, Value,
};
pub use runtime::{Batch, Emitter, Error, MAX_KEY_CHARS, Plugin, Session, ShutdownSignal};

/// The protocol version this SDK speaks (sent in `hello`, checked against `init`).
pub const PROTOCOL_VERSION: u32 = 1;
