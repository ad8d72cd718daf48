//! Network and HTTP filters: a name and a config (`typed_config`, a `TypedStruct`, or the legacy
//! `config` struct of Istio 1.3 proxies), recognised by current and Istio 1.3/1.4-era names and by
//! the message of their `@type`; the parts of the HTTP connection manager and TCP proxy the views
//! read.

use serde::Deserialize;
use serde_json::Value;

use super::proto_json::{
    any_type, decode, filter_config, lenient, lenient_string, one_or_many, short_type_name,
};
use super::routes::RouteConfiguration;

/// A network (or HTTP) filter: a name and its config.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Filter {
    /// Filter name.
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: String,
    /// `typed_config` (an `Any`).
    #[serde(default, alias = "typedConfig")]
    pub typed_config: Option<Value>,
    /// The legacy `config` struct (Istio ≤1.3 proxies).
    #[serde(default)]
    pub config: Option<Value>,
}

impl Filter {
    /// Its configuration, whichever way it is written.
    pub fn config(&self) -> Option<&Value> {
        filter_config(self.typed_config.as_ref(), self.config.as_ref())
    }

    /// True when the filter is of one of `names`, or its typed config has the message `message`.
    pub fn is(&self, names: &[&str], message: &str) -> bool {
        names.contains(&self.name.as_str())
            || self
                .typed_config
                .as_ref()
                .and_then(any_type)
                .is_some_and(|t| short_type_name(t) == message)
    }

    /// The HTTP connection manager this filter is, if it is one.
    pub fn http_connection_manager(&self) -> Option<HttpConnectionManager> {
        if !self.is(HCM_NAMES, "HttpConnectionManager") {
            return None;
        }
        Some(self.config().and_then(decode).unwrap_or_default())
    }

    /// The TCP proxy this filter is, if it is one.
    pub fn tcp_proxy(&self) -> Option<TcpProxy> {
        if !self.is(TCP_PROXY_NAMES, "TcpProxy") {
            return None;
        }
        Some(self.config().and_then(decode).unwrap_or_default())
    }

    /// istioctl's test for a TCP proxy to the black hole: its config mentions `BlackHoleCluster`
    /// (in its JSON text; the name has no character JSON escapes, so: in a key or a string).
    pub fn is_black_hole(&self) -> bool {
        self.config()
            .is_some_and(|c| mentions(c, "BlackHoleCluster"))
    }
}

/// Whether `text` is part of a key or a string anywhere in `v`.
fn mentions(v: &Value, text: &str) -> bool {
    match v {
        Value::String(s) => s.contains(text),
        Value::Array(items) => items.iter().any(|i| mentions(i, text)),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains(text) || mentions(v, text)),
        _ => false,
    }
}

/// HTTP connection manager names, current and Istio 1.3/1.4-era.
pub const HCM_NAMES: &[&str] = &[
    "envoy.filters.network.http_connection_manager",
    "envoy.http_connection_manager",
];
/// TCP proxy names, current and Istio 1.3/1.4-era.
pub const TCP_PROXY_NAMES: &[&str] = &["envoy.filters.network.tcp_proxy", "envoy.tcp_proxy"];

/// The parts of `HttpConnectionManager` the views read.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HttpConnectionManager {
    /// An inline route table.
    #[serde(default, alias = "routeConfig", deserialize_with = "lenient")]
    pub route_config: Option<RouteConfiguration>,
    /// RDS.
    #[serde(default, deserialize_with = "lenient")]
    pub rds: Option<Rds>,
    /// HTTP filters, in order (a single object in some Istio 1.3 bootstrap listeners).
    #[serde(default, alias = "httpFilters", deserialize_with = "one_or_many")]
    pub http_filters: Vec<Filter>,
}

/// `Rds`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Rds {
    /// The route configuration's name.
    #[serde(
        default,
        alias = "routeConfigName",
        deserialize_with = "lenient_string"
    )]
    pub route_config_name: String,
}

/// The parts of `TcpProxy` the views read.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TcpProxy {
    /// The upstream cluster.
    #[serde(default, deserialize_with = "lenient_string")]
    pub cluster: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn black_hole_anywhere_in_the_config() {
        let f = |config: Value| Filter {
            name: "envoy.filters.network.tcp_proxy".into(),
            typed_config: Some(config),
            config: None,
        };
        let deep = serde_json::json!({"@type": "x.TcpProxy", "weighted_clusters": {"clusters": [{"name": "BlackHoleCluster"}]}});
        assert!(f(deep).is_black_hole());
        assert!(f(serde_json::json!({"BlackHoleCluster_stats": 1})).is_black_hole());
        assert!(!f(serde_json::json!({"cluster": "outbound|80||a", "n": 5})).is_black_hole());
    }
}
