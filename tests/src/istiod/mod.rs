//! sim-istiod's HTTP side: the debug endpoints (`/debug/syncz`, `/debug/config_dump?proxyID=`)
//! and the ControlZ JSON API (`/scopej/`), plus the `discovery` container's log file.
//!
//! One [`Istiod`] per istiod pod. It binds 127.0.0.1:0 listeners and reports them by pod port
//! ([`Istiod::addrs`]) so the world maps them with the apiserver's pod backends:
//! * 15014 (monitoring port) — debug HTTP; in the [`Flavour::Maistra14`] flavour (Istio 1.4
//!   pilot of Maistra 1.x) the same handler is also served on 8080, and syncz has the 1.4 shape;
//! * 9876 — ControlZ (`GET /scopej/`, `GET|PUT /scopej/<scope>`).
//!
//! What istiod knows about its proxies is set by the world or a test
//! ([`Istiod::set_proxy_status`], [`Istiod::set_proxy_config_dump`], [`Istiod::remove_proxy`]);
//! this module only serves it in istiod's wire formats (json tags of `SyncStatus` in
//! `pilot/pkg/xds/debug.go`, `pkg/ctrlz/topics/scopes.go`).

mod ctrlz;
mod debug;

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use anyhow::{Context as _, Result};
use serde_json::Value;

pub use ctrlz::{LEVELS, Scope};

/// The pod port of istiod's monitoring server, which carries `/debug/*`.
pub const MONITORING_PORT: u16 = 15014;
/// The HTTP port of the 1.4 pilot, which carries `/debug/*` too.
pub const HTTP_PORT: u16 = 8080;
/// The ControlZ port.
pub const CTRLZ_PORT: u16 = 9876;
/// The istiod container whose log the world serves.
pub const CONTAINER: &str = "discovery";

/// Which istiod this pretends to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavour {
    /// Current istiod: syncz with `cluster_id`, `proxy_type`, ECDS and `resources`.
    #[default]
    Modern,
    /// Istio 1.4 `istio-pilot` (Maistra 1.x): 1.4 syncz shape, debug also on 8080.
    Maistra14,
}

/// How to start one istiod.
#[derive(Debug, Clone)]
pub struct IstiodOptions {
    /// The pod name (also the `ID` istiod reports).
    pub pod_name: String,
    /// The pod namespace.
    pub namespace: String,
    /// `istio.io/rev` (`default` for none).
    pub revision: String,
    /// Wire formats and ports.
    pub flavour: Flavour,
    /// istiod's own version, for log lines.
    pub version: String,
    /// Where the `discovery` log file goes (a temporary directory if `None`).
    pub log_dir: Option<PathBuf>,
    /// `ENABLE_DEBUG_ON_HTTP`: when false, `/debug/*` answers a bare `404 page not found`.
    pub http_debug: bool,
}

impl Default for IstiodOptions {
    fn default() -> Self {
        Self {
            pod_name: "istiod-5d7c9b8f6-x2x7k".into(),
            namespace: "istio-system".into(),
            revision: "default".into(),
            flavour: Flavour::Modern,
            version: "1.24.2".into(),
            log_dir: None,
            http_debug: true,
        }
    }
}

/// One xDS type of one proxy, as istiod tracks it (`WatchedResource`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypeSync {
    /// Nonce of the last push ("" = nothing sent).
    pub sent: String,
    /// Nonce of the last ACK ("" = never acknowledged).
    pub acked: String,
    /// When the last push went out.
    pub sent_at: Option<SystemTime>,
    /// `error_detail.message` of the last NACK.
    pub last_error: Option<String>,
}

/// What istiod knows about one connected proxy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyStatus {
    /// `CLUSTER_ID` (e.g. `Kubernetes`).
    pub cluster_id: String,
    /// `sidecar`, `router`, `waypoint`, `ztunnel`.
    pub proxy_type: String,
    /// `ISTIO_VERSION` of the proxy.
    pub istio_version: String,
    /// Envoy's build version (the 1.4 fallback of VERSION).
    pub proxy_version: String,
    /// By type URL (see [`types`]).
    pub types: BTreeMap<String, TypeSync>,
}

/// Type URLs of the five types syncz reports.
pub mod types {
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    pub const EXTENSION_CONFIG: &str =
        "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
    /// CDS, LDS, RDS, EDS: what a sidecar watches.
    pub const SIDECAR: [&str; 4] = [CLUSTER, LISTENER, ROUTE, ENDPOINT];
}

impl ProxyStatus {
    /// A sidecar whose `watched` types were all pushed (nonce `nonce`) and acknowledged.
    pub fn synced(cluster_id: &str, istio_version: &str, watched: &[&str], nonce: &str) -> Self {
        let mut s = Self {
            cluster_id: cluster_id.into(),
            proxy_type: "sidecar".into(),
            istio_version: istio_version.into(),
            ..Default::default()
        };
        for t in watched {
            s.types.insert(
                (*t).to_string(),
                TypeSync {
                    sent: nonce.into(),
                    acked: nonce.into(),
                    sent_at: Some(SystemTime::now()),
                    last_error: None,
                },
            );
        }
        s
    }

    /// Set one type's nonces (and optionally a NACK error).
    pub fn with_type(
        mut self,
        type_url: &str,
        sent: &str,
        acked: &str,
        last_error: Option<&str>,
    ) -> Self {
        self.types.insert(
            type_url.to_string(),
            TypeSync {
                sent: sent.into(),
                acked: acked.into(),
                sent_at: (!sent.is_empty()).then(SystemTime::now),
                last_error: last_error.map(str::to_string),
            },
        );
        self
    }

    /// From the ADS server's view of a connection.
    pub fn from_xds(p: &crate::xds::ProxyStatus) -> Self {
        let mut s = Self {
            cluster_id: p.metadata("CLUSTER_ID").unwrap_or("Kubernetes").to_string(),
            // Istio node ids are `<type>~<ip>~<pod>.<ns>~<domain>`; this world uses `<pod>.<ns>`.
            proxy_type: match p.node_id.split_once('~') {
                Some((t, _)) => t.to_string(),
                None => "sidecar".to_string(),
            },
            istio_version: p.metadata("ISTIO_VERSION").unwrap_or_default().to_string(),
            proxy_version: p
                .node
                .get("user_agent_build_version")
                .and_then(|v| v.get("version"))
                .map(|v| {
                    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
                    format!("{}.{}.{}", n("major_number"), n("minor_number"), n("patch"))
                })
                .unwrap_or_default(),
            types: BTreeMap::new(),
        };
        for t in &p.types {
            s.types.insert(
                t.type_url.clone(),
                TypeSync {
                    sent: t.sent_nonce.clone().unwrap_or_default(),
                    acked: t.acked_nonce.clone().unwrap_or_default(),
                    sent_at: t.sent_at,
                    last_error: t.last_error.clone(),
                },
            );
        }
        s
    }
}

/// Everything the handlers read and the state API writes.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) opts: IstiodOptions,
    pub(crate) proxies: BTreeMap<String, ProxyStatus>,
    pub(crate) dumps: BTreeMap<String, Value>,
    pub(crate) scopes: BTreeMap<String, Scope>,
    pub(crate) log_path: PathBuf,
}

#[derive(Debug, Clone)]
pub(crate) struct Shared(Arc<Mutex<State>>);

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running sim-istiod (HTTP side). Dropping it stops the servers.
pub struct Istiod {
    shared: Shared,
    addrs: HashMap<u16, SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _tmp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Istiod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Istiod")
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

impl Istiod {
    /// Bind the listeners and serve them on a thread of their own.
    pub fn start(opts: IstiodOptions) -> Result<Istiod> {
        let (tmp, dir) = match &opts.log_dir {
            Some(d) => {
                std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
                (None, d.clone())
            }
            None => {
                let t = tempfile::tempdir().context("creating a log directory")?;
                let d = t.path().to_path_buf();
                (Some(t), d)
            }
        };
        let log_path = dir.join(format!(
            "{}_{}_discovery.log",
            opts.namespace, opts.pod_name
        ));
        std::fs::write(&log_path, "")
            .with_context(|| format!("creating {}", log_path.display()))?;

        let bind = || -> Result<std::net::TcpListener> {
            let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
            l.set_nonblocking(true)?;
            Ok(l)
        };
        let debug_l = bind()?;
        let http_l = match opts.flavour {
            Flavour::Maistra14 => Some(bind()?),
            Flavour::Modern => None,
        };
        let ctrlz_l = bind()?;
        let mut addrs = HashMap::new();
        addrs.insert(MONITORING_PORT, debug_l.local_addr()?);
        if let Some(l) = &http_l {
            addrs.insert(HTTP_PORT, l.local_addr()?);
        }
        addrs.insert(CTRLZ_PORT, ctrlz_l.local_addr()?);

        let shared = Shared(Arc::new(Mutex::new(State {
            scopes: ctrlz::default_scopes(opts.flavour),
            opts: opts.clone(),
            proxies: BTreeMap::new(),
            dumps: BTreeMap::new(),
            log_path,
        })));

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
        let srv = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("istiod-{}", opts.pod_name))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let mut listeners = vec![(debug_l, debug::router(srv.clone()))];
                    if let Some(l) = http_l {
                        listeners.push((l, debug::router(srv.clone())));
                    }
                    listeners.push((ctrlz_l, ctrlz::router(srv.clone())));
                    let mut tasks = Vec::new();
                    for (l, router) in listeners {
                        let l = match tokio::net::TcpListener::from_std(l) {
                            Ok(l) => l,
                            Err(e) => {
                                let _ = ready_tx.send(Err(e.into()));
                                return;
                            }
                        };
                        tasks.push(tokio::spawn(async move {
                            let _ = axum::serve(l, router).await;
                        }));
                    }
                    let _ = ready_tx.send(Ok(()));
                    let _ = stop_rx.await;
                    for t in tasks {
                        t.abort();
                    }
                });
            })
            .context("spawning the istiod thread")?;
        ready_rx.recv().context("istiod thread died")??;

        let istiod = Istiod {
            shared,
            addrs,
            stop: Some(stop_tx),
            thread: Some(thread),
            _tmp: tmp,
        };
        istiod.startup_log();
        Ok(istiod)
    }

    /// Which local address serves which pod port (15014, 9876, and 8080 for Maistra14).
    pub fn addrs(&self) -> HashMap<u16, SocketAddr> {
        self.addrs.clone()
    }

    /// The local address of one pod port.
    pub fn addr(&self, pod_port: u16) -> Option<SocketAddr> {
        self.addrs.get(&pod_port).copied()
    }

    /// The log file of container `discovery`.
    pub fn log_path(&self) -> PathBuf {
        self.shared.lock().log_path.clone()
    }

    /// The options it was started with.
    pub fn options(&self) -> IstiodOptions {
        self.shared.lock().opts.clone()
    }

    /// Record (or replace) a connected proxy's sync state; `proxy_id` is `<pod>.<namespace>`.
    pub fn set_proxy_status(&self, proxy_id: &str, status: ProxyStatus) {
        let new = {
            let mut st = self.shared.lock();
            st.proxies.insert(proxy_id.to_string(), status).is_none()
        };
        if new {
            self.log_line(
                "info",
                "ads",
                &format!("ADS: new connection for node:{proxy_id}-1"),
            );
        }
    }

    /// The config istiod would generate for this proxy (an admin `ConfigDump` JSON).
    pub fn set_proxy_config_dump(&self, proxy_id: &str, dump: Value) {
        self.shared.lock().dumps.insert(proxy_id.to_string(), dump);
    }

    /// The proxy disconnected: it leaves syncz and config_dump answers 404.
    pub fn remove_proxy(&self, proxy_id: &str) {
        let removed = {
            let mut st = self.shared.lock();
            st.dumps.remove(proxy_id);
            st.proxies.remove(proxy_id).is_some()
        };
        if removed {
            self.log_line("info", "ads", &format!("ADS: \"{proxy_id}-1\" terminated"));
        }
    }

    /// The proxies it holds, by id.
    pub fn proxies(&self) -> BTreeMap<String, ProxyStatus> {
        self.shared.lock().proxies.clone()
    }

    /// The ControlZ scopes as they are now, sorted by name.
    pub fn scopes(&self) -> Vec<Scope> {
        self.shared.lock().scopes.values().cloned().collect()
    }

    /// Append a pilot-style log line (`<time>\t<level>\t<scope>\t<msg>`) when the scope's
    /// output level lets it through (`default` scope lines carry no scope column).
    pub fn log_line(&self, level: &str, scope: &str, msg: &str) {
        let st = self.shared.lock();
        write_log(&st, level, scope, msg);
    }

    fn startup_log(&self) {
        let (version, rev, ns) = {
            let st = self.shared.lock();
            (
                st.opts.version.clone(),
                st.opts.revision.clone(),
                st.opts.namespace.clone(),
            )
        };
        self.log_line("info", "default", "FLAG: --domain=\"cluster.local\"");
        self.log_line("info", "default", &format!("FLAG: --revision=\"{rev}\""));
        self.log_line(
            "info",
            "default",
            &format!("initializing Istiod admin server, version {version}"),
        );
        self.log_line(
            "info",
            "default",
            &format!("Starting Istiod Server with primary cluster Kubernetes in namespace {ns}"),
        );
        self.log_line("info", "ads", "Starting ADS server");
    }
}

pub(crate) fn write_log(st: &State, level: &str, scope: &str, msg: &str) {
    if !ctrlz::enabled(&st.scopes, scope, level) {
        return;
    }
    let now = crate::xds::rfc3339(SystemTime::now());
    let line = if scope == "default" {
        format!("{now}\t{level}\t{msg}\n")
    } else {
        format!("{now}\t{level}\t{scope}\t{msg}\n")
    };
    if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&st.log_path) {
        let _ = f.write_all(line.as_bytes());
    }
}

impl Drop for Istiod {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
