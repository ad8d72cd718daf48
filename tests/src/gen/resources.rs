//! The xDS resources one sidecar of a generated mesh holds, shaped like istiod's (cluster names,
//! `filter_metadata.istio`, mTLS transport-socket matches, `0.0.0.0_PORT` listeners with RDS,
//! `IP_PORT` TCP listeners, one route configuration per HTTP port with a virtual host per
//! service, locality-weighted endpoints). Each is a valid Envoy v3 resource with its `@type`.

use serde_json::{Value, json};

use super::{MeshSpec, Protocol, Service};
use crate::xds::{CLUSTER, ENDPOINT, LISTENER, ProxyResources, ROUTE};

const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const TCP_PROXY: &str =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
const UPSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
const DOWNSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
const RAW_BUFFER: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer";
const HTTP_OPTIONS: &str =
    "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
const MAX: u32 = u32::MAX;

/// Everything one sidecar holds, as the ADS server pushes it (dynamic resources only; the
/// bootstrap's static clusters and listeners are not included).
pub fn proxy_resources(spec: &MeshSpec) -> ProxyResources {
    let mut r = ProxyResources {
        clusters: fixed_clusters(),
        ..ProxyResources::default()
    };
    for svc in spec.services() {
        for subset in cluster_subsets(&svc) {
            r.clusters.push(outbound_cluster(spec, &svc, &subset));
            r.endpoints.push(load_assignment(&svc, &subset));
        }
        if svc.protocol == Protocol::Tcp {
            r.listeners.push(tcp_listener(&svc));
        }
    }
    r.listeners
        .extend(spec.http_ports().into_iter().map(http_listener));
    r.listeners.push(virtual_outbound(spec));
    r.listeners.push(virtual_inbound(spec));
    r.routes = spec
        .http_ports()
        .into_iter()
        .map(|port| route_configuration(spec, port))
        .collect();
    r
}

/// `""` (the service's cluster) and each subset.
pub fn cluster_subsets(svc: &Service) -> Vec<String> {
    let mut out = vec![String::new()];
    out.extend(svc.subset_names());
    out
}

/// How RDS, EDS and SDS are fetched: over ADS (Istio waits for them forever, `0s`).
fn ads(spec: &MeshSpec) -> Value {
    let timeout = if spec.bind_ports { "0s" } else { "1s" };
    json!({"ads": {}, "initial_fetch_timeout": timeout, "resource_api_version": "V3"})
}

/// SDS: the agent's `sds-grpc` cluster in a pod; over ADS (with a timeout, as nothing answers)
/// when loaded into a world Envoy.
fn sds(spec: &MeshSpec, name: &str) -> Value {
    let source = if spec.bind_ports {
        json!({
            "api_config_source": {
                "api_type": "GRPC",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}],
                "set_node_on_first_message_only": true,
                "transport_api_version": "V3",
            },
            "initial_fetch_timeout": "0s",
            "resource_api_version": "V3",
        })
    } else {
        ads(spec)
    };
    json!({"name": name, "sds_config": source})
}

fn config_path(kind: &str, svc: &Service) -> String {
    format!(
        "/apis/networking.istio.io/v1/namespaces/{}/{kind}/{}",
        svc.namespace, svc.name
    )
}

/// `outbound|port|subset|fqdn`: EDS, Istio's circuit breakers, metadata and mTLS match.
pub fn outbound_cluster(spec: &MeshSpec, svc: &Service, subset: &str) -> Value {
    let name = svc.cluster_name(subset);
    let fqdn = svc.fqdn();
    let mut istio = json!({
        "services": [{"host": fqdn, "name": svc.name, "namespace": svc.namespace}],
    });
    if svc.subsets > 0 {
        istio["config"] = json!(config_path("destination-rule", svc));
    }
    if !subset.is_empty() {
        istio["subset"] = json!(subset);
    }
    let sni = format!("outbound_.{}_.{subset}_.{fqdn}", svc.port);
    let tls = json!({
        "@type": UPSTREAM_TLS,
        "common_tls_context": {
            "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"},
            "alpn_protocols": ["istio-peer-exchange", "istio"],
            "tls_certificate_sds_secret_configs": [sds(spec, "default")],
            "combined_validation_context": {
                "default_validation_context": {
                    "match_typed_subject_alt_names": [{
                        "san_type": "URI",
                        "matcher": {"exact": format!("spiffe://cluster.local/ns/{}/sa/{}", svc.namespace, svc.name)},
                    }],
                },
                "validation_context_sds_secret_config": sds(spec, "ROOTCA"),
            },
        },
        "sni": sni,
    });
    let mut c = json!({
        "@type": CLUSTER,
        "name": name,
        "type": "EDS",
        "eds_cluster_config": {"eds_config": ads(spec), "service_name": name},
        "connect_timeout": "10s",
        "lb_policy": "LEAST_REQUEST",
        "circuit_breakers": {"thresholds": [{
            "max_connections": MAX, "max_pending_requests": MAX, "max_requests": MAX,
            "max_retries": MAX, "track_remaining": true,
        }]},
        "common_lb_config": {"locality_weighted_lb_config": {}},
        "metadata": {"filter_metadata": {"istio": istio}},
        "transport_socket_matches": [
            {"name": "tlsMode-istio", "match": {"tlsMode": "istio"},
             "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": tls}},
            {"name": "tlsMode-disabled", "match": {},
             "transport_socket": {"name": "envoy.transport_sockets.raw_buffer", "typed_config": {"@type": RAW_BUFFER}}},
        ],
    });
    let http = match svc.protocol {
        Protocol::Http => Some(json!({"use_downstream_protocol_config": {
            "http_protocol_options": {}, "http2_protocol_options": {}}})),
        Protocol::Grpc => Some(json!({"explicit_http_config": {"http2_protocol_options": {}}})),
        Protocol::Tcp => None,
    };
    if let Some(mut options) = http {
        options["@type"] = json!(HTTP_OPTIONS);
        options["common_http_protocol_options"] = json!({"idle_timeout": "3600s"});
        c["typed_extension_protocol_options"] =
            json!({"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": options});
    }
    c
}

/// `BlackHoleCluster`, `PassthroughCluster`, `InboundPassthroughCluster` and the inbound
/// cluster of the pod's own port.
pub fn fixed_clusters() -> Vec<Value> {
    vec![
        json!({"@type": CLUSTER, "name": "BlackHoleCluster", "type": "STATIC", "connect_timeout": "10s"}),
        json!({"@type": CLUSTER, "name": "PassthroughCluster", "type": "ORIGINAL_DST",
               "connect_timeout": "10s", "lb_policy": "CLUSTER_PROVIDED",
               "circuit_breakers": {"thresholds": [{"max_connections": MAX, "max_pending_requests": MAX, "max_requests": MAX, "max_retries": MAX}]},
               "filters": [], "metadata": {"filter_metadata": {"istio": {"services": []}}}}),
        json!({"@type": CLUSTER, "name": "InboundPassthroughCluster", "type": "ORIGINAL_DST",
               "connect_timeout": "10s", "lb_policy": "CLUSTER_PROVIDED",
               "upstream_bind_config": {"source_address": {"address": "127.0.0.6", "port_value": 0}}}),
        json!({"@type": CLUSTER, "name": "inbound|8080||", "type": "STATIC", "connect_timeout": "10s",
               "load_assignment": {"cluster_name": "inbound|8080||", "endpoints": [{"lb_endpoints": [
                   {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 8080}}}}]}]},
               "metadata": {"filter_metadata": {"istio": {"services": [{"host": "bench.ns-0.svc.cluster.local", "name": "bench", "namespace": "ns-0"}]}}}}),
    ]
}

/// The endpoints of a service (all of them, or those of one subset).
pub fn load_assignment(svc: &Service, subset: &str) -> Value {
    let which: Vec<usize> = match subset
        .strip_prefix('v')
        .and_then(|n| n.parse::<usize>().ok())
    {
        Some(n) if svc.subsets > 0 => (0..svc.endpoints)
            .filter(|e| e % svc.subsets == n - 1)
            .collect(),
        _ => (0..svc.endpoints).collect(),
    };
    let lb_endpoints: Vec<Value> = which
        .iter()
        .map(|&e| {
            let version = if svc.subsets > 0 { e % svc.subsets + 1 } else { 1 };
            json!({
                "endpoint": {"address": {"socket_address": {"address": svc.endpoint_ip(e), "port_value": svc.port}}},
                "health_status": "HEALTHY",
                "metadata": {"filter_metadata": {
                    "envoy.transport_socket_match": {"tlsMode": "istio"},
                    "istio": {"workload": format!("{}-v{version};{};{};v{version};Kubernetes", svc.name, svc.namespace, svc.name)},
                }},
                "load_balancing_weight": 1,
            })
        })
        .collect();
    let weight = lb_endpoints.len().max(1);
    json!({
        "@type": ENDPOINT,
        "cluster_name": svc.cluster_name(subset),
        "endpoints": [{
            "locality": {"region": "us-east1", "zone": format!("us-east1-{}", ["b", "c", "d"][svc.index % 3])},
            "lb_endpoints": lb_endpoints,
            "load_balancing_weight": weight,
        }],
    })
}

fn access_log() -> Value {
    json!([{"name": "envoy.access_loggers.file", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
        "path": "/dev/stdout",
        "log_format": {"text_format_source": {"inline_string":
            "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"}},
    }}])
}

fn tcp_proxy(stat_prefix: &str, cluster: &str) -> Value {
    json!({"name": "envoy.filters.network.tcp_proxy", "typed_config": {
        "@type": TCP_PROXY, "stat_prefix": stat_prefix, "cluster": cluster,
        "access_log": access_log(),
    }})
}

fn http_filters() -> Value {
    json!([
        {"name": "envoy.filters.http.grpc_stats", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_stats.v3.FilterConfig",
            "emit_filter_state": true, "stats_for_all_methods": false}},
        {"name": "envoy.filters.http.fault", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}},
        {"name": "envoy.filters.http.cors", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}},
        {"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
    ])
}

fn hcm(stat_prefix: &str, routes: Value) -> Value {
    let mut h = json!({
        "@type": HCM,
        "stat_prefix": stat_prefix,
        "http_filters": http_filters(),
        "access_log": access_log(),
        "use_remote_address": false,
        "upgrade_configs": [{"upgrade_type": "websocket"}],
        "stream_idle_timeout": "0s",
        "normalize_path": true,
        "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
    });
    for (k, v) in routes.as_object().into_iter().flatten() {
        h[k] = v.clone();
    }
    json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": h})
}

fn listener_filters() -> Value {
    json!([
        {"name": "envoy.filters.listener.tls_inspector", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}},
        {"name": "envoy.filters.listener.http_inspector", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"}},
    ])
}

fn socket(address: &str, port: u16) -> Value {
    json!({"socket_address": {"address": address, "port_value": port}})
}

/// `0.0.0.0_PORT`: HTTP to route configuration `PORT`, anything else passed through.
pub fn http_listener(port: u16) -> Value {
    let name = format!("0.0.0.0_{port}");
    json!({
        "@type": LISTENER,
        "name": name,
        "address": socket("0.0.0.0", port),
        "filter_chains": [{
            "name": name,
            "filter_chain_match": {"transport_protocol": "raw_buffer", "application_protocols": ["http/1.1", "h2c"]},
            "filters": [hcm(&format!("outbound_0.0.0.0_{port}"), json!({"rds": {
                "config_source": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
                "route_config_name": port.to_string()}}))],
        }],
        "default_filter_chain": {"name": "PassthroughFilterChain", "filters": [tcp_proxy("PassthroughCluster", "PassthroughCluster")]},
        "listener_filters": listener_filters(),
        "listener_filters_timeout": "0s",
        "continue_on_listener_filters_timeout": true,
        "traffic_direction": "OUTBOUND",
        "bind_to_port": false,
    })
}

/// `CLUSTERIP_PORT`: a TCP service.
pub fn tcp_listener(svc: &Service) -> Value {
    let name = format!("{}_{}", svc.cluster_ip, svc.port);
    let cluster = svc.cluster_name("");
    json!({
        "@type": LISTENER,
        "name": name,
        "address": socket(&svc.cluster_ip, svc.port),
        "filter_chains": [{"filters": [tcp_proxy(&cluster, &cluster)]}],
        "traffic_direction": "OUTBOUND",
        "bind_to_port": false,
    })
}

/// `virtualOutbound` (15001): whatever no other listener takes, passed through.
pub fn virtual_outbound(spec: &MeshSpec) -> Value {
    let mut l = json!({
        "@type": LISTENER,
        "name": "virtualOutbound",
        "address": socket("0.0.0.0", 15001),
        "filter_chains": [{"name": "virtualOutbound-catchall-tcp", "filters": [
            tcp_proxy("PassthroughCluster", "PassthroughCluster")]}],
        "use_original_dst": true,
        "traffic_direction": "OUTBOUND",
    });
    if !spec.bind_ports {
        l["bind_to_port"] = json!(false);
    }
    l
}

/// `virtualInbound` (15006): the pod's own port 8080, mTLS and plain text.
pub fn virtual_inbound(spec: &MeshSpec) -> Value {
    let inbound_routes = json!({"route_config": {
        "name": "inbound|8080||",
        "virtual_hosts": [{"name": "inbound|http|8080", "domains": ["*"], "routes": [{
            "name": "default", "match": {"prefix": "/"},
            "route": {"cluster": "inbound|8080||", "timeout": "0s",
                      "max_stream_duration": {"max_stream_duration": "0s", "grpc_timeout_header_max": "0s"}},
            "decorator": {"operation": "bench.ns-0.svc.cluster.local:8080/*"}}]}],
        "validate_clusters": false}});
    let tls = json!({"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": DOWNSTREAM_TLS,
        "common_tls_context": {
            "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"},
            "alpn_protocols": ["h2", "http/1.1"],
            "tls_certificate_sds_secret_configs": [sds(spec, "default")],
            "combined_validation_context": {
                "default_validation_context": {"match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"prefix": "spiffe://cluster.local/"}}]},
                "validation_context_sds_secret_config": sds(spec, "ROOTCA"),
            },
        },
        "require_client_certificate": true,
    }});
    let mut l = json!({
        "@type": LISTENER,
        "name": "virtualInbound",
        "address": socket("0.0.0.0", 15006),
        "filter_chains": [
            {"name": "inbound_0.0.0.0_8080", "filter_chain_match": {"destination_port": 8080, "transport_protocol": "tls", "application_protocols": ["istio", "istio-peer-exchange", "istio-http/1.0", "istio-http/1.1", "istio-h2"]},
             "filters": [hcm("inbound_0.0.0.0_8080", inbound_routes.clone())], "transport_socket": tls},
            {"name": "inbound_0.0.0.0_8080", "filter_chain_match": {"destination_port": 8080, "transport_protocol": "raw_buffer"},
             "filters": [hcm("inbound_0.0.0.0_8080", inbound_routes)]},
            {"name": "virtualInbound-blackhole", "filter_chain_match": {"destination_port": 15006},
             "filters": [tcp_proxy("BlackHoleCluster", "BlackHoleCluster")]},
        ],
        "default_filter_chain": {"name": "virtualInbound-catchall-tcp", "filters": [
            tcp_proxy("InboundPassthroughCluster", "InboundPassthroughCluster")]},
        "listener_filters": listener_filters(),
        "listener_filters_timeout": "0s",
        "continue_on_listener_filters_timeout": true,
        "use_original_dst": true,
        "traffic_direction": "INBOUND",
    });
    if !spec.bind_ports {
        l["bind_to_port"] = json!(false);
    }
    l
}

fn retry_policy() -> Value {
    json!({
        "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
        "num_retries": 2,
        "host_selection_retry_max_attempts": "5",
        "retriable_status_codes": [503],
    })
}

fn route_action(target: Value) -> Value {
    let mut a = json!({
        "timeout": "0s",
        "retry_policy": retry_policy(),
        "max_stream_duration": {"max_stream_duration": "0s", "grpc_timeout_header_max": "0s"},
    });
    for (k, v) in target.as_object().into_iter().flatten() {
        a[k] = v.clone();
    }
    a
}

/// The virtual host of a service in route configuration `PORT`.
pub fn virtual_host(svc: &Service) -> Value {
    let fqdn = svc.fqdn();
    let authority = format!("{fqdn}:{}", svc.port);
    let mut domains = vec![
        fqdn.clone(),
        format!("{}.{}.svc", svc.name, svc.namespace),
        format!("{}.{}", svc.name, svc.namespace),
    ];
    if svc.namespace == "ns-0" {
        domains.push(svc.name.clone());
    }
    domains.push(svc.cluster_ip.clone());
    let decorator = json!({"operation": format!("{authority}/*")});
    let mut routes = Vec::new();
    if svc.virtual_service {
        let vs =
            json!({"filter_metadata": {"istio": {"config": config_path("virtual-service", svc)}}});
        let api_target = if svc.subsets >= 2 {
            json!({"weighted_clusters": {"clusters": [
                {"name": svc.cluster_name("v1"), "weight": 90},
                {"name": svc.cluster_name("v2"), "weight": 10},
            ]}})
        } else {
            json!({"cluster": svc.cluster_name("")})
        };
        let api_match = if svc.index.is_multiple_of(2) {
            json!({"safe_regex": {"regex": "/api/v[0-9]+/.*"}})
        } else {
            json!({"path_separated_prefix": "/api"})
        };
        routes.push(
            json!({"name": format!("{}-api", svc.name), "match": api_match,
            "route": route_action(api_target), "metadata": vs, "decorator": decorator}),
        );
        routes.push(json!({"name": "default", "match": {"prefix": "/"},
            "route": route_action(json!({"cluster": svc.cluster_name("")})), "metadata": vs, "decorator": decorator}));
    } else {
        routes.push(json!({"name": "default", "match": {"prefix": "/"},
            "route": route_action(json!({"cluster": svc.cluster_name("")})), "decorator": decorator}));
    }
    json!({"name": authority, "domains": domains, "routes": routes, "include_request_attempt_count": true})
}

/// Route configuration `PORT`: a virtual host per service on that port, then `allow_any`.
pub fn route_configuration(spec: &MeshSpec, port: u16) -> Value {
    let mut hosts: Vec<Value> = spec
        .services()
        .filter(|s| s.port == port && s.protocol != Protocol::Tcp)
        .map(|s| virtual_host(&s))
        .collect();
    hosts.push(json!({"name": "allow_any", "domains": ["*"], "routes": [{
        "name": "allow_any", "match": {"prefix": "/"},
        "route": {"cluster": "PassthroughCluster", "timeout": "0s",
                  "max_stream_duration": {"max_stream_duration": "0s", "grpc_timeout_header_max": "0s"}}}],
        "include_request_attempt_count": true}));
    json!({
        "@type": ROUTE,
        "name": port.to_string(),
        "virtual_hosts": hosts,
        "validate_clusters": false,
        "ignore_port_in_host_matching": true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_mesh() {
        let spec = MeshSpec::new(7);
        let r = proxy_resources(&spec);
        // 4 fixed + 7 services + subsets of services 0, 2, 4, 6 (2 each).
        assert_eq!(r.clusters.len(), 4 + 7 + 8);
        assert_eq!(r.endpoints.len(), 7 + 8);
        // 2 TCP services, 5 HTTP ports, virtualOutbound, virtualInbound.
        assert_eq!(r.listeners.len(), 2 + 5 + 2);
        assert_eq!(r.routes.len(), 5);
        let c = &r.clusters[4];
        assert_eq!(c["name"], "outbound|8080||reviews-0.ns-0.svc.cluster.local");
        assert_eq!(
            c["metadata"]["filter_metadata"]["istio"]["config"],
            "/apis/networking.istio.io/v1/namespaces/ns-0/destination-rule/reviews-0"
        );
        let cla = &r.endpoints[1];
        assert_eq!(
            cla["cluster_name"],
            "outbound|8080|v1|reviews-0.ns-0.svc.cluster.local"
        );
        assert_eq!(
            cla["endpoints"][0]["lb_endpoints"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let rc = r.routes.iter().find(|r| r["name"] == "8080").unwrap();
        let vh = &rc["virtual_hosts"][0];
        assert_eq!(vh["name"], "reviews-0.ns-0.svc.cluster.local:8080");
        assert_eq!(
            vh["routes"][0]["route"]["weighted_clusters"]["clusters"][1]["weight"],
            10
        );
    }
}
