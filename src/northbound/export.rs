//! Exports: journal records as JSON Lines or CSV, filtered by time and machine.
//!
//! `shopbridge export` reads the journal file directly when no bridge holds it. A running bridge
//! holds its journal exclusively (redb locks the file), so then the export reads the same
//! records from that bridge's `/api/v1/records`, found through `bridge.json` in the data
//! directory. Either way the output is the same.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::journal::{JournalError, ReadOnlyJournal};
use crate::model::{MachineId, Record, RecordKind, Timestamp};

/// Written by a running bridge into its data directory so that other processes find it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BridgeFile {
    pub pid: u32,
    /// The HTTP address, e.g. "127.0.0.1:8080".
    pub http: String,
    pub started: Timestamp,
}

pub const BRIDGE_FILE: &str = "bridge.json";

impl BridgeFile {
    /// The bridge file of the bridge running on data directory `dir`; the error says why it
    /// cannot be read.
    pub fn read(dir: &Path) -> Result<BridgeFile, String> {
        let text = std::fs::read_to_string(dir.join(BRIDGE_FILE)).map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| e.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
}

/// Which records to export.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub machine: Option<MachineId>,
}

impl Filter {
    pub fn matches(&self, r: &Record) -> bool {
        let t = r.kind.time();
        self.from.is_none_or(|f| t >= f)
            && self.to.is_none_or(|to| t < to)
            && self.machine.as_ref().is_none_or(|m| r.kind.machine() == m)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("cannot write the export: {0}")]
    Write(#[from] std::io::Error),
    #[error(
        "the journal in {dir} is held by a running shopbridge, and reading through its HTTP API at {http} failed: {detail}"
    )]
    Http {
        dir: String,
        http: String,
        detail: String,
    },
    #[error(
        "the journal in {dir} is held by a running shopbridge (redb locks it for one process), and \
         {BRIDGE_FILE} there does not say where its HTTP API is ({detail}); stop the bridge, or \
         export with `curl http://<its http.listen>/api/v1/records`"
    )]
    NoBridgeFile { dir: String, detail: String },
}

pub const CSV_HEADER: &str =
    "seq,kind,machine,time,signal,value,quality,source_time,received_time,detail\n";

fn csv_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// One CSV row. Observations fill signal/value/quality and the three times; other kinds put
/// their JSON in `detail`, so nothing is lost.
pub fn csv_row(r: &Record) -> String {
    let mut out = String::with_capacity(96);
    out.push_str(&r.seq.to_string());
    out.push(',');
    out.push_str(r.kind.kind_name());
    out.push(',');
    csv_field(&mut out, r.kind.machine().as_str());
    out.push(',');
    out.push_str(&r.kind.time().to_rfc3339());
    out.push(',');
    match &r.kind {
        RecordKind::Observation(o) => {
            csv_field(&mut out, o.signal.as_str());
            out.push(',');
            csv_field(&mut out, &o.value.to_string());
            out.push(',');
            let q = serde_json::to_value(o.quality).unwrap_or_default();
            let qs = match (q.get("quality"), q.get("reason")) {
                (Some(k), Some(r)) => format!(
                    "{}:{}",
                    k.as_str().unwrap_or_default(),
                    r.as_str().unwrap_or_default()
                ),
                (Some(k), None) => k.as_str().unwrap_or_default().to_string(),
                _ => String::new(),
            };
            out.push_str(&qs);
            out.push(',');
            if let Some(s) = o.time.source {
                out.push_str(&s.to_rfc3339());
            }
            out.push(',');
            out.push_str(&o.time.received.to_rfc3339());
            out.push(',');
        }
        other => {
            out.push_str(",,,,,");
            let json = serde_json::to_string(other).unwrap_or_default();
            csv_field(&mut out, &json);
        }
    }
    out.push('\n');
    out
}

/// The columns of an interval export (docs/data-model.md describes each).
pub const INTERVAL_CSV_HEADER: &str = "seq,machine,start,end,seconds,shop_state,availability,execution,controller_mode,functional_mode,program,category,source,rule,confidence,by,job,operation,part_number,part_revision,operator,shift,provisional,revision,revision_why\n";

/// One interval as a CSV row (the newest revision of a span; `seq` is that revision's record).
pub fn interval_csv_row(seq: u64, i: &crate::model::StateInterval) -> String {
    let mut out = String::with_capacity(200);
    let opt = |out: &mut String, v: Option<&str>| {
        if let Some(v) = v {
            csv_field(out, v);
        }
        out.push(',');
    };
    out.push_str(&seq.to_string());
    out.push(',');
    csv_field(&mut out, i.machine.as_str());
    out.push(',');
    out.push_str(&i.start.to_rfc3339());
    out.push(',');
    out.push_str(&i.end.to_rfc3339());
    out.push(',');
    out.push_str(&format!(
        "{:.6}",
        (i.end.as_micros() - i.start.as_micros()) as f64 / 1e6
    ));
    out.push(',');
    out.push_str(i.shop_state.as_str());
    out.push(',');
    let st = &i.state;
    out.push_str(st.availability.as_str());
    out.push(',');
    opt(&mut out, st.execution.map(|e| e.as_str()));
    opt(&mut out, st.controller_mode.map(|e| e.as_str()));
    opt(&mut out, st.functional_mode.map(|e| e.as_str()));
    opt(&mut out, st.program.as_deref());
    opt(&mut out, i.category.as_ref().map(|c| c.as_str()));
    let a = i.attribution.as_ref();
    opt(&mut out, a.map(|a| a.source.as_str()));
    opt(&mut out, a.and_then(|a| a.rule.as_deref()));
    let conf = a.map(|a| format!("{}", a.confidence));
    opt(&mut out, conf.as_deref());
    opt(&mut out, a.and_then(|a| a.by.as_deref()));
    let c = &i.context;
    for v in [
        &c.job,
        &c.operation,
        &c.part_number,
        &c.part_revision,
        &c.operator,
        &c.shift,
    ] {
        opt(&mut out, v.as_deref());
    }
    out.push_str(if i.provisional { "true" } else { "false" });
    out.push(',');
    out.push_str(&i.revision.as_ref().map_or(0, |r| r.n).to_string());
    out.push(',');
    if let Some(r) = &i.revision {
        csv_field(&mut out, &r.why);
    }
    out.push('\n');
    out
}

/// One interval as a JSON line: the record as `/api/v1/intervals` shows it.
pub fn interval_json_line(seq: u64, i: &crate::model::StateInterval) -> String {
    #[derive(Serialize)]
    struct Line<'a> {
        seq: u64,
        seconds: f64,
        #[serde(flatten)]
        interval: &'a crate::model::StateInterval,
    }
    let mut s = serde_json::to_string(&Line {
        seq,
        seconds: (i.end.as_micros() - i.start.as_micros()) as f64 / 1e6,
        interval: i,
    })
    .unwrap_or_default();
    s.push('\n');
    s
}

/// Writes records in the chosen format.
pub struct Writer<W: Write> {
    out: W,
    format: Format,
    pub written: u64,
}

impl<W: Write> Writer<W> {
    pub fn new(mut out: W, format: Format) -> std::io::Result<Self> {
        if format == Format::Csv {
            out.write_all(CSV_HEADER.as_bytes())?;
        }
        Ok(Self {
            out,
            format,
            written: 0,
        })
    }

    pub fn write(&mut self, r: &Record) -> std::io::Result<()> {
        match self.format {
            Format::Jsonl => {
                serde_json::to_writer(&mut self.out, r)?;
                self.out.write_all(b"\n")?;
            }
            Format::Csv => self.out.write_all(csv_row(r).as_bytes())?,
        }
        self.written += 1;
        Ok(())
    }

    pub fn finish(mut self) -> std::io::Result<u64> {
        self.out.flush()?;
        Ok(self.written)
    }
}

/// Where the records come from.
enum Source {
    File(ReadOnlyJournal),
    Http {
        base: String,
        client: reqwest::Client,
    },
}

/// The page returned by `/api/v1/records`.
#[derive(Debug, Deserialize)]
struct RecordsPage {
    records: Vec<Record>,
    last_seq: u64,
}

/// Exports every record matching `filter` from the journal in `dir` into `w`.
/// Returns the number of records written.
pub async fn export<W: Write>(
    dir: &Path,
    filter: &Filter,
    w: &mut Writer<W>,
) -> Result<u64, ExportError> {
    let dirs = dir.display().to_string();
    let source = match ReadOnlyJournal::open(dir) {
        Ok(j) => Source::File(j),
        Err(JournalError::AlreadyOpen { .. }) => {
            let bf = BridgeFile::read(dir).map_err(|detail| ExportError::NoBridgeFile {
                dir: dirs.clone(),
                detail,
            })?;
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .map_err(|e| ExportError::Http {
                    dir: dirs.clone(),
                    http: bf.http.clone(),
                    detail: e.to_string(),
                })?;
            Source::Http {
                base: format!("http://{}", bf.http),
                client,
            }
        }
        Err(e) => return Err(e.into()),
    };
    let mut after = match (&source, filter.from) {
        (Source::File(j), Some(t)) => j.seek_time(t)?,
        _ => 0,
    };
    const PAGE: usize = 5000;
    let mut written = 0;
    // A running bridge keeps appending: export what was stored when the export began.
    let mut end = u64::MAX;
    loop {
        let batch = match &source {
            Source::File(j) => j.read(after, PAGE)?,
            Source::Http { base, client } => {
                let url = format!("{base}/api/v1/records?after={after}&limit={PAGE}");
                let http_err = |detail: String| ExportError::Http {
                    dir: dirs.clone(),
                    http: base.clone(),
                    detail,
                };
                let resp = client
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| http_err(e.to_string()))?;
                if !resp.status().is_success() {
                    return Err(http_err(format!("{url} answered {}", resp.status())));
                }
                let page = resp
                    .json::<RecordsPage>()
                    .await
                    .map_err(|e| http_err(e.to_string()))?;
                end = end.min(page.last_seq);
                page.records
            }
        };
        let Some(last) = batch.last() else { break };
        after = last.seq;
        for r in &batch {
            if r.seq > end {
                break;
            }
            if filter.matches(r) {
                w.write(r)?;
                written += 1;
            }
        }
        if after >= end {
            break;
        }
    }
    Ok(written)
}

/// Exports the intervals matching `filter` (the newest revision of each span overlapping
/// `[from, to)`, by machine then start) from the journal in `dir` into `out`, as CSV (with its
/// header) or JSON Lines. Returns the number of intervals written.
pub async fn export_intervals(
    dir: &Path,
    filter: &Filter,
    format: Format,
    out: &mut dyn Write,
) -> Result<u64, ExportError> {
    let dirs = dir.display().to_string();
    match ReadOnlyJournal::open(dir) {
        Ok(j) => {
            let mut ix = crate::northbound::review::index::Inner::default();
            for r in crate::journal::all_records(|a, m| j.read(a, m)) {
                let r = r?;
                if let RecordKind::Interval(i) = &r.kind {
                    ix.insert(r.seq, i);
                }
            }
            let from = filter.from.unwrap_or(Timestamp::MIN);
            let to = filter.to.unwrap_or(Timestamp::MAX);
            let mut ids: Vec<&MachineId> = ix
                .machines
                .keys()
                .filter(|m| filter.machine.as_ref().is_none_or(|f| f == *m))
                .collect();
            ids.sort();
            if format == Format::Csv {
                out.write_all(INTERVAL_CSV_HEADER.as_bytes())?;
            }
            let mut n = 0;
            for id in ids {
                let seqs: Vec<u64> = ix.spans(id, from, to).iter().map(|s| s.seq).collect();
                for r in crate::journal::read_seqs(|a, m| j.read(a, m), &seqs)? {
                    if let RecordKind::Interval(i) = &r.kind {
                        out.write_all(
                            match format {
                                Format::Csv => interval_csv_row(r.seq, i),
                                Format::Jsonl => interval_json_line(r.seq, i),
                            }
                            .as_bytes(),
                        )?;
                        n += 1;
                    }
                }
            }
            Ok(n)
        }
        Err(JournalError::AlreadyOpen { .. }) => {
            let bf = BridgeFile::read(dir).map_err(|detail| ExportError::NoBridgeFile {
                dir: dirs.clone(),
                detail,
            })?;
            let http_err = |detail: String| ExportError::Http {
                dir: dirs.clone(),
                http: bf.http.clone(),
                detail,
            };
            let mut url = format!(
                "http://{}/api/v1/export/intervals?format={}",
                bf.http,
                if format == Format::Csv {
                    "csv"
                } else {
                    "jsonl"
                }
            );
            if let Some(t) = filter.from {
                url.push_str(&format!("&from={}", t.to_rfc3339()));
            }
            if let Some(t) = filter.to {
                url.push_str(&format!("&to={}", t.to_rfc3339()));
            }
            if let Some(m) = &filter.machine {
                url.push_str(&format!("&machine={m}"));
            }
            let client = reqwest::Client::new();
            let mut resp = client
                .get(&url)
                .send()
                .await
                .map_err(|e| http_err(e.to_string()))?;
            if !resp.status().is_success() {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                return Err(http_err(format!("{url} answered {status}: {body}")));
            }
            let mut lines = 0u64;
            while let Some(chunk) = resp.chunk().await.map_err(|e| http_err(e.to_string()))? {
                lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
                out.write_all(&chunk)?;
            }
            Ok(lines.saturating_sub(u64::from(format == Format::Csv)))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LinkEvent, LinkStatus, Observation, Quality, Timestamps, Value};

    #[test]
    fn csv_quotes_and_keeps_other_kinds_as_json() {
        let m = MachineId::new("m1").unwrap();
        let t = Timestamp::from_micros(1_764_000_000_000_000);
        let o = Record {
            seq: 1,
            kind: RecordKind::Observation(Observation {
                machine: m.clone(),
                signal: "alarm".into(),
                value: Value::text("SPINDLE OVERLOAD, \"2\""),
                quality: Quality::Good,
                time: Timestamps {
                    source: None,
                    received: t,
                    aligned: t,
                },
            }),
        };
        assert_eq!(
            csv_row(&o),
            "1,observation,m1,2025-11-24T16:00:00.000000Z,alarm,\"SPINDLE OVERLOAD, \"\"2\"\"\",good,,2025-11-24T16:00:00.000000Z,\n"
        );
        let l = Record {
            seq: 2,
            kind: RecordKind::Link(LinkEvent {
                machine: m,
                at: t,
                status: LinkStatus::Lost,
                detail: None,
                missed: None,
            }),
        };
        let row = csv_row(&l);
        assert!(
            row.starts_with("2,link,m1,2025-11-24T16:00:00.000000Z,,,,,,\"{"),
            "{row}"
        );
    }
}
