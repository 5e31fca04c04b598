//! Modbus TCP and RTU (tokio-modbus): PLCs, and the I/O modules wired to legacy machines
//! (stack lights, cycle relays, spindle current sensors).
//!
//! The register map comes from the machine's profile (`[[register]]`, see
//! `profiles/README.md`): each item is read with function code 1, 2, 3 or 4, neighbours
//! coalesced into as few requests as the PDU allows ([`map::plan`]), decoded (type, word and
//! byte order, bit, scale and offset) and journaled under its key. The shared polling runner
//! ([`super::poll`]) owns the interval, reconnects and report by exception.
//!
//! Errors, kept apart as tokio-modbus keeps them: a Modbus exception is the device's answer
//! about those registers, so they become Bad with the code (`modbus exception 2 (illegal data
//! address)`) and polling goes on; a coalesced request that draws an exception is split into
//! one request per item for the rest of the connection, so one refused register does not hide
//! its neighbours. A transport or protocol error, or no answer within the timeout, ends the
//! connection and the runner reconnects with backoff.
//!
//! Only reads: no profile writes to a device yet.

pub mod map;

use std::sync::Arc;
use std::time::Duration;

use tokio_modbus::client::{Context, Reader};
use tokio_modbus::prelude::{SlaveContext, rtu, tcp};
use tokio_modbus::{ExceptionCode, Slave};

use super::poll::{LinkError, Poller, Readings};
use super::serial::{SerialSettings, open_serial};
use crate::model::{Quality, QualityReason, SignalId};
use map::{Block, Register, Table};

/// How the device is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Modbus TCP, `host:port` (usually 502).
    Tcp(String),
    /// Modbus RTU over a serial line (RS-485 or RS-232).
    Rtu(SerialSettings),
}

/// One Modbus device (or a gateway with several units), as the driver polls it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModbusSpec {
    pub transport: Transport,
    /// The unit (slave) id of items that do not name their own.
    pub unit: u8,
    /// How long one request may take.
    pub timeout: Duration,
    /// The profile's register map.
    pub map: Arc<[Register]>,
}

impl ModbusSpec {
    pub fn source(&self) -> String {
        match &self.transport {
            Transport::Tcp(a) => a.clone(),
            Transport::Rtu(s) => s.port.clone(),
        }
    }
}

/// A Modbus exception as people read it: `modbus exception 2 (illegal data address)`.
pub fn exception_text(e: ExceptionCode) -> String {
    format!(
        "modbus exception {} ({})",
        u8::from(e),
        e.to_string().to_lowercase()
    )
}

/// The Modbus poller.
pub struct Modbus {
    spec: ModbusSpec,
    source: String,
    keys: Vec<SignalId>,
    /// The read plan of the current connection (split where a device refused a block).
    plan: Vec<Block>,
}

impl Modbus {
    pub fn new(spec: ModbusSpec) -> Self {
        let keys = spec.map.iter().map(|r| SignalId::new(&r.key)).collect();
        Self {
            source: spec.source(),
            plan: map::plan(&spec.map),
            keys,
            spec,
        }
    }

    /// The requests one poll makes (after coalescing).
    pub fn requests(&self) -> usize {
        self.plan.len()
    }

    /// Reads block `b`; `Ok(Err(..))` is the device's exception.
    async fn read(
        &self,
        ctx: &mut Context,
        b: &Block,
    ) -> Result<Result<Vec<u16>, ExceptionCode>, LinkError> {
        ctx.set_slave(Slave(b.unit.unwrap_or(self.spec.unit)));
        let bits = |v: Vec<bool>| v.into_iter().map(u16::from).collect::<Vec<u16>>();
        let call = async {
            match b.table {
                Table::Coil => ctx.read_coils(b.start, b.count).await.map(|r| r.map(bits)),
                Table::DiscreteInput => ctx
                    .read_discrete_inputs(b.start, b.count)
                    .await
                    .map(|r| r.map(bits)),
                Table::Holding => ctx.read_holding_registers(b.start, b.count).await,
                Table::Input => ctx.read_input_registers(b.start, b.count).await,
            }
        };
        let what = || {
            format!(
                "function {} at {} ({} {}) of unit {} on {}",
                b.table.function_code(),
                b.start,
                b.count,
                if b.table.is_bits() {
                    "bits"
                } else {
                    "registers"
                },
                b.unit.unwrap_or(self.spec.unit),
                self.source
            )
        };
        match tokio::time::timeout(self.spec.timeout, call).await {
            Err(_) => Err(LinkError::new(format!(
                "no answer to {} within {} ms",
                what(),
                self.spec.timeout.as_millis()
            ))),
            Ok(Err(e)) => Err(LinkError::new(format!("{}: {e}", what()))),
            Ok(Ok(r)) => Ok(r),
        }
    }
}

impl Poller for Modbus {
    type Link = Context;

    fn source(&self) -> &str {
        &self.source
    }

    async fn connect(&mut self) -> Result<Context, LinkError> {
        // A new connection starts from the coalesced plan again (the device may have changed).
        self.plan = map::plan(&self.spec.map);
        let slave = Slave(self.spec.unit);
        match &self.spec.transport {
            Transport::Tcp(addr) => {
                let stream = tokio::net::TcpStream::connect(addr.as_str())
                    .await
                    .map_err(|e| match e.kind() {
                        std::io::ErrorKind::ConnectionRefused => {
                            LinkError::new(format!("connection refused by {addr}"))
                        }
                        _ => LinkError::new(format!("cannot connect to {addr}: {e}")),
                    })?;
                let _ = stream.set_nodelay(true);
                Ok(tcp::attach_slave(stream, slave))
            }
            Transport::Rtu(s) => Ok(rtu::attach_slave(open_serial(s)?, slave)),
        }
    }

    async fn poll(&mut self, link: &mut Context, out: &mut Readings) -> Result<(), LinkError> {
        let mut i = 0;
        while i < self.plan.len() {
            let b = self.plan[i].clone();
            let answer = self.read(link, &b).await?;
            out.replies += 1;
            match answer {
                Ok(words) => {
                    // MBAP/RTU framing plus the data, near enough for a byte count.
                    out.bytes += 9 + words.len() as u64 * if b.table.is_bits() { 1 } else { 2 };
                    for &item in &b.items {
                        let r = &self.spec.map[item];
                        let from = usize::from(r.address - b.start);
                        let key = &self.keys[item];
                        match words.get(from..).map(|w| r.decode(w)) {
                            Some(Ok(v)) => out.good(key, v),
                            Some(Err(why)) => out.push(
                                key,
                                crate::model::Value::text(&why),
                                Quality::Bad(QualityReason::DecodeError),
                            ),
                            None => out.bad(key, "the device returned fewer values than asked"),
                        }
                    }
                    i += 1;
                }
                Err(e) if b.items.len() > 1 => {
                    // Find the refused item: read each on its own from now on.
                    tracing::debug!(source = %self.source, start = b.start, count = b.count, exception = %e, "a coalesced read was refused; reading its items one by one");
                    let singles: Vec<Block> = b
                        .items
                        .iter()
                        .map(|&item| {
                            let r = &self.spec.map[item];
                            Block {
                                unit: b.unit,
                                table: b.table,
                                start: r.address,
                                count: r.data_type.width(),
                                items: vec![item],
                            }
                        })
                        .collect();
                    self.plan.splice(i..=i, singles);
                }
                Err(e) => {
                    for &item in &b.items {
                        out.bad(&self.keys[item], exception_text(e));
                    }
                    i += 1;
                }
            }
        }
        Ok(())
    }
}
