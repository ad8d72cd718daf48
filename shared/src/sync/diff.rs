//! `mesh-sync POD`: istiod's view of a proxy against the proxy's own `/config_dump`.
//!
//! Normalisation as `istioctl proxy-status <pod>` does it (ISTIO.md §1.5):
//! clusters = `dynamic_active_clusters` sorted by cluster name; listeners = `dynamic_listeners`
//! that have an `active_state`, `draining_state` dropped, sorted by listener name, `name` cleared;
//! routes = `dynamic_route_configs` sorted by name with their `virtual_hosts` sorted by name.
//! `version_info` and `last_updated` are stripped everywhere. On top of that, field names are
//! brought to protojson's camelCase on both sides (istiod dumps camelCase, Envoy snake_case) and
//! v2 resource type URLs to v3, so only real differences remain. Each side is rendered as JSON
//! with 4-space indentation and sorted keys and compared with a unified diff (context 7).
//! The normalisation itself lives in [`crate::dump::diff`], shared with `envoy-dump diff`
//! (it also drops enum fields at their proto3 zero value, e.g. `"type": "STATIC"`).

use std::io::Write;
use std::path::Path;

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Error;
use super::status::parse_time;
pub use crate::dump::diff::SectionDiff;
use crate::dump::diff::{self as shared, unified};

const WHAT: &str = "Envoy config_dump JSON";

/// A config_dump: its `configs`, by `@type`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConfigDump {
    configs: Vec<Section>,
}

/// One section; the body stays JSON until its type is known.
#[derive(Debug, Deserialize)]
struct Section {
    #[serde(rename = "@type", default)]
    type_url: String,
    #[serde(flatten)]
    body: Map<String, Value>,
}

/// `ClustersConfigDump` (only the part compared).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ClustersDump {
    #[serde(alias = "dynamicActiveClusters")]
    dynamic_active_clusters: Vec<Map<String, Value>>,
}

/// `ListenersConfigDump` (only the part compared).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListenersDump {
    #[serde(alias = "dynamicListeners")]
    dynamic_listeners: Vec<Map<String, Value>>,
}

/// `RoutesConfigDump` (only the part compared).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RoutesDump {
    #[serde(alias = "dynamicRouteConfigs")]
    dynamic_route_configs: Vec<Map<String, Value>>,
}

/// The three compared parts of one side, normalised and rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalised {
    /// `{"dynamicActiveClusters": [...]}` as text.
    pub clusters: String,
    /// `{"dynamicListeners": [...]}` as text.
    pub listeners: String,
    /// `{"dynamicRouteConfigs": [...]}` as text.
    pub routes: String,
    /// The newest `last_updated` of the dynamic route configs.
    pub routes_last_updated: Option<Timestamp>,
}

/// The result of one comparison (the json/yaml item).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    /// `<pod>.<namespace>`, or the proxy file.
    pub proxy: String,
    /// The istiod replica that answered, or the istiod file.
    pub istiod: String,
    /// Dynamic clusters.
    pub clusters: SectionDiff,
    /// Dynamic listeners.
    pub listeners: SectionDiff,
    /// Dynamic route configs.
    pub routes: SectionDiff,
    /// When Envoy last loaded a route config (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rds_last_loaded: Option<String>,
}

impl Comparison {
    /// True when all three parts match.
    pub fn matches(&self) -> bool {
        self.clusters.matches && self.listeners.matches && self.routes.matches
    }
}

/// Parse a config_dump saved or fetched as `source` and normalise it.
pub fn normalise(source: &Path, bytes: &[u8]) -> Result<Normalised, Error> {
    let dump: ConfigDump = crate::input::parse_json(source, WHAT, bytes)?;
    let mut clusters = ClustersDump::default();
    let mut listeners = ListenersDump::default();
    let mut routes = RoutesDump::default();
    let section = |s: &Section| Value::Object(s.body.clone());
    for s in &dump.configs {
        let kind = s.type_url.rsplit('.').next().unwrap_or_default();
        let bad = |e: serde_json::Error| Error::Section {
            source_name: source.display().to_string(),
            section: kind.to_string(),
            source: e,
        };
        match kind {
            "ClustersConfigDump" => {
                clusters = serde_json::from_value(section(s)).map_err(bad)?;
            }
            "ListenersConfigDump" => {
                listeners = serde_json::from_value(section(s)).map_err(bad)?;
            }
            "RoutesConfigDump" => {
                routes = serde_json::from_value(section(s)).map_err(bad)?;
            }
            _ => {}
        }
    }
    Ok(normalise_sections(clusters, listeners, routes))
}

fn normalise_sections(
    clusters: ClustersDump,
    listeners: ListenersDump,
    routes: RoutesDump,
) -> Normalised {
    let newest: Option<Timestamp> = routes
        .dynamic_route_configs
        .iter()
        .filter_map(|e| {
            e.get("last_updated")
                .or_else(|| e.get("lastUpdated"))
                .and_then(Value::as_str)
                .and_then(parse_time)
        })
        .max();
    let c = shared::cluster_entries(clusters.dynamic_active_clusters);
    let l = shared::dynamic_listener_entries(listeners.dynamic_listeners);
    let r = shared::route_config_entries(routes.dynamic_route_configs);
    Normalised {
        clusters: shared::render_entries(vec![("dynamicActiveClusters", c)]),
        listeners: shared::render_entries(vec![("dynamicListeners", l)]),
        routes: shared::render_entries(vec![("dynamicRouteConfigs", r)]),
        routes_last_updated: newest,
    }
}

/// Compare istiod's side with Envoy's side.
pub fn compare(
    istiod_name: &str,
    istiod: &Normalised,
    proxy_name: &str,
    envoy: &Normalised,
) -> Comparison {
    Comparison {
        proxy: proxy_name.to_string(),
        istiod: istiod_name.to_string(),
        clusters: unified(
            &istiod.clusters,
            &envoy.clusters,
            "Istiod Clusters",
            "Envoy Clusters",
        ),
        listeners: unified(
            &istiod.listeners,
            &envoy.listeners,
            "Istiod Listeners",
            "Envoy Listeners",
        ),
        routes: unified(
            &istiod.routes,
            &envoy.routes,
            "Istiod Routes",
            "Envoy Routes",
        ),
        rds_last_loaded: envoy.routes_last_updated.map(|t| t.to_string()),
    }
}

/// RFC 1123 in UTC, as Go's `time.RFC1123` prints it.
fn rfc1123(t: &str) -> Option<String> {
    let ts = parse_time(t)?;
    Some(ts.strftime("%a, %d %b %Y %H:%M:%S UTC").to_string())
}

/// The text istioctl prints: `Clusters Match` or `Clusters Don't Match` plus the diff, for
/// clusters, listeners and routes (routes with `(RDS last loaded at ...)`).
pub fn write_text(c: &Comparison, color: bool, out: &mut dyn Write) -> std::io::Result<()> {
    shared::write_verdict(out, "Clusters", "", &c.clusters, color)?;
    shared::write_verdict(out, "Listeners", "", &c.listeners, color)?;
    let loaded = c
        .rds_last_loaded
        .as_deref()
        .and_then(rfc1123)
        .map(|t| format!(" (RDS last loaded at {t})"))
        .unwrap_or_default();
    shared::write_verdict(out, "Routes", &loaded, &c.routes, color)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures/istio")
            .join(rel)
    }

    fn norm(rel: &str) -> Normalised {
        let p = fixture(rel);
        normalise(&p, &std::fs::read(&p).unwrap()).unwrap()
    }

    fn text(c: &Comparison) -> String {
        let mut out = Vec::new();
        write_text(c, false, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn same_dump_matches() {
        let a = norm("current/ps-diff/configdump.json");
        let c = compare("istiod", &a, "proxy", &a);
        assert!(c.matches());
        let t = text(&c);
        assert!(
            t.starts_with("Clusters Match\nListeners Match\nRoutes Match"),
            "{t}"
        );
    }

    #[test]
    fn current_mismatch_in_all_three() {
        let a = norm("current/ps-diff/configdump.json");
        let b = norm("current/ps-diff/configdump_diff.json");
        let c = compare("istiod", &a, "proxy", &b);
        assert!(!c.clusters.matches && !c.listeners.matches && !c.routes.matches);
        let t = text(&c);
        assert!(
            t.contains("Clusters Don't Match\n--- Istiod Clusters\n+++ Envoy Clusters\n@@"),
            "{t}"
        );
        assert!(
            t.contains("Listeners Don't Match\n--- Istiod Listeners"),
            "{t}"
        );
        assert!(t.contains("Routes Don't Match"), "{t}");
        assert!(t.contains("-                \"name\": \"inbound-vip|9080|http|ratings.default.svc.cluster.local\","), "{t}");
        assert!(t.contains("+                \"name\": \"inbound-vip|9999|http|ratings.default.svc.cluster.local\","), "{t}");
    }

    #[test]
    fn legacy_pilot_camel_case_against_envoy_snake_case() {
        let pilot = norm("legacy-2020/ps-diff/pilotconfigdump.json");
        let envoy = norm("legacy-2020/ps-diff/envoyconfigdump.json");
        let c = compare("pilot", &pilot, "proxy", &envoy);
        assert!(c.clusters.matches, "{}", c.clusters.diff);
        assert!(c.listeners.matches, "{}", c.listeners.diff);
        assert!(c.routes.matches, "{}", c.routes.diff);

        let diff = norm("legacy-2020/ps-diff/diffenvoyconfigdump.json");
        let c = compare("pilot", &pilot, "proxy", &diff);
        assert!(!c.clusters.matches && !c.listeners.matches && !c.routes.matches);
        // the same differences the upstream goldens show
        let removed =
            |d: &str, what: &str| d.lines().any(|l| l.starts_with('-') && l.contains(what));
        assert!(
            removed(&c.clusters.diff, "\"maxRequests\": 10000"),
            "{}",
            c.clusters.diff
        );
        assert!(
            removed(&c.routes.diff, "\"istio-policy.istio-system.svc\","),
            "{}",
            c.routes.diff
        );
        assert!(
            removed(&c.listeners.diff, "envoy.router"),
            "{}",
            c.listeners.diff
        );
        // the line of the upstream routediff.txt golden
        assert!(
            text(&c).contains(
                "Routes Don't Match (RDS last loaded at Tue, 19 Jun 2018 06:21:16 UTC)\n--- Istiod Routes\n+++ Envoy Routes\n"
            ),
            "{}",
            text(&c)
        );
    }

    #[test]
    fn legacy_2020_pair_matches() {
        let pilot = norm("legacy-2020/ps-diff/pilotconfigdump2020.json");
        let envoy = norm("legacy-2020/ps-diff/envoyconfigdump2020.json");
        let c = compare("pilot", &pilot, "proxy", &envoy);
        assert!(c.clusters.matches, "{}", c.clusters.diff);
        assert!(c.listeners.matches, "{}", c.listeners.diff);
        assert!(c.routes.matches, "{}", c.routes.diff);
    }

    #[test]
    fn normalisation_strips_sorts_and_camel_cases() {
        let a = br#"{"configs":[
          {"@type":"type.googleapis.com/envoy.admin.v3.ClustersConfigDump","version_info":"1",
           "dynamic_active_clusters":[
             {"version_info":"2","last_updated":"2024-01-01T00:00:00Z","cluster":{"@type":"type.googleapis.com/envoy.api.v2.Cluster","name":"b","connect_timeout":"1s"}},
             {"version_info":"2","cluster":{"name":"a"}}]},
          {"@type":"type.googleapis.com/envoy.admin.v3.ListenersConfigDump","dynamic_listeners":[
             {"name":"x","active_state":{"version_info":"3","listener":{"name":"x"}},"draining_state":{"listener":{"name":"x"}}},
             {"name":"w","warming_state":{"listener":{"name":"w"}}}]},
          {"@type":"type.googleapis.com/envoy.admin.v3.RoutesConfigDump","dynamic_route_configs":[
             {"last_updated":"2018-06-19T06:21:16.123Z","route_config":{"name":"r","virtual_hosts":[{"name":"z"},{"name":"a"}]}}]}]}"#;
        let n = normalise(Path::new("a.json"), a).unwrap();
        insta::assert_snapshot!(n.clusters, @r#"
        {
            "dynamicActiveClusters": [
                {
                    "cluster": {
                        "name": "a"
                    }
                },
                {
                    "cluster": {
                        "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
                        "connectTimeout": "1s",
                        "name": "b"
                    }
                }
            ]
        }
        "#);
        insta::assert_snapshot!(n.listeners, @r#"
        {
            "dynamicListeners": [
                {
                    "activeState": {
                        "listener": {
                            "name": "x"
                        }
                    }
                }
            ]
        }
        "#);
        assert!(n.routes.find("\"a\"").unwrap() < n.routes.find("\"z\"").unwrap());
        let c = compare("i", &n, "p", &n);
        assert_eq!(
            text(&c),
            "Clusters Match\nListeners Match\nRoutes Match (RDS last loaded at Tue, 19 Jun 2018 06:21:16 UTC)\n"
        );
    }

    #[test]
    fn malformed_dump_names_the_byte() {
        let e = normalise(Path::new("d.json"), b"{\"configs\": [x]}").unwrap_err();
        assert!(e.to_string().contains("byte 13"), "{e}");
    }
}
