use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A signal's value as the source gave it. `Unavailable` is MTConnect's UNAVAILABLE: the source
/// says it does not know; it is a value, not an error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(Arc<str>),
    #[serde(with = "unavailable")]
    Unavailable,
}

mod unavailable {
    pub fn serialize<S: serde::Serializer>(s: S) -> Result<S::Ok, S::Error> {
        s.serialize_none()
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<(), D::Error> {
        let v: Option<()> = serde::Deserialize::deserialize(d)?;
        match v {
            None => Ok(()),
            Some(()) => Err(serde::de::Error::custom("expected null")),
        }
    }
}

impl Value {
    pub fn text(s: &str) -> Self {
        Value::Text(Arc::from(s))
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Unavailable => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Float(f) if f.is_finite() && f.fract() == 0.0 => Some(*f as i64),
            Value::Float(_) => None,
            Value::Bool(b) => Some(i64::from(*b)),
            Value::Text(s) => s.trim().parse().ok(),
            Value::Unavailable => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            Value::Text(s) => s.trim().parse().ok(),
            Value::Unavailable => None,
        }
    }
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Value::Unavailable)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Text(s) => f.write_str(s),
            Value::Unavailable => f.write_str("UNAVAILABLE"),
        }
    }
}

/// Why a value is not fully trusted. Stored as a small code; new reasons append at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QualityReason {
    /// The link to the machine is down; the value is the last one known.
    LinkLost,
    /// The machine reported it does not know (MTConnect UNAVAILABLE).
    SourceUnavailable,
    /// The device answered with an error for this item (a Modbus exception, a Haas `?`).
    DeviceError,
    /// The value could not be decoded as the profile says it should be.
    DecodeError,
    /// The value is stale: not refreshed within its expected period.
    Stale,
    /// The value is outside the range the profile allows.
    OutOfRange,
    /// The source's clock disagreed with ours by more than the alignment allows.
    ClockSuspect,
    /// Any other reason; the record's text says more.
    Other,
}

impl QualityReason {
    pub const ALL: [QualityReason; 8] = [
        QualityReason::LinkLost,
        QualityReason::SourceUnavailable,
        QualityReason::DeviceError,
        QualityReason::DecodeError,
        QualityReason::Stale,
        QualityReason::OutOfRange,
        QualityReason::ClockSuspect,
        QualityReason::Other,
    ];
    pub fn code(self) -> u8 {
        self as u8
    }
    pub fn from_code(c: u8) -> Option<Self> {
        Self::ALL.get(usize::from(c)).copied()
    }
}

/// Quality of a value, as OPC UA and Sparkplug understand it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case", tag = "quality", content = "reason")]
pub enum Quality {
    #[default]
    Good,
    Uncertain(QualityReason),
    Bad(QualityReason),
}

impl Quality {
    pub fn is_good(&self) -> bool {
        matches!(self, Quality::Good)
    }
}
