//! The world's control plane: for every istiod / istio-pilot pod of a scenario, a real ADS server
//! ([`XdsServer`]) that pushes each assigned proxy its config ([`crate::sidecar::resources`]),
//! and the istiod stand-in's HTTP side ([`Istiod`]) whose `/debug/syncz` and
//! `/debug/config_dump?proxyID=` mirror the ADS server's state.
//!
//! * **Assignment.** A proxy connects to a running replica of its revision (`istio.io/rev` of
//!   the pod or its namespace, else `default`), round-robin in pod order, unless its workload
//!   names one (`istiod: <pod name or prefix>`). A proxy with no running istiod of its
//!   revision gets its config statically (and appears in no syncz).
//! * **Knobs.** `hold: [RDS]` → the type is never sent (NOT SENT; the proxy's config sources get
//!   a 1 s initial fetch timeout so Envoy still becomes ready); `nack: [LDS]` → an invalid
//!   config is pushed after the first ACK, Envoy NACKs it (STALE / ERROR). At runtime the
//!   [`XdsServer`] of a replica has the same knobs.
//! * **istiod's view.** The stand-in's config_dump of a proxy is what the ADS server holds for
//!   it (with a NACKed variant where one was pushed), or an override
//!   ([`ControlPlane::set_istiod_view`]) that is never pushed.
//! * **JWKS.** A rule's `jwks` is inlined as given; a `jwksUri` (or the issuer's OpenID
//!   discovery document) is fetched over HTTPS by istiod itself, 5 s timeout, trusting the
//!   system roots plus `/cacerts/extra.pem` of its Deployment (a Secret or ConfigMap volume
//!   mounted at `/cacerts` in container `discovery`), read once when istiod starts. A success is
//!   cached (until istiod restarts or [`ControlPlane::refresh_jwks`]); a failure is logged in the
//!   flavour's words to the `discovery` log and the flavour's placeholder is pushed, and the
//!   next push fetches again. Hosts under the reserved `example.com/.org/.net` or `.invalid`
//!   domains fail as unresolvable without a DNS query; `istio.jwks_fetch_error` replaces the
//!   error of every non-loopback host.
//! * **Reactions.** A RequestAuthentication, Policy, DestinationRule or VirtualService
//!   created, changed or deleted in the apiserver → every proxy's config is regenerated and
//!   pushed where it changed. A change of an istiod Deployment's pod template (e.g. the
//!   `/cacerts` volume `kubectl jwks-trust add-ca` adds) → its istiod "restarts": the
//!   `discovery` log starts afresh, the pod's `restartCount` goes up, the trust bundle is
//!   re-read, the JWKS cache dropped, every proxy's config regenerated and its stream reset.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use prost_reflect::{DynamicMessage, SerializeOptions};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::apiserver::{Store, StoreEvent};
use crate::istiod::{self, Flavour, Istiod, IstiodOptions};
use crate::scenario::{PodPlan, ProxyKind, Scenario, Topology};
use crate::sidecar::{self, ConfigInputs, EnvoyResources, XdsMode};
use crate::world::JwksResolver;
use crate::xds::{
    self, CLUSTER, ENDPOINT, LISTENER, ProxyResources, ProxyStatus, ROUTE, XdsOptions, XdsServer,
};

/// istiod's JWKS fetch timeout (per rule `timeout`, default 5 s).
pub const JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// Kinds whose changes regenerate the proxies' config.
const CONFIG_KINDS: &[&str] = &[
    "RequestAuthentication",
    "Policy",
    "DestinationRule",
    "VirtualService",
];

/// The xDS type URL of a short name (`CDS`, `LDS`, `RDS`, `EDS`).
pub fn type_url(short: &str) -> Option<&'static str> {
    match short {
        "CDS" => Some(CLUSTER),
        "LDS" => Some(LISTENER),
        "RDS" => Some(ROUTE),
        "EDS" => Some(ENDPOINT),
        _ => None,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `<pod>.<namespace>` of an Istio node id (`sidecar~<ip>~<pod>.<ns>~<domain>`).
pub fn proxy_key(node_id: &str) -> String {
    node_id.split('~').nth(2).unwrap_or(node_id).to_owned()
}

/// Everything [`ControlPlane::start`] needs.
pub struct ControlPlaneConfig {
    /// The scenario as stored (objects already in the apiserver).
    pub scenario: Scenario,
    pub topology: Topology,
    /// Application server of each pod, by (namespace, pod).
    pub app_addrs: HashMap<(String, String), SocketAddr>,
    pub store: Store,
    /// The world's temp dir (pod directories under `pods/<ns>/<pod>/`).
    pub root: PathBuf,
    /// How the sidecars get their config; only [`XdsMode::Ads`] pushes.
    pub mode: XdsMode,
    /// Replaces istiod's HTTPS fetch of a jwksUri (a failure is still logged).
    pub resolve_override: Option<JwksResolver>,
}

/// One istiod pod.
pub struct Replica {
    pod: String,
    namespace: String,
    deployment: String,
    revision: String,
    flavour: Flavour,
    live: Option<Live>,
}

struct Live {
    xds: XdsServer,
    istiod: Istiod,
    /// istiod's view overrides by node id ([`ControlPlane::set_istiod_view`]).
    views: Mutex<HashMap<String, ProxyResources>>,
    /// Proxy keys the stand-in currently lists.
    known: Mutex<BTreeSet<String>>,
    /// Rendered config dumps by node id, with the signature they were made for.
    dumps: Mutex<HashMap<String, (String, Value)>>,
    resolver: Mutex<Resolver>,
    restarts: tokio::sync::watch::Sender<u32>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("pod", &self.pod)
            .field("namespace", &self.namespace)
            .field("revision", &self.revision)
            .field("down", &self.live.is_none())
            .finish_non_exhaustive()
    }
}

impl Replica {
    pub fn pod(&self) -> &str {
        &self.pod
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The Deployment it belongs to.
    pub fn deployment(&self) -> &str {
        &self.deployment
    }

    /// Its `istio.io/rev` (`default` without one).
    pub fn revision(&self) -> &str {
        &self.revision
    }

    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    /// `down` in the scenario: the pod exists, nothing serves it.
    pub fn is_down(&self) -> bool {
        self.live.is_none()
    }

    /// Its ADS server (None when down).
    pub fn xds(&self) -> Option<&XdsServer> {
        self.live.as_ref().map(|l| &l.xds)
    }

    /// Its debug HTTP / ControlZ side (None when down).
    pub fn istiod(&self) -> Option<&Istiod> {
        self.live.as_ref().map(|l| &l.istiod)
    }

    /// How often it "restarted" (pod template changes).
    pub fn restarts(&self) -> u32 {
        self.live.as_ref().map_or(0, |l| *l.restarts.borrow())
    }

    /// Waits until it has restarted at least `n` times (and each restart is complete).
    pub async fn wait_restarts(&self, n: u32, timeout: Duration) -> Result<()> {
        let Some(l) = &self.live else {
            bail!("istiod {} is down", self.pod);
        };
        let mut rx = l.restarts.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r >= n))
            .await
            .with_context(|| {
                format!(
                    "istiod {} did not restart {n} time(s) within {timeout:?}",
                    self.pod
                )
            })?
            .map_err(|_| anyhow::anyhow!("istiod {} is gone", self.pod))?;
        Ok(())
    }

    /// Pod ports → local addresses: 15010 (xDS, plaintext gRPC), 15012 (xDS over TLS, bearer
    /// token required; serves the debug type `istio.io/debug/syncz` too), 15014 and 8080
    /// (debug HTTP), 9876 (ControlZ). Empty when down.
    pub fn ports(&self) -> HashMap<u16, SocketAddr> {
        let Some(l) = &self.live else {
            return HashMap::new();
        };
        let mut out = HashMap::new();
        out.insert(15010, l.xds.addr());
        out.insert(15012, l.xds.tls_addr());
        if let Some(a) = l.istiod.addr(istiod::MONITORING_PORT) {
            out.insert(istiod::MONITORING_PORT, a);
            out.insert(
                istiod::HTTP_PORT,
                l.istiod.addr(istiod::HTTP_PORT).unwrap_or(a),
            );
        }
        if let Some(a) = l.istiod.addr(istiod::CTRLZ_PORT) {
            out.insert(istiod::CTRLZ_PORT, a);
        }
        out
    }

    /// The `discovery` container's log (None when down).
    pub fn log_path(&self) -> Option<PathBuf> {
        self.live.as_ref().map(|l| l.istiod.log_path())
    }
}

/// One proxy with a real Envoy.
#[derive(Debug, Clone)]
struct Proxy {
    /// Index into `Topology::pods`.
    plan: usize,
    namespace: String,
    name: String,
    node_id: String,
    /// Index into the replicas; None: no running istiod of its revision.
    replica: Option<usize>,
    hold: Vec<&'static str>,
    nack: Vec<&'static str>,
}

/// istiod's JWKS resolver: its trust and its cache.
struct Resolver {
    client: Option<reqwest::Client>,
    /// Why there is no client (a broken bundle), as the fetch error.
    client_error: Option<String>,
    cache: HashMap<String, String>,
}

struct GenState {
    scenario: Scenario,
    /// Pod templates of the istiod Deployments as last seen, by (namespace, name).
    templates: HashMap<(String, String), Value>,
}

struct Inner {
    replicas: Vec<Replica>,
    proxies: Vec<Proxy>,
    topology: Topology,
    app_addrs: HashMap<(String, String), SocketAddr>,
    store: Store,
    mode: XdsMode,
    resolve_override: Option<JwksResolver>,
    /// Serialises regenerations; holds the live Istio objects.
    gen_state: tokio::sync::Mutex<GenState>,
    /// The scenario as last generated from (for sync readers).
    current: Mutex<Scenario>,
    generated: Mutex<HashMap<(String, String), EnvoyResources>>,
    /// For proxies without an istiod: system roots, logs nowhere.
    fallback: Mutex<Resolver>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The running control plane (cheap to clone). See the module docs.
#[derive(Clone)]
pub struct ControlPlane {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("replicas", &self.inner.replicas)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Starts an ADS server and istiod stand-in per running istiod pod, assigns the proxies,
    /// generates (fetching JWKS) and sets every proxy's config, and starts watching the store.
    /// Must run inside the Tokio runtime the control plane should live on.
    pub async fn start(cfg: ControlPlaneConfig) -> Result<ControlPlane> {
        let ControlPlaneConfig {
            scenario,
            topology,
            app_addrs,
            store,
            root,
            mode,
            resolve_override,
        } = cfg;
        let flavour = if matches!(scenario.istio_version()?, (1, m, _) if m < 6) {
            Flavour::Maistra14
        } else {
            Flavour::Modern
        };

        // 1. istiod replicas
        let mut replicas = Vec::new();
        let mut templates = HashMap::new();
        for p in topology
            .pods
            .iter()
            .filter(|p| scenario.is_istiod(p.workload))
        {
            let w = &scenario.workloads[p.workload];
            let revision = scenario.revision_of(p);
            let live = if w.down.is_down(p.replica) {
                None
            } else {
                let xds = XdsServer::start_with(XdsOptions {
                    control_plane_id: json!({"Component": "istiod", "ID": p.name, "Info": {"version": scenario.istio.version}}).to_string(),
                    ..XdsOptions::default()
                })
                .await?;
                let istiod = Istiod::start(IstiodOptions {
                    pod_name: p.name.clone(),
                    namespace: p.namespace.clone(),
                    revision: revision.clone(),
                    flavour,
                    version: scenario.istio.version.clone(),
                    log_dir: Some(root.join("pods").join(&p.namespace).join(&p.name)),
                    http_debug: w.http_debug,
                })
                .with_context(|| format!("starting istiod {}/{}", p.namespace, p.name))?;
                let resolver = Resolver::new(trust_of(&store, &p.namespace, &p.deployment));
                if let Some(e) = &resolver.client_error {
                    istiod.log_line("error", "model", e);
                }
                Some(Live {
                    xds,
                    istiod,
                    views: Mutex::new(HashMap::new()),
                    known: Mutex::new(BTreeSet::new()),
                    dumps: Mutex::new(HashMap::new()),
                    resolver: Mutex::new(resolver),
                    restarts: tokio::sync::watch::Sender::new(0),
                })
            };
            templates.insert(
                (p.namespace.clone(), p.deployment.clone()),
                deployment_template(&store, &p.namespace, &p.deployment),
            );
            replicas.push(Replica {
                pod: p.name.clone(),
                namespace: p.namespace.clone(),
                deployment: p.deployment.clone(),
                revision,
                flavour,
                live,
            });
        }

        // 2. proxies and their istiod
        let mut proxies = Vec::new();
        let mut next: HashMap<String, usize> = HashMap::new();
        for (i, p) in topology.pods.iter().enumerate() {
            if !p.real_envoy {
                continue;
            }
            let w = &scenario.workloads[p.workload];
            let replica = match &w.istiod {
                Some(want) => {
                    let r = replicas
                        .iter()
                        .position(|r| r.pod == *want)
                        .or_else(|| replicas.iter().position(|r| r.pod.starts_with(want)))
                        .with_context(|| {
                            format!(
                                "workload {}/{}: no istiod pod {want:?}",
                                w.namespace, w.name
                            )
                        })?;
                    if replicas[r].is_down() {
                        bail!(
                            "workload {}/{}: istiod {} is down",
                            w.namespace,
                            w.name,
                            replicas[r].pod
                        );
                    }
                    Some(r)
                }
                None => {
                    let rev = scenario.revision_of(p);
                    let candidates: Vec<usize> = replicas
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.revision == rev && !r.is_down())
                        .map(|(i, _)| i)
                        .collect();
                    if candidates.is_empty() {
                        None
                    } else {
                        let n = next.entry(rev).or_default();
                        let r = candidates[*n % candidates.len()];
                        *n += 1;
                        Some(r)
                    }
                }
            };
            let short = |v: &[String]| v.iter().filter_map(|t| type_url(t)).collect::<Vec<_>>();
            proxies.push(Proxy {
                plan: i,
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                node_id: p.node_id().unwrap_or_else(|| p.proxy_id()),
                replica,
                hold: short(&w.hold),
                nack: short(&w.nack),
            });
        }

        let cp = ControlPlane {
            inner: Arc::new(Inner {
                replicas,
                proxies,
                topology,
                app_addrs,
                store: store.clone(),
                mode,
                resolve_override,
                current: Mutex::new(scenario.clone()),
                gen_state: tokio::sync::Mutex::new(GenState {
                    scenario,
                    templates,
                }),
                generated: Mutex::new(HashMap::new()),
                fallback: Mutex::new(Resolver::new(Ok(String::new()))),
                tasks: Mutex::new(Vec::new()),
            }),
        };

        // 3. knobs, before any proxy connects
        if mode == XdsMode::Ads {
            for p in &cp.inner.proxies {
                let Some(xds) = p.replica.and_then(|r| cp.inner.replicas[r].xds()) else {
                    continue;
                };
                for t in &p.hold {
                    xds.hold_type(&p.node_id, t);
                }
                for t in &p.nack {
                    xds.push_invalid(&p.node_id, t);
                }
            }
        }

        // 4. the first generation, then the watchers
        let store_events = store.subscribe();
        cp.regenerate().await?;
        let mut tasks = Vec::new();
        for (i, r) in cp.inner.replicas.iter().enumerate() {
            let Some(l) = &r.live else { continue };
            let mut rx = l.xds.subscribe();
            let inner = Arc::downgrade(&cp.inner);
            tasks.push(tokio::spawn(async move {
                loop {
                    let Some(inner) = inner.upgrade() else { return };
                    ControlPlane { inner }.sync_replica(i);
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
            }));
        }
        let weak = Arc::downgrade(&cp.inner);
        tasks.push(tokio::spawn(watch_store(weak, store_events)));
        *lock(&cp.inner.tasks) = tasks;
        Ok(cp)
    }

    /// Every istiod pod, in pod order (running and down).
    pub fn replicas(&self) -> &[Replica] {
        &self.inner.replicas
    }

    /// The istiod pod itself, or the istiod a proxy pod is connected to.
    pub fn replica_of(&self, namespace: &str, pod: &str) -> Option<&Replica> {
        let i = &self.inner;
        i.replicas
            .iter()
            .find(|r| r.namespace == namespace && r.pod == pod)
            .or_else(|| {
                i.proxies
                    .iter()
                    .find(|p| p.namespace == namespace && p.name == pod)
                    .and_then(|p| p.replica)
                    .map(|r| &i.replicas[r])
            })
    }

    /// The Envoy node id of a proxy pod the control plane serves.
    pub fn node_id(&self, namespace: &str, pod: &str) -> Option<String> {
        self.proxy(namespace, pod).map(|p| p.node_id.clone())
    }

    fn proxy(&self, namespace: &str, pod: &str) -> Option<&Proxy> {
        self.inner
            .proxies
            .iter()
            .find(|p| p.namespace == namespace && p.name == pod)
    }

    /// The config last generated for a proxy pod (what istiod wants it to have).
    pub fn generated(&self, namespace: &str, pod: &str) -> Option<EnvoyResources> {
        lock(&self.inner.generated)
            .get(&(namespace.to_owned(), pod.to_owned()))
            .cloned()
    }

    /// The scenario with the Istio objects as the control plane last saw them in the store.
    pub fn scenario(&self) -> Scenario {
        lock(&self.inner.current).clone()
    }

    /// Makes istiod's view of a proxy (its `/debug/config_dump?proxyID=`) `res` without pushing
    /// anything, so it differs from what the proxy has.
    pub fn set_istiod_view(&self, namespace: &str, pod: &str, res: ProxyResources) -> Result<()> {
        let (p, r) = self.served(namespace, pod)?;
        if let Some(l) = &self.inner.replicas[r].live {
            lock(&l.views).insert(p.node_id.clone(), res);
        }
        self.sync_replica(r);
        Ok(())
    }

    /// Undoes [`ControlPlane::set_istiod_view`].
    pub fn clear_istiod_view(&self, namespace: &str, pod: &str) -> Result<()> {
        let (p, r) = self.served(namespace, pod)?;
        if let Some(l) = &self.inner.replicas[r].live {
            lock(&l.views).remove(&p.node_id);
        }
        self.sync_replica(r);
        Ok(())
    }

    fn served(&self, namespace: &str, pod: &str) -> Result<(&Proxy, usize)> {
        let p = self
            .proxy(namespace, pod)
            .with_context(|| format!("{namespace}/{pod} is not a proxy with a real Envoy"))?;
        let r = p
            .replica
            .with_context(|| format!("{namespace}/{pod} is not connected to an istiod"))?;
        Ok((p, r))
    }

    /// Copies every running istiod's ADS state into its stand-in now (the watchers do it on
    /// every change, shortly after).
    pub fn sync_istiods(&self) {
        for i in 0..self.inner.replicas.len() {
            self.sync_replica(i);
        }
    }

    fn sync_replica(&self, i: usize) {
        let Some(l) = &self.inner.replicas[i].live else {
            return;
        };
        // one sync at a time, each from a fresh snapshot: a late one with an older snapshot
        // would remove proxies a newer one just listed
        let mut known = lock(&l.known);
        let status = l.xds.status();
        let mut now = BTreeSet::new();
        for p in &status {
            let key = proxy_key(&p.node_id);
            l.istiod
                .set_proxy_status(&key, istiod::ProxyStatus::from_xds(p));
            let view = lock(&l.views).get(&p.node_id).cloned();
            let (res, sig) = match view {
                Some(v) => {
                    let sig = format!("view:{v:?}");
                    (Some(v), sig)
                }
                None => (l.xds.resources(&p.node_id), signature(p)),
            };
            if let Some(res) = res {
                let mut dumps = lock(&l.dumps);
                let fresh = dumps.get(&p.node_id).is_some_and(|(s, _)| *s == sig);
                if !fresh {
                    dumps.insert(p.node_id.clone(), (sig, istiod_config_dump(&res, p)));
                }
                if let Some((_, d)) = dumps.get(&p.node_id) {
                    l.istiod.set_proxy_config_dump(&key, d.clone());
                }
            }
            now.insert(key);
        }
        for gone in known.difference(&now) {
            l.istiod.remove_proxy(gone);
        }
        *known = now;
    }

    /// Waits until every proxy connected to an istiod has settled: its watched types SYNCED,
    /// held ones NOT SENT, NACKed ones with the error; then syncs the stand-ins.
    pub async fn wait_settled(&self, timeout: Duration) -> Result<()> {
        if self.inner.mode != XdsMode::Ads {
            return Ok(());
        }
        for p in &self.inner.proxies {
            let Some(xds) = p.replica.and_then(|r| self.inner.replicas[r].xds()) else {
                continue;
            };
            let res = self.generated(&p.namespace, &p.name).unwrap_or_default();
            let mut need = vec![CLUSTER, LISTENER];
            if !p.hold.contains(&CLUSTER)
                && res
                    .clusters
                    .iter()
                    .any(|c| c.get("type").and_then(Value::as_str) == Some("EDS"))
            {
                need.push(ENDPOINT);
            }
            if !p.hold.contains(&LISTENER) && !res.routes.is_empty() {
                need.push(ROUTE);
            }
            xds.wait_for(timeout, |all| {
                let s = all.iter().find(|s| s.node_id == p.node_id)?;
                need.iter()
                    .all(|t| match s.type_status(t) {
                        None => false,
                        Some(_) if p.hold.contains(t) => true,
                        Some(ts) if p.nack.contains(t) => ts.last_error.is_some(),
                        Some(ts) => ts.config_status() == xds::ConfigStatus::Synced,
                    })
                    .then_some(())
            })
            .await
            .with_context(|| format!("proxy {}/{} did not sync", p.namespace, p.name))?;
        }
        self.sync_istiods();
        Ok(())
    }

    /// Regenerates every proxy's config from the current Istio objects (fetching jwksUris not
    /// in istiod's cache) and pushes what changed.
    pub async fn regenerate(&self) -> Result<()> {
        let st = self.inner.gen_state.lock().await;
        self.regenerate_locked(&st.scenario).await
    }

    /// Forgets every cached JWKS (as istiod's periodic refresh would) and regenerates.
    pub async fn refresh_jwks(&self) -> Result<()> {
        for r in &self.inner.replicas {
            if let Some(l) = &r.live {
                lock(&l.resolver).cache.clear();
            }
        }
        lock(&self.inner.fallback).cache.clear();
        self.regenerate().await
    }

    async fn regenerate_locked(&self, scenario: &Scenario) -> Result<()> {
        let inner = &self.inner;
        *lock(&inner.current) = scenario.clone();
        let groups: Vec<Option<usize>> =
            (0..inner.replicas.len()).map(Some).chain([None]).collect();
        let mut first_err = None;
        for group in groups {
            let members: Vec<&Proxy> = inner
                .proxies
                .iter()
                .filter(|p| p.replica == group)
                .collect();
            if members.is_empty() {
                continue;
            }
            // the jwksUris these proxies need
            let mut uris: BTreeMap<String, String> = BTreeMap::new();
            for p in &members {
                let plan = &inner.topology.pods[p.plan];
                if plan.proxy != Some(ProxyKind::Sidecar) {
                    continue;
                }
                for rule in sidecar::jwt_rules(scenario, &inner.topology, plan) {
                    if rule.jwks.is_some() {
                        continue;
                    }
                    let uri = rule.jwks_uri.clone().unwrap_or_else(|| {
                        format!(
                            "{}/.well-known/openid-configuration",
                            rule.issuer.trim_end_matches('/')
                        )
                    });
                    uris.entry(uri).or_insert(rule.issuer);
                }
            }
            let results = self.resolve(group, scenario, &uris).await;
            let resolve = |uri: &str| -> Result<String, String> {
                results
                    .get(uri)
                    .cloned()
                    .unwrap_or_else(|| Err(format!("Get {uri}: not fetched")))
            };
            let app_addr = |p: &PodPlan| {
                inner
                    .app_addrs
                    .get(&(p.namespace.clone(), p.name.clone()))
                    .copied()
            };
            for p in &members {
                let plan = &inner.topology.pods[p.plan];
                let made = sidecar::resources(&ConfigInputs {
                    scenario,
                    topology: &inner.topology,
                    pod: plan,
                    app_addr: &app_addr,
                    resolve_jwks: &resolve,
                });
                let mut res = match made {
                    Ok(r) => r,
                    Err(e) => {
                        first_err.get_or_insert(e);
                        continue;
                    }
                };
                if p.hold.contains(&ROUTE) || p.hold.contains(&ENDPOINT) {
                    sidecar::set_initial_fetch_timeout(&mut res, "1s");
                }
                lock(&inner.generated).insert((p.namespace.clone(), p.name.clone()), res.clone());
                if inner.mode == XdsMode::Ads
                    && let Some(xds) = group.and_then(|r| inner.replicas[r].xds())
                    && let Err(e) = xds.set_resources(&p.node_id, res.into())
                {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Fetches the uris not in the group's cache; logs failures to its istiod.
    async fn resolve(
        &self,
        group: Option<usize>,
        scenario: &Scenario,
        uris: &BTreeMap<String, String>,
    ) -> HashMap<String, Result<String, String>> {
        let live = group.and_then(|r| self.inner.replicas[r].live.as_ref());
        let resolver = match live {
            Some(l) => &l.resolver,
            None => &self.inner.fallback,
        };
        let mut out = HashMap::new();
        let (client, client_error) = {
            let r = lock(resolver);
            for uri in uris.keys() {
                if let Some(j) = r.cache.get(uri) {
                    out.insert(uri.clone(), Ok(j.clone()));
                }
            }
            (r.client.clone(), r.client_error.clone())
        };
        let style = GoStyle::of(scenario);
        let todo: Vec<(&String, &String)> =
            uris.iter().filter(|(u, _)| !out.contains_key(*u)).collect();
        let fetches = todo.iter().map(|(uri, _)| {
            let client = client.clone();
            let client_error = client_error.clone();
            async move {
                let r = if let Some(f) = &self.inner.resolve_override {
                    f(uri)
                } else if let Some(e) = short_circuit(scenario, uri, style) {
                    Err(e)
                } else if let Some(c) = &client {
                    fetch_jwks(c, uri, style).await
                } else {
                    Err(client_error.unwrap_or_else(|| "no HTTP client".into()))
                };
                ((*uri).clone(), r)
            }
        });
        let fetched = futures::future::join_all(fetches).await;
        let version = scenario.istio_version().unwrap_or((1, 30, 0));
        let mut r = lock(resolver);
        for (uri, result) in fetched {
            match &result {
                Ok(j) => {
                    r.cache.insert(uri.clone(), j.clone());
                }
                Err(e) => {
                    if let Some(l) = live {
                        let issuer = uris.get(&uri).map(String::as_str).unwrap_or_default();
                        for (level, scope, msg) in failure_lines(version, issuer, &uri, e) {
                            l.istiod.log_line(level, scope, &msg);
                        }
                    }
                }
            }
            out.insert(uri, result);
        }
        out
    }

    /// istiod of this Deployment "restarts" (see the module docs). When
    /// [`Replica::restarts`] has gone up, the restart is complete: new trust, config
    /// regenerated, the proxies' streams reset (they reconnect within a second).
    async fn restart(&self, namespace: &str, deployment: &str) {
        let mine = |r: &Replica| r.namespace == namespace && r.deployment == deployment;
        // the old process's connections end
        for p in &self.inner.proxies {
            if let Some(xds) = p
                .replica
                .map(|r| &self.inner.replicas[r])
                .filter(|r| mine(r))
                .and_then(Replica::xds)
            {
                xds.disconnect(&p.node_id);
            }
        }
        for r in self.inner.replicas.iter().filter(|r| mine(r)) {
            let Some(l) = &r.live else { continue };
            // the stand-in forgets its proxies; the new container's log starts empty
            for key in std::mem::take(&mut *lock(&l.known)) {
                l.istiod.remove_proxy(&key);
            }
            lock(&l.dumps).clear();
            let _ = std::fs::write(l.istiod.log_path(), "");
            startup_log(&l.istiod, &r.revision, namespace);
            let resolver = Resolver::new(trust_of(&self.inner.store, namespace, deployment));
            if let Some(e) = &resolver.client_error {
                l.istiod.log_line("error", "model", e);
            }
            *lock(&l.resolver) = resolver;
            let n = *l.restarts.borrow() + 1;
            bump_restart_count(&self.inner.store, namespace, &r.pod, n);
        }
        {
            let st = self.inner.gen_state.lock().await;
            if let Err(e) = self.regenerate_locked(&st.scenario).await {
                tracing::warn!("control plane: regenerating after an istiod restart: {e:#}");
            }
        }
        mark_rolled_out(&self.inner.store, namespace, deployment);
        for r in self.inner.replicas.iter().filter(|r| mine(r)) {
            if let Some(l) = &r.live {
                l.restarts.send_modify(|n| *n += 1);
                tracing::debug!(pod = %r.pod, "control plane: istiod restarted");
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
    }
}

impl ControlPlane {
    /// Stops the watchers (the servers stop when the last handle is dropped).
    pub fn stop(&self) {
        for t in lock(&self.inner.tasks).drain(..) {
            t.abort();
        }
    }
}

/// The per-type versions a config dump was rendered for.
fn signature(p: &ProxyStatus) -> String {
    p.types
        .iter()
        .map(|t| {
            format!(
                "{}={}/{}",
                t.type_url,
                t.sent_version.as_deref().unwrap_or(""),
                t.invalid
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

// ---------------------------------------------------------------------------------------------
// istiod's /debug/config_dump

/// A resource in protojson (camelCase, defaults dropped), as istiod's debug endpoints print
/// it; the snake_case input if it does not convert.
pub fn protojson(resource: &Value) -> Value {
    let Some(type_url) = resource.get("@type").and_then(Value::as_str) else {
        return resource.clone();
    };
    let convert = || -> Result<Value> {
        let mut body = resource.clone();
        if let Some(o) = body.as_object_mut() {
            o.remove("@type");
        }
        let bytes = xds::to_protobuf(type_url, &body)?;
        let name = type_url.rsplit('/').next().unwrap_or(type_url);
        let desc = xds::descriptor::pool()
            .get_message_by_name(name)
            .with_context(|| format!("no message {name}"))?;
        let msg = DynamicMessage::decode(desc, bytes.as_slice())?;
        let mut v = msg.serialize_with_options(
            serde_json::value::Serializer,
            &SerializeOptions::new().use_proto_field_name(false),
        )?;
        if let Some(o) = v.as_object_mut() {
            o.insert("@type".into(), json!(type_url));
        }
        Ok(v)
    };
    convert().unwrap_or_else(|_| resource.clone())
}

/// istiod's config dump of one proxy: CDS, LDS and RDS as dynamic resources, camelCase, with
/// the versions it last sent.
pub fn istiod_config_dump(res: &ProxyResources, p: &ProxyStatus) -> Value {
    let version = |t: &str| {
        p.type_status(t)
            .and_then(|s| s.sent_version.clone())
            .unwrap_or_default()
    };
    let updated = |t: &str| p.type_status(t).and_then(|s| s.sent_at).map(rfc3339_millis);
    let entry = |t: &str, key: &str, r: &Value| {
        let mut e = json!({"versionInfo": version(t)});
        e[key] = protojson(r);
        if let Some(u) = updated(t) {
            e["lastUpdated"] = json!(u);
        }
        e
    };
    let clusters: Vec<Value> = res
        .clusters
        .iter()
        .map(|c| entry(CLUSTER, "cluster", c))
        .collect();
    let listeners: Vec<Value> = res
        .listeners
        .iter()
        .map(|l| {
            json!({
                "name": l.get("name").cloned().unwrap_or_default(),
                "activeState": entry(LISTENER, "listener", l),
            })
        })
        .collect();
    let routes: Vec<Value> = res
        .routes
        .iter()
        .map(|r| entry(ROUTE, "routeConfig", r))
        .collect();
    json!({"configs": [
        {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "versionInfo": version(CLUSTER), "dynamicActiveClusters": clusters},
        {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "versionInfo": version(LISTENER), "dynamicListeners": listeners},
        {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump", "dynamicRouteConfigs": routes},
    ]})
}

/// RFC 3339 with milliseconds (`2026-01-01T00:00:00.123Z`).
fn rfc3339_millis(t: SystemTime) -> String {
    let base = xds::rfc3339(t);
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_millis())
        .unwrap_or(0);
    match base.strip_suffix('Z') {
        Some(b) => format!("{b}.{ms:03}Z"),
        None => base,
    }
}

// ---------------------------------------------------------------------------------------------
// store side

fn deployment_template(store: &Store, ns: &str, name: &str) -> Value {
    store
        .get("apps/v1", "Deployment", Some(ns), name)
        .and_then(|d| d.pointer("/spec/template").cloned())
        .unwrap_or(Value::Null)
}

/// `/cacerts/extra.pem` of the `discovery` container of an istiod Deployment, from the
/// store: `Ok("")` when nothing is mounted or the file is absent, `Err` when it is unreadable.
pub fn extra_pem(store: &Store, ns: &str, deployment: &str) -> Result<String> {
    let Some(d) = store.get("apps/v1", "Deployment", Some(ns), deployment) else {
        return Ok(String::new());
    };
    let spec = d
        .pointer("/spec/template/spec")
        .cloned()
        .unwrap_or_default();
    let mount = spec
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c.get("name").and_then(Value::as_str) == Some(istiod::CONTAINER))
        .flat_map(|c| {
            c.get("volumeMounts")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .find(|m| {
            m.get("mountPath")
                .and_then(Value::as_str)
                .map(|p| p.trim_end_matches('/'))
                == Some("/cacerts")
        });
    let Some(mount) = mount else {
        return Ok(String::new());
    };
    let vol_name = mount
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(vol) = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(vol_name))
    else {
        return Ok(String::new());
    };
    // the key that shows up as extra.pem
    let key_of = |src: &Value| -> Option<String> {
        match src.get("items").and_then(Value::as_array) {
            Some(items) => items
                .iter()
                .find(|i| i.get("path").and_then(Value::as_str) == Some("extra.pem"))
                .and_then(|i| i.get("key").and_then(Value::as_str))
                .map(str::to_owned),
            None => Some("extra.pem".to_owned()),
        }
    };
    if let Some(src) = vol.get("secret") {
        let name = src
            .get("secretName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let (Some(key), Some(secret)) = (key_of(src), store.get("v1", "Secret", Some(ns), name))
        else {
            return Ok(String::new());
        };
        if let Some(b64) = secret
            .pointer(&format!("/data/{}", pointer_escape(&key)))
            .and_then(Value::as_str)
        {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .with_context(|| format!("Secret {ns}/{name} key {key} is not base64"))?;
            return Ok(String::from_utf8_lossy(&bytes).into_owned());
        }
        return Ok(String::new());
    }
    if let Some(src) = vol.get("configMap") {
        let name = src.get("name").and_then(Value::as_str).unwrap_or_default();
        let (Some(key), Some(cm)) = (key_of(src), store.get("v1", "ConfigMap", Some(ns), name))
        else {
            return Ok(String::new());
        };
        return Ok(cm
            .pointer(&format!("/data/{}", pointer_escape(&key)))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned());
    }
    Ok(String::new())
}

fn pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The trust of an istiod: its extra bundle (PEM), or why it cannot be read.
fn trust_of(store: &Store, ns: &str, deployment: &str) -> Result<String, String> {
    extra_pem(store, ns, deployment).map_err(|e| format!("{e:#}"))
}

/// Adds 1 to the `discovery` container's restartCount of an istiod pod.
fn bump_restart_count(store: &Store, ns: &str, pod: &str, restarts: u32) {
    let Some(mut obj) = store.get("v1", "Pod", Some(ns), pod) else {
        return;
    };
    let now = xds::rfc3339(SystemTime::now());
    if let Some(statuses) = obj
        .pointer_mut("/status/containerStatuses")
        .and_then(Value::as_array_mut)
    {
        for c in statuses {
            if c.get("name").and_then(Value::as_str) != Some(istiod::CONTAINER) {
                continue;
            }
            let started = c
                .pointer("/state/running/startedAt")
                .cloned()
                .unwrap_or(json!(now));
            c["lastState"] = json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": now}});
            c["state"] = json!({"running": {"startedAt": now}});
            c["restartCount"] = json!(restarts);
        }
    }
    if let Err(e) = store.apply(obj) {
        tracing::warn!("control plane: updating pod {ns}/{pod}: {e:#}");
    }
}

/// The Deployment's status catches up with its generation (`kubectl rollout status` is happy).
fn mark_rolled_out(store: &Store, ns: &str, name: &str) {
    let Some(mut d) = store.get("apps/v1", "Deployment", Some(ns), name) else {
        return;
    };
    let generation = d
        .pointer("/metadata/generation")
        .cloned()
        .unwrap_or(json!(1));
    if d.pointer("/status/observedGeneration") == Some(&generation) {
        return;
    }
    d["status"]["observedGeneration"] = generation;
    if let Err(e) = store.apply(d) {
        tracing::warn!("control plane: updating deployment {ns}/{name}: {e:#}");
    }
}

/// The startup lines of a (re)started istiod, as [`Istiod::start`] writes them.
fn startup_log(istiod: &Istiod, revision: &str, ns: &str) {
    let version = istiod.options().version;
    istiod.log_line("info", "default", "FLAG: --domain=\"cluster.local\"");
    istiod.log_line(
        "info",
        "default",
        &format!("FLAG: --revision=\"{revision}\""),
    );
    istiod.log_line(
        "info",
        "default",
        &format!("initializing Istiod admin server, version {version}"),
    );
    istiod.log_line(
        "info",
        "default",
        &format!("Starting Istiod Server with primary cluster Kubernetes in namespace {ns}"),
    );
    istiod.log_line("info", "ads", "Starting ADS server");
}

/// Reacts to store writes (see the module docs). Ends when the control plane is gone.
async fn watch_store(
    inner: std::sync::Weak<Inner>,
    mut rx: tokio::sync::broadcast::Receiver<StoreEvent>,
) {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    loop {
        let first = match rx.recv().await {
            Ok(ev) => Some(ev),
            Err(RecvError::Lagged(_)) => None,
            Err(RecvError::Closed) => return,
        };
        // take whatever else is already there, so a batch of writes is one regeneration
        let mut events: Vec<Option<StoreEvent>> = vec![first];
        loop {
            match rx.try_recv() {
                Ok(ev) => events.push(Some(ev)),
                Err(TryRecvError::Lagged(_)) => events.push(None),
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        let Some(inner) = inner.upgrade() else { return };
        let cp = ControlPlane { inner };
        cp.handle_events(events).await;
    }
}

impl ControlPlane {
    async fn handle_events(&self, events: Vec<Option<StoreEvent>>) {
        let lagged = events.iter().any(Option::is_none);
        let mut kinds: BTreeMap<(String, String), String> = BTreeMap::new();
        if lagged {
            for k in CONFIG_KINDS {
                for api_version in kind_versions(k) {
                    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
                    kinds.insert(
                        (group.to_owned(), (*k).to_owned()),
                        (*api_version).to_owned(),
                    );
                }
            }
        }
        let mut deployments: BTreeSet<(String, String)> = BTreeSet::new();
        for ev in events.iter().flatten() {
            if CONFIG_KINDS.contains(&ev.kind.as_str()) {
                kinds.insert((ev.group.clone(), ev.kind.clone()), ev.api_version.clone());
            } else if ev.kind == "Deployment"
                && let Some(ns) = &ev.namespace
            {
                deployments.insert((ns.clone(), ev.name.clone()));
            }
        }
        if lagged {
            for r in &self.inner.replicas {
                deployments.insert((r.namespace.clone(), r.deployment.clone()));
            }
        }
        // restarts first (they regenerate anyway)
        let mut restarted = false;
        {
            let mut st = self.inner.gen_state.lock().await;
            refresh_objects(&mut st.scenario, &self.inner.store, &kinds);
        }
        for (ns, name) in deployments {
            let key = (ns.clone(), name.clone());
            let changed = {
                let mut st = self.inner.gen_state.lock().await;
                let Some(old) = st.templates.get(&key) else {
                    continue;
                };
                let now = deployment_template(&self.inner.store, &ns, &name);
                if *old == now {
                    false
                } else {
                    st.templates.insert(key, now);
                    true
                }
            };
            if changed {
                self.restart(&ns, &name).await;
                restarted = true;
            }
        }
        if !kinds.is_empty()
            && !restarted
            && let Err(e) = self.regenerate().await
        {
            tracing::warn!("control plane: regenerating after a config change: {e:#}");
        }
    }
}

/// apiVersions the store is asked for when it has to re-list a kind from scratch.
fn kind_versions(kind: &str) -> &'static [&'static str] {
    match kind {
        "RequestAuthentication" => &["security.istio.io/v1beta1"],
        "Policy" => &["authentication.istio.io/v1alpha1"],
        "DestinationRule" | "VirtualService" => &["networking.istio.io/v1alpha3"],
        _ => &[],
    }
}

/// Replaces the scenario's objects of each (group, kind) by what the store holds now.
fn refresh_objects(
    scenario: &mut Scenario,
    store: &Store,
    kinds: &BTreeMap<(String, String), String>,
) {
    for ((group, kind), api_version) in kinds {
        scenario.objects.retain(|o| {
            let k = o.get("kind").and_then(Value::as_str).unwrap_or_default();
            let g = o
                .get("apiVersion")
                .and_then(Value::as_str)
                .and_then(|v| v.rsplit_once('/'))
                .map_or("", |(g, _)| g);
            !(k == kind && g == group)
        });
        scenario.objects.extend(store.list(api_version, kind, None));
    }
}

// ---------------------------------------------------------------------------------------------
// JWKS fetching

impl Resolver {
    fn new(extra: Result<String, String>) -> Resolver {
        match extra.and_then(|pem| http_client(&pem)) {
            Ok(c) => Resolver {
                client: Some(c),
                client_error: None,
                cache: HashMap::new(),
            },
            Err(e) => Resolver {
                client: None,
                client_error: Some(e),
                cache: HashMap::new(),
            },
        }
    }
}

/// The system's root certificates, loaded once.
fn system_roots() -> &'static [rustls::pki_types::CertificateDer<'static>] {
    static ROOTS: std::sync::OnceLock<Vec<rustls::pki_types::CertificateDer<'static>>> =
        std::sync::OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

/// An HTTPS client trusting the system roots plus `extra_pem`; 5 s timeout, Go's 10
/// redirects.
fn http_client(extra_pem: &str) -> Result<reqwest::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    let _ = roots.add_parsable_certificates(system_roots().iter().cloned());
    let extra: Vec<_> = rustls_pemfile::certs(&mut extra_pem.as_bytes())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("failed to read /cacerts/extra.pem: {e}"))?;
    let (added, _) = roots.add_parsable_certificates(extra);
    if added == 0 && !extra_pem.trim().is_empty() {
        return Err("failed to append certificates from /cacerts/extra.pem".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(JWKS_TIMEOUT)
        .connect_timeout(JWKS_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(10))
        .pool_max_idle_per_host(0)
        .user_agent("Go-http-client/1.1")
        .build()
        .map_err(|e| e.to_string())
}

/// How the Go that built the flavour's istiod words errors.
#[derive(Debug, Clone, Copy)]
struct GoStyle {
    /// Go ≥ 1.14 quotes the URL in `Get "<url>": ...`.
    quote_url: bool,
    /// Go ≥ 1.20 says `tls: failed to verify certificate: x509: ...`.
    tls_prefix: bool,
}

impl GoStyle {
    fn of(scenario: &Scenario) -> GoStyle {
        let minor = match scenario.istio_version() {
            Ok((1, m, _)) => m,
            _ => 30,
        };
        GoStyle {
            quote_url: minor >= 6,
            tls_prefix: minor >= 17,
        }
    }

    /// `Get <url>: <detail>` in this Go's words.
    fn get(self, uri: &str, detail: &str) -> String {
        if self.quote_url {
            format!("Get {uri:?}: {detail}")
        } else {
            format!("Get {uri}: {detail}")
        }
    }

    fn x509(self, detail: &str) -> String {
        if self.tls_prefix {
            format!("tls: failed to verify certificate: {detail}")
        } else {
            detail.to_owned()
        }
    }
}

fn host_port(uri: &str) -> Option<(String, u16)> {
    let u = reqwest::Url::parse(uri).ok()?;
    let host = u.host_str()?.to_owned();
    let port = u.port_or_known_default()?;
    Some((host, port))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.starts_with("127.") || host == "[::1]" || host == "::1"
}

/// A failure decided without the network: the scenario's `jwks_fetch_error` for
/// non-loopback hosts, DNS failure for reserved example domains.
fn short_circuit(scenario: &Scenario, uri: &str, style: GoStyle) -> Option<String> {
    let (host, _) = host_port(uri)?;
    if is_loopback(&host) {
        return None;
    }
    if let Some(e) = &scenario.istio.jwks_fetch_error {
        return Some(e.clone());
    }
    let reserved = [
        ".example.com",
        ".example.org",
        ".example.net",
        ".invalid",
        ".test",
    ];
    let h = format!(".{host}");
    if reserved.iter().any(|r| h.ends_with(r)) {
        return Some(style.get(
            uri,
            &format!("dial tcp: lookup {host} on 172.30.0.10:53: no such host"),
        ));
    }
    None
}

/// GET a JWKS (following an OpenID discovery document first), in istiod's error words.
async fn fetch_jwks(client: &reqwest::Client, uri: &str, style: GoStyle) -> Result<String, String> {
    if uri.ends_with("/.well-known/openid-configuration") {
        let doc = get_body(client, uri, style).await?;
        let v: Value = serde_json::from_str(&doc).map_err(|e| go_json_error(&e))?;
        let jwks_uri = v
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("no jwks_uri in the OpenID configuration of {uri:?}"))?;
        return Box::pin(fetch_jwks(client, jwks_uri, style)).await;
    }
    let body = get_body(client, uri, style).await?;
    let v: Value = serde_json::from_str(&body).map_err(|e| go_json_error(&e))?;
    if !v.get("keys").is_some_and(Value::is_array) {
        return Err("no keys in the JWKS".into());
    }
    Ok(body)
}

async fn get_body(client: &reqwest::Client, uri: &str, style: GoStyle) -> Result<String, String> {
    let resp = client
        .get(uri)
        .send()
        .await
        .map_err(|e| style.get(uri, &describe(&e, uri, style)))?;
    let status = resp.status().as_u16();
    let body = resp
        .bytes()
        .await
        .map_err(|e| style.get(uri, &describe(&e, uri, style)))?;
    let text = String::from_utf8_lossy(&body).into_owned();
    if status != 200 {
        let mut msg: String = text.chars().take(100).collect();
        if text.chars().count() > 100 {
            msg.push_str("...");
        }
        return Err(format!("status {status}, message {msg:?}"));
    }
    Ok(text)
}

/// The detail of a failed request, as Go's net/http would put it.
fn describe(e: &reqwest::Error, uri: &str, style: GoStyle) -> String {
    if e.is_timeout() {
        return "context deadline exceeded (Client.Timeout exceeded while awaiting headers)".into();
    }
    if e.is_redirect() {
        return "stopped after 10 redirects".into();
    }
    let (host, port) = host_port(uri).unwrap_or_default();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let tls = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(t) = tls {
            return tls_detail(t, &host, style);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            let ip = if host == "localhost" {
                "127.0.0.1"
            } else {
                host.as_str()
            };
            return format!("dial tcp {ip}:{port}: connect: connection refused");
        }
        cur = err.source();
    }
    // the chain's types may be hidden behind boxes: go by its words
    let mut text = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        text = format!("{text}: {s}");
        src = s.source();
    }
    if text.contains("UnknownIssuer") {
        return style.x509("x509: certificate signed by unknown authority");
    }
    if text.contains("Expired") || text.contains("NotValidYet") {
        return style.x509("x509: certificate has expired or is not yet valid");
    }
    if text.contains("NotValidForName") || text.contains("not valid for name") {
        return style.x509(&format!("x509: certificate is not valid for {host}"));
    }
    if text.contains("Connection refused") || text.contains("connection refused") {
        let ip = if host == "localhost" {
            "127.0.0.1"
        } else {
            host.as_str()
        };
        return format!("dial tcp {ip}:{port}: connect: connection refused");
    }
    text
}

fn tls_detail(e: &rustls::Error, host: &str, style: GoStyle) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => {
            let detail = match c {
                C::UnknownIssuer => "x509: certificate signed by unknown authority".to_owned(),
                C::Expired
                | C::ExpiredContext { .. }
                | C::NotValidYet
                | C::NotValidYetContext { .. } => {
                    "x509: certificate has expired or is not yet valid".to_owned()
                }
                C::NotValidForNameContext { presented, .. } => format!(
                    "x509: certificate is valid for {}, not {host}",
                    presented.join(", ")
                ),
                C::NotValidForName => format!("x509: certificate is not valid for {host}"),
                other => format!("x509: {other:?}"),
            };
            style.x509(&detail)
        }
        other => format!("remote error: tls: {other}"),
    }
}

/// Go's `encoding/json` message for a body that is not JSON (the common cases).
fn go_json_error(e: &serde_json::Error) -> String {
    if e.is_eof() {
        "unexpected end of JSON input".into()
    } else {
        format!("invalid character looking for beginning of value ({e})")
    }
}

/// The lines istiod logs for a failed fetch, by version (ISTIO.md §4.2): (level, scope, text).
pub fn failure_lines(
    version: (u32, u32, u32),
    issuer: &str,
    uri: &str,
    err: &str,
) -> Vec<(&'static str, &'static str, String)> {
    let (_, minor, patch) = version;
    let mut out = Vec::new();
    if minor < 27 {
        out.push((
            "error",
            "model",
            format!("Failed to fetch public key from {uri:?}: {err}"),
        ));
    } else {
        out.push((
            "error",
            "model",
            format!("Failed to fetch public key from jwks URI {uri:?}: {err}"),
        ));
    }
    match minor {
        0..12 => out.push((
            "error",
            "default",
            format!("Failed to fetch jwt public key from {uri:?}: {err}"),
        )),
        12..15 => out.push((
            "error",
            "default",
            format!("Failed to fetch jwt public key from issuer {issuer:?}, jwks uri {uri:?}: {err}"),
        )),
        15..27 => out.push((
            "info",
            "default",
            format!("The JWKS key is not yet fetched for issuer {issuer} ({uri}), using a fake JWKS for now"),
        )),
        _ if minor > 29 || (minor == 29 && patch >= 1) => out.push((
            "warn",
            "default",
            format!("JWKS fetch failed for issuer {issuer} ({uri}), using public-only JWKS with discarded private key - JWT requests will be rejected"),
        )),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_keys_of_node_ids() {
        assert_eq!(
            proxy_key("sidecar~10.128.0.3~web-1.demo~demo.svc.cluster.local"),
            "web-1.demo"
        );
        assert_eq!(proxy_key("web-1.demo"), "web-1.demo");
    }

    #[test]
    fn go_styles_by_flavour() {
        let legacy = GoStyle {
            quote_url: false,
            tls_prefix: false,
        };
        assert_eq!(
            legacy.get("https://x/certs", "boom"),
            "Get https://x/certs: boom"
        );
        let modern = GoStyle {
            quote_url: true,
            tls_prefix: true,
        };
        assert_eq!(
            modern.get("https://x/certs", &modern.x509("x509: y")),
            "Get \"https://x/certs\": tls: failed to verify certificate: x509: y"
        );
    }

    #[test]
    fn failure_lines_by_version() {
        let l = failure_lines((1, 4, 8), "https://i", "https://i/certs", "E");
        assert_eq!(
            l,
            vec![
                (
                    "error",
                    "model",
                    "Failed to fetch public key from \"https://i/certs\": E".to_owned()
                ),
                (
                    "error",
                    "default",
                    "Failed to fetch jwt public key from \"https://i/certs\": E".to_owned()
                ),
            ]
        );
        let l = failure_lines((1, 30, 0), "https://i", "https://i/certs", "E");
        assert!(
            l[0].2
                .starts_with("Failed to fetch public key from jwks URI")
        );
        assert_eq!(l[1].0, "warn");
    }

    #[test]
    fn protojson_is_camel_case() {
        let c = json!({"@type": CLUSTER, "name": "c", "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": "c", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9}}}}]}]}});
        let v = protojson(&c);
        assert_eq!(v["@type"], CLUSTER);
        assert_eq!(v["connectTimeout"], "1s");
        assert_eq!(v["loadAssignment"]["clusterName"], "c");
        assert_eq!(
            v["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["endpoint"]["address"]["socketAddress"]
                ["portValue"],
            9
        );
    }

    #[test]
    fn extra_pem_from_a_secret_or_configmap() {
        let store = Store::new();
        let dep = |vol: Value| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "istiod", "namespace": "istio-system"},
                "spec": {"template": {"spec": {
                    "containers": [{"name": "discovery", "volumeMounts": [{"name": "extracacerts", "mountPath": "/cacerts"}]}],
                    "volumes": [vol]}}}})
        };
        assert_eq!(extra_pem(&store, "istio-system", "istiod").unwrap(), "");
        store
            .apply(dep(
                json!({"name": "extracacerts", "secret": {"secretName": "s"}}),
            ))
            .unwrap();
        assert_eq!(extra_pem(&store, "istio-system", "istiod").unwrap(), "");
        store
            .apply(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "istio-system"}, "stringData": {"extra.pem": "PEM"}}))
            .unwrap();
        assert_eq!(extra_pem(&store, "istio-system", "istiod").unwrap(), "PEM");
        store
            .apply(dep(json!({"name": "extracacerts", "configMap": {"name": "cm", "items": [{"key": "ca.crt", "path": "extra.pem"}]}})))
            .unwrap();
        store
            .apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "istio-system"}, "data": {"ca.crt": "CM"}}))
            .unwrap();
        assert_eq!(extra_pem(&store, "istio-system", "istiod").unwrap(), "CM");
    }
}
