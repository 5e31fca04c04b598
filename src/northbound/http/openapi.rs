//! The OpenAPI 3 document of the REST API, generated from the handlers and types
//! (`GET /api/v1/openapi.json`). An integrator builds against it alone.

use axum::Json;
use axum::response::{IntoResponse, Response};
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

use super::{context_api, export_api, floor, review_api};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "shopbridge REST API",
        description = "Machines, records, intervals, dispatch, jobs, holds, reasons, operators and reports of a shopbridge bridge.\n\nErrors are JSON: `{\"error\": {\"code\": \"stable_code\", \"message\": \"for a person\"}}`.\n\nAuth: `Authorization: Bearer <token>` with a token from `[[http.tokens]]` (roles viewer < operator < planner < admin); requests from the bridge's own host without a token have `http.local_role` (operator by default). GET needs viewer; what is said at a machine (reason, sign-in/out, confirm, parts) operator; dispatch, jobs, holds and inspections planner; re-classification admin.\n\nPagination: `/api/v1/records` pages by `after` (a record's seq; the answer's `next_after`), `/api/v1/intervals` by `cursor` (the answer's `next_cursor`).",
    ),
    paths(
        super::healthz, super::metrics_handler, super::machines, super::machine, super::records,
        floor::get_floor, floor::events,
        review_api::get_intervals, review_api::get_interval, review_api::get_daily,
        review_api::get_jobs, review_api::get_reasons, review_api::get_operators,
        review_api::whoami,
        export_api::export_records, export_api::export_intervals,
        context_api::get_dispatch, context_api::put_dispatch, context_api::post_job,
        context_api::get_holds, context_api::post_hold, context_api::release_hold,
        context_api::post_inspection, context_api::post_reason, context_api::post_sign_in,
        context_api::post_sign_out, context_api::post_confirm, context_api::post_parts,
        context_api::post_reclassify,
    ),
    modifiers(&Bearer),
    security(("bearer" = []), ()),
    tags(
        (name = "machines", description = "Configured machines and their live state"),
        (name = "records", description = "The journal: every record, in order"),
        (name = "review", description = "Classified time: intervals and the daily review"),
        (name = "context", description = "Dispatch lists, jobs, holds, inspections, reasons, operators"),
        (name = "operator", description = "What is said at a machine"),
        (name = "export", description = "CSV and JSON Lines downloads"),
        (name = "auth", description = "Who is asking"),
        (name = "health", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document, built once.
fn json() -> &'static serde_json::Value {
    static DOC: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_string();
        serde_json::to_value(&doc).unwrap_or_default()
    })
}

pub async fn document() -> Response {
    Json(json()).into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_route_is_in_the_document_and_every_reference_resolves() {
        let doc = super::json();
        let text = doc.to_string();
        for path in [
            "/api/v1/machines",
            "/api/v1/records",
            "/api/v1/intervals",
            "/api/v1/intervals/{seq}",
            "/api/v1/reports/daily",
            "/api/v1/machines/{id}/dispatch",
            "/api/v1/jobs",
            "/api/v1/holds",
            "/api/v1/reasons",
            "/api/v1/operators",
            "/api/v1/export/intervals",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path} missing");
        }
        let schemas = &doc["components"]["schemas"];
        for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &r[..r.find('"').unwrap()];
            assert!(schemas.get(name).is_some(), "dangling $ref {name}");
        }
    }
}
