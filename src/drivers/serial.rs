//! Serial lines (RS-232 to a Haas control, RS-485 to Modbus RTU devices), opened through
//! tokio-serial with the settings the device expects.

use super::poll::LinkError;

/// A serial line's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialSettings {
    pub port: String,
    pub baud: u32,
    pub data_bits: u8,
    pub parity: Parity,
    pub stop_bits: u8,
    pub flow: Flow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    None,
    /// XON/XOFF (software).
    Software,
    /// RTS/CTS (hardware).
    Hardware,
}

/// Opens a serial port with the device's settings.
pub fn open_serial(s: &SerialSettings) -> Result<tokio_serial::SerialStream, LinkError> {
    use tokio_serial::SerialPortBuilderExt;
    let data_bits = match s.data_bits {
        5 => tokio_serial::DataBits::Five,
        6 => tokio_serial::DataBits::Six,
        7 => tokio_serial::DataBits::Seven,
        _ => tokio_serial::DataBits::Eight,
    };
    let parity = match s.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Even => tokio_serial::Parity::Even,
        Parity::Odd => tokio_serial::Parity::Odd,
    };
    let stop_bits = if s.stop_bits == 2 {
        tokio_serial::StopBits::Two
    } else {
        tokio_serial::StopBits::One
    };
    let flow = match s.flow {
        Flow::None => tokio_serial::FlowControl::None,
        Flow::Software => tokio_serial::FlowControl::Software,
        Flow::Hardware => tokio_serial::FlowControl::Hardware,
    };
    tokio_serial::new(&s.port, s.baud)
        .data_bits(data_bits)
        .parity(parity)
        .stop_bits(stop_bits)
        .flow_control(flow)
        .open_native_async()
        .map_err(|e| LinkError::new(format!("cannot open serial port {}: {e}", s.port)))
}
