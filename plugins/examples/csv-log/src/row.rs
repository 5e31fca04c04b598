//! From a header and a row to observations: which cells, under which keys, typed how.

use shopbridge_plugin_sdk::Value;

use crate::config::{Columns, MachineConfig};
use crate::timefmt::{self, Parsed};

/// The columns of one header, resolved against the machine's settings.
#[derive(Debug)]
pub struct Mapper {
    /// (cell index, key)
    cells: Vec<(usize, String)>,
    time: Option<usize>,
    /// Settings that name columns the header does not have (for one warning).
    pub missing: Vec<String>,
}

/// One row, ready to send.
#[derive(Debug, PartialEq)]
pub struct RowObs<'r> {
    /// The row's time as RFC 3339, if it has a time column that parsed.
    pub time: Option<Parsed>,
    /// Whether the time cell was present but did not parse.
    pub bad_time: bool,
    /// (key, value); empty cells are left out.
    pub values: Vec<(&'r str, Value<'r>)>,
}

impl Mapper {
    /// Resolves the settings' column names against a header.
    pub fn new(header: &[String], cfg: &MachineConfig) -> Self {
        let index = |name: &str| header.iter().position(|h| h == name);
        let mut missing = Vec::new();
        let time = cfg.time_column.as_deref().and_then(|t| {
            let i = index(t);
            if i.is_none() {
                missing.push(t.to_owned());
            }
            i
        });
        let cells = match &cfg.columns {
            Columns::All => header
                .iter()
                .enumerate()
                .filter(|(i, h)| Some(*i) != time && !h.is_empty())
                .map(|(i, h)| (i, h.chars().take(128).collect()))
                .collect(),
            Columns::Mapped(map) => map
                .iter()
                .filter_map(|(name, key)| match index(name) {
                    Some(i) => Some((i, key.clone())),
                    None => {
                        missing.push(name.clone());
                        None
                    }
                })
                .collect(),
        };
        Mapper {
            cells,
            time,
            missing,
        }
    }

    /// Maps one row.
    pub fn map<'r>(&'r self, row: &'r [String], cfg: &MachineConfig) -> RowObs<'r> {
        let cell = |i: usize| row.get(i).map(String::as_str).filter(|c| !c.is_empty());
        let (time, bad_time) = match self.time.and_then(cell) {
            Some(t) => match timefmt::parse(t, &cfg.time_offset) {
                Some(p) => (Some(p), false),
                None => (None, true),
            },
            None => (None, false),
        };
        let values = self
            .cells
            .iter()
            .filter_map(|(i, key)| cell(*i).map(|c| (key.as_str(), typed(c))))
            .collect();
        RowObs {
            time,
            bad_time,
            values,
        }
    }
}

/// A cell as the most specific value it reads as: integer, float, boolean, else text.
/// Numbers with leading zeros (`007`, a program number) stay text.
pub fn typed(cell: &str) -> Value<'_> {
    let digits = cell.strip_prefix(['-', '+']).unwrap_or(cell);
    let leading_zero =
        digits.len() > 1 && digits.starts_with('0') && digits.as_bytes()[1].is_ascii_digit();
    if !leading_zero {
        if let Ok(i) = cell.parse::<i64>() {
            return Value::Int(i);
        }
        let numeric = digits
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_digit() || b == b'.');
        if numeric {
            if let Ok(f) = cell.parse::<f64>() {
                if f.is_finite() {
                    return Value::Float(f);
                }
            }
        }
    }
    if cell.eq_ignore_ascii_case("true") {
        Value::Bool(true)
    } else if cell.eq_ignore_ascii_case("false") {
        Value::Bool(false)
    } else {
        Value::from(cell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopbridge_plugin_sdk::MachineInit;

    fn cfg(settings: serde_json::Value) -> MachineConfig {
        let m: MachineInit =
            serde_json::from_value(serde_json::json!({"id": "m", "settings": settings})).unwrap();
        MachineConfig::from_init(&m).unwrap()
    }
    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn typing() {
        assert_eq!(typed("1200"), Value::Int(1200));
        assert_eq!(typed("-3"), Value::Int(-3));
        assert_eq!(typed("12.5"), Value::Float(12.5));
        assert_eq!(typed(".5"), Value::Float(0.5));
        assert_eq!(typed("0"), Value::Int(0));
        assert_eq!(typed("0.25"), Value::Float(0.25));
        assert_eq!(typed("007"), Value::from("007"));
        assert_eq!(typed("TRUE"), Value::Bool(true));
        assert_eq!(typed("nan"), Value::from("nan"));
        assert_eq!(typed("inf"), Value::from("inf"));
        assert_eq!(typed("O1234"), Value::from("O1234"));
    }

    #[test]
    fn mapped_columns_with_time() {
        let c = cfg(serde_json::json!({
            "path": "x", "columns": {"RPM": "spindle_speed", "Prog": "program", "Gone": "g"},
            "time_column": "Time", "time_offset": "+01:00"
        }));
        let m = Mapper::new(&strings(&["Time", "Prog", "RPM", "Other"]), &c);
        assert_eq!(m.missing, vec!["Gone".to_string()]);
        let row = strings(&["2026-11-26 10:00:00", "O12", "", "x"]);
        let obs = m.map(&row, &c);
        assert_eq!(
            obs.time.as_ref().map(Parsed::text),
            Some("2026-11-26T10:00:00+01:00")
        );
        assert_eq!(obs.values, vec![("program", Value::from("O12"))]);

        let row = strings(&["soon", "O12", "800"]);
        let obs = m.map(&row, &c);
        assert!(obs.bad_time && obs.time.is_none());
        assert_eq!(obs.values.len(), 2);
    }

    #[test]
    fn all_columns_by_header_name_except_time() {
        let c = cfg(serde_json::json!({"path": "x", "time_column": "T"}));
        let m = Mapper::new(&strings(&["T", "a", "", "b"]), &c);
        let row = strings(&["2026-11-26T10:00:00Z", "1", "2", "on"]);
        let obs = m.map(&row, &c);
        assert_eq!(
            obs.values,
            vec![("a", Value::Int(1)), ("b", Value::from("on"))]
        );
        assert_eq!(obs.time, Some(Parsed::Zoned("2026-11-26T10:00:00Z".into())));
    }
}
