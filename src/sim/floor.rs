//! The simulated shop's people and systems: an ERP that sends each machine's dispatch list,
//! a QMS that opens and releases holds and requests and decides inspections, and operators who
//! sign in, say why their machine stopped and confirm the operation when the bridge asks. They
//! talk to the bridge the way real ones would: through its REST API, over HTTP.
//!
//! A request that fails because the bridge is not reachable yet is retried (with backoff)
//! until it goes through or the shop stops; a request the bridge refuses is logged and
//! counted, never retried (it would be refused again).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::machine::{Floor, FloorEvent};
use crate::model::MachineId;

/// Where the shop's floor events go.
pub type FloorSink = mpsc::UnboundedSender<(MachineId, FloorEvent)>;

/// What the floor client did.
#[derive(Debug, Default)]
pub struct FloorStats {
    pub sent: AtomicU64,
    pub refused: AtomicU64,
}

/// The REST call for one floor event: method, path, body.
pub fn request(
    machine: &MachineId,
    e: &FloorEvent,
) -> (reqwest::Method, String, serde_json::Value) {
    use reqwest::Method;
    let m = machine.as_str();
    match &e.what {
        Floor::Dispatch(ops) => (
            Method::PUT,
            format!("/api/v1/machines/{m}/dispatch"),
            json!({ "operations": ops, "by": "erp" }),
        ),
        Floor::SignIn(who) => (
            Method::POST,
            format!("/api/v1/machines/{m}/sign-in"),
            json!({ "operator": who }),
        ),
        Floor::SignOut => (
            Method::POST,
            format!("/api/v1/machines/{m}/sign-out"),
            json!({}),
        ),
        Floor::Reason(c) => (
            Method::POST,
            format!("/api/v1/machines/{m}/reason"),
            json!({ "reason": c.as_str() }),
        ),
        Floor::Confirm { job, operation } => (
            Method::POST,
            format!("/api/v1/machines/{m}/confirm"),
            json!({ "job": job, "operation": operation }),
        ),
        Floor::InspectionRequested { job, operation } => (
            Method::POST,
            "/api/v1/inspections".into(),
            json!({ "machine": m, "job": job, "operation": operation, "result": "requested", "by": "qms" }),
        ),
        Floor::InspectionDone { accepted } => (
            Method::POST,
            "/api/v1/inspections".into(),
            json!({ "machine": m, "result": if *accepted { "accepted" } else { "rejected" }, "by": "qms" }),
        ),
        Floor::HoldOpened { hold, job } => (
            Method::POST,
            "/api/v1/holds".into(),
            json!({ "hold": hold, "machine": m, "job": job, "reason": "gauge out of tolerance", "by": "qms" }),
        ),
        Floor::HoldReleased { hold } => (
            Method::POST,
            format!("/api/v1/holds/{hold}/release"),
            json!({ "by": "qms" }),
        ),
    }
}

/// Sends floor events to the bridge whose API address `bridge` learns, in order, until
/// `shutdown`.
pub async fn run(
    mut rx: mpsc::UnboundedReceiver<(MachineId, FloorEvent)>,
    mut bridge: watch::Receiver<Option<SocketAddr>>,
    token: Option<String>,
    stats: Arc<FloorStats>,
    shutdown: CancellationToken,
) {
    let addr = loop {
        if let Some(a) = *bridge.borrow_and_update() {
            break a;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = bridge.changed() => if r.is_err() { return },
        }
    };
    let base = format!("http://{addr}");
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "the simulated ERP cannot build its HTTP client");
            return;
        }
    };
    loop {
        let next = tokio::select! {
            biased;
            n = rx.recv() => n,
            // The bridge is going away too: what is still queued stays unsent.
            _ = shutdown.cancelled() => None,
        };
        let Some((machine, event)) = next else { break };
        let (method, path, body) = request(&machine, &event);
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut req = client
                .request(method.clone(), format!("{base}{path}"))
                .json(&body);
            // The ERP and the QMS are planners and bring their token; the operators' tablets
            // need none on the bridge's own computer.
            let planner = !matches!(
                event.what,
                Floor::SignIn(_) | Floor::SignOut | Floor::Reason(_) | Floor::Confirm { .. }
            );
            if let Some(t) = token.as_ref().filter(|_| planner) {
                req = req.bearer_auth(t);
            }
            let r = req.send().await;
            match r {
                Ok(resp) if resp.status().is_success() => {
                    stats.sent.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(resp) => {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    tracing::warn!(%machine, %status, path, body = %text, "the bridge refused a simulated floor event");
                    break;
                }
                Err(e) if !shutdown.is_cancelled() => {
                    tracing::debug!(%machine, error = %e, "bridge not reachable; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(_) => break,
            }
        }
    }
}
