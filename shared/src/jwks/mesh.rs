//! A jwksUri served from inside the mesh (istio#40553): istiod fetches it with a plain HTTP(S)
//! client, without the mesh's mTLS, so a STRICT PeerAuthentication on the serving workloads
//! makes the fetch fail. Pure rules here; the cluster lookups in [`in_mesh`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::ListParams;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde::Deserialize;

use crate::cluster::Cluster;

/// The mTLS mode a PeerAuthentication sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtlsMode {
    /// Only mTLS is accepted: istiod's plain fetch is refused.
    Strict,
    /// mTLS and plain traffic.
    Permissive,
    /// No mTLS.
    Disable,
}

impl MtlsMode {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "STRICT" => Some(Self::Strict),
            "PERMISSIVE" => Some(Self::Permissive),
            "DISABLE" => Some(Self::Disable),
            _ => None, // UNSET: inherit
        }
    }
}

/// `security.istio.io` PeerAuthentication, the fields that decide the mode.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerAuthentication {
    /// Namespace.
    #[serde(default)]
    pub namespace: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// The spec.
    #[serde(default)]
    pub spec: PeerAuthenticationSpec,
}

/// PeerAuthentication spec.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerAuthenticationSpec {
    /// Workload selector.
    #[serde(default)]
    pub selector: Option<Selector>,
    /// The mode for all ports.
    #[serde(default)]
    pub mtls: Option<Mtls>,
    /// Per-port modes, keyed by the workload (target) port.
    #[serde(default)]
    pub port_level_mtls: BTreeMap<String, Mtls>,
}

/// `{matchLabels}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    /// Labels that must all match.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// `{mode}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Mtls {
    /// STRICT, PERMISSIVE, DISABLE or UNSET.
    #[serde(default)]
    pub mode: String,
}

/// What decided a workload port's mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The mode.
    pub mode: MtlsMode,
    /// `namespace/name` of the PeerAuthentication, or `None` for Istio's default (PERMISSIVE).
    pub policy: Option<String>,
}

/// `svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local` → (name, namespace); other hosts
/// (with a dot that is not a cluster name) are not in-cluster.
pub fn service_of_host(host: &str, default_ns: &str) -> Option<(String, String)> {
    let host = host.trim_end_matches('.');
    let parts: Vec<&str> = host.split('.').collect();
    match parts.as_slice() {
        [svc]
            if !svc.is_empty()
                && svc.parse::<std::net::Ipv4Addr>().is_err()
                && *svc != "localhost" =>
        {
            Some((svc.to_string(), default_ns.to_string()))
        }
        [svc, ns] | [svc, ns, "svc"] | [svc, ns, "svc", "cluster", "local"] => {
            Some((svc.to_string(), ns.to_string()))
        }
        _ => None,
    }
}

/// Istio's precedence for one workload port: a workload-selector policy in the workload's
/// namespace (its port-level mode first), then the namespace-wide policy, then the mesh-wide
/// policy in the root namespace; UNSET inherits; default PERMISSIVE.
pub fn effective_mode(
    pas: &[PeerAuthentication],
    namespace: &str,
    labels: &BTreeMap<String, String>,
    target_port: u16,
    root_ns: &str,
) -> Decision {
    let selects = |pa: &PeerAuthentication| {
        pa.spec
            .selector
            .as_ref()
            .filter(|s| !s.match_labels.is_empty())
            .is_some_and(|s| s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v)))
    };
    let id = |pa: &PeerAuthentication| Some(format!("{}/{}", pa.namespace, pa.name));
    let mode_of = |m: &Option<Mtls>| m.as_ref().and_then(|m| MtlsMode::parse(&m.mode));
    let namespace_wide = |pa: &&PeerAuthentication| {
        pa.spec
            .selector
            .as_ref()
            .is_none_or(|s| s.match_labels.is_empty())
    };
    // 1. workload policies (oldest-name first for determinism)
    let mut workload: Vec<&PeerAuthentication> = pas
        .iter()
        .filter(|p| p.namespace == namespace && selects(p))
        .collect();
    workload.sort_by(|a, b| a.name.cmp(&b.name));
    for pa in &workload {
        if let Some(m) = pa
            .spec
            .port_level_mtls
            .get(&target_port.to_string())
            .and_then(|m| MtlsMode::parse(&m.mode))
        {
            return Decision {
                mode: m,
                policy: id(pa),
            };
        }
        if let Some(m) = mode_of(&pa.spec.mtls) {
            return Decision {
                mode: m,
                policy: id(pa),
            };
        }
    }
    // 2. namespace-wide, 3. mesh-wide
    for ns in [namespace, root_ns] {
        if let Some(pa) = pas
            .iter()
            .filter(|p| p.namespace == ns)
            .find(namespace_wide)
            && let Some(m) = mode_of(&pa.spec.mtls)
        {
            return Decision {
                mode: m,
                policy: id(pa),
            };
        }
    }
    Decision {
        mode: MtlsMode::Permissive,
        policy: None,
    }
}

/// A jwksUri whose host is an in-mesh Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InMesh {
    /// `namespace/name` of the Service.
    pub service: String,
    /// The Service port the URI uses.
    pub port: u16,
    /// The workload port behind it.
    pub target_port: u16,
    /// Labels of the serving workload (for a port-level exception's selector).
    pub labels: BTreeMap<String, String>,
    /// The mode and what set it.
    pub decision: Decision,
}

impl InMesh {
    /// The fixes: a port-level PERMISSIVE exception for istiod's fetch, or let Envoy fetch the
    /// keys through the mesh.
    pub fn fixes(&self, istio_ns: &str) -> Vec<String> {
        let (ns, svc) = self
            .service
            .split_once('/')
            .unwrap_or(("", self.service.as_str()));
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("\"{k}\": \"{v}\""))
            .collect();
        vec![
            format!(
                "kubectl apply -f - <<< '{{\"apiVersion\":\"security.istio.io/v1beta1\",\"kind\":\"PeerAuthentication\",\"metadata\":{{\"name\":\"{svc}-jwks-permissive\",\"namespace\":\"{ns}\"}},\"spec\":{{\"selector\":{{\"matchLabels\":{{{}}}}},\"mtls\":{{\"mode\":\"STRICT\"}},\"portLevelMtls\":{{\"{}\":{{\"mode\":\"PERMISSIVE\"}}}}}}}}'   # let istiod's plain fetch reach port {} only",
                labels.join(","),
                self.target_port,
                self.target_port
            ),
            format!(
                "kubectl set env deployment -n {istio_ns} -l app=istiod PILOT_JWT_ENABLE_REMOTE_JWKS=hybrid   # or let the sidecars fetch the keys through the mesh (mTLS)"
            ),
        ]
    }
}

/// `(host, port)` of an http(s) URI.
fn host_port(uri: &str) -> Option<(String, u16)> {
    let (scheme, rest) = uri.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let default = if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    };
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            Some((h.to_string(), p.parse().ok()?))
        }
        _ => Some((authority.to_string(), default)),
    }
}

/// Is `uri` served by an in-mesh Service (a Service whose pods run a sidecar)? And how does
/// PeerAuthentication treat istiod's plain fetch? `None` when the host is not a Service here,
/// it has no injected pods, or we may not look.
pub async fn in_mesh(
    cluster: &Cluster,
    uri: &str,
    policy_ns: &str,
    root_ns: &str,
) -> Option<InMesh> {
    let (host, port) = host_port(uri)?;
    let (name, ns) = service_of_host(&host, policy_ns)?;
    let svcs: Api<Service> = Api::namespaced(cluster.client.clone(), &ns);
    let svc = cluster
        .call(format!("get service {ns}/{name}"), || svcs.get_opt(&name))
        .await
        .ok()??;
    let spec = svc.spec?;
    let sp = spec
        .ports
        .as_ref()?
        .iter()
        .find(|p| p.port == i32::from(port))?
        .clone();
    let target_port = match &sp.target_port {
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p)) => {
            u16::try_from(*p).ok()?
        }
        _ => port,
    };
    let selector = spec.selector.filter(|s| !s.is_empty())?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns);
    let lp = ListParams::default().labels(&super::policy::label_selector(&selector));
    let list = cluster
        .call(format!("list pods in {ns}"), || pods.list(&lp))
        .await
        .ok()?;
    let pod = list.items.into_iter().find(|p| {
        p.spec.as_ref().is_some_and(|s| {
            s.containers
                .iter()
                .any(|c| c.name == crate::cluster::DEFAULT_CONTAINER)
        })
    })?;
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let mut pas = Vec::new();
    for version in ["v1", "v1beta1"] {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("security.istio.io", version, "PeerAuthentication"),
            "peerauthentications",
        );
        let mut found = Vec::new();
        let mut ok = true;
        for n in [ns.as_str(), root_ns] {
            let api: Api<DynamicObject> = Api::namespaced_with(cluster.client.clone(), n, &ar);
            match cluster
                .call(format!("list peerauthentications in {n}"), || {
                    api.list(&crate::cluster::LIST_ALL)
                })
                .await
            {
                Ok(l) => found.extend(l.items.into_iter().filter_map(|o| {
                    let mut pa: PeerAuthentication = serde_json::from_value(o.data.clone()).ok()?;
                    pa.namespace = o.metadata.namespace.clone().unwrap_or_default();
                    pa.name = o.metadata.name.clone().unwrap_or_default();
                    Some(pa)
                })),
                Err(_) => ok = false,
            }
        }
        if ok {
            pas = found;
            break;
        }
    }
    let decision = effective_mode(&pas, &ns, &labels, target_port, root_ns);
    let app_labels: BTreeMap<String, String> = labels
        .into_iter()
        .filter(|(k, _)| {
            !k.contains("pod-template-hash")
                && !k.starts_with("security.istio.io")
                && !k.starts_with("service.istio.io")
        })
        .collect();
    Some(InMesh {
        service: format!("{ns}/{name}"),
        port,
        target_port,
        labels: app_labels,
        decision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pa(
        ns: &str,
        name: &str,
        sel: &[(&str, &str)],
        mode: &str,
        ports: &[(u16, &str)],
    ) -> PeerAuthentication {
        PeerAuthentication {
            namespace: ns.into(),
            name: name.into(),
            spec: PeerAuthenticationSpec {
                selector: (!sel.is_empty()).then(|| Selector {
                    match_labels: sel
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                }),
                mtls: (!mode.is_empty()).then(|| Mtls { mode: mode.into() }),
                port_level_mtls: ports
                    .iter()
                    .map(|(p, m)| {
                        (
                            p.to_string(),
                            Mtls {
                                mode: m.to_string(),
                            },
                        )
                    })
                    .collect(),
            },
        }
    }

    fn labels() -> BTreeMap<String, String> {
        [("app".to_string(), "keycloak".to_string())].into()
    }

    #[test]
    fn hosts_of_cluster_services() {
        assert_eq!(
            service_of_host("keycloak", "auth"),
            Some(("keycloak".into(), "auth".into()))
        );
        assert_eq!(
            service_of_host("keycloak.sso", "auth"),
            Some(("keycloak".into(), "sso".into()))
        );
        assert_eq!(
            service_of_host("keycloak.sso.svc.cluster.local", "x"),
            Some(("keycloak".into(), "sso".into()))
        );
        assert_eq!(
            service_of_host("keycloak.sso.svc", "x"),
            Some(("keycloak".into(), "sso".into()))
        );
        assert_eq!(service_of_host("login.example.com", "x"), None);
        assert_eq!(service_of_host("localhost", "x"), None);
        assert_eq!(
            host_port("https://keycloak.sso:8443/certs"),
            Some(("keycloak.sso".into(), 8443))
        );
        assert_eq!(
            host_port("http://keycloak/certs"),
            Some(("keycloak".into(), 80))
        );
    }

    #[test]
    fn precedence_workload_port_then_workload_then_namespace_then_mesh() {
        let root = "istio-system";
        let mesh = pa(root, "default", &[], "STRICT", &[]);
        let d = effective_mode(std::slice::from_ref(&mesh), "sso", &labels(), 8080, root);
        assert_eq!(
            d,
            Decision {
                mode: MtlsMode::Strict,
                policy: Some("istio-system/default".into())
            }
        );

        let ns = pa("sso", "default", &[], "PERMISSIVE", &[]);
        let d = effective_mode(&[mesh.clone(), ns.clone()], "sso", &labels(), 8080, root);
        assert_eq!(d.mode, MtlsMode::Permissive);

        let wl = pa(
            "sso",
            "keycloak",
            &[("app", "keycloak")],
            "STRICT",
            &[(8080, "PERMISSIVE")],
        );
        let d = effective_mode(
            &[mesh.clone(), ns.clone(), wl.clone()],
            "sso",
            &labels(),
            8080,
            root,
        );
        assert_eq!(
            d,
            Decision {
                mode: MtlsMode::Permissive,
                policy: Some("sso/keycloak".into())
            }
        );
        let d = effective_mode(&[mesh.clone(), ns, wl], "sso", &labels(), 9090, root);
        assert_eq!(
            d.mode,
            MtlsMode::Strict,
            "other ports keep the workload's STRICT"
        );

        let unset = pa("sso", "default", &[], "UNSET", &[]);
        assert_eq!(
            effective_mode(&[mesh, unset], "sso", &labels(), 8080, root).mode,
            MtlsMode::Strict,
            "UNSET inherits"
        );
        assert_eq!(
            effective_mode(&[], "sso", &labels(), 8080, root),
            Decision {
                mode: MtlsMode::Permissive,
                policy: None
            }
        );
    }

    #[test]
    fn fixes_name_the_port_and_the_env_var() {
        let m = InMesh {
            service: "sso/keycloak".into(),
            port: 80,
            target_port: 8080,
            labels: labels(),
            decision: Decision {
                mode: MtlsMode::Strict,
                policy: Some("sso/default".into()),
            },
        };
        let f = m.fixes("istio-system");
        assert!(
            f[0].contains("\"8080\":{\"mode\":\"PERMISSIVE\"}")
                && f[0].contains("\"app\": \"keycloak\""),
            "{}",
            f[0]
        );
        assert!(f[1].contains("PILOT_JWT_ENABLE_REMOTE_JWKS"));
    }
}
