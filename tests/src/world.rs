//! A whole simulated cluster started from a [`Scenario`]: the fake apiserver with every
//! Kubernetes and Istio object, an app server per application container, a real Envoy per
//! injected pod (and gateway), and a kubeconfig.
//!
//! The world runs on its own Tokio runtime (two worker threads), so a test may block (for
//! example `std::process::Command::output()` on `kubectl`) without starving the apiserver or the
//! apps. Dropping the world (or a panic unwinding through it) kills every Envoy, waits for them
//! to be reaped, stops the servers and removes the temp dir. Each Envoy also dies on its own if
//! this process is killed (see [`crate::envoy`]).
//!
//! What is simulated how:
//! * application pods: an [`AppServer`] per pod; injected ones (`injected: true, envoy: true`)
//!   get a real Envoy, node id `sidecar~<podIP>~<pod>.<ns>~<ns>.svc.cluster.local` as
//!   pilot-agent sets it, whose bootstrap has only admin, the Prometheus listener and
//!   `xds-grpc`: clusters, listeners, routes and endpoints ([`crate::sidecar::resources`]) come
//!   over real ADS from the istiod replica it is assigned to ([`crate::control_plane`]), so
//!   config_dump shows dynamic resources as a real sidecar's ([`WorldOptions::xds_mode`]
//!   [`XdsMode::Static`] puts them in the bootstrap instead: faster, nothing pushed);
//!   `envoy: false` pods exist in the apiserver with an `istio-proxy` container but no process
//!   (their admin port is not wired, so a port-forward to it fails like a dead pod's);
//! * gateways (`role: gateway`): a real Envoy with node type `router` and the outbound clusters,
//!   no listeners besides `0.0.0.0_15090`;
//! * istiod pods (`role: control-plane` with a `discovery` container, e.g. `istio-pilot` of
//!   Maistra 1.x or `istiod`): an ADS server on pod ports 15010/15012, the istiod stand-in's
//!   debug HTTP (`/debug/syncz`, `/debug/config_dump?proxyID=`) on 15014 (and 8080), ControlZ
//!   on 9876, and the `discovery` log with what istiod logs (JWKS fetch failures in the
//!   flavour's words); syncz mirrors the ADS server. istiod fetches jwksUris itself, trusting
//!   `/cacerts/extra.pem` of its Deployment, and reacts to policy and Deployment changes in the
//!   apiserver (see [`crate::control_plane`]). Scenario knobs: `replicas`, `down`, `revision`,
//!   and on proxy workloads `istiod`, `nack`, `hold`;
//! * a JWKS server ([`JwksServer`], HTTPS with a private CA istiod does not trust) when the
//!   scenario has `jwks_server:`; issuers/jwksUris under its `origin` point at it;
//! * outbound endpoints are the destination pods' real app addresses (127.0.0.1:port), so a
//!   mesh call goes app → own sidecar (outbound) → destination app; the fake pod IPs (10.128.x.y)
//!   appear in the apiserver objects and node metadata only;
//! * each Envoy has a loopback address of its own (a free 127.a.b.0/24 block per world, see
//!   `assign_listen_ips`) on which its listeners bind their real ports, as in a pod's network
//!   namespace: 15006, 15001, 15090, the HTTP service ports; TCP services are
//!   `<cluster IP>:<port>` listeners that are not bound, as Istio writes them.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow};
use futures::StreamExt as _;
use serde_json::{Value, json};

use crate::apiserver::{ApiServer, ApiServerOptions, PodBackend};
use crate::app::{AppServer, Upstream, rfc3339};
use crate::control_plane::{ControlPlane, ControlPlaneConfig, Replica};
use crate::istiod::Istiod;
use crate::jwks_server::{JwksServer, JwksServerOptions};
use crate::scenario::{PodPlan, ProxyKind, Role, Scenario, Topology, uid_for};
use crate::sidecar::{Bootstrap, EnvoyResources, Sidecar, XdsMode};
use crate::xds::{ProxyResources, XdsServer};

/// istiod's JWKS resolver as the world sees it: `Ok(jwks)` or `Err(error text)`.
pub type JwksResolver = Arc<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

/// Knobs for [`World::start_with`].
pub struct WorldOptions {
    pub apiserver: ApiServerOptions,
    /// How the sidecars get their resources (default: over ADS from the world's istiod).
    pub xds_mode: XdsMode,
    /// Start real Envoys at all (false: every pod is `envoy: false`).
    pub envoys: bool,
    /// How long one Envoy may take to become ready.
    pub envoy_timeout: Duration,
    /// Replaces istiod's HTTPS fetch of jwksUris (a failure is still logged by istiod).
    pub resolve_jwks: Option<JwksResolver>,
    /// Keep the temp dir after the world is gone (also with env `MESHSIM_KEEP=1`).
    pub keep_temp_dir: bool,
}

impl Default for WorldOptions {
    fn default() -> Self {
        WorldOptions {
            apiserver: ApiServerOptions::default(),
            xds_mode: XdsMode::default(),
            envoys: true,
            envoy_timeout: Duration::from_secs(30),
            resolve_jwks: None,
            keep_temp_dir: std::env::var_os("MESHSIM_KEEP").is_some_and(|v| v == "1"),
        }
    }
}

/// One pod of the world and where its parts really are.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub name: String,
    pub namespace: String,
    /// `app` label.
    pub app_label: String,
    pub labels: BTreeMap<String, String>,
    /// Fake `status.podIP`.
    pub ip: String,
    /// `<pod>.<namespace>`, the id istiod / proxy-status use.
    pub proxy_id: String,
    /// Envoy node id (`sidecar~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`), if it has a proxy.
    pub node_id: Option<String>,
    /// The application server (None for gateways and control-plane pods).
    pub app: Option<SocketAddr>,
    /// Envoy admin (None without a real Envoy); the apiserver maps the pod's admin port to it.
    pub admin: Option<SocketAddr>,
    /// The pod's proxy admin port (`proxyAdminPort`, default 15000).
    pub admin_port: u16,
    /// Envoy's inbound listener: requests sent here go through the sidecar to the app.
    pub inbound: Option<SocketAddr>,
    /// Every bound Envoy listener by name (`virtualInbound`, `virtualOutbound`, `0.0.0.0_8080`,
    /// `0.0.0.0_15090`, ...).
    pub listeners: BTreeMap<String, SocketAddr>,
    /// The `istio-proxy` container's log (Envoy's stdout+stderr), if the pod has one.
    pub log_path: Option<PathBuf>,
    /// The application container's log.
    pub app_log: Option<PathBuf>,
    /// Every container's log file by container name.
    pub logs: BTreeMap<String, PathBuf>,
    /// The istiod pod its proxy is connected to (None: static config, or no proxy).
    pub istiod: Option<String>,
    /// The pod's directory (bootstrap `envoy-rev0.json`, `xds/` files).
    pub dir: PathBuf,
    pub envoy_pid: Option<u32>,
}

/// A running simulated cluster. See the module docs.
pub struct World {
    scenario: Scenario,
    topology: Topology,
    pods: Vec<PodInfo>,
    kubeconfig: PathBuf,
    xds_mode: XdsMode,
    sidecars: Vec<Sidecar>,
    apps: Vec<AppServer>,
    control_plane: Option<ControlPlane>,
    jwks: Option<JwksServer>,
    apiserver: Option<ApiServer>,
    runtime: Option<tokio::runtime::Runtime>,
    temp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("scenario", &self.scenario.name)
            .field("pods", &self.pods.len())
            .finish()
    }
}

struct Parts {
    pods: Vec<PodInfo>,
    sidecars: Vec<Sidecar>,
    apps: Vec<AppServer>,
    control_plane: ControlPlane,
    apiserver: ApiServer,
    kubeconfig: PathBuf,
}

impl World {
    /// Starts a built-in scenario (`seed`, `minimal`, `scale`) or a scenario file.
    pub async fn start(scenario: &str) -> Result<World> {
        World::start_with(Scenario::load(scenario)?, WorldOptions::default()).await
    }

    /// [`World::start`] for synchronous callers (e.g. a plain `#[test]` using `assert_cmd`).
    /// Must not be called from inside an async runtime.
    pub fn start_blocking(scenario: &str) -> Result<World> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(World::start(scenario))
    }

    pub async fn start_with(mut scenario: Scenario, opts: WorldOptions) -> Result<World> {
        let mut topology = scenario.topology()?;
        if !opts.envoys {
            for p in &mut topology.pods {
                p.real_envoy = false;
            }
        }
        assign_listen_ips(&mut topology.pods);
        let jwks = match &scenario.jwks_server {
            Some(spec) => {
                let server = JwksServer::start(JwksServerOptions {
                    realm: spec.realm.clone(),
                    ..JwksServerOptions::default()
                })
                .context("starting the JWKS server")?;
                if let Some(origin) = &spec.origin {
                    for o in &mut scenario.objects {
                        replace_origin(o, origin, server.base_url());
                    }
                }
                Some(server)
            }
            None => None,
        };
        let temp = tempfile::Builder::new()
            .prefix(&format!("meshsim-{}-", scenario.name))
            .tempdir()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("meshsim-world")
            .enable_all()
            .build()?;
        let (xds_mode, keep) = (opts.xds_mode, opts.keep_temp_dir);
        let build = {
            let scenario = scenario.clone();
            let topology = topology.clone();
            let root = temp.path().to_path_buf();
            runtime.spawn(async move { build(scenario, topology, root, opts).await })
        };
        let parts = match build.await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                runtime.shutdown_background();
                return Err(e);
            }
            Err(e) => {
                runtime.shutdown_background();
                return Err(anyhow!("world start-up task failed: {e}"));
            }
        };
        let temp = if keep {
            let _ = temp.keep();
            None
        } else {
            Some(temp)
        };
        Ok(World {
            scenario,
            topology,
            pods: parts.pods,
            kubeconfig: parts.kubeconfig,
            xds_mode,
            sidecars: parts.sidecars,
            apps: parts.apps,
            control_plane: Some(parts.control_plane),
            jwks,
            apiserver: Some(parts.apiserver),
            runtime: Some(runtime),
            temp,
        })
    }

    /// The kubeconfig (in the world's temp dir); its context namespace is the scenario's
    /// main namespace.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn apiserver(&self) -> &ApiServer {
        self.apiserver
            .as_ref()
            .expect("apiserver lives as long as the world")
    }

    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// A pod by exact name, else the first (by name) whose name starts with `prefix_or_name`.
    pub fn pod(&self, namespace: &str, prefix_or_name: &str) -> Option<PodInfo> {
        let in_ns = || self.pods.iter().filter(|p| p.namespace == namespace);
        in_ns()
            .find(|p| p.name == prefix_or_name)
            .or_else(|| {
                in_ns()
                    .filter(|p| p.name.starts_with(prefix_or_name))
                    .min_by(|a, b| a.name.cmp(&b.name))
            })
            .cloned()
    }

    pub fn pods(&self) -> Vec<PodInfo> {
        self.pods.clone()
    }

    /// The world's temp dir (per-pod dirs under `pods/<ns>/<pod>/`, the kubeconfig).
    pub fn temp_dir(&self) -> &Path {
        self.kubeconfig.parent().unwrap_or(Path::new("/"))
    }

    /// Pids of every process the world started (Envoys and their watchdog shells).
    pub fn pids(&self) -> Vec<u32> {
        self.sidecars
            .iter()
            .flat_map(|s| s.process.pids())
            .collect()
    }

    /// Pids of the Envoy processes only.
    pub fn envoy_pids(&self) -> Vec<u32> {
        self.sidecars
            .iter()
            .map(|s| s.process.envoy_pid())
            .collect()
    }

    /// A handle to the world's own runtime (where the apiserver and apps run).
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("runtime lives as long as the world")
            .handle()
            .clone()
    }

    /// The xDS resources the control plane last generated for a pod with a real Envoy (exact
    /// name or prefix): what its istiod wants it to have.
    pub fn envoy_resources(&self, namespace: &str, pod: &str) -> Result<EnvoyResources> {
        let name = self.pod_name(namespace, pod)?;
        self.control_plane()
            .generated(namespace, &name)
            .with_context(|| format!("no proxy with a real Envoy {namespace}/{pod}"))
    }

    /// The control plane: every istiod replica, assignment, istiod's view, regeneration.
    pub fn control_plane(&self) -> &ControlPlane {
        self.control_plane
            .as_ref()
            .expect("the control plane lives as long as the world")
    }

    /// The istiod replica of a pod: the istiod pod itself, or the one a proxy pod is connected
    /// to. `pod` is an exact name or a prefix (see [`World::pod`]).
    pub fn replica_for(&self, namespace: &str, pod: &str) -> Option<&Replica> {
        let name = self.pod(namespace, pod)?.name;
        self.control_plane().replica_of(namespace, &name)
    }

    /// The ADS server of an istiod pod, or of the istiod a proxy pod is connected to: tests use
    /// its knobs (`push_invalid`, `clear_invalid`, `hold_type`, `disconnect`, `wait_for`).
    pub fn xds_for(&self, namespace: &str, pod: &str) -> Option<&XdsServer> {
        self.replica_for(namespace, pod).and_then(Replica::xds)
    }

    /// The istiod stand-in (debug HTTP, ControlZ, log) of an istiod pod or of a proxy's istiod.
    pub fn istiod_for(&self, namespace: &str, pod: &str) -> Option<&Istiod> {
        self.replica_for(namespace, pod).and_then(Replica::istiod)
    }

    /// The Envoy node id of a proxy pod (`sidecar~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`).
    pub fn node_id(&self, namespace: &str, pod: &str) -> Option<String> {
        self.pod(namespace, pod)?.node_id
    }

    /// Makes istiod's view of a proxy (`/debug/config_dump?proxyID=`) `res` without pushing it,
    /// so istiod and the Envoy disagree.
    pub fn set_istiod_view(&self, namespace: &str, pod: &str, res: ProxyResources) -> Result<()> {
        let name = self.pod_name(namespace, pod)?;
        self.control_plane().set_istiod_view(namespace, &name, res)
    }

    /// Undoes [`World::set_istiod_view`].
    pub fn clear_istiod_view(&self, namespace: &str, pod: &str) -> Result<()> {
        let name = self.pod_name(namespace, pod)?;
        self.control_plane().clear_istiod_view(namespace, &name)
    }

    fn pod_name(&self, namespace: &str, pod: &str) -> Result<String> {
        self.pod(namespace, pod)
            .map(|p| p.name)
            .with_context(|| format!("no pod {namespace}/{pod}*"))
    }

    /// The world's JWKS server (scenario `jwks_server:`): mint tokens, rotate keys, faults.
    pub fn jwks(&self) -> Option<&JwksServer> {
        self.jwks.as_ref()
    }

    /// Waits until every proxy connected to an istiod has settled (SYNCED, or NOT SENT / NACKed
    /// as its knobs say) and the stand-ins' syncz shows it. [`World::start`] already did once.
    pub async fn wait_synced(&self, timeout: Duration) -> Result<()> {
        let cp = self.control_plane().clone();
        self.handle()
            .spawn(async move { cp.wait_settled(timeout).await })
            .await?
    }

    /// Regenerates every proxy's config from the Istio objects in the apiserver and pushes what
    /// changed (the control plane does this by itself on every change; this waits for it).
    pub async fn regenerate(&self) -> Result<()> {
        let cp = self.control_plane().clone();
        self.handle()
            .spawn(async move { cp.regenerate().await })
            .await?
    }

    /// istiod forgets the JWKS it fetched (as its periodic refresh), fetches again, pushes.
    pub async fn refresh_jwks(&self) -> Result<()> {
        let cp = self.control_plane().clone();
        self.handle()
            .spawn(async move { cp.refresh_jwks().await })
            .await?
    }

    /// `GET path` through a pod's sidecar inbound listener (so Envoy's JWT and RBAC filters
    /// apply), with `Authorization: Bearer <token>` if given: (status, body).
    pub async fn request(
        &self,
        namespace: &str,
        pod: &str,
        path: &str,
        token: Option<&str>,
    ) -> Result<(u16, String)> {
        let p = self
            .pod(namespace, pod)
            .with_context(|| format!("no pod {namespace}/{pod}*"))?;
        let inbound = p
            .inbound
            .with_context(|| format!("pod {namespace}/{} has no inbound listener", p.name))?;
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        crate::envoy::http_request(inbound, "GET", path, &headers, None).await
    }

    /// How the sidecars were configured.
    pub fn xds_mode(&self) -> XdsMode {
        self.xds_mode
    }

    /// Stops everything (the same as dropping the world).
    pub async fn stop(self) {
        drop(self);
    }

    fn shutdown(&mut self) {
        for s in &mut self.sidecars {
            s.process.kill();
        }
        self.sidecars.clear();
        self.apps.clear();
        if let Some(rt) = self.runtime.take() {
            // Drop the control plane and the apiserver inside their runtime's context, then stop
            // the runtime without blocking (this may run inside another runtime).
            let cp = self.control_plane.take();
            let api = self.apiserver.take();
            let guard = rt.enter();
            if let Some(cp) = &cp {
                cp.stop();
            }
            drop(cp);
            drop(api);
            drop(guard);
            rt.shutdown_background();
        }
        self.jwks = None;
        self.temp = None;
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn build(
    scenario: Scenario,
    topology: Topology,
    root: PathBuf,
    opts: WorldOptions,
) -> Result<Parts> {
    let apiserver = ApiServer::start(opts.apiserver)
        .await
        .context("starting the fake apiserver")?;
    let created = rfc3339(SystemTime::now() - Duration::from_secs(600));

    // 1. pod directories and app servers
    let mut apps = Vec::new();
    let mut app_addrs: HashMap<(String, String), SocketAddr> = HashMap::new();
    let mut vias: HashMap<(String, String), Arc<Mutex<Option<SocketAddr>>>> = HashMap::new();
    let mut logs: HashMap<(String, String), BTreeMap<String, PathBuf>> = HashMap::new();
    for p in &topology.pods {
        let key = (p.namespace.clone(), p.name.clone());
        let dir = pod_dir(&root, p);
        std::fs::create_dir_all(&dir)?;
        let mut pod_logs = BTreeMap::new();
        match p.role {
            Role::App => {
                let log = dir.join(format!("{}.log", p.app));
                let w = &scenario.workloads[p.workload];
                let up = w.calls.clone().map(|host| {
                    let via = Arc::new(Mutex::new(None));
                    vias.insert(key.clone(), via.clone());
                    Upstream { host, via }
                });
                let a = AppServer::start(&p.app, p.version.as_deref(), &p.name, up, &log).await?;
                app_addrs.insert(key.clone(), a.addr());
                apps.push(a);
                pod_logs.insert(p.app.clone(), log);
            }
            Role::Gateway => {}
            Role::ControlPlane => {
                // a running istiod's `discovery` log is the stand-in's (added below)
                let w = &scenario.workloads[p.workload];
                let running_istiod = scenario.is_istiod(p.workload) && !w.down.is_down(p.replica);
                for c in &w.containers {
                    if running_istiod && c.name == crate::istiod::CONTAINER {
                        continue;
                    }
                    let log = dir.join(format!("{}.log", c.name));
                    std::fs::write(&log, control_plane_log(&scenario, &c.name, &created))?;
                    pod_logs.insert(c.name.clone(), log);
                }
            }
        }
        if p.proxy.is_some() && p.role != Role::ControlPlane {
            let log = dir.join("istio-proxy.log");
            if !p.real_envoy || !opts.envoys {
                std::fs::write(
                    &log,
                    format!(
                        "{created} info\tmeshsim: no Envoy process for this pod (envoy: false)\n"
                    ),
                )?;
            }
            pod_logs.insert("istio-proxy".to_owned(), log);
        }
        logs.insert(key, pod_logs);
    }

    // 2. Kubernetes objects
    let store = apiserver.store();
    for obj in objects(&scenario, &topology, &created) {
        let what = format!(
            "{} {}",
            obj["kind"].as_str().unwrap_or("?"),
            obj.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("?")
        );
        store
            .apply(obj)
            .with_context(|| format!("storing {what}"))?;
    }

    // 3. the control plane: istiod replicas, the proxies' config (JWKS fetched by istiod)
    let control_plane = ControlPlane::start(ControlPlaneConfig {
        scenario: scenario.clone(),
        topology: topology.clone(),
        app_addrs: app_addrs.clone(),
        store: store.clone(),
        root: root.clone(),
        mode: opts.xds_mode,
        resolve_override: opts.resolve_jwks.clone(),
    })
    .await
    .context("starting the control plane")?;

    // 4. Envoys, a few at a time
    let (xds_mode, envoy_timeout) = (opts.xds_mode, opts.envoy_timeout);
    let mut starts = Vec::new();
    for p in &topology.pods {
        if !p.real_envoy {
            continue;
        }
        let dir = pod_dir(&root, p);
        let log = dir.join("istio-proxy.log");
        let ads = control_plane
            .replica_of(&p.namespace, &p.name)
            .and_then(Replica::xds)
            .filter(|_| xds_mode == XdsMode::Ads)
            .map(XdsServer::addr);
        let holds = &scenario.workloads[p.workload].hold;
        let res = control_plane
            .generated(&p.namespace, &p.name)
            .with_context(|| format!("no config generated for {}/{}", p.namespace, p.name))?;
        let (scenario, topology) = (&scenario, &topology);
        starts.push(async move {
            let _ = topology;
            let config = match ads {
                Some(addr) => Bootstrap::Ads {
                    addr,
                    initial_fetch_timeout: holds
                        .iter()
                        .any(|t| t == "CDS" || t == "LDS")
                        .then(|| "1s".to_owned()),
                },
                None if xds_mode == XdsMode::Files => Bootstrap::Resources(&res, XdsMode::Files),
                None => Bootstrap::Resources(&res, XdsMode::Static),
            };
            let sc = Sidecar::start_with(&dir, scenario, p, &config, &log, envoy_timeout).await;
            ((p.namespace.clone(), p.name.clone()), sc)
        });
    }
    let results: Vec<_> = futures::stream::iter(starts)
        .buffer_unordered(4)
        .collect()
        .await;
    let mut sidecars: HashMap<(String, String), Sidecar> = HashMap::new();
    let mut first_err = None;
    for (k, r) in results {
        match r {
            Ok(s) => {
                sidecars.insert(k, s);
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    control_plane
        .wait_settled(envoy_timeout)
        .await
        .context("waiting for the proxies to sync with istiod")?;

    // 5. upstream routes of the apps, pod backends, PodInfos
    let mut pods = Vec::new();
    for p in &topology.pods {
        let key = (p.namespace.clone(), p.name.clone());
        let sc = sidecars.get(&key);
        if let Some(via) = vias.get(&key) {
            let host = scenario.workloads[p.workload]
                .calls
                .clone()
                .unwrap_or_default();
            let port: u16 = host
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse().ok())
                .unwrap_or(80);
            let target = match sc {
                Some(sc) => sc.outbound(port),
                None => direct_endpoint(&topology, p, &host, &app_addrs),
            };
            *via.lock().map_err(|_| anyhow!("poisoned"))? = target;
        }
        let mut backend = PodBackend::default();
        if let Some(a) = app_addrs.get(&key) {
            backend.ports.insert(p.port, *a);
        }
        if let Some(sc) = sc {
            backend.ports.insert(p.admin_port, sc.admin);
            for (port, listener) in [
                (15090, "0.0.0.0_15090"),
                (15001, "virtualOutbound"),
                (15006, "virtualInbound"),
            ] {
                if let Some(a) = sc.listeners.get(listener) {
                    backend.ports.insert(port, *a);
                }
            }
        }
        let mut pod_logs = logs.remove(&key).unwrap_or_default();
        let replica = control_plane.replica_of(&p.namespace, &p.name);
        if p.role == Role::ControlPlane
            && let Some(r) = replica
        {
            backend.ports.extend(r.ports());
            if let Some(log) = r.log_path() {
                pod_logs.insert(crate::istiod::CONTAINER.to_owned(), log);
            }
        }
        backend.logs = pod_logs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        apiserver.set_pod_backend(&p.namespace, &p.name, backend);
        pods.push(PodInfo {
            name: p.name.clone(),
            namespace: p.namespace.clone(),
            app_label: p.app.clone(),
            labels: p.labels.clone(),
            ip: p.ip.clone(),
            proxy_id: p.proxy_id(),
            node_id: p.node_id(),
            app: app_addrs.get(&key).copied(),
            admin: sc.map(|s| s.admin),
            admin_port: p.admin_port,
            inbound: sc.and_then(Sidecar::inbound),
            listeners: sc.map(|s| s.listeners.clone()).unwrap_or_default(),
            log_path: pod_logs.get("istio-proxy").cloned(),
            app_log: pod_logs
                .get(&p.app)
                .filter(|_| p.role == Role::App)
                .cloned(),
            logs: pod_logs,
            istiod: replica
                .filter(|_| p.role != Role::ControlPlane && sc.is_some())
                .filter(|r| xds_mode == XdsMode::Ads && !r.is_down())
                .map(|r| r.pod().to_owned()),
            dir: pod_dir(&root, p),
            envoy_pid: sc.map(|s| s.process.envoy_pid()),
        });
    }
    let kubeconfig = root.join("kubeconfig");
    apiserver.write_kubeconfig(&kubeconfig, &scenario.main_namespace)?;
    let mut sidecars: Vec<Sidecar> = sidecars.into_values().collect();
    sidecars.sort_by_key(|s| s.process.envoy_pid());
    Ok(Parts {
        pods,
        sidecars,
        apps,
        control_plane,
        apiserver,
        kubeconfig,
    })
}

fn pod_dir(root: &Path, p: &PodPlan) -> PathBuf {
    root.join("pods").join(&p.namespace).join(&p.name)
}

/// For a pod without a running sidecar: the first endpoint of the service it calls.
fn direct_endpoint(
    topology: &Topology,
    pod: &PodPlan,
    host: &str,
    apps: &HashMap<(String, String), SocketAddr>,
) -> Option<SocketAddr> {
    let name = host.split([':', '.']).next()?;
    let ns = host
        .split(':')
        .next()?
        .split('.')
        .nth(1)
        .unwrap_or(&pod.namespace);
    let svc = topology
        .services
        .iter()
        .find(|s| s.name == name && s.namespace == ns)?;
    topology
        .pods
        .iter()
        .filter(|p| p.namespace == svc.namespace && p.matches(&svc.selector))
        .find_map(|p| apps.get(&(p.namespace.clone(), p.name.clone())).copied())
}

/// The first lines of a control-plane container's log file (a running istiod's `discovery`
/// log is the stand-in's own, see [`crate::istiod`]).
fn control_plane_log(scenario: &Scenario, container: &str, created: &str) -> String {
    let ts = created.replace('Z', ".000000Z");
    if container != "discovery" {
        return String::new();
    }
    format!(
        "{ts}\tinfo\tmeshsim: simulated {} discovery, version {}\n",
        scenario.istio.flavour, scenario.istio.version
    )
}

/// Replaces `origin` at the start of every string in `v` by `by`.
fn replace_origin(v: &mut Value, origin: &str, by: &str) {
    match v {
        Value::String(s) => {
            if let Some(rest) = s.strip_prefix(origin)
                && (rest.is_empty() || rest.starts_with('/') || origin.ends_with('/'))
            {
                *s = format!("{by}{rest}");
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| replace_origin(x, origin, by)),
        Value::Object(o) => o.values_mut().for_each(|x| replace_origin(x, origin, by)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Kubernetes objects

fn objects(scenario: &Scenario, topology: &Topology, created: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut namespaces: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for n in &scenario.namespaces {
        namespaces
            .entry(n.name.clone())
            .or_default()
            .extend(n.labels.clone());
    }
    for ns in topology
        .pods
        .iter()
        .map(|p| &p.namespace)
        .chain(topology.services.iter().map(|s| &s.namespace))
    {
        namespaces.entry(ns.clone()).or_default();
    }
    for (name, labels) in &namespaces {
        let mut labels = labels.clone();
        labels.insert("kubernetes.io/metadata.name".into(), name.clone());
        out.push(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "uid": uid_for(&format!("ns/{name}")), "labels": labels, "creationTimestamp": created},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }));
    }
    out.push(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "worker-0", "uid": uid_for("node/worker-0"), "labels": {"kubernetes.io/hostname": "worker-0", "node-role.kubernetes.io/worker": ""}, "creationTimestamp": created},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.11"}], "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}], "nodeInfo": {"kubeletVersion": "v1.32.4", "containerRuntimeVersion": "cri-o://1.32.4"}},
    }));
    let mut sas: BTreeMap<(String, String), ()> = namespaces
        .keys()
        .map(|n| ((n.clone(), "default".to_owned()), ()))
        .collect();
    for p in &topology.pods {
        sas.insert((p.namespace.clone(), p.service_account.clone()), ());
    }
    for (ns, name) in sas.keys() {
        out.push(json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": ns, "uid": uid_for(&format!("sa/{ns}/{name}")), "creationTimestamp": created},
        }));
    }
    // deployments and replica sets (one per workload)
    for (wi, w) in scenario.workloads.iter().enumerate() {
        let pods: Vec<&PodPlan> = topology.pods.iter().filter(|p| p.workload == wi).collect();
        let Some(first) = pods.first() else { continue };
        let n = pods.len();
        let mut selector = BTreeMap::from([("app".to_owned(), first.app.clone())]);
        if let Some(v) = &first.version {
            selector.insert("version".into(), v.clone());
        }
        for (k, v) in &w.labels {
            selector.insert(k.clone(), v.clone());
        }
        let mut template_labels = first.labels.clone();
        template_labels.remove("pod-template-hash");
        template_labels.remove("security.istio.io/tlsMode");
        let mut template_annotations = w.annotations.clone();
        if first.proxy == Some(ProxyKind::Sidecar) {
            template_annotations.insert("sidecar.istio.io/inject".into(), "true".into());
        }
        let template_spec = json!({
            "serviceAccountName": first.service_account,
            "containers": workload_containers(scenario, first),
        });
        let dep_uid = uid_for(&format!("deploy/{}/{}", w.namespace, w.name));
        out.push(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": w.name, "namespace": w.namespace, "uid": dep_uid, "labels": selector, "creationTimestamp": created, "generation": 1,
                         "annotations": {"deployment.kubernetes.io/revision": "1"}},
            "spec": {
                "replicas": n, "selector": {"matchLabels": selector},
                "template": {"metadata": {"labels": template_labels, "annotations": template_annotations}, "spec": template_spec},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
            },
            "status": {
                "observedGeneration": 1, "replicas": n, "updatedReplicas": n, "readyReplicas": n, "availableReplicas": n,
                "conditions": [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability.", "lastUpdateTime": created, "lastTransitionTime": created},
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": format!("ReplicaSet \"{}\" has successfully progressed.", first.replica_set), "lastUpdateTime": created, "lastTransitionTime": created},
                ],
            },
        }));
        let mut rs_labels = template_labels.clone();
        rs_labels.insert("pod-template-hash".into(), first.template_hash.clone());
        let mut rs_selector = selector.clone();
        rs_selector.insert("pod-template-hash".into(), first.template_hash.clone());
        out.push(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {
                "name": first.replica_set, "namespace": w.namespace, "uid": uid_for(&format!("rs/{}/{}", w.namespace, first.replica_set)),
                "labels": rs_labels, "creationTimestamp": created, "generation": 1,
                "annotations": {"deployment.kubernetes.io/revision": "1", "deployment.kubernetes.io/desired-replicas": n.to_string(), "deployment.kubernetes.io/max-replicas": (n + n.div_ceil(4)).to_string()},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": w.name, "uid": dep_uid, "controller": true, "blockOwnerDeletion": true}],
            },
            "spec": {"replicas": n, "selector": {"matchLabels": rs_selector}, "template": {"metadata": {"labels": rs_labels, "annotations": template_annotations}, "spec": template_spec}},
            "status": {"replicas": n, "fullyLabeledReplicas": n, "readyReplicas": n, "availableReplicas": n, "observedGeneration": 1},
        }));
    }
    for p in &topology.pods {
        out.push(pod_object(scenario, topology, p, created));
    }
    for s in &topology.services {
        let mut labels = BTreeMap::from([("app".to_owned(), s.name.clone())]);
        labels.extend(s.labels.clone());
        let ports: Vec<Value> = s
            .ports
            .iter()
            .map(|p| json!({"name": p.name(), "port": p.port, "targetPort": p.target(), "protocol": "TCP"}))
            .collect();
        out.push(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": s.name, "namespace": s.namespace, "uid": uid_for(&format!("svc/{}/{}", s.namespace, s.name)), "labels": labels, "creationTimestamp": created},
            "spec": {"type": "ClusterIP", "clusterIP": s.cluster_ip, "clusterIPs": [s.cluster_ip], "ports": ports, "selector": s.selector,
                     "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster"},
            "status": {"loadBalancer": {}},
        }));
        let addresses: Vec<Value> = topology
            .pods
            .iter()
            .filter(|p| p.namespace == s.namespace && p.matches(&s.selector))
            .map(|p| json!({"ip": p.ip, "nodeName": "worker-0", "targetRef": {"kind": "Pod", "namespace": p.namespace, "name": p.name, "uid": uid_for(&format!("pod/{}/{}", p.namespace, p.name))}}))
            .collect();
        let ep_ports: Vec<Value> = s
            .ports
            .iter()
            .map(|p| json!({"name": p.name(), "port": p.target(), "protocol": "TCP"}))
            .collect();
        let subsets = if addresses.is_empty() {
            json!([])
        } else {
            json!([{"addresses": addresses, "ports": ep_ports}])
        };
        out.push(json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": s.name, "namespace": s.namespace, "uid": uid_for(&format!("ep/{}/{}", s.namespace, s.name)), "labels": labels, "creationTimestamp": created},
            "subsets": subsets,
        }));
    }
    for o in &scenario.objects {
        let mut o = o.clone();
        if o.pointer("/metadata/creationTimestamp").is_none() {
            o["metadata"]["creationTimestamp"] = json!(created);
        }
        out.push(o);
    }
    out
}

/// The containers of a workload's pod template (before injection).
fn workload_containers(scenario: &Scenario, p: &PodPlan) -> Value {
    let w = &scenario.workloads[p.workload];
    match p.role {
        Role::App => json!([{
            "name": p.app,
            "image": w.image.clone().unwrap_or_else(|| format!("quay.io/meshsim/{}:{}", p.app, p.version.clone().unwrap_or_else(|| "latest".into()))),
            "imagePullPolicy": "IfNotPresent",
            "ports": [{"name": "http", "containerPort": p.port, "protocol": "TCP"}],
            "resources": {},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
        }]),
        Role::Gateway => json!([proxy_container(scenario, p)]),
        Role::ControlPlane => json!(
            w.containers
                .iter()
                .map(|c| json!({
                    "name": c.name,
                    "image": c.image,
                    "args": c.args,
                    "ports": c.ports.iter().map(|pt| json!({"name": pt.name(), "containerPort": pt.port, "protocol": "TCP"})).collect::<Vec<_>>(),
                    "resources": {},
                    "imagePullPolicy": "IfNotPresent",
                }))
                .collect::<Vec<_>>()
        ),
    }
}

/// The `istio-proxy` container the injector (or the gateway chart) writes.
fn proxy_container(scenario: &Scenario, p: &PodPlan) -> Value {
    let mode = if p.proxy == Some(ProxyKind::Router) {
        "router"
    } else {
        "sidecar"
    };
    let pilot = format!("istio-pilot.{}:15010", scenario.istio.namespace);
    let field = |path: &str| json!({"fieldRef": {"apiVersion": "v1", "fieldPath": path}});
    let mut ports =
        vec![json!({"name": "http-envoy-prom", "containerPort": 15090, "protocol": "TCP"})];
    if mode == "router" {
        ports.insert(0, json!({"containerPort": 80, "protocol": "TCP"}));
        ports.insert(1, json!({"containerPort": 443, "protocol": "TCP"}));
        ports.insert(
            2,
            json!({"name": "status-port", "containerPort": 15020, "protocol": "TCP"}),
        );
    }
    json!({
        "name": "istio-proxy",
        "image": scenario.proxy_image(),
        "imagePullPolicy": "IfNotPresent",
        "args": [
            "proxy", mode,
            "--domain", "$(POD_NAMESPACE).svc.cluster.local",
            "--configPath", "/etc/istio/proxy",
            "--binaryPath", "/usr/local/bin/envoy",
            "--serviceCluster", p.service_cluster().replace(&format!(".{}", p.namespace), ".$(POD_NAMESPACE)"),
            "--drainDuration", "45s",
            "--parentShutdownDuration", "1m0s",
            "--discoveryAddress", pilot,
            "--zipkinAddress", format!("zipkin.{}:9411", scenario.istio.namespace),
            format!("--proxyLogLevel={}", p.log_level),
            format!("--proxyComponentLogLevel={}", p.component_log_level),
            "--connectTimeout", "10s",
            "--proxyAdminPort", p.admin_port.to_string(),
            "--concurrency", "2",
            "--controlPlaneAuthPolicy", "NONE",
            "--dnsRefreshRate", "300s",
            "--statusPort", "15020",
            "--applicationPorts", if mode == "sidecar" { p.port.to_string() } else { String::new() },
            "--trust-domain=cluster.local",
        ],
        "env": [
            {"name": "POD_NAME", "valueFrom": field("metadata.name")},
            {"name": "POD_NAMESPACE", "valueFrom": field("metadata.namespace")},
            {"name": "INSTANCE_IP", "valueFrom": field("status.podIP")},
            {"name": "SERVICE_ACCOUNT", "valueFrom": field("spec.serviceAccountName")},
            {"name": "HOST_IP", "valueFrom": field("status.hostIP")},
            {"name": "ISTIO_META_POD_NAME", "valueFrom": field("metadata.name")},
            {"name": "ISTIO_META_CONFIG_NAMESPACE", "valueFrom": field("metadata.namespace")},
            {"name": "ISTIO_META_INTERCEPTION_MODE", "value": "REDIRECT"},
            {"name": "ISTIO_META_CLUSTER_ID", "value": scenario.istio.cluster_id},
            {"name": "ISTIO_METAJSON_LABELS", "value": serde_json::to_string(&p.labels).unwrap_or_default()},
            {"name": "ISTIO_META_WORKLOAD_NAME", "value": p.deployment},
            {"name": "ISTIO_META_OWNER", "value": format!("kubernetes://apis/apps/v1/namespaces/{}/deployments/{}", p.namespace, p.deployment)},
            {"name": "ISTIO_META_MESH_ID", "value": "cluster.local"},
        ],
        "ports": ports,
        "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15020, "scheme": "HTTP"}, "initialDelaySeconds": 1, "periodSeconds": 2, "failureThreshold": 30, "successThreshold": 1, "timeoutSeconds": 1},
        "resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "10m", "memory": "128Mi"}},
        "securityContext": {"readOnlyRootFilesystem": true, "runAsUser": 1337, "runAsGroup": 1337, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "privileged": false},
        "volumeMounts": [
            {"name": "istio-envoy", "mountPath": "/etc/istio/proxy"},
            {"name": "istio-certs", "mountPath": "/etc/certs/", "readOnly": true},
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    })
}

fn pod_object(scenario: &Scenario, topology: &Topology, p: &PodPlan, created: &str) -> Value {
    let w = &scenario.workloads[p.workload];
    let uid = uid_for(&format!("pod/{}/{}", p.namespace, p.name));
    let mut containers = workload_containers(scenario, p)
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut init_containers = Vec::new();
    let mut annotations = w.annotations.clone();
    let mut volumes = Vec::new();
    let injected = p.proxy == Some(ProxyKind::Sidecar);
    if injected {
        containers.push(proxy_container(scenario, p));
        init_containers.push(json!({
            "name": "istio-init",
            "image": scenario.proxy_image(),
            "imagePullPolicy": "IfNotPresent",
            "command": ["istio-iptables"],
            "args": ["-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "", "-b", "*", "-d", "15020"],
            "resources": {"limits": {"cpu": "100m", "memory": "50Mi"}, "requests": {"cpu": "10m", "memory": "10Mi"}},
            "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}, "runAsNonRoot": false, "runAsUser": 0},
        }));
        annotations.insert("sidecar.istio.io/inject".into(), "true".into());
        annotations.insert(
            "sidecar.istio.io/status".into(),
            json!({"version": "meshsim-injector", "initContainers": ["istio-init"], "containers": ["istio-proxy"], "volumes": ["istio-envoy", "istio-certs"], "imagePullSecrets": null}).to_string(),
        );
        volumes.push(json!({"name": "istio-envoy", "emptyDir": {"medium": "Memory"}}));
        volumes.push(json!({"name": "istio-certs", "secret": {"secretName": format!("istio.{}", p.service_account), "optional": true, "defaultMode": 420}}));
    } else if p.proxy == Some(ProxyKind::Router) {
        volumes.push(json!({"name": "istio-envoy", "emptyDir": {}}));
        volumes.push(json!({"name": "istio-certs", "secret": {"secretName": format!("istio.{}", p.service_account), "optional": true, "defaultMode": 420}}));
    }
    let image_of = |c: &Value| {
        c.get("image")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let status_of = |c: &Value| {
        let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
        let image = image_of(c);
        json!({
            "name": name, "ready": true, "started": true, "restartCount": 0,
            "image": image, "imageID": format!("{image}@sha256:{}", hex64(&format!("image/{image}"))),
            "containerID": format!("cri-o://{}", hex64(&format!("ctr/{}/{}/{name}", p.namespace, p.name))),
            "state": {"running": {"startedAt": created}}, "lastState": {},
        })
    };
    let container_statuses: Vec<Value> = containers.iter().map(status_of).collect();
    let init_statuses: Vec<Value> = init_containers
        .iter()
        .map(|c| {
            let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
            let image = image_of(c);
            let cid = format!("cri-o://{}", hex64(&format!("ctr/{}/{}/{name}", p.namespace, p.name)));
            json!({
                "name": name, "ready": true, "restartCount": 0, "image": image,
                "imageID": format!("{image}@sha256:{}", hex64(&format!("image/{image}"))), "containerID": cid,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": created, "finishedAt": created, "containerID": cid}}, "lastState": {},
            })
        })
        .collect();
    let cond = |t: &str| json!({"type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": created});
    let mut spec = json!({
        "serviceAccountName": p.service_account,
        "serviceAccount": p.service_account,
        "nodeName": "worker-0",
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "schedulerName": "default-scheduler",
        "terminationGracePeriodSeconds": 30,
        "enableServiceLinks": true,
        "containers": containers,
    });
    if !init_containers.is_empty() {
        spec["initContainers"] = json!(init_containers);
    }
    if !volumes.is_empty() {
        spec["volumes"] = json!(volumes);
    }
    let mut status = json!({
        "phase": "Running",
        "conditions": [cond("Initialized"), cond("Ready"), cond("ContainersReady"), cond("PodScheduled")],
        "hostIP": "10.0.0.11",
        "hostIPs": [{"ip": "10.0.0.11"}],
        "podIP": p.ip,
        "podIPs": [{"ip": p.ip}],
        "startTime": created,
        "containerStatuses": container_statuses,
        "qosClass": "Burstable",
    });
    if !init_statuses.is_empty() {
        status["initContainerStatuses"] = json!(init_statuses);
    }
    let _ = topology;
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": p.name,
            "generateName": format!("{}-", p.replica_set),
            "namespace": p.namespace,
            "uid": uid,
            "labels": p.labels,
            "annotations": annotations,
            "creationTimestamp": created,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": p.replica_set, "uid": uid_for(&format!("rs/{}/{}", p.namespace, p.replica_set)), "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": spec,
        "status": status,
    })
}

/// 64 hex digits derived from a seed (container ids, image digests).
fn hex64(seed: &str) -> String {
    (0..4)
        .map(|i| uid_for(&format!("{seed}#{i}")).replace('-', "")[..16].to_owned())
        .collect()
}

/// Writes one line to a log file (append), e.g. for tests that simulate log output.
pub fn append_log(path: &Path, line: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "{line}")?;
    Ok(())
}

/// Give every pod with a real Envoy its own loopback address, so that its listeners bind their
/// real ports (15006, 15001, 8080, ...) as in a pod's network namespace. A world takes a random
/// block of 127.a.b.1–254 (one more block per 254 pods) on which nothing listens yet; should
/// none be found, the listeners keep 127.0.0.1 and ephemeral ports.
fn assign_listen_ips(pods: &mut [PodPlan]) {
    use std::hash::{BuildHasher, Hasher};
    use std::net::{Ipv4Addr, TcpListener};
    let n = pods.iter().filter(|p| p.real_envoy).count();
    if n == 0 {
        return;
    }
    let blocks = n.div_ceil(254);
    let free = |ip: Ipv4Addr| {
        [15001, 15006, 15090]
            .iter()
            .all(|port| TcpListener::bind((ip, *port)).is_ok())
    };
    for attempt in 0..64u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(attempt);
        h.write_u128(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let seed = h.finish();
        // 127.2.0.0 – 127.251.255.255: clear of 127.0.0.1 and its neighbours.
        let a = 2 + (seed % 250) as u8;
        let b0 = ((seed >> 16) % 256u64.saturating_sub(blocks as u64).max(1)) as usize;
        let ip = |i: usize| Ipv4Addr::new(127, a, (b0 + i / 254) as u8, (1 + i % 254) as u8);
        if !(0..blocks).all(|k| free(ip(k * 254))) {
            continue;
        }
        for (i, p) in pods.iter_mut().filter(|p| p.real_envoy).enumerate() {
            p.listen_ip = Some(ip(i));
        }
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<World>();
        check::<PodInfo>();
    }

    #[test]
    fn objects_of_the_seed() {
        let s = Scenario::load("seed").unwrap();
        let t = s.topology().unwrap();
        let objs = objects(&s, &t, "2026-01-01T00:00:00Z");
        let pod = objs
            .iter()
            .find(|o| o["kind"] == "Pod" && o["metadata"]["name"] == "customer-6f8c9d7b5-x2x7k")
            .unwrap();
        let names: Vec<&str> = pod["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["customer", "istio-proxy"]);
        assert_eq!(pod["spec"]["initContainers"][0]["name"], "istio-init");
        assert_eq!(pod["status"]["phase"], "Running");
        assert!(
            pod["metadata"]["annotations"]["sidecar.istio.io/status"]
                .as_str()
                .unwrap()
                .contains("istio-proxy")
        );
        let args: Vec<&str> = pod["spec"]["containers"][1]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(args.contains(&"--proxyLogLevel=warning"), "{args:?}");
        let pilot = objs
            .iter()
            .find(|o| o["kind"] == "Pod" && o["metadata"]["name"] == "istio-pilot-7d8f6b9c5d-9xk2p")
            .unwrap();
        let names: Vec<&str> = pilot["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["discovery", "istio-proxy"]);
        assert_eq!(pilot["metadata"]["labels"]["istio"], "pilot");
        let ep = objs
            .iter()
            .find(|o| o["kind"] == "Endpoints" && o["metadata"]["name"] == "recommendation")
            .unwrap();
        assert_eq!(ep["subsets"][0]["addresses"].as_array().unwrap().len(), 2);
        assert!(objs.iter().any(|o| o["kind"] == "Policy"));
        assert!(objs.iter().any(|o| o["kind"] == "ServiceAccount"
            && o["metadata"]["name"] == "istio-pilot-service-account"));
    }

    #[test]
    fn origins_are_replaced_in_strings() {
        let mut v = json!({"a": ["https://sso.example.com/realms/x", "https://sso.example.com.evil/"], "b": {"c": "https://other"}});
        replace_origin(&mut v, "https://sso.example.com/", "https://localhost:1/");
        assert_eq!(
            v,
            json!({"a": ["https://localhost:1/realms/x", "https://sso.example.com.evil/"], "b": {"c": "https://other"}})
        );
    }
}
