//! The Modbus driver over RTU: the driver opens the slave side of a pseudo-terminal by its path,
//! as it would open /dev/ttyUSB0 to an RS-485 adapter, and a small Modbus RTU device of ours
//! answers on the master side in the real framing (unit, function, data, CRC-16). The driver's
//! framing is tokio-modbus's, so the two sides are independent implementations of the wire
//! format.

mod common;

use std::time::Duration;

use shopbridge::clock::Clock;
use shopbridge::drivers::modbus::{Modbus, ModbusSpec, Transport};
use shopbridge::drivers::poll::{self, Timing};
use shopbridge::drivers::serial::{Flow, Parity, SerialSettings};
use shopbridge::drivers::{DriverContext, DriverCounters, DriverEvent};
use shopbridge::model::{LinkStatus, MachineId, Quality, QualityReason, Value};
use shopbridge::normalize::profile::{ProfileSource, load_str};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Modbus CRC-16 (polynomial 0xA001 reflected, initial 0xFFFF), sent low byte first.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = 0xFFFFu16;
    for b in bytes {
        crc ^= u16::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

fn framed(mut pdu: Vec<u8>) -> Vec<u8> {
    let crc = crc16(&pdu);
    pdu.extend_from_slice(&crc.to_le_bytes());
    pdu
}

/// Unit 7: holding registers 0-99 hold 1000 + address; anything else is exception 2. Other
/// units do not answer (as on a real bus).
fn answer(req: &[u8]) -> Option<Vec<u8>> {
    let (unit, fc) = (req[0], req[1]);
    let addr = u16::from_be_bytes([req[2], req[3]]);
    let count = u16::from_be_bytes([req[4], req[5]]);
    if unit != 7 {
        return None;
    }
    if fc != 3 || u32::from(addr) + u32::from(count) > 100 {
        return Some(framed(vec![unit, fc | 0x80, 2]));
    }
    let mut pdu = vec![unit, fc, (count * 2) as u8];
    for a in addr..addr + count {
        pdu.extend_from_slice(&(1000 + a).to_be_bytes());
    }
    Some(framed(pdu))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modbus_rtu_on_a_pseudo_terminal() {
    let (mut master, slave, path) = common::pty();
    let device = tokio::spawn(async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 256];
        loop {
            let Ok(n) = master.read(&mut chunk).await else {
                return;
            };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            // Requests for functions 1-4 are 8 bytes; resynchronize on a bad CRC.
            while buf.len() >= 8 {
                let req: Vec<u8> = buf.drain(..8).collect();
                if crc16(&req[..6]).to_le_bytes() != [req[6], req[7]] {
                    buf.clear();
                    break;
                }
                if let Some(reply) = answer(&req) {
                    if master.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            }
        }
    });

    let profile = load_str(
        "rtu-test",
        r#"
[[register]]
key = "first"
table = "holding"
address = 0

[[register]]
key = "pair"
table = "holding"
address = 1
type = "u32"

[[register]]
key = "beyond"
table = "holding"
address = 100
"#,
        &ProfileSource::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let spec = ModbusSpec {
        transport: Transport::Rtu(SerialSettings {
            port: path,
            baud: 19_200,
            data_bits: 8,
            parity: Parity::Even,
            stop_bits: 1,
            flow: Flow::None,
        }),
        unit: 7,
        timeout: Duration::from_secs(2),
        map: profile.registers.clone().into(),
    };
    let (tx, mut rx) = mpsc::channel(64);
    let stop = CancellationToken::new();
    let ctx = DriverContext {
        machines: vec![MachineId::new("rtu-1").unwrap_or_else(|e| panic!("{e}"))],
        tx,
        shutdown: stop.clone(),
        clock: Clock::system(),
        counters: DriverCounters::new("modbus", "rtu"),
    };
    let timing = Timing {
        interval: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(2),
    };
    tokio::spawn(poll::run(Modbus::new(spec), timing, ctx));
    let mut got: Vec<DriverEvent> = Vec::new();
    let find = |got: &[DriverEvent], key: &str| {
        got.iter().find_map(|e| match e {
            DriverEvent::Observation(o) if o.key.as_str() == key => {
                Some((o.value.clone(), o.quality))
            }
            _ => None,
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while find(&got, "beyond").is_none() || find(&got, "pair").is_none() {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(batch)) => got.extend(batch),
            _ => break,
        }
    }
    stop.cancel();
    device.abort();
    drop(slave);
    assert_eq!(
        find(&got, "first"),
        Some((Value::Int(1000), Quality::Good)),
        "{got:#?}"
    );
    assert_eq!(
        find(&got, "pair"),
        Some((Value::Int(1001 << 16 | 1002), Quality::Good))
    );
    assert_eq!(
        find(&got, "beyond"),
        Some((
            Value::text("modbus exception 2 (illegal data address)"),
            Quality::Bad(QualityReason::DeviceError)
        ))
    );
    assert!(
        !got.iter().any(|e| matches!(
            e,
            DriverEvent::Link {
                status: LinkStatus::Lost,
                ..
            }
        )),
        "{got:#?}"
    );
}
