//! `routes`: `NAME  VHOST NAME  DOMAINS  MATCH  VIRTUAL SERVICE`, one row per route, cell for cell
//! as `istioctl proxy-config route` prints it.

use serde::{Deserialize, Serialize};

use super::clusters::describe_config;
use super::proto_json::{Metadata, lenient_string};
use crate::render::{Cell, Tabular};

/// `RoutesConfigDump`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RoutesDump {
    /// Route tables from the bootstrap (and inline ones Envoy lists here).
    #[serde(default, alias = "staticRouteConfigs")]
    pub static_route_configs: Vec<RouteConfigEntry>,
    /// Route tables from RDS.
    #[serde(default, alias = "dynamicRouteConfigs")]
    pub dynamic_route_configs: Vec<RouteConfigEntry>,
}

/// A static or dynamic route table entry.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RouteConfigEntry {
    /// The route table.
    #[serde(default, alias = "routeConfig")]
    pub route_config: Option<RouteConfiguration>,
}

/// `config.route.v3.RouteConfiguration`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RouteConfiguration {
    /// Name (`80`, `http.8080`, `inbound|9080||`...; empty for some static ones).
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: String,
    /// Virtual hosts.
    #[serde(default, alias = "virtualHosts")]
    pub virtual_hosts: Vec<VirtualHost>,
}

/// `config.route.v3.VirtualHost`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct VirtualHost {
    /// Name.
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: String,
    /// Host names it serves.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Routes, in order.
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// `config.route.v3.Route`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Route {
    /// When it applies.
    #[serde(default, rename = "match")]
    pub route_match: RouteMatch,
    /// Where it goes, for forwarding routes.
    #[serde(default)]
    pub route: Option<RouteAction>,
    /// Istio's metadata (the VirtualService).
    #[serde(default)]
    pub metadata: Option<Metadata>,
}

/// `config.route.v3.RouteMatch` (path specifiers only; headers are ignored, as in istioctl).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RouteMatch {
    /// Prefix.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Exact path.
    #[serde(default)]
    pub path: Option<String>,
    /// Path prefix on `/` boundaries.
    #[serde(default, alias = "pathSeparatedPrefix")]
    pub path_separated_prefix: Option<String>,
    /// RE2 regex.
    #[serde(default, alias = "safeRegex")]
    pub safe_regex: Option<RegexMatcher>,
}

/// `type.matcher.v3.RegexMatcher`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RegexMatcher {
    /// The expression.
    #[serde(default, deserialize_with = "lenient_string")]
    pub regex: String,
}

/// `config.route.v3.RouteAction` (the single-cluster case).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RouteAction {
    /// Upstream cluster.
    #[serde(default)]
    pub cluster: Option<String>,
}

/// MATCH: `<prefix>*`, `PathPrefix:<p>`, `<path>`, `regex <re>` (joined by spaces).
pub fn describe_match(m: &RouteMatch) -> String {
    let mut conds = Vec::new();
    if let Some(p) = m.prefix.as_deref().filter(|p| !p.is_empty()) {
        conds.push(format!("{p}*"));
    }
    if let Some(p) = m.path_separated_prefix.as_deref().filter(|p| !p.is_empty()) {
        conds.push(format!("PathPrefix:{p}"));
    }
    if let Some(p) = m.path.as_deref().filter(|p| !p.is_empty()) {
        conds.push(p.to_string());
    }
    if let Some(r) = &m.safe_regex {
        conds.push(format!("regex {}", r.regex));
    }
    conds.join(" ")
}

/// DOMAINS: one domain as is; else the port-less ones, short forms preferred, at most two
/// (`a, b + N more...`).
pub fn describe_domains(domains: &[String]) -> String {
    match domains {
        [] => return String::new(),
        [one] => return one.clone(),
        _ => {}
    }
    let without_port: Vec<&str> = domains
        .iter()
        .map(String::as_str)
        .filter(|d| !d.contains(':') || (d.matches(':').count() > 2 && d.ends_with(']')))
        .collect();
    let kept: Vec<&str> = without_port
        .iter()
        .copied()
        .filter(|h| {
            let shorter = |suffix: &str| {
                h.strip_suffix(suffix)
                    .is_some_and(|s| without_port.contains(&s))
            };
            !shorter(".svc.cluster.local") && !shorter(".svc")
        })
        .collect();
    if kept.len() > 2 {
        format!("{} + {} more...", kept[..2].join(", "), kept.len() - 2)
    } else {
        kept.join(", ")
    }
}

/// One row of the routes table: one route of a virtual host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteRow {
    /// Route configuration name.
    pub name: String,
    /// Virtual host name.
    pub virtual_host: String,
    /// All domains of the virtual host.
    pub domains: Vec<String>,
    /// The match, as istioctl describes it.
    #[serde(rename = "match")]
    pub route_match: String,
    /// The VirtualService as `name.namespace` (or `<unknown>`, or empty); `404` for a virtual
    /// host without routes.
    pub virtual_service: String,
}

impl Tabular for RouteRow {
    const KIND: &'static str = "Route";
    fn headers(_wide: bool) -> Vec<&'static str> {
        vec!["NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE"]
    }
    fn row(&self, _wide: bool) -> Vec<Cell<'_>> {
        vec![
            Cell::plain(&self.name),
            Cell::plain(&self.virtual_host),
            Cell::plain(describe_domains(&self.domains)),
            Cell::plain(&self.route_match),
            Cell::plain(&self.virtual_service),
        ]
    }
}

/// `--name`: exact route configuration name.
#[derive(Debug, Clone, Default)]
pub struct RouteFilter {
    /// Exact name.
    pub name: Option<String>,
}

/// All rows: dynamic then static route tables, ordered as istioctl orders them (numeric names
/// ascending; a non-numeric name never moves), routes to `PassthroughCluster` skipped.
pub fn route_rows(dump: &RoutesDump, filter: &RouteFilter) -> Vec<RouteRow> {
    let mut tables: Vec<&RouteConfiguration> = dump
        .dynamic_route_configs
        .iter()
        .chain(&dump.static_route_configs)
        .filter_map(|e| e.route_config.as_ref())
        .collect();
    sort_like_istioctl(&mut tables);
    let mut rows = Vec::new();
    for rc in tables {
        if filter.name.as_ref().is_some_and(|n| *n != rc.name) {
            continue;
        }
        for vh in &rc.virtual_hosts {
            let row = |route_match: String, virtual_service: String| RouteRow {
                name: rc.name.clone(),
                virtual_host: vh.name.clone(),
                domains: vh.domains.clone(),
                route_match,
                virtual_service,
            };
            for r in &vh.routes {
                let passthrough = r.route.as_ref().and_then(|a| a.cluster.as_deref())
                    == Some("PassthroughCluster");
                if !passthrough {
                    rows.push(row(
                        describe_match(&r.route_match),
                        describe_config(r.metadata.as_ref()),
                    ));
                }
            }
            if vh.routes.is_empty() {
                rows.push(row("/*".into(), "404".into()));
            }
        }
    }
    rows
}

/// Go's `sort.Slice` with istioctl's comparator (`Atoi(a) < Atoi(b)`, false when either is not
/// a number) is an insertion sort for small inputs: reproduce it exactly, for any size.
fn sort_like_istioctl(tables: &mut [&RouteConfiguration]) {
    let less = |a: &RouteConfiguration, b: &RouteConfiguration| match (
        a.name.parse::<i64>(),
        b.name.parse::<i64>(),
    ) {
        (Ok(x), Ok(y)) => x < y,
        _ => false,
    };
    for i in 1..tables.len() {
        let mut j = i;
        while j > 0 && less(tables[j], tables[j - 1]) {
            tables.swap(j, j - 1);
            j -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn domains() {
        assert_eq!(describe_domains(&strings(&["*"])), "*");
        assert_eq!(
            describe_domains(&strings(&[
                "reviews.default.svc.cluster.local",
                "reviews.default.svc.cluster.local:9080",
                "reviews",
                "reviews:9080",
                "reviews.default.svc",
                "reviews.default.svc:9080",
                "reviews.default",
                "reviews.default:9080",
                "10.0.0.1",
                "10.0.0.1:9080",
            ])),
            "reviews, reviews.default + 1 more..."
        );
        assert_eq!(
            describe_domains(&strings(&[
                "[fd00:10:96::7fc7]",
                "[fd00:10:96::7fc7]:80",
                "a"
            ])),
            "[fd00:10:96::7fc7], a"
        );
    }

    #[test]
    fn matches() {
        let m = |v: serde_json::Value| describe_match(&serde_json::from_value(v).unwrap());
        assert_eq!(m(serde_json::json!({"prefix": "/"})), "/*");
        assert_eq!(
            m(serde_json::json!({"path_separated_prefix": "/get"})),
            "PathPrefix:/get"
        );
        assert_eq!(m(serde_json::json!({"path": "/login"})), "/login");
        assert_eq!(
            m(serde_json::json!({"safeRegex": {"regex": "/a.*"}})),
            "regex /a.*"
        );
    }

    #[test]
    fn numeric_names_sort_and_others_stay() {
        let dump: RoutesDump = serde_json::from_value(serde_json::json!({
            "dynamic_route_configs": [
                {"route_config": {"name": "9080", "virtual_hosts": [{"name": "a", "domains": ["*"], "routes": [
                    {"match": {"prefix": "/"}, "route": {"cluster": "PassthroughCluster"}}]}]}},
                {"route_config": {"name": "http.80", "virtual_hosts": [{"name": "b", "domains": ["*"]}]}},
                {"route_config": {"name": "80", "virtual_hosts": [{"name": "c", "domains": ["*"], "routes": [
                    {"match": {"prefix": "/"}, "route": {"cluster": "x"},
                     "metadata": {"filter_metadata": {"istio": {"config": "/apis/networking.istio.io/v1/namespaces/ns/virtual-service/vs"}}}}]}]}}
            ]
        }))
        .unwrap();
        let rows = route_rows(&dump, &RouteFilter::default());
        let got: Vec<(String, String, String)> = rows
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    r.route_match.clone(),
                    r.virtual_service.clone(),
                )
            })
            .collect();
        // 80 cannot pass the non-numeric http.80, and 9080's only route is a passthrough.
        assert_eq!(
            got,
            vec![
                ("http.80".into(), "/*".into(), "404".into()),
                ("80".into(), "/*".into(), "vs.ns".into()),
            ]
        );
        let only = route_rows(
            &dump,
            &RouteFilter {
                name: Some("80".into()),
            },
        );
        assert_eq!(only.len(), 1);
    }

    use crate::dump::fixture;

    fn rows_of(rel: &str) -> Vec<RouteRow> {
        route_rows(
            fixture::dump(rel).routes().unwrap(),
            &RouteFilter::default(),
        )
    }

    #[test]
    fn current_goldens() {
        for case in [
            "empty-gateway",
            "istio-gateway-http-route-prefix",
            "k8s-gateway-http-route-path-prefix",
        ] {
            fixture::assert_table(
                &rows_of(&format!("current/pc-routes/{case}/configdump.json")),
                &fixture::istio_text(&format!("current/pc-routes/{case}/output.txt")),
            );
        }
    }

    #[test]
    fn istio_1_4_dumps_match_the_derived_tables() {
        let dir = "legacy-istio1.3-1.4-real-dumps";
        for (dump, golden) in [
            (
                "productpage-v1-c7765c886-v99jb.json",
                "productpage-v1-c7765c886-v99jb",
            ),
            (
                "productpage-v1-c7765c886-v99jb.ORIGINAL-v2alpha.json",
                "productpage-v1-c7765c886-v99jb",
            ),
            (
                "istio-ingressgateway-5bf6c9887-vvvmj.json",
                "istio-ingressgateway-5bf6c9887-vvvmj",
            ),
        ] {
            fixture::assert_table(
                &rows_of(&format!("{dir}/{dump}")),
                &fixture::istio_text(&format!(
                    "{dir}/derived-current-istioctl-format/{golden}.routes.txt"
                )),
            );
        }
    }

    #[test]
    fn waypoint_dump_matches_pc_all() {
        let rows = rows_of("current/pc-all-waypoint/config_dump.json");
        let text = fixture::istio_text("current/pc-all-waypoint/config_dump_summary.txt");
        let (cols, want) = fixture::only(
            fixture::golden(&fixture::section(&text, 3)),
            &["VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE"],
        );
        assert_eq!(fixture::cells(&rows, false, &cols), want);
    }
}
