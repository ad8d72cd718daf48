//! Talking to istiod: find its Running pods, then GET a debug path from each through a
//! port-forward (istiod lets port-forwarded callers in: they arrive on localhost).

use bytes::Bytes;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;

use super::Error;
use crate::admin::{self, AdminClient};
use crate::cluster::control_plane::{self, ISTIOD_SELECTORS, REVISION_LABEL};
use crate::cluster::{self, Cluster};

/// Where istiod serves `/debug/*` when the pod does not say otherwise (monitoring port).
pub const MONITORING_PORT: u16 = 15014;
/// istiod's HTTP port; Istio 1.4 pilot (Maistra 1.x) serves `/debug/*` here too.
pub const HTTP_PORT: u16 = 8080;
pub use crate::cluster::control_plane::DEFAULT_ISTIO_NAMESPACE;

/// One Running istiod (or pilot) pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IstiodPod {
    /// Namespace.
    pub namespace: String,
    /// Pod name (what the ISTIOD column shows).
    pub name: String,
    /// Ports to try for `/debug/*`, in order.
    pub ports: Vec<u16>,
}

impl IstiodPod {
    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// From a pod: the `prometheus.io/port` annotation (istioctl 1.20+) first, then 15014, then 8080.
    pub fn from_pod(pod: &Pod) -> Self {
        let mut ports = Vec::new();
        if let Some(p) = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("prometheus.io/port"))
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|p| *p != 0)
        {
            ports.push(p);
        }
        for p in [MONITORING_PORT, HTTP_PORT] {
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        Self {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            ports,
        }
    }
}

/// Find the Running control-plane pods: in `istio_namespace` if given, else in every namespace
/// (falling back to `istio-system` when listing across namespaces is forbidden); `app=istiod`
/// first, then the 1.4/1.5 pilot's `istio=pilot`; only revision `revision` if given.
pub async fn find_istiods(
    cluster: &Cluster,
    istio_namespace: Option<&str>,
    revision: Option<&str>,
) -> Result<Vec<IstiodPod>, Error> {
    let tried: Vec<String> = ISTIOD_SELECTORS
        .iter()
        .map(|base| match revision {
            Some(r) => format!("{base},{REVISION_LABEL}={r}"),
            None => base.to_string(),
        })
        .collect();
    let pods = control_plane::find_istiod_pods(cluster, istio_namespace, revision)
        .await
        .map_err(|source| Error::ListIstiod {
            scope: scope(istio_namespace, &tried),
            source: Box::new(source),
        })?;
    if pods.is_empty() {
        return Err(Error::NoIstiod {
            scope: scope(istio_namespace, &tried),
        });
    }
    Ok(pods.iter().map(IstiodPod::from_pod).collect())
}

fn scope(namespace: Option<&str>, selectors: &[String]) -> String {
    let ns = match namespace {
        Some(ns) => format!("in namespace {ns}"),
        None => "in any namespace".to_string(),
    };
    format!("{ns} (labels {})", selectors.join(" or "))
}

/// Percent-encode a query value (RFC 3986 unreserved characters stay).
pub fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// True when a failure is istiod's own answer, so another port would answer the same: any HTTP
/// status except a bare 404 (a 404 "Proxy not connected..." is an answer too).
fn is_answer(e: &admin::Error) -> bool {
    match e {
        admin::Error::Status {
            status: 404, body, ..
        } => body.contains("not connected"),
        admin::Error::Status { .. } => true,
        _ => false,
    }
}

/// True when `e` is istiod saying it does not hold the proxy (`404 Proxy not connected ...`).
pub fn is_not_connected(e: &Error) -> bool {
    matches!(e, Error::Debug { source, .. } if is_answer(source)
        && matches!(source.as_ref(), admin::Error::Status { status: 404, .. }))
}

/// True when istiod's HTTP debug endpoints look disabled (a bare 404 on every port).
pub fn is_debug_off(e: &Error) -> bool {
    matches!(e, Error::Debug { source, .. }
        if matches!(source.as_ref(), admin::Error::Status { status: 404, body, .. } if !body.contains("not connected")))
}

/// A token for the `default` service account of the istio namespace, audience `istio-ca`,
/// valid one hour (what istioctl asks for).
pub async fn istio_token(cluster: &Cluster, namespace: &str) -> Result<String, Error> {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    let api: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), namespace);
    // Built from JSON: the typed fields' optionality differs between Kubernetes versions.
    let req: TokenRequest = serde_json::from_value(serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"audiences": [super::xds::TOKEN_AUDIENCE], "expirationSeconds": 3600},
    }))
    .unwrap_or_default();
    let r = cluster
        .call(
            format!("create serviceaccounts/token {namespace}/default"),
            || api.create_token_request("default", &crate::cluster::POST_PARAMS, &req),
        )
        .await
        .map_err(|source| Error::XdsToken {
            namespace: namespace.to_string(),
            source: Box::new(source),
        })?;
    let token = serde_json::to_value(&r)
        .ok()
        .and_then(|v| v["status"]["token"].as_str().map(str::to_string))
        .unwrap_or_default();
    Ok(token)
}

/// istiod's syncz over xDS (port 15012, TLS, bearer token): the protobuf `DiscoveryResponse`
/// decoded into the JSON model.
pub async fn xds_syncz(
    cluster: &Cluster,
    istiod: &IstiodPod,
) -> Result<super::model::DiscoveryResponse<'static>, Error> {
    use super::xds;
    let token = istio_token(cluster, &istiod.namespace).await?;
    let fwd = cluster::forward(cluster, &istiod.namespace, &istiod.name, xds::XDS_PORT)
        .await
        .map_err(|source| Error::XdsForward {
            istiod: istiod.id(),
            source: Box::new(source),
        })?;
    let wrap = |source| Error::Xds {
        istiod: istiod.id(),
        source,
    };
    let authority = format!("istiod.{}.svc:{}", istiod.namespace, xds::XDS_PORT);
    let tls = xds::tls(fwd.stream, &format!("istiod.{}.svc", istiod.namespace))
        .await
        .map_err(wrap)?;
    let request = xds::encode_request(&istiod.namespace, xds::SYNCZ_TYPE, &[]);
    let answer = xds::ask(tls, &authority, Some(&token), &request, cluster.timeout)
        .await
        .map_err(wrap)?;
    drop(fwd.tunnel);
    xds::decode_response(&answer).map_err(wrap)
}

/// `GET path` from one istiod: each of its ports in turn until one answers.
pub async fn debug_get(cluster: &Cluster, istiod: &IstiodPod, path: &str) -> Result<Bytes, Error> {
    let mut best: Option<admin::Error> = None;
    let mut tried = Vec::new();
    for &port in &istiod.ports {
        tried.push(port.to_string());
        match get_once(cluster, istiod, port, path).await {
            Ok(b) => return Ok(b),
            Err(e) => {
                let answer = is_answer(&e);
                let status = matches!(e, admin::Error::Status { .. });
                let keep = match &best {
                    None => true,
                    Some(b) => status && !matches!(b, admin::Error::Status { .. }),
                };
                tracing::debug!("{} port {port}: {e}", istiod.id());
                if keep {
                    best = Some(e);
                }
                if answer {
                    break;
                }
            }
        }
    }
    match best {
        Some(source) => Err(Error::Debug {
            istiod: istiod.id(),
            path: path.to_string(),
            ports: tried.join(", "),
            source: Box::new(source),
        }),
        None => Err(Error::NoIstiod {
            scope: format!("with a port to ask ({})", istiod.id()),
        }),
    }
}

async fn get_once(
    cluster: &Cluster,
    istiod: &IstiodPod,
    port: u16,
    path: &str,
) -> Result<Bytes, admin::Error> {
    let target = format!("istiod {}:{port}", istiod.id());
    let fwd = cluster::forward(cluster, &istiod.namespace, &istiod.name, port)
        .await
        .map_err(|source| admin::Error::Forward {
            target: target.clone(),
            source,
        })?;
    let client = AdminClient::over_stream(fwd.stream, target, cluster.timeout).await?;
    let mut client = client.with_tunnel(fwd.tunnel, fwd.error);
    client.get(path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: &str) -> Pod {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn ports_come_from_the_annotation_then_defaults() {
        let p = pod(
            r#"{"metadata":{"name":"istiod-1","namespace":"istio-system",
                "annotations":{"prometheus.io/port":"15015"}},"status":{"phase":"Running"}}"#,
        );
        let i = IstiodPod::from_pod(&p);
        assert_eq!(i.ports, [15015, 15014, 8080]);
        assert_eq!(i.id(), "istio-system/istiod-1");
        let p = pod(
            r#"{"metadata":{"name":"istio-pilot-1","namespace":"istio-system"},"status":{"phase":"Pending"}}"#,
        );
        assert_eq!(IstiodPod::from_pod(&p).ports, [15014, 8080]);
    }

    #[test]
    fn a_not_connected_404_is_an_answer() {
        let status = |code: u16, body: &str| admin::Error::Status {
            target: "t".into(),
            method: "GET",
            path: "debug/config_dump".into(),
            status: code,
            body: body.into(),
        };
        let nc = status(
            404,
            "Proxy not connected to this Pilot instance. It may be connected to another instance.",
        );
        assert!(is_answer(&nc));
        assert!(!is_answer(&status(404, "404 page not found")));
        assert!(is_answer(&status(500, "")));
        let e = Error::Debug {
            istiod: "a/b".into(),
            path: "p".into(),
            ports: "15014".into(),
            source: Box::new(nc),
        };
        assert!(is_not_connected(&e));
    }
}
