//! HTTP: health, Prometheus metrics, and the REST API (v1).
//!
//! `run(listener, state, shutdown)` serves on a listener the caller bound, so tests bind port 0.

pub mod auth;
mod context_api;
mod export_api;
pub mod floor;
pub mod guard;
mod metrics;
mod openapi;
mod review_api;
mod web;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::live::{LiveClock, LiveMachine, LiveView};
use crate::drivers::DriverCounters;
use crate::journal::Journal;
use crate::model::{MachineId, Record};
use crate::normalize::ClockInfo;

pub use metrics::render_metrics;

/// Counters the pipeline keeps and `/metrics` shows.
#[derive(Debug, Default)]
pub struct Telemetry {
    pub driver_batches_total: AtomicU64,
    pub driver_events_total: AtomicU64,
    pub observations_total: AtomicU64,
    pub state_changes_total: AtomicU64,
    pub intervals_total: AtomicU64,
    pub decode_errors_total: AtomicU64,
    /// Records the journal refused (a commit failed): data lost, a person must act.
    pub append_failed_records_total: AtomicU64,
    pub http_requests_total: AtomicU64,
    /// HTTP connections closed at once because `[http] max_connections` were open.
    pub http_connections_refused_total: AtomicU64,
    pub conditions_total: AtomicU64,
    pub assets_total: AtomicU64,
    /// OPC UA: logins refused (wrong password, unknown user, anonymous when off).
    pub opcua_logins_refused_total: AtomicU64,
    /// OPC UA: method calls journaled, and refused (role, arguments).
    pub opcua_method_calls_total: AtomicU64,
    pub opcua_method_calls_refused_total: AtomicU64,
    /// OPC UA: node values written (each notifies its subscribers), and events raised.
    pub opcua_value_changes_total: AtomicU64,
    pub opcua_events_total: AtomicU64,
    /// Sparkplug: MQTT connections made (each with a new bdSeq), messages and metrics
    /// published, journal records the broker confirmed (marker PUBACKs).
    pub sparkplug_connects_total: AtomicU64,
    pub sparkplug_messages_total: AtomicU64,
    pub sparkplug_metrics_total: AtomicU64,
    pub sparkplug_records_confirmed_total: AtomicU64,
    /// Sparkplug: rebirths done on NCMD, and those the cooldown suppressed.
    pub sparkplug_rebirths_total: AtomicU64,
    pub sparkplug_rebirths_suppressed_total: AtomicU64,
    /// Sparkplug: DCMD/NCMD commands journaled or acted on, and those refused (unknown device
    /// or metric, undecodable payload, bad value).
    pub sparkplug_commands_total: AtomicU64,
    pub sparkplug_commands_refused_total: AtomicU64,
    /// Sparkplug: 1 while births are out and data flows, 0 while disconnected or waiting for
    /// the primary host.
    pub sparkplug_online: AtomicU64,
    /// Each machine's clock estimate, refreshed by the pipeline.
    pub clocks: std::sync::RwLock<std::collections::BTreeMap<MachineId, ClockInfo>>,
    /// Every running driver's counters.
    pub drivers: std::sync::RwLock<Vec<Arc<DriverCounters>>>,
}

impl Telemetry {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

#[derive(Clone)]
pub struct HttpState {
    pub journal: Journal,
    pub live: Arc<LiveView>,
    pub telemetry: Arc<Telemetry>,
    pub started: Instant,
    pub version: &'static str,
    /// Where ERP, QMS and operator input goes (None: the API only reads).
    pub commands: Option<crate::context::commands::Commands>,
    /// The context engine's settings (today's rules), for re-classification.
    pub engine: Option<Arc<crate::context::EngineConfig>>,
    /// The context engine's dispatch lists and holds per machine.
    pub context: Arc<crate::context::ContextView>,
    /// API tokens and the local role.
    pub auth: Arc<auth::Auth>,
    /// Every machine's classified spans, for the review, timelines and interval exports.
    pub index: Arc<crate::northbound::review::IntervalIndex>,
    /// The downtime taxonomy (`GET /api/v1/reasons`).
    pub taxonomy: crate::model::Taxonomy,
    /// The bridge's clock (sped up in a demo).
    pub clock: crate::clock::Clock,
    /// Ends long-lived responses (the event stream) when the bridge stops.
    pub shutdown: CancellationToken,
}

/// What every error answer looks like (for the OpenAPI document).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable: `unknown_machine`, `bad_query`, `unauthorized` …
    pub code: String,
    /// For a person: what was expected, what was found, and where.
    pub message: String,
}

/// A JSON answer, or the error.
pub(crate) fn respond(r: Result<impl Serialize, ApiError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// A query string the endpoint cannot take, as an API error.
pub(crate) fn bad_query(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text())
}

/// An API error: a stable machine-readable code and a human message.
#[derive(Debug, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a ApiError,
        }
        (self.status, Json(Body { error: &self })).into_response()
    }
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_handler))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/api/v1/whoami", get(review_api::whoami))
        .route("/api/v1/machines", get(machines))
        .route("/api/v1/machines/{id}", get(machine))
        .route("/api/v1/floor", get(floor::get_floor))
        .route("/api/v1/events", get(floor::events))
        .route("/api/v1/records", get(records))
        .route("/api/v1/intervals", get(review_api::get_intervals))
        .route("/api/v1/intervals/{seq}", get(review_api::get_interval))
        .route("/api/v1/reports/daily", get(review_api::get_daily))
        .route("/api/v1/reasons", get(review_api::get_reasons))
        .route("/api/v1/operators", get(review_api::get_operators))
        .route("/api/v1/export/records", get(export_api::export_records))
        .route(
            "/api/v1/export/intervals",
            get(export_api::export_intervals),
        )
        .merge(context_api::routes())
        .merge(web::routes())
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; the API is described at /api/v1/openapi.json",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

async fn count_requests(
    State(s): State<HttpState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    Telemetry::add(&s.telemetry.http_requests_total, 1);
    next.run(req).await
}

/// A connection sent nothing for this long is closed when next read from ([`guard`]).
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Serves until `shutdown` fires, then finishes in-flight requests. At most
/// `max_connections` connections are open at once ([`guard`]).
pub async fn run(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: CancellationToken,
    max_connections: usize,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = guard::GuardedListener::new(
        listener,
        max_connections,
        IDLE_TIMEOUT,
        state.telemetry.clone(),
    )
    .tap_io(|_| {});
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    uptime_seconds: f64,
    components: BTreeMap<String, ComponentHealth>,
}

#[derive(Serialize)]
struct ComponentHealth {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

#[utoipa::path(get, path = "/healthz", tag = "health", security(()), responses((status = 200, description = "Healthy: every component and its detail", body = Object), (status = 503, description = "The journal is down", body = Object)))]
pub(super) async fn healthz(State(s): State<HttpState>) -> Response {
    let mut components = BTreeMap::new();
    let js = s.journal.stats();
    let journal_ok = !s.journal.is_closed();
    // Holding records it cannot write (a full disk): up, but collection is paused.
    let paused = js.held_records > 0;
    components.insert(
        "journal".to_string(),
        ComponentHealth {
            status: match (journal_ok, paused) {
                (false, _) => "down",
                (true, true) => "paused",
                (true, false) => "ok",
            },
            detail: Some(format!(
                "last_seq {} ({} records stored, {} bytes), {} commit errors{}",
                js.last_seq,
                js.last_seq.saturating_sub(js.first_seq.saturating_sub(1)),
                js.bytes,
                js.commit_errors_total,
                if paused {
                    format!(
                        "; cannot write (disk full?): holding {} records, collection paused",
                        js.held_records
                    )
                } else {
                    String::new()
                }
            )),
        },
    );
    let lag = js.last_seq.saturating_sub(s.live.position());
    components.insert(
        "live_view".to_string(),
        ComponentHealth {
            status: "ok",
            detail: Some(format!("{lag} records behind the journal")),
        },
    );
    for m in s.live.snapshot() {
        let (status, detail) = match m.link {
            Some(crate::model::LinkStatus::Connected) => ("ok", "connected".to_string()),
            Some(crate::model::LinkStatus::Lost) => ("degraded", "link lost".to_string()),
            _ => ("starting", "no report yet".to_string()),
        };
        components.insert(
            format!("driver:{}", m.id),
            ComponentHealth {
                status,
                detail: Some(detail),
            },
        );
    }
    let code = if journal_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Health {
        status: match (journal_ok, paused) {
            (false, _) => "down",
            (true, true) => "degraded",
            (true, false) => "ok",
        },
        version: s.version,
        uptime_seconds: s.started.elapsed().as_secs_f64(),
        components,
    };
    (code, Json(body)).into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub(super) async fn metrics_handler(State(s): State<HttpState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render_metrics(&s),
    )
        .into_response()
}

/// Adds what the pipeline knows about the machine's clock to its live view.
fn with_clock(s: &HttpState, mut m: LiveMachine) -> LiveMachine {
    if let Ok(clocks) = s.telemetry.clocks.read() {
        m.clock = clocks.get(&m.id).map(|c| LiveClock::from(*c));
    }
    m
}

#[utoipa::path(get, path = "/api/v1/machines", tag = "machines", responses((status = 200, description = "Every configured machine, live", body = Vec<LiveMachine>)))]
pub(super) async fn machines(State(s): State<HttpState>) -> Response {
    let list: Vec<LiveMachine> = s
        .live
        .snapshot()
        .into_iter()
        .map(|m| with_clock(&s, m))
        .collect();
    Json(list).into_response()
}

#[utoipa::path(get, path = "/api/v1/machines/{id}", tag = "machines", params(("id" = String, Path, description = "Machine id")), responses((status = 200, body = LiveMachine), (status = 404, body = ErrorBody)))]
pub(super) async fn machine(State(s): State<HttpState>, Path(id): Path<String>) -> Response {
    match s.live.get(&id) {
        Some(m) => Json(with_clock(&s, m)).into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_machine",
            format!("no machine with id {id:?} is configured"),
        )
        .into_response(),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct RecordsQuery {
    /// Records with seq greater than this (default 0: from the oldest stored).
    after: Option<u64>,
    /// At most this many (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
    /// Only this machine's records.
    machine: Option<String>,
    /// Only this kind (observation, state_change, link, interval, condition, asset, command,
    /// dispatch, quality, operation, context).
    #[param(
        pattern = "^(observation|state_change|link|interval|condition|asset|command|dispatch|quality|operation|context)$"
    )]
    kind: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct RecordsPage {
    records: Vec<Record>,
    /// Pass as `after` to get the next page (null when this page reached the end).
    next_after: Option<u64>,
    /// The last durable sequence number in the journal.
    last_seq: u64,
}

const KINDS: [&str; 11] = [
    "observation",
    "state_change",
    "link",
    "interval",
    "condition",
    "asset",
    "command",
    "dispatch",
    "quality",
    "operation",
    "context",
];

#[utoipa::path(get, path = "/api/v1/records", tag = "records", params(RecordsQuery), responses((status = 200, body = RecordsPage), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn records(
    State(s): State<HttpState>,
    q: Result<Query<RecordsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => {
            return ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text())
                .into_response();
        }
    };
    let limit = q.limit.unwrap_or(1000);
    if limit == 0 || limit > 10_000 {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_limit",
            format!("limit must be 1..=10000, found {limit}"),
        )
        .into_response();
    }
    let machine = match q.machine.as_deref().map(MachineId::new).transpose() {
        Ok(m) => m,
        Err(e) => {
            return ApiError::new(StatusCode::BAD_REQUEST, "bad_machine", e.to_string())
                .into_response();
        }
    };
    if let Some(k) = &q.kind {
        if !KINDS.contains(&k.as_str()) {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_kind",
                format!("kind must be one of {}, found {k:?}", KINDS.join(", ")),
            )
            .into_response();
        }
    }
    let journal = s.journal.clone();
    let after = q.after.unwrap_or(0);
    let kind = q.kind.clone();
    // Reading decodes blocks: keep it off the async workers.
    let res = tokio::task::spawn_blocking(move || {
        let last_seq = journal.last_seq();
        let mut out = Vec::new();
        let mut pos = after;
        let filtered = machine.is_some() || kind.is_some();
        let mut scanned = 0usize;
        loop {
            let batch = journal.read(pos, if filtered { 10_000 } else { limit })?;
            let Some(last) = batch.last() else { break };
            pos = last.seq;
            scanned += batch.len();
            for r in batch {
                if machine.as_ref().is_some_and(|m| r.kind.machine() != m)
                    || kind.as_deref().is_some_and(|k| r.kind.kind_name() != k)
                {
                    continue;
                }
                out.push(r);
                if out.len() >= limit {
                    break;
                }
            }
            if out.len() >= limit || !filtered || scanned >= 200_000 {
                break;
            }
        }
        let next_after = if let Some(l) = out.last().filter(|_| out.len() >= limit) {
            Some(l.seq)
        } else if pos < last_seq {
            // A filtered scan stopped early: continue from where it stopped.
            Some(pos)
        } else {
            None
        };
        Ok::<_, crate::journal::JournalError>(RecordsPage {
            records: out,
            next_after,
            last_seq,
        })
    })
    .await;
    match res {
        Ok(Ok(page)) => Json(page).into_response(),
        Ok(Err(e)) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "journal_unavailable",
            e.to_string(),
        )
        .into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            .into_response(),
    }
}
