//! JWT policies: RequestAuthentication (`security.istio.io` v1 and v1beta1) and the legacy
//! `authentication.istio.io/v1alpha1` Policy / MeshPolicy with `origins[].jwt`, typed; read
//! through kube's `DynamicObject` (the CRDs have no k8s-openapi types).

use std::collections::BTreeMap;

use kube::Api;
use kube::api::ListParams;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde::{Deserialize, Serialize};

use super::Error;
use crate::cluster::{self, Cluster};

/// One JWT rule (`JWTRule` of RequestAuthentication, `Jwt` of the legacy Policy); only the
/// fields we read.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtRule {
    /// `issuer`.
    #[serde(default)]
    pub issuer: String,
    /// `audiences`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// `jwksUri` (alt name `jwks_uri`).
    #[serde(default, alias = "jwks_uri", skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// `jwks`: inline JWKS JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// `timeout` (1.22+), e.g. `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

impl JwtRule {
    /// Where the keys come from.
    pub fn source(&self) -> KeySource {
        match (&self.jwks, &self.jwks_uri) {
            (Some(j), _) if !j.trim().is_empty() => KeySource::Inline,
            (_, Some(u)) if !u.trim().is_empty() => KeySource::Uri(u.trim().to_string()),
            _ => KeySource::Discovery,
        }
    }
}

/// Where a rule's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `jwks` in the policy.
    Inline,
    /// `jwksUri`.
    Uri(String),
    /// Neither: istiod uses `<issuer>/.well-known/openid-configuration`.
    Discovery,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WorkloadSelector {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyTargetRef {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestAuthenticationSpec {
    #[serde(default)]
    selector: Option<WorkloadSelector>,
    #[serde(default)]
    target_ref: Option<PolicyTargetRef>,
    #[serde(default)]
    target_refs: Vec<PolicyTargetRef>,
    #[serde(default)]
    jwt_rules: Vec<JwtRule>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct LegacyTarget {
    #[serde(default)]
    name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct LegacyOrigin {
    #[serde(default)]
    jwt: Option<JwtRule>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct LegacyPolicySpec {
    #[serde(default)]
    targets: Vec<LegacyTarget>,
    #[serde(default)]
    origins: Vec<LegacyOrigin>,
}

/// The kinds of JWT policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum PolicyKind {
    /// `security.istio.io` RequestAuthentication.
    RequestAuthentication,
    /// `authentication.istio.io/v1alpha1` Policy (Istio ≤1.5, Maistra 1.x).
    Policy,
    /// `authentication.istio.io/v1alpha1` MeshPolicy (cluster-scoped, name `default`).
    MeshPolicy,
}

impl PolicyKind {
    /// The kind name.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::RequestAuthentication => "RequestAuthentication",
            PolicyKind::Policy => "Policy",
            PolicyKind::MeshPolicy => "MeshPolicy",
        }
    }

    /// kubectl's resource name for commands we print.
    pub fn resource(self) -> &'static str {
        match self {
            PolicyKind::RequestAuthentication => "requestauthentications.security.istio.io",
            PolicyKind::Policy => "policies.authentication.istio.io",
            PolicyKind::MeshPolicy => "meshpolicies.authentication.istio.io",
        }
    }

    /// The JSON pointer of rule `i` in the object.
    pub fn rule_pointer(self, i: usize) -> String {
        match self {
            PolicyKind::RequestAuthentication => format!("/spec/jwtRules/{i}"),
            PolicyKind::Policy | PolicyKind::MeshPolicy => format!("/spec/origins/{i}/jwt"),
        }
    }
}

/// The API versions we try, newest first.
fn resources(kind: PolicyKind) -> Vec<ApiResource> {
    let mk = |g: &str, v: &str, k: &str, plural: &str| {
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(g, v, k), plural)
    };
    match kind {
        PolicyKind::RequestAuthentication => vec![
            mk(
                "security.istio.io",
                "v1",
                "RequestAuthentication",
                "requestauthentications",
            ),
            mk(
                "security.istio.io",
                "v1beta1",
                "RequestAuthentication",
                "requestauthentications",
            ),
        ],
        PolicyKind::Policy => vec![mk(
            "authentication.istio.io",
            "v1alpha1",
            "Policy",
            "policies",
        )],
        PolicyKind::MeshPolicy => vec![mk(
            "authentication.istio.io",
            "v1alpha1",
            "MeshPolicy",
            "meshpolicies",
        )],
    }
}

/// Which workloads a policy applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Scope {
    /// Every workload of the namespace.
    Namespace,
    /// Workloads of the namespace matching the labels (every namespace when in the root one).
    Selector {
        /// `matchLabels`.
        labels: BTreeMap<String, String>,
        /// The policy is in the root namespace: applies mesh-wide.
        mesh_wide: bool,
    },
    /// Every workload of the mesh (root-namespace policy without selector, MeshPolicy).
    Mesh,
    /// Legacy Policy `targets[].name`: the pods behind these services.
    Services {
        /// Service names.
        names: Vec<String>,
    },
    /// Gateway API gateways (`targetRef(s)` of kind Gateway).
    Gateways {
        /// Gateway names.
        names: Vec<String>,
    },
}

/// A JWT rule and its position in the policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleAt {
    /// Index in `jwtRules` / `origins`.
    pub index: usize,
    /// The rule.
    pub rule: JwtRule,
}

/// A JWT policy as we use it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtPolicy {
    /// Kind.
    pub kind: PolicyKind,
    /// `group/version` it was read with.
    pub api_version: String,
    /// Namespace (empty for MeshPolicy).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Annotations.
    #[serde(skip)]
    pub annotations: BTreeMap<String, String>,
    /// Which workloads.
    pub scope: Scope,
    /// The JWT rules.
    pub rules: Vec<RuleAt>,
    /// The whole object, for read-modify-write.
    #[serde(skip)]
    pub object: serde_json::Value,
}

impl JwtPolicy {
    /// `RequestAuthentication olaf/jwt-olaf`.
    pub fn id(&self) -> String {
        if self.namespace.is_empty() {
            format!("{} {}", self.kind.as_str(), self.name)
        } else {
            format!("{} {}/{}", self.kind.as_str(), self.namespace, self.name)
        }
    }

    /// Build from an object of `kind` (`root_ns` = Istio's root namespace).
    pub fn from_object(
        kind: PolicyKind,
        obj: serde_json::Value,
        root_ns: &str,
    ) -> Result<Self, Error> {
        let meta = obj.get("metadata");
        let s = |k: &str| {
            meta.and_then(|m| m.get(k))
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let (namespace, name) = (s("namespace"), s("name"));
        let annotations: BTreeMap<String, String> = meta
            .and_then(|m| m.get("annotations"))
            .and_then(|a| serde_json::from_value(a.clone()).ok())
            .unwrap_or_default();
        let api_version = obj
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let bad = |source| Error::BadPolicy {
            kind: kind.as_str().into(),
            namespace: namespace.clone(),
            name: name.clone(),
            source,
        };
        let spec = obj.get("spec").cloned().unwrap_or(serde_json::Value::Null);
        let spec = if spec.is_null() {
            serde_json::json!({})
        } else {
            spec
        };
        let (scope, rules) = match kind {
            PolicyKind::RequestAuthentication => {
                let spec: RequestAuthenticationSpec = serde_json::from_value(spec).map_err(bad)?;
                let mut gateways: Vec<String> = spec
                    .target_ref
                    .iter()
                    .chain(spec.target_refs.iter())
                    .filter(|t| t.kind == "Gateway")
                    .map(|t| t.name.clone())
                    .collect();
                gateways.sort();
                let labels = spec.selector.map(|s| s.match_labels).unwrap_or_default();
                let scope = if !gateways.is_empty() {
                    Scope::Gateways { names: gateways }
                } else if !labels.is_empty() {
                    Scope::Selector {
                        labels,
                        mesh_wide: namespace == root_ns,
                    }
                } else if namespace == root_ns {
                    Scope::Mesh
                } else {
                    Scope::Namespace
                };
                let rules = spec
                    .jwt_rules
                    .into_iter()
                    .enumerate()
                    .map(|(index, rule)| RuleAt { index, rule })
                    .collect();
                (scope, rules)
            }
            PolicyKind::Policy | PolicyKind::MeshPolicy => {
                let spec: LegacyPolicySpec = serde_json::from_value(spec).map_err(bad)?;
                let names: Vec<String> = spec.targets.into_iter().map(|t| t.name).collect();
                let scope = if kind == PolicyKind::MeshPolicy {
                    Scope::Mesh
                } else if names.is_empty() {
                    Scope::Namespace
                } else {
                    Scope::Services { names }
                };
                let rules = spec
                    .origins
                    .into_iter()
                    .enumerate()
                    .filter_map(|(index, o)| o.jwt.map(|rule| RuleAt { index, rule }))
                    .collect();
                (scope, rules)
            }
        };
        Ok(JwtPolicy {
            kind,
            api_version,
            namespace,
            name,
            annotations,
            scope,
            rules,
            object: obj,
        })
    }
}

fn api(cluster: &Cluster, ar: &ApiResource, ns: Option<&str>) -> Api<DynamicObject> {
    match ns {
        Some(ns) => Api::namespaced_with(cluster.client.clone(), ns, ar),
        None => Api::all_with(cluster.client.clone(), ar),
    }
}

fn is_missing_api(e: &cluster::Error) -> bool {
    e.status_code() == Some(404)
}

fn to_value(kind: PolicyKind, o: &DynamicObject) -> Result<serde_json::Value, Error> {
    serde_json::to_value(o).map_err(|source| Error::Encode {
        what: kind.as_str().into(),
        source,
    })
}

/// List the JWT policies of a kind (`ns` = None: all namespaces; `selector`: `-l`). A kind
/// whose API the cluster does not serve gives an empty list.
pub async fn list(
    cluster: &Cluster,
    kind: PolicyKind,
    ns: Option<&str>,
    selector: Option<&str>,
    root_ns: &str,
) -> Result<Vec<JwtPolicy>, crate::Error> {
    let mut lp = ListParams::default();
    if let Some(s) = selector {
        lp = lp.labels(s);
    }
    let scope = match (kind, ns) {
        (PolicyKind::MeshPolicy, _) | (_, None) => " in all namespaces".to_string(),
        (_, Some(n)) => format!(" in {n}"),
    };
    for ar in resources(kind) {
        let a = if kind == PolicyKind::MeshPolicy {
            api(cluster, &ar, None)
        } else {
            api(cluster, &ar, ns)
        };
        let action = format!("list {}{scope}", ar.plural);
        match cluster.call(action, || a.list(&lp)).await {
            Ok(list) => {
                let mut out = Vec::new();
                for o in &list.items {
                    let mut v = to_value(kind, o)?;
                    if let Some(m) = v.as_object_mut() {
                        m.insert("apiVersion".into(), ar.api_version.clone().into());
                        m.insert("kind".into(), ar.kind.clone().into());
                    }
                    out.push(JwtPolicy::from_object(kind, v, root_ns)?);
                }
                out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
                return Ok(out);
            }
            Err(e) if is_missing_api(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(vec![])
}

/// Find a policy by name: RequestAuthentication first, then the legacy Policy.
pub async fn get(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    root_ns: &str,
) -> Result<JwtPolicy, crate::Error> {
    for kind in [PolicyKind::RequestAuthentication, PolicyKind::Policy] {
        if let Some(p) = get_kind(cluster, kind, ns, name, root_ns).await? {
            return Ok(p);
        }
    }
    Err(Error::PolicyNotFound {
        namespace: ns.to_string(),
        name: name.to_string(),
    }
    .into())
}

/// A `POLICY` argument: `NAME` (every JWT policy kind: a RequestAuthentication and a legacy
/// Policy may share a name) or kubectl's `KIND/NAME` (`requestauthentication/NAME`,
/// `requestauthentications.security.istio.io/NAME`, `ra/NAME`, `policy/NAME`,
/// `policies.authentication.istio.io/NAME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRef {
    /// The kind, when given.
    pub kind: Option<PolicyKind>,
    /// The name.
    pub name: String,
}

impl PolicyRef {
    /// Parse `NAME` or `KIND/NAME` (the kind is case-insensitive).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = || Error::BadPolicyRef {
            given: text.to_string(),
        };
        let (kind, name) = match text.split_once('/') {
            None => (None, text),
            Some((k, n)) => {
                let kind = match k.to_ascii_lowercase().as_str() {
                    "requestauthentication"
                    | "requestauthentications"
                    | "requestauthentication.security.istio.io"
                    | "requestauthentications.security.istio.io"
                    | "ra" => PolicyKind::RequestAuthentication,
                    "policy"
                    | "policies"
                    | "policy.authentication.istio.io"
                    | "policies.authentication.istio.io" => PolicyKind::Policy,
                    _ => return Err(bad()),
                };
                (Some(kind), n)
            }
        };
        if name.is_empty() || name.contains('/') {
            return Err(bad());
        }
        Ok(PolicyRef {
            kind,
            name: name.to_string(),
        })
    }

    /// The kinds this reference can name.
    pub fn kinds(&self) -> Vec<PolicyKind> {
        match self.kind {
            Some(k) => vec![k],
            None => vec![PolicyKind::RequestAuthentication, PolicyKind::Policy],
        }
    }
}

/// Every policy a [`PolicyRef`] names in `ns` (RequestAuthentication first); an error when
/// there is none.
pub async fn get_by_ref(
    cluster: &Cluster,
    ns: &str,
    reference: &PolicyRef,
    root_ns: &str,
) -> Result<Vec<JwtPolicy>, crate::Error> {
    let mut out = Vec::new();
    for kind in reference.kinds() {
        if let Some(p) = get_kind(cluster, kind, ns, &reference.name, root_ns).await? {
            out.push(p);
        }
    }
    if out.is_empty() {
        return Err(match reference.kind {
            Some(kind) => Error::KindNotFound {
                kind: kind.as_str().to_string(),
                namespace: ns.to_string(),
                name: reference.name.clone(),
            },
            None => Error::PolicyNotFound {
                namespace: ns.to_string(),
                name: reference.name.clone(),
            },
        }
        .into());
    }
    Ok(out)
}

/// Get one policy of a kind; `None` when absent (or the API is not served).
pub async fn get_kind(
    cluster: &Cluster,
    kind: PolicyKind,
    ns: &str,
    name: &str,
    root_ns: &str,
) -> Result<Option<JwtPolicy>, crate::Error> {
    for ar in resources(kind) {
        let a = api(cluster, &ar, Some(ns));
        let action = format!("get {} {ns}/{name}", ar.plural);
        match cluster.call(action, || a.get_opt(name)).await {
            Ok(Some(o)) => {
                let mut v = to_value(kind, &o)?;
                if let Some(m) = v.as_object_mut() {
                    m.insert("apiVersion".into(), ar.api_version.clone().into());
                    m.insert("kind".into(), ar.kind.clone().into());
                }
                return Ok(Some(JwtPolicy::from_object(kind, v, root_ns)?));
            }
            Ok(None) => return Ok(None),
            Err(e) if is_missing_api(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// Replace a policy with `object` (which carries the resourceVersion it was read at).
/// `Ok(false)` on a 409 conflict.
pub async fn replace(
    cluster: &Cluster,
    policy: &JwtPolicy,
    object: &serde_json::Value,
) -> Result<bool, crate::Error> {
    let ar = resources(policy.kind)
        .into_iter()
        .find(|r| r.api_version == policy.api_version)
        .unwrap_or_else(|| {
            ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("security.istio.io", "v1", policy.kind.as_str()),
                "requestauthentications",
            )
        });
    let obj: DynamicObject =
        serde_json::from_value(object.clone()).map_err(|source| Error::Encode {
            what: policy.id(),
            source,
        })?;
    let a = api(cluster, &ar, Some(&policy.namespace));
    let action = format!("update {} {}/{}", ar.plural, policy.namespace, policy.name);
    match cluster
        .call(action, || {
            a.replace(&policy.name, &crate::cluster::POST_PARAMS, &obj)
        })
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.status_code() == Some(409) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// `k=v,k2=v2`.
pub fn label_selector(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_authentication() {
        let o = serde_json::json!({
            "apiVersion": "security.istio.io/v1beta1", "kind": "RequestAuthentication",
            "metadata": {"name": "jwt-olaf", "namespace": "olaf", "resourceVersion": "7",
                         "annotations": {"a": "b"}},
            "spec": {"selector": {"matchLabels": {"app": "customer"}},
                     "jwtRules": [
                        {"issuer": "https://sso/realms/olaf", "jwksUri": "https://sso/certs", "audiences": ["web"]},
                        {"issuer": "inline", "jwks": "{\"keys\":[]}"},
                        {"issuer": "https://accounts.example.com", "jwks_uri": ""}
                     ]}
        });
        let p =
            JwtPolicy::from_object(PolicyKind::RequestAuthentication, o, "istio-system").unwrap();
        assert_eq!(p.id(), "RequestAuthentication olaf/jwt-olaf");
        assert_eq!(p.annotations["a"], "b");
        assert_eq!(
            p.scope,
            Scope::Selector {
                labels: [("app".to_string(), "customer".to_string())].into(),
                mesh_wide: false
            }
        );
        assert_eq!(
            p.rules[0].rule.source(),
            KeySource::Uri("https://sso/certs".into())
        );
        assert_eq!(p.rules[1].rule.source(), KeySource::Inline);
        assert_eq!(p.rules[2].rule.source(), KeySource::Discovery);
    }

    #[test]
    fn policy_refs() {
        let r = PolicyRef::parse("customerjwt").unwrap();
        assert_eq!(r.kind, None);
        assert_eq!(
            r.kinds(),
            [PolicyKind::RequestAuthentication, PolicyKind::Policy]
        );
        for k in [
            "requestauthentication",
            "RequestAuthentication",
            "requestauthentications.security.istio.io",
            "ra",
        ] {
            let r = PolicyRef::parse(&format!("{k}/customerjwt")).unwrap();
            assert_eq!(r.kind, Some(PolicyKind::RequestAuthentication), "{k}");
            assert_eq!(r.name, "customerjwt");
        }
        for k in ["policy", "policies", "policies.authentication.istio.io"] {
            let r = PolicyRef::parse(&format!("{k}/customerjwt")).unwrap();
            assert_eq!(r.kinds(), [PolicyKind::Policy], "{k}");
        }
        for bad in ["deployment/x", "policy/", "/x", "", "ra/a/b"] {
            assert!(PolicyRef::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn legacy_policy_and_scopes() {
        let o = serde_json::json!({
            "metadata": {"name": "default", "namespace": "olaf"},
            "spec": {"targets": [{"name": "customer"}],
                     "peers": [{"mtls": {}}],
                     "origins": [{"jwt": {"issuer": "i", "jwksUri": "https://u"}}],
                     "principalBinding": "USE_ORIGIN"}
        });
        let p = JwtPolicy::from_object(PolicyKind::Policy, o, "istio-system").unwrap();
        assert_eq!(
            p.scope,
            Scope::Services {
                names: vec!["customer".into()]
            }
        );
        assert_eq!(p.rules.len(), 1);
        assert_eq!(p.kind.rule_pointer(p.rules[0].index), "/spec/origins/0/jwt");
        let root =
            serde_json::json!({"metadata": {"name": "r", "namespace": "istio-system"}, "spec": {}});
        let p = JwtPolicy::from_object(PolicyKind::RequestAuthentication, root, "istio-system")
            .unwrap();
        assert_eq!(p.scope, Scope::Mesh);
        let gw = serde_json::json!({"metadata": {"name": "g", "namespace": "x"},
            "spec": {"targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "web"}]}});
        let p =
            JwtPolicy::from_object(PolicyKind::RequestAuthentication, gw, "istio-system").unwrap();
        assert_eq!(
            p.scope,
            Scope::Gateways {
                names: vec!["web".into()]
            }
        );
        let bad = serde_json::json!({"metadata": {"name": "b", "namespace": "x"}, "spec": {"jwtRules": "nope"}});
        assert!(JwtPolicy::from_object(PolicyKind::RequestAuthentication, bad, "r").is_err());
    }
}
