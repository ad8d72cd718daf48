//! `/debug/syncz` and `/debug/config_dump?proxyID=` as istiod serves them.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, State as AxState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::{Flavour, ProxyStatus, Shared, types, write_log};

/// What an istiod that does not hold the connection answers (`pilot/pkg/xds/debug.go`).
pub const NOT_CONNECTED: &str =
    "Proxy not connected to this Pilot instance. It may be connected to another instance.";

/// With `http_debug` off (`ENABLE_DEBUG_ON_HTTP=false`) every path is a bare 404.
pub(crate) fn router(shared: Shared) -> Router {
    let on = shared.lock().opts.http_debug;
    let router = if on {
        Router::new()
            .route("/debug/syncz", get(syncz))
            .route("/debug/config_dump", get(config_dump))
    } else {
        Router::new()
    };
    router
        .fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found\n") })
        .with_state(shared)
}

fn json_response(v: &Value) -> Response {
    let body = serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into());
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The json tags of `SyncStatus`, all `omitempty`; the 1.4 shape lacks `cluster_id`,
/// `proxy_type`, ECDS and `resources`.
pub(crate) fn sync_status(id: &str, p: &ProxyStatus, flavour: Flavour) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: &str| {
        if !v.is_empty() {
            m.insert(k.to_string(), Value::String(v.to_string()));
        }
    };
    let modern = flavour == Flavour::Modern;
    if modern {
        put("cluster_id", &p.cluster_id);
    }
    put("proxy", id);
    if modern {
        put("proxy_type", &p.proxy_type);
    }
    put("proxy_version", &p.proxy_version);
    put("istio_version", &p.istio_version);
    let mut pairs = vec![
        ("cluster", types::CLUSTER),
        ("listener", types::LISTENER),
        ("route", types::ROUTE),
        ("endpoint", types::ENDPOINT),
    ];
    if modern {
        pairs.push(("extensionconfig", types::EXTENSION_CONFIG));
    }
    for (name, url) in pairs {
        if let Some(t) = p.types.get(url) {
            put(&format!("{name}_sent"), &t.sent);
            put(&format!("{name}_acked"), &t.acked);
        }
    }
    if modern && !p.types.is_empty() {
        let mut res = Map::new();
        for (url, t) in &p.types {
            let mut r = Map::new();
            if !t.sent.is_empty() {
                r.insert("sent".into(), json!(t.sent));
            }
            if !t.acked.is_empty() {
                r.insert("acked".into(), json!(t.acked));
            }
            if let Some(at) = t.sent_at {
                r.insert("sentTime".into(), json!(crate::xds::rfc3339(at)));
            }
            if let Some(e) = &t.last_error {
                r.insert("lastError".into(), json!(e));
            }
            res.insert(url.clone(), Value::Object(r));
        }
        m.insert("resources".into(), Value::Object(res));
    }
    Value::Object(m)
}

async fn syncz(
    AxState(shared): AxState<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let st = shared.lock();
    let ns = q.get("namespace").filter(|n| !n.is_empty());
    let items: Vec<Value> = st
        .proxies
        .iter()
        .filter(|(id, _)| ns.is_none_or(|ns| id.rsplit_once('.').is_some_and(|(_, n)| n == ns)))
        .map(|(id, p)| sync_status(id, p, st.opts.flavour))
        .collect();
    write_log(
        &st,
        "debug",
        "ads",
        &format!("debug: syncz for {} proxies", items.len()),
    );
    json_response(&Value::Array(items))
}

async fn config_dump(
    AxState(shared): AxState<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let st = shared.lock();
    let Some(id) = q.get("proxyID").filter(|p| !p.is_empty()) else {
        return (
            StatusCode::BAD_REQUEST,
            "You must provide a proxyID in the query string\n",
        )
            .into_response();
    };
    match (
        st.dumps.get(id.as_str()),
        st.proxies.contains_key(id.as_str()),
    ) {
        (Some(dump), _) => json_response(dump),
        // Connected, nothing generated yet: an empty dump of the three sections.
        (None, true) => json_response(&json!({"configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump"},
            {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump"},
            {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump"},
        ]})),
        (None, false) => (StatusCode::NOT_FOUND, format!("{NOT_CONNECTED}\n")).into_response(),
    }
}
