use crate::error::Hint;

/// What went wrong talking to the cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig could not be loaded.
    #[error("cannot load the kubeconfig{}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Kubeconfig {
        /// The file named by --kubeconfig, if any.
        path: Option<std::path::PathBuf>,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// No kubeconfig and not in a cluster.
    #[error("no cluster configuration found (no kubeconfig, not running in a pod)")]
    Infer(#[source] kube::config::InferConfigError),
    /// The client could not be built from the config.
    #[error("cannot create a Kubernetes client for {url}")]
    Client {
        /// The cluster URL.
        url: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// The apiserver answered with an error `Status`.
    #[error("{action}: {message}")]
    Api {
        /// What we were doing, e.g. `get pod olaf/customer-1`.
        action: String,
        /// HTTP code of the Status.
        code: u16,
        /// Status reason, e.g. `NotFound`, `Forbidden`.
        reason: String,
        /// Status message from the apiserver.
        message: String,
    },
    /// The apiserver could not be reached or the call failed below HTTP.
    #[error("{action} failed")]
    Request {
        /// What we were doing.
        action: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// A call took longer than --request-timeout.
    #[error("{action} timed out after {}s", timeout.as_secs_f64())]
    Timeout {
        /// What we were doing.
        action: String,
        /// The limit.
        timeout: std::time::Duration,
    },
    /// The pod is not Running.
    #[error("pod {namespace}/{name} is {phase}, not Running")]
    NotRunning {
        /// Namespace.
        namespace: String,
        /// Pod.
        name: String,
        /// Its phase.
        phase: String,
    },
    /// The pod has no Envoy container.
    #[error("pod {namespace}/{name} has no {container} container{}", if containers.is_empty() { String::new() } else { format!(" (it has: {})", containers.join(", ")) })]
    NoSidecar {
        /// Namespace.
        namespace: String,
        /// Pod.
        name: String,
        /// The container we looked for.
        container: String,
        /// The containers it has.
        containers: Vec<String>,
    },
    /// A target string we cannot parse.
    #[error("unsupported target {0:?}: use NAME, pod/NAME or deploy/NAME")]
    BadTarget(String),
    /// A deployment whose selector matches nothing.
    #[error("deployment {namespace}/{name} has no pods")]
    NoPods {
        /// Namespace.
        namespace: String,
        /// Deployment.
        name: String,
    },
    /// Neither a target, -l nor -A was given.
    #[error("no pod given")]
    NoTarget,
    /// kube returned no stream for the port we asked for.
    #[error("the port-forward tunnel has no stream for port {0}")]
    NoStream(u16),
    /// Port-forward could not be set up.
    #[error("port-forward to pod {namespace}/{name} port {port} failed")]
    PortForward {
        /// Namespace.
        namespace: String,
        /// Pod.
        name: String,
        /// Port.
        port: u16,
        /// Why.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// Map a kube error for `action` into ours.
    pub fn from_kube(action: impl Into<String>, e: kube::Error) -> Self {
        let action = action.into();
        match e {
            kube::Error::Api(s) => Error::Api {
                action,
                code: s.code,
                reason: s.reason.clone(),
                message: s.message.clone(),
            },
            other => Error::Request {
                action,
                source: other,
            },
        }
    }

    /// The HTTP code of an apiserver error, if this is one.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Error::Api { code, .. } => Some(*code),
            Error::PortForward { source, .. } => source.status_code(),
            _ => None,
        }
    }
}

impl Hint for Error {
    fn hint(&self) -> Option<String> {
        match self {
            Error::Kubeconfig { .. } | Error::Infer(_) => {
                Some("pass --kubeconfig PATH or set KUBECONFIG; check `kubectl config current-context`".into())
            }
            Error::Api { code: 401, .. } => {
                Some("your credentials were rejected: log in again (oc login / refresh the token) and retry".into())
            }
            Error::Api { code: 403, message, .. } => Some(match forbidden_rule(message) {
                Some(rule) => format!("RBAC: you need {rule}; see docs/rbac.md for a minimal Role"),
                None => "RBAC: your user lacks a permission; see docs/rbac.md".into(),
            }),
            Error::Api { code: 404, action, .. } if action.contains("pod") => {
                Some("check the name and namespace: kubectl get pods -n <namespace>".into())
            }
            Error::Api { code: 429 | 500..=599, .. } => {
                Some("the apiserver is overloaded or failing; retry in a moment".into())
            }
            Error::Request { .. } => Some("is the cluster reachable? try `kubectl get --raw /version`".into()),
            Error::Timeout { .. } => Some("raise --request-timeout, or check the cluster is reachable".into()),
            Error::NotRunning { namespace, name, .. } => {
                Some(format!("check it with: kubectl describe pod {name} -n {namespace}"))
            }
            Error::NoSidecar { container, .. } => Some(format!(
                "is sidecar injection on for this namespace (label istio-injection=enabled)? or pass -c if the Envoy container is not called {container}"
            )),
            Error::NoPods { .. } => Some("is the deployment scaled to zero?".into()),
            Error::NoTarget => Some("name a pod (NAME, pod/NAME, deploy/NAME) or use -l SELECTOR / -A".into()),
            Error::BadTarget(_) => Some("e.g. customer-6f8c9d7b5-x2x7k, pod/customer-6f8c9d7b5-x2x7k, deploy/customer".into()),
            Error::PortForward { source, .. } => source.hint(),
            Error::Client { .. } | Error::NoStream(_) | Error::Api { .. } => None,
        }
    }
}

/// From a real apiserver 403 message (`User "u" cannot create resource "pods/portforward" in API
/// group "" in the namespace "ns"`) make `create on pods/portforward in namespace ns`.
pub(crate) fn forbidden_rule(message: &str) -> Option<String> {
    let after = message.split(" cannot ").nth(1)?;
    let mut words = after.split_whitespace();
    let verb = words.next()?;
    let resource = after.split("resource \"").nth(1)?.split('"').next()?;
    let group = after
        .split("API group \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or("");
    let ns = after
        .split("namespace \"")
        .nth(1)
        .and_then(|s| s.split('"').next());
    let mut rule = format!("'{verb}' on {resource}");
    if !group.is_empty() {
        rule.push_str(&format!(" (API group {group})"));
    }
    match ns {
        Some(ns) => rule.push_str(&format!(" in namespace {ns}")),
        None => rule.push_str(" cluster-wide"),
    }
    Some(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_message_names_the_rule() {
        let m = r#"pods "customer-1" is forbidden: User "dev" cannot create resource "pods/portforward" in API group "" in the namespace "olaf-customer""#;
        assert_eq!(
            forbidden_rule(m).unwrap(),
            "'create' on pods/portforward in namespace olaf-customer"
        );
        let m = r#"requestauthentications.security.istio.io is forbidden: User "dev" cannot list resource "requestauthentications" in API group "security.istio.io" at the cluster scope"#;
        assert_eq!(
            forbidden_rule(m).unwrap(),
            "'list' on requestauthentications (API group security.istio.io) cluster-wide"
        );
        assert_eq!(forbidden_rule("nope"), None);
    }
}
