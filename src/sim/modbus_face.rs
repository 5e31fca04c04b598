//! A simulated retrofit I/O module on a legacy machine: the Modbus TCP face of one [`SimShop`]
//! machine, served with tokio-modbus's server.
//!
//! Unit 1 is a Moxa ioLogik E1212 wired as the `moxa-e1212` profile says: discrete inputs
//! DI0 red, DI1 amber, DI2 green lamp, DI3 cycle relay, DI4 a part-count pulse; input registers
//! 0x0010 + 2n / 0x0011 + 2n the DI counters (high word first) and 0x0030 the DI word; coils
//! 0-7 the (unused) outputs. Unit 2, on the same port, is a Moxa ioLogik E1240 with a 0-50 A
//! spindle current transducer on AI0 (input register 0: 0 = 4 mA, 65535 = 20 mA), as the
//! `moxa-e1240-current` profile reads it. (Real modules have an address each; one port with two
//! units is what a Modbus gateway in front of them looks like.)
//!
//! The lamps follow the machine: red on an alarm or emergency stop, green while it cuts, amber
//! when it is idle, flashing at 1 Hz (of the shop's clock) in a feed hold. Anything else
//! answers as such a module does: an address it does not have is exception 2, a write is
//! exception 1, an unknown unit is exception 11 (gateway target failed to respond).

use std::future::{Ready, ready};
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio_modbus::server::Service;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_util::sync::CancellationToken;

use super::shop::{FaceValue, Follow, SimShop};
use crate::model::{ConditionLevel, Timestamp, signals};

/// What the module's inputs see of the machine.
#[derive(Debug, Clone, Default)]
pub struct Wiring {
    powered: bool,
    execution: String,
    alarm: bool,
    estop: bool,
    parts: u32,
    spindle_rpm: f64,
    spindle_load: f64,
}

impl Follow for Wiring {
    fn apply(&mut self, signal: &str, value: &FaceValue, _at: Timestamp) {
        match (signal, value) {
            (signals::AVAILABILITY, FaceValue::Value(v)) => {
                self.powered = v.to_string() == "AVAILABLE";
            }
            (signals::EXECUTION, FaceValue::Value(v)) => self.execution = v.to_string(),
            (signals::EMERGENCY_STOP, FaceValue::Value(v)) => {
                self.estop = v.to_string().eq_ignore_ascii_case("TRIGGERED");
            }
            (signals::ALARM, FaceValue::Condition { level, .. }) => {
                self.alarm = *level == ConditionLevel::Fault;
            }
            (signals::PART_COUNT, FaceValue::Value(v)) => {
                if let Some(n) = v.as_i64() {
                    self.parts = n.clamp(0, i64::from(u32::MAX)) as u32;
                }
            }
            (signals::SPINDLE_SPEED, FaceValue::Value(v)) => {
                self.spindle_rpm = v.as_f64().unwrap_or(0.0);
            }
            (signals::SPINDLE_LOAD, FaceValue::Value(v)) => {
                self.spindle_load = v.as_f64().unwrap_or(0.0);
            }
            _ => {}
        }
    }
}

impl Wiring {
    /// DI0-DI4 at shop time `now` (µs): red, amber, green, cycle relay, count pulse (the
    /// pulse itself is not shown; its counter is).
    pub fn inputs(&self, now_micros: i64) -> [bool; 5] {
        if !self.powered {
            return [false; 5];
        }
        let red = self.alarm || self.estop;
        let hold = matches!(self.execution.as_str(), "FEED_HOLD" | "INTERRUPTED");
        let running = self.execution == "ACTIVE";
        let flash_on = (now_micros / 500_000) % 2 == 0;
        let green = running && !red;
        let amber = !red && !green && (!hold || flash_on);
        let cycle = matches!(
            self.execution.as_str(),
            "ACTIVE" | "FEED_HOLD" | "INTERRUPTED" | "OPTIONAL_STOP" | "PROGRAM_STOPPED"
        );
        [red, amber, green, cycle, false]
    }

    /// Spindle current (A): none with the drive off, about 2 A with it powered, more as the
    /// spindle cuts.
    pub fn spindle_amps(&self) -> f64 {
        if !self.powered {
            0.0
        } else if self.execution == "ACTIVE" && self.spindle_rpm > 0.0 {
            8.0 + self.spindle_load.clamp(0.0, 150.0) * 0.2
        } else {
            2.0
        }
    }
}

/// One machine's module, shared by its clients.
#[derive(Clone)]
struct Module {
    wiring: Arc<Mutex<Wiring>>,
    shop: SimShop,
    machine: usize,
}

impl Module {
    fn read(&self, unit: u8, req: Request<'static>) -> Result<Response, ExceptionCode> {
        let w = match self.wiring.lock() {
            Ok(w) => w.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let di = w.inputs(self.shop.now(self.machine).as_micros());
        let bits = |start: u16, count: u16, len: u16, get: &dyn Fn(u16) -> bool| {
            if count == 0 || u32::from(start) + u32::from(count) > u32::from(len) {
                return Err(ExceptionCode::IllegalDataAddress);
            }
            Ok((start..start + count).map(get).collect::<Vec<bool>>())
        };
        let di_bit = |i: u16| di.get(usize::from(i)).copied().unwrap_or(false);
        match (unit, req) {
            (1, Request::ReadDiscreteInputs(a, n)) => {
                bits(a, n, 16, &di_bit).map(Response::ReadDiscreteInputs)
            }
            (1, Request::ReadCoils(a, n)) => bits(a, n, 8, &|_| false).map(Response::ReadCoils),
            (1, Request::ReadInputRegisters(a, n)) => {
                let reg = |addr: u16| -> Option<u16> {
                    match addr {
                        0x0010..=0x002F => {
                            let ch = (addr - 0x0010) / 2;
                            let count = if ch == 4 { w.parts } else { 0 };
                            Some(if addr % 2 == 0 {
                                (count >> 16) as u16
                            } else {
                                count as u16
                            })
                        }
                        0x0030 => Some(
                            di.iter()
                                .enumerate()
                                .fold(0u16, |acc, (i, on)| acc | u16::from(*on) << i),
                        ),
                        _ => None,
                    }
                };
                registers(a, n, reg).map(Response::ReadInputRegisters)
            }
            (2, Request::ReadInputRegisters(a, n)) => {
                let raw = (w.spindle_amps() / 50.0 * 65535.0)
                    .round()
                    .clamp(0.0, 65535.0) as u16;
                registers(a, n, |addr| {
                    (addr < 8).then_some(if addr == 0 { raw } else { 0 })
                })
                .map(Response::ReadInputRegisters)
            }
            (1 | 2, Request::ReadHoldingRegisters(..) | Request::ReadCoils(..)) => {
                Err(ExceptionCode::IllegalDataAddress)
            }
            (1 | 2, _) => Err(ExceptionCode::IllegalFunction),
            _ => Err(ExceptionCode::GatewayTargetDevice),
        }
    }
}

/// `count` registers from `start`, each from `reg`; exception 2 where one is missing.
fn registers(
    start: u16,
    count: u16,
    reg: impl Fn(u16) -> Option<u16>,
) -> Result<Vec<u16>, ExceptionCode> {
    if count == 0 || u32::from(start) + u32::from(count) > 0x1_0000 {
        return Err(ExceptionCode::IllegalDataAddress);
    }
    (start..=start + (count - 1))
        .map(|a| reg(a).ok_or(ExceptionCode::IllegalDataAddress))
        .collect()
}

impl Service for Module {
    type Request = SlaveRequest<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        ready(self.read(req.slave, req.request))
    }
}

/// Serves machine `machine`'s retrofit module on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    shop: SimShop,
    machine: usize,
    shutdown: CancellationToken,
) {
    let wiring = Arc::new(Mutex::new(Wiring::default()));
    let follower = tokio::spawn(super::shop::follow(
        shop.clone(),
        machine,
        wiring.clone(),
        shutdown.clone(),
    ));
    let module = Arc::new(Module {
        wiring,
        shop,
        machine,
    });
    let on_connected = |stream, addr| {
        let module = module.clone();
        async move { accept_tcp_connection(stream, addr, |_| Ok(Some(module.clone()))) }
    };
    let server = Server::new(listener);
    let stop = shutdown.clone();
    let result = server
        .serve_until(
            &on_connected,
            |e| tracing::debug!(error = %e, "Modbus face: a client's connection failed"),
            async move { stop.cancelled().await },
        )
        .await;
    if let Err(e) = result {
        tracing::warn!(machine, error = %e, "Modbus face stopped");
    }
    let _ = follower.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;

    fn v(s: &str) -> FaceValue {
        FaceValue::Value(Value::text(s))
    }

    #[test]
    fn the_lamps_follow_the_machine() {
        let mut w = Wiring::default();
        let t = Timestamp::from_micros(0);
        assert_eq!(w.inputs(0), [false; 5]);
        w.apply(signals::AVAILABILITY, &v("AVAILABLE"), t);
        w.apply(signals::EXECUTION, &v("READY"), t);
        assert_eq!(w.inputs(0), [false, true, false, false, false]);
        w.apply(signals::EXECUTION, &v("ACTIVE"), t);
        assert_eq!(w.inputs(0), [false, false, true, true, false]);
        w.apply(signals::EXECUTION, &v("FEED_HOLD"), t);
        // Amber flashes at 1 Hz; the cycle relay stays closed.
        assert_eq!(w.inputs(0), [false, true, false, true, false]);
        assert_eq!(w.inputs(600_000), [false, false, false, true, false]);
        w.apply(
            signals::ALARM,
            &FaceValue::Condition {
                level: ConditionLevel::Fault,
                native_code: None,
                message: None,
            },
            t,
        );
        assert!(w.inputs(0)[0]);
        assert_eq!(w.spindle_amps(), 2.0);
    }
}
