//! The web pages: floor view, machine timeline, daily review and operator tablet, embedded in
//! the binary (no CDN, no separate server: they work on an isolated plant network). The pages
//! hold no data; they read it from the REST API with the viewer's role or token.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{ApiError, HttpState};

/// (path under `/assets/`, content type, bytes).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("web/assets/app.css"),
    ),
    (
        "common.js",
        "text/javascript; charset=utf-8",
        include_str!("web/assets/common.js"),
    ),
    (
        "floor.js",
        "text/javascript; charset=utf-8",
        include_str!("web/assets/floor.js"),
    ),
    (
        "machine.js",
        "text/javascript; charset=utf-8",
        include_str!("web/assets/machine.js"),
    ),
    (
        "review.js",
        "text/javascript; charset=utf-8",
        include_str!("web/assets/review.js"),
    ),
    (
        "tablet.js",
        "text/javascript; charset=utf-8",
        include_str!("web/assets/tablet.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("web/assets/favicon.svg"),
    ),
];

const FLOOR: &str = include_str!("web/floor.html");
const MACHINE: &str = include_str!("web/machine.html");
const REVIEW: &str = include_str!("web/review.html");
const TABLET: &str = include_str!("web/tablet.html");

pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/", get(|| async { page(FLOOR) }))
        .route("/review", get(|| async { page(REVIEW) }))
        .route(
            "/machine/{id}",
            get(|_: Path<String>| async { page(MACHINE) }),
        )
        .route(
            "/tablet/{id}",
            get(|_: Path<String>| async { page(TABLET) }),
        )
        .route("/favicon.ico", get(|| async { asset("favicon.svg") }))
        .route(
            "/assets/{name}",
            get(|Path(name): Path<String>| async move { asset(&name) }),
        )
}

fn page(html: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        html,
    )
        .into_response()
}

fn asset(name: &str) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        // Assets change with the binary: a browser asks again rather than keep an old one.
        Some((_, ctype, body)) => (
            [
                (header::CONTENT_TYPE, *ctype),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no asset {name:?}"),
        )
        .into_response(),
    }
}
