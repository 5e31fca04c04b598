//! The Sparkplug B payload, written from the specification's payload description (Sparkplug
//! 3.0.0, chapter 6.4: field numbers and types are the specification's facts), encoded with
//! prost. proto2 semantics: every scalar is optional, so presence survives the round trip.
//!
//! Signed integers follow the specification: Int8, Int16 and Int32 travel in the `uint32`
//! `int_value` as their two's complement bit pattern, Int64 in the `uint64` `long_value`
//! likewise; [`MetricValue`] does the conversion both ways so that `-5` stays `-5`.

use prost::Message;

/// A whole Sparkplug B message body.
#[derive(Clone, PartialEq, Message)]
pub struct Payload {
    /// Milliseconds since the Unix epoch, when the message was made.
    #[prost(uint64, optional, tag = "1")]
    pub timestamp: Option<u64>,
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
    /// 0..=255, one counter per edge node (absent on NDEATH and commands).
    #[prost(uint64, optional, tag = "3")]
    pub seq: Option<u64>,
    #[prost(string, optional, tag = "4")]
    pub uuid: Option<String>,
    #[prost(bytes = "vec", optional, tag = "5")]
    pub body: Option<Vec<u8>>,
}

/// One metric: a name (births) or an alias (data), a type and a value.
#[derive(Clone, PartialEq, Message)]
pub struct Metric {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(uint64, optional, tag = "2")]
    pub alias: Option<u64>,
    /// Milliseconds since the Unix epoch, when the value was true.
    #[prost(uint64, optional, tag = "3")]
    pub timestamp: Option<u64>,
    /// A [`DataType`] code.
    #[prost(uint32, optional, tag = "4")]
    pub datatype: Option<u32>,
    #[prost(bool, optional, tag = "5")]
    pub is_historical: Option<bool>,
    #[prost(bool, optional, tag = "6")]
    pub is_transient: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    pub is_null: Option<bool>,
    #[prost(message, optional, tag = "8")]
    pub metadata: Option<MetaData>,
    #[prost(message, optional, tag = "9")]
    pub properties: Option<PropertySet>,
    #[prost(oneof = "Value", tags = "10, 11, 12, 13, 14, 15, 16, 17, 18")]
    pub value: Option<Value>,
}

/// A metric's value, as carried on the wire.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    #[prost(uint32, tag = "10")]
    Int(u32),
    #[prost(uint64, tag = "11")]
    Long(u64),
    #[prost(float, tag = "12")]
    Float(f32),
    #[prost(double, tag = "13")]
    Double(f64),
    #[prost(bool, tag = "14")]
    Boolean(bool),
    #[prost(string, tag = "15")]
    String(String),
    #[prost(bytes = "vec", tag = "16")]
    Bytes(Vec<u8>),
    #[prost(message, tag = "17")]
    DataSet(DataSet),
    #[prost(message, tag = "18")]
    Template(Template),
}

#[derive(Clone, PartialEq, Message)]
pub struct MetaData {
    #[prost(bool, optional, tag = "1")]
    pub is_multi_part: Option<bool>,
    #[prost(string, optional, tag = "2")]
    pub content_type: Option<String>,
    #[prost(uint64, optional, tag = "3")]
    pub size: Option<u64>,
    #[prost(uint64, optional, tag = "4")]
    pub seq: Option<u64>,
    #[prost(string, optional, tag = "5")]
    pub file_name: Option<String>,
    #[prost(string, optional, tag = "6")]
    pub file_type: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub md5: Option<String>,
    #[prost(string, optional, tag = "8")]
    pub description: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PropertySet {
    #[prost(string, repeated, tag = "1")]
    pub keys: Vec<String>,
    #[prost(message, repeated, tag = "2")]
    pub values: Vec<PropertyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PropertyValue {
    #[prost(uint32, optional, tag = "1")]
    pub r#type: Option<u32>,
    #[prost(bool, optional, tag = "2")]
    pub is_null: Option<bool>,
    #[prost(oneof = "PropertyValueKind", tags = "3, 4, 5, 6, 7, 8, 9, 10")]
    pub value: Option<PropertyValueKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum PropertyValueKind {
    #[prost(uint32, tag = "3")]
    Int(u32),
    #[prost(uint64, tag = "4")]
    Long(u64),
    #[prost(float, tag = "5")]
    Float(f32),
    #[prost(double, tag = "6")]
    Double(f64),
    #[prost(bool, tag = "7")]
    Boolean(bool),
    #[prost(string, tag = "8")]
    String(String),
    #[prost(message, tag = "9")]
    PropertySet(PropertySet),
    #[prost(message, tag = "10")]
    PropertySetList(PropertySetList),
}

#[derive(Clone, PartialEq, Message)]
pub struct PropertySetList {
    #[prost(message, repeated, tag = "1")]
    pub propertyset: Vec<PropertySet>,
}

#[derive(Clone, PartialEq, Message)]
pub struct DataSet {
    #[prost(uint64, optional, tag = "1")]
    pub num_of_columns: Option<u64>,
    #[prost(string, repeated, tag = "2")]
    pub columns: Vec<String>,
    #[prost(uint32, repeated, packed = "false", tag = "3")]
    pub types: Vec<u32>,
    #[prost(message, repeated, tag = "4")]
    pub rows: Vec<Row>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Row {
    #[prost(message, repeated, tag = "1")]
    pub elements: Vec<DataSetValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct DataSetValue {
    #[prost(oneof = "DataSetValueKind", tags = "1, 2, 3, 4, 5, 6")]
    pub value: Option<DataSetValueKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum DataSetValueKind {
    #[prost(uint32, tag = "1")]
    Int(u32),
    #[prost(uint64, tag = "2")]
    Long(u64),
    #[prost(float, tag = "3")]
    Float(f32),
    #[prost(double, tag = "4")]
    Double(f64),
    #[prost(bool, tag = "5")]
    Boolean(bool),
    #[prost(string, tag = "6")]
    String(String),
}

/// A Template (user-defined type): a definition in the NBIRTH, instances in DBIRTHs.
#[derive(Clone, PartialEq, Message)]
pub struct Template {
    #[prost(string, optional, tag = "1")]
    pub version: Option<String>,
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
    #[prost(message, repeated, tag = "3")]
    pub parameters: Vec<Parameter>,
    #[prost(string, optional, tag = "4")]
    pub template_ref: Option<String>,
    #[prost(bool, optional, tag = "5")]
    pub is_definition: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Parameter {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(uint32, optional, tag = "2")]
    pub r#type: Option<u32>,
    #[prost(oneof = "ParameterValue", tags = "3, 4, 5, 6, 7, 8")]
    pub value: Option<ParameterValue>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ParameterValue {
    #[prost(uint32, tag = "3")]
    Int(u32),
    #[prost(uint64, tag = "4")]
    Long(u64),
    #[prost(float, tag = "5")]
    Float(f32),
    #[prost(double, tag = "6")]
    Double(f64),
    #[prost(bool, tag = "7")]
    Boolean(bool),
    #[prost(string, tag = "8")]
    String(String),
}

/// The Sparkplug data type codes (specification 6.4.16).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum DataType {
    Unknown = 0,
    Int8 = 1,
    Int16 = 2,
    Int32 = 3,
    Int64 = 4,
    UInt8 = 5,
    UInt16 = 6,
    UInt32 = 7,
    UInt64 = 8,
    Float = 9,
    Double = 10,
    Boolean = 11,
    String = 12,
    DateTime = 13,
    Text = 14,
    Uuid = 15,
    DataSet = 16,
    Bytes = 17,
    File = 18,
    Template = 19,
}

impl DataType {
    pub fn from_code(c: u32) -> Option<DataType> {
        use DataType::*;
        const ALL: [DataType; 20] = [
            Unknown, Int8, Int16, Int32, Int64, UInt8, UInt16, UInt32, UInt64, Float, Double,
            Boolean, String, DateTime, Text, Uuid, DataSet, Bytes, File, Template,
        ];
        ALL.get(c as usize).copied()
    }
}

/// A metric value as the program means it (signed integers signed).
#[derive(Clone, Debug, PartialEq)]
pub enum MetricValue {
    Int8(i8),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    UInt32(u32),
    UInt64(u64),
    Float(f32),
    Double(f64),
    Boolean(bool),
    String(String),
    /// Milliseconds since the Unix epoch.
    DateTime(u64),
}

/// Why a metric could not be read as a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("metric has no datatype")]
    NoDatatype,
    #[error("datatype {0} is not supported here")]
    Unsupported(u32),
    #[error("datatype {datatype:?} does not match the value carried ({found})")]
    Mismatch {
        datatype: DataType,
        found: &'static str,
    },
}

impl MetricValue {
    pub fn datatype(&self) -> DataType {
        match self {
            MetricValue::Int8(_) => DataType::Int8,
            MetricValue::Int16(_) => DataType::Int16,
            MetricValue::Int32(_) => DataType::Int32,
            MetricValue::Int64(_) => DataType::Int64,
            MetricValue::UInt32(_) => DataType::UInt32,
            MetricValue::UInt64(_) => DataType::UInt64,
            MetricValue::Float(_) => DataType::Float,
            MetricValue::Double(_) => DataType::Double,
            MetricValue::Boolean(_) => DataType::Boolean,
            MetricValue::String(_) => DataType::String,
            MetricValue::DateTime(_) => DataType::DateTime,
        }
    }

    /// The wire form: signed integers as their two's complement bits.
    pub fn to_wire(&self) -> Value {
        match self {
            MetricValue::Int8(v) => Value::Int(*v as i32 as u32),
            MetricValue::Int16(v) => Value::Int(*v as i32 as u32),
            MetricValue::Int32(v) => Value::Int(*v as u32),
            MetricValue::Int64(v) => Value::Long(*v as u64),
            MetricValue::UInt32(v) => Value::Int(*v),
            MetricValue::UInt64(v) | MetricValue::DateTime(v) => Value::Long(*v),
            MetricValue::Float(v) => Value::Float(*v),
            MetricValue::Double(v) => Value::Double(*v),
            MetricValue::Boolean(v) => Value::Boolean(*v),
            MetricValue::String(v) => Value::String(v.clone()),
        }
    }

    /// Reads a metric's value by its datatype (`None` for a null metric).
    pub fn from_metric(m: &Metric) -> Result<Option<MetricValue>, ValueError> {
        let code = m.datatype.ok_or(ValueError::NoDatatype)?;
        let dt = DataType::from_code(code).ok_or(ValueError::Unsupported(code))?;
        if m.is_null == Some(true) {
            return Ok(None);
        }
        let Some(v) = &m.value else {
            return Ok(None);
        };
        let found = match v {
            Value::Int(_) => "int_value",
            Value::Long(_) => "long_value",
            Value::Float(_) => "float_value",
            Value::Double(_) => "double_value",
            Value::Boolean(_) => "boolean_value",
            Value::String(_) => "string_value",
            Value::Bytes(_) => "bytes_value",
            Value::DataSet(_) => "dataset_value",
            Value::Template(_) => "template_value",
        };
        let mismatch = || ValueError::Mismatch {
            datatype: dt,
            found,
        };
        Ok(Some(match (dt, v) {
            (DataType::Int8, Value::Int(b)) => MetricValue::Int8(*b as i32 as i8),
            (DataType::Int16, Value::Int(b)) => MetricValue::Int16(*b as i32 as i16),
            (DataType::Int32, Value::Int(b)) => MetricValue::Int32(*b as i32),
            (DataType::Int64, Value::Long(b)) => MetricValue::Int64(*b as i64),
            (DataType::UInt8 | DataType::UInt16 | DataType::UInt32, Value::Int(b)) => {
                MetricValue::UInt32(*b)
            }
            (DataType::UInt64, Value::Long(b)) => MetricValue::UInt64(*b),
            (DataType::DateTime, Value::Long(b)) => MetricValue::DateTime(*b),
            (DataType::Float, Value::Float(f)) => MetricValue::Float(*f),
            (DataType::Double, Value::Double(f)) => MetricValue::Double(*f),
            (DataType::Boolean, Value::Boolean(b)) => MetricValue::Boolean(*b),
            (DataType::String | DataType::Text | DataType::Uuid, Value::String(s)) => {
                MetricValue::String(s.clone())
            }
            (
                DataType::Unknown
                | DataType::DataSet
                | DataType::Bytes
                | DataType::File
                | DataType::Template,
                _,
            ) => return Err(ValueError::Unsupported(code)),
            _ => return Err(mismatch()),
        }))
    }
}

impl Metric {
    /// A named metric with a value (or null of `datatype` when `value` is `None`).
    pub fn new(
        name: Option<&str>,
        alias: Option<u64>,
        timestamp: Option<u64>,
        datatype: DataType,
        value: Option<&MetricValue>,
    ) -> Metric {
        Metric {
            name: name.map(str::to_string),
            alias,
            timestamp,
            datatype: Some(datatype as u32),
            is_historical: None,
            is_transient: None,
            is_null: value.is_none().then_some(true),
            metadata: None,
            properties: None,
            value: value.map(MetricValue::to_wire),
        }
    }
}

impl Payload {
    /// Decodes a payload; malformed bytes are an error, never a panic.
    pub fn decode_bytes(b: &[u8]) -> Result<Payload, prost::DecodeError> {
        Payload::decode(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(v: MetricValue) -> MetricValue {
        let p = Payload {
            timestamp: Some(1),
            metrics: vec![Metric::new(
                Some("m"),
                Some(7),
                Some(2),
                v.datatype(),
                Some(&v),
            )],
            seq: Some(0),
            uuid: None,
            body: None,
        };
        let bytes = p.encode_to_vec();
        let back = Payload::decode_bytes(&bytes).unwrap();
        assert_eq!(back, p);
        MetricValue::from_metric(&back.metrics[0]).unwrap().unwrap()
    }

    #[test]
    fn negative_integers_round_trip_as_twos_complement() {
        // tck-id-payloads-metric-datatype-value: signed integers in the unsigned fields.
        assert_eq!(roundtrip(MetricValue::Int8(-5)), MetricValue::Int8(-5));
        assert_eq!(
            roundtrip(MetricValue::Int16(-300)),
            MetricValue::Int16(-300)
        );
        assert_eq!(
            roundtrip(MetricValue::Int32(i32::MIN)),
            MetricValue::Int32(i32::MIN)
        );
        assert_eq!(
            roundtrip(MetricValue::Int64(-1_234_567_890_123)),
            MetricValue::Int64(-1_234_567_890_123)
        );
        // The bits on the wire are the specification's: Int32 -1 is 0xFFFF_FFFF.
        assert_eq!(MetricValue::Int32(-1).to_wire(), Value::Int(u32::MAX));
        assert_eq!(MetricValue::Int8(-1).to_wire(), Value::Int(u32::MAX));
        assert_eq!(MetricValue::Int64(-1).to_wire(), Value::Long(u64::MAX));
    }

    #[test]
    fn field_numbers_are_the_specifications() {
        // A metric with name "a" (field 1), alias 2 (field 2), datatype Int32 (field 4) and
        // int_value 5 (field 10), written by hand as the specification numbers them.
        let bytes = [
            0x12, 0x09, // Payload.metrics (2), length 9
            0x0A, 0x01, b'a', // name = "a"
            0x10, 0x02, // alias = 2
            0x20, 0x03, // datatype = 3 (Int32)
            0x50, 0x05, // int_value = 5 (field 10, varint)
            0x18, 0x2A, // Payload.seq (3) = 42
        ];
        let p = Payload::decode_bytes(&bytes).unwrap();
        assert_eq!(p.seq, Some(42));
        let m = &p.metrics[0];
        assert_eq!((m.name.as_deref(), m.alias), (Some("a"), Some(2)));
        assert_eq!(MetricValue::from_metric(m), Ok(Some(MetricValue::Int32(5))));
    }

    #[test]
    fn a_null_metric_keeps_its_type_and_mismatches_are_errors() {
        let m = Metric::new(Some("x"), None, None, DataType::Double, None);
        assert_eq!(m.is_null, Some(true));
        assert_eq!(MetricValue::from_metric(&m), Ok(None));
        let mut bad = Metric::new(Some("x"), None, None, DataType::Boolean, None);
        bad.is_null = None;
        bad.value = Some(Value::String("yes".into()));
        assert!(matches!(
            MetricValue::from_metric(&bad),
            Err(ValueError::Mismatch { .. })
        ));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(p) = Payload::decode_bytes(&bytes) {
                for m in &p.metrics {
                    let _ = MetricValue::from_metric(m);
                }
            }
        }

        #[test]
        fn every_i64_round_trips(v in any::<i64>()) {
            prop_assert_eq!(roundtrip(MetricValue::Int64(v)), MetricValue::Int64(v));
        }

        #[test]
        fn every_i32_round_trips(v in any::<i32>()) {
            prop_assert_eq!(roundtrip(MetricValue::Int32(v)), MetricValue::Int32(v));
        }
    }
}
