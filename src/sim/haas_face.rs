//! A simulated Haas control's Machine Data Collection port: the MDC face of one [`SimShop`]
//! machine.
//!
//! [`serve`] is what Setting 143 opens on a Haas NGC: a TCP port that answers Q-commands, one
//! reply line per request, for at most [`MAX_CLIENTS`] clients at once (a third is closed at
//! once, as the control does). [`answer`] serves any byte stream, so a test can put the
//! control on one end of a pseudo-terminal and speak RS-232 framing (the request echoed, the
//! data line between STX and ETB).
//!
//! What the control says follows the shop's simulation of the machine:
//!
//! - `Q500`: `PROGRAM, <program>, <status>, PARTS, <n>` with the status `IDLE`, `FEED HOLD`
//!   or `ALARM ON`, or `STATUS, BUSY` while a program runs;
//! - `Q104` the mode (`(MEM)`, `(MDI)`, `(JOG)`, `(EDIT)`);
//! - `Q301` the motion time, which advances only while the machine cuts; `Q300` the power-on
//!   time; `Q303`/`Q304` the last and previous cycle times;
//! - `Q402`/`Q403` the M30 counters, `Q200`/`Q201` tool changes and the tool in use;
//! - `Q600 <var>`: `#3027` spindle speed, `#5021`… machine position (zero), `#1`–`#999`
//!   macro variables (zero); other numbers answer `?, BAD VARIABLE NUMBER`;
//! - anything else: `?, ?<request>`.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::shop::{FaceValue, SimShop};
use crate::model::{ConditionLevel, Timestamp, signals};

/// The clients a Haas control serves at once.
pub const MAX_CLIENTS: usize = 2;

/// What the control knows, kept up to date from the shop's feed.
#[derive(Debug, Clone)]
pub struct Control {
    pub serial_number: String,
    pub model: String,
    execution: String,
    mode: String,
    program: String,
    parts: i64,
    tool: i64,
    tool_changes: i64,
    spindle: f64,
    alarm: bool,
    estop: bool,
    /// Motion time before the running stretch (µs), and when that stretch began.
    motion_micros: i64,
    active_since: Option<Timestamp>,
    last_cycle_micros: i64,
    previous_cycle_micros: i64,
    powered_on: Timestamp,
    /// Power-on hours before the simulation.
    power_on_base_micros: i64,
}

impl super::shop::Follow for Control {
    fn apply(&mut self, signal: &str, value: &FaceValue, at: Timestamp) {
        Control::apply(self, signal, value, at);
    }
}

impl Control {
    /// A control with the machine's serial number and model, powered on at `now`.
    pub fn new(serial_number: &str, model: &str, index: usize, now: Timestamp) -> Self {
        Self {
            serial_number: serial_number.to_string(),
            model: model.to_string(),
            execution: "READY".into(),
            mode: "AUTOMATIC".into(),
            program: "O00000".into(),
            parts: 0,
            tool: 1,
            tool_changes: 0,
            spindle: 0.0,
            alarm: false,
            estop: false,
            // Machines that have run for years: 6000 h of power-on, 2000 h of motion, varied.
            motion_micros: (2_000 + index as i64 * 137) * 3_600_000_000,
            active_since: None,
            last_cycle_micros: 0,
            previous_cycle_micros: 0,
            powered_on: now,
            power_on_base_micros: (6_000 + index as i64 * 311) * 3_600_000_000,
        }
    }

    /// Applies the machine's changes (canonical signal, value, time).
    pub fn apply(&mut self, signal: &str, value: &FaceValue, at: Timestamp) {
        match (signal, value) {
            (signals::EXECUTION, FaceValue::Value(v)) => {
                let next = v.to_string();
                let was_active = self.execution == "ACTIVE";
                let active = next == "ACTIVE";
                if active && !was_active {
                    self.active_since = Some(at);
                } else if was_active && !active {
                    if let Some(since) = self.active_since.take() {
                        let d = at.as_micros().saturating_sub(since.as_micros()).max(0);
                        self.motion_micros = self.motion_micros.saturating_add(d);
                        self.previous_cycle_micros = self.last_cycle_micros;
                        self.last_cycle_micros = d;
                    }
                }
                self.execution = next;
            }
            (signals::CONTROLLER_MODE, FaceValue::Value(v)) => self.mode = v.to_string(),
            (signals::PROGRAM, FaceValue::Value(v)) if !v.is_unavailable() => {
                self.program = v.to_string();
            }
            (signals::PART_COUNT, FaceValue::Value(v)) => {
                if let Some(n) = v.as_i64() {
                    self.parts = n;
                }
            }
            (signals::TOOL_NUMBER, FaceValue::Value(v)) => {
                let t = v
                    .as_i64()
                    .or_else(|| v.to_string().trim().parse().ok())
                    .unwrap_or(self.tool);
                if t != self.tool {
                    self.tool_changes += 1;
                    self.tool = t;
                }
            }
            (signals::SPINDLE_SPEED, FaceValue::Value(v)) => {
                self.spindle = v.as_f64().unwrap_or(0.0);
            }
            (signals::EMERGENCY_STOP, FaceValue::Value(v)) => {
                self.estop = v.to_string().eq_ignore_ascii_case("TRIGGERED");
            }
            (signals::ALARM, FaceValue::Condition { level, .. }) => {
                self.alarm = *level == ConditionLevel::Fault;
            }
            _ => {}
        }
    }

    fn motion_at(&self, now: Timestamp) -> i64 {
        let running = self
            .active_since
            .map_or(0, |s| now.as_micros().saturating_sub(s.as_micros()).max(0));
        self.motion_micros.saturating_add(running)
    }

    /// The Q500 status word.
    fn status(&self) -> &'static str {
        if self.alarm || self.estop {
            "ALARM ON"
        } else if self.execution == "FEED_HOLD" || self.execution == "INTERRUPTED" {
            "FEED HOLD"
        } else if self.execution == "ACTIVE" {
            "BUSY"
        } else {
            "IDLE"
        }
    }

    /// The reply line (without framing) to one request (`?Q500`, `Q600 3027`).
    pub fn reply(&self, request: &str, now: Timestamp) -> String {
        let req = request.trim();
        let code = req.trim_start_matches('?').trim();
        let mut words = code.split_whitespace();
        let q = words.next().unwrap_or("").to_ascii_uppercase();
        let arg = words.next();
        let time = |micros: i64| {
            let s = micros.max(0) / 1_000_000;
            format!("{:05}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
        };
        match q.as_str() {
            "Q100" => format!("SERIAL NUMBER, {}", self.serial_number),
            "Q101" => "SOFTWARE VERSION, 100.21.000.1130".to_string(),
            "Q102" => format!("MODEL, {}", self.model),
            "Q104" => {
                let mode = match self.mode.as_str() {
                    "MANUAL_DATA_INPUT" => "MDI",
                    "MANUAL" => "JOG",
                    "EDIT" => "EDIT",
                    _ => "MEM",
                };
                format!("MODE, ({mode})")
            }
            "Q200" => format!("TOOL CHANGES, {}", self.tool_changes),
            "Q201" => format!("USING TOOL, {}", self.tool),
            "Q300" => {
                let on = now.as_micros().saturating_sub(self.powered_on.as_micros());
                format!(
                    "P.O. TIME, {}",
                    time(self.power_on_base_micros.saturating_add(on))
                )
            }
            "Q301" => format!("C.S. TIME, {}", time(self.motion_at(now))),
            "Q303" => format!("LAST CYCLE, {}", time(self.last_cycle_micros)),
            "Q304" => format!("PREV CYCLE, {}", time(self.previous_cycle_micros)),
            "Q402" => format!("M30 #1, {}", self.parts),
            "Q403" => format!("M30 #2, {}", self.parts),
            "Q500" if self.status() == "BUSY" => "STATUS, BUSY".to_string(),
            "Q500" => format!(
                "PROGRAM, {}, {}, PARTS, {}",
                self.program,
                self.status(),
                self.parts
            ),
            "Q600" => match arg.and_then(|a| a.trim_start_matches('#').parse::<u32>().ok()) {
                Some(3027) => format!("MACRO, {:.6}", self.spindle),
                Some(1..=999 | 5021..=5026) => "MACRO, 0.000000".to_string(),
                _ => "?, BAD VARIABLE NUMBER".to_string(),
            },
            _ => format!("?, {req}"),
        }
    }
}

/// One machine's control, shared by its clients and kept current by [`follow`].
pub type SharedControl = Arc<Mutex<Control>>;

/// Serves machine `machine`'s MDC port on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    shop: SimShop,
    machine: usize,
    shutdown: CancellationToken,
) {
    let Some(m) = shop.machines().get(machine) else {
        tracing::error!(
            machine,
            "Haas face: the shop has no such machine; not serving"
        );
        return;
    };
    let id = m.id.clone();
    let model = super::model_of(machine).name;
    let control = Arc::new(Mutex::new(Control::new(
        &m.uuid,
        model.strip_prefix("Haas ").unwrap_or(model),
        machine,
        shop.now(machine),
    )));
    let clients = TaskTracker::new();
    clients.spawn(super::shop::follow(
        shop.clone(),
        machine,
        control.clone(),
        shutdown.clone(),
    ));
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks = clients.clone();
    super::serve::accept_loop(listener, "haas", &shutdown, &clients, |stream, peer| {
        // The control serves two clients; a third is hung up on.
        if open.load(std::sync::atomic::Ordering::SeqCst) >= MAX_CLIENTS {
            tracing::debug!(machine = %id, %peer, "Haas face: third client refused");
            return;
        }
        open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _ = stream.set_nodelay(true);
        let (shop, control, stop, open) = (
            shop.clone(),
            control.clone(),
            shutdown.clone(),
            open.clone(),
        );
        tasks.spawn(async move {
            let _ = answer(stream, &shop, machine, &control, false, stop).await;
            open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        });
    })
    .await;
}

/// Answers requests on one stream until it closes or `stop`: Ethernet framing (`>` reply CR
/// LF), or RS-232 framing (the request echoed, then STX reply ETB CR LF and the prompt).
pub async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    shop: &SimShop,
    machine: usize,
    control: &SharedControl,
    serial: bool,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let mut buf = [0u8; 512];
    let mut line = Vec::new();
    loop {
        let n = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            r = stream.read(&mut buf) => r?,
        };
        if n == 0 {
            return Ok(());
        }
        for &b in &buf[..n] {
            if b != b'\r' && b != b'\n' {
                if line.len() < 256 {
                    line.push(b);
                }
                continue;
            }
            if line.is_empty() {
                continue;
            }
            let request = String::from_utf8_lossy(&line).trim().to_string();
            line.clear();
            let reply = match control.lock() {
                Ok(c) => c.reply(&request, shop.now(machine)),
                Err(p) => p.into_inner().reply(&request, shop.now(machine)),
            };
            let out = if serial {
                format!("{request}\r\n\x02{reply}\x17\r\n>")
            } else {
                format!(">{reply}\r\n")
            };
            stream.write_all(out.as_bytes()).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;

    fn v(s: &str) -> FaceValue {
        FaceValue::Value(Value::text(s))
    }

    #[test]
    fn the_control_answers_as_the_machine_runs() {
        let t = |s: i64| Timestamp::from_micros(s * 1_000_000);
        let mut c = Control::new("1234567", "VF-2", 0, t(0));
        c.apply(signals::PROGRAM, &v("O04417"), t(0));
        c.apply(signals::PART_COUNT, &FaceValue::Value(Value::Int(12)), t(0));
        assert_eq!(c.reply("?Q500", t(1)), "PROGRAM, O04417, IDLE, PARTS, 12");
        let motion = c.reply("?Q301", t(1));
        c.apply(signals::EXECUTION, &v("ACTIVE"), t(10));
        assert_eq!(c.reply("?Q500", t(11)), "STATUS, BUSY");
        c.apply(signals::EXECUTION, &v("READY"), t(52));
        assert_eq!(c.reply("?Q303", t(53)), "LAST CYCLE, 00000:00:42");
        assert_ne!(c.reply("?Q301", t(53)), motion);
        c.apply(
            signals::ALARM,
            &FaceValue::Condition {
                level: ConditionLevel::Fault,
                native_code: Some("108".into()),
                message: None,
            },
            t(60),
        );
        assert_eq!(
            c.reply("?Q500", t(61)),
            "PROGRAM, O04417, ALARM ON, PARTS, 12"
        );
        assert_eq!(c.reply("?Q600 99999", t(61)), "?, BAD VARIABLE NUMBER");
        assert_eq!(c.reply("?Q105", t(61)), "?, ?Q105");
        assert_eq!(c.reply("Q104", t(61)), "MODE, (MEM)");
    }

    #[test]
    fn what_the_face_says_the_driver_reads_back() {
        use crate::drivers::haas::reply::{Query, STANDARD, parse};
        let t = |s: i64| Timestamp::from_micros(s * 1_000_000);
        let c = Control::new("1234567", "VF-2", 3, t(0));
        for q in STANDARD.iter().copied().chain([Query::Q600(3027)]) {
            let line = c.reply(&q.request(), t(5));
            assert!(parse(q, &line).is_ok(), "{q}: {line}");
        }
    }
}
