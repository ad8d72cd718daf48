//! A fake kube-apiserver that speaks the real protocol: HTTPS with its own CA, bearer-token
//! auth, legacy discovery, a generic object store with the real verbs and `Status` errors,
//! server-side Tables for kubectl, and the pod subresources `log`, `exec` and `portforward`
//! (websocket, as kube-rs 5 speaks them; see shared/PROTOCOL.md). Fault knobs let tests make it
//! misbehave the way real clusters do.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use meshsim::apiserver::{ApiServer, ApiServerOptions};
//! let api = ApiServer::start(ApiServerOptions::default()).await?;
//! api.store().apply(serde_json::json!({
//!     "apiVersion": "v1", "kind": "Pod",
//!     "metadata": {"name": "p", "namespace": "demo"},
//!     "spec": {"containers": [{"name": "app"}]},
//!     "status": {"phase": "Running"}
//! }))?;
//! api.write_kubeconfig(std::path::Path::new("/tmp/kubeconfig"), "demo")?;
//! # Ok(()) }
//! ```

mod clock;
mod discovery;
mod exec;
mod faults;
mod kubeconfig;
mod logs;
mod patch;
mod portforward;
mod protobuf;
mod registry;
mod rest;
mod selector;
mod status;
mod store;
mod table;
mod tls;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

pub use faults::{Faults, PodBackend};
pub use kubeconfig::CONTEXT;
pub use registry::ResourceType;
pub use status::USER;
pub use store::{Store, StoreEvent, StoreOp};

use faults::Backends;
use status::{ApiError, json_response};

/// How to start the fake apiserver.
#[derive(Debug, Clone)]
pub struct ApiServerOptions {
    /// The bearer token clients must send.
    pub token: String,
}

impl Default for ApiServerOptions {
    fn default() -> Self {
        ApiServerOptions {
            token: "meshsim-token".into(),
        }
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// The raw query string (without `?`), e.g. `&labelSelector=app%3Dx`.
    pub query: String,
    /// The HTTP status answered (101 for websocket upgrades).
    pub status: u16,
}

impl RequestRecord {
    /// POST, PUT, PATCH or DELETE that was not a dry run (exec/portforward upgrades are GETs).
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE") && !self.is_dry_run()
    }

    /// The request carried `dryRun=All`.
    pub fn is_dry_run(&self) -> bool {
        form_urlencoded::parse(self.query.as_bytes()).any(|(k, v)| k == "dryRun" && v == "All")
    }
}

pub(crate) struct Shared {
    token: String,
    addr: SocketAddr,
    pub(crate) store: Store,
    pub(crate) faults: Faults,
    pub(crate) backends: Backends,
    log: Mutex<Vec<RequestRecord>>,
    pub(crate) shutdown: watch::Sender<bool>,
}

/// The running fake apiserver. Dropping it stops the server, its connections and its streams.
pub struct ApiServer {
    shared: Arc<Shared>,
    ca_pem: String,
    accept_task: JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.accept_task.abort();
        let _ = self.shared.shutdown.send(true);
    }
}

impl ApiServer {
    /// Bind 127.0.0.1:0 with a fresh CA and serve.
    pub async fn start(opts: ApiServerOptions) -> anyhow::Result<ApiServer> {
        // In-process kube clients need a process-wide provider; ours is passed explicitly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let pki = tls::generate()?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the fake apiserver")?;
        let addr = listener.local_addr()?;
        let backends = Backends::default();
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            token: opts.token,
            addr,
            store: Store::new(),
            faults: Faults::new(backends.clone()),
            backends,
            log: Mutex::new(Vec::new()),
            shutdown,
        });
        let router = Router::new().fallback(handle).with_state(shared.clone());
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config);
        let accept_task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    res = listener.accept() => {
                        let Ok((tcp, _)) = res else {
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                            continue;
                        };
                        let acceptor = acceptor.clone();
                        let svc = TowerToHyperService::new(router.clone());
                        conns.spawn(async move {
                            let _ = tcp.set_nodelay(true);
                            let tls = match tokio::time::timeout(
                                std::time::Duration::from_secs(10),
                                acceptor.accept(tcp),
                            )
                            .await
                            {
                                Ok(Ok(t)) => t,
                                _ => return,
                            };
                            let _ = hyper::server::conn::http1::Builder::new()
                                .timer(TokioTimer::new())
                                .serve_connection(TokioIo::new(tls), svc)
                                .with_upgrades()
                                .await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Ok(ApiServer {
            shared,
            ca_pem: pki.ca_pem,
            accept_task,
        })
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("https://{}", self.shared.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The CA certificate (PEM) that signed the server certificate.
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    pub fn token(&self) -> String {
        self.shared.token.clone()
    }

    /// A kubeconfig with one cluster, one token user and one context named `meshsim`
    /// (current-context) whose default namespace is `namespace`.
    pub fn kubeconfig_yaml(&self, namespace: &str) -> String {
        kubeconfig::render(
            &self.url(),
            &self.ca_pem,
            &self.shared.token,
            USER,
            namespace,
        )
    }

    pub fn write_kubeconfig(&self, path: &std::path::Path, namespace: &str) -> anyhow::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml(namespace))
            .with_context(|| format!("writing kubeconfig {}", path.display()))
    }

    pub fn store(&self) -> Store {
        self.shared.store.clone()
    }

    pub fn faults(&self) -> Faults {
        self.shared.faults.clone()
    }

    /// Wire a pod to local addresses (port-forward, exec emulation) and log files.
    pub fn set_pod_backend(&self, namespace: &str, pod: &str, backend: PodBackend) {
        self.shared.backends.set(namespace, pod, backend);
    }

    /// Every request answered so far (method, path, query, status), in completion order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn clear_requests(&self) {
        self.shared
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t.trim() == token)
}

async fn handle(State(sh): State<Arc<Shared>>, req: Request) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let resp = route(&sh, req, &path, &query).await;
    let record = RequestRecord {
        method,
        path,
        query,
        status: resp.status().as_u16(),
    };
    sh.log
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(record);
    resp
}

async fn route(sh: &Arc<Shared>, req: Request, path: &str, query: &str) -> Response {
    if matches!(path, "/healthz" | "/livez" | "/readyz") {
        return "ok".into_response();
    }
    if !authorized(req.headers(), &sh.token) {
        return ApiError::unauthorized().into_response();
    }
    let delay = sh.faults.latency_for(path);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some((code, retry_after)) = sh.faults.take_failure(req.method().as_str(), path) {
        let mut e = ApiError::injected(code);
        if retry_after.is_some() {
            e.retry_after = retry_after;
        }
        return e.into_response();
    }
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let types = || sh.store.types();
    let found = |v: Option<serde_json::Value>| match v {
        Some(v) => json_response(200, &v),
        None => ApiError::path_not_found().into_response(),
    };
    match segs.as_slice() {
        ["openapi", "v3"] => json_response(200, &discovery::openapi_v3_root(&types())),
        ["openapi", "v3", "api", v] => found(discovery::openapi_v3_gv(&types(), "", v)),
        ["openapi", "v3", "apis", g, v] => found(discovery::openapi_v3_gv(&types(), g, v)),
        ["version"] => json_response(200, &discovery::version()),
        ["api"] => json_response(200, &discovery::api_versions(sh.addr)),
        ["apis"] => json_response(200, &discovery::api_group_list(&types())),
        ["api", v] => found(discovery::resource_list(&types(), "", v)),
        ["apis", g] => found(discovery::api_group(&types(), g)),
        ["apis", g, v] => found(discovery::resource_list(&types(), g, v)),
        ["api", v, rest @ ..] => rest::serve(sh, req, "", v, rest, query).await,
        ["apis", g, v, rest @ ..] => rest::serve(sh, req, g, v, rest, query).await,
        _ => ApiError::path_not_found().into_response(),
    }
}
