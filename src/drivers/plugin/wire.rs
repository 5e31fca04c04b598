//! The plugin protocol's lines, checked and turned into driver events.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;

use crate::drivers::{DriverEvent, RawCondition, RawObservation};
use crate::model::{
    ConditionLevel, LinkStatus, MachineId, Quality, QualityReason, SignalId, Timestamp, Value,
};

/// The protocol version this bridge speaks.
pub const PROTOCOL: u64 = 1;

/// The longest key accepted.
const MAX_KEY: usize = 128;

/// Every field any plugin message may carry; `type` says which apply. Strings borrow from the
/// line unless they hold escapes.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    machine: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    key: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "present")]
    value: Option<serde_json::Value>,
    #[serde(default, borrow)]
    quality: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reason: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    time: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    level: Option<Cow<'a, str>>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    qualifier: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default, borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    protocol: Option<u64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
}

/// A field that is present (even as `null`) is `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// What one line was.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    /// Taken (events, if any, were added to the batch).
    Ok,
    Pong(u64),
    /// Not taken; the plugin goes on.
    Refused(String),
    /// The plugin broke the protocol: restart it.
    Fatal(String),
}

/// Reads one plugin's lines.
pub struct Parser {
    machines: HashMap<String, MachineId>,
    keys: HashMap<String, SignalId>,
    hello: bool,
    /// The plugin's name and version, from its hello.
    pub name: Option<String>,
}

impl Parser {
    pub fn new(machines: &[(MachineId, serde_json::Value)]) -> Self {
        Self {
            machines: machines
                .iter()
                .map(|(m, _)| (m.as_str().to_string(), m.clone()))
                .collect(),
            keys: HashMap::new(),
            hello: false,
            name: None,
        }
    }

    /// A new process: it must say hello again.
    pub fn reset(&mut self) {
        self.hello = false;
    }

    pub fn hello_seen(&self) -> bool {
        self.hello
    }

    fn key(&mut self, k: &str) -> SignalId {
        if let Some(s) = self.keys.get(k) {
            return s.clone();
        }
        let s = SignalId::new(k);
        // Keys are a plugin's vocabulary, not its data; still, do not grow without end.
        if self.keys.len() < 100_000 {
            self.keys.insert(k.to_string(), s.clone());
        }
        s
    }

    /// Reads one line (without its newline); events go to `batch`.
    pub fn line(
        &mut self,
        raw: &[u8],
        received: Timestamp,
        batch: &mut Vec<DriverEvent>,
    ) -> Parsed {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Parsed::Refused("empty line".into());
        }
        let l: Line<'_> = match serde_json::from_slice(raw) {
            Ok(l) => l,
            Err(e) if !self.hello => {
                return Parsed::Fatal(format!(
                    "expected hello, found a line that is not a message: {e}"
                ));
            }
            Err(e) => return Parsed::Refused(format!("not a protocol message: {e}")),
        };
        if !self.hello {
            if l.kind != "hello" {
                return Parsed::Fatal(format!(
                    "expected hello as the first line, found {:?}",
                    l.kind
                ));
            }
            return match l.protocol {
                Some(PROTOCOL) => {
                    self.hello = true;
                    self.name = Some(format!(
                        "{} {}",
                        l.name.as_deref().unwrap_or("?"),
                        l.version.as_deref().unwrap_or("?")
                    ));
                    tracing::info!(
                        plugin = self.name.as_deref().unwrap_or(""),
                        "plugin said hello"
                    );
                    Parsed::Ok
                }
                Some(v) => Parsed::Fatal(format!(
                    "the plugin speaks protocol {v}; this bridge speaks {PROTOCOL}"
                )),
                None => Parsed::Fatal("hello without `protocol`".into()),
            };
        }
        match l.kind.as_ref() {
            "obs" => self.obs(l, received, batch),
            "condition" => self.condition(l, received, batch),
            "link" => self.link(l, received, batch),
            "pong" => match l.id {
                Some(id) => Parsed::Pong(id),
                None => Parsed::Refused("pong without `id`".into()),
            },
            "hello" => Parsed::Refused("a second hello".into()),
            other => Parsed::Refused(format!("unknown message type {other:?}")),
        }
    }

    fn machine(&self, m: Option<&Cow<'_, str>>) -> Result<MachineId, String> {
        let Some(m) = m else {
            return Err("missing `machine`".into());
        };
        self.machines.get(m.as_ref()).cloned().ok_or_else(|| {
            format!("machine {m:?} is not one of this plugin's (a plugin writes only its own machines' records)")
        })
    }

    fn checked_key(&mut self, k: Option<&Cow<'_, str>>) -> Result<SignalId, String> {
        match k {
            Some(k) if !k.is_empty() && k.chars().count() <= MAX_KEY => Ok(self.key(k)),
            Some(k) => Err(format!("key {k:?} must be 1-{MAX_KEY} characters")),
            None => Err("missing `key`".into()),
        }
    }

    fn obs(&mut self, l: Line<'_>, received: Timestamp, batch: &mut Vec<DriverEvent>) -> Parsed {
        let r = (|| {
            let machine = self.machine(l.machine.as_ref())?;
            let key = self.checked_key(l.key.as_ref())?;
            let value = match &l.value {
                None | Some(serde_json::Value::Null) => Value::Unavailable,
                Some(serde_json::Value::Bool(b)) => Value::Bool(*b),
                Some(serde_json::Value::Number(n)) => match n.as_i64() {
                    Some(i) => Value::Int(i),
                    None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
                },
                Some(serde_json::Value::String(s)) => Value::text(s),
                Some(other) => {
                    return Err(format!(
                        "`value` must be a string, number, bool or null, found {}",
                        if other.is_array() {
                            "an array"
                        } else {
                            "an object"
                        }
                    ));
                }
            };
            let reason = match l.reason.as_deref() {
                None | Some("device_error") => QualityReason::DeviceError,
                Some("source_unavailable") => QualityReason::SourceUnavailable,
                Some("decode_error") => QualityReason::DecodeError,
                Some("stale") => QualityReason::Stale,
                Some("out_of_range") => QualityReason::OutOfRange,
                Some(other) => return Err(format!("unknown `reason` {other:?}")),
            };
            let quality = match l.quality.as_deref() {
                None | Some("good") => Quality::Good,
                Some("bad") => Quality::Bad(reason),
                Some("uncertain") => Quality::Uncertain(reason),
                Some(other) => return Err(format!("unknown `quality` {other:?}")),
            };
            Ok(DriverEvent::Observation(RawObservation {
                machine,
                key,
                value,
                quality,
                source_time: time(l.time.as_deref())?,
                received,
                meta: None,
            }))
        })();
        accept(r, batch)
    }

    fn condition(
        &mut self,
        l: Line<'_>,
        received: Timestamp,
        batch: &mut Vec<DriverEvent>,
    ) -> Parsed {
        let r = (|| {
            let machine = self.machine(l.machine.as_ref())?;
            let key = self.checked_key(l.key.as_ref())?;
            let level = match l.level.as_deref() {
                Some("normal") => ConditionLevel::Normal,
                Some("warning") => ConditionLevel::Warning,
                Some("fault") => ConditionLevel::Fault,
                Some("unavailable") => ConditionLevel::Unavailable,
                Some(other) => return Err(format!("unknown `level` {other:?}")),
                None => return Err("missing `level`".into()),
            };
            Ok(DriverEvent::Condition(Box::new(RawCondition {
                machine,
                key,
                level,
                native_code: l.code,
                native_severity: l.severity,
                qualifier: l.qualifier,
                message: l.message,
                source_time: time(l.time.as_deref())?,
                received,
                meta: None,
            })))
        })();
        accept(r, batch)
    }

    fn link(&mut self, l: Line<'_>, received: Timestamp, batch: &mut Vec<DriverEvent>) -> Parsed {
        let r = (|| {
            let machine = self.machine(l.machine.as_ref())?;
            let status = match l.status.as_deref() {
                Some("connected") => LinkStatus::Connected,
                Some("lost") => LinkStatus::Lost,
                Some(other) => return Err(format!("unknown link `status` {other:?}")),
                None => return Err("missing `status`".into()),
            };
            Ok(DriverEvent::Link {
                machine,
                status,
                at: received,
                detail: l.detail,
                missed: None,
            })
        })();
        accept(r, batch)
    }
}

fn accept(r: Result<DriverEvent, String>, batch: &mut Vec<DriverEvent>) -> Parsed {
    match r {
        Ok(ev) => {
            batch.push(ev);
            Parsed::Ok
        }
        Err(why) => Parsed::Refused(why),
    }
}

fn time(t: Option<&str>) -> Result<Option<Timestamp>, String> {
    match t {
        None => Ok(None),
        Some(t) => Timestamp::parse_iso8601(t)
            .map(Some)
            .ok_or_else(|| format!("`time` {t:?} is not an RFC 3339 time")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser() -> Parser {
        let mut p = Parser::new(&[(MachineId::new("tnc-1").unwrap(), serde_json::json!({}))]);
        let mut b = Vec::new();
        assert_eq!(
            p.line(
                br#"{"type":"hello","protocol":1,"name":"t","version":"1"}"#,
                Timestamp::from_micros(0),
                &mut b
            ),
            Parsed::Ok
        );
        p
    }

    #[test]
    fn hello_first_and_version() {
        let mut p = Parser::new(&[]);
        let mut b = Vec::new();
        assert!(matches!(
            p.line(br#"{"type":"obs"}"#, Timestamp::from_micros(0), &mut b),
            Parsed::Fatal(_)
        ));
        let mut p = Parser::new(&[]);
        let r = p.line(
            br#"{"type":"hello","protocol":2}"#,
            Timestamp::from_micros(0),
            &mut b,
        );
        assert_eq!(
            r,
            Parsed::Fatal("the plugin speaks protocol 2; this bridge speaks 1".into())
        );
    }

    #[test]
    fn messages_become_events() {
        let mut p = parser();
        let mut b = Vec::new();
        let t = Timestamp::from_micros(7);
        for line in [
            &br#"{"type":"obs","machine":"tnc-1","key":"execution_state","value":"AUTOMATIC"}"#[..],
            br#"{"type":"obs","machine":"tnc-1","key":"override.feed","value":100,"time":"2026-11-26T10:00:00Z"}"#,
            br#"{"type":"obs","machine":"tnc-1","key":"x","value":1.5,"quality":"bad","reason":"decode_error"}"#,
            br#"{"type":"obs","machine":"tnc-1","key":"y","value":null,"future_field":[1]}"#,
            br#"{"type":"condition","machine":"tnc-1","key":"alarm","level":"fault","code":"1-200","message":"Spindle"}"#,
            br#"{"type":"link","machine":"tnc-1","status":"lost","detail":"refused"}"#,
        ] {
            assert_eq!(p.line(line, t, &mut b), Parsed::Ok, "{}", String::from_utf8_lossy(line));
        }
        assert_eq!(b.len(), 6);
        let DriverEvent::Observation(o) = &b[1] else {
            panic!()
        };
        assert_eq!(o.value, Value::Int(100));
        assert!(o.source_time.is_some());
        let DriverEvent::Observation(o) = &b[2] else {
            panic!()
        };
        assert_eq!(o.quality, Quality::Bad(QualityReason::DecodeError));
        let DriverEvent::Observation(o) = &b[3] else {
            panic!()
        };
        assert_eq!(o.value, Value::Unavailable);
        assert!(
            matches!(&b[4], DriverEvent::Condition(c) if c.native_code.as_deref() == Some("1-200"))
        );
        assert!(matches!(
            &b[5],
            DriverEvent::Link {
                status: LinkStatus::Lost,
                ..
            }
        ));
        assert_eq!(
            p.line(br#"{"type":"pong","id":3}"#, t, &mut b),
            Parsed::Pong(3)
        );
    }

    #[test]
    fn refusals() {
        let mut p = parser();
        let mut b = Vec::new();
        let t = Timestamp::from_micros(0);
        let refused = |p: &mut Parser, b: &mut Vec<DriverEvent>, l: &[u8]| match p.line(l, t, b) {
            Parsed::Refused(why) => why,
            other => panic!("{other:?} for {}", String::from_utf8_lossy(l)),
        };
        assert!(
            refused(
                &mut p,
                &mut b,
                br#"{"type":"obs","machine":"other","key":"k","value":1}"#
            )
            .contains("not one of this plugin's")
        );
        assert!(
            refused(
                &mut p,
                &mut b,
                br#"{"type":"obs","machine":"tnc-1","key":"","value":1}"#
            )
            .contains("1-128")
        );
        assert!(
            refused(
                &mut p,
                &mut b,
                br#"{"type":"obs","machine":"tnc-1","key":"k","value":[1]}"#
            )
            .contains("array")
        );
        assert!(
            refused(
                &mut p,
                &mut b,
                br#"{"type":"obs","machine":"tnc-1","key":"k","value":1,"quality":"meh"}"#
            )
            .contains("quality")
        );
        assert!(
            refused(
                &mut p,
                &mut b,
                br#"{"type":"obs","machine":"tnc-1","key":"k","time":"yesterday"}"#
            )
            .contains("RFC 3339")
        );
        assert!(
            refused(&mut p, &mut b, br#"{"type":"teleport"}"#).contains("unknown message type")
        );
        assert!(refused(&mut p, &mut b, b"{not json").contains("not a protocol message"));
        assert!(b.is_empty());
    }
}
