//! The xDS control plane of sim-istiod: a real gRPC ADS server (state of the world,
//! `envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources`, plaintext
//! HTTP/2) that pushes clusters, listeners, route configurations and cluster load assignments
//! to real Envoy sidecars, and tracks per proxy and type what istiod's `/debug/syncz` reports:
//! last sent nonce and version, last acked nonce, the last NACK's error, the send time.
//! It listens twice on the same state: [`XdsServer::addr`] plaintext (istiod's 15010) and
//! [`XdsServer::tls_addr`] TLS with a bearer token required (15012). Either answers istiod's
//! debug request `istio.io/debug/syncz` (istioctl ≥ 1.22 `ps`) with one
//! `envoy.service.status.v3.ClientConfig` per connected proxy (status rules of
//! [`TypeStatus::config_status`]).
//!
//! Resources are Envoy v3 JSON (snake_case, `@type` on every `Any`), e.g. what
//! [`crate::sidecar::resources`] generates. They are validated and encoded when set, against
//! the Envoy API descriptors in [`descriptor`]; an unknown field or `@type` is an error naming
//! the resource and the field path.
//!
//! Protocol (as istiod): CDS and LDS are wildcard, RDS and EDS send the requested names. A
//! request without a nonce subscribes and is answered at once; one with the nonce of the last
//! response is an ACK (or a NACK when it has `error_detail`), after which changed resources are
//! pushed; one with an older nonce is ignored. Every push has a new version
//! (`<RFC 3339 time>/<n>`) and a UUID-shaped nonce. A proxy whose resources were never set
//! gets nothing (it waits).
//!
//! Envoy side: [`ads_bootstrap_fragment`] gives the bootstrap parts that point a sidecar here;
//! RDS in an HCM is `"rds": {"config_source": {"ads": {}, "resource_api_version": "V3"},
//! "route_config_name": N}`, an EDS cluster `"type": "EDS", "eds_cluster_config":
//! {"eds_config": {"ads": {}, "resource_api_version": "V3"}}`. Note: a held RDS or EDS type
//! keeps the listener or cluster warming; with `initial_fetch_timeout: "0s"` Envoy then never
//! becomes ready, so give held config sources a finite one.

mod codec;
pub mod descriptor;
mod grpc;
mod invalid;
mod proto;
mod server;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result, bail};
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use codec::{Encoded, encode, to_json, to_protobuf};
pub use server::{CLIENT_CONFIG, SYNCZ, rfc3339};

pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// The four types, in the order istiod lists them in syncz (`cluster`, `listener`, `route`,
/// `endpoint`).
pub const TYPES: &[&str] = &[CLUSTER, LISTENER, ROUTE, ENDPOINT];

/// The desired xDS resources of one proxy, Envoy v3 JSON with `@type`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyResources {
    pub clusters: Vec<Value>,
    pub listeners: Vec<Value>,
    pub routes: Vec<Value>,
    pub endpoints: Vec<Value>,
}

impl ProxyResources {
    pub fn by_type(&self, type_url: &str) -> &[Value] {
        match type_url {
            CLUSTER => &self.clusters,
            LISTENER => &self.listeners,
            ROUTE => &self.routes,
            ENDPOINT => &self.endpoints,
            _ => &[],
        }
    }
}

impl From<crate::sidecar::EnvoyResources> for ProxyResources {
    fn from(r: crate::sidecar::EnvoyResources) -> Self {
        ProxyResources {
            clusters: r.clusters,
            listeners: r.listeners,
            routes: r.routes,
            endpoints: r.endpoints,
        }
    }
}

/// istiod's per-type sync state (`pilot/pkg/xds/statusgen.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConfigStatus {
    Synced,
    NotSent,
    Stale,
    Error,
}

impl ConfigStatus {
    /// The `ClientConfig` enum name: `SYNCED`, `NOT_SENT`, `STALE`, `ERROR`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigStatus::Synced => "SYNCED",
            ConfigStatus::NotSent => "NOT_SENT",
            ConfigStatus::Stale => "STALE",
            ConfigStatus::Error => "ERROR",
        }
    }
}

/// What one connected proxy watches of one type, and what happened to it.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeStatus {
    pub type_url: String,
    /// Names of the last request (empty for the wildcard CDS and LDS).
    pub resource_names: Vec<String>,
    pub sent_nonce: Option<String>,
    pub sent_version: Option<String>,
    pub sent_at: Option<SystemTime>,
    /// Names of the resources in the last response.
    pub sent_names: Vec<String>,
    pub acked_nonce: Option<String>,
    /// `version_info` of the last ACK.
    pub acked_version: Option<String>,
    pub acked_at: Option<SystemTime>,
    /// `error_detail.message` of the last NACK; cleared by the next ACK.
    pub last_error: Option<String>,
    pub last_error_at: Option<SystemTime>,
    /// [`XdsServer::hold_type`] is in force.
    pub held: bool,
    /// [`XdsServer::push_invalid`] is in force.
    pub invalid: bool,
}

impl TypeStatus {
    /// istiod ≥ 1.23: a NACK error → ERROR, nothing sent → NOT_SENT, acked == sent → SYNCED,
    /// else STALE. (Before 1.23 there was no ERROR: map it to STALE.)
    pub fn config_status(&self) -> ConfigStatus {
        if self.last_error.is_some() {
            ConfigStatus::Error
        } else if self.sent_nonce.is_none() {
            ConfigStatus::NotSent
        } else if self.acked_nonce == self.sent_nonce {
            ConfigStatus::Synced
        } else {
            ConfigStatus::Stale
        }
    }
}

/// One connected proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyStatus {
    /// `node.id` (`<pod>.<namespace>` in this world).
    pub node_id: String,
    /// The whole `envoy.config.core.v3.Node` of the stream's first request, as JSON with proto
    /// field names (`metadata`, `user_agent_build_version`, ...).
    pub node: Value,
    /// Numbers the streams of this server; a reconnect gets a new one.
    pub stream: u64,
    pub connected_at: SystemTime,
    /// Watched types, sorted by type URL.
    pub types: Vec<TypeStatus>,
}

impl ProxyStatus {
    /// A string of the node metadata (`CLUSTER_ID`, `ISTIO_VERSION`, `NAMESPACE`, ...).
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.node.get("metadata")?.get(key)?.as_str()
    }

    pub fn type_status(&self, type_url: &str) -> Option<&TypeStatus> {
        self.types.iter().find(|t| t.type_url == type_url)
    }

    /// Every type in `types` is watched and SYNCED.
    pub fn synced(&self, types: &[&str]) -> bool {
        types.iter().all(|t| {
            self.type_status(t)
                .is_some_and(|s| s.config_status() == ConfigStatus::Synced)
        })
    }
}

/// Options of [`XdsServer::start_with`].
#[derive(Debug, Clone)]
pub struct XdsOptions {
    pub bind: SocketAddr,
    /// `DiscoveryResponse.control_plane.identifier`; istiod sends
    /// `{"Component":"istiod","ID":"<pod>","Info":{...}}`.
    pub control_plane_id: String,
}

impl Default for XdsOptions {
    fn default() -> Self {
        XdsOptions {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            control_plane_id:
                r#"{"Component":"istiod","ID":"istiod-meshsim","Info":{"version":"meshsim"}}"#
                    .to_owned(),
        }
    }
}

/// The ADS server; stops (ending every stream) on drop.
pub struct XdsServer {
    shared: Arc<server::Shared>,
    addr: SocketAddr,
    tls_addr: SocketAddr,
    task: JoinHandle<()>,
    tls_task: JoinHandle<()>,
}

impl std::fmt::Debug for XdsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdsServer")
            .field("addr", &self.addr)
            .field("tls_addr", &self.tls_addr)
            .finish_non_exhaustive()
    }
}

impl XdsServer {
    /// Listens on 127.0.0.1 on a free port.
    pub async fn start() -> Result<XdsServer> {
        XdsServer::start_with(XdsOptions::default()).await
    }

    pub async fn start_with(opts: XdsOptions) -> Result<XdsServer> {
        let listener = TcpListener::bind(opts.bind)
            .await
            .with_context(|| format!("binding the xDS server to {}", opts.bind))?;
        let addr = listener.local_addr()?;
        let tls_bind = SocketAddr::new(opts.bind.ip(), 0);
        let tls_listener = TcpListener::bind(tls_bind)
            .await
            .with_context(|| format!("binding the xDS TLS server to {tls_bind}"))?;
        let tls_addr = tls_listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(tls_config()?);
        let shared = Arc::new(server::Shared::new(opts.control_plane_id));
        let task = tokio::spawn(grpc::serve(listener, shared.clone(), None));
        let tls_task = tokio::spawn(grpc::serve(tls_listener, shared.clone(), Some(acceptor)));
        Ok(XdsServer {
            shared,
            addr,
            tls_addr,
            task,
            tls_task,
        })
    }

    /// The plaintext ADS port (istiod's 15010; what the sidecars of this world use).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The TLS ADS port (istiod's 15012): a self-signed certificate for
    /// `istiod.istio-system.svc`, ALPN h2, and every stream needs `authorization: Bearer <any
    /// non-empty token>` (else gRPC UNAUTHENTICATED). Same state as [`XdsServer::addr`].
    pub fn tls_addr(&self) -> SocketAddr {
        self.tls_addr
    }

    /// Sets the desired resources of a proxy, validating and encoding them first (nothing
    /// changes on error); pushes every watched type whose resources changed, each with a new
    /// version and nonce.
    pub fn set_resources(&self, node_id: &str, res: ProxyResources) -> Result<()> {
        self.shared.set_resources(node_id, res)
    }

    /// istiod's view of a proxy's config (for `/debug/config_dump?proxyID=`): the desired
    /// resources, with the invalid variant in place where [`XdsServer::push_invalid`] pushed one.
    pub fn resources(&self, node_id: &str) -> Option<ProxyResources> {
        self.shared.resources(node_id)
    }

    /// Every connected proxy, sorted by node id.
    pub fn status(&self) -> Vec<ProxyStatus> {
        self.shared.status()
    }

    /// Bumps on every change of [`XdsServer::status`] (connect, request, push, ACK, NACK, knob).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.subscribe()
    }

    /// Waits until `f` returns Some for the current status, re-checking on every change.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&[ProxyStatus]) -> Option<T>,
    ) -> Result<T> {
        let mut rx = self.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            let status = self.status();
            if let Some(t) = f(&status) {
                return Ok(t);
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                bail!(
                    "xDS status did not reach the expected state within {timeout:?}; status: {status:#?}"
                );
            }
        }
    }

    /// Waits until `node_id` is connected and all `types` are SYNCED; returns its status.
    pub async fn wait_synced(
        &self,
        node_id: &str,
        types: &[&str],
        timeout: Duration,
    ) -> Result<ProxyStatus> {
        self.wait_for(timeout, |s| {
            s.iter()
                .find(|p| p.node_id == node_id && p.synced(types))
                .cloned()
        })
        .await
    }

    /// Never send this type to this proxy (istiod's NOT_SENT) until [`XdsServer::release_type`].
    pub fn hold_type(&self, node_id: &str, type_url: &str) {
        self.shared.hold_type(node_id, type_url, true);
    }

    /// Undoes [`XdsServer::hold_type`] and sends what is due.
    pub fn release_type(&self, node_id: &str, type_url: &str) {
        self.shared.hold_type(node_id, type_url, false);
    }

    /// From now on, pushes of this type to this proxy carry a config Envoy rejects (see
    /// `make_invalid` in server.rs): pushed at once if the proxy already accepted this type,
    /// else right after its first ACK, so the proxy keeps the previous config and the type
    /// shows the NACK's error (STALE, or ERROR for istiod ≥ 1.23). Lasts until
    /// [`XdsServer::clear_invalid`]; RDS/EDS need at least one subscribed resource.
    pub fn push_invalid(&self, node_id: &str, type_url: &str) {
        self.shared.set_invalid(node_id, type_url, true);
    }

    /// Undoes [`XdsServer::push_invalid`] and pushes the valid config again.
    pub fn clear_invalid(&self, node_id: &str, type_url: &str) {
        self.shared.set_invalid(node_id, type_url, false);
    }

    /// Ends the proxy's stream with gRPC status UNAVAILABLE; Envoy reconnects after its
    /// backoff (see [`ads_bootstrap_fragment`]) and is served afresh.
    pub fn disconnect(&self, node_id: &str) {
        self.shared.disconnect(node_id);
    }
}

impl Drop for XdsServer {
    fn drop(&mut self) {
        self.shared.shutdown();
        self.task.abort();
        self.tls_task.abort();
    }
}

/// The rustls config of the TLS port and its certificate, made once per process: a
/// self-signed certificate for `istiod.istio-system.svc` and `localhost` (istioctl does not
/// verify it), ALPN h2.
fn tls_identity() -> Result<(Arc<rustls::ServerConfig>, CertificateDer<'static>)> {
    static IDENTITY: OnceLock<
        Result<(Arc<rustls::ServerConfig>, CertificateDer<'static>), String>,
    > = OnceLock::new();
    IDENTITY
        .get_or_init(|| make_tls_identity().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!("xDS TLS config: {e}"))
}

fn tls_config() -> Result<Arc<rustls::ServerConfig>> {
    Ok(tls_identity()?.0)
}

fn make_tls_identity() -> Result<(Arc<rustls::ServerConfig>, CertificateDer<'static>)> {
    let names = ["istiod.istio-system.svc", "istiod", "localhost"].map(str::to_owned);
    let cert = rcgen::generate_simple_self_signed(names.to_vec())
        .context("generating the istiod certificate")?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        cert.signing_key.serialize_der(),
    ));
    let der = cert.cert.der().clone();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("rustls protocol versions")?
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .context("rustls server config")?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok((Arc::new(config), der))
}

/// The static cluster `xds-grpc` (HTTP/2 cleartext to `addr`) Envoy reaches the server with.
pub fn xds_grpc_cluster(addr: SocketAddr) -> Value {
    json!({
        "name": "xds-grpc",
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": "xds-grpc",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": addr.ip().to_string(), "port_value": addr.port()}}}}]}],
        },
    })
}

/// Bootstrap parts that make Envoy take CDS and LDS (and through them RDS and EDS) from the
/// server at `addr` over ADS: `dynamic_resources` and `static_resources.clusters: [xds-grpc]`.
/// Merge into the bootstrap (append `xds-grpc` to existing static clusters). The stream is
/// re-established 0.1–1 s after it breaks (Envoy's default is 0.5–30 s).
pub fn ads_bootstrap_fragment(addr: SocketAddr) -> Value {
    json!({
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {
                    "cluster_name": "xds-grpc",
                    "retry_policy": {"retry_back_off": {"base_interval": "0.1s", "max_interval": "1s"}},
                }}],
                "set_node_on_first_message_only": true,
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {"clusters": [xds_grpc_cluster(addr)]},
    })
}
