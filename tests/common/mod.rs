//! Helpers the integration tests share (each test file is its own crate and uses what it needs).
#![allow(dead_code)] // each test crate uses the helpers it needs

use std::net::TcpListener;
use std::process::Child;

/// Kills a child process when the test ends, passing or failing, so none is left behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}
