//! The resource types the fake apiserver serves, as discovery describes them.

/// One served resource type (a built-in kind or a CRD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// API group, `""` for core.
    pub group: String,
    /// Served versions, preferred first. One stored object is visible through all of them.
    pub versions: Vec<String>,
    pub kind: String,
    /// Plural resource name, e.g. `requestauthentications`.
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Has a `/status` subresource: writes to the main resource keep the old status.
    pub status_subresource: bool,
    /// A custom resource (no strategic merge patch, as with real CRDs).
    pub custom: bool,
    /// Extra subresources for discovery: (name, kind, verbs), e.g. `("log", "Pod", ["get"])`.
    pub subresources: Vec<(String, String, Vec<String>)>,
    /// Verbs discovery lists; empty means all the standard ones.
    pub verbs: Vec<String>,
}

impl ResourceType {
    /// A namespaced custom resource with a status subresource, served in `versions`.
    pub fn custom(
        group: &str,
        versions: &[&str],
        kind: &str,
        plural: &str,
        short: &[&str],
    ) -> Self {
        ResourceType {
            group: group.into(),
            versions: versions.iter().map(|v| v.to_string()).collect(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            namespaced: true,
            short_names: short.iter().map(|s| s.to_string()).collect(),
            categories: Vec::new(),
            status_subresource: true,
            custom: true,
            subresources: vec![status_sub(kind)],
            verbs: Vec::new(),
        }
    }

    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    pub fn preferred_version(&self) -> &str {
        self.versions.first().map(String::as_str).unwrap_or("v1")
    }

    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }
}

fn status_sub(kind: &str) -> (String, String, Vec<String>) {
    (
        "status".into(),
        kind.into(),
        vec!["get".into(), "patch".into(), "update".into()],
    )
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    short: &[&str],
    all: bool,
    status: bool,
) -> ResourceType {
    ResourceType {
        group: group.into(),
        versions: vec![version.into()],
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: if all { vec!["all".into()] } else { Vec::new() },
        status_subresource: status,
        custom: false,
        subresources: if status {
            vec![status_sub(kind)]
        } else {
            Vec::new()
        },
        verbs: Vec::new(),
    }
}

fn sub(name: &str, kind: &str, verbs: &[&str]) -> (String, String, Vec<String>) {
    (
        name.into(),
        kind.into(),
        verbs.iter().map(|v| v.to_string()).collect(),
    )
}

/// Everything served out of the box.
pub(crate) fn builtin_types() -> Vec<ResourceType> {
    let mut pods = builtin("", "v1", "Pod", "pods", true, &["po"], true, true);
    pods.subresources.extend([
        sub("log", "Pod", &["get"]),
        sub("exec", "PodExecOptions", &["create", "get"]),
        sub("portforward", "PodPortForwardOptions", &["create", "get"]),
    ]);
    let mut sa = builtin(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        true,
        &["sa"],
        false,
        false,
    );
    sa.subresources
        .push(sub("token", "TokenRequest", &["create"]));
    let istio =
        |group: &str, versions: &[&str], kind: &str, plural: &str, short: &[&str], cat: &str| {
            let mut t = ResourceType::custom(group, versions, kind, plural, short);
            t.categories = vec!["istio-io".into(), cat.into()];
            t
        };
    let sec = ["v1", "v1beta1"];
    let net = ["v1beta1", "v1alpha3"];
    let mut ssar = builtin(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        false,
        &[],
        false,
        false,
    );
    ssar.verbs = vec!["create".into()];
    vec![
        builtin(
            "",
            "v1",
            "Namespace",
            "namespaces",
            false,
            &["ns"],
            false,
            true,
        ),
        builtin("", "v1", "Node", "nodes", false, &["no"], false, true),
        pods,
        builtin("", "v1", "Service", "services", true, &["svc"], true, true),
        builtin(
            "",
            "v1",
            "Endpoints",
            "endpoints",
            true,
            &["ep"],
            false,
            false,
        ),
        builtin("", "v1", "Secret", "secrets", true, &[], false, false),
        builtin(
            "",
            "v1",
            "ConfigMap",
            "configmaps",
            true,
            &["cm"],
            false,
            false,
        ),
        sa,
        builtin("", "v1", "Event", "events", true, &["ev"], false, false),
        builtin(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            true,
            &["deploy"],
            true,
            true,
        ),
        builtin(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            true,
            &["rs"],
            true,
            true,
        ),
        ssar,
        istio(
            "security.istio.io",
            &sec,
            "RequestAuthentication",
            "requestauthentications",
            &["ra"],
            "security-istio-io",
        ),
        istio(
            "security.istio.io",
            &sec,
            "PeerAuthentication",
            "peerauthentications",
            &["pa"],
            "security-istio-io",
        ),
        istio(
            "security.istio.io",
            &sec,
            "AuthorizationPolicy",
            "authorizationpolicies",
            &["ap"],
            "security-istio-io",
        ),
        istio(
            "networking.istio.io",
            &net,
            "DestinationRule",
            "destinationrules",
            &["dr"],
            "networking-istio-io",
        ),
        istio(
            "networking.istio.io",
            &net,
            "VirtualService",
            "virtualservices",
            &["vs"],
            "networking-istio-io",
        ),
        istio(
            "networking.istio.io",
            &net,
            "Gateway",
            "gateways",
            &["gw"],
            "networking-istio-io",
        ),
        istio(
            "networking.istio.io",
            &net,
            "ServiceEntry",
            "serviceentries",
            &["se"],
            "networking-istio-io",
        ),
        istio(
            "networking.istio.io",
            &net,
            "Sidecar",
            "sidecars",
            &[],
            "networking-istio-io",
        ),
        istio(
            "authentication.istio.io",
            &["v1alpha1"],
            "Policy",
            "policies",
            &[],
            "authentication-istio-io",
        ),
    ]
}
