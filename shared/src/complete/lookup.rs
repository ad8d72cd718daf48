//! The lookups behind completion: cluster lists, kubeconfig names, Envoy loggers. Every failure
//! is an empty answer (or the fixed fallback list), never an error.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::config::Kubeconfig;
use tokio::time::{Instant, timeout_at};

use super::plan::{Scope, Source, flag_candidates};
use super::words::*;
use super::{Candidate, DEADLINE};
use crate::admin::{self, Endpoint};
use crate::cluster::{self, Cluster, Target, TargetKind};

/// Logger names from Envoy's `POST /logging` answer (`active loggers:` then `  name: level`).
pub(super) fn parse_loggers(body: &str) -> Vec<String> {
    let mut names: Vec<String> = body
        .lines()
        .filter(|l| l.starts_with(char::is_whitespace))
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(name, _)| name.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names.dedup();
    names
}

pub(super) struct Lookup<'a> {
    scope: &'a Scope,
    deadline: Instant,
    /// Connected on first use; `Some(None)` = connecting failed, don't retry.
    cluster: Option<Option<Cluster>>,
}

pub(super) fn words(w: Words) -> Vec<Candidate> {
    w.iter()
        .map(|(v, d)| Candidate {
            value: (*v).to_string(),
            description: Some((*d).to_string()),
        })
        .collect()
}

pub(super) fn plain(names: impl IntoIterator<Item = String>) -> Vec<Candidate> {
    let mut v: Vec<String> = names.into_iter().collect();
    v.sort();
    v.dedup();
    v.into_iter()
        .map(|value| Candidate {
            value,
            description: None,
        })
        .collect()
}

impl<'a> Lookup<'a> {
    pub(super) fn new(scope: &'a Scope, deadline: Instant) -> Self {
        Lookup {
            scope,
            deadline,
            cluster: None,
        }
    }

    pub(super) async fn fetch(&mut self, source: &Source) -> Vec<Candidate> {
        match source {
            Source::Words(w) => words(w),
            Source::Flags(plugin) => flag_candidates(*plugin),
            Source::IstiodScopes => plain(ISTIOD_SCOPES.iter().map(|s| s.to_string())),
            Source::Contexts | Source::Clusters | Source::Users => self.kubeconfig(source),
            Source::EnvoyLoggers { pod } => match self.envoy_loggers(pod.as_deref()).await {
                Some(names) if !names.is_empty() => plain(names),
                _ => plain(ENVOY_LOGGERS.iter().map(|s| s.to_string())),
            },
            Source::Pods | Source::Deployments | Source::Namespaces | Source::Policies => {
                plain(self.names(source).await.unwrap_or_default())
            }
        }
    }

    fn kubeconfig(&self, source: &Source) -> Vec<Candidate> {
        let kc = match &self.scope.kubeconfig {
            Some(p) => Kubeconfig::read_from(p),
            None => Kubeconfig::read(),
        };
        let Ok(kc) = kc else { return Vec::new() };
        plain(match source {
            Source::Contexts => kc.contexts.into_iter().map(|c| c.name).collect::<Vec<_>>(),
            Source::Clusters => kc.clusters.into_iter().map(|c| c.name).collect(),
            _ => kc.auth_infos.into_iter().map(|u| u.name).collect(),
        })
    }

    async fn connect(&mut self) -> Option<Cluster> {
        if self.cluster.is_none() {
            let opts = self.scope.cluster_options();
            let c = timeout_at(self.deadline, cluster::connect(&opts))
                .await
                .ok()
                .and_then(Result::ok);
            self.cluster = Some(c);
        }
        self.cluster.clone().flatten()
    }

    async fn names(&mut self, source: &Source) -> Option<Vec<String>> {
        let c = self.connect().await?;
        let ns = c.namespace.as_str();
        let lp = ListParams::default();
        let names = |items: Vec<Option<String>>| items.into_iter().flatten().collect::<Vec<_>>();
        match source {
            Source::Pods => {
                let api: Api<Pod> = Api::namespaced(c.client.clone(), ns);
                let l = timeout_at(self.deadline, api.list(&lp)).await.ok()?.ok()?;
                Some(names(
                    l.items.into_iter().map(|o| o.metadata.name).collect(),
                ))
            }
            Source::Deployments => {
                let api: Api<Deployment> = Api::namespaced(c.client.clone(), ns);
                let l = timeout_at(self.deadline, api.list(&lp)).await.ok()?.ok()?;
                Some(names(
                    l.items.into_iter().map(|o| o.metadata.name).collect(),
                ))
            }
            Source::Namespaces => {
                let api: Api<Namespace> = Api::all(c.client.clone());
                let l = timeout_at(self.deadline, api.list(&lp)).await.ok()?.ok()?;
                Some(names(
                    l.items.into_iter().map(|o| o.metadata.name).collect(),
                ))
            }
            Source::Policies => {
                // RequestAuthentication (security.istio.io v1, else v1beta1) and the legacy
                // authentication.istio.io/v1alpha1 Policy; a missing CRD just adds nothing.
                let kinds = [
                    ("security.istio.io", "v1", "RequestAuthentication"),
                    ("security.istio.io", "v1beta1", "RequestAuthentication"),
                    ("authentication.istio.io", "v1alpha1", "Policy"),
                ];
                let mut out = Vec::new();
                let mut have_ra = false;
                for (group, version, kind) in kinds {
                    if kind == "RequestAuthentication" && have_ra {
                        continue;
                    }
                    let plural = if kind == "Policy" {
                        "policies"
                    } else {
                        "requestauthentications"
                    };
                    let ar = ApiResource::from_gvk_with_plural(
                        &GroupVersionKind::gvk(group, version, kind),
                        plural,
                    );
                    let api: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), ns, &ar);
                    if let Ok(Ok(l)) = timeout_at(self.deadline, api.list(&lp)).await {
                        have_ra |= kind == "RequestAuthentication";
                        out.extend(l.items.into_iter().filter_map(|o| o.metadata.name));
                    }
                }
                Some(out)
            }
            _ => None,
        }
    }

    /// The logger names of the pod's Envoy (through the admin port-forward) or of
    /// `--admin-url`.
    async fn envoy_loggers(&mut self, pod: Option<&str>) -> Option<Vec<String>> {
        let wait = Some(DEADLINE);
        let mut admin = if let Some(url) = &self.scope.admin_url {
            timeout_at(
                self.deadline,
                admin::open(None, &Endpoint::Url(url.clone()), wait),
            )
            .await
            .ok()?
            .ok()?
        } else {
            let c = self.connect().await?;
            let target = Target {
                kind: TargetKind::Pod(pod?.to_string()),
                container: self.scope.container.clone(),
                admin_port: self.scope.admin_port,
            };
            let resolved = timeout_at(self.deadline, cluster::resolve_pods(&c, &target))
                .await
                .ok()?
                .ok()?;
            let p = resolved.pods.into_iter().next()?;
            timeout_at(
                self.deadline,
                admin::open(Some(&c), &Endpoint::Pod(p), wait),
            )
            .await
            .ok()?
            .ok()?
        };
        let body = timeout_at(self.deadline, admin.logging(&[]))
            .await
            .ok()?
            .ok()?;
        Some(parse_loggers(&body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn w(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn loggers_from_envoy_answer() {
        let body = "active loggers:\n  admin: info\n  rbac: debug\n  http: info\n";
        assert_eq!(parse_loggers(body), w(&["admin", "http", "rbac"]));
    }
}
