//! Fault knobs the plugin tests turn: RBAC denials, injected status codes, latency, port-forwards
//! cut short, and pod ports that stop answering.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// What the world wired a pod to: pod port → local address, container → log file.
#[derive(Debug, Clone, Default)]
pub struct PodBackend {
    pub ports: HashMap<u16, SocketAddr>,
    pub logs: HashMap<String, PathBuf>,
}

/// Pod backends by (namespace, pod).
#[derive(Clone, Default)]
pub(crate) struct Backends(Arc<Mutex<HashMap<(String, String), PodBackend>>>);

impl Backends {
    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), PodBackend>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn set(&self, ns: &str, pod: &str, b: PodBackend) {
        self.lock().insert((ns.into(), pod.into()), b);
    }

    pub fn get(&self, ns: &str, pod: &str) -> Option<PodBackend> {
        self.lock().get(&(ns.to_string(), pod.to_string())).cloned()
    }

    pub fn remove_port(&self, ns: &str, pod: &str, port: u16) {
        if let Some(b) = self.lock().get_mut(&(ns.to_string(), pod.to_string())) {
            b.ports.remove(&port);
        }
    }
}

#[derive(Debug, Clone)]
struct DenyRule {
    verb: String,
    resource: String,
    namespace: Option<String>,
}

#[derive(Debug, Clone)]
struct FailRule {
    /// Only requests of this HTTP method (`PUT`, ...); any method when `None`.
    method: Option<String>,
    path_contains: String,
    code: u16,
    remaining: Option<usize>,
    retry_after: Option<u64>,
}

#[derive(Debug, Clone)]
struct LatencyRule {
    path_contains: String,
    delay: Duration,
}

#[derive(Debug, Clone)]
struct DropRule {
    after_bytes: usize,
    remaining: Option<usize>,
}

#[derive(Debug, Default)]
struct FaultState {
    denies: Vec<DenyRule>,
    /// When set, RBAC is on: only these rules are granted (a Role/ClusterRole binding).
    grants: Option<Vec<DenyRule>>,
    failures: Vec<FailRule>,
    latencies: Vec<LatencyRule>,
    drops: Vec<DropRule>,
}

/// Cloneable handle to the fault knobs of one [`super::ApiServer`].
#[derive(Clone)]
pub struct Faults {
    state: Arc<Mutex<FaultState>>,
    backends: Backends,
}

fn strip_group(resource: &str) -> String {
    // "deployments.apps/status" -> "deployments/status"
    let (res, sub) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (resource, None),
    };
    let res = res.split('.').next().unwrap_or(res);
    match sub {
        Some(s) => format!("{res}/{s}"),
        None => res.to_string(),
    }
}

impl Faults {
    pub(crate) fn new(backends: Backends) -> Faults {
        Faults {
            state: Arc::default(),
            backends,
        }
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// RBAC says no: `verb` (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`, or `*`) on `resource` (`pods`, `pods/portforward`, `pods/exec`,
    /// `pods/log`, `deployments`, `secrets`, ...; a `.group` suffix is ignored; `*` for all),
    /// in every namespace. Answered with 403 in the apiserver's words.
    pub fn deny(&self, verb: &str, resource: &str) {
        self.lock().denies.push(DenyRule {
            verb: verb.into(),
            resource: strip_group(resource),
            namespace: None,
        });
    }

    /// Like [`Faults::deny`], only in one namespace.
    pub fn deny_in(&self, namespace: &str, verb: &str, resource: &str) {
        self.lock().denies.push(DenyRule {
            verb: verb.into(),
            resource: strip_group(resource),
            namespace: Some(namespace.into()),
        });
    }

    /// Turn RBAC on: from now on only what a Role grants is allowed. Each rule is
    /// `(verbs, resources, namespace)` as in a Role's `rules` (`resources` like `pods`,
    /// `pods/portforward`, `deployments.apps`; `None` namespace = a ClusterRole binding).
    /// Everything else is answered 403 in the apiserver's words. `grant_only(vec![])` denies all.
    pub fn grant_only(&self, rules: Vec<(Vec<String>, Vec<String>, Option<String>)>) {
        let mut grants = Vec::new();
        for (verbs, resources, ns) in rules {
            for v in &verbs {
                for r in &resources {
                    grants.push(DenyRule {
                        verb: v.clone(),
                        resource: strip_group(r),
                        namespace: ns.clone(),
                    });
                }
            }
        }
        self.lock().grants = Some(grants);
    }

    /// Remove the denials of `verb` on `resource`.
    pub fn allow(&self, verb: &str, resource: &str) {
        let resource = strip_group(resource);
        self.lock()
            .denies
            .retain(|d| !(d.verb == verb && d.resource == resource));
    }

    /// Answer requests whose path contains `path_contains` with `code` (429 and 503 carry
    /// `Retry-After: 1`) — `times` times, or always when `None`.
    ///
    /// Note: kube-rs 5 clients retry 429/503/504 by default (up to 15 times, honouring
    /// `Retry-After`), so `times: None` with those codes makes a kube client wait a long time.
    pub fn fail(&self, path_contains: &str, code: u16, times: Option<usize>) {
        self.lock().failures.push(FailRule {
            method: None,
            path_contains: path_contains.into(),
            code,
            remaining: times,
            retry_after: None,
        });
    }

    /// Like [`Faults::fail`] with an explicit `Retry-After` header value (seconds), for any code.
    pub fn fail_with_retry_after(
        &self,
        path_contains: &str,
        code: u16,
        times: Option<usize>,
        retry_after_secs: u64,
    ) {
        self.lock().failures.push(FailRule {
            method: None,
            path_contains: path_contains.into(),
            code,
            remaining: times,
            retry_after: Some(retry_after_secs),
        });
    }

    /// [`Faults::fail`] for requests of one HTTP method only (e.g. every `PUT` of an object
    /// answered 409, as if someone kept changing it, while its `GET`s succeed).
    pub fn fail_method(&self, method: &str, path_contains: &str, code: u16, times: Option<usize>) {
        self.lock().failures.push(FailRule {
            method: Some(method.to_ascii_uppercase()),
            path_contains: path_contains.into(),
            code,
            remaining: times,
            retry_after: None,
        });
    }

    /// Delay every request whose path contains `path_contains`.
    pub fn latency(&self, path_contains: &str, delay: Duration) {
        self.lock().latencies.push(LatencyRule {
            path_contains: path_contains.into(),
            delay,
        });
    }

    /// Cut port-forward websockets abruptly (no close handshake) once `after_bytes` bytes of
    /// pod data have been forwarded to the client — for the next `times` port-forwards, or
    /// all when `None`.
    pub fn drop_port_forward_after(&self, after_bytes: usize, times: Option<usize>) {
        self.lock().drops.push(DropRule {
            after_bytes,
            remaining: times,
        });
    }

    /// The pod's port stops answering: port-forwards to it get the kubelet's error-channel
    /// message, exec emulation can't connect.
    pub fn kill_pod_port(&self, namespace: &str, pod: &str, port: u16) {
        self.backends.remove_port(namespace, pod, port);
    }

    /// Remove every rule (killed ports stay killed; set the backend again).
    pub fn clear(&self) {
        *self.lock() = FaultState::default();
    }

    pub(crate) fn is_denied(&self, verb: &str, resource: &str, namespace: Option<&str>) -> bool {
        let st = self.lock();
        if let Some(grants) = &st.grants {
            let granted = grants.iter().any(|g| {
                (g.verb == "*" || g.verb == verb)
                    && (g.resource == "*" || g.resource == resource)
                    && g.namespace.as_deref().is_none_or(|n| Some(n) == namespace)
            });
            if !granted {
                return true;
            }
        }
        st.denies.iter().any(|d| {
            (d.verb == "*" || d.verb == verb)
                && (d.resource == "*" || d.resource == resource)
                && d.namespace.as_deref().is_none_or(|n| Some(n) == namespace)
        })
    }

    /// The injected status code (and Retry-After override) for this request, consuming one use.
    pub(crate) fn take_failure(&self, method: &str, path: &str) -> Option<(u16, Option<u64>)> {
        let mut st = self.lock();
        let idx = st.failures.iter().position(|f| {
            path.contains(&f.path_contains)
                && f.method.as_deref().is_none_or(|m| m == method)
                && f.remaining.is_none_or(|n| n > 0)
        })?;
        let rule = &mut st.failures[idx];
        let code = rule.code;
        let retry_after = rule.retry_after;
        if let Some(n) = rule.remaining.as_mut() {
            *n -= 1;
        }
        Some((code, retry_after))
    }

    pub(crate) fn latency_for(&self, path: &str) -> Duration {
        self.lock()
            .latencies
            .iter()
            .filter(|l| path.contains(&l.path_contains))
            .map(|l| l.delay)
            .sum()
    }

    /// Byte budget for a new port-forward, consuming one use.
    pub(crate) fn take_drop(&self) -> Option<usize> {
        let mut st = self.lock();
        let idx = st
            .drops
            .iter()
            .position(|d| d.remaining.is_none_or(|n| n > 0))?;
        let rule = &mut st.drops[idx];
        if let Some(n) = rule.remaining.as_mut() {
            *n -= 1;
        }
        Some(rule.after_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let f = Faults::new(Backends::default());
        f.deny("create", "pods/portforward");
        f.deny_in("prod", "patch", "deployments.apps");
        assert!(f.is_denied("create", "pods/portforward", Some("x")));
        assert!(!f.is_denied("get", "pods/portforward", Some("x")));
        assert!(!f.is_denied("create", "pods", Some("x")));
        assert!(f.is_denied("patch", "deployments", Some("prod")));
        assert!(!f.is_denied("patch", "deployments", Some("dev")));
        f.fail("/pods", 500, Some(2));
        assert_eq!(
            f.take_failure("GET", "/api/v1/namespaces/x/pods"),
            Some((500, None))
        );
        assert_eq!(
            f.take_failure("GET", "/api/v1/namespaces/x/pods"),
            Some((500, None))
        );
        assert_eq!(f.take_failure("GET", "/api/v1/namespaces/x/pods"), None);
        f.fail_method("put", "/deployments/istiod", 409, None);
        assert_eq!(
            f.take_failure("GET", "/apis/apps/v1/namespaces/i/deployments/istiod"),
            None
        );
        assert_eq!(
            f.take_failure("PUT", "/apis/apps/v1/namespaces/i/deployments/istiod"),
            Some((409, None))
        );
        f.clear();
        assert!(!f.is_denied("create", "pods/portforward", Some("x")));
    }
}
