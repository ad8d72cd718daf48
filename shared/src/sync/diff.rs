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

use std::io::Write;
use std::path::Path;

use k8s_openapi::jiff::Timestamp;
use owo_colors::OwoColorize;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Error;
use super::status::parse_time;

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

/// One compared part.
#[derive(Debug, Clone, Serialize)]
pub struct SectionDiff {
    /// Both sides are equal after normalisation.
    #[serde(rename = "match")]
    pub matches: bool,
    /// The unified diff (istiod = `-`, Envoy = `+`); empty when they match.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub diff: String,
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
    let mut c: Vec<Map<String, Value>> = clusters
        .dynamic_active_clusters
        .into_iter()
        .map(|mut e| {
            strip_versions(&mut e);
            upgrade_type(&mut e, "cluster");
            e
        })
        .collect();
    c.sort_by_cached_key(|e| inner_name(e, "cluster"));

    let mut l: Vec<Map<String, Value>> = listeners
        .dynamic_listeners
        .into_iter()
        .filter_map(|mut e| {
            e.remove("draining_state");
            e.remove("drainingState");
            e.remove("name");
            let active = ["active_state", "activeState"]
                .into_iter()
                .find(|k| e.contains_key(*k))?;
            if let Some(Value::Object(a)) = e.get_mut(active) {
                strip_versions(a);
                upgrade_type(a, "listener");
            }
            Some(e)
        })
        .collect();
    l.sort_by_cached_key(|e| {
        let a = e.get("active_state").or_else(|| e.get("activeState"));
        a.and_then(Value::as_object)
            .map(|a| inner_name(a, "listener"))
            .unwrap_or_default()
    });

    let mut newest: Option<Timestamp> = None;
    let mut r: Vec<Map<String, Value>> = routes
        .dynamic_route_configs
        .into_iter()
        .map(|mut e| {
            let t = e
                .get("last_updated")
                .or_else(|| e.get("lastUpdated"))
                .and_then(Value::as_str)
                .and_then(parse_time);
            newest = newest.max(t);
            strip_versions(&mut e);
            let rc = if e.contains_key("route_config") {
                "route_config"
            } else {
                "routeConfig"
            };
            upgrade_type(&mut e, rc);
            if let Some(Value::Object(cfg)) = e.get_mut(rc) {
                let vh = if cfg.contains_key("virtual_hosts") {
                    "virtual_hosts"
                } else {
                    "virtualHosts"
                };
                if let Some(Value::Array(hosts)) = cfg.get_mut(vh) {
                    hosts.sort_by_cached_key(|h| {
                        h.get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string()
                    });
                }
            }
            e
        })
        .collect();
    r.sort_by_cached_key(|e| inner_name(e, "route_config").max(inner_name(e, "routeConfig")));

    let render = |key: &str, items: Vec<Map<String, Value>>| -> String {
        let items = Value::Array(items.into_iter().map(Value::Object).collect());
        let mut top = Map::new();
        top.insert(key.to_string(), items);
        pretty(&camel_keys(Value::Object(top)))
    };
    Normalised {
        clusters: render("dynamicActiveClusters", c),
        listeners: render("dynamicListeners", l),
        routes: render("dynamicRouteConfigs", r),
        routes_last_updated: newest,
    }
}

fn strip_versions(m: &mut Map<String, Value>) {
    for k in ["version_info", "versionInfo", "last_updated", "lastUpdated"] {
        m.remove(k);
    }
}

/// `name` of the resource under `field` (either case of the field name).
fn inner_name(m: &Map<String, Value>, field: &str) -> String {
    let camel = to_camel(field);
    m.get(field)
        .or_else(|| m.get(&camel))
        .and_then(|v| v.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// `envoy.api.v2.X` resource type URLs → their v3 names, so old and new dumps compare.
fn upgrade_type(m: &mut Map<String, Value>, field: &str) {
    let camel = to_camel(field);
    let key = if m.contains_key(field) {
        field.to_string()
    } else {
        camel
    };
    if let Some(Value::Object(r)) = m.get_mut(&key)
        && let Some(Value::String(t)) = r.get_mut("@type")
    {
        let v3 = match t.as_str() {
            "type.googleapis.com/envoy.api.v2.Cluster" => {
                Some("type.googleapis.com/envoy.config.cluster.v3.Cluster")
            }
            "type.googleapis.com/envoy.api.v2.Listener" => {
                Some("type.googleapis.com/envoy.config.listener.v3.Listener")
            }
            "type.googleapis.com/envoy.api.v2.RouteConfiguration" => {
                Some("type.googleapis.com/envoy.config.route.v3.RouteConfiguration")
            }
            _ => None,
        };
        if let Some(v3) = v3 {
            *t = v3.to_string();
        }
    }
}

/// `snake_case` proto field names → protojson `lowerCamelCase`. Keys that are not plain
/// lowercase identifiers (`@type`, `envoy.filters.http.router`, cluster names) stay as they are.
fn to_camel(key: &str) -> String {
    let plain = key
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && key.starts_with(|c: char| c.is_ascii_lowercase());
    if !plain || !key.contains('_') {
        return key.to_string();
    }
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Recursively rename keys to camelCase, with keys in sorted order.
fn camel_keys(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let sorted: std::collections::BTreeMap<String, Value> = m
                .into_iter()
                .map(|(k, v)| (to_camel(&k), camel_keys(v)))
                .collect();
            Value::Object(sorted.into_iter().collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(camel_keys).collect()),
        other => other,
    }
}

/// JSON with 4-space indentation and a final newline.
fn pretty(v: &Value) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    // Serializing a Value into memory cannot fail.
    let _ = v.serialize(&mut ser);
    buf.push(b'\n');
    String::from_utf8_lossy(&buf).into_owned()
}

fn unified(a: &str, b: &str, from: &str, to: &str) -> SectionDiff {
    if a == b {
        return SectionDiff {
            matches: true,
            diff: String::new(),
        };
    }
    let diff = similar::TextDiff::from_lines(a, b)
        .unified_diff()
        .context_radius(7)
        .header(from, to)
        .to_string();
    SectionDiff {
        matches: false,
        diff,
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
    let parts = [
        ("Clusters", &c.clusters),
        ("Listeners", &c.listeners),
        ("Routes", &c.routes),
    ];
    for (name, d) in parts {
        let verdict = if d.matches { "Match" } else { "Don't Match" };
        let mut line = format!("{name} {verdict}");
        if name == "Routes"
            && let Some(t) = c.rds_last_loaded.as_deref().and_then(rfc1123)
        {
            line.push_str(&format!(" (RDS last loaded at {t})"));
        }
        if color {
            if d.matches {
                line = line.green().to_string();
            } else {
                line = line.red().to_string();
            }
        }
        writeln!(out, "{line}")?;
        for l in d.diff.lines() {
            if color && l.starts_with('-') && !l.starts_with("---") {
                writeln!(out, "{}", l.red())?;
            } else if color && l.starts_with('+') && !l.starts_with("+++") {
                writeln!(out, "{}", l.green())?;
            } else if color && l.starts_with("@@") {
                writeln!(out, "{}", l.cyan())?;
            } else {
                writeln!(out, "{l}")?;
            }
        }
    }
    Ok(())
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
