//! A simulated Fanuc control's FOCAS/Ethernet port: the FOCAS face of one [`SimShop`] machine.
//!
//! [`serve`] is what a Fanuc control with FOCAS2 over Ethernet opens (TCP 8193 on a real one):
//! open, close and request packets in the wire format of [`crate::drivers::focas::wire`],
//! each request's sub-requests answered in order in one response packet (written with one
//! write, so that a client reading one `recv` gets it whole, as `pyfocas` does). A control
//! serves a few FOCAS clients at once; here [`MAX_CLIENTS`], a further one is hung up on.
//!
//! The shop's Fanuc machines (the Robodrills, family `fanuc-mtconnect`) get this face when
//! `shopbridge simulate --focas-base-port` (or [`super::serve::Ports::focas_base`]) asks for
//! it; they alternate between a 0i-F (even Fanuc machines: the first, third …) and a 30i-B
//! (odd ones), so that both series are exercised.
//!
//! What the control says follows the shop's simulation of the machine:
//!
//! - `cnc_sysinfo` (0x18): 0i-F `cnc_type "0"`, `max_axis 8`, series `D4F1`; 30i-B
//!   `cnc_type "30"`, `max_axis 32`, series `G002`; machining centre (`M`), three axes;
//! - `cnc_statinfo` (0x19, the 14-byte form): `aut` MEM/MDI/EDIT/JOG from the controller
//!   mode; `run` STRT while ACTIVE, HOLD in a feed hold or an interruption, STOP when
//!   stopped, `****` (0) otherwise; `motion` 1 while ACTIVE; `emergency` 1 while the e-stop
//!   is pressed; `alarm` 1 while an alarm is active;
//! - `cnc_rdprgnum` (0x1C): the program's number (`O4417` → 4417) as running and main;
//! - the main program's path (0xB9): `//CNC_MEM/USER/PATH1/O4417` on a 30i; `EW_FUNC` on a 0i;
//! - `cnc_rdparam` (0x0E): 6711 parts machined (the shop's part count), 6712 total parts,
//!   6713 parts required (0); other numbers `EW_NUMBER`;
//! - `cnc_rdmacro` (0x15): `#3027` spindle speed, `#3901` parts machined, `#500`–`#999`
//!   (common variables kept at power-off: `#500` holds 12.5, the rest 0), `#1`–`#33` and
//!   `#100`–`#199` vacant; other numbers `EW_NUMBER`;
//! - `cnc_alarm` (0x1A) and `cnc_rdalmmsg` (0x23): the machine's alarm, typed by its text
//!   (servo `SV`, spindle `SP`, over-travel `OT`, coolant or lube `EX`, otherwise `PS`),
//!   32 message bytes on a 0i, 64 on a 30i;
//! - `cnc_wrmacro` (0xA8): `EW_ATTRIB` (this face is read-only); anything else `EW_FUNC`.
//!
//! While the machine is switched off (availability UNAVAILABLE) the control does not answer:
//! connections are hung up on, as a powered-down control's would be refused.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::shop::{FaceValue, SimShop};
use crate::drivers::focas::wire::{
    self, Alarm, Framer, Packet, Param, StatInfo, SubRequest, SubResponse, SysInfo, ew, func,
};
use crate::model::{ConditionLevel, Timestamp, signals};

/// The FOCAS clients the simulated control serves at once.
pub const MAX_CLIENTS: usize = 5;

/// Which series the control is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Series {
    /// 0i-F: 32-byte alarm messages, no path names.
    ZeroI,
    /// 30i-B: 64-byte alarm messages, path names.
    ThirtyI,
}

impl Series {
    /// The series of the `n`-th (0-based) Fanuc machine of the shop.
    pub fn of_fanuc(n: usize) -> Self {
        if n % 2 == 0 {
            Series::ZeroI
        } else {
            Series::ThirtyI
        }
    }

    fn alarm_msg(self) -> usize {
        match self {
            Series::ZeroI => wire::ALARM_MSG_0I,
            Series::ThirtyI => wire::ALARM_MSG_30I,
        }
    }
}

/// What the control knows, kept up to date from the shop's feed.
#[derive(Debug, Clone)]
pub struct Control {
    pub series: Series,
    available: bool,
    execution: String,
    mode: String,
    program: String,
    parts: i64,
    spindle: f64,
    alarm: Option<Alarm>,
    estop: bool,
    /// Parts made before the simulation (parameter 6712 counts on from it).
    parts_before: i64,
}

impl super::shop::Follow for Control {
    fn apply(&mut self, signal: &str, value: &FaceValue, at: Timestamp) {
        Control::apply(self, signal, value, at);
    }
}

/// The alarm type a message reads as.
fn alarm_kind(message: &str) -> i16 {
    let m = message.to_ascii_uppercase();
    if m.contains("SERVO") || m.contains("AMP") {
        6
    } else if m.contains("SPINDLE") {
        9
    } else if m.contains("TRAVEL") {
        4
    } else if m.contains("HEAT") {
        5
    } else if m.contains("COOLANT") || m.contains("LUBE") {
        15
    } else {
        3
    }
}

/// `O4417` → 4417 (the digits of a program name; 0 if none).
fn program_number(program: &str) -> i32 {
    let digits: String = program
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse::<i32>().unwrap_or(0)
}

impl Control {
    pub fn new(series: Series, index: usize) -> Self {
        Self {
            series,
            available: true,
            execution: "READY".into(),
            mode: "AUTOMATIC".into(),
            program: "O0001".into(),
            parts: 0,
            spindle: 0.0,
            alarm: None,
            estop: false,
            parts_before: 40_000 + index as i64 * 1_237,
        }
    }

    /// Applies the machine's changes (canonical signal, value).
    pub fn apply(&mut self, signal: &str, value: &FaceValue, _at: Timestamp) {
        match (signal, value) {
            (signals::AVAILABILITY, FaceValue::Value(v)) => {
                self.available = !v.to_string().eq_ignore_ascii_case("UNAVAILABLE");
            }
            (signals::EXECUTION, FaceValue::Value(v)) => self.execution = v.to_string(),
            (signals::CONTROLLER_MODE, FaceValue::Value(v)) => self.mode = v.to_string(),
            (signals::PROGRAM, FaceValue::Value(v)) if !v.is_unavailable() => {
                self.program = v.to_string();
            }
            (signals::PART_COUNT, FaceValue::Value(v)) => {
                if let Some(n) = v.as_i64() {
                    self.parts = n;
                }
            }
            (signals::SPINDLE_SPEED, FaceValue::Value(v)) => {
                self.spindle = v.as_f64().unwrap_or(0.0);
            }
            (signals::EMERGENCY_STOP, FaceValue::Value(v)) => {
                self.estop = v.to_string().eq_ignore_ascii_case("TRIGGERED");
            }
            (
                signals::ALARM,
                FaceValue::Condition {
                    level,
                    native_code,
                    message,
                },
            ) => {
                self.alarm = (*level == ConditionLevel::Fault).then(|| {
                    let message = message.clone().unwrap_or_default();
                    Alarm {
                        number: native_code
                            .as_deref()
                            .and_then(|c| c.trim().parse::<i32>().ok())
                            .unwrap_or(0)
                            .rem_euclid(10_000),
                        kind: alarm_kind(&message),
                        axis: 0,
                        message,
                    }
                });
            }
            _ => {}
        }
    }

    /// Whether the control is powered (answers at all).
    pub fn available(&self) -> bool {
        self.available
    }

    pub fn sysinfo(&self) -> SysInfo {
        let (cnc_type, max_axis, series, version) = match self.series {
            Series::ZeroI => ("0", 8, "D4F1", "30.0"),
            Series::ThirtyI => ("30", 32, "G002", "24.0"),
        };
        SysInfo {
            addinfo: 0,
            max_axis,
            cnc_type: cnc_type.into(),
            mt_type: "M".into(),
            series: series.into(),
            version: version.into(),
            axes: "03".into(),
        }
    }

    pub fn statinfo(&self) -> StatInfo {
        let aut = match self.mode.as_str() {
            "MANUAL_DATA_INPUT" => 0,
            "EDIT" => 3,
            "MANUAL" => 5,
            _ => 1,
        };
        let run = match self.execution.as_str() {
            "ACTIVE" => 3,
            "FEED_HOLD" | "INTERRUPTED" => 2,
            "STOPPED" | "OPTIONAL_STOP" | "PROGRAM_STOPPED" => 1,
            _ => 0,
        };
        StatInfo {
            aut,
            run,
            motion: u16::from(self.execution == "ACTIVE"),
            mstb: 0,
            emergency: u16::from(self.estop),
            alarm: u16::from(self.alarm.is_some()),
            edit: 0,
        }
    }

    fn macro_value(&self, n: i32) -> Result<Option<f64>, i16> {
        match n {
            3027 => Ok(Some(self.spindle)),
            3901 => Ok(Some(self.parts as f64)),
            500 => Ok(Some(12.5)),
            501..=999 => Ok(Some(0.0)),
            1..=33 | 100..=199 => Ok(None),
            _ => Err(ew::NUMBER),
        }
    }

    fn param(&self, n: i32) -> Option<i32> {
        let clamp = |v: i64| i32::try_from(v).unwrap_or(i32::MAX);
        match n {
            6711 => Some(clamp(self.parts)),
            6712 => Some(clamp(self.parts_before + self.parts)),
            6713 => Some(0),
            _ => None,
        }
    }

    /// The answer to one sub-request.
    pub fn answer(&self, req: &SubRequest) -> SubResponse {
        if req.device != wire::DEVICE_CNC || req.function >> 16 != 1 {
            return SubResponse::error(req, ew::FUNC);
        }
        let [a0, a1, ..] = req.args;
        let data = match req.code() {
            func::SYSINFO => self.sysinfo().encode(),
            func::STATINFO => self.statinfo().encode(),
            func::PROGRAM_NUMBER => {
                let n = program_number(&self.program);
                wire::encode_program_number(n, n)
            }
            func::PROGRAM_NAME => match self.series {
                Series::ZeroI => return SubResponse::error(req, ew::FUNC),
                Series::ThirtyI => {
                    let mut b =
                        format!("//CNC_MEM/USER/PATH1/O{:04}", program_number(&self.program))
                            .into_bytes();
                    b.resize(64, 0);
                    b
                }
            },
            func::MACRO => {
                if a1 < a0 || i64::from(a1) - i64::from(a0) >= 100 {
                    return SubResponse::error(req, ew::LENGTH);
                }
                let mut out = Vec::new();
                for n in a0..=a1 {
                    match self.macro_value(n) {
                        Ok(v) => out.extend_from_slice(&wire::encode_scaled(v)),
                        Err(e) => return SubResponse::error(req, e),
                    }
                }
                out
            }
            func::PARAM => {
                if a1 < a0 || i64::from(a1) - i64::from(a0) >= 10 {
                    return SubResponse::error(req, ew::LENGTH);
                }
                let slots = usize::try_from(self.sysinfo().max_axis).unwrap_or(1);
                let mut out = Vec::new();
                for n in a0..=a1 {
                    let Some(value) = self.param(n) else {
                        return SubResponse::error(req, ew::NUMBER);
                    };
                    let p = Param {
                        number: n.unsigned_abs(),
                        axis: 0,
                        kind: 3,
                        value,
                    };
                    out.extend(p.encode(slots));
                }
                out
            }
            func::ALARM_STATUS => {
                let mask = self.alarm.as_ref().map_or(0i32, |a| 1i32 << a.kind);
                mask.to_be_bytes().to_vec()
            }
            func::ALARM_MESSAGES => {
                let wanted = |a: &&Alarm| a0 == -1 || i32::from(a.kind) == a0;
                let alarms: Vec<Alarm> = self
                    .alarm
                    .iter()
                    .filter(wanted)
                    .take(usize::try_from(a1).unwrap_or(0))
                    .cloned()
                    .collect();
                wire::encode_alarms(&alarms, self.series.alarm_msg())
            }
            func::WRITE_MACRO => return SubResponse::error(req, ew::ATTRIB),
            _ => return SubResponse::error(req, ew::FUNC),
        };
        SubResponse::ok(req, data)
    }
}

/// One machine's control, shared by its clients and kept current by the shop's feed.
pub type SharedControl = Arc<Mutex<Control>>;

/// Serves machine `machine`'s FOCAS port on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    shop: SimShop,
    machine: usize,
    series: Series,
    shutdown: CancellationToken,
) {
    let Some(m) = shop.machines().get(machine) else {
        tracing::error!(
            machine,
            "FOCAS face: the shop has no such machine; not serving"
        );
        return;
    };
    let id = m.id.clone();
    let control = Arc::new(Mutex::new(Control::new(series, machine)));
    let clients = TaskTracker::new();
    clients.spawn(super::shop::follow(
        shop.clone(),
        machine,
        control.clone(),
        shutdown.clone(),
    ));
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks = clients.clone();
    super::serve::accept_loop(listener, "focas", &shutdown, &clients, |stream, peer| {
        if open.load(std::sync::atomic::Ordering::SeqCst) >= MAX_CLIENTS {
            tracing::debug!(machine = %id, %peer, "FOCAS face: client over the limit refused");
            return;
        }
        open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _ = stream.set_nodelay(true);
        let (control, stop, open) = (control.clone(), shutdown.clone(), open.clone());
        tasks.spawn(async move {
            let _ = answer(stream, &control, stop).await;
            open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        });
    })
    .await;
}

/// Answers packets on one stream until it closes, a close packet, unreadable input or `stop`.
pub async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    control: &SharedControl,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let mut buf = [0u8; 4096];
    let mut framer = Framer::new();
    loop {
        loop {
            let packet = match framer.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => break,
                // Not FOCAS: a control drops such a client.
                Err(_) => return Ok(()),
            };
            let (available, reply) = {
                let c = match control.lock() {
                    Ok(c) => c,
                    Err(p) => p.into_inner(),
                };
                (c.available(), reply(&c, &packet))
            };
            if !available {
                return Ok(());
            }
            let Some(reply) = reply else { return Ok(()) };
            stream.write_all(&reply.encode()).await?;
            if reply.kind == wire::CLOSE_RESPONSE {
                return Ok(());
            }
        }
        let n = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            r = stream.read(&mut buf) => r?,
        };
        if n == 0 {
            return Ok(());
        }
        framer.push(&buf[..n]);
    }
}

/// The control's answer to one packet; `None` hangs up.
pub fn reply(c: &Control, p: &Packet) -> Option<Packet> {
    let answer = |kind, body| Some(Packet::new(wire::VERSION_CONTROL, kind, body));
    match p.kind {
        wire::OPEN_REQUEST => answer(wire::OPEN_RESPONSE, vec![0, 1, 0, 2, 0, 0]),
        wire::CLOSE_REQUEST => answer(wire::CLOSE_RESPONSE, Vec::new()),
        wire::REQUEST => {
            let subs = wire::decode_requests(&p.body).ok()?;
            let out: Vec<SubResponse> = subs.iter().map(|s| c.answer(s)).collect();
            answer(wire::RESPONSE, wire::encode_responses(&out))
        }
        _ => None,
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
        let t = Timestamp::from_micros(0);
        let mut c = Control::new(Series::ZeroI, 4);
        c.apply(signals::PROGRAM, &v("O4417"), t);
        c.apply(signals::PART_COUNT, &FaceValue::Value(Value::Int(12)), t);
        c.apply(signals::EXECUTION, &v("ACTIVE"), t);
        c.apply(
            signals::SPINDLE_SPEED,
            &FaceValue::Value(Value::Float(4500.0)),
            t,
        );
        let st = StatInfo::decode(&c.answer(&SubRequest::cnc(func::STATINFO, &[])).data);
        assert_eq!(st.map(|s| (s.aut, s.run, s.motion)), Ok((1, 3, 1)));
        let pn = c.answer(&SubRequest::cnc(func::PROGRAM_NUMBER, &[]));
        assert_eq!(wire::decode_program_number(&pn.data), Ok((4417, 4417)));
        assert_eq!(
            c.answer(&SubRequest::cnc(func::PROGRAM_NAME, &[])).error,
            ew::FUNC
        );
        let p = c.answer(&SubRequest::cnc(func::PARAM, &[6711, 6711, 0]));
        assert_eq!(Param::decode(&p.data).map(|p| p.value), Ok(12));
        assert_eq!(p.data.len(), 8 + 4 * 8);
        assert_eq!(
            c.answer(&SubRequest::cnc(func::PARAM, &[6799, 6799, 0]))
                .error,
            ew::NUMBER
        );
        let m = c.answer(&SubRequest::cnc(func::MACRO, &[3027, 3027]));
        assert_eq!(wire::decode_scaled(&m.data), Ok(Some(4500.0)));
        let m = c.answer(&SubRequest::cnc(func::MACRO, &[100, 100]));
        assert_eq!(wire::decode_scaled(&m.data), Ok(None));
        c.apply(
            signals::ALARM,
            &FaceValue::Condition {
                level: ConditionLevel::Fault,
                native_code: Some("1401".into()),
                message: Some("X SERVO AMP ERROR".into()),
            },
            t,
        );
        let a = c.answer(&SubRequest::cnc(func::ALARM_MESSAGES, &[-1, 10]));
        let alarms = wire::decode_alarms(&a.data, wire::ALARM_MSG_0I).unwrap_or_default();
        assert_eq!(alarms.first().map(Alarm::code), Some("SV1401".to_string()));
        assert_eq!(c.statinfo().alarm, 1);
        assert_eq!(c.answer(&SubRequest::cnc(0x77, &[])).error, ew::FUNC);
        // Ranges from a client are checked, not trusted.
        for args in [[i32::MIN, i32::MAX], [5, 1], [500, 700]] {
            assert_eq!(
                c.answer(&SubRequest::cnc(func::MACRO, &args)).error,
                ew::LENGTH
            );
            assert_eq!(
                c.answer(&SubRequest::cnc(func::PARAM, &args)).error,
                ew::LENGTH
            );
        }
        let mut thirty = Control::new(Series::ThirtyI, 12);
        thirty.apply(signals::PROGRAM, &v("O4417"), t);
        let name = thirty.answer(&SubRequest::cnc(func::PROGRAM_NAME, &[]));
        assert_eq!(
            wire::decode_program_name(&name.data),
            "//CNC_MEM/USER/PATH1/O4417"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_request_gets_an_answer_not_a_panic(
            device in 0u16..4,
            code in 0u16..0x100,
            args in proptest::prelude::any::<[i32; 5]>(),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
        ) {
            for series in [Series::ZeroI, Series::ThirtyI] {
                let c = Control::new(series, 0);
                let req = SubRequest { device, function: func::wire(code), args, extra: vec![] };
                let a = c.answer(&req);
                proptest::prop_assert_eq!(a.function, req.function);
                let _ = reply(&c, &Packet::new(1, wire::REQUEST, body.clone()));
            }
        }
    }
}
