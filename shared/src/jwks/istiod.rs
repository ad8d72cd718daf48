//! The cluster side of istiod: its Deployment(s), the bundle they mount at `/cacerts`
//! (read, append, remove with read–modify–write), and its log.

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::Api;
use kube::api::{ListParams, LogParams};
use serde_json::Value;

use super::Error;
use super::cacerts::{BundleSource, CONTAINER};
use super::policy;
use crate::cluster::Cluster;

/// The istiod/istio-pilot Deployment of a namespace (`name` picks one of several).
pub async fn find_istiod(
    cluster: &Cluster,
    ns: &str,
    name: Option<&str>,
) -> Result<Vec<Deployment>, crate::Error> {
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), ns);
    if let Some(n) = name {
        let d = cluster
            .call(format!("get deployment {ns}/{n}"), || api.get(n))
            .await?;
        return Ok(vec![d]);
    }
    let list = cluster
        .call(format!("list deployments in {ns}"), || {
            api.list(&crate::cluster::LIST_ALL)
        })
        .await?;
    let mut found: Vec<Deployment> = list
        .items
        .into_iter()
        .filter(|d| {
            d.spec
                .template
                .spec
                .as_ref()
                .is_some_and(|s| s.containers.iter().any(|c| c.name == CONTAINER))
        })
        .collect();
    found.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    if found.is_empty() {
        return Err(Error::NoIstiod {
            namespace: ns.to_string(),
        }
        .into());
    }
    Ok(found)
}

/// Exactly one istiod.
pub async fn one_istiod(
    cluster: &Cluster,
    ns: &str,
    name: Option<&str>,
) -> Result<Deployment, crate::Error> {
    let mut all = find_istiod(cluster, ns, name).await?;
    if all.len() > 1 {
        return Err(Error::ManyIstiod {
            namespace: ns.to_string(),
            names: all.iter().filter_map(|d| d.metadata.name.clone()).collect(),
        }
        .into());
    }
    all.pop().ok_or_else(|| {
        Error::NoIstiod {
            namespace: ns.to_string(),
        }
        .into()
    })
}

/// Read the bundle of a source: `None` when the object or key does not exist.
pub async fn read_bundle(
    cluster: &Cluster,
    ns: &str,
    source: &BundleSource,
) -> Result<Option<String>, crate::Error> {
    match source {
        BundleSource::Secret { name, key } => {
            let api: Api<Secret> = Api::namespaced(cluster.client.clone(), ns);
            let s = cluster
                .call(format!("get secret {ns}/{name}"), || api.get_opt(name))
                .await?;
            Ok(s.and_then(|s| s.data)
                .and_then(|d| d.get(key).cloned())
                .map(|b| String::from_utf8_lossy(&b.0).into_owned()))
        }
        BundleSource::ConfigMap { name, key } => {
            let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), ns);
            let c = cluster
                .call(format!("get configmap {ns}/{name}"), || api.get_opt(name))
                .await?;
            Ok(c.and_then(|c| c.data).and_then(|d| d.get(key).cloned()))
        }
        BundleSource::Other { .. } => Ok(None),
    }
}

/// Write a bundle (create the object if absent; read–modify–write with resourceVersion,
/// re-reading once on a conflict). `change` maps the current bundle to the new one.
pub async fn write_bundle<F>(
    cluster: &Cluster,
    ns: &str,
    source: &BundleSource,
    change: F,
) -> Result<bool, crate::Error>
where
    F: Fn(&str) -> Result<Option<String>, Error>,
{
    for _attempt in 0..2 {
        let done = match source {
            BundleSource::Secret { name, key } => {
                let api: Api<Secret> = Api::namespaced(cluster.client.clone(), ns);
                let cur = cluster
                    .call(format!("get secret {ns}/{name}"), || api.get_opt(name))
                    .await?;
                let text = cur
                    .as_ref()
                    .and_then(|s| s.data.as_ref())
                    .and_then(|d| d.get(key))
                    .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                    .unwrap_or_default();
                let Some(new) = change(&text)? else {
                    return Ok(false);
                };
                match cur {
                    Some(mut s) => {
                        s.data
                            .get_or_insert_with(Default::default)
                            .insert(key.clone(), ByteString(new.into_bytes()));
                        let r = cluster
                            .call(format!("update secret {ns}/{name}"), || {
                                api.replace(name, &crate::cluster::POST_PARAMS, &s)
                            })
                            .await;
                        conflict_or(r)?
                    }
                    None => {
                        let s = Secret {
                            metadata: kube::api::ObjectMeta {
                                name: Some(name.clone()),
                                namespace: Some(ns.to_string()),
                                labels: Some(
                                    [(
                                        "app.kubernetes.io/managed-by".to_string(),
                                        "kubectl-jwks-trust".to_string(),
                                    )]
                                    .into(),
                                ),
                                ..Default::default()
                            },
                            data: Some([(key.clone(), ByteString(new.into_bytes()))].into()),
                            ..Default::default()
                        };
                        let r = cluster
                            .call(format!("create secret {ns}/{name}"), || {
                                api.create(&crate::cluster::POST_PARAMS, &s)
                            })
                            .await;
                        conflict_or(r)?
                    }
                }
            }
            BundleSource::ConfigMap { name, key } => {
                let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), ns);
                let cur = cluster
                    .call(format!("get configmap {ns}/{name}"), || api.get_opt(name))
                    .await?;
                let Some(mut cm) = cur else {
                    return Err(Error::ForeignMount {
                        deployment: ns.to_string(),
                        source_desc: format!("configmap/{name}, which does not exist"),
                    }
                    .into());
                };
                let text = cm
                    .data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .cloned()
                    .unwrap_or_default();
                let Some(new) = change(&text)? else {
                    return Ok(false);
                };
                cm.data
                    .get_or_insert_with(Default::default)
                    .insert(key.clone(), new);
                let r = cluster
                    .call(format!("update configmap {ns}/{name}"), || {
                        api.replace(name, &crate::cluster::POST_PARAMS, &cm)
                    })
                    .await;
                conflict_or(r)?
            }
            BundleSource::Other { description } => {
                return Err(Error::ForeignMount {
                    deployment: ns.to_string(),
                    source_desc: description.clone(),
                }
                .into());
            }
        };
        if done {
            return Ok(true);
        }
    }
    Err(Error::Conflict {
        what: format!("{} in {ns}", source.describe()),
    }
    .into())
}

/// Delete our Secret; `false` when it was not there.
pub async fn delete_secret(cluster: &Cluster, ns: &str, name: &str) -> Result<bool, crate::Error> {
    let api: Api<Secret> = Api::namespaced(cluster.client.clone(), ns);
    let r = cluster
        .call(format!("delete secret {ns}/{name}"), || {
            api.delete(name, &crate::cluster::DELETE_PARAMS)
        })
        .await;
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.status_code() == Some(404) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn conflict_or<T>(r: Result<T, crate::cluster::Error>) -> Result<bool, crate::Error> {
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.status_code() == Some(409) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Check that the Deployment can be read and updated (a server-side dry run of an unchanged
/// update), so that a change touching a Secret and the Deployment fails before its first write
/// when RBAC would stop its second.
pub async fn preflight_update_deployment(
    cluster: &Cluster,
    ns: &str,
    name: &str,
) -> Result<(), crate::Error> {
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), ns);
    let cur = cluster
        .call(format!("get deployment {ns}/{name}"), || api.get(name))
        .await?;
    let dry = kube::api::PostParams {
        dry_run: true,
        ..Default::default()
    };
    let r = cluster
        .call(format!("update deployment {ns}/{name}"), || {
            api.replace(name, &dry, &cur)
        })
        .await;
    // A conflict means someone changed it since our read: the update itself is allowed (RBAC
    // and admission come first), and the real update re-reads on a conflict.
    conflict_or(r).map(|_| ())
}

/// Read–modify–write a Deployment: `change` gets the current object and returns the new one
/// (or `None` for no change). On a 409 the Deployment is re-read and `change` applied once more.
pub async fn update_deployment<F>(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    change: F,
) -> Result<bool, crate::Error>
where
    F: Fn(&Value) -> Result<Option<Value>, Error>,
{
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), ns);
    for _attempt in 0..2 {
        let cur = cluster
            .call(format!("get deployment {ns}/{name}"), || api.get(name))
            .await?;
        let v = serde_json::to_value(&cur).map_err(|source| Error::Encode {
            what: format!("deployment {ns}/{name}"),
            source,
        })?;
        let Some(new) = change(&v)? else {
            return Ok(false);
        };
        let d: Deployment = serde_json::from_value(new).map_err(|source| Error::Encode {
            what: format!("deployment {ns}/{name}"),
            source,
        })?;
        let r = cluster
            .call(format!("update deployment {ns}/{name}"), || {
                api.replace(name, &crate::cluster::POST_PARAMS, &d)
            })
            .await;
        if conflict_or(r)? {
            return Ok(true);
        }
    }
    Err(Error::Conflict {
        what: format!("deployment {ns}/{name}"),
    }
    .into())
}

/// The message fragments of istiod's JWKS resolver log lines, all versions (ISTIO.md §4.2).
const LOG_FRAGMENTS: &[&str] = &[
    "failed to fetch",
    "failed to get",
    "failed to refresh",
    "not a valid jwks",
    "does not support fetch public key",
    "not yet fetched",
    "fake jwks",
    "public-only jwks",
    "failed to look up envoy cluster",
    "updated cached jwt public key",
];

/// The last `max` lines of istiod's log about `uri` (or, for discovery, the issuer).
pub fn matching_log_lines(log: &[String], uri: &str, issuer: &str, max: usize) -> Vec<String> {
    let hits: Vec<&String> = log
        .iter()
        .filter(|l| {
            (l.contains(uri) || (!issuer.is_empty() && l.contains(issuer)))
                && LOG_FRAGMENTS
                    .iter()
                    .any(|f| l.to_ascii_lowercase().contains(f))
        })
        .collect();
    let mut out: Vec<String> = Vec::new();
    for l in hits.iter().rev() {
        let t = l.trim().to_string();
        if !out.contains(&t) {
            out.push(t);
        }
        if out.len() == max {
            break;
        }
    }
    out.reverse();
    out
}

/// The last `lines` lines of the `discovery` container of every pod of these Deployments.
pub async fn istiod_log(
    cluster: &Cluster,
    ns: &str,
    deployments: &[Deployment],
    lines: i64,
) -> Result<Vec<String>, crate::Error> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let mut out = Vec::new();
    for d in deployments {
        let sel = d
            .spec
            .selector
            .match_labels
            .as_ref()
            .map(policy::label_selector)
            .unwrap_or_default();
        if sel.is_empty() {
            continue;
        }
        let lp = ListParams::default().labels(&sel);
        let pods = cluster
            .call(format!("list pods in {ns} -l {sel}"), || api.list(&lp))
            .await?;
        for p in pods.items {
            let name = p.metadata.name.clone().unwrap_or_default();
            let lp = LogParams {
                container: Some(CONTAINER.into()),
                tail_lines: Some(lines),
                ..LogParams::default()
            };
            let text = cluster
                .call(format!("get logs of pod {ns}/{name} -c discovery"), || {
                    api.logs(&name, &lp)
                })
                .await?;
            out.extend(text.lines().map(str::to_string));
        }
    }
    Ok(out)
}

/// True when istiod's latest line about a URI says its fetch failed (a later
/// `Updated cached JWT public key` means it recovered).
pub fn has_fetch_error(lines: &[String]) -> bool {
    lines.last().is_some_and(|l| {
        let l = l.to_ascii_lowercase();
        l.contains("failed")
            || l.contains("fake jwks")
            || l.contains("not a valid jwks")
            || l.contains("does not support fetch")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_of_every_version_match() {
        let uri = "https://sso.example.com/certs";
        let log: Vec<String> = [
            "2020-01-01T00:00:00Z\terror\tmodel\tFailed to fetch public key from \"https://sso.example.com/certs\": Get https://sso.example.com/certs: x509: certificate signed by unknown authority",
            "2020-01-01T00:00:01Z\terror\tFailed to fetch jwt public key from \"https://sso.example.com/certs\": x",
            "2024-01-01T00:00:00Z\tinfo\tThe JWKS key is not yet fetched for issuer https://sso (https://sso.example.com/certs), using a fake JWKS for now",
            "2025-01-01T00:00:00Z\terror\tmodel\tFailed to fetch public key from jwks URI \"https://sso.example.com/certs\": Get \"https://sso.example.com/certs\": tls: failed to verify certificate: x509: certificate signed by unknown authority",
            "2025-01-01T00:00:00Z\tinfo\tads\tPush debounce stable",
            "2025-01-01T00:00:00Z\terror\tmodel\tFailed to fetch public key from jwks URI \"https://other/certs\": x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let m = matching_log_lines(&log, uri, "https://nomatch", 3);
        assert_eq!(m.len(), 3);
        assert!(m[2].contains("tls: failed to verify certificate"));
        assert!(m[1].contains("fake JWKS"));
        assert!(has_fetch_error(&m));
        let mut recovered = m.clone();
        recovered.push("2025-01-01T00:01:00Z\tinfo\tmodel\tUpdated cached JWT public key from \"https://sso.example.com/certs\"".into());
        assert!(!has_fetch_error(&recovered));
        assert!(matching_log_lines(&log, "https://nothing", "", 3).is_empty());
    }
}
