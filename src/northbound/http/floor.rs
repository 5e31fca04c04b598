//! The floor: one tile per machine (what the floor view and the operator tablet show), as a
//! snapshot (`GET /api/v1/floor`) and live (`GET /api/v1/events`, Server-Sent Events).
//!
//! A tile is a small projection of the live view (no signal table): state, category, job and
//! operation, operator, parts and the estimate, alarms. The event stream sends a snapshot, then
//! each tile again when it changed, at most every half second, so 50 machines cost a browser a
//! few hundred bytes a second, not the live view's full signal tables.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde::Serialize;
use utoipa::ToSchema;

use super::HttpState;
use crate::model::{
    Availability, ConditionLevel, ControllerMode, Execution, LinkStatus, MachineId, OperationRef,
    ShopState, Timestamp,
};
use crate::northbound::live::{LiveMachine, LiveReason};

/// An active alarm or warning on a tile.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TileAlarm {
    pub code: Option<String>,
    pub message: Option<String>,
    pub level: ConditionLevel,
}

/// One machine on the floor.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Tile {
    pub id: MachineId,
    pub name: String,
    /// RUN / IDLE / DOWN / OFF.
    pub state: ShopState,
    pub available: bool,
    pub link: Option<LinkStatus>,
    pub execution: Option<Execution>,
    pub controller_mode: Option<ControllerMode>,
    pub program: Option<String>,
    /// When the machine entered its state (time in state = now − since).
    pub since: Option<Timestamp>,
    /// The current span's category: `production` or a loss category (live, provisional until
    /// the span closes).
    pub category: Option<String>,
    /// How it was decided: `rule`, `operator`, `qms` or `planner`.
    pub category_source: Option<String>,
    /// When the current span began.
    pub category_since: Option<Timestamp>,
    pub job: Option<String>,
    pub operation: Option<String>,
    pub part_number: Option<String>,
    /// The operation is attributed provisionally: its program matched several; `candidates`
    /// are the choices to confirm.
    pub provisional: bool,
    pub candidates: Vec<OperationRef>,
    pub operator: Option<String>,
    pub shift: Option<String>,
    pub parts_good: Option<u64>,
    pub parts_planned: Option<u64>,
    pub scrap: Option<u64>,
    pub estimated_completion: Option<Timestamp>,
    pub due: Option<Timestamp>,
    pub at_risk: bool,
    pub alarms: Vec<TileAlarm>,
    pub stop_reason: Option<LiveReason>,
    pub last_seen: Option<Timestamp>,
}

impl Tile {
    pub fn of(m: &LiveMachine) -> Tile {
        let ctx = m.context.as_ref();
        let feedback = ctx.and_then(|c| c.feedback.as_ref());
        let (category, category_source, category_since) = match ctx {
            Some(c) => (
                Some(c.category.as_str().to_string()),
                Some(c.attribution.source.as_str().to_string()),
                Some(c.since),
            ),
            None => match m.loss_category() {
                Some((l, since)) => (Some(l.as_str().to_string()), None, since),
                None if m.state == ShopState::Run => {
                    (Some("production".to_string()), None, m.since)
                }
                None => (None, None, None),
            },
        };
        let job_ctx = ctx.map(|c| &c.context);
        Tile {
            id: m.id.clone(),
            name: m.name.clone(),
            state: m.state,
            available: m.current.availability == Availability::Available,
            link: m.link,
            execution: m.current.execution,
            controller_mode: m.current.controller_mode,
            program: m.current.program.clone(),
            since: m.since,
            category,
            category_source,
            category_since,
            job: m
                .operation
                .as_ref()
                .map(|o| o.job.clone())
                .or_else(|| job_ctx.and_then(|c| c.job.clone())),
            operation: m
                .operation
                .as_ref()
                .map(|o| o.operation.clone())
                .or_else(|| job_ctx.and_then(|c| c.operation.clone())),
            part_number: job_ctx.and_then(|c| c.part_number.clone()),
            provisional: ctx.is_some_and(|c| c.provisional),
            candidates: ctx.map(|c| c.candidates.clone()).unwrap_or_default(),
            operator: m.operator.clone(),
            shift: job_ctx.and_then(|c| c.shift.clone()),
            parts_good: feedback.map(|f| f.parts.good()),
            parts_planned: feedback.and_then(|f| f.quantity),
            scrap: feedback.map(|f| f.parts.scrap),
            estimated_completion: feedback.and_then(|f| f.estimated_completion),
            due: feedback.and_then(|f| f.due),
            at_risk: feedback.is_some_and(|f| f.at_risk),
            alarms: m
                .conditions
                .iter()
                .map(|c| TileAlarm {
                    code: c.native_code.clone(),
                    message: c.message.clone(),
                    level: c.level,
                })
                .collect(),
            stop_reason: current_reason(m),
            last_seen: m.last_seen,
        }
    }
}

/// The reason given for the current stop (or, while the machine runs, for the stop it left):
/// a reason given before the current stop began belongs to an earlier stop and is not shown.
fn current_reason(m: &LiveMachine) -> Option<LiveReason> {
    let r = m.stop_reason.as_ref()?;
    let by_operator = m
        .context
        .as_ref()
        .is_some_and(|c| c.attribution.source == crate::model::CategorySource::Operator);
    let since = m.since?;
    (r.at >= since || (m.state != ShopState::Run && by_operator)).then(|| r.clone())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Floor {
    pub machines: Vec<Tile>,
    /// The bridge's clock when this was made (time in state = generated_at − since).
    pub generated_at: Timestamp,
    /// How fast the bridge's clock runs against wall time: 1 in production, the demo's
    /// `--speed` in a sped-up demo (a page ticking "time in state" multiplies by it).
    pub clock_rate: f64,
    /// The shop's time zone (the review calendar's), for showing times as the shop reads them.
    pub zone: String,
}

pub fn floor(s: &HttpState) -> Floor {
    Floor {
        machines: s.live.map(Tile::of),
        generated_at: s.clock.now(),
        clock_rate: s.clock.speed(),
        zone: super::review_api::review_calendar(s).zone.name(),
    }
}

/// Every machine's tile.
#[utoipa::path(get, path = "/api/v1/floor", tag = "machines",
    responses((status = 200, description = "One tile per configured machine", body = Floor)))]
pub async fn get_floor(State(s): State<HttpState>) -> Response {
    Json(floor(&s)).into_response()
}

/// How often the stream looks for changed tiles.
const TICK: Duration = Duration::from_millis(500);

/// The floor, live: `event: snapshot` (a [`Floor`]), then `event: machine` (a [`Tile`]) for each
/// tile that changed, at most every 0.5 s; a keep-alive comment every 15 s.
#[utoipa::path(get, path = "/api/v1/events", tag = "machines",
    responses((status = 200, description = "A text/event-stream: `snapshot` (Floor) then `machine` (Tile) events", content_type = "text/event-stream", body = String)))]
pub async fn events(
    State(s): State<HttpState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    struct St {
        s: HttpState,
        sent: HashMap<MachineId, Tile>,
        pending: Vec<Event>,
        started: bool,
    }
    let st = St {
        s,
        sent: HashMap::new(),
        pending: Vec::new(),
        started: false,
    };
    let stream = stream::unfold(st, |mut st| async move {
        loop {
            if let Some(e) = st.pending.pop() {
                return Some((Ok(e), st));
            }
            if !st.started {
                st.started = true;
                let f = floor(&st.s);
                st.sent = f
                    .machines
                    .iter()
                    .map(|t| (t.id.clone(), t.clone()))
                    .collect();
                let e = Event::default()
                    .event("snapshot")
                    .json_data(&f)
                    .unwrap_or_else(|_| Event::default().comment("snapshot failed"));
                return Some((Ok(e), st));
            }
            tokio::select! {
                _ = st.s.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(TICK) => {}
            }
            for t in st.s.live.map(Tile::of) {
                if st.sent.get(&t.id) == Some(&t) {
                    continue;
                }
                if let Ok(e) = Event::default().event("machine").json_data(&t) {
                    st.pending.push(e);
                }
                st.sent.insert(t.id.clone(), t);
            }
            // Oldest first out of `pop`.
            st.pending.reverse();
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LossCategory;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_micros(s * 1_000_000)
    }

    #[test]
    fn a_reason_shows_for_its_own_stop_only() {
        let mut m = LiveMachine::new(
            MachineId::new("m1").unwrap(),
            "M1".into(),
            "p".into(),
            "sim".into(),
        );
        m.state = ShopState::Idle;
        m.since = Some(t(100));
        m.stop_reason = Some(LiveReason {
            reason: LossCategory::STARVED,
            note: None,
            at: t(120),
            by: Some("ana".into()),
        });
        assert_eq!(Tile::of(&m).stop_reason.map(|r| r.at), Some(t(120)));
        // The machine ran and stopped again: the old reason is not this stop's.
        m.since = Some(t(300));
        assert!(Tile::of(&m).stop_reason.is_none());
        // Running, after a reason given for the stop it left: shown until the next stop.
        m.state = ShopState::Run;
        m.stop_reason.as_mut().unwrap().at = t(310);
        assert!(Tile::of(&m).stop_reason.is_some());
    }
}
