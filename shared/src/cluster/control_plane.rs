//! Finding istiod: its Running pods and so its namespace. One rule for every plugin:
//! `app=istiod` (Istio ≥ 1.6), else `istio=pilot` (1.4/1.5 pilot, Maistra 1.x), in `-i` or in
//! every namespace; when listing every namespace is forbidden, `istio-system`.

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;

use super::{Cluster, Error};

/// Label selectors of control-plane pods, newest first.
pub const ISTIOD_SELECTORS: [&str; 2] = ["app=istiod", "istio=pilot"];
/// Where istiod is looked for when nothing else says.
pub const DEFAULT_ISTIO_NAMESPACE: &str = "istio-system";
/// The revision label; pods without it belong to revision `default`.
pub const REVISION_LABEL: &str = "istio.io/rev";

/// The Running, not terminating, control-plane pods in `namespace` (`None` = every namespace),
/// of `revision` if given, sorted by namespace and name. Empty when there are none.
pub async fn find_istiod_pods(
    cluster: &Cluster,
    namespace: Option<&str>,
    revision: Option<&str>,
) -> Result<Vec<Pod>, Error> {
    let mut namespace = namespace.map(str::to_string);
    for selector in ISTIOD_SELECTORS {
        let pods = match list(cluster, namespace.as_deref(), selector).await {
            Ok(p) => p,
            Err(e) if namespace.is_none() && e.status_code() == Some(403) => {
                tracing::info!(
                    "listing pods in all namespaces is forbidden; looking in {DEFAULT_ISTIO_NAMESPACE}"
                );
                namespace = Some(DEFAULT_ISTIO_NAMESPACE.to_string());
                list(cluster, namespace.as_deref(), selector).await?
            }
            Err(e) => return Err(e),
        };
        let mut found: Vec<Pod> = pods
            .into_iter()
            .filter(is_running)
            .filter(|p| of_revision(p, revision))
            .collect();
        if !found.is_empty() {
            found.sort_by(|a, b| {
                (&a.metadata.namespace, &a.metadata.name)
                    .cmp(&(&b.metadata.namespace, &b.metadata.name))
            });
            return Ok(found);
        }
    }
    Ok(Vec::new())
}

/// The control plane's namespace: `given` (`-i`), else the namespace of the first istiod pod
/// found, else `istio-system`.
pub async fn istio_namespace(cluster: &Cluster, given: Option<&str>) -> Result<String, Error> {
    if let Some(ns) = given {
        return Ok(ns.to_string());
    }
    let pods = match find_istiod_pods(cluster, None, None).await {
        Ok(p) => p,
        // Not allowed to look for it: the usual namespace, as when nothing is found.
        Err(e) if e.status_code() == Some(403) => {
            tracing::info!("{e}; assuming {DEFAULT_ISTIO_NAMESPACE}");
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    Ok(pods
        .first()
        .and_then(|p| p.metadata.namespace.clone())
        .unwrap_or_else(|| DEFAULT_ISTIO_NAMESPACE.to_string()))
}

fn is_running(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

fn of_revision(pod: &Pod, revision: Option<&str>) -> bool {
    revision.is_none_or(|rev| {
        let have = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(REVISION_LABEL))
            .map(String::as_str);
        have.unwrap_or("default") == rev
    })
}

async fn list(
    cluster: &Cluster,
    namespace: Option<&str>,
    selector: &str,
) -> Result<Vec<Pod>, Error> {
    let api: Api<Pod> = match namespace {
        Some(ns) => Api::namespaced(cluster.client.clone(), ns),
        None => Api::all(cluster.client.clone()),
    };
    let scope = namespace
        .map(|n| format!(" in {n}"))
        .unwrap_or_else(|| " in all namespaces".into());
    let lp = ListParams::default().labels(selector);
    Ok(cluster
        .call(format!("list pods{scope} -l {selector}"), || api.list(&lp))
        .await?
        .items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(rev: Option<&str>, phase: &str, terminating: bool) -> Pod {
        let mut labels = json!({"app": "istiod"});
        if let Some(r) = rev {
            labels[REVISION_LABEL] = json!(r);
        }
        let mut meta = json!({"name": "istiod-1", "namespace": "istio-system", "labels": labels});
        if terminating {
            meta["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(json!({"metadata": meta, "status": {"phase": phase}})).unwrap()
    }

    #[test]
    fn running_and_not_terminating() {
        assert!(is_running(&pod(None, "Running", false)));
        assert!(!is_running(&pod(None, "Pending", false)));
        assert!(!is_running(&pod(None, "Running", true)));
    }

    #[test]
    fn pods_without_a_revision_label_are_default() {
        assert!(of_revision(&pod(None, "Running", false), Some("default")));
        assert!(!of_revision(&pod(None, "Running", false), Some("canary")));
        assert!(of_revision(
            &pod(Some("canary"), "Running", false),
            Some("canary")
        ));
        assert!(of_revision(&pod(Some("canary"), "Running", false), None));
    }
}
