//! A machine's settings: the schema as the bridge sends it, and the checked form the follower
//! uses.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use shopbridge_plugin_sdk::{MAX_KEY_CHARS, MachineInit};

use crate::timefmt::Offset;

/// `[machines.driver] settings` for one machine, as written in the bridge config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Schema {
    /// The CSV file the machine's PC writes.
    path: PathBuf,
    /// CSV header name -> observation key. Absent: every column, under its header name.
    #[serde(default)]
    columns: Option<BTreeMap<String, String>>,
    /// The column with each row's timestamp.
    #[serde(default)]
    time_column: Option<String>,
    /// UTC offset of timestamps written without one, e.g. "+01:00" (default "Z").
    #[serde(default)]
    time_offset: Option<String>,
    /// Field delimiter, one character (default ",").
    #[serde(default)]
    delimiter: Option<String>,
    /// How often the file is checked, in milliseconds (default 500).
    #[serde(default)]
    poll_ms: Option<u64>,
    /// Read rows already in the file when it is first opened (default false: only the last
    /// row is reported, then new ones as they are written).
    #[serde(default)]
    from_start: bool,
}

/// Which columns become which keys.
#[derive(Clone, Debug, PartialEq)]
pub enum Columns {
    /// Every column except the time column, under its header name.
    All,
    /// Only these columns: header name -> key.
    Mapped(BTreeMap<String, String>),
}

/// A machine's checked settings.
#[derive(Clone, Debug)]
pub struct MachineConfig {
    /// The machine id.
    pub machine: String,
    /// The file to follow.
    pub path: PathBuf,
    /// Which columns to report.
    pub columns: Columns,
    /// The timestamp column, if any.
    pub time_column: Option<String>,
    /// Offset for timestamps written without one.
    pub time_offset: Offset,
    /// Whether `time_offset` was configured (a naive time without it is worth one warning).
    pub time_offset_given: bool,
    /// The field delimiter.
    pub delimiter: u8,
    /// The polling interval.
    pub poll: Duration,
    /// Read the rows already in the file when it is first opened.
    pub from_start: bool,
}

/// Why a machine's settings were refused.
#[derive(Debug)]
pub struct ConfigError {
    machine: String,
    problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "machine {:?}: settings: {}", self.machine, self.problem)
    }
}

impl std::error::Error for ConfigError {}

impl MachineConfig {
    /// Checks one machine's settings from `init`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the machine and the setting.
    pub fn from_init(m: &MachineInit) -> Result<Self, ConfigError> {
        let err = |problem: String| ConfigError {
            machine: m.id.clone(),
            problem,
        };
        let s: Schema = m.settings_as().map_err(|e| err(e.to_string()))?;
        if s.path.as_os_str().is_empty() {
            return Err(err("`path` is empty".into()));
        }
        let columns = match s.columns {
            None => Columns::All,
            Some(map) if map.is_empty() => {
                return Err(err(
                    "`columns` is empty; leave it out to report every column".into(),
                ));
            }
            Some(map) => {
                for key in map.values() {
                    let n = key.chars().count();
                    if n == 0 || n > MAX_KEY_CHARS {
                        return Err(err(format!(
                            "`columns` key {key:?} must have 1 to {MAX_KEY_CHARS} characters"
                        )));
                    }
                }
                Columns::Mapped(map)
            }
        };
        let time_offset = match &s.time_offset {
            None => Offset::UTC,
            Some(text) => Offset::parse(text).ok_or_else(|| {
                err(format!(
                    "`time_offset` {text:?} is not an offset like \"Z\", \"+01:00\" or \"-05:00\""
                ))
            })?,
        };
        let delimiter = match s.delimiter.as_deref() {
            None => b',',
            Some("\\t") | Some("\t") => b'\t',
            Some(d) if d.len() == 1 => d.as_bytes()[0],
            Some(d) => {
                return Err(err(format!(
                    "`delimiter` {d:?} must be one ASCII character (or \"\\t\")"
                )));
            }
        };
        let poll_ms = s.poll_ms.unwrap_or(500);
        if !(10..=3_600_000).contains(&poll_ms) {
            return Err(err(format!("`poll_ms` {poll_ms} is outside 10 to 3600000")));
        }
        Ok(MachineConfig {
            machine: m.id.clone(),
            path: s.path,
            columns,
            time_column: s.time_column,
            time_offset,
            time_offset_given: s.time_offset.is_some(),
            delimiter,
            poll: Duration::from_millis(poll_ms),
            from_start: s.from_start,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(settings: serde_json::Value) -> MachineInit {
        serde_json::from_value(serde_json::json!({"id": "lathe-3", "settings": settings})).unwrap()
    }

    #[test]
    fn defaults_and_full_settings() {
        let c =
            MachineConfig::from_init(&machine(serde_json::json!({"path": "/tmp/x.csv"}))).unwrap();
        assert_eq!(c.columns, Columns::All);
        assert_eq!(c.delimiter, b',');
        assert_eq!(c.poll, Duration::from_millis(500));
        assert!(!c.time_offset_given);

        let c = MachineConfig::from_init(&machine(serde_json::json!({
            "path": "/tmp/x.csv", "columns": {"Spindle RPM": "spindle_speed"},
            "time_column": "Time", "time_offset": "+01:00", "delimiter": ";", "poll_ms": 100,
        })))
        .unwrap();
        assert_eq!(c.delimiter, b';');
        assert!(c.time_offset_given);
        assert_eq!(c.time_column.as_deref(), Some("Time"));
    }

    #[test]
    fn errors_name_the_machine_and_the_setting() {
        let e = |v| {
            MachineConfig::from_init(&machine(v))
                .unwrap_err()
                .to_string()
        };
        assert!(e(serde_json::json!({})).contains("missing field `path`"));
        assert!(
            e(serde_json::json!({"path": "a", "colums": {}})).contains("unknown field `colums`")
        );
        assert!(
            e(serde_json::json!({"path": "a", "time_offset": "CET"}))
                .contains("`time_offset` \"CET\"")
        );
        assert!(e(serde_json::json!({"path": "a", "delimiter": ";;"})).contains("`delimiter`"));
        assert!(
            e(serde_json::json!({"path": "a", "columns": {"A": ""}})).contains("`columns` key")
        );
        assert!(
            e(serde_json::json!({"path": "a", "poll_ms": 1}))
                .starts_with("machine \"lathe-3\": settings: `poll_ms`")
        );
    }
}
