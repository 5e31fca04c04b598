//! REST for the review: intervals (newest revision of each span), one interval with its
//! history and records, the daily review, jobs with their projected completion, the taxonomy,
//! who is signed in where, and who is asking.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Access;
use super::{ApiError, HttpState, bad_query};
use crate::context::calendar::Calendar;
use crate::model::{MachineId, Record, RecordKind, StateInterval, Timestamp};
use crate::northbound::review::{self, DailyReport, JobStatus, ShiftWindow, Span};

/// An interval record as the review serves it: the newest revision of one span.
#[derive(Debug, Serialize, ToSchema)]
pub struct IntervalView {
    /// The journal record (the newest revision of the span).
    pub seq: u64,
    /// Its length in seconds.
    pub seconds: f64,
    #[serde(flatten)]
    pub interval: StateInterval,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IntervalPage {
    pub intervals: Vec<IntervalView>,
    /// Pass as `cursor` for the next page (null: this was the last).
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IntervalsQuery {
    /// Only this machine's spans (default: every machine's, ordered by machine then start).
    pub machine: Option<String>,
    /// Spans that end after this time (RFC 3339; default: 24 hours before `to`).
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Spans that start before this time (RFC 3339; default: now).
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// Only spans of this category (`production` or a loss category).
    pub category: Option<String>,
    /// At most this many (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
    /// Where the previous page ended (its `next_cursor`).
    #[param(pattern = r"^[A-Za-z0-9._-]{1,64}@-?\d+$")]
    pub cursor: Option<String>,
}

pub fn parse_time(name: &str, v: &str) -> Result<Timestamp, ApiError> {
    Timestamp::parse_rfc3339(v.trim()).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_time",
            format!("{name}: expected a time like \"2026-11-24T06:00:00Z\", found {v:?}"),
        )
    })
}

pub fn parse_machine(v: &str) -> Result<MachineId, ApiError> {
    MachineId::new(v).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_machine",
            format!("machine: {e}"),
        )
    })
}

pub fn index_ready(s: &HttpState) -> Result<(), ApiError> {
    if s.index.is_ready() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "index_loading",
            format!(
                "the interval index is still reading the journal (at record {} of {}); try again in a few seconds",
                s.index.position(),
                s.journal.last_seq()
            ),
        ))
    }
}

fn journal_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "journal_unavailable",
        e.to_string(),
    )
}

/// Reads the records with these seqs (in the order given); a seq no longer stored is skipped.
pub fn read_seqs(
    journal: &crate::journal::Journal,
    seqs: &[u64],
) -> Result<Vec<Record>, crate::journal::JournalError> {
    crate::journal::read_seqs(|a, m| journal.read(a, m), seqs)
}

pub fn view(r: Record) -> Option<IntervalView> {
    match r.kind {
        RecordKind::Interval(i) => Some(IntervalView {
            seq: r.seq,
            seconds: (i.end.as_micros() - i.start.as_micros()) as f64 / 1e6,
            interval: *i,
        }),
        _ => None,
    }
}

/// `(machine, start micros)` as a cursor.
fn cursor_of(m: &MachineId, start: Timestamp) -> String {
    format!("{}@{}", m, start.as_micros())
}

fn parse_cursor(c: &str) -> Result<(MachineId, Timestamp), ApiError> {
    let bad = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_cursor",
            format!("cursor: expected the next_cursor of a previous page, found {c:?}"),
        )
    };
    let (m, t) = c.rsplit_once('@').ok_or_else(bad)?;
    let m = MachineId::new(m).map_err(|_| bad())?;
    let t = t.parse::<i64>().map_err(|_| bad())?;
    Ok((m, Timestamp::from_micros(t)))
}

/// The spans a query selects, in (machine, start) order, after the cursor, at most `limit`
/// (and whether more follow).
pub fn select_spans(
    s: &HttpState,
    machine: Option<&MachineId>,
    from: Timestamp,
    to: Timestamp,
    category: Option<&str>,
    after: Option<&(MachineId, Timestamp)>,
    limit: usize,
) -> (Vec<(MachineId, Span)>, bool) {
    s.index
        .read(|ix| {
            let mut ids: Vec<&MachineId> = match machine {
                Some(m) => vec![m],
                None => ix.machines.keys().collect(),
            };
            ids.sort();
            let mut out = Vec::new();
            for id in ids {
                if after.is_some_and(|(am, _)| id < am) {
                    continue;
                }
                for sp in ix.spans(id, from, to) {
                    if after.is_some_and(|(am, at)| id == am && sp.start <= *at) {
                        continue;
                    }
                    if category.is_some_and(|c| ix.strings.get(sp.category) != Some(c)) {
                        continue;
                    }
                    if out.len() == limit {
                        return (out, true);
                    }
                    out.push((id.clone(), sp));
                }
            }
            (out, false)
        })
        .unwrap_or_default()
}

/// Classified spans (newest revision of each) overlapping `[from, to)`.
#[utoipa::path(get, path = "/api/v1/intervals", tag = "review", params(IntervalsQuery),
    responses((status = 200, body = IntervalPage), (status = 400, body = super::ErrorBody),
        (status = 503, body = super::ErrorBody)))]
pub async fn get_intervals(
    State(s): State<HttpState>,
    q: Result<Query<IntervalsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let r = async {
        let Query(q) = q.map_err(bad_query)?;
        index_ready(&s)?;
        let limit = q.limit.unwrap_or(1000);
        if limit == 0 || limit > 10_000 {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_limit",
                format!("limit must be 1..=10000, found {limit}"),
            ));
        }
        let to = match &q.to {
            Some(t) => parse_time("to", t)?,
            None => s.clock.now(),
        };
        let from = match &q.from {
            Some(t) => parse_time("from", t)?,
            None => Timestamp::from_micros(to.as_micros().saturating_sub(86_400_000_000)),
        };
        if to <= from {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_range",
                "to: expected a time after from",
            ));
        }
        let machine = q.machine.as_deref().map(parse_machine).transpose()?;
        let after = q.cursor.as_deref().map(parse_cursor).transpose()?;
        let (spans, more) = select_spans(
            &s,
            machine.as_ref(),
            from,
            to,
            q.category.as_deref(),
            after.as_ref(),
            limit,
        );
        let next_cursor = more
            .then(|| spans.last().map(|(m, sp)| cursor_of(m, sp.start)))
            .flatten();
        let seqs: Vec<u64> = spans.iter().map(|(_, sp)| sp.seq).collect();
        let journal = s.journal.clone();
        let records = tokio::task::spawn_blocking(move || read_seqs(&journal, &seqs))
            .await
            .map_err(journal_error)?
            .map_err(journal_error)?;
        Ok(IntervalPage {
            intervals: records.into_iter().filter_map(view).collect(),
            next_cursor,
        })
    }
    .await;
    super::respond(r)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IntervalDetail {
    pub interval: IntervalView,
    /// Earlier writings of the same span (before each revision), oldest first.
    pub history: Vec<IntervalView>,
    /// The machine's journal records inside the span (at most 200, oldest first).
    pub records: Vec<Record>,
    /// More records fall inside the span than are shown.
    pub records_truncated: bool,
}

/// One interval: its newest revision, its reconciliation history, and the records behind it.
#[utoipa::path(get, path = "/api/v1/intervals/{seq}", tag = "review",
    params(("seq" = u64, Path, description = "The seq of any writing of the span")),
    responses((status = 200, body = IntervalDetail), (status = 400, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody), (status = 503, body = super::ErrorBody)))]
pub async fn get_interval(State(s): State<HttpState>, Path(seq): Path<String>) -> Response {
    let r = async {
        let seq: u64 = seq.parse().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_seq",
                format!("expected a record's seq (a whole number), found {seq:?}"),
            )
        })?;
        index_ready(&s)?;
        let journal = s.journal.clone();
        let first = {
            let j = journal.clone();
            tokio::task::spawn_blocking(move || read_seqs(&j, &[seq]))
                .await
                .map_err(journal_error)?
                .map_err(journal_error)?
        };
        let not_found = || {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_interval",
                format!("record {seq} is not an interval the journal holds"),
            )
        };
        let RecordKind::Interval(i) = &first.first().ok_or_else(not_found)?.kind else {
            return Err(not_found());
        };
        let key = (i.machine.clone(), i.start);
        let (newest, mut older) = s
            .index
            .read(|ix| {
                let newest = ix
                    .machines
                    .get(&key.0)
                    .and_then(|m| m.get(&key.1))
                    .map_or(seq, |sp| sp.seq);
                (newest, ix.history.get(&key).cloned().unwrap_or_default())
            })
            .unwrap_or((seq, Vec::new()));
        older.retain(|x| *x != newest);
        let machine = key.0.clone();
        let (start, end) = (i.start, i.end);
        let (interval, history, records, truncated) = tokio::task::spawn_blocking(move || {
            let interval = read_seqs(&journal, &[newest])?;
            let history = read_seqs(&journal, &older)?;
            let mut records = Vec::new();
            let mut truncated = false;
            let mut pos = journal.seek_time(start)?;
            let mut scanned = 0usize;
            'scan: loop {
                let batch = journal.read(pos, 4096)?;
                let Some(last) = batch.last() else { break };
                pos = last.seq;
                for r in batch {
                    scanned += 1;
                    let t = r.kind.time();
                    // Derived records (intervals, context) are written after their time:
                    // look a little further than `end` for the source records only.
                    if t >= end || scanned > 500_000 {
                        if t >= end {
                            break 'scan;
                        }
                        truncated = true;
                        break 'scan;
                    }
                    if r.kind.machine() != &machine || t < start {
                        continue;
                    }
                    if records.len() == 200 {
                        truncated = true;
                        break 'scan;
                    }
                    records.push(r);
                }
            }
            Ok::<_, crate::journal::JournalError>((interval, history, records, truncated))
        })
        .await
        .map_err(journal_error)?
        .map_err(journal_error)?;
        let interval = interval.into_iter().find_map(view).ok_or_else(not_found)?;
        Ok(IntervalDetail {
            interval,
            history: history.into_iter().filter_map(view).collect(),
            records,
            records_truncated: truncated,
        })
    }
    .await;
    super::respond(r)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DailyQuery {
    /// The local date to review: `YYYY-MM-DD`, `today` or `yesterday` (the default), in the
    /// shop's zone.
    #[param(pattern = r"^(\d{4}-\d{2}-\d{2}|today|yesterday)$")]
    pub date: Option<String>,
}

/// The calendar the review takes its day and zone from: the `default` calendar's when the
/// machines use it, else the first machine's.
pub fn review_calendar(s: &HttpState) -> std::sync::Arc<Calendar> {
    s.engine
        .as_ref()
        .and_then(|e| {
            let mut ids: Vec<_> = e.machines.keys().collect();
            ids.sort();
            ids.first()
                .and_then(|m| e.machines.get(*m))
                .map(|x| x.calendar.clone())
        })
        .unwrap_or_else(|| std::sync::Arc::new(Calendar::always()))
}

/// A machine, the operation on it (job, operation) and that operation's feedback.
type CurrentWork = (
    MachineId,
    Option<(String, String)>,
    Option<crate::model::ScheduleFeedback>,
);

/// Every machine's dispatched operations, projected.
pub fn job_statuses(s: &HttpState, now: Timestamp) -> Vec<JobStatus> {
    let work: Vec<CurrentWork> = s.live.map(|m| {
        (
            m.id.clone(),
            m.operation
                .as_ref()
                .map(|o| (o.job.clone(), o.operation.clone())),
            m.context.as_ref().and_then(|c| c.feedback.clone()),
        )
    });
    let mut out = Vec::new();
    for (id, current, feedback) in &work {
        let inputs = s.context.get(id);
        let w = review::jobs::MachineWork {
            machine: id,
            dispatch: &inputs.dispatch,
            current: current
                .as_ref()
                .map(|(j, o)| (j.as_str(), o.as_str(), feedback.as_ref())),
        };
        out.extend(review::jobs::project(&w, now));
    }
    out
}

/// The daily review of one local day.
#[utoipa::path(get, path = "/api/v1/reports/daily", tag = "review", params(DailyQuery),
    responses((status = 200, body = DailyReport), (status = 400, body = super::ErrorBody),
        (status = 503, body = super::ErrorBody)))]
pub async fn get_daily(
    State(s): State<HttpState>,
    q: Result<Query<DailyQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let r = async {
        let Query(q) = q.map_err(bad_query)?;
        index_ready(&s)?;
        let now = s.clock.now();
        let cal = review_calendar(&s);
        let today = cal.zone.local_date(now).ok_or_else(|| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "no local date for now")
        })?;
        let date: jiff::civil::Date = match q.date.as_deref().map(str::trim) {
            Some("today") => today,
            Some("yesterday") | None => today.yesterday().map_err(|_| {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_date", "no day before today")
            })?,
            Some(d) => d.parse().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_date",
                    format!(
                        "date: expected a date like \"2026-11-24\", \"today\" or \"yesterday\", found {d:?}"
                    ),
                )
            })?,
        };
        let (from, to) = cal.day_window(date).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_date",
                format!("date: {date} is outside the range this bridge can review"),
            )
        })?;
        let mut shifts: Vec<ShiftWindow> = Vec::new();
        let mut calendars: Vec<std::sync::Arc<Calendar>> = vec![cal.clone()];
        if let Some(e) = &s.engine {
            for m in e.machines.values() {
                if !calendars.iter().any(|c| c.name == m.calendar.name) {
                    calendars.push(m.calendar.clone());
                }
            }
        }
        for c in &calendars {
            for (name, start, end) in c.shifts_on(date) {
                if !shifts.iter().any(|x| x.name == name && x.start == start) {
                    shifts.push(ShiftWindow { name, start, end });
                }
            }
        }
        shifts.sort_by_key(|x| x.start);
        let machines: Vec<(MachineId, String)> = s.live.map(|m| (m.id.clone(), m.name.clone()));
        let jobs = job_statuses(&s, now);
        let input = review::DayInput {
            date: date.to_string(),
            today: today.to_string(),
            zone: cal.zone.name(),
            from,
            to,
            now,
            shifts,
            machines: &machines,
            jobs,
            through_seq: 0,
        };
        // The seq with the spans, in one read: read before them, a batch applied in between
        // put newer spans on the page than its through_seq says.
        s.index
            .read_through(|ix, through_seq| review::daily(ix, review::DayInput { through_seq, ..input }))
            .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the interval index is poisoned"))
    }
    .await;
    super::respond(r)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobStatus>,
}

/// Every dispatched operation, with its projected completion and whether it is at risk.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "context",
    responses((status = 200, body = JobList)))]
pub async fn get_jobs(State(s): State<HttpState>) -> Response {
    Json(JobList {
        jobs: job_statuses(&s, s.clock.now()),
    })
    .into_response()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Reason {
    /// The category's id, as records and `POST /api/v1/machines/{id}/reason` use it.
    pub id: String,
    pub label: String,
    /// An operator may give it as a stop's reason on the tablet page (the categories the
    /// bridge decides itself are not offered: unexplained, micro-stop, planned downtime).
    pub operator: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Reasons {
    pub categories: Vec<Reason>,
    /// The category of cutting time.
    pub production: String,
}

pub fn label(id: &str) -> String {
    let known = [
        ("production", "Production"),
        ("setup", "Setup"),
        ("program_proveout", "Program prove-out"),
        ("waiting_inspection", "Waiting on inspection"),
        ("quality_hold", "Quality hold"),
        ("blocked", "Blocked"),
        ("starved", "Starved"),
        ("no_operator", "No operator"),
        ("tool_change", "Tool change"),
        ("maintenance", "Maintenance"),
        ("machine_fault", "Machine fault"),
        ("micro_stop", "Micro-stop"),
        ("planned_downtime", "Planned downtime"),
        ("unexplained", "Unexplained"),
    ];
    if let Some((_, l)) = known.iter().find(|(k, _)| *k == id) {
        return l.to_string();
    }
    let mut s = id.replace(['_', '-'], " ");
    if let Some(f) = s.get(..1) {
        s = f.to_uppercase() + &s[1..];
    }
    s
}

/// The downtime taxonomy: every loss category, and which ones an operator may give.
#[utoipa::path(get, path = "/api/v1/reasons", tag = "context",
    responses((status = 200, body = Reasons)))]
pub async fn get_reasons(State(s): State<HttpState>) -> Response {
    let categories = s
        .taxonomy
        .categories()
        .iter()
        .map(|c| Reason {
            id: c.as_str().to_string(),
            label: label(c.as_str()),
            operator: !["unexplained", "micro_stop", "planned_downtime"].contains(&c.as_str()),
        })
        .collect();
    Json(Reasons {
        categories,
        production: "production".into(),
    })
    .into_response()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignedIn {
    pub operator: String,
    pub machine: MachineId,
    pub machine_name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Operators {
    /// Who is signed in where now.
    pub signed_in: Vec<SignedIn>,
}

/// Operators signed in at machines now.
#[utoipa::path(get, path = "/api/v1/operators", tag = "context",
    responses((status = 200, body = Operators)))]
pub async fn get_operators(State(s): State<HttpState>) -> Response {
    let signed_in = s
        .live
        .map(|m| {
            m.operator.as_ref().map(|o| SignedIn {
                operator: o.clone(),
                machine: m.id.clone(),
                machine_name: m.name.clone(),
            })
        })
        .into_iter()
        .flatten()
        .collect();
    Json(Operators { signed_in }).into_response()
}

/// The role this request has, and the token's name.
#[utoipa::path(get, path = "/api/v1/whoami", tag = "auth",
    responses((status = 200, body = Access)))]
pub async fn whoami(Extension(a): Extension<Access>) -> Response {
    Json(a).into_response()
}
