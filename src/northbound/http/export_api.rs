//! Exports over REST: records and intervals as CSV or JSON Lines, streamed as they are read
//! (docs/data-model.md is the schema). The same rows as `shopbridge export`.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::review_api::{index_ready, parse_machine, parse_time, read_seqs, select_spans};
use super::{ApiError, HttpState, bad_query};
use crate::model::{MachineId, RecordKind, Timestamp};
use crate::northbound::export::{self, Filter};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `csv` (default) or `jsonl`.
    #[param(pattern = "^(csv|jsonl)$")]
    pub format: Option<String>,
    /// From this time (RFC 3339; records at or after it, intervals ending after it).
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Until this time (RFC 3339; records before it, intervals starting before it).
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// Only this machine's.
    pub machine: Option<String>,
}

struct Parsed {
    csv: bool,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    machine: Option<MachineId>,
}

fn parse(q: &ExportQuery) -> Result<Parsed, ApiError> {
    let csv = match q.format.as_deref().map(str::trim) {
        None | Some("csv") => true,
        Some("jsonl") => false,
        Some(f) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_format",
                format!("format: expected \"csv\" or \"jsonl\", found {f:?}"),
            ));
        }
    };
    Ok(Parsed {
        csv,
        from: q
            .from
            .as_deref()
            .map(|t| parse_time("from", t))
            .transpose()?,
        to: q.to.as_deref().map(|t| parse_time("to", t)).transpose()?,
        machine: q.machine.as_deref().map(parse_machine).transpose()?,
    })
}

/// A streamed download: `produce` runs on a blocking thread and sends chunks; a failure after
/// the first byte ends the body early (the client sees a truncated download, and the log says
/// why).
fn stream_download(
    csv: bool,
    name: &str,
    produce: impl FnOnce(&dyn Fn(String) -> bool) -> Result<(), String> + Send + 'static,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(16);
    tokio::task::spawn_blocking(move || {
        let send = |chunk: String| tx.blocking_send(chunk).is_ok();
        if let Err(e) = produce(&send) {
            tracing::warn!(error = %e, "an export stopped early");
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|c| (Ok::<_, std::convert::Infallible>(c), rx))
    });
    let (ctype, ext) = if csv {
        ("text/csv; charset=utf-8", "csv")
    } else {
        ("application/x-ndjson", "jsonl")
    };
    (
        [
            (header::CONTENT_TYPE, ctype.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.{ext}\""),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// Flushes `buf` to `send` once it holds 64 KiB; false when the client went away.
fn flush(buf: &mut String, send: &dyn Fn(String) -> bool, force: bool) -> bool {
    if buf.len() >= 64 * 1024 || (force && !buf.is_empty()) {
        return send(std::mem::take(buf));
    }
    true
}

/// Journal records as CSV or JSON Lines (the same rows as `shopbridge export`).
#[utoipa::path(get, path = "/api/v1/export/records", tag = "export", params(ExportQuery),
    responses((status = 200, description = "CSV (`format=csv`) or JSON Lines (`format=jsonl`)", content((String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 400, body = super::ErrorBody)))]
pub async fn export_records(
    State(s): State<HttpState>,
    q: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let p = match q.map_err(bad_query).and_then(|Query(q)| parse(&q)) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let journal = s.journal.clone();
    stream_download(p.csv, "records", move |send| {
        let filter = Filter {
            from: p.from,
            to: p.to,
            machine: p.machine,
        };
        let mut buf = if p.csv {
            export::CSV_HEADER.to_string()
        } else {
            String::new()
        };
        let end = journal.last_seq();
        let mut after = match filter.from {
            Some(t) => journal.seek_time(t).map_err(|e| e.to_string())?,
            None => 0,
        };
        while after < end {
            let batch = journal.read(after, 5000).map_err(|e| e.to_string())?;
            let Some(last) = batch.last() else { break };
            after = last.seq;
            for r in batch.iter().filter(|r| r.seq <= end && filter.matches(r)) {
                if p.csv {
                    buf.push_str(&export::csv_row(r));
                } else {
                    buf.push_str(&serde_json::to_string(r).unwrap_or_default());
                    buf.push('\n');
                }
            }
            if !flush(&mut buf, send, false) {
                return Ok(());
            }
        }
        flush(&mut buf, send, true);
        Ok(())
    })
}

/// Intervals (the newest revision of each span) as CSV or JSON Lines.
#[utoipa::path(get, path = "/api/v1/export/intervals", tag = "export", params(ExportQuery),
    responses((status = 200, description = "CSV (`format=csv`) or JSON Lines (`format=jsonl`)", content((String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 400, body = super::ErrorBody), (status = 503, body = super::ErrorBody)))]
pub async fn export_intervals(
    State(s): State<HttpState>,
    q: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let p = match q
        .map_err(bad_query)
        .and_then(|Query(q)| parse(&q))
        .and_then(|p| index_ready(&s).map(|()| p))
    {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let (spans, _) = select_spans(
        &s,
        p.machine.as_ref(),
        p.from.unwrap_or(Timestamp::MIN),
        p.to.unwrap_or(Timestamp::MAX),
        None,
        None,
        usize::MAX,
    );
    let journal = s.journal.clone();
    stream_download(p.csv, "intervals", move |send| {
        let mut buf = if p.csv {
            export::INTERVAL_CSV_HEADER.to_string()
        } else {
            String::new()
        };
        for chunk in spans.chunks(512) {
            let seqs: Vec<u64> = chunk.iter().map(|(_, sp)| sp.seq).collect();
            for r in read_seqs(&journal, &seqs).map_err(|e| e.to_string())? {
                if let RecordKind::Interval(i) = &r.kind {
                    buf.push_str(&if p.csv {
                        export::interval_csv_row(r.seq, i)
                    } else {
                        export::interval_json_line(r.seq, i)
                    });
                }
            }
            if !flush(&mut buf, send, false) {
                return Ok(());
            }
        }
        flush(&mut buf, send, true);
        Ok(())
    })
}
