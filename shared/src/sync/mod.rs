//! `mesh-sync`: is every proxy in sync with istiod, and what differs.
//!
//! Sources: istiod's HTTP `/debug/syncz` through a port-forward to each replica (15014, else
//! 8080; when HTTP debug is off, the xDS `istio.io/debug/syncz` request on 15012), or saved
//! answers (`-f`: the HTTP array or the xDS `DiscoveryResponse`). `model` types both shapes,
//! `status` turns nonces / config statuses into states, `view` merges the replicas into sorted
//! rows, `diff` compares istiod's config for one proxy with the proxy's own `/config_dump`,
//! `fetch` talks to the istiod pods, `xds` speaks the gRPC debug request and `command` ties it
//! together.

pub mod command;
pub mod diff;
pub mod fetch;
pub mod model;
pub mod status;
pub mod view;
pub mod xds;

use std::path::PathBuf;

pub use command::{Options, run};
pub use status::{ProxyStatus, SyncState, TypeStatus};

use crate::error::Hint;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A saved file (or a fetched answer) is not valid JSON.
    #[error(transparent)]
    Input(#[from] crate::input::Error),
    /// A saved file is neither JSON nor the YAML of a syncz `DiscoveryResponse`.
    #[error("{} is not a syncz answer (neither JSON nor YAML of an xDS DiscoveryResponse; at line {line}, column {column}, byte {offset})", path.display())]
    Yaml {
        /// Which file.
        path: PathBuf,
        /// 1-based line of the error (0 when unknown).
        line: usize,
        /// 1-based column.
        column: usize,
        /// 0-based byte offset.
        offset: usize,
        /// Why.
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// A config_dump section has an unexpected shape.
    #[error("the {section} section of {source_name} has an unexpected shape")]
    Section {
        /// The file or the endpoint the dump came from.
        source_name: String,
        /// e.g. `ClustersConfigDump`.
        section: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// Listing the istiod pods failed.
    #[error("cannot look for istiod pods {scope}")]
    ListIstiod {
        /// Where we looked.
        scope: String,
        /// Why.
        #[source]
        source: Box<crate::cluster::Error>,
    },
    /// No Running istiod/pilot pod matched.
    #[error("no running istiod found {scope}")]
    NoIstiod {
        /// Where and with which labels we looked.
        scope: String,
    },
    /// A debug endpoint of one istiod replica failed on every port tried.
    #[error("GET {path} on istiod {istiod} failed (tried port {ports})")]
    Debug {
        /// `namespace/pod`.
        istiod: String,
        /// The debug path.
        path: String,
        /// The ports tried, e.g. `15014, 8080`.
        ports: String,
        /// The most telling failure.
        #[source]
        source: Box<crate::admin::Error>,
    },
    /// The token for istiod's xDS debug request could not be issued.
    #[error("cannot get a token for serviceaccount {namespace}/default (audience istio-ca)")]
    XdsToken {
        /// The istio namespace.
        namespace: String,
        /// Why.
        #[source]
        source: Box<crate::cluster::Error>,
    },
    /// The xDS debug request to one istiod replica failed.
    #[error("xDS debug request to istiod {istiod} (port 15012) failed")]
    Xds {
        /// `namespace/pod`.
        istiod: String,
        /// Why.
        #[source]
        source: xds::Failure,
    },
    /// The port-forward for the xDS debug request failed.
    #[error("port-forward to istiod {istiod} port 15012 failed")]
    XdsForward {
        /// `namespace/pod`.
        istiod: String,
        /// Why.
        #[source]
        source: Box<crate::cluster::Error>,
    },
    /// No istiod replica holds the proxy's connection.
    #[error("proxy {proxy} is not connected to any of the {replicas} istiod replica(s) asked")]
    NotConnected {
        /// `<pod>.<namespace>`.
        proxy: String,
        /// How many replicas answered 404.
        replicas: usize,
    },
    /// The proxy's own config_dump could not be read.
    #[error("cannot get the config_dump of {target}")]
    ProxyDump {
        /// `pod ns/name` or the admin URL.
        target: String,
        /// Why.
        #[source]
        source: Box<crate::admin::Error>,
    },
    /// A comparison with istiod's side but no proxy side.
    #[error("nothing to compare istiod's config with")]
    NoProxySide,
    /// A comparison with a proxy side but no way to ask istiod.
    #[error("cannot ask istiod for a proxy without its pod name")]
    NoProxyId,
}

impl Hint for Error {
    fn hint(&self) -> Option<String> {
        match self {
            Error::Input(crate::input::Error::Parse { what, .. }) if what.contains("syncz") => Some(
                "is the file complete? save istiod's answer again, e.g. kubectl port-forward -n \
                 istio-system <istiod pod> 15014, then curl localhost:15014/debug/syncz > istiod-x.json"
                    .into(),
            ),
            Error::Input(e) => e.hint(),
            Error::Yaml { .. } => Some(
                "save the answer as JSON: curl istiod:15014/debug/syncz, or istioctl ps -o json"
                    .into(),
            ),
            Error::Section { .. } => {
                Some("is it a /config_dump of Envoy or istiod? save it again".into())
            }
            Error::ListIstiod { source, .. } => source.hint().or_else(|| {
                Some("name the control-plane namespace with -i/--istio-namespace".into())
            }),
            Error::NoIstiod { .. } => Some(
                "is istiod running? name its namespace with -i (and --revision for a canary); \
                 saved answers can be read with -f"
                    .into(),
            ),
            Error::Debug { source, .. } => match source.as_ref() {
                crate::admin::Error::Status { status: 404, .. } => Some(
                    "istiod's HTTP debug endpoints look disabled (ENABLE_DEBUG_ON_HTTP=false); \
                     sync status then comes over xDS, but a comparison needs \
                     /debug/config_dump: compare saved dumps with --istiod-file/--proxy-file"
                        .into(),
                ),
                crate::admin::Error::Status {
                    status: 401 | 403, ..
                } => Some(
                    "istiod refused the debug request: it only serves port-forwarded (localhost) \
                     or authenticated callers"
                        .into(),
                ),
                crate::admin::Error::Forward { source, .. } => source.hint(),
                _ => Some(
                    "is the istiod pod ready? check kubectl get pods -n <istio namespace>".into(),
                ),
            },
            Error::XdsToken { source, .. } => source.hint().or_else(|| {
                Some("istiod's HTTP debug endpoints are off; the xDS path needs 'create' on serviceaccounts/token in the istio namespace".into())
            }),
            Error::Xds { source, .. } => match source {
                xds::Failure::Grpc { code: 16 | 7, .. } => Some(
                    "istiod refused the debug request: the token's identity must be allowed to debug (root namespace, or DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES)".into(),
                ),
                _ => Some("istiod's HTTP debug endpoints are off and the xDS debug request failed; save `istioctl ps -o json` and read it with -f".into()),
            },
            Error::XdsForward { source, .. } => source.hint(),
            Error::NotConnected { .. } => Some(
                "is the sidecar running and connected? list what istiod knows with \
                 `kubectl mesh-sync -A`; with --revision the proxy may be on another revision"
                    .into(),
            ),
            Error::ProxyDump { source, .. } => source.hint(),
            Error::NoProxySide => Some(
                "name the pod (kubectl mesh-sync POD --istiod-file F) or pass --proxy-file".into(),
            ),
            Error::NoProxyId => Some(
                "name the pod (kubectl mesh-sync POD --proxy-file F) or pass --istiod-file".into(),
            ),
        }
    }
}
