//! The protocol v1 messages, as Rust types, and their line encoding.
//!
//! Every message is one JSON object on one line. The `type` field names the message; the other
//! fields are the variant's fields. Unknown fields are ignored when decoding (forward
//! compatibility); optional fields that are absent are left out when encoding.
//!
//! String fields are [`Cow`]s so that one set of types serves both directions: the
//! [`Emitter`](crate::Emitter) encodes messages that borrow the plugin's own strings (no
//! allocation per observation), and decoding yields owned messages (`'static`).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Free-form settings from the bridge configuration (a JSON object, possibly empty).
pub type Settings = serde_json::Map<String, serde_json::Value>;

// ---------------------------------------------------------------------------------------------
// Bridge -> plugin
// ---------------------------------------------------------------------------------------------

/// A message the bridge sends to a plugin (on the plugin's stdin).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ToPlugin {
    /// The first line: protocol version, plugin id, settings and the machines to serve.
    Init(Init),
    /// A health check; answer with a [`Pong`] carrying the same id.
    Ping(Ping),
    /// Stop: flush, close connections and exit within 5 seconds.
    Shutdown(Shutdown),
}

/// The `init` message: everything a plugin needs to know to start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Init {
    /// The protocol version the bridge speaks (1 for this SDK).
    pub protocol: u32,
    /// The plugin's id in the bridge configuration (`[[plugins]] id`).
    pub plugin: String,
    /// The plugin-wide settings (`[[plugins]] settings`), `{}` when none are configured.
    #[serde(default)]
    pub settings: Settings,
    /// The machines this plugin serves, and only these: a message naming any other machine is
    /// refused by the bridge.
    #[serde(default)]
    pub machines: Vec<MachineInit>,
}

/// One machine in the `init` message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MachineInit {
    /// The machine id, used as `machine` in every message about it.
    pub id: String,
    /// The machine's driver settings (`[machines.driver] settings`), `{}` when none.
    #[serde(default)]
    pub settings: Settings,
}

/// The `ping` message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// Echo this id in the [`Pong`].
    pub id: u64,
}

/// The `shutdown` message (no fields).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shutdown {}

impl Init {
    /// Deserializes the plugin-wide settings into the plugin's own settings type.
    ///
    /// # Errors
    /// The serde error, naming the field that did not fit.
    pub fn settings_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_value(serde_json::Value::Object(self.settings.clone()))
    }
}

impl MachineInit {
    /// Deserializes this machine's settings into the plugin's own settings type.
    ///
    /// # Errors
    /// The serde error, naming the field that did not fit.
    pub fn settings_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_value(serde_json::Value::Object(self.settings.clone()))
    }
}

// ---------------------------------------------------------------------------------------------
// Plugin -> bridge
// ---------------------------------------------------------------------------------------------

/// A message a plugin sends to the bridge (on the plugin's stdout).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum FromPlugin<'a> {
    /// The first line a plugin writes: its protocol version, name and version.
    Hello(Hello<'a>),
    /// One raw observation.
    Obs(Obs<'a>),
    /// A condition (alarm) raised or cleared.
    Condition(Condition<'a>),
    /// The plugin's link to one machine came up or went down.
    Link(Link<'a>),
    /// The answer to a [`Ping`].
    Pong(Pong),
}

/// The `hello` message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello<'a> {
    /// The protocol version the plugin speaks; must equal the bridge's.
    pub protocol: u32,
    /// The plugin's name (for logs and metrics), e.g. `heidenhain-lsv2`.
    pub name: Cow<'a, str>,
    /// The plugin's own version, e.g. `0.1.0`.
    pub version: Cow<'a, str>,
}

/// The `obs` message: one raw observation, mapping one-to-one onto the bridge's raw observation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Obs<'a> {
    /// The machine id, one of those in [`Init::machines`].
    pub machine: Cow<'a, str>,
    /// The source key, 1 to 128 characters; a profile maps it onto canonical signals.
    pub key: Cow<'a, str>,
    /// The value; [`Value::Null`] means unavailable.
    pub value: Value<'a>,
    /// The quality; absent means [`Quality::Good`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
    /// Why the quality is not good; absent with bad/uncertain means [`Reason::DeviceError`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// The machine's own timestamp, RFC 3339; absent when the machine gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Cow<'a, str>>,
}

/// The `condition` message: an alarm or warning raised, or cleared with [`Level::Normal`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition<'a> {
    /// The machine id, one of those in [`Init::machines`].
    pub machine: Cow<'a, str>,
    /// The condition's key (e.g. `alarm`, `system`), 1 to 128 characters.
    pub key: Cow<'a, str>,
    /// The level. `normal` with a `code` clears that code; without one it clears the whole key.
    pub level: Level,
    /// The machine's own alarm code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Cow<'a, str>>,
    /// The machine's own severity text or number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Cow<'a, str>>,
    /// A qualifier such as `HIGH` or `LOW`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualifier: Option<Cow<'a, str>>,
    /// The alarm text as the machine shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Cow<'a, str>>,
    /// The machine's own timestamp, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Cow<'a, str>>,
}

/// The `link` message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link<'a> {
    /// The machine id, one of those in [`Init::machines`].
    pub machine: Cow<'a, str>,
    /// Connected or lost.
    pub status: LinkStatus,
    /// Why the link was lost (the error text, naming the address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Cow<'a, str>>,
}

/// The `pong` message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// The id of the [`Ping`] being answered.
    pub id: u64,
}

/// An observation's value: text, integer, float, boolean or null (unavailable).
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    /// Unavailable (JSON `null`).
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer that fits in 64 bits, signed.
    Int(i64),
    /// A floating-point number. NaN and infinities are encoded as `null` (JSON has no word for
    /// them), so send those as a bad observation instead.
    Float(f64),
    /// Text.
    Text(Cow<'a, str>),
}

/// An observation's quality.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quality {
    /// The value is what the machine reported (the default).
    #[default]
    Good,
    /// The value may be off (stale, estimated).
    Uncertain,
    /// The value is not usable.
    Bad,
}

/// Why an observation is not good.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The machine reported an error for this item (the default).
    #[default]
    DeviceError,
    /// The source could not be reached.
    SourceUnavailable,
    /// The machine's answer could not be decoded.
    DecodeError,
    /// The value is old.
    Stale,
    /// The value is outside its valid range.
    OutOfRange,
}

/// A condition's level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// No alarm (clears).
    #[default]
    Normal,
    /// A warning.
    Warning,
    /// A fault.
    Fault,
    /// The condition cannot be known.
    Unavailable,
}

/// A link's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkStatus {
    /// The plugin talks to the machine.
    Connected,
    /// The plugin cannot talk to the machine.
    Lost,
}

impl Value<'_> {
    /// Converts into a value that owns its text.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(b),
            Value::Int(i) => Value::Int(i),
            Value::Float(f) => Value::Float(f),
            Value::Text(t) => Value::Text(Cow::Owned(t.into_owned())),
        }
    }
}

impl Serialize for Value<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Int(i) => serializer.serialize_i64(*i),
            Value::Float(f) if f.is_finite() => serializer.serialize_f64(*f),
            Value::Float(_) => serializer.serialize_unit(),
            Value::Text(t) => serializer.serialize_str(t),
        }
    }
}

impl<'de, 'a> Deserialize<'de> for Value<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;

        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = Value<'static>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number, boolean or null")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Value::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Value::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                // Beyond i64 the value is kept as a float, as JSON readers usually do.
                Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Value::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Value::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Value::Text(Cow::Owned(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Value::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Value::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(ValueVisitor)
            }
        }

        deserializer.deserialize_any(ValueVisitor)
    }
}

impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<i32> for Value<'_> {
    fn from(v: i32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<u32> for Value<'_> {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<f64> for Value<'_> {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(Cow::Borrowed(v))
    }
}
impl From<String> for Value<'_> {
    fn from(v: String) -> Self {
        Value::Text(Cow::Owned(v))
    }
}
impl<'a, T: Into<Value<'a>>> From<Option<T>> for Value<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

// ---------------------------------------------------------------------------------------------
// Line encoding
// ---------------------------------------------------------------------------------------------

/// Why a line could not be decoded.
#[derive(Debug)]
pub enum DecodeError {
    /// The line is not JSON, not an object, or a field has the wrong type or is missing.
    Malformed(serde_json::Error),
    /// The line is a JSON object whose `type` this protocol version does not know. The protocol
    /// says: refuse it, count it, go on.
    UnknownType(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Malformed(e) => write!(f, "malformed message: {e}"),
            DecodeError::UnknownType(t) => write!(f, "unknown message type {t:?}"),
        }
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DecodeError::Malformed(e) => Some(e),
            DecodeError::UnknownType(_) => None,
        }
    }
}

const TO_PLUGIN_TYPES: &[&str] = &["init", "ping", "shutdown"];
const FROM_PLUGIN_TYPES: &[&str] = &["hello", "obs", "condition", "link", "pong"];

/// Tells an unknown `type` apart from a malformed known one, after decoding failed.
fn classify(line: &str, known: &[&str], err: serde_json::Error) -> DecodeError {
    #[derive(Deserialize)]
    struct TypeOnly {
        #[serde(rename = "type")]
        ty: String,
    }
    match serde_json::from_str::<TypeOnly>(line) {
        Ok(t) if !known.contains(&t.ty.as_str()) => DecodeError::UnknownType(t.ty),
        _ => DecodeError::Malformed(err),
    }
}

/// Decodes one line the bridge sent (without or with its trailing newline).
///
/// # Errors
/// [`DecodeError::UnknownType`] for a `type` this version does not know,
/// [`DecodeError::Malformed`] for anything else that does not fit.
pub fn decode_to_plugin(line: &str) -> Result<ToPlugin, DecodeError> {
    serde_json::from_str(line).map_err(|e| classify(line, TO_PLUGIN_TYPES, e))
}

/// Decodes one line a plugin wrote (without or with its trailing newline). The result owns its
/// strings.
///
/// This checks the JSON shape only; the rules about content (key length, machine ids, hello
/// first) are the bridge's to enforce.
///
/// # Errors
/// [`DecodeError::UnknownType`] for a `type` this version does not know,
/// [`DecodeError::Malformed`] for anything else that does not fit.
pub fn decode_from_plugin(line: &str) -> Result<FromPlugin<'static>, DecodeError> {
    serde_json::from_str(line).map_err(|e| classify(line, FROM_PLUGIN_TYPES, e))
}

/// Encodes a message as one line, with its trailing newline.
///
/// # Errors
/// Only if a value cannot be represented in JSON, which none of this crate's types do; the
/// error is returned rather than hidden.
pub fn encode<T: Serialize>(message: &T) -> Result<String, serde_json::Error> {
    let mut line = serde_json::to_string(message)?;
    line.push('\n');
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(value: Value<'static>) -> FromPlugin<'static> {
        FromPlugin::Obs(Obs {
            machine: "tnc-1".into(),
            key: "execution".into(),
            value,
            quality: None,
            reason: None,
            time: None,
        })
    }

    fn round_trip(msg: &FromPlugin<'static>) -> String {
        let line = encode(msg).unwrap();
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1, "one line: {line:?}");
        let back = decode_from_plugin(&line).unwrap();
        assert_eq!(&back, msg);
        line
    }

    #[test]
    fn obs_round_trips_every_value_kind() {
        for v in [
            Value::Null,
            Value::Bool(true),
            Value::Int(-42),
            Value::Int(i64::MAX),
            Value::Float(12.5),
            Value::Text("running".into()),
            Value::Text("line\nbreak \"quoted\" ü".into()),
        ] {
            round_trip(&obs(v));
        }
    }

    #[test]
    fn obs_encodes_like_the_protocol_example() {
        let line = round_trip(&FromPlugin::Obs(Obs {
            machine: "tnc-1".into(),
            key: "execution".into(),
            value: "running".into(),
            quality: Some(Quality::Good),
            reason: None,
            time: Some("2026-11-26T10:00:00.123Z".into()),
        }));
        assert_eq!(
            line,
            "{\"type\":\"obs\",\"machine\":\"tnc-1\",\"key\":\"execution\",\"value\":\"running\",\
             \"quality\":\"good\",\"time\":\"2026-11-26T10:00:00.123Z\"}\n"
        );
    }

    #[test]
    fn optional_fields_are_left_out() {
        let line = encode(&obs(Value::Int(3))).unwrap();
        assert_eq!(
            line,
            "{\"type\":\"obs\",\"machine\":\"tnc-1\",\"key\":\"execution\",\"value\":3}\n"
        );
    }

    #[test]
    fn bad_obs_with_reason_round_trips() {
        let line = round_trip(&FromPlugin::Obs(Obs {
            machine: "m".into(),
            key: "k".into(),
            value: Value::Null,
            quality: Some(Quality::Bad),
            reason: Some(Reason::SourceUnavailable),
            time: None,
        }));
        assert!(line.contains("\"reason\":\"source_unavailable\""), "{line}");
    }

    #[test]
    fn condition_link_hello_pong_round_trip() {
        round_trip(&FromPlugin::Condition(Condition {
            machine: "tnc-1".into(),
            key: "alarm".into(),
            level: Level::Fault,
            code: Some("1234".into()),
            severity: Some("error".into()),
            qualifier: None,
            message: Some("Spindle overload".into()),
            time: None,
        }));
        round_trip(&FromPlugin::Link(Link {
            machine: "tnc-1".into(),
            status: LinkStatus::Lost,
            detail: Some("connection refused by 10.0.0.30:19000".into()),
        }));
        round_trip(&FromPlugin::Hello(Hello {
            protocol: 1,
            name: "x".into(),
            version: "0.1.0".into(),
        }));
        round_trip(&FromPlugin::Pong(Pong { id: 7 }));
    }

    #[test]
    fn non_finite_floats_become_null() {
        let line = encode(&obs(Value::Float(f64::NAN))).unwrap();
        assert!(line.contains("\"value\":null"), "{line}");
    }

    #[test]
    fn big_unsigned_numbers_decode_as_float() {
        let msg = decode_from_plugin(
            r#"{"type":"obs","machine":"m","key":"k","value":18446744073709551615}"#,
        )
        .unwrap();
        let FromPlugin::Obs(o) = msg else {
            panic!("not an obs: {msg:?}")
        };
        assert_eq!(o.value, Value::Float(18446744073709551615.0));
    }

    #[test]
    fn init_decodes_with_and_without_settings_and_ignores_unknown_fields() {
        let msg = decode_to_plugin(
            r#"{"type":"init","protocol":1,"plugin":"lsv2","settings":{},"future":true,
                "machines":[{"id":"tnc-1","settings":{"address":"10.0.0.30:19000"}},{"id":"tnc-2"}]}"#,
        )
        .unwrap();
        let ToPlugin::Init(init) = msg else {
            panic!("not init: {msg:?}")
        };
        assert_eq!(init.protocol, 1);
        assert_eq!(init.plugin, "lsv2");
        assert_eq!(init.machines.len(), 2);
        assert_eq!(init.machines[0].settings["address"], "10.0.0.30:19000");
        assert!(init.machines[1].settings.is_empty());

        #[derive(Deserialize)]
        struct Mine {
            address: String,
        }
        let mine: Mine = init.machines[0].settings_as().unwrap();
        assert_eq!(mine.address, "10.0.0.30:19000");
        assert!(init.machines[1].settings_as::<Mine>().is_err());
    }

    #[test]
    fn ping_and_shutdown_decode_and_round_trip() {
        assert_eq!(
            decode_to_plugin(r#"{"type":"ping","id":7}"#).unwrap(),
            ToPlugin::Ping(Ping { id: 7 })
        );
        assert_eq!(
            decode_to_plugin("{\"type\":\"shutdown\",\"reason\":\"later\"}\n").unwrap(),
            ToPlugin::Shutdown(Shutdown {})
        );
        let line = encode(&ToPlugin::Shutdown(Shutdown {})).unwrap();
        assert_eq!(line, "{\"type\":\"shutdown\"}\n");
    }

    #[test]
    fn unknown_type_is_told_apart_from_malformed() {
        assert!(matches!(
            decode_to_plugin(r#"{"type":"reconfigure","x":1}"#),
            Err(DecodeError::UnknownType(t)) if t == "reconfigure"
        ));
        assert!(matches!(
            decode_from_plugin(r#"{"type":"obs","machine":"m","key":"k","value":[1]}"#),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode_from_plugin(r#"{"type":"obs","machine":"m"}"#),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode_from_plugin("not json"),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode_from_plugin(
                r#"{"type":"obs","machine":"m","key":"k","value":1,"quality":"great"}"#
            ),
            Err(DecodeError::Malformed(_))
        ));
    }
}
