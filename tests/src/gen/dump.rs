//! A sidecar's `GET /config_dump?include_eds` for a generated mesh, streamed to a writer (a
//! 300 MB dump never sits in memory): bootstrap, clusters (static and dynamic), endpoints,
//! listeners, scoped routes, routes and secrets, as Envoy lays them out.

use std::io::{self, Write};

use anyhow::{Context, Result};
use base64::Engine as _;
use serde::Serialize;
use serde_json::{Value, json};

use super::MeshSpec;
use super::resources::{
    cluster_subsets, fixed_clusters, http_listener, load_assignment, outbound_cluster,
    route_configuration, tcp_listener, virtual_inbound, virtual_outbound,
};
use crate::xds::{CLUSTER, LISTENER};

const ADMIN: &str = "type.googleapis.com/envoy.admin.v3.";
const VERSION: &str = "2024-06-20T10:00:00Z/42";
const UPDATED: &str = "2024-06-20T10:00:01.123Z";

/// Write the whole dump of `spec`; returns the number of bytes written.
pub fn write_config_dump(spec: &MeshSpec, out: &mut dyn Write) -> Result<u64> {
    let certs = Certificates::generate()?;
    let mut w = Counting {
        inner: out,
        bytes: 0,
    };
    write_sections(spec, &certs, &mut w)?;
    w.flush()?;
    Ok(w.bytes)
}

/// The number of services whose dump is about `bytes` long (within a few kB).
pub fn services_for_size(bytes: u64) -> Result<usize> {
    let certs = Certificates::generate()?;
    let size = |n: usize| -> Result<u64> {
        let mut sink = Counting {
            inner: &mut io::sink(),
            bytes: 0,
        };
        write_sections(&MeshSpec::new(n), &certs, &mut sink)?;
        Ok(sink.bytes)
    };
    // Per service, measured over 140 services (two turns of the port list, ten of the names).
    let (small, large) = (size(140)?, size(280)?);
    let per = (large - small) as f64 / 140.0;
    let fixed = small as f64 - 140.0 * per;
    Ok((((bytes as f64 - fixed) / per).round().max(1.0)) as usize)
}

struct Counting<'a> {
    inner: &'a mut dyn Write,
    bytes: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes `"key": [items...]` with each item pretty-printed.
struct List<'w, 'a> {
    w: &'w mut Counting<'a>,
    first: bool,
}

impl<'w, 'a> List<'w, 'a> {
    fn open(w: &'w mut Counting<'a>, key: &str) -> Result<Self> {
        write!(w, ",\n   \"{key}\": [\n")?;
        Ok(List { w, first: true })
    }
    fn item(&mut self, v: &impl Serialize) -> Result<()> {
        if !self.first {
            self.w.write_all(b",\n")?;
        }
        self.first = false;
        serde_json::to_writer_pretty(&mut *self.w, v)?;
        Ok(())
    }
    fn close(self) -> Result<()> {
        self.w.write_all(b"\n   ]")?;
        Ok(())
    }
}

fn open_section(w: &mut Counting<'_>, first: bool, message: &str) -> Result<()> {
    if !first {
        w.write_all(b",\n")?;
    }
    write!(w, "  {{\n   \"@type\": \"{ADMIN}{message}\"")?;
    Ok(())
}

fn close_section(w: &mut Counting<'_>) -> Result<()> {
    w.write_all(b"\n  }")?;
    Ok(())
}

fn write_sections(spec: &MeshSpec, certs: &Certificates, w: &mut Counting<'_>) -> Result<()> {
    w.write_all(b"{\n \"configs\": [\n")?;

    open_section(w, true, "BootstrapConfigDump")?;
    write!(w, ",\n   \"bootstrap\": ")?;
    serde_json::to_writer_pretty(&mut *w, &bootstrap())?;
    write!(w, ",\n   \"last_updated\": \"{UPDATED}\"")?;
    close_section(w)?;

    open_section(w, false, "ClustersConfigDump")?;
    write!(w, ",\n   \"version_info\": \"{VERSION}\"")?;
    let mut list = List::open(w, "static_clusters")?;
    for c in static_clusters() {
        list.item(&json!({"cluster": c, "last_updated": UPDATED}))?;
    }
    list.close()?;
    let mut list = List::open(w, "dynamic_active_clusters")?;
    for c in fixed_clusters() {
        list.item(&dynamic_cluster(c))?;
    }
    for svc in spec.services() {
        for subset in cluster_subsets(&svc) {
            list.item(&dynamic_cluster(outbound_cluster(spec, &svc, &subset)))?;
        }
    }
    list.close()?;
    close_section(w)?;

    open_section(w, false, "EndpointsConfigDump")?;
    let mut list = List::open(w, "dynamic_endpoint_configs")?;
    for svc in spec.services() {
        for subset in cluster_subsets(&svc) {
            list.item(&json!({"version_info": VERSION, "endpoint_config": load_assignment(&svc, &subset), "last_updated": UPDATED}))?;
        }
    }
    list.close()?;
    close_section(w)?;

    open_section(w, false, "ListenersConfigDump")?;
    write!(w, ",\n   \"version_info\": \"{VERSION}\"")?;
    let mut list = List::open(w, "static_listeners")?;
    for l in static_listeners() {
        list.item(&json!({"listener": l, "last_updated": UPDATED}))?;
    }
    list.close()?;
    let mut list = List::open(w, "dynamic_listeners")?;
    for l in [virtual_outbound(spec), virtual_inbound(spec)] {
        list.item(&dynamic_listener(l))?;
    }
    for port in spec.http_ports() {
        list.item(&dynamic_listener(http_listener(port)))?;
    }
    for svc in spec
        .services()
        .filter(|s| s.protocol == super::Protocol::Tcp)
    {
        list.item(&dynamic_listener(tcp_listener(&svc)))?;
    }
    list.close()?;
    close_section(w)?;

    open_section(w, false, "ScopedRoutesConfigDump")?;
    close_section(w)?;

    open_section(w, false, "RoutesConfigDump")?;
    let mut list = List::open(w, "static_route_configs")?;
    list.item(&json!({"route_config": {
        "@type": crate::xds::ROUTE, "virtual_hosts": [{"name": "backend", "domains": ["*"],
            "routes": [{"match": {"prefix": "/stats/prometheus"}, "route": {"cluster": "prometheus_stats"}}]}]},
        "last_updated": UPDATED}))?;
    list.close()?;
    let mut list = List::open(w, "dynamic_route_configs")?;
    for port in spec.http_ports() {
        list.item(&json!({"version_info": VERSION, "route_config": route_configuration(spec, port), "last_updated": UPDATED}))?;
    }
    list.close()?;
    close_section(w)?;

    open_section(w, false, "SecretsConfigDump")?;
    let mut list = List::open(w, "dynamic_active_secrets")?;
    for s in certs.secrets() {
        list.item(&s)?;
    }
    list.close()?;
    close_section(w)?;

    w.write_all(b"\n ]\n}\n")?;
    Ok(())
}

fn dynamic_cluster(c: Value) -> Value {
    json!({"version_info": VERSION, "cluster": c, "last_updated": UPDATED})
}

fn dynamic_listener(l: Value) -> Value {
    let name = l["name"].clone();
    json!({"name": name, "active_state": {"version_info": VERSION, "listener": l, "last_updated": UPDATED}})
}

fn bootstrap() -> Value {
    json!({
        "node": {
            "id": "sidecar~10.244.0.10~bench-5d8f7c9b6-x2x9k.ns-0~ns-0.svc.cluster.local",
            "cluster": "bench.ns-0",
            "metadata": {
                "APP_CONTAINERS": "bench",
                "CLUSTER_ID": "Kubernetes",
                "ENVOY_PROMETHEUS_PORT": 15090,
                "ENVOY_STATUS_PORT": 15021,
                "INSTANCE_IPS": "10.244.0.10",
                "INTERCEPTION_MODE": "REDIRECT",
                "ISTIO_PROXY_SHA": "2a9c1a6e0f3b",
                "ISTIO_VERSION": "1.24.2",
                "LABELS": {"app": "bench", "pod-template-hash": "5d8f7c9b6", "security.istio.io/tlsMode": "istio",
                           "service.istio.io/canonical-name": "bench", "service.istio.io/canonical-revision": "v1", "version": "v1"},
                "MESH_ID": "cluster.local",
                "NAME": "bench-5d8f7c9b6-x2x9k",
                "NAMESPACE": "ns-0",
                "NODE_NAME": "worker-1",
                "OWNER": "kubernetes://apis/apps/v1/namespaces/ns-0/deployments/bench",
                "PILOT_SAN": ["istiod.istio-system.svc"],
                "POD_PORTS": "[{\"name\":\"http\",\"containerPort\":8080,\"protocol\":\"TCP\"}]",
                "SERVICE_ACCOUNT": "bench",
                "WORKLOAD_NAME": "bench",
            },
            "locality": {"region": "us-east1", "zone": "us-east1-b"},
            "user_agent_name": "envoy",
            "user_agent_build_version": {
                "version": {"major_number": 1, "minor_number": 32, "patch": 3},
                "metadata": {"ssl.version": "BoringSSL", "revision.status": "Clean", "build.type": "RELEASE",
                             "revision.sha": "2a9c1a6e0f3b8c5d4e7f6a9b8c7d6e5f4a3b2c1d"},
            },
        },
        "static_resources": {"clusters": static_clusters(), "listeners": static_listeners()},
        "dynamic_resources": {
            "lds_config": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
            "cds_config": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
            "ads_config": {"api_type": "GRPC", "set_node_on_first_message_only": true, "transport_api_version": "V3",
                           "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}]},
        },
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 15000}},
                  "profile_path": "/var/lib/istio/data/envoy.prof"},
        "stats_config": {"use_all_default_tags": false, "stats_tags": [
            {"tag_name": "cluster_name", "regex": "^cluster\\.((.+?(\\..+?\\.svc\\.cluster\\.local)?)\\.)"},
            {"tag_name": "response_code", "regex": "_rq(_(\\d{3}))$"}]},
    })
}

fn static_clusters() -> Vec<Value> {
    let pipe = |name: &str, path: &str| {
        json!({"@type": CLUSTER, "name": name, "type": "STATIC", "connect_timeout": "1s",
               "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                   {"endpoint": {"address": {"pipe": {"path": path}}}}]}]},
               "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                   "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                   "explicit_http_config": {"http2_protocol_options": {}}}}})
    };
    let local = |name: &str, port: u16| {
        json!({"@type": CLUSTER, "name": name, "type": "STATIC", "connect_timeout": "0.250s",
               "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                   {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}})
    };
    vec![
        local("prometheus_stats", 15000),
        local("agent", 15020),
        pipe("sds-grpc", "./var/run/secrets/workload-spiffe-uds/socket"),
        pipe("xds-grpc", "./etc/istio/proxy/XDS"),
    ]
}

fn static_listeners() -> Vec<Value> {
    let listener = |port: u16, prefix: &str, cluster: &str| {
        json!({"@type": LISTENER, "address": {"socket_address": {"address": "0.0.0.0", "port_value": port}},
               "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                   "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                   "stat_prefix": "stats",
                   "route_config": {"virtual_hosts": [{"name": "backend", "domains": ["*"],
                       "routes": [{"match": {"prefix": prefix}, "route": {"cluster": cluster}}]}]},
                   "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                       "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]})
    };
    vec![
        listener(15090, "/stats/prometheus", "prometheus_stats"),
        listener(15021, "/healthz/ready", "agent"),
    ]
}

/// A CA (`ROOTCA`) and a workload certificate signed by it (`default`), as the agent serves them.
struct Certificates {
    root_pem: String,
    chain_pem: String,
}

impl Certificates {
    fn generate() -> Result<Certificates> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
        let ca_key = KeyPair::generate().context("generating the mesh CA key")?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::OrganizationName, "cluster.local");
        ca.not_before = rcgen::date_time_ymd(2024, 1, 1);
        ca.not_after = rcgen::date_time_ymd(2034, 1, 1);
        let root = ca
            .self_signed(&ca_key)
            .context("self-signing the mesh CA")?;
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().context("generating the workload key")?;
        let mut leaf = CertificateParams::new(Vec::<String>::new())?;
        leaf.subject_alt_names = vec![SanType::URI(
            "spiffe://cluster.local/ns/ns-0/sa/bench".try_into()?,
        )];
        leaf.not_before = rcgen::date_time_ymd(2024, 6, 20);
        leaf.not_after = rcgen::date_time_ymd(2034, 6, 21);
        let cert = leaf
            .signed_by(&key, &issuer)
            .context("signing the workload cert")?;
        Ok(Certificates {
            chain_pem: format!("{}{}", cert.pem(), root.pem()),
            root_pem: root.pem(),
        })
    }

    fn secrets(&self) -> Vec<Value> {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let secret = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
        vec![
            json!({"name": "default", "version_info": "2024-06-20 10:00:00.000000000 +0000 UTC m=+0.1", "last_updated": UPDATED,
                   "secret": {"@type": secret, "name": "default", "tls_certificate": {
                       "certificate_chain": {"inline_bytes": b64(&self.chain_pem)},
                       "private_key": {"inline_bytes": "W3JlZGFjdGVkXQ=="}}}}),
            json!({"name": "ROOTCA", "version_info": "2024-06-20 10:00:00.000000000 +0000 UTC m=+0.1", "last_updated": UPDATED,
                   "secret": {"@type": secret, "name": "ROOTCA", "validation_context": {
                       "trusted_ca": {"inline_bytes": b64(&self.root_pem)}}}}),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_is_json_with_every_section() {
        let mut buf = Vec::new();
        let n = write_config_dump(&MeshSpec::new(14), &mut buf).unwrap();
        assert_eq!(n as usize, buf.len());
        let v: Value = serde_json::from_slice(&buf).unwrap();
        let types: Vec<&str> = v["configs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["@type"].as_str().unwrap().rsplit('.').next().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "BootstrapConfigDump",
                "ClustersConfigDump",
                "EndpointsConfigDump",
                "ListenersConfigDump",
                "ScopedRoutesConfigDump",
                "RoutesConfigDump",
                "SecretsConfigDump"
            ]
        );
        // 4 fixed + 14 services + 2 subsets of each of the 7 even ones.
        assert_eq!(
            v["configs"][1]["dynamic_active_clusters"]
                .as_array()
                .unwrap()
                .len(),
            4 + 14 + 14
        );
        // virtualOutbound, virtualInbound, 5 HTTP ports, 4 TCP services.
        assert_eq!(
            v["configs"][3]["dynamic_listeners"]
                .as_array()
                .unwrap()
                .len(),
            2 + 5 + 4
        );
    }

    #[test]
    fn sizes_are_predicted() {
        let n = services_for_size(2_000_000).unwrap();
        let bytes = write_config_dump(&MeshSpec::new(n), &mut io::sink()).unwrap();
        assert!(
            (1_900_000..2_100_000).contains(&bytes),
            "{n} services: {bytes} bytes"
        );
    }
}
