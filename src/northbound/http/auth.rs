//! Who is asking, and may they: API tokens with roles (`[[http.tokens]]`), and the role of a
//! request from the bridge's own host that brings no token (`http.local_role`).
//!
//! A token comes as `Authorization: Bearer <token>`, or, on a GET, as `?access_token=<token>`
//! (a browser's EventSource and a download link cannot set headers). Only its SHA-256 is kept.
//! A token that is given but unknown is refused (401), even from loopback: a wrong token is a
//! mistake to report, not a reason to fall back to the local role.
//!
//! What each route needs is decided in one place, [`required`], so that it can be read whole.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::{ApiError, HttpState};
use crate::config::{ApiToken, HttpConfig, Role};

/// The tokens and the local role, as configured.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    local_role: Option<Role>,
    tokens: Vec<ApiToken>,
}

impl Auth {
    pub fn new(c: &HttpConfig) -> Self {
        Self {
            local_role: c.local_role,
            tokens: c.tokens.clone(),
        }
    }

    /// The token whose hash is `token`'s, comparing every configured hash in full.
    fn find(&self, token: &str) -> Option<&ApiToken> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for t in &self.tokens {
            let diff = t
                .sha256
                .iter()
                .zip(digest.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = Some(t);
            }
        }
        found
    }
}

/// A new random token, as handed to its holder, and its SHA-256 in hex for the config.
pub fn new_token() -> std::io::Result<(String, String)> {
    use std::io::Read;
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let token = format!("sbt_{}", hex(&bytes));
    let hash = hex(&Sha256::digest(token.as_bytes()));
    Ok((token, hash))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Who a request is from, as the handlers see it (a request extension).
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Access {
    /// The role the request has (null: none; only public routes answer).
    #[schema(value_type = Option<String>, example = "operator")]
    #[serde(serialize_with = "role_name")]
    pub role: Option<Role>,
    /// The token's name, when a token was given.
    pub user: Option<String>,
    /// The request came from the bridge's own host.
    pub local: bool,
}

fn role_name<S: serde::Serializer>(r: &Option<Role>, s: S) -> Result<S::Ok, S::Error> {
    match r {
        Some(r) => s.serialize_str(r.name()),
        None => s.serialize_none(),
    }
}

/// The role a route needs; `None`: anyone (health, the OpenAPI document, the web pages'
/// files, which hold no data).
pub fn required(method: &Method, path: &str) -> Option<Role> {
    let api = path.starts_with("/api/");
    if !api && path != "/metrics" {
        return None;
    }
    if path == "/api/v1/openapi.json" {
        return None;
    }
    if method == Method::GET || method == Method::HEAD {
        return Some(Role::Viewer);
    }
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match segments.as_slice() {
        [
            "",
            "api",
            "v1",
            "machines",
            _,
            "reason" | "sign-in" | "sign-out" | "confirm" | "parts",
        ] => Some(Role::Operator),
        ["", "api", "v1", "machines", _, "dispatch"]
        | ["", "api", "v1", "jobs"]
        | ["", "api", "v1", "holds"]
        | ["", "api", "v1", "holds", _, "release"]
        | ["", "api", "v1", "inspections"] => Some(Role::Planner),
        _ => Some(Role::Admin),
    }
}

/// The middleware: finds the request's role, refuses what it may not do, and hands the
/// handlers an [`Access`].
pub async fn authorize(State(s): State<HttpState>, mut req: Request, next: Next) -> Response {
    let local = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|c| c.0.ip().is_loopback());
    let is_get = req.method() == Method::GET || req.method() == Method::HEAD;
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default().trim().to_string());
    let (query_token, rest) = take_query_token(req.uri());
    let token = match (bearer, query_token) {
        (Some(b), _) => match b.strip_prefix("Bearer ").or(b.strip_prefix("bearer ")) {
            Some(t) => Some(t.trim().to_string()),
            None => {
                return unauthorized(
                    "the Authorization header must be `Bearer <token>`".to_string(),
                );
            }
        },
        (None, Some(t)) if is_get => Some(t),
        (None, Some(_)) => {
            return unauthorized(
                "access_token in the query is taken only on GET; send `Authorization: Bearer <token>`"
                    .to_string(),
            );
        }
        (None, None) => None,
    };
    let access = match &token {
        Some(t) => match s.auth.find(t) {
            Some(found) => Access {
                role: Some(found.role),
                user: Some(found.name.clone()),
                local,
            },
            None => return unauthorized("the token is not one this bridge knows".to_string()),
        },
        None => Access {
            role: if local { s.auth.local_role } else { None },
            user: None,
            local,
        },
    };
    let need = required(req.method(), req.uri().path());
    let by_local_role = token.is_none() && local && need.is_some();
    if let Err(why) = same_site(&req, by_local_role) {
        return ApiError::new(StatusCode::FORBIDDEN, "cross_site", why).into_response();
    }
    if let Some(need) = need {
        match access.role {
            None => {
                return unauthorized(format!(
                    "this needs a token with the {} role (`Authorization: Bearer <token>`){}",
                    need.name(),
                    if local {
                        ""
                    } else {
                        "; requests from other hosts always need one"
                    }
                ));
            }
            Some(have) if have < need => {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "this needs the {} role; {} has {}",
                        need.name(),
                        match &access.user {
                            Some(u) => format!("token {u:?}"),
                            None => "a request from this host without a token".to_string(),
                        },
                        have.name()
                    ),
                )
                .into_response();
            }
            Some(_) => {}
        }
    }
    if let Some(rest) = rest {
        *req.uri_mut() = rest;
    }
    req.extensions_mut().insert(access);
    next.run(req).await
}

/// Refuses what a web page of another site could make a browser on this computer send:
/// a write whose `Origin` is not this bridge (cross-site request forgery), and, for a request
/// that relies on the local role (no token), a `Host` that is a name other than `localhost`
/// (a DNS-rebinding page reaches 127.0.0.1 under its own name).
fn same_site(req: &Request, local_role: bool) -> Result<(), String> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let write = !(req.method() == Method::GET || req.method() == Method::HEAD);
    if write {
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let o = origin.to_str().unwrap_or("");
            let authority = o.split_once("://").map_or(o, |(_, a)| a);
            if authority != host {
                return Err(format!(
                    "a page from {o} may not write to this bridge ({host}); send the request from this bridge's own pages or without an Origin"
                ));
            }
        }
    }
    if local_role {
        let name = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host.rsplit_once(':').map_or(host, |(h, _)| h),
        };
        let ok = name.is_empty()
            || name.eq_ignore_ascii_case("localhost")
            || name.parse::<std::net::IpAddr>().is_ok();
        if !ok {
            return Err(format!(
                "requests without a token must name this computer as localhost or by its IP address, not {name:?}"
            ));
        }
    }
    Ok(())
}

fn unauthorized(message: String) -> Response {
    let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"shopbridge\""),
    );
    r
}

/// `access_token` from the query, and the URI without it (so that endpoints that refuse
/// unknown parameters do not see it); `(None, None)` when there is none.
fn take_query_token(uri: &Uri) -> (Option<String>, Option<Uri>) {
    let Some(q) = uri.query() else {
        return (None, None);
    };
    let mut token = None;
    let mut kept = Vec::new();
    for pair in q.split('&') {
        match pair.strip_prefix("access_token=") {
            Some(t) => token = Some(percent_decode(t)),
            None => kept.push(pair),
        }
    }
    if token.is_none() {
        return (None, None);
    }
    let pq = if kept.is_empty() {
        uri.path().to_string()
    } else {
        format!("{}?{}", uri.path(), kept.join("&"))
    };
    (token, pq.parse().ok())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).and_then(|c| hex(*c)),
            b.get(i + 2).and_then(|c| hex(*c)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_the_roles_the_issue_gives() {
        let post = Method::POST;
        assert_eq!(required(&Method::GET, "/"), None);
        assert_eq!(required(&Method::GET, "/assets/app.css"), None);
        assert_eq!(required(&Method::GET, "/api/v1/openapi.json"), None);
        assert_eq!(required(&Method::GET, "/healthz"), None);
        assert_eq!(required(&Method::GET, "/metrics"), Some(Role::Viewer));
        assert_eq!(
            required(&Method::GET, "/api/v1/records"),
            Some(Role::Viewer)
        );
        assert_eq!(
            required(&post, "/api/v1/machines/m1/reason"),
            Some(Role::Operator)
        );
        assert_eq!(
            required(&Method::PUT, "/api/v1/machines/m1/dispatch"),
            Some(Role::Planner)
        );
        assert_eq!(required(&post, "/api/v1/holds"), Some(Role::Planner));
        assert_eq!(
            required(&post, "/api/v1/holds/H1/release"),
            Some(Role::Planner)
        );
        assert_eq!(required(&post, "/api/v1/reclassify"), Some(Role::Admin));
        assert_eq!(
            required(&Method::DELETE, "/api/v1/machines/m1"),
            Some(Role::Admin)
        );
    }

    #[test]
    fn the_query_token_is_taken_out_of_the_uri() {
        let uri: Uri = "/api/v1/events?access_token=sbt_a%2Bb&x=1".parse().unwrap();
        let (t, rest) = take_query_token(&uri);
        assert_eq!(t.as_deref(), Some("sbt_a+b"));
        assert_eq!(rest.unwrap().to_string(), "/api/v1/events?x=1");
        let (t, rest) = take_query_token(&"/api/v1/events?x=1".parse().unwrap());
        assert!(t.is_none() && rest.is_none());
    }

    #[test]
    fn other_sites_may_not_write_and_rebound_names_get_no_local_role() {
        let req = |method: &str, host: &str, origin: Option<&str>| {
            let mut b = Request::builder()
                .method(method)
                .uri("/api/v1/machines/m1/reason")
                .header(header::HOST, host);
            if let Some(o) = origin {
                b = b.header(header::ORIGIN, o);
            }
            b.body(axum::body::Body::empty()).unwrap()
        };
        // The bridge's own pages: same origin.
        let own = req("POST", "127.0.0.1:8080", Some("http://127.0.0.1:8080"));
        assert!(same_site(&own, true).is_ok());
        // curl and scripts send no Origin.
        assert!(same_site(&req("POST", "localhost:8080", None), true).is_ok());
        assert!(same_site(&req("POST", "[::1]:8080", None), true).is_ok());
        let forged = req("POST", "127.0.0.1:8080", Some("http://evil.example"));
        assert!(
            same_site(&forged, true)
                .unwrap_err()
                .contains("evil.example")
        );
        // Reading is not forgery (and the pages are public anyway).
        assert!(
            same_site(
                &req("GET", "127.0.0.1:8080", Some("http://evil.example")),
                false
            )
            .is_ok()
        );
        // DNS rebinding: a name that is not localhost gets no local role, a token still works.
        let rebound = req("GET", "evil.example:8080", None);
        assert!(same_site(&rebound, true).is_err());
        assert!(same_site(&rebound, false).is_ok());
        assert!(same_site(&req("GET", "10.0.4.2:8080", None), true).is_ok());
    }

    #[test]
    fn a_token_is_found_by_its_hash_only() {
        let (token, hash) = new_token().unwrap();
        assert!(token.starts_with("sbt_") && hash.len() == 64);
        let mut sha = [0u8; 32];
        for (i, b) in sha.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hash[2 * i..2 * i + 2], 16).unwrap();
        }
        let auth = Auth {
            local_role: None,
            tokens: vec![ApiToken {
                name: "erp".into(),
                role: Role::Planner,
                sha256: sha,
            }],
        };
        assert_eq!(auth.find(&token).map(|t| t.role), Some(Role::Planner));
        assert!(auth.find("sbt_wrong").is_none());
    }
}
