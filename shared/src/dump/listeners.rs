//! `listeners`: `ADDRESSES  PORT  MATCH  DESTINATION`, one row per filter chain, as
//! `istioctl proxy-config listener` prints it — except that the filter names of Istio 1.3/1.4
//! proxies (`envoy.http_connection_manager`, `envoy.tcp_proxy`) are recognised, where current
//! istioctl prints `Non-HTTP/Non-TCP` for them.

use serde::{Deserialize, Serialize};

use super::filter::{Filter, HCM_NAMES, TCP_PROXY_NAMES};
use super::proto_json::{lenient_string, lenient_u32};
use super::routes::{RouteConfiguration, describe_match};
use crate::render::{Cell, Tabular};

/// `ListenersConfigDump` (v3 `dynamic_listeners`, v2alpha `dynamic_active_listeners`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListenersDump {
    /// Listeners from the bootstrap.
    #[serde(default, alias = "staticListeners")]
    pub static_listeners: Vec<ListenerState>,
    /// v3: listeners from LDS with their active/warming/draining states.
    #[serde(default, alias = "dynamicListeners")]
    pub dynamic_listeners: Vec<DynamicListener>,
    /// v2alpha: active listeners from LDS.
    #[serde(default, alias = "dynamicActiveListeners")]
    pub dynamic_active_listeners: Vec<ListenerState>,
}

/// A v3 dynamic listener.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DynamicListener {
    /// Its name.
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: String,
    /// The listener in use, if any.
    #[serde(default, alias = "activeState")]
    pub active_state: Option<ListenerState>,
}

/// A listener with its version.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListenerState {
    /// The listener.
    #[serde(default)]
    pub listener: Option<Listener>,
}

/// The fields of `config.listener.v3.Listener` the views read.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Listener {
    /// Name, e.g. `0.0.0.0_15006` or `virtualInbound`.
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: String,
    /// Where it listens.
    #[serde(default)]
    pub address: Option<Address>,
    /// More addresses (dual stack).
    #[serde(default, alias = "additionalAddresses")]
    pub additional_addresses: Vec<AdditionalAddress>,
    /// Filter chains.
    #[serde(default, alias = "filterChains")]
    pub filter_chains: Vec<FilterChain>,
    /// The chain used when no other matches.
    #[serde(default, alias = "defaultFilterChain")]
    pub default_filter_chain: Option<FilterChain>,
}

/// `config.core.v3.Address`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Address {
    /// IP and port.
    #[serde(default, alias = "socketAddress")]
    pub socket_address: Option<SocketAddress>,
    /// A unix socket.
    #[serde(default)]
    pub pipe: Option<Pipe>,
}

/// `config.core.v3.SocketAddress`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SocketAddress {
    /// The IP (or name).
    #[serde(default, deserialize_with = "lenient_string")]
    pub address: String,
    /// The port.
    #[serde(default, alias = "portValue", deserialize_with = "lenient_u32")]
    pub port_value: Option<u32>,
}

/// `config.core.v3.Pipe`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Pipe {
    /// The socket path.
    #[serde(default, deserialize_with = "lenient_string")]
    pub path: String,
}

/// `config.listener.v3.AdditionalAddress`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AdditionalAddress {
    /// The address.
    #[serde(default)]
    pub address: Option<Address>,
}

/// `config.listener.v3.FilterChain`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FilterChain {
    /// Its name (Istio names them, e.g. `0.0.0.0_9080`).
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: String,
    /// When the chain applies.
    #[serde(default, alias = "filterChainMatch")]
    pub filter_chain_match: Option<FilterChainMatch>,
    /// Network filters, in order.
    #[serde(default)]
    pub filters: Vec<Filter>,
}

/// `config.listener.v3.FilterChainMatch` (the fields istioctl shows).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FilterChainMatch {
    /// SNI names.
    #[serde(default, alias = "serverNames")]
    pub server_names: Vec<String>,
    /// `tls`, `raw_buffer`.
    #[serde(
        default,
        alias = "transportProtocol",
        deserialize_with = "lenient_string"
    )]
    pub transport_protocol: String,
    /// ALPN.
    #[serde(default, alias = "applicationProtocols")]
    pub application_protocols: Vec<String>,
    /// Original destination port.
    #[serde(default, alias = "destinationPort", deserialize_with = "lenient_u32")]
    pub destination_port: Option<u32>,
    /// Deprecated address suffix.
    #[serde(default, alias = "addressSuffix", deserialize_with = "lenient_string")]
    pub address_suffix: String,
    /// Destination CIDRs.
    #[serde(default, alias = "prefixRanges")]
    pub prefix_ranges: Vec<CidrRange>,
}

/// `config.core.v3.CidrRange`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CidrRange {
    /// The prefix.
    #[serde(default, alias = "addressPrefix", deserialize_with = "lenient_string")]
    pub address_prefix: String,
    /// Its length.
    #[serde(default, alias = "prefixLen", deserialize_with = "lenient_u32")]
    pub prefix_len: Option<u32>,
}

impl ListenersDump {
    /// Active dynamic listeners (v3 and v2alpha), then static ones.
    pub fn all(&self) -> Vec<&Listener> {
        self.dynamic_listeners
            .iter()
            .filter_map(|d| d.active_state.as_ref()?.listener.as_ref())
            .chain(
                self.dynamic_active_listeners
                    .iter()
                    .filter_map(|s| s.listener.as_ref()),
            )
            .chain(
                self.static_listeners
                    .iter()
                    .filter_map(|s| s.listener.as_ref()),
            )
            .collect()
    }
}

impl Listener {
    /// Filter chains, then the default chain.
    pub fn chains(&self) -> impl Iterator<Item = &FilterChain> {
        self.filter_chains.iter().chain(&self.default_filter_chain)
    }

    /// The primary address: IP, pipe path, or empty (internal listeners).
    pub fn primary_address(&self) -> String {
        address_text(self.address.as_ref())
    }

    /// Primary then additional addresses.
    pub fn addresses(&self) -> Vec<String> {
        let mut out = vec![self.primary_address()];
        out.extend(
            self.additional_addresses
                .iter()
                .map(|a| address_text(a.address.as_ref())),
        );
        out
    }

    /// The socket port (0 for pipes and internal listeners).
    pub fn port(&self) -> u32 {
        self.address
            .as_ref()
            .and_then(|a| a.socket_address.as_ref())
            .and_then(|s| s.port_value)
            .unwrap_or(0)
    }

    /// `HTTP`, `TCP`, `HTTP+TCP` or `UNKNOWN`.
    pub fn listener_type(&self) -> &'static str {
        let (mut http, mut tcp) = (0, 0);
        for f in self.chains().flat_map(|c| &c.filters) {
            if f.is(HCM_NAMES, "HttpConnectionManager") {
                http += 1;
            } else if f.is(TCP_PROXY_NAMES, "TcpProxy") && !f.is_black_hole() {
                tcp += 1;
            }
        }
        match (http > 0, tcp > 0) {
            (true, false) => "HTTP",
            (true, true) => "HTTP+TCP",
            (false, true) => "TCP",
            (false, false) => "UNKNOWN",
        }
    }
}

fn address_text(a: Option<&Address>) -> String {
    match a {
        Some(Address {
            socket_address: Some(s),
            ..
        }) => s.address.clone(),
        Some(Address { pipe: Some(p), .. }) => p.path.clone(),
        _ => String::new(),
    }
}

/// One row of the listeners table: one filter chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerRow {
    /// Listener name.
    pub name: String,
    /// Primary and additional addresses.
    pub addresses: Vec<String>,
    /// Port.
    pub port: u32,
    /// The filter chain's name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub filter_chain: String,
    /// The chain's match, as istioctl describes it.
    #[serde(rename = "match")]
    pub chain_match: String,
    /// Where the chain sends traffic, as istioctl describes it.
    pub destination: String,
    /// The listener's type (`HTTP`, `TCP`, `HTTP+TCP`, `UNKNOWN`).
    #[serde(rename = "type")]
    pub listener_type: String,
}

impl Tabular for ListenerRow {
    const KIND: &'static str = "Listener";
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["ADDRESSES", "PORT", "MATCH", "DESTINATION"];
        if wide {
            h.extend(["TYPE", "NAME"]);
        }
        h
    }
    fn row(&self, wide: bool) -> Vec<Cell<'_>> {
        let mut r = vec![
            Cell::plain(self.addresses.join(",")),
            Cell::plain(self.port.to_string()),
            Cell::plain(&self.chain_match),
            Cell::plain(&self.destination),
        ];
        if wide {
            r.push(Cell::plain(&self.listener_type));
            r.push(Cell::plain(&self.name));
        }
        r
    }
}

/// `--address`, `--port`, `--type`.
#[derive(Debug, Clone, Default)]
pub struct ListenerFilter {
    /// Equal (ignoring case) to the primary or an additional address.
    pub address: Option<String>,
    /// The socket port.
    pub port: Option<u32>,
    /// `HTTP`, `TCP`, `HTTP+TCP`, `UNKNOWN` (ignoring case).
    pub listener_type: Option<String>,
}

impl ListenerFilter {
    fn matches(&self, l: &Listener) -> bool {
        let address_ok = self
            .address
            .as_ref()
            .is_none_or(|a| l.addresses().iter().any(|x| x.eq_ignore_ascii_case(a)));
        let type_ok = self
            .listener_type
            .as_ref()
            .is_none_or(|t| l.listener_type().eq_ignore_ascii_case(t));
        address_ok && type_ok && self.port.is_none_or(|p| p == l.port())
    }
}

/// All rows: listeners sorted by (port, address, type), each listener's chains by destination,
/// descending.
pub fn listener_rows(dump: &ListenersDump, filter: &ListenerFilter) -> Vec<ListenerRow> {
    let listeners: Vec<&Listener> = dump
        .all()
        .into_iter()
        .filter(|l| filter.matches(l))
        .collect();
    // The type looks into every filter's config: work it out once per listener, not per
    // comparison (tens of thousands of listeners in a large mesh).
    let mut listeners: Vec<(u32, String, &'static str, &Listener)> = listeners
        .into_iter()
        .map(|l| (l.port(), l.primary_address(), l.listener_type(), l))
        .collect();
    listeners.sort_by(|a, b| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2)));
    let mut rows = Vec::new();
    for (port, _, listener_type, l) in listeners {
        let mut chains: Vec<ListenerRow> = l
            .chains()
            .map(|c| ListenerRow {
                name: l.name.clone(),
                addresses: l.addresses(),
                port,
                filter_chain: c.name.clone(),
                chain_match: describe_chain_match(c.filter_chain_match.as_ref()),
                destination: describe_destination(&c.filters),
                listener_type: listener_type.to_string(),
            })
            .collect();
        chains.sort_by(|a, b| b.destination.cmp(&a.destination));
        rows.extend(chains);
    }
    rows
}

const PROTOCOL_NAMES: &[(&str, &[&str])] = &[
    (
        "App: HTTP TLS",
        &[
            "http/1.0",
            "http/1.1",
            "h2c",
            "istio-http/1.0",
            "istio-http/1.1",
            "istio-h2",
        ],
    ),
    (
        "App: Istio HTTP Plain",
        &["istio", "istio-http/1.0", "istio-http/1.1", "istio-h2"],
    ),
    ("App: TCP TLS", &["istio-peer-exchange", "istio"]),
    ("App: HTTP", &["http/1.0", "http/1.1", "h2c"]),
];

/// MATCH: `SNI: …; Trans: …; App: …; Addr: …`, or `ALL`.
pub fn describe_chain_match(m: Option<&FilterChainMatch>) -> String {
    let Some(m) = m else {
        return "ALL".into();
    };
    let mut descrs = Vec::new();
    if !m.server_names.is_empty() {
        descrs.push(format!("SNI: {}", m.server_names.join(",")));
    }
    if !m.transport_protocol.is_empty() {
        descrs.push(format!("Trans: {}", m.transport_protocol));
    }
    if !m.application_protocols.is_empty() {
        let named = PROTOCOL_NAMES
            .iter()
            .find(|(_, list)| {
                m.application_protocols
                    .iter()
                    .map(String::as_str)
                    .eq(list.iter().copied())
            })
            .map(|(name, _)| name.to_string());
        descrs.push(named.unwrap_or_else(|| format!("App: {}", m.application_protocols.join(","))));
    }
    let port = m
        .destination_port
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    if !m.address_suffix.is_empty() {
        descrs.push(format!("Addr: {}{port}", m.address_suffix));
    }
    if !m.prefix_ranges.is_empty() {
        let ranges: Vec<String> = m
            .prefix_ranges
            .iter()
            .map(|r| format!("{}/{}", r.address_prefix, r.prefix_len.unwrap_or(0)))
            .collect();
        descrs.push(format!("Addr: {}{port}", ranges.join(",")));
    } else if m.address_suffix.is_empty() && !port.is_empty() {
        descrs.push(format!("Addr: *{port}"));
    }
    if descrs.is_empty() {
        "ALL".into()
    } else {
        descrs.join("; ")
    }
}

/// DESTINATION: the first HTTP connection manager or (non-black-hole) TCP proxy of the chain.
pub fn describe_destination(filters: &[Filter]) -> String {
    for f in filters {
        if let Some(hcm) = f.http_connection_manager() {
            if let Some(rc) = &hcm.route_config {
                return describe_inline_routes(rc);
            }
            if let Some(rds) = hcm.rds.as_ref().filter(|r| !r.route_config_name.is_empty()) {
                return format!("Route: {}", rds.route_config_name);
            }
            return "HTTP".into();
        }
        if let Some(tcp) = f.tcp_proxy()
            && !f.is_black_hole()
        {
            return cluster_destination(&tcp.cluster);
        }
    }
    "Non-HTTP/Non-TCP".into()
}

fn cluster_destination(cluster: &str) -> String {
    if cluster.contains("Cluster") {
        cluster.to_string()
    } else {
        format!("Cluster: {cluster}")
    }
}

fn describe_inline_routes(rc: &RouteConfiguration) -> String {
    // One catch-all virtual host with one route of `/` to a cluster: just the cluster.
    if let [vh] = rc.virtual_hosts.as_slice()
        && vh.domains == ["*"]
        && let [route] = vh.routes.as_slice()
        && route.route_match.prefix.as_deref() == Some("/")
        && let Some(cluster) = route.route.as_ref().and_then(|a| a.cluster.as_deref())
    {
        return cluster_destination(cluster);
    }
    let vhosts: Vec<String> = rc
        .virtual_hosts
        .iter()
        .map(|vh| {
            let routes: Vec<String> = vh
                .routes
                .iter()
                .map(|r| describe_match(&r.route_match))
                .collect();
            let routes = routes.join(", ");
            if vh.domains == ["*"] {
                routes
            } else {
                format!("{} {routes}", vh.domains.join("/"))
            }
        })
        .collect();
    format!("Inline Route: {}", vhosts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(v: serde_json::Value) -> Listener {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn matches_are_described_like_istioctl() {
        let m: FilterChainMatch = serde_json::from_value(serde_json::json!({
            "transport_protocol": "tls",
            "application_protocols": ["istio-peer-exchange", "istio"],
            "destination_port": 9080
        }))
        .unwrap();
        assert_eq!(
            describe_chain_match(Some(&m)),
            "Trans: tls; App: TCP TLS; Addr: *:9080"
        );
        let m: FilterChainMatch = serde_json::from_value(serde_json::json!({
            "prefixRanges": [{"addressPrefix": "10.0.0.1", "prefixLen": 32}],
            "serverNames": ["a", "b"],
            "applicationProtocols": ["h2"]
        }))
        .unwrap();
        assert_eq!(
            describe_chain_match(Some(&m)),
            "SNI: a,b; App: h2; Addr: 10.0.0.1/32"
        );
        assert_eq!(describe_chain_match(None), "ALL");
    }

    #[test]
    fn destinations_current_and_legacy_filter_names() {
        let l = listener(serde_json::json!({
            "name": "x",
            "address": {"socket_address": {"address": "0.0.0.0", "port_value": 80}},
            "filter_chains": [
              {"filters": [{"name": "envoy.http_connection_manager", "config": {"rds": {"route_config_name": "80"}}}]},
              {"filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", "cluster": "PassthroughCluster"}}]},
              {"filters": [{"name": "envoy.tcp_proxy", "typed_config": {"@type": "x", "cluster": "BlackHoleCluster"}}]},
              {"filters": [{"name": "other", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", "cluster": "outbound|80||a"}}]}
            ]
        }));
        let dump = ListenersDump {
            static_listeners: vec![ListenerState { listener: Some(l) }],
            ..Default::default()
        };
        let rows = listener_rows(&dump, &ListenerFilter::default());
        let dest: Vec<&str> = rows.iter().map(|r| r.destination.as_str()).collect();
        assert_eq!(
            dest,
            vec![
                "Route: 80",
                "PassthroughCluster",
                "Non-HTTP/Non-TCP",
                "Cluster: outbound|80||a"
            ]
        );
        assert_eq!(rows[0].listener_type, "HTTP+TCP");
    }

    #[test]
    fn inline_routes() {
        let hcm = |rc: serde_json::Value| {
            vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                typed_config: Some(serde_json::json!({"@type": "t", "route_config": rc})),
                config: None,
            }]
        };
        let one = hcm(
            serde_json::json!({"virtual_hosts": [{"domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": "inbound|80||"}}]}]}),
        );
        assert_eq!(describe_destination(&one), "Cluster: inbound|80||");
        let more = hcm(serde_json::json!({"virtual_hosts": [
            {"domains": ["*"], "routes": [{"match": {"prefix": "/healthz/ready"}, "route": {"cluster": "agent"}}]},
            {"domains": ["a", "b"], "routes": [{"match": {"path": "/x"}}, {"match": {"safe_regex": {"regex": ".*"}}}]}
        ]}));
        assert_eq!(
            describe_destination(&more),
            "Inline Route: /healthz/ready*; a/b /x, regex .*"
        );
    }

    #[test]
    fn filters_by_address_port_type() {
        let l = listener(serde_json::json!({
            "address": {"socket_address": {"address": "10.0.0.1", "port_value": 443}},
            "additional_addresses": [{"address": {"socket_address": {"address": "FD00::1", "port_value": 443}}}],
            "filter_chains": [{"filters": [{"name": "envoy.tcp_proxy", "config": {"cluster": "c"}}]}]
        }));
        let dump = ListenersDump {
            static_listeners: vec![ListenerState { listener: Some(l) }],
            ..Default::default()
        };
        let f = |a: Option<&str>, p: Option<u32>, t: Option<&str>| {
            listener_rows(
                &dump,
                &ListenerFilter {
                    address: a.map(Into::into),
                    port: p,
                    listener_type: t.map(Into::into),
                },
            )
            .len()
        };
        assert_eq!(f(Some("fd00::1"), Some(443), Some("tcp")), 1);
        assert_eq!(f(None, Some(80), None), 0);
        assert_eq!(f(None, None, Some("HTTP")), 0);
        let rows = listener_rows(&dump, &ListenerFilter::default());
        assert_eq!(rows[0].addresses.join(","), "10.0.0.1,FD00::1");
    }

    use crate::dump::fixture;

    #[test]
    fn waypoint_dump_matches_pc_all() {
        let d = fixture::dump("current/pc-all-waypoint/config_dump.json");
        let rows = listener_rows(d.listeners().unwrap(), &ListenerFilter::default());
        let text = fixture::istio_text("current/pc-all-waypoint/config_dump_summary.txt");
        let (cols, want) = fixture::only(
            fixture::golden_words(&fixture::section(&text, 2)),
            &["ADDRESSES", "PORT", "MATCH", "DESTINATION"],
        );
        assert_eq!(fixture::cells(&rows, false, &cols), want);
    }

    /// The old istioctl golden (`ADDRESS PORT TYPE`) was made for the legacy filter names, which
    /// we still recognise.
    #[test]
    fn legacy_2020_listener_types() {
        let d = fixture::dump("legacy-2020/pc-configdump/configdump.json");
        let mut rows = listener_rows(d.listeners().unwrap(), &ListenerFilter::default());
        rows.dedup_by(|a, b| a.name == b.name);
        let got: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.addresses.join(","),
                    r.port.to_string(),
                    r.listener_type.clone(),
                ]
            })
            .collect();
        let (_, want) = fixture::golden(&fixture::istio_text(
            "legacy-2020/pc-configdump/listenersummary.txt",
        ));
        assert_eq!(got, want);
        let f = ListenerFilter {
            listener_type: Some("tcp".into()),
            ..Default::default()
        };
        let tcp = listener_rows(d.listeners().unwrap(), &f);
        assert!(
            tcp.iter()
                .all(|r| r.addresses == ["172.21.134.116"] && r.port == 443)
        );
    }

    /// Current istioctl shows `Non-HTTP/Non-TCP` for every chain of these dumps; we read the
    /// Istio 1.4 filter names, from v3 and v2alpha dumps alike.
    #[test]
    fn istio_1_4_filter_names_are_understood() {
        let dir = "legacy-istio1.3-1.4-real-dumps";
        let mut tables = Vec::new();
        for dump in [
            "productpage-v1-c7765c886-v99jb.json",
            "productpage-v1-c7765c886-v99jb.ORIGINAL-v2alpha.json",
        ] {
            let d = fixture::dump(&format!("{dir}/{dump}"));
            let rows = listener_rows(d.listeners().unwrap(), &ListenerFilter::default());
            tables.push(
                rows.iter()
                    .map(|r| {
                        format!(
                            "{} {} {} -> {} [{}]",
                            r.addresses.join(","),
                            r.port,
                            r.chain_match,
                            r.destination,
                            r.listener_type
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
        }
        assert_eq!(
            tables[0], tables[1],
            "v3 and v2alpha dumps give the same table"
        );
        insta::assert_snapshot!(tables[0]);
        // Same rows, same MATCH cells as the derived istioctl table; only DESTINATION differs.
        let (_, want) = fixture::golden_words(&fixture::istio_text(&format!(
            "{dir}/derived-current-istioctl-format/productpage-v1-c7765c886-v99jb.listeners.txt"
        )));
        let d = fixture::dump(&format!("{dir}/productpage-v1-c7765c886-v99jb.json"));
        let mut got: Vec<Vec<String>> =
            listener_rows(d.listeners().unwrap(), &ListenerFilter::default())
                .iter()
                .map(|r| {
                    vec![
                        r.addresses.join(","),
                        r.port.to_string(),
                        r.chain_match.clone(),
                    ]
                })
                .collect();
        let mut want: Vec<Vec<String>> = want.into_iter().map(|r| r[..3].to_vec()).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want);
    }
}
