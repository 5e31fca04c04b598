//! REST for the job-shop context: dispatch lists and jobs from the ERP, holds and inspections
//! from the QMS, and what operators say at the machine (reason, sign-in, confirmation, scrap).
//!
//! Every call is checked whole before anything is written; what is written is one journal
//! commit, and the answer (with the first record's `seq`) comes once it is durable. Errors are
//! JSON with a stable `code` and a message naming the field (`operations[3].due`).

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::auth::Access;
use super::{ApiError, HttpState};
use crate::context::commands::{CommandError, check_id};
use crate::context::dispatch::{self, OperationInput, Problem};
use crate::model::{Command, CommandOrigin, DispatchedOperation, MachineId, QualityEvent};

pub fn routes() -> Router<HttpState> {
    Router::new()
        .route(
            "/api/v1/machines/{id}/dispatch",
            get(get_dispatch).put(put_dispatch),
        )
        .route(
            "/api/v1/jobs",
            post(post_job).get(super::review_api::get_jobs),
        )
        .route("/api/v1/holds", get(get_holds).post(post_hold))
        .route("/api/v1/holds/{id}/release", post(release_hold))
        .route("/api/v1/inspections", post(post_inspection))
        .route("/api/v1/machines/{id}/reason", post(post_reason))
        .route("/api/v1/machines/{id}/sign-in", post(post_sign_in))
        .route("/api/v1/machines/{id}/sign-out", post(post_sign_out))
        .route("/api/v1/machines/{id}/confirm", post(post_confirm))
        .route("/api/v1/machines/{id}/parts", post(post_parts))
        .route("/api/v1/reclassify", post(post_reclassify))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReclassifyBody {
    #[schema(format = DateTime)]
    from: String,
    #[schema(format = DateTime)]
    to: String,
}

/// `POST /api/v1/reclassify`: derives `[from, to)` again under the running bridge's rules
/// and writes what changed as revisions.
#[utoipa::path(post, path = "/api/v1/reclassify", tag = "review", request_body = ReclassifyBody, responses((status = 200, body = crate::context::reclassify::Reclassified), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 503, body = super::ErrorBody)))]
pub(super) async fn post_reclassify(State(s): State<HttpState>, bytes: Bytes) -> Response {
    let r = async {
        let b: ReclassifyBody = body(&bytes)?;
        let time = |k: &str, v: &str| {
            crate::model::Timestamp::parse_rfc3339(v.trim()).map_err(|_| {
                bad(
                    "invalid_argument",
                    format!("{k}: expected a time like \"2026-11-24T06:00:00Z\", found {v:?}"),
                )
            })
        };
        let (from, to) = (time("from", &b.from)?, time("to", &b.to)?);
        if to <= from {
            return Err(bad("invalid_argument", "to: expected a time after from"));
        }
        let engine = s.engine.clone().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_accepting_input",
                "this bridge does not classify",
            )
        })?;
        let c = commands(&s)?;
        let now = c.now();
        let journal = s.journal.clone();
        let unavailable =
            |e: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "journal_unavailable", e);
        let (revisions, stats) = tokio::task::spawn_blocking(move || {
            let mut failed = None;
            let records =
                crate::journal::all_records(|a, m| journal.read(a, m)).map_while(|r| match r {
                    Ok(r) => Some(r),
                    Err(e) => {
                        failed = Some(e);
                        None
                    }
                });
            let out =
                crate::context::reclassify::reclassify(records, (*engine).clone(), from, to, now);
            match failed {
                Some(e) => Err(e),
                None => Ok(out),
            }
        })
        .await
        .map_err(|e| unavailable(e.to_string()))?
        .map_err(|e| unavailable(e.to_string()))?;
        if !revisions.is_empty() {
            s.journal
                .append(revisions)
                .await
                .map_err(|e| unavailable(e.to_string()))?;
        }
        Ok(stats)
    }
    .await;
    respond(r, false)
}

/// The answer to a write.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Written {
    /// The first journal record written.
    seq: u64,
    machines: Vec<MachineId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hold: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    operations: Option<usize>,
}

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

fn problems(ps: Vec<Problem>) -> ApiError {
    let n = ps.len();
    let list: Vec<String> = ps.iter().map(ToString::to_string).collect();
    bad(
        "invalid_dispatch",
        format!(
            "{n} problem{} (nothing was applied): {}",
            if n == 1 { "" } else { "s" },
            list.join("; ")
        ),
    )
}

fn command_error(e: CommandError) -> ApiError {
    match e {
        CommandError::UnknownMachine(m) => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_machine",
            format!("no machine or work center {m:?} is configured"),
        ),
        CommandError::BadArgument { argument, why } => {
            bad("invalid_argument", format!("{argument}: {why}"))
        }
        CommandError::Journal(j) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "journal_unavailable",
            j.to_string(),
        ),
    }
}

/// Parses a JSON body; an error says where (line and column) and what.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        bad(
            "invalid_json",
            format!(
                "the request body is not what this endpoint takes (line {}, column {}): {e}",
                e.line(),
                e.column()
            ),
        )
    })
}

/// Who is speaking: the `X-Shopbridge-User` header, the body's `by`, or else the name of the
/// token the request came with (recorded as said: an operator at a shared tablet names
/// themself).
pub(super) struct Who {
    header_user: Option<String>,
    access: Access,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Who {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Who {
            header_user: parts
                .headers
                .get("x-shopbridge-user")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            access: parts
                .extensions
                .get::<Access>()
                .cloned()
                .unwrap_or_default(),
        })
    }
}

fn origin(who: &Who, by: Option<&str>) -> Result<CommandOrigin, ApiError> {
    let user = who
        .header_user
        .as_deref()
        .or(by)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or_else(|| who.access.user.clone());
    if let Some(u) = &user {
        check_id("by", u).map_err(command_error)?;
    }
    Ok(CommandOrigin {
        channel: "rest".into(),
        user,
    })
}

fn written(seq: u64, machines: Vec<MachineId>) -> Written {
    Written {
        seq,
        machines,
        hold: None,
        operations: None,
    }
}

fn commands(s: &HttpState) -> Result<&crate::context::commands::Commands, ApiError> {
    s.commands.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_accepting_input",
            "this bridge does not accept context input",
        )
    })
}

fn respond(r: Result<impl Serialize, ApiError>, created: bool) -> Response {
    match r {
        Ok(v) if created => (StatusCode::CREATED, Json(v)).into_response(),
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// A machine's dispatch list as the context layer holds it.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct DispatchList {
    machine: MachineId,
    operations: Vec<DispatchedOperation>,
}

/// Open holds and the machines each is open on.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Holds {
    holds: Vec<Hold>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Hold {
    hold: String,
    machines: Vec<MachineId>,
}

// ---- dispatch ---------------------------------------------------------------------------------

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(super) enum DispatchBody {
    List(Vec<OperationInput>),
    Object {
        operations: Vec<OperationInput>,
        by: Option<String>,
    },
}

#[utoipa::path(get, path = "/api/v1/machines/{id}/dispatch", tag = "context", params(("id" = String, Path, description = "Machine id")), responses((status = 200, body = DispatchList), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 503, body = super::ErrorBody)))]
pub(super) async fn get_dispatch(State(s): State<HttpState>, Path(id): Path<String>) -> Response {
    let r = (|| {
        let c = commands(&s)?;
        let m = c.machine(&id).map_err(command_error)?;
        let operations = s.context.get(&m).dispatch;
        Ok(DispatchList {
            machine: m,
            operations,
        })
    })();
    respond(r, false)
}

#[utoipa::path(put, path = "/api/v1/machines/{id}/dispatch", tag = "context", params(("id" = String, Path, description = "Machine id (or an ERP work center)")), request_body = DispatchBody, responses((status = 200, body = Written), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 503, body = super::ErrorBody)))]
pub(super) async fn put_dispatch(
    State(s): State<HttpState>,
    Path(id): Path<String>,
    headers: Who,
    bytes: Bytes,
) -> Response {
    let r = async {
        let c = commands(&s)?;
        let m = c.machine(&id).map_err(command_error)?;
        let (ops, by) = match body::<DispatchBody>(&bytes)? {
            DispatchBody::List(l) => (l, None),
            DispatchBody::Object { operations, by } => (operations, by),
        };
        let list = dispatch::check_list(&ops, "operations").map_err(problems)?;
        let n = list.len();
        let seq = c
            .dispatch(vec![(m.clone(), list)], origin(&headers, by.as_deref())?)
            .await
            .map_err(command_error)?;
        Ok(Written {
            operations: Some(n),
            ..written(seq, vec![m])
        })
    }
    .await;
    respond(r, false)
}

/// `POST /api/v1/jobs`: a job and its routing; each operation goes onto its machine's list.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct JobBody {
    job: String,
    part_number: Option<String>,
    part_revision: Option<String>,
    quantity: Option<u64>,
    due: Option<String>,
    customer_order: Option<String>,
    by: Option<String>,
    operations: Vec<OperationInput>,
}

#[utoipa::path(post, path = "/api/v1/jobs", tag = "context", request_body = JobBody, responses((status = 201, body = Written), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 503, body = super::ErrorBody)))]
pub(super) async fn post_job(State(s): State<HttpState>, headers: Who, bytes: Bytes) -> Response {
    let r = async {
        let c = commands(&s)?;
        let job: JobBody = body(&bytes)?;
        if job.operations.is_empty() {
            return Err(bad(
                "invalid_dispatch",
                "operations: a job needs at least one operation",
            ));
        }
        let mut ps = Vec::new();
        let mut per_machine: BTreeMap<MachineId, Vec<DispatchedOperation>> = BTreeMap::new();
        let mut previous: Option<String> = None;
        for (i, o) in job.operations.iter().enumerate() {
            let at = format!("operations[{i}]");
            let input = OperationInput {
                job: job.job.clone(),
                part_number: o.part_number.clone().or(job.part_number.clone()),
                part_revision: o.part_revision.clone().or(job.part_revision.clone()),
                quantity: o.quantity.or(job.quantity),
                due: o.due.clone().or(job.due.clone()),
                customer_order: o.customer_order.clone().or(job.customer_order.clone()),
                after: o.after.clone().or(previous.clone()),
                ..o.clone()
            };
            previous = Some(o.operation.trim().to_string());
            let target = input.machine.as_deref().or(input.work_center.as_deref());
            let machine = match target {
                None => {
                    ps.push(Problem {
                        at: at.clone(),
                        message: "expected a machine or a work_center".into(),
                    });
                    None
                }
                Some(t) => match c.machine(t) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        ps.push(Problem {
                            at: format!("{at}.machine"),
                            message: e.to_string(),
                        });
                        None
                    }
                },
            };
            if let (Some(d), Some(m)) = (dispatch::check_operation(&input, &at, &mut ps), machine) {
                per_machine.entry(m).or_default().push(d);
            }
        }
        if !ps.is_empty() {
            return Err(problems(ps));
        }
        // Each machine's list gets the job's operations, replacing earlier copies of them.
        let mut lists = Vec::new();
        for (m, ops) in per_machine {
            let mut list = s.context.get(&m).dispatch;
            list.retain(|x| {
                !ops.iter()
                    .any(|o| o.job == x.job && o.operation == x.operation)
            });
            list.extend(ops);
            if list.len() > dispatch::MAX_OPERATIONS {
                return Err(bad(
                    "invalid_dispatch",
                    format!(
                        "machine {m}'s list would hold {} operations, more than {}",
                        list.len(),
                        dispatch::MAX_OPERATIONS
                    ),
                ));
            }
            lists.push((m, list));
        }
        let machines: Vec<MachineId> = lists.iter().map(|(m, _)| m.clone()).collect();
        let seq = c
            .dispatch(lists, origin(&headers, job.by.as_deref())?)
            .await
            .map_err(command_error)?;
        Ok(Written {
            operations: Some(job.operations.len()),
            ..written(seq, machines)
        })
    }
    .await;
    respond(r, true)
}

// ---- QMS ----------------------------------------------------------------------------------------

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct HoldBody {
    hold: Option<String>,
    machine: Option<String>,
    job: Option<String>,
    operation: Option<String>,
    reason: Option<String>,
    by: Option<String>,
}

fn opt_id(name: &'static str, v: &Option<String>) -> Result<Option<String>, ApiError> {
    match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(x) => {
            check_id(name, x).map_err(command_error)?;
            Ok(Some(x.to_string()))
        }
    }
}

#[utoipa::path(post, path = "/api/v1/holds", tag = "context", request_body = HoldBody, responses((status = 201, body = Written), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 503, body = super::ErrorBody)))]
pub(super) async fn post_hold(State(s): State<HttpState>, headers: Who, bytes: Bytes) -> Response {
    let r = async {
        let c = commands(&s)?;
        let h: HoldBody = body(&bytes)?;
        let job = opt_id("job", &h.job)?;
        let operation = opt_id("operation", &h.operation)?;
        if operation.is_some() && job.is_none() {
            return Err(bad(
                "invalid_argument",
                "operation: a hold on an operation names its job too",
            ));
        }
        let machines = match &h.machine {
            Some(m) => vec![c.machine(m).map_err(command_error)?],
            None if job.is_some() => c.machines(),
            None => {
                return Err(bad(
                    "invalid_argument",
                    "a hold names a machine, a job, or both",
                ));
            }
        };
        let hold = match opt_id("hold", &h.hold)? {
            Some(id) => id,
            None => format!("hold-{}", c.now().as_micros()),
        };
        let reason = h.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
        if reason.is_some_and(|r| r.chars().count() > crate::context::commands::MAX_NOTE_LEN) {
            return Err(bad("invalid_argument", "reason: too long"));
        }
        let seq = c
            .quality(
                machines.clone(),
                origin(&headers, h.by.as_deref())?,
                QualityEvent::HoldOpened {
                    hold: hold.clone(),
                    job,
                    operation,
                    reason: reason.map(str::to_string),
                },
            )
            .await
            .map_err(command_error)?;
        Ok(Written {
            hold: Some(hold),
            ..written(seq, machines)
        })
    }
    .await;
    respond(r, true)
}

#[utoipa::path(get, path = "/api/v1/holds", tag = "context", responses((status = 200, body = Holds)))]
pub(super) async fn get_holds(State(s): State<HttpState>) -> Response {
    let holds = s
        .context
        .holds()
        .into_iter()
        .map(|(hold, machines)| Hold { hold, machines })
        .collect();
    Json(Holds { holds }).into_response()
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ByBody {
    by: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/holds/{id}/release", tag = "context", params(("id" = String, Path, description = "Hold id")), request_body(content = Option<ByBody>), responses((status = 200, body = Written), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 503, body = super::ErrorBody)))]
pub(super) async fn release_hold(
    State(s): State<HttpState>,
    Path(id): Path<String>,
    headers: Who,
    bytes: Bytes,
) -> Response {
    let r = async {
        let c = commands(&s)?;
        let b: ByBody = if bytes.is_empty() {
            ByBody::default()
        } else {
            body(&bytes)?
        };
        let machines: Vec<MachineId> = s.context.holds().remove(&id).unwrap_or_default();
        if machines.is_empty() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_hold",
                format!("no open hold {id:?}"),
            ));
        }
        let seq = c
            .quality(
                machines.clone(),
                origin(&headers, b.by.as_deref())?,
                QualityEvent::HoldReleased { hold: id.clone() },
            )
            .await
            .map_err(command_error)?;
        Ok(Written {
            hold: Some(id),
            ..written(seq, machines)
        })
    }
    .await;
    respond(r, false)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct InspectionBody {
    machine: Option<String>,
    job: Option<String>,
    operation: Option<String>,
    /// `requested`, `accepted` or `rejected`.
    result: String,
    note: Option<String>,
    by: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/inspections", tag = "context", request_body = InspectionBody, responses((status = 201, body = Written), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 503, body = super::ErrorBody)))]
pub(super) async fn post_inspection(
    State(s): State<HttpState>,
    headers: Who,
    bytes: Bytes,
) -> Response {
    let r = async {
        let c = commands(&s)?;
        let b: InspectionBody = body(&bytes)?;
        let job = opt_id("job", &b.job)?;
        let operation = opt_id("operation", &b.operation)?;
        let machines = match (&b.machine, &job) {
            (Some(m), _) => vec![c.machine(m).map_err(command_error)?],
            (None, Some(j)) => {
                let running: Vec<MachineId> = s
                    .live
                    .snapshot()
                    .into_iter()
                    .filter(|m| {
                        m.operation.as_ref().is_some_and(|o| {
                            &o.job == j && operation.as_ref().is_none_or(|x| x == &o.operation)
                        })
                    })
                    .map(|m| m.id)
                    .collect();
                if running.is_empty() {
                    return Err(ApiError::new(
                        StatusCode::NOT_FOUND,
                        "job_not_running",
                        format!("no machine is running job {j:?}; name the machine"),
                    ));
                }
                running
            }
            (None, None) => {
                return Err(bad(
                    "invalid_argument",
                    "an inspection names a machine or a job",
                ));
            }
        };
        let note = b
            .note
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        let event = match b.result.trim() {
            "requested" => QualityEvent::InspectionRequested { job, operation },
            "accepted" => QualityEvent::InspectionDispositioned {
                accepted: true,
                note,
            },
            "rejected" => QualityEvent::InspectionDispositioned {
                accepted: false,
                note,
            },
            other => {
                return Err(bad(
                    "invalid_argument",
                    format!("result: expected requested, accepted or rejected, found {other:?}"),
                ));
            }
        };
        let seq = c
            .quality(machines.clone(), origin(&headers, b.by.as_deref())?, event)
            .await
            .map_err(command_error)?;
        Ok(written(seq, machines))
    }
    .await;
    respond(r, true)
}

// ---- at the machine -------------------------------------------------------------------------

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReasonBody {
    reason: String,
    note: Option<String>,
    by: Option<String>,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SignInBody {
    operator: String,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfirmBody {
    job: String,
    operation: String,
    by: Option<String>,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PartsBody {
    #[serde(default)]
    scrap: u64,
    #[serde(default)]
    rework: u64,
    by: Option<String>,
}

async fn submit(
    s: &HttpState,
    id: &str,
    origin: CommandOrigin,
    command: Command,
) -> Result<Written, ApiError> {
    let c = commands(s)?;
    let m = c.machine(id).map_err(command_error)?;
    let seq = c
        .submit(m.as_str(), origin, command)
        .await
        .map_err(command_error)?;
    Ok(written(seq, vec![m]))
}

/// A command at the machine: the body parsed (an empty body as `T::default()` when
/// `empty_ok`), the command built from it, written for machine `id`.
async fn at_machine<T: DeserializeOwned + Default>(
    s: HttpState,
    id: String,
    headers: Who,
    bytes: Bytes,
    empty_ok: bool,
    build: impl FnOnce(
        T,
        &crate::context::commands::Commands,
    ) -> Result<(Command, Option<String>), ApiError>,
) -> Response {
    let r = async {
        let b: T = if empty_ok && bytes.is_empty() {
            T::default()
        } else {
            body(&bytes)?
        };
        let (command, by) = build(b, commands(&s)?)?;
        submit(&s, &id, origin(&headers, by.as_deref())?, command).await
    }
    .await;
    respond(r, true)
}

#[utoipa::path(post, path = "/api/v1/machines/{id}/reason", tag = "operator", params(("id" = String, Path, description = "Machine id")), request_body = ReasonBody, responses((status = 201, body = Written), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 503, body = super::ErrorBody)))]
pub(super) async fn post_reason(
    State(s): State<HttpState>,
    Path(id): Path<String>,
    headers: Who,
    bytes: Bytes,
) -> Response {
    at_machine(s, id, headers, bytes, false, |b: ReasonBody, c| {
        let command = c
            .stop_reason(&b.reason, b.note.as_deref().unwrap_or(""))
            .map_err(command_error)?;
        Ok((command, b.by))
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/machines/{id}/sign-in", tag = "operator", params(("id" = String, Path, description = "Machine id")), request_body = SignInBody, responses((status = 201, body = Written), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 503, body = super::ErrorBody)))]
pub(super) async fn post_sign_in(
    State(s): State<HttpState>,
    Path(id): Path<String>,
    headers: Who,
    bytes: Bytes,
) -> Response {
    at_machine(s, id, headers, bytes, false, |b: SignInBody, _| {
        let operator = b.operator.trim().to_string();
        Ok((
            Command::SignIn {
                operator: operator.clone(),
            },
            Some(operator),
        ))
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/machines/{id}/sign-out", tag = "operator", params(("id" = String, Path, description = "Machine id")), request_body(content = Option<ByBody>), responses((status = 201, body = Written), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 503, body = super::ErrorBody)))]
pub(super) async fn post_sign_out(
    State(s): State<HttpState>,
    Path(id): Path<String>,
    headers: Who,
    bytes: Bytes,
) -> Response {
    at_machine(s, id, headers, bytes, true, |b: ByBody, _| {
        Ok((Command::SignOut, b.by))
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/machines/{id}/confirm", tag = "operator", params(("id" = String, Path, description = "Machine id")), request_body = ConfirmBody, responses((status = 201, body = Written), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 503, body = super::ErrorBody)))]
pub(super) async fn post_confirm(
    State(s): State<HttpState>,
    Path(id): Path<String>,
    headers: Who,
    bytes: Bytes,
) -> Response {
    at_machine(s, id, headers, bytes, false, |b: ConfirmBody, _| {
        let command = Command::ConfirmOperation {
            job: b.job.trim().to_string(),
            operation: b.operation.trim().to_string(),
        };
        Ok((command, b.by))
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/machines/{id}/parts", tag = "operator", params(("id" = String, Path, description = "Machine id")), request_body = PartsBody, responses((status = 201, body = Written), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 503, body = super::ErrorBody)))]
pub(super) async fn post_parts(
    State(s): State<HttpState>,
    Path(id): Path<String>,
    headers: Who,
    bytes: Bytes,
) -> Response {
    at_machine(s, id, headers, bytes, false, |b: PartsBody, _| {
        let command = Command::Parts {
            scrap: b.scrap,
            rework: b.rework,
        };
        Ok((command, b.by))
    })
    .await
}
