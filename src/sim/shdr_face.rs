//! A simulated machine's MTConnect adapter: the SHDR face of one [`SimShop`] machine.
//!
//! [`serve`] is what a real adapter on port 7878 is: a TCP server that any number of clients
//! (a bridge, an agent, `nc`) may connect to at once. Each client gets, in this order:
//!
//! 1. the adapter's commands: `* uuid: …`, `* device: …`, `* nativeName: …`,
//!    `* shdrVersion: 2`, `* adapterVersion: …`;
//! 2. a snapshot: one line with every plain value (stamped with the machine's clock now, as an
//!    adapter stamps what it sends on connect), then each condition on its own line;
//! 3. every change the shop publishes, grouped by time: `ts|k|v|k|v` for the plain values
//!    that share a time, a line per condition (`ts|k|level|native_code||qualifier|message`).
//!
//! It answers `* PING` with `* PONG 10000` (ping me every 10 s). A client too slow to keep up
//! with the shop (the shop's feed reports it lagged) gets a fresh snapshot, as after a
//! reconnect. Times are the machine's own clock, skewed when the machine's clock is.
//!
//! Values are written so that [`crate::drivers::shdr::parse`] (and cppagent) read them back
//! unchanged: `|` is escaped as `\|`, a value that starts with `"` or ends with `\` is written
//! quoted with its quotes, pipes and backslashes escaped, and line ends inside a value become
//! spaces.

use std::fmt::Write as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::shop::{FaceEvent, FaceValue, ShopMachine, SimShop};
use crate::model::{Timestamp, Value};

/// The heartbeat the face asks for in its PONG.
pub const PONG_MS: u64 = 10_000;

/// Serves machine `machine` of `shop` on `listener` until `shutdown`; then closes every
/// client and returns.
pub async fn serve(
    listener: TcpListener,
    shop: SimShop,
    machine: usize,
    shutdown: CancellationToken,
) {
    let Some(m) = shop.machines().get(machine) else {
        tracing::error!(
            machine,
            "SHDR face: the shop has no such machine; not serving"
        );
        return;
    };
    let id = m.id.clone();
    let clients = TaskTracker::new();
    let tasks = clients.clone();
    super::serve::accept_loop(listener, "shdr", &shutdown, &clients, |stream, peer| {
        tracing::debug!(machine = %id, %peer, "SHDR client connected");
        let _ = stream.set_nodelay(true);
        let shop = shop.clone();
        let stop = shutdown.clone();
        let id = id.clone();
        tasks.spawn(async move {
            if let Err(e) = client(stream, shop, machine, stop).await {
                tracing::debug!(machine = %id, %peer, error = %e, "SHDR client gone");
            }
        });
    })
    .await;
}

/// One client: header, snapshot, then changes, answering pings.
async fn client(
    mut stream: TcpStream,
    shop: SimShop,
    machine: usize,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let Some(m) = shop.machines().get(machine) else {
        return Ok(());
    };
    let (rd, mut wr) = stream.split();
    let mut lines = BufReader::new(rd).lines();
    let (snapshot, mut rx) = shop.subscribe(machine);
    let mut out = header(m);
    write_snapshot(&mut out, m, &snapshot, shop.now(machine));
    loop {
        if !out.is_empty() {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                r = wr.write_all(out.as_bytes()) => r?,
            }
            out.clear();
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            line = lines.next_line() => match line? {
                Some(l) if l.trim() == "* PING" => {
                    let _ = writeln!(out, "* PONG {PONG_MS}");
                }
                Some(_) => {}
                None => return Ok(()),
            },
            batch = rx.recv() => match batch {
                Ok(events) => write_changes(&mut out, m, &events),
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(machine = %m.id, missed, "SHDR client fell behind; resending a snapshot");
                    let (snapshot, fresh) = shop.subscribe(machine);
                    rx = fresh;
                    write_snapshot(&mut out, m, &snapshot, shop.now(machine));
                }
                Err(RecvError::Closed) => return Ok(()),
            },
        }
    }
}

/// The commands an adapter sends on connect.
fn header(m: &ShopMachine) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "* uuid: {}", one_line(&m.uuid));
    let _ = writeln!(out, "* device: {}", one_line(&m.device));
    let _ = writeln!(out, "* nativeName: {}", one_line(&m.name));
    let _ = writeln!(out, "* shdrVersion: 2");
    let _ = writeln!(
        out,
        "* adapterVersion: shopbridge-sim {}",
        env!("CARGO_PKG_VERSION")
    );
    out
}

/// Every plain value on one line, then a line per condition, stamped with the machine's clock
/// now (as an adapter stamps what it sends on connect; the values' own older times would look
/// like a clock that jumped).
fn write_snapshot(out: &mut String, m: &ShopMachine, events: &[FaceEvent], now: Timestamp) {
    let Some(at) = events.iter().map(|e| e.at).max() else {
        return;
    };
    let at = at.max(now);
    let stamp = at.to_rfc3339();
    let mut values = String::new();
    for e in events {
        if let FaceValue::Value(v) = &e.value {
            push_pair(&mut values, m, e.item, v);
        }
    }
    if !values.is_empty() {
        let _ = writeln!(out, "{stamp}{values}");
    }
    for e in events {
        if let FaceValue::Condition { .. } = e.value {
            push_condition(out, &stamp, m, e);
        }
    }
}

/// Changes grouped by time: plain values sharing a time on one line, conditions on their own.
fn write_changes(out: &mut String, m: &ShopMachine, events: &[FaceEvent]) {
    let mut i = 0;
    while i < events.len() {
        let at = events[i].at;
        let run = events[i..].iter().take_while(|e| e.at == at).count();
        let group = &events[i..i + run];
        i += run;
        let stamp = at.to_rfc3339();
        let mut values = String::new();
        for e in group {
            if let FaceValue::Value(v) = &e.value {
                push_pair(&mut values, m, e.item, v);
            }
        }
        if !values.is_empty() {
            let _ = writeln!(out, "{stamp}{values}");
        }
        for e in group {
            if let FaceValue::Condition { .. } = e.value {
                push_condition(out, &stamp, m, e);
            }
        }
    }
}

fn key_of(m: &ShopMachine, item: usize) -> &str {
    m.items.get(item).map_or("unknown", |d| d.id.as_str())
}

/// `|key|value`.
fn push_pair(out: &mut String, m: &ShopMachine, item: usize, v: &Value) {
    out.push('|');
    push_field(out, key_of(m, item));
    out.push('|');
    match v {
        Value::Text(t) => push_field(out, t),
        Value::Bool(b) => out.push_str(if *b { "ON" } else { "OFF" }),
        Value::Unavailable => out.push_str("UNAVAILABLE"),
        Value::Int(_) | Value::Float(_) => {
            let _ = write!(out, "{v}");
        }
    }
}

/// `ts|key|level|native_code|native_severity|qualifier|message` and a line end.
fn push_condition(out: &mut String, stamp: &str, m: &ShopMachine, e: &FaceEvent) {
    let FaceValue::Condition {
        level,
        native_code,
        message,
    } = &e.value
    else {
        return;
    };
    out.push_str(stamp);
    out.push('|');
    push_field(out, key_of(m, e.item));
    out.push('|');
    out.push_str(level.as_str());
    out.push('|');
    push_field(out, native_code.as_deref().unwrap_or(""));
    out.push_str("|||");
    push_field(out, message.as_deref().unwrap_or(""));
    out.push('\n');
}

/// One field, escaped so that SHDR readers get `s` back.
fn push_field(out: &mut String, s: &str) {
    let s = s.trim();
    if s.starts_with('"') || s.ends_with('\\') {
        // cppagent would take the first for a quoted field, and the `|` after the second for
        // an escaped one: write both quoted, where a backslash escapes any character.
        out.push('"');
        for c in s.chars() {
            match c {
                '"' | '\\' | '|' => {
                    out.push('\\');
                    out.push(c);
                }
                '\n' | '\r' => out.push(' '),
                c => out.push(c),
            }
        }
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
}

/// A command's value on one line.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests;
