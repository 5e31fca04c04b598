//! OPC UA values as raw observations: a `DataValue`'s variant, status and source time.

use opcua::types::{DataValue, DateTime, Variant};

use crate::model::{Quality, QualityReason, Timestamp, Value};

/// Seconds from the OPC UA epoch (1601-01-01) to the Unix epoch.
const UA_EPOCH_OFFSET_SECS: i64 = 11_644_473_600;

/// A variant read as one of our values, or why it could not be.
#[derive(Debug, Clone, PartialEq)]
pub enum Converted {
    Value(Value),
    /// A structure or other type we do not read; the text names it.
    Undecodable(&'static str),
}

impl Converted {
    pub fn into_value(self) -> Value {
        match self {
            Converted::Value(v) => v,
            Converted::Undecodable(what) => Value::text(what),
        }
    }
}

/// The value and its quality. A Bad status carries no value (UNAVAILABLE); an Uncertain one
/// keeps its value with quality Uncertain.
pub fn from_data_value(dv: &DataValue) -> (Converted, Quality) {
    let status = dv.status.unwrap_or_default();
    if status.is_bad() {
        return (
            Converted::Value(Value::Unavailable),
            Quality::Bad(QualityReason::SourceUnavailable),
        );
    }
    let converted = match &dv.value {
        None => Converted::Value(Value::Unavailable),
        Some(v) => from_variant(v),
    };
    let quality = match (&converted, status.is_uncertain()) {
        (Converted::Undecodable(_), _) => Quality::Bad(QualityReason::DecodeError),
        (_, true) => Quality::Uncertain(QualityReason::SourceUnavailable),
        _ => Quality::Good,
    };
    (converted, quality)
}

/// Scalars become bool / int / float / text; arrays of scalars a text like `[1, 2, 3]`.
pub fn from_variant(v: &Variant) -> Converted {
    let value = match v {
        Variant::Empty => Value::Unavailable,
        Variant::Boolean(b) => Value::Bool(*b),
        Variant::SByte(i) => Value::Int(i64::from(*i)),
        Variant::Byte(i) => Value::Int(i64::from(*i)),
        Variant::Int16(i) => Value::Int(i64::from(*i)),
        Variant::UInt16(i) => Value::Int(i64::from(*i)),
        Variant::Int32(i) => Value::Int(i64::from(*i)),
        Variant::UInt32(i) => Value::Int(i64::from(*i)),
        Variant::Int64(i) => Value::Int(*i),
        Variant::UInt64(i) => match i64::try_from(*i) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Float(*i as f64),
        },
        Variant::Float(f) => Value::Float(f64::from(*f)),
        Variant::Double(f) => Value::Float(*f),
        Variant::String(s) => match s.value() {
            Some(s) => Value::text(s),
            None => Value::Unavailable,
        },
        Variant::LocalizedText(t) => match t.text.value() {
            Some(s) => Value::text(s),
            None => Value::Unavailable,
        },
        Variant::QualifiedName(q) => Value::text(q.name.as_ref()),
        Variant::NodeId(n) => Value::text(&n.to_string()),
        Variant::ExpandedNodeId(n) => Value::text(&n.to_string()),
        Variant::StatusCode(s) => Value::text(&s.to_string()),
        Variant::Guid(g) => Value::text(&g.to_string()),
        Variant::DateTime(d) => match to_timestamp(d) {
            Some(t) => Value::text(&t.to_string()),
            None => Value::Unavailable,
        },
        Variant::Variant(inner) => return from_variant(inner),
        Variant::DataValue(dv) => match &dv.value {
            Some(inner) => return from_variant(inner),
            None => Value::Unavailable,
        },
        Variant::Array(a) => {
            let mut parts = Vec::with_capacity(a.values.len());
            for item in &a.values {
                match from_variant(item) {
                    Converted::Value(Value::Text(t)) => parts.push(format!("{t:?}")),
                    Converted::Value(Value::Unavailable) => parts.push("null".to_string()),
                    Converted::Value(v) => parts.push(v.to_string()),
                    Converted::Undecodable(what) => return Converted::Undecodable(what),
                }
            }
            Value::text(&format!("[{}]", parts.join(", ")))
        }
        Variant::ByteString(_) => return Converted::Undecodable("ByteString"),
        Variant::XmlElement(_) => return Converted::Undecodable("XmlElement"),
        Variant::ExtensionObject(_) => return Converted::Undecodable("ExtensionObject"),
        Variant::DiagnosticInfo(_) => return Converted::Undecodable("DiagnosticInfo"),
    };
    Converted::Value(value)
}

/// The server's source timestamp (else its server timestamp), when it sent one.
pub fn source_time(dv: &DataValue) -> Option<Timestamp> {
    dv.source_timestamp
        .as_ref()
        .or(dv.server_timestamp.as_ref())
        .and_then(to_timestamp)
}

pub fn to_timestamp(d: &DateTime) -> Option<Timestamp> {
    if d.is_null() {
        return None;
    }
    let micros = d.ticks() / 10 - UA_EPOCH_OFFSET_SECS * 1_000_000;
    Some(Timestamp::from_micros(micros))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opcua::types::{LocalizedText, StatusCode};

    #[test]
    fn scalars_and_arrays() {
        assert_eq!(
            from_variant(&Variant::Int32(2)),
            Converted::Value(Value::Int(2))
        );
        assert_eq!(
            from_variant(&Variant::Double(1.5)),
            Converted::Value(Value::Float(1.5))
        );
        assert_eq!(
            from_variant(&Variant::Boolean(true)),
            Converted::Value(Value::Bool(true))
        );
        assert_eq!(
            from_variant(&Variant::LocalizedText(Box::new(LocalizedText::new(
                "en", "Running"
            )))),
            Converted::Value(Value::text("Running"))
        );
        assert_eq!(
            from_variant(&Variant::from(vec![1i32, 2, 3])),
            Converted::Value(Value::text("[1, 2, 3]"))
        );
        assert_eq!(
            from_variant(&Variant::from(vec!["a".to_string()])),
            Converted::Value(Value::text("[\"a\"]"))
        );
        assert_eq!(
            from_variant(&Variant::ByteString(vec![1u8].into())),
            Converted::Undecodable("ByteString")
        );
    }

    #[test]
    fn status_gives_quality() {
        let mut dv = DataValue::new_now(Variant::Int32(5));
        assert_eq!(
            from_data_value(&dv),
            (Converted::Value(Value::Int(5)), Quality::Good)
        );
        dv.status = Some(StatusCode::UncertainLastUsableValue);
        assert_eq!(
            from_data_value(&dv).1,
            Quality::Uncertain(QualityReason::SourceUnavailable)
        );
        dv.status = Some(StatusCode::BadNotConnected);
        assert_eq!(
            from_data_value(&dv),
            (
                Converted::Value(Value::Unavailable),
                Quality::Bad(QualityReason::SourceUnavailable)
            )
        );
    }

    #[test]
    fn ua_time_to_unix() {
        let t = Timestamp::parse_rfc3339("2026-11-26T10:00:00.123456Z").unwrap();
        let ua = crate::northbound::opcua::feed::date_time(t);
        assert_eq!(to_timestamp(&ua), Some(t));
        assert_eq!(to_timestamp(&DateTime::null()), None);
    }
}
