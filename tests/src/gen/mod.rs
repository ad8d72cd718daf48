//! Generated Istio-like meshes of a given size, for benchmarks and load tests.
//!
//! - [`MeshSpec`]: N services across namespaces; half have a DestinationRule with subsets, a
//!   third a VirtualService; most are HTTP on a handful of shared ports, every fourth TCP.
//! - [`resources`]: the xDS resources one sidecar of that mesh holds (clusters with Istio's
//!   metadata and mTLS transport-socket matches, listeners, route configurations, cluster load
//!   assignments), each a valid Envoy v3 resource with its `@type`; [`resources::proxy_resources`]
//!   hands them to the ADS server ([`crate::xds::XdsServer::set_resources`]) so a real Envoy in
//!   the world holds a large config.
//! - [`dump`]: the same resources as a sidecar's `GET /config_dump?include_eds` (bootstrap,
//!   clusters, endpoints, listeners, routes, secrets), streamed to a writer;
//!   [`dump::services_for_size`] picks N for a target file size.
//! - [`envoy`]: a real Envoy holding such a config, pushed by the istiod stand-in over ADS.
//! - [`syncz`]: istiod's answers about N proxies spread over R replicas, as the HTTP
//!   `/debug/syncz` array or the xDS `istio.io/debug/syncz` `DiscoveryResponse`.
//!
//! Everything is a pure function of the spec (the certificates of the secrets section aside), so
//! two runs give the same bytes.

pub mod dump;
pub mod envoy;
pub mod resources;
pub mod syncz;

/// The mesh to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshSpec {
    /// How many services (each becomes 1 + subsets clusters, a virtual host or a TCP listener,
    /// and its endpoints).
    pub services: usize,
    /// Namespaces the services are spread over (`ns-0`, `ns-1`, ...).
    pub namespaces: usize,
    /// Subsets of each service that has a DestinationRule (`v1`, `v2`, ...).
    pub subsets: usize,
    /// Endpoints (pods) of each service.
    pub endpoints: usize,
    /// Whether the virtual listeners bind their ports (15001, 15006) as in a pod; `false` to
    /// load the config into an Envoy that shares the host with others (nothing binds).
    pub bind_ports: bool,
}

impl MeshSpec {
    /// A mesh of `services` services with the default shape: 2 subsets, 3 endpoints each, one
    /// namespace per 50 services.
    pub fn new(services: usize) -> MeshSpec {
        MeshSpec {
            services,
            namespaces: services.div_ceil(50).max(1),
            subsets: 2,
            endpoints: 3,
            bind_ports: true,
        }
    }

    /// The `i`-th service.
    pub fn service(&self, i: usize) -> Service {
        let namespace = format!("ns-{}", i % self.namespaces.max(1));
        let (protocol, port) = PORTS[i % PORTS.len()];
        Service {
            index: i,
            name: format!("{}-{i}", NAMES[i % NAMES.len()]),
            namespace,
            port,
            protocol,
            cluster_ip: format!("10.{}.{}.{}", 96 + (i >> 16) % 64, (i >> 8) & 255, i & 255),
            subsets: if i.is_multiple_of(2) { self.subsets } else { 0 },
            virtual_service: i.is_multiple_of(3),
            endpoints: self.endpoints.max(1),
        }
    }

    /// Every service, in order.
    pub fn services(&self) -> impl Iterator<Item = Service> + '_ {
        (0..self.services).map(|i| self.service(i))
    }

    /// The distinct ports of the HTTP services, sorted (one outbound listener and one route
    /// configuration each).
    pub fn http_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = PORTS
            .iter()
            .take(self.services.min(PORTS.len()))
            .filter(|(p, _)| *p != Protocol::Tcp)
            .map(|(_, port)| *port)
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

/// What a service speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Grpc,
    Tcp,
}

/// One generated service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub index: usize,
    pub name: String,
    pub namespace: String,
    pub port: u16,
    pub protocol: Protocol,
    pub cluster_ip: String,
    /// 0 = no DestinationRule; else subsets `v1`..`vN`.
    pub subsets: usize,
    /// Routed by a VirtualService.
    pub virtual_service: bool,
    /// How many endpoints (pods).
    pub endpoints: usize,
}

impl Service {
    /// `name.namespace.svc.cluster.local`.
    pub fn fqdn(&self) -> String {
        format!("{}.{}.svc.cluster.local", self.name, self.namespace)
    }

    /// Istio's cluster name: `outbound|port|subset|fqdn`.
    pub fn cluster_name(&self, subset: &str) -> String {
        format!("outbound|{}|{subset}|{}", self.port, self.fqdn())
    }

    /// The subset names (`v1`, `v2`, ...).
    pub fn subset_names(&self) -> Vec<String> {
        (1..=self.subsets).map(|s| format!("v{s}")).collect()
    }

    /// The IP of its `e`-th endpoint.
    pub fn endpoint_ip(&self, e: usize) -> String {
        let n = self.index * 16 + e;
        format!("172.{}.{}.{}", 16 + (n >> 16) % 16, (n >> 8) & 255, n & 255)
    }
}

/// The protocol and port of service `i` go round this list: five HTTP-ish services for two TCP.
const PORTS: &[(Protocol, u16)] = &[
    (Protocol::Http, 8080),
    (Protocol::Http, 9080),
    (Protocol::Tcp, 3306),
    (Protocol::Http, 80),
    (Protocol::Grpc, 9090),
    (Protocol::Http, 8000),
    (Protocol::Tcp, 6379),
];

const NAMES: &[&str] = &[
    "reviews",
    "ratings",
    "details",
    "payments",
    "catalog",
    "search",
    "checkout",
    "inventory",
    "shipping",
    "users",
    "orders",
    "cart",
    "frontend",
    "auth",
    "billing",
    "media",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_are_spread_and_shaped() {
        let spec = MeshSpec::new(120);
        assert_eq!(spec.namespaces, 3);
        let s = spec.service(7);
        assert_eq!(s.name, "inventory-7");
        assert_eq!(s.namespace, "ns-1");
        assert_eq!(
            s.cluster_name(""),
            "outbound|8080||inventory-7.ns-1.svc.cluster.local"
        );
        assert_eq!(s.subsets, 0);
        assert_eq!(spec.service(2).protocol, Protocol::Tcp);
        assert_eq!(spec.service(0).subset_names(), ["v1", "v2"]);
        assert_eq!(spec.http_ports(), [80, 8000, 8080, 9080, 9090]);
        assert_eq!(MeshSpec::new(2).http_ports(), [8080, 9080]);
        let ips: std::collections::BTreeSet<String> =
            spec.services().map(|s| s.cluster_ip).collect();
        assert_eq!(ips.len(), 120);
    }
}
