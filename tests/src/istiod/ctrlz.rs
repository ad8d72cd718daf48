//! ControlZ's JSON API (`pkg/ctrlz/topics/scopes.go`): `GET /scopej/` lists the logging scopes
//! sorted by name, `GET /scopej/<scope>` shows one, `PUT /scopej/<scope>` sets its levels
//! (202; an unknown level is ignored, `log_callers` always takes the body's value; an unknown
//! scope is 400 `unknown scope name: <s>`).

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::{Flavour, Shared, write_log};

/// The levels ControlZ accepts, most verbose first.
pub const LEVELS: [&str; 5] = ["debug", "info", "warn", "error", "none"];

/// One logging scope (`scopeInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub output_level: String,
    #[serde(default)]
    pub stack_trace_level: String,
    #[serde(default)]
    pub log_callers: bool,
}

const MODERN: &[(&str, &str)] = &[
    ("ads", "ads debugging"),
    ("adsc", "adsc debugging"),
    ("authn", "authn debugging"),
    ("authorization", "Istio Authorization Policy"),
    ("ca", "ca client"),
    ("controllers", "common controller logic"),
    ("default", "Unscoped logging messages."),
    ("delta", "delta xds debugging"),
    ("gateway", "gateway-api controller"),
    ("grpcAdapter", "gRPC adapter debugging"),
    ("jwt", "Istio JWT authentication policy"),
    ("kube", "kubernetes client"),
    ("model", "Istio model"),
    ("monitoring", "metrics monitoring"),
    ("security", "security debugging"),
    ("serviceentry", "ServiceEntry registry"),
    ("spiffe", "SPIFFE library logging"),
    ("status", "status controller for istio"),
    ("validation", "CRD validation debugging"),
    ("validationController", "validation webhook controller"),
    ("wasm", "wasm debugging"),
];

const PILOT_14: &[(&str, &str)] = &[
    ("ads", "ads debugging"),
    ("default", "Unscoped logging messages."),
    ("grpcAdapter", "gRPC adapter debugging"),
    ("mcp", "mcp debugging"),
    ("model", "Istio model"),
    ("rbac", "rbac debugging"),
    ("validation", "CRD validation debugging"),
];

pub(crate) fn default_scopes(flavour: Flavour) -> BTreeMap<String, Scope> {
    let list = match flavour {
        Flavour::Modern => MODERN,
        Flavour::Maistra14 => PILOT_14,
    };
    list.iter()
        .map(|(name, description)| {
            (
                (*name).to_string(),
                Scope {
                    name: (*name).to_string(),
                    description: (*description).to_string(),
                    output_level: "info".into(),
                    stack_trace_level: "none".into(),
                    log_callers: false,
                },
            )
        })
        .collect()
}

fn rank(level: &str) -> usize {
    LEVELS.iter().position(|l| *l == level).unwrap_or(1)
}

/// Whether a line at `level` passes `scope`'s output level (unknown scopes log as `default`).
pub(crate) fn enabled(scopes: &BTreeMap<String, Scope>, scope: &str, level: &str) -> bool {
    let s = scopes.get(scope).or_else(|| scopes.get("default"));
    match s {
        Some(s) if s.output_level == "none" => false,
        Some(s) => rank(level) >= rank(&s.output_level),
        None => true,
    }
}

pub(crate) fn router(shared: Shared) -> Router {
    Router::new()
        .route("/scopej/", get(list))
        .route("/scopej", get(list))
        .route("/scopej/{scope}", get(one).put(put))
        .fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found\n") })
        .with_state(shared)
}

fn json<T: Serialize>(status: StatusCode, v: &T) -> Response {
    let body = serde_json::to_string(v).unwrap_or_else(|_| "null".into());
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn unknown(name: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        format!("unknown scope name: {name}"),
    )
        .into_response()
}

async fn list(AxState(shared): AxState<Shared>) -> Response {
    let st = shared.lock();
    let scopes: Vec<&Scope> = st.scopes.values().collect();
    json(StatusCode::OK, &scopes)
}

async fn one(AxState(shared): AxState<Shared>, Path(name): Path<String>) -> Response {
    let st = shared.lock();
    match st.scopes.get(&name) {
        Some(s) => json(StatusCode::OK, s),
        None => unknown(&name),
    }
}

#[derive(Deserialize)]
struct PutBody {
    #[serde(default)]
    output_level: String,
    #[serde(default)]
    stack_trace_level: String,
    #[serde(default)]
    log_callers: bool,
}

async fn put(AxState(shared): AxState<Shared>, Path(name): Path<String>, body: Bytes) -> Response {
    let b: PutBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("unable to decode request: {e}"),
            )
                .into_response();
        }
    };
    let mut st = shared.lock();
    let Some(s) = st.scopes.get_mut(&name) else {
        return unknown(&name);
    };
    if LEVELS.contains(&b.output_level.as_str()) {
        s.output_level = b.output_level.clone();
    }
    if LEVELS.contains(&b.stack_trace_level.as_str()) {
        s.stack_trace_level = b.stack_trace_level.clone();
    }
    s.log_callers = b.log_callers;
    let msg = format!(
        "ctrlz: scope {name} output level {} stack trace level {} log callers {}",
        s.output_level, s.stack_trace_level, s.log_callers
    );
    write_log(&st, "info", "default", &msg);
    StatusCode::ACCEPTED.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_gate_lines() {
        let mut s = default_scopes(Flavour::Modern);
        assert!(enabled(&s, "ads", "info"));
        assert!(!enabled(&s, "ads", "debug"));
        s.get_mut("ads").unwrap().output_level = "debug".into();
        assert!(enabled(&s, "ads", "debug"));
        s.get_mut("model").unwrap().output_level = "none".into();
        assert!(!enabled(&s, "model", "error"));
        assert!(enabled(&s, "nosuch", "warn"));
    }
}
