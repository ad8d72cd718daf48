use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;

use super::{Cluster, Error};

/// The sidecar container Istio injects.
pub const DEFAULT_CONTAINER: &str = "istio-proxy";
/// Envoy's admin port in Istio sidecars.
pub const DEFAULT_ADMIN_PORT: u16 = 15000;

/// What the user named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// `NAME`, `pod/NAME`.
    Pod(String),
    /// `deploy/NAME`: every pod of the deployment.
    Deployment(String),
    /// `-l SELECTOR`.
    Selector(String),
    /// `-A` with no name and no selector: every pod.
    All,
}

/// A target plus the options that shape the pod lookup.
#[derive(Debug, Clone)]
pub struct Target {
    /// What to look up.
    pub kind: TargetKind,
    /// `-c`: the Envoy container; `None` = istio-proxy, else the pod's one Envoy container.
    pub container: Option<String>,
    /// `--admin-port`; `None` = from the pod, else 15000.
    pub admin_port: Option<u16>,
}

impl TargetKind {
    /// Parse `NAME`, `pod/NAME`, `deploy/NAME` (`deployment/`, `deployments/`, `po/`, `pods/`),
    /// or fall back to the selector / `-A`.
    pub fn parse(
        name: Option<&str>,
        selector: Option<&str>,
        all_namespaces: bool,
    ) -> Result<Self, Error> {
        match (name, selector) {
            (Some(n), _) => match n.split_once('/') {
                None if !n.is_empty() => Ok(Self::Pod(n.to_string())),
                Some(("pod" | "pods" | "po", p)) if !p.is_empty() => Ok(Self::Pod(p.to_string())),
                Some((
                    "deploy" | "deployment" | "deployments" | "deployment.apps"
                    | "deployments.apps",
                    d,
                )) if !d.is_empty() => Ok(Self::Deployment(d.to_string())),
                _ => Err(Error::BadTarget(n.to_string())),
            },
            (None, Some(sel)) => Ok(Self::Selector(sel.to_string())),
            (None, None) if all_namespaces => Ok(Self::All),
            (None, None) => Err(Error::NoTarget),
        }
    }

    /// True when the target may name more than one pod.
    pub fn is_multi(&self) -> bool {
        !matches!(self, Self::Pod(_))
    }
}

/// One pod whose Envoy we can reach.
#[derive(Debug, Clone)]
pub struct ProxyPod {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// The Envoy container.
    pub container: String,
    /// The Envoy admin port.
    pub admin_port: u16,
    /// The pod object, for callers that need more (args, annotations).
    pub pod: Pod,
}

impl ProxyPod {
    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
    /// `name.namespace`, the node id istiod knows the proxy by.
    pub fn proxy_id(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }
    /// The args of the Envoy container.
    pub fn container_args(&self) -> Vec<String> {
        container_of(&self.pod, &self.container)
            .and_then(|c| c.args.clone())
            .unwrap_or_default()
    }
    /// The pod's annotations.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        self.pod.metadata.annotations.clone().unwrap_or_default()
    }
}

/// A pod a multi-pod lookup left out, and why.
#[derive(Debug)]
pub struct Skipped {
    /// `namespace/name`.
    pub pod: String,
    /// Why it was left out.
    pub reason: Error,
}

/// The result of resolving a target.
#[derive(Debug, Default)]
pub struct Resolved {
    /// Pods with a reachable Envoy, sorted by namespace and name.
    pub pods: Vec<ProxyPod>,
    /// Pods that matched but have no sidecar (multi-pod lookups only).
    pub skipped: Vec<Skipped>,
}

/// Resolve a target into pods with an Envoy sidecar.
///
/// A single named pod that is not Running or has no sidecar is an error. For multi-pod targets,
/// pods without an Envoy container are skipped (listed in `skipped`) and pods not Running are
/// errors in `skipped` too, so the caller can report them and go on.
pub async fn resolve_pods(cluster: &Cluster, target: &Target) -> Result<Resolved, Error> {
    let ns = cluster.namespace.as_str();
    let pods: Vec<Pod> = match &target.kind {
        TargetKind::Pod(name) => {
            let api: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
            let pod = cluster
                .call(format!("get pod {ns}/{name}"), || api.get(name))
                .await?;
            let p = proxy_pod(pod, target)?;
            return Ok(Resolved {
                pods: vec![p],
                skipped: vec![],
            });
        }
        TargetKind::Deployment(name) => {
            let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), ns);
            let d = cluster
                .call(format!("get deployment {ns}/{name}"), || api.get(name))
                .await?;
            let sel = deployment_selector(&d);
            let pods = list_pods(cluster, Some(ns), Some(&sel)).await?;
            if pods.is_empty() {
                return Err(Error::NoPods {
                    namespace: ns.to_string(),
                    name: name.clone(),
                });
            }
            pods
        }
        TargetKind::Selector(sel) => {
            let scope = (!cluster.all_namespaces).then_some(ns);
            list_pods(cluster, scope, Some(sel)).await?
        }
        TargetKind::All => list_pods(cluster, None, None).await?,
    };
    let mut out = Resolved::default();
    for pod in pods {
        let id = format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or(""),
            pod.metadata.name.as_deref().unwrap_or("")
        );
        match proxy_pod(pod, target) {
            Ok(p) => out.pods.push(p),
            Err(reason) => out.skipped.push(Skipped { pod: id, reason }),
        }
    }
    out.pods
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(out)
}

/// Pods in `ns` (`None`: every namespace), optionally by label selector.
pub async fn list_pods(
    cluster: &Cluster,
    ns: Option<&str>,
    selector: Option<&str>,
) -> Result<Vec<Pod>, Error> {
    let api: Api<Pod> = match ns {
        Some(ns) => Api::namespaced(cluster.client.clone(), ns),
        None => Api::all(cluster.client.clone()),
    };
    let mut lp = ListParams::default();
    if let Some(s) = selector {
        lp = lp.labels(s);
    }
    let scope = ns
        .map(|n| format!(" in {n}"))
        .unwrap_or_else(|| " in all namespaces".into());
    let sel = selector.map(|s| format!(" -l {s}")).unwrap_or_default();
    let list = cluster
        .call(format!("list pods{scope}{sel}"), || api.list(&lp))
        .await?;
    Ok(list.items)
}

/// `matchLabels` + `matchExpressions` of a deployment as a label selector string.
fn deployment_selector(d: &Deployment) -> String {
    let sel = Some(&d.spec.selector);
    let mut parts: Vec<String> = sel
        .and_then(|s| s.match_labels.as_ref())
        .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
        .unwrap_or_default();
    for e in sel
        .and_then(|s| s.match_expressions.as_ref())
        .into_iter()
        .flatten()
    {
        let vals = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({vals})", e.key),
            "NotIn" => format!("{} notin ({vals})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    parts.join(",")
}

fn container_of<'a>(pod: &'a Pod, name: &str) -> Option<&'a k8s_openapi::api::core::v1::Container> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == name)
}

/// Check one pod and find its Envoy container and admin port.
pub fn proxy_pod(pod: Pod, target: &Target) -> Result<ProxyPod, Error> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let containers: Vec<String> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    let container = match &target.container {
        Some(c) => containers.iter().find(|n| *n == c).cloned(),
        None => find_envoy_container(&pod),
    };
    let Some(container) = container else {
        return Err(Error::NoSidecar {
            namespace,
            name,
            container: target
                .container
                .clone()
                .unwrap_or_else(|| DEFAULT_CONTAINER.into()),
            containers,
        });
    };
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Unknown".into());
    if phase != "Running" {
        return Err(Error::NotRunning {
            namespace,
            name,
            phase,
        });
    }
    let admin_port = target
        .admin_port
        .unwrap_or_else(|| admin_port_of(&pod, &container));
    Ok(ProxyPod {
        namespace,
        name,
        container,
        admin_port,
        pod,
    })
}

/// `istio-proxy`, else a container that looks like Envoy (Consul's `envoy-sidecar`, Gloo,
/// Envoy Gateway): named `envoy*` or running an `envoy` image.
fn find_envoy_container(pod: &Pod) -> Option<String> {
    let cs = &pod.spec.as_ref()?.containers;
    if let Some(c) = cs.iter().find(|c| c.name == DEFAULT_CONTAINER) {
        return Some(c.name.clone());
    }
    cs.iter()
        .find(|c| {
            c.name.starts_with("envoy")
                || c.name.ends_with("-envoy")
                || c.image.as_deref().is_some_and(|i| {
                    let base = i.rsplit('/').next().unwrap_or(i);
                    base.starts_with("envoy")
                        || base.starts_with("proxyv2")
                        || base.contains("envoy:")
                })
        })
        .map(|c| c.name.clone())
}

/// The admin port: `proxyAdminPort` in the `proxy.istio.io/config` annotation, an
/// `--admin-port`/`--proxyAdminPort` container arg, Consul's 19000, else 15000.
fn admin_port_of(pod: &Pod, container: &str) -> u16 {
    let ann = pod.metadata.annotations.as_ref();
    if let Some(p) = ann
        .and_then(|a| a.get("proxy.istio.io/config"))
        .and_then(|c| proxy_admin_port(c))
    {
        return p;
    }
    if let Some(c) = container_of(pod, container) {
        let args: Vec<&str> = c
            .command
            .iter()
            .flatten()
            .chain(c.args.iter().flatten())
            .map(String::as_str)
            .collect();
        for (i, a) in args.iter().enumerate() {
            for flag in ["--admin-port", "--proxyAdminPort", "--admin-bind-port"] {
                if let Some(Ok(p)) = a
                    .strip_prefix(flag)
                    .and_then(|r| r.strip_prefix('='))
                    .map(str::parse)
                {
                    return p;
                }
                if *a == flag
                    && let Some(Ok(p)) = args.get(i + 1).map(|v| v.parse())
                {
                    return p;
                }
            }
        }
        if c.name == "envoy-sidecar" || c.image.as_deref().is_some_and(|i| i.contains("consul")) {
            return 19000;
        }
    }
    DEFAULT_ADMIN_PORT
}

/// `proxyAdminPort: 19000` from the annotation (YAML or JSON text).
fn proxy_admin_port(config: &str) -> Option<u16> {
    let i = config.find("proxyAdminPort")?;
    let rest = &config[i + "proxyAdminPort".len()..];
    let rest = rest.trim_start_matches(|c: char| c == '"' || c == ':' || c.is_whitespace());
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|p| *p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: serde_json::Value, phase: &str, annotations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "customer-1", "namespace": "olaf", "annotations": annotations},
            "spec": {"containers": containers},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    fn target() -> Target {
        Target {
            kind: TargetKind::Pod("customer-1".into()),
            container: None,
            admin_port: None,
        }
    }

    #[test]
    fn parses_targets_like_kubectl() {
        assert_eq!(
            TargetKind::parse(Some("a"), None, false).unwrap(),
            TargetKind::Pod("a".into())
        );
        assert_eq!(
            TargetKind::parse(Some("pod/a"), None, false).unwrap(),
            TargetKind::Pod("a".into())
        );
        for d in [
            "deploy/r",
            "deployment/r",
            "deployments/r",
            "deployment.apps/r",
        ] {
            assert_eq!(
                TargetKind::parse(Some(d), None, false).unwrap(),
                TargetKind::Deployment("r".into())
            );
        }
        assert_eq!(
            TargetKind::parse(None, Some("app=x"), false).unwrap(),
            TargetKind::Selector("app=x".into())
        );
        assert_eq!(
            TargetKind::parse(None, None, true).unwrap(),
            TargetKind::All
        );
        assert!(matches!(
            TargetKind::parse(None, None, false),
            Err(Error::NoTarget)
        ));
        assert!(matches!(
            TargetKind::parse(Some("svc/x"), None, false),
            Err(Error::BadTarget(_))
        ));
        assert!(matches!(
            TargetKind::parse(Some("pod/"), None, false),
            Err(Error::BadTarget(_))
        ));
    }

    #[test]
    fn finds_the_istio_sidecar_and_default_port() {
        let p = pod(
            json!([{"name": "app"}, {"name": "istio-proxy"}]),
            "Running",
            json!({}),
        );
        let pp = proxy_pod(p, &target()).unwrap();
        assert_eq!(
            (pp.container.as_str(), pp.admin_port),
            ("istio-proxy", 15000)
        );
        assert_eq!(pp.proxy_id(), "customer-1.olaf");
    }

    #[test]
    fn no_sidecar_is_an_error_that_lists_containers() {
        let p = pod(json!([{"name": "app"}]), "Running", json!({}));
        let e = proxy_pod(p, &target()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pod olaf/customer-1 has no istio-proxy container (it has: app)"
        );
        assert!(
            crate::error::Hint::hint(&e)
                .unwrap()
                .contains("sidecar injection")
        );
    }

    #[test]
    fn not_running_is_an_error() {
        let p = pod(json!([{"name": "istio-proxy"}]), "Pending", json!({}));
        assert_eq!(
            proxy_pod(p, &target()).unwrap_err().to_string(),
            "pod olaf/customer-1 is Pending, not Running"
        );
    }

    #[test]
    fn admin_port_from_annotation_args_and_consul() {
        let p = pod(
            json!([{"name": "istio-proxy"}]),
            "Running",
            json!({"proxy.istio.io/config": "proxyAdminPort: 19001\n"}),
        );
        assert_eq!(proxy_pod(p, &target()).unwrap().admin_port, 19001);
        let p = pod(
            json!([{"name": "istio-proxy"}]),
            "Running",
            json!({"proxy.istio.io/config": "{\"proxyAdminPort\": 15555}"}),
        );
        assert_eq!(proxy_pod(p, &target()).unwrap().admin_port, 15555);
        let p = pod(
            json!([{"name": "app"}, {"name": "envoy-sidecar", "image": "hashicorp/consul-dataplane"}]),
            "Running",
            json!({}),
        );
        let pp = proxy_pod(p, &target()).unwrap();
        assert_eq!(
            (pp.container.as_str(), pp.admin_port),
            ("envoy-sidecar", 19000)
        );
        let p = pod(
            json!([{"name": "proxy", "image": "envoyproxy/envoy:v1.30", "args": ["--admin-port", "9901"]}]),
            "Running",
            json!({}),
        );
        let pp = proxy_pod(p, &target()).unwrap();
        assert_eq!((pp.container.as_str(), pp.admin_port), ("proxy", 9901));
        let mut t = target();
        t.admin_port = Some(1234);
        let p = pod(
            json!([{"name": "istio-proxy"}]),
            "Running",
            json!({"proxy.istio.io/config": "proxyAdminPort: 19001"}),
        );
        assert_eq!(proxy_pod(p, &t).unwrap().admin_port, 1234, "the flag wins");
    }

    #[test]
    fn deployment_selector_string() {
        let d: Deployment = serde_json::from_value(json!({
            "spec": {"selector": {"matchLabels": {"app": "r", "version": "v1"},
                     "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]},
                     "template": {}}
        }))
        .unwrap();
        assert_eq!(deployment_selector(&d), "app=r,version=v1,tier in (a,b)");
    }
}
