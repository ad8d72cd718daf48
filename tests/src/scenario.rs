//! Scenarios: a YAML description of a mesh (namespaces, workloads, services, Istio objects),
//! parsed into typed structs and resolved into a [`Topology`] (every pod with its name, fake IP,
//! labels and proxy settings). The same topology feeds the Kubernetes objects put in the fake
//! apiserver ([`crate::world`]) and the per-pod Envoy configuration ([`crate::sidecar`]).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The scenarios shipped with meshsim, by name, with their YAML text (compiled in, so the binary
/// works from any directory).
pub const BUILTIN: &[(&str, &str)] = &[
    ("seed", include_str!("../scenarios/seed.yaml")),
    ("minimal", include_str!("../scenarios/minimal.yaml")),
    ("scale", include_str!("../scenarios/scale.yaml")),
];

/// A whole scenario file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub istio: IstioSpec,
    /// Namespace written as the kubeconfig context's namespace.
    pub main_namespace: String,
    #[serde(default)]
    pub namespaces: Vec<NamespaceSpec>,
    #[serde(default)]
    pub workloads: Vec<WorkloadSpec>,
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    /// Raw Kubernetes / Istio objects (RequestAuthentication, Policy, DestinationRule,
    /// VirtualService, ConfigMap, Secret, ...) stored verbatim in the apiserver. The Istio ones
    /// also shape the sidecars' Envoy configuration.
    #[serde(default)]
    pub objects: Vec<Value>,
    /// Start a JWKS server (HTTPS, private CA; see [`crate::jwks_server`]) with the world.
    #[serde(default)]
    pub jwks_server: Option<JwksServerSpec>,
}

/// The world's JWKS server (a Keycloak-like realm behind a private CA).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksServerSpec {
    /// The realm (`/auth/realms/<realm>/...`).
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Every string in `objects` that starts with this origin (e.g.
    /// `https://keycloak-olaf-sso.apps.example.com`) gets it replaced by the server's own
    /// (`https://localhost:<port>`), so issuers and jwksUris point at the running server.
    #[serde(default)]
    pub origin: Option<String>,
}

fn default_realm() -> String {
    "olaf".to_owned()
}

/// `down:` of a control-plane workload: every replica, or some by index (0-based).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Down {
    All(bool),
    Replicas(Vec<u32>),
}

impl Default for Down {
    fn default() -> Self {
        Down::All(false)
    }
}

impl Down {
    pub fn is_down(&self, replica: u32) -> bool {
        match self {
            Down::All(b) => *b,
            Down::Replicas(r) => r.contains(&replica),
        }
    }
}

/// The xDS types a scenario can name by their short names.
pub const XDS_SHORT_TYPES: &[&str] = &["CDS", "LDS", "RDS", "EDS"];

/// Which Istio the simulated control plane is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IstioSpec {
    /// Free-form flavour label, e.g. `maistra-1.1` or `istio-1.24`.
    pub flavour: String,
    /// `ISTIO_VERSION` of the proxies, e.g. `1.4.8`.
    pub version: String,
    /// Control plane namespace.
    pub namespace: String,
    /// `CLUSTER_ID` node metadata.
    #[serde(default = "default_cluster_id")]
    pub cluster_id: String,
    /// Image of the injected `istio-proxy` container; default `docker.io/istio/proxyv2:<version>`.
    #[serde(default)]
    pub proxy_image: Option<String>,
    /// What istiod puts in `local_jwks.inline_string` when it cannot fetch a jwksUri; default by
    /// version (ISTIO.md §4.3).
    #[serde(default)]
    pub jwks_placeholder: Option<JwksPlaceholder>,
    /// istiod's fetch of any non-loopback jwksUri fails with this text (Go's error, e.g.
    /// `Get https://sso.example.com/certs: x509: certificate signed by unknown authority`)
    /// instead of going to the network.
    #[serde(default)]
    pub jwks_fetch_error: Option<String>,
}

fn default_cluster_id() -> String {
    "Kubernetes".to_owned()
}

/// The shapes of the JWKS istiod inlines when the fetch of a jwksUri failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JwksPlaceholder {
    /// ≤1.7: the empty fetch result, `inline_string: ""`.
    Empty,
    /// 1.8–1.14: `n` = `Error-IstiodFailedToFetchJwksUri-` + base64url(uri).
    ErrorUriPrefix,
    /// 1.15–1.20: `n` = base64url(`Error-IstiodFailedToFetchJwksUri-` + uri).
    ErrorUriEncoded,
    /// 1.21–1.29.0: the constant `FakeJwks` (an RSA key with its private part).
    FakeJwks,
    /// 1.29.1+: the constant `PublicOnlyJwks`.
    PublicOnlyJwks,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceSpec {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// What a workload's pods are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// An application container (a tiny HTTP server), plus an injected sidecar if `injected`.
    #[default]
    App,
    /// An Istio gateway: one `istio-proxy` container running `proxy router`.
    Gateway,
    /// A control plane pod (pilot/istiod): containers from `containers`, no processes yet.
    ControlPlane,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Deployment name.
    pub name: String,
    pub namespace: String,
    /// `app` label; default: the deployment name.
    #[serde(default)]
    pub app: Option<String>,
    /// `version` label, if any.
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default = "one")]
    pub replicas: u32,
    #[serde(default)]
    pub role: Role,
    /// Has the sidecar injector run on these pods (istio-init, istio-proxy, status annotation)?
    #[serde(default = "yes")]
    pub injected: bool,
    /// Does an injected/gateway pod get a real Envoy process?
    #[serde(default = "yes")]
    pub envoy: bool,
    /// Application container port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Explicit pod names (one per replica); generated otherwise.
    #[serde(default)]
    pub pods: Vec<String>,
    /// The ReplicaSet's pod-template-hash; generated otherwise.
    #[serde(default)]
    pub template_hash: Option<String>,
    /// `host:port` the app calls on every request (through its sidecar when it has one).
    #[serde(default)]
    pub calls: Option<String>,
    /// Application container image.
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub service_account: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// `--proxyLogLevel` of the istio-proxy container (default `warning`).
    #[serde(default)]
    pub proxy_log_level: Option<String>,
    /// `--proxyComponentLogLevel` of the istio-proxy container (default `misc:error`).
    #[serde(default)]
    pub proxy_component_log_level: Option<String>,
    /// Containers of a control-plane pod.
    #[serde(default)]
    pub containers: Vec<ContainerSpec>,
    /// Control plane: the `istio.io/rev` revision (label added to its pods); proxies whose pod
    /// (or namespace) has the label `istio.io/rev: <revision>` connect to it. Default `default`.
    #[serde(default)]
    pub revision: Option<String>,
    /// Control plane: `true` (every replica) or a list of replica indices whose pod exists and
    /// is Running, but whose ports have no backend (port-forwards fail); no proxy connects to it.
    #[serde(default)]
    pub down: Down,
    /// Proxies: the istiod pod (exact name or name prefix) its pods connect to; default
    /// round-robin over the running replicas of their revision.
    #[serde(default)]
    pub istiod: Option<String>,
    /// Proxies: xDS types (`CDS`, `LDS`, `RDS`, `EDS`) istiod pushes an invalid config of
    /// after the first ACK, so Envoy NACKs them (syncz: STALE / ERROR).
    #[serde(default)]
    pub nack: Vec<String>,
    /// Proxies: xDS types istiod never sends (syncz: NOT SENT); their config sources get a 1 s
    /// initial fetch timeout so Envoy still becomes ready.
    #[serde(default)]
    pub hold: Vec<String>,
    /// Control plane: istiod's `ENABLE_DEBUG_ON_HTTP`; `false` makes `/debug/*` answer a bare
    /// 404, so clients must use the xDS debug request on 15012 (istioctl ≥ 1.22 does).
    #[serde(default = "yes")]
    pub http_debug: bool,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}
fn default_port() -> u16 {
    8080
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub ports: Vec<PortSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    pub namespace: String,
    pub ports: Vec<PortSpec>,
    /// Default: `app: <name>`.
    #[serde(default)]
    pub selector: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    #[serde(default)]
    pub name: Option<String>,
    pub port: u16,
    #[serde(default)]
    pub target_port: Option<u16>,
}

impl PortSpec {
    pub fn name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("http-{}", self.port))
    }
    pub fn target(&self) -> u16 {
        self.target_port.unwrap_or(self.port)
    }
}

impl Scenario {
    /// A built-in scenario by name, or a YAML file by path.
    pub fn load(name_or_path: &str) -> Result<Scenario> {
        if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Scenario::parse(text)
                .with_context(|| format!("built-in scenario {name_or_path}"));
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
            bail!(
                "no scenario {name_or_path:?}: not a built-in ({}) and no such file",
                names.join(", ")
            );
        }
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Scenario::parse(&text).with_context(|| format!("scenario file {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Scenario> {
        let s: Scenario = serde_saphyr::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        s.validate()?;
        Ok(s)
    }

    /// Names and one-line descriptions of the built-in scenarios.
    pub fn builtin() -> Vec<(String, String)> {
        BUILTIN
            .iter()
            .map(|(n, text)| {
                let d = Scenario::parse(text)
                    .map(|s| s.description)
                    .unwrap_or_default();
                ((*n).to_owned(), d.lines().next().unwrap_or("").to_owned())
            })
            .collect()
    }

    fn validate(&self) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for w in &self.workloads {
            if !seen.insert((&w.namespace, &w.name)) {
                bail!("workload {}/{} declared twice", w.namespace, w.name);
            }
            if !w.pods.is_empty() && w.pods.len() != w.replicas as usize {
                bail!(
                    "workload {}/{}: {} pod names for {} replicas",
                    w.namespace,
                    w.name,
                    w.pods.len(),
                    w.replicas
                );
            }
            for t in w.nack.iter().chain(&w.hold) {
                if !XDS_SHORT_TYPES.contains(&t.as_str()) {
                    bail!(
                        "workload {}/{}: unknown xDS type {t:?} (one of {})",
                        w.namespace,
                        w.name,
                        XDS_SHORT_TYPES.join(", ")
                    );
                }
            }
            if w.role == Role::ControlPlane && w.containers.is_empty() {
                bail!(
                    "control-plane workload {}/{} needs containers",
                    w.namespace,
                    w.name
                );
            }
        }
        for o in &self.objects {
            for key in ["apiVersion", "kind"] {
                if o.get(key).and_then(Value::as_str).is_none() {
                    bail!("object without {key}: {o}");
                }
            }
            if o.pointer("/metadata/name")
                .and_then(Value::as_str)
                .is_none()
            {
                bail!("object without metadata.name: {o}");
            }
        }
        self.istio_version()?;
        Ok(())
    }

    /// (major, minor, patch) of `istio.version`; a pre-release suffix is ignored.
    pub fn istio_version(&self) -> Result<(u32, u32, u32)> {
        parse_version(&self.istio.version)
    }

    pub fn jwks_placeholder(&self) -> JwksPlaceholder {
        if let Some(p) = self.istio.jwks_placeholder {
            return p;
        }
        let v = self.istio_version().unwrap_or((1, 30, 0));
        match v {
            (1, m, _) if m < 8 => JwksPlaceholder::Empty,
            (1, m, _) if m < 15 => JwksPlaceholder::ErrorUriPrefix,
            (1, m, _) if m < 21 => JwksPlaceholder::ErrorUriEncoded,
            (1, m, p) if m < 29 || (m == 29 && p == 0) => JwksPlaceholder::FakeJwks,
            _ => JwksPlaceholder::PublicOnlyJwks,
        }
    }

    /// Istio before 1.10 named inbound clusters `inbound|<port>|<port-name>|<fqdn>`, later
    /// `inbound|<port>||`. (The cut-over version is from memory of the 1.10 upgrade notes.)
    pub fn legacy_inbound_names(&self) -> bool {
        matches!(self.istio_version(), Ok((1, m, _)) if m < 10)
    }

    /// Istio 1.4/1.5 wrote `filter_metadata.istio.config` as `/apis/networking/v1alpha3/...`
    /// (seen in a real 1.4 dump); later versions `/apis/networking.istio.io/v1alpha3/...`.
    pub fn legacy_config_paths(&self) -> bool {
        matches!(self.istio_version(), Ok((1, m, _)) if m < 6)
    }

    /// Istio 1.x pilot-agent's `--log-format` prefix `[Envoy (Epoch 0)] ` (until about 1.8).
    pub fn legacy_log_format(&self) -> bool {
        matches!(self.istio_version(), Ok((1, m, _)) if m < 9)
    }

    pub fn proxy_image(&self) -> String {
        self.istio
            .proxy_image
            .clone()
            .unwrap_or_else(|| format!("docker.io/istio/proxyv2:{}", self.istio.version))
    }

    /// The `istio.io/rev` a pod belongs to: its own label, else its namespace's, else
    /// `default`. For a control-plane pod, the revision it serves.
    pub fn revision_of(&self, pod: &PodPlan) -> String {
        const REV: &str = "istio.io/rev";
        pod.labels
            .get(REV)
            .or_else(|| {
                self.namespaces
                    .iter()
                    .find(|n| n.name == pod.namespace)
                    .and_then(|n| n.labels.get(REV))
            })
            .cloned()
            .unwrap_or_else(|| "default".to_owned())
    }

    /// Is this workload an istiod / istio-pilot (a control-plane workload with a `discovery`
    /// container)?
    pub fn is_istiod(&self, workload: usize) -> bool {
        self.workloads.get(workload).is_some_and(|w| {
            w.role == Role::ControlPlane && w.containers.iter().any(|c| c.name == "discovery")
        })
    }

    /// Objects of one kind, from `objects`.
    pub fn objects_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects
            .iter()
            .filter(move |o| o.get("kind").and_then(Value::as_str) == Some(kind))
    }

    /// Every pod of the scenario, resolved.
    pub fn topology(&self) -> Result<Topology> {
        let mut pods = Vec::new();
        let mut ip_index: u32 = 0;
        for (wi, w) in self.workloads.iter().enumerate() {
            let hash = w
                .template_hash
                .clone()
                .unwrap_or_else(|| k8s_suffix(&format!("{}/{}/rs", w.namespace, w.name), 10));
            for r in 0..w.replicas {
                let name = match w.pods.get(r as usize) {
                    Some(n) => n.clone(),
                    None => {
                        format!(
                            "{}-{}-{}",
                            w.name,
                            hash,
                            k8s_suffix(&format!("{}/{}/{r}", w.namespace, w.name), 5)
                        )
                    }
                };
                ip_index += 1;
                let ip = format!("10.128.{}.{}", 2 + ip_index / 250, 2 + ip_index % 250);
                let app = w.app.clone().unwrap_or_else(|| w.name.clone());
                let mut labels = BTreeMap::new();
                labels.insert("app".to_owned(), app.clone());
                if let Some(v) = &w.version {
                    labels.insert("version".to_owned(), v.clone());
                }
                labels.extend(w.labels.clone());
                labels.insert("pod-template-hash".to_owned(), hash.clone());
                if w.role == Role::App && w.injected {
                    labels.insert("security.istio.io/tlsMode".to_owned(), "istio".to_owned());
                }
                if let Some(rev) = &w.revision {
                    labels.insert("istio.io/rev".to_owned(), rev.clone());
                }
                let proxy = match w.role {
                    Role::App if w.injected => Some(ProxyKind::Sidecar),
                    Role::Gateway => Some(ProxyKind::Router),
                    _ => None,
                };
                let admin_port = w
                    .annotations
                    .get("proxy.istio.io/config")
                    .and_then(|c| serde_saphyr::from_str::<Value>(c).ok())
                    .and_then(|v| v.get("proxyAdminPort").and_then(Value::as_u64))
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(15000);
                let log_level = w
                    .annotations
                    .get("sidecar.istio.io/logLevel")
                    .or(w.proxy_log_level.as_ref())
                    .cloned()
                    .unwrap_or_else(|| "warning".to_owned());
                let component_log_level = w
                    .annotations
                    .get("sidecar.istio.io/componentLogLevel")
                    .or(w.proxy_component_log_level.as_ref())
                    .cloned()
                    .unwrap_or_else(|| "misc:error".to_owned());
                pods.push(PodPlan {
                    name,
                    namespace: w.namespace.clone(),
                    workload: wi,
                    deployment: w.name.clone(),
                    replica_set: format!("{}-{hash}", w.name),
                    template_hash: hash.clone(),
                    app,
                    version: w.version.clone(),
                    labels,
                    ip,
                    role: w.role,
                    proxy,
                    real_envoy: proxy.is_some() && w.envoy,
                    port: w.port,
                    service_account: w
                        .service_account
                        .clone()
                        .unwrap_or_else(|| "default".to_owned()),
                    admin_port,
                    log_level,
                    component_log_level,
                    replica: r,
                    listen_ip: None,
                });
            }
        }
        let mut names = std::collections::HashSet::new();
        for p in &pods {
            if !names.insert((&p.namespace, &p.name)) {
                bail!("pod {}/{} would exist twice", p.namespace, p.name);
            }
        }
        let services = self
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| ServicePlan {
                name: s.name.clone(),
                namespace: s.namespace.clone(),
                cluster_ip: format!("172.30.{}.{}", 1 + i / 250, 10 + i % 240),
                ports: s.ports.clone(),
                selector: s
                    .selector
                    .clone()
                    .unwrap_or_else(|| BTreeMap::from([("app".to_owned(), s.name.clone())])),
                labels: s.labels.clone(),
            })
            .collect();
        Ok(Topology { pods, services })
    }
}

/// `sidecar` for injected pods, `router` for gateways: the first field of the Envoy node id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    Sidecar,
    Router,
}

impl ProxyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyKind::Sidecar => "sidecar",
            ProxyKind::Router => "router",
        }
    }
}

/// Every pod and service of a scenario, with generated names and fake IPs.
#[derive(Debug, Clone)]
pub struct Topology {
    pub pods: Vec<PodPlan>,
    pub services: Vec<ServicePlan>,
}

#[derive(Debug, Clone)]
pub struct PodPlan {
    pub name: String,
    pub namespace: String,
    /// Index into `Scenario::workloads`.
    pub workload: usize,
    pub deployment: String,
    pub replica_set: String,
    pub template_hash: String,
    pub app: String,
    pub version: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Fake pod IP (`status.podIP`).
    pub ip: String,
    pub role: Role,
    /// Whether the pod has an istio-proxy container and of what kind.
    pub proxy: Option<ProxyKind>,
    /// Whether a real Envoy process runs for it.
    pub real_envoy: bool,
    pub port: u16,
    pub service_account: String,
    pub admin_port: u16,
    pub log_level: String,
    pub component_log_level: String,
    /// Index of the pod among its workload's replicas.
    pub replica: u32,
    /// The loopback address its Envoy's listeners bind, with their real ports (15006, 15001,
    /// 8080, ...) as in the pod's own network namespace; set by the world. `None`: 127.0.0.1
    /// and ephemeral ports.
    pub listen_ip: Option<std::net::Ipv4Addr>,
}

impl PodPlan {
    /// `<pod>.<namespace>`: the proxy id istiod and `istioctl proxy-status` show.
    pub fn proxy_id(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }

    /// The Envoy node id pilot-agent sets: `sidecar~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`.
    pub fn node_id(&self) -> Option<String> {
        self.proxy.map(|k| {
            format!(
                "{}~{}~{}~{}.svc.cluster.local",
                k.as_str(),
                self.ip,
                self.proxy_id(),
                self.namespace
            )
        })
    }

    /// Envoy `--service-cluster`: `<app>.<namespace>`.
    pub fn service_cluster(&self) -> String {
        format!("{}.{}", self.app, self.namespace)
    }

    pub fn matches(&self, selector: &BTreeMap<String, String>) -> bool {
        selector.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }
}

#[derive(Debug, Clone)]
pub struct ServicePlan {
    pub name: String,
    pub namespace: String,
    pub cluster_ip: String,
    pub ports: Vec<PortSpec>,
    pub selector: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

impl ServicePlan {
    pub fn fqdn(&self) -> String {
        format!("{}.{}.svc.cluster.local", self.name, self.namespace)
    }
}

pub fn parse_version(v: &str) -> Result<(u32, u32, u32)> {
    let core = v.split(['-', '+']).next().unwrap_or(v);
    let mut it = core.split('.').map(str::parse::<u32>);
    let major = it
        .next()
        .context("empty version")?
        .with_context(|| format!("bad version {v:?}"))?;
    let minor = it
        .next()
        .unwrap_or(Ok(0))
        .with_context(|| format!("bad version {v:?}"))?;
    let patch = it.next().unwrap_or(Ok(0)).unwrap_or(0);
    Ok((major, minor, patch))
}

/// A deterministic Kubernetes-style random suffix (alphabet of `k8s.io/apimachinery/pkg/util/rand`).
pub fn k8s_suffix(seed: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h = fnv1a(seed.as_bytes());
    (0..len)
        .map(|_| {
            h = h
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ALPHABET[((h >> 33) % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

/// A deterministic UID (UUID text form) for an object.
pub fn uid_for(seed: &str) -> String {
    let a = fnv1a(seed.as_bytes());
    let b = fnv1a(format!("{seed}#2").as_bytes());
    let hex = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse_and_resolve() {
        for (name, _) in BUILTIN {
            let s = Scenario::load(name).unwrap();
            assert_eq!(s.name, *name);
            let t = s.topology().unwrap();
            assert!(!t.pods.is_empty(), "{name}");
        }
    }

    #[test]
    fn seed_has_the_article_objects() {
        let s = Scenario::load("seed").unwrap();
        assert_eq!(s.main_namespace, "olaf-customer");
        assert_eq!(s.jwks_placeholder(), JwksPlaceholder::Empty);
        assert!(s.legacy_inbound_names());
        let t = s.topology().unwrap();
        let names: Vec<&str> = t.pods.iter().map(|p| p.name.as_str()).collect();
        assert!(names.contains(&"customer-6f8c9d7b5-x2x7k"), "{names:?}");
        let pilot = t
            .pods
            .iter()
            .find(|p| p.deployment == "istio-pilot")
            .unwrap();
        assert_eq!(pilot.labels.get("istio").map(String::as_str), Some("pilot"));
        assert!(s.objects_of("RequestAuthentication").count() == 1);
        assert!(s.objects_of("Policy").count() == 1);
        let customer = t.pods.iter().find(|p| p.app == "customer").unwrap();
        assert_eq!(
            customer.node_id().unwrap(),
            format!(
                "sidecar~{}~customer-6f8c9d7b5-x2x7k.olaf-customer~olaf-customer.svc.cluster.local",
                customer.ip
            )
        );
    }

    #[test]
    fn placeholder_by_version() {
        let mut s = Scenario::load("minimal").unwrap();
        for (v, want) in [
            ("1.4.8", JwksPlaceholder::Empty),
            ("1.8.0", JwksPlaceholder::ErrorUriPrefix),
            ("1.15.3", JwksPlaceholder::ErrorUriEncoded),
            ("1.21.0", JwksPlaceholder::FakeJwks),
            ("1.29.0", JwksPlaceholder::FakeJwks),
            ("1.29.1", JwksPlaceholder::PublicOnlyJwks),
            ("1.30.0-beta.1", JwksPlaceholder::PublicOnlyJwks),
        ] {
            s.istio.version = v.to_owned();
            assert_eq!(s.jwks_placeholder(), want, "{v}");
        }
    }

    #[test]
    fn names_are_deterministic_and_k8s_like() {
        let a = k8s_suffix("x", 5);
        assert_eq!(a, k8s_suffix("x", 5));
        assert_eq!(a.len(), 5);
        assert_ne!(a, k8s_suffix("y", 5));
        let u = uid_for("pod/x");
        assert_eq!(u.len(), 36);
    }

    #[test]
    fn proxy_settings_from_annotations() {
        let mut s = Scenario::load("minimal").unwrap();
        let w = &mut s.workloads[0];
        w.annotations
            .insert("sidecar.istio.io/logLevel".into(), "debug".into());
        w.annotations.insert(
            "sidecar.istio.io/componentLogLevel".into(),
            "rbac:debug,jwt:trace".into(),
        );
        w.annotations.insert(
            "proxy.istio.io/config".into(),
            "proxyAdminPort: 19000\n".into(),
        );
        let t = s.topology().unwrap();
        let web = &t.pods[0];
        assert_eq!(
            (
                web.log_level.as_str(),
                web.component_log_level.as_str(),
                web.admin_port
            ),
            ("debug", "rbac:debug,jwt:trace", 19000)
        );
        s.workloads[0].annotations.clear();
        s.workloads[0].proxy_log_level = Some("info".into());
        let t = s.topology().unwrap();
        assert_eq!(
            (t.pods[0].log_level.as_str(), t.pods[0].admin_port),
            ("info", 15000)
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = Scenario::parse("name: x\nistio: {flavour: a, version: 1.4.8, namespace: i}\nmain_namespace: d\nbogus: 1\n")
            .unwrap_err();
        assert!(format!("{err:#}").contains("bogus"), "{err:#}");
    }
}
