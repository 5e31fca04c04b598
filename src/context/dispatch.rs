//! Dispatch lists as the ERP sends them (JSON through REST or a Sparkplug DCMD, CSV or JSON
//! files in the drop folder), checked into [`DispatchedOperation`]s. A list is taken whole or refused whole:
//! every problem is reported with where it is (`operations[3].due`, `line 7, column
//! "Due Date"`), and nothing of a refused list is applied.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::commands::{MAX_ID_LEN, id_problem};
use crate::model::{DispatchedOperation, Timestamp};

/// The most operations one machine's list may hold.
pub const MAX_OPERATIONS: usize = 500;

/// One operation as JSON writes it. Times: `due` is RFC 3339 (`2026-12-01T16:00:00Z`) or a
/// date (`2026-12-01`, end of that day UTC).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperationInput {
    /// Required (a job's operations take the job's).
    #[serde(default)]
    pub job: String,
    pub operation: String,
    pub part_number: Option<String>,
    pub part_revision: Option<String>,
    #[serde(default)]
    pub programs: Vec<String>,
    /// One program, as many ERPs export it (added to `programs`).
    pub program: Option<String>,
    pub quantity: Option<u64>,
    pub setup_seconds: Option<f64>,
    pub setup_minutes: Option<f64>,
    pub cycle_seconds: Option<f64>,
    pub due: Option<String>,
    pub customer_order: Option<String>,
    /// The routing: the operation of the same job that comes first.
    pub after: Option<String>,
    /// Which machine (or ERP work center) it is for, when a list mixes machines (files).
    pub machine: Option<String>,
    pub work_center: Option<String>,
}

/// A dispatch list problem: where, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub at: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// Parses a due date: RFC 3339, or a date (the end of that day, UTC).
pub fn parse_due(s: &str) -> Result<Timestamp, String> {
    let s = s.trim();
    if let Ok(t) = Timestamp::parse_rfc3339(s) {
        return Ok(t);
    }
    match s.parse::<jiff::civil::Date>() {
        Ok(d) => {
            let end = d
                .to_datetime(jiff::civil::Time::MAX)
                .to_zoned(jiff::tz::TimeZone::UTC)
                .map_err(|e| e.to_string())?;
            Ok(Timestamp::from_micros(end.timestamp().as_microsecond()))
        }
        Err(_) => Err(format!(
            "expected a date like \"2026-12-01\" or a time like \"2026-12-01T16:00:00Z\", found {s:?}"
        )),
    }
}

fn text(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Checks one operation; `at` names it (`operations[2]`).
pub fn check_operation(
    o: &OperationInput,
    at: &str,
    out: &mut Vec<Problem>,
) -> Option<DispatchedOperation> {
    let before = out.len();
    let mut bad = |field: &str, message: String| {
        out.push(Problem {
            at: format!("{at}.{field}"),
            message,
        })
    };
    for (field, v) in [("job", &o.job), ("operation", &o.operation)] {
        if let Some(why) = id_problem(v.trim()) {
            bad(field, why);
        }
    }
    let mut programs: Vec<String> = o
        .programs
        .iter()
        .chain(o.program.iter())
        .flat_map(|p| p.split(['|', ';']))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    programs.dedup();
    for p in &programs {
        if p.chars().count() > MAX_ID_LEN * 4 || p.chars().any(char::is_control) {
            bad("programs", format!("expected a program name, found {p:?}"));
        }
    }
    if o.quantity == Some(0) {
        bad("quantity", "expected at least 1 part, found 0".into());
    }
    let mut seconds = |field: &str, v: Option<f64>, scale: f64| -> Option<f64> {
        let v = v?;
        if v.is_finite() && v >= 0.0 {
            Some(v * scale)
        } else {
            bad(
                field,
                format!("expected a duration of 0 or more, found {v}"),
            );
            None
        }
    };
    let setup = seconds("setup_seconds", o.setup_seconds, 1.0).or(seconds(
        "setup_minutes",
        o.setup_minutes,
        60.0,
    ));
    let cycle = seconds("cycle_seconds", o.cycle_seconds, 1.0);
    let due = match o.due.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(d) => match parse_due(d) {
            Ok(t) => Some(t),
            Err(e) => {
                bad("due", e);
                None
            }
        },
    };
    if let Some(a) = text(&o.after) {
        if a == o.operation.trim() {
            bad("after", format!("operation {a:?} cannot come after itself"));
        }
    }
    (out.len() == before).then(|| DispatchedOperation {
        job: o.job.trim().to_string(),
        operation: o.operation.trim().to_string(),
        part_number: text(&o.part_number),
        part_revision: text(&o.part_revision),
        programs,
        quantity: o.quantity,
        setup_seconds: setup,
        cycle_seconds: cycle,
        due,
        customer_order: text(&o.customer_order),
        after: text(&o.after),
    })
}

/// Checks a whole list for one machine: every operation, no (job, operation) twice.
pub fn check_list(
    ops: &[OperationInput],
    prefix: &str,
) -> Result<Vec<DispatchedOperation>, Vec<Problem>> {
    let mut problems = Vec::new();
    if ops.len() > MAX_OPERATIONS {
        problems.push(Problem {
            at: prefix.to_string(),
            message: format!(
                "expected at most {MAX_OPERATIONS} operations per machine, found {}",
                ops.len()
            ),
        });
        return Err(problems);
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(ops.len());
    for (i, o) in ops.iter().enumerate() {
        let at = format!("{prefix}[{i}]");
        if let Some(d) = check_operation(o, &at, &mut problems) {
            if !seen.insert((d.job.clone(), d.operation.clone())) {
                problems.push(Problem {
                    at,
                    message: format!(
                        "job {:?} operation {:?} is listed twice",
                        d.job, d.operation
                    ),
                });
            }
            out.push(d);
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// How a CSV export's columns map onto the fields (`[context.drop_folder.columns]`): field →
/// the header text in the file. Unmapped fields are looked up by their own name.
pub type Columns = BTreeMap<String, String>;

/// The fields a CSV may map.
pub const CSV_FIELDS: &[&str] = &[
    "machine",
    "work_center",
    "job",
    "operation",
    "part_number",
    "part_revision",
    "program",
    "quantity",
    "setup_minutes",
    "setup_seconds",
    "cycle_seconds",
    "due",
    "customer_order",
    "after",
];

/// A CSV export's operations with their line numbers, and the problems of its lines.
pub type CsvRows = (Vec<(usize, OperationInput)>, Vec<Problem>);

/// Reads a CSV export into operations, each with the line it came from (1-based, the header
/// is line 1), and the problems of its lines (naming the line and the column header), so that
/// the caller can check the rest and report everything at once. A header that lacks what is
/// needed is an error of its own.
pub fn parse_csv(text: &str, columns: &Columns) -> Result<CsvRows, Vec<Problem>> {
    // Exports from a comma-decimal locale separate fields with ';'.
    let header = text.lines().next().unwrap_or("");
    let delimiter = if header.contains(';') && !header.contains(',') {
        b';'
    } else {
        b','
    };
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = match rdr.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            return Err(vec![Problem {
                at: "line 1".into(),
                message: format!("cannot read the header: {e}"),
            }]);
        }
    };
    let col = |field: &str| -> Option<usize> {
        let name = columns.get(field).map(String::as_str).unwrap_or(field);
        headers.iter().position(|h| h.eq_ignore_ascii_case(name))
    };
    let mut problems = Vec::new();
    for required in ["job", "operation"] {
        if col(required).is_none() {
            problems.push(Problem {
                at: "line 1".into(),
                message: format!(
                    "no column {:?} for the {required}; the header has: {}",
                    columns
                        .get(required)
                        .map(String::as_str)
                        .unwrap_or(required),
                    headers.iter().collect::<Vec<_>>().join(", ")
                ),
            });
        }
    }
    if col("machine").is_none() && col("work_center").is_none() {
        problems.push(Problem {
            at: "line 1".into(),
            message:
                "no machine or work_center column: every line must say which machine it is for"
                    .into(),
        });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let idx: BTreeMap<&str, usize> = CSV_FIELDS
        .iter()
        .filter_map(|f| col(f).map(|i| (*f, i)))
        .collect();
    let mut out = Vec::new();
    for (n, rec) in rdr.records().enumerate() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(n + 2, |p| p.line() as usize);
                problems.push(Problem {
                    at: format!("line {line}"),
                    message: e.to_string(),
                });
                continue;
            }
        };
        // The reader skips blank lines: count the line from the record's byte offset.
        let line = rec.position().map_or(n + 2, |p| {
            let bytes = text.as_bytes();
            let mut at = p.byte() as usize;
            while bytes.get(at).is_some_and(|c| *c == b'\n' || *c == b'\r') {
                at += 1;
            }
            bytes
                .get(..at)
                .map_or(0, |b| b.iter().filter(|c| **c == b'\n').count())
                + 1
        });
        if rec.iter().all(|f| f.is_empty()) {
            continue;
        }
        let get = |f: &str| {
            idx.get(f)
                .and_then(|&i| rec.get(i))
                .map(str::to_string)
                .filter(|s| !s.is_empty())
        };
        let header = |f: &str| {
            idx.get(f)
                .and_then(|&i| headers.get(i))
                .unwrap_or(f)
                .to_string()
        };
        let mut num = |f: &str| -> Option<f64> {
            let v = get(f)?;
            match v.replace(',', ".").parse::<f64>() {
                Ok(x) => Some(x),
                Err(_) => {
                    problems.push(Problem {
                        at: format!("line {line}, column {:?}", header(f)),
                        message: format!("expected a number, found {v:?}"),
                    });
                    None
                }
            }
        };
        let quantity = num("quantity").map(|q| q.round().max(0.0) as u64);
        let setup_minutes = num("setup_minutes");
        let setup_seconds = num("setup_seconds");
        let cycle_seconds = num("cycle_seconds");
        out.push((
            line,
            OperationInput {
                job: get("job").unwrap_or_default(),
                operation: get("operation").unwrap_or_default(),
                part_number: get("part_number"),
                part_revision: get("part_revision"),
                programs: Vec::new(),
                program: get("program"),
                quantity,
                setup_seconds,
                setup_minutes,
                cycle_seconds,
                due: get("due"),
                customer_order: get("customer_order"),
                after: get("after"),
                machine: get("machine"),
                work_center: get("work_center"),
            },
        ));
    }
    Ok((out, problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_checked_whole_and_problems_name_the_field() {
        let ok = OperationInput {
            job: "24173".into(),
            operation: "20".into(),
            program: Some("O1234|O1235".into()),
            quantity: Some(40),
            due: Some("2026-12-01".into()),
            ..Default::default()
        };
        let list = check_list(std::slice::from_ref(&ok), "operations").unwrap();
        assert_eq!(list[0].programs, vec!["O1234", "O1235"]);
        assert_eq!(
            list[0].due,
            Some(Timestamp::parse_rfc3339("2026-12-01T23:59:59.999999Z").unwrap())
        );
        let bad = OperationInput {
            job: " ".into(),
            quantity: Some(0),
            due: Some("tomorrow".into()),
            ..ok.clone()
        };
        let e = check_list(&[ok.clone(), bad, ok], "operations").unwrap_err();
        let at: Vec<&str> = e.iter().map(|p| p.at.as_str()).collect();
        assert_eq!(
            at,
            vec![
                "operations[1].job",
                "operations[1].quantity",
                "operations[1].due",
                "operations[2]"
            ],
            "{e:?}"
        );
    }

    #[test]
    fn csv_columns_map_from_the_erp_header_and_errors_name_line_and_column() {
        let text = "Work Center,Job No,Op,Part,Program,Qty,Due Date\n\
                    WC-MILL-1,24173,10,HX-1001-A,O1234,40,2026-12-01\n\
                    \n\
                    WC-MILL-1,24174,10,\"BR-2002-B, rev\",O2000,x,2026-12-02\n";
        let mut cols = Columns::new();
        for (f, h) in [
            ("work_center", "Work Center"),
            ("job", "Job No"),
            ("operation", "Op"),
            ("part_number", "Part"),
            ("quantity", "Qty"),
            ("due", "Due Date"),
        ] {
            cols.insert(f.into(), h.into());
        }
        let (rows, e) = parse_csv(text, &cols).unwrap();
        assert_eq!(e[0].at, "line 4, column \"Qty\"", "{e:?}");
        assert_eq!(rows.len(), 2, "the line is kept for the other checks");
        let fixed = text.replace(",x,", ",12,");
        let (rows, e) = parse_csv(&fixed, &cols).unwrap();
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].0, 4);
        assert_eq!(rows[1].1.part_number.as_deref(), Some("BR-2002-B, rev"));
        assert_eq!(rows[0].1.work_center.as_deref(), Some("WC-MILL-1"));
        let e = parse_csv("a,b\n1,2\n", &Columns::new()).unwrap_err();
        assert!(e[0].message.contains("no column \"job\""), "{e:?}");
    }
}
