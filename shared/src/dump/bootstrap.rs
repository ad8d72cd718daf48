//! `bootstrap`: Istio, proxy and Envoy versions and who the node is (istioctl's
//! `proxy-config bootstrap -o short`, plus the node); `-o json` prints the section itself.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::proto_json::{lenient_string, lenient_u64};
use crate::render::{Cell, Tabular};

/// `BootstrapConfigDump`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BootstrapDump {
    /// The bootstrap.
    #[serde(default)]
    pub bootstrap: Option<Bootstrap>,
}

/// `config.bootstrap.v3.Bootstrap` (the node only).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Bootstrap {
    /// Who this proxy is.
    #[serde(default)]
    pub node: Option<Node>,
}

/// `config.core.v3.Node`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Node {
    /// `sidecar~IP~pod.namespace~namespace.svc.cluster.local`.
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: String,
    /// Service cluster, e.g. `productpage.default`.
    #[serde(default, deserialize_with = "lenient_string")]
    pub cluster: String,
    /// Istio's node metadata (`ISTIO_VERSION`, `NAMESPACE`, ...).
    #[serde(default)]
    pub metadata: BTreeMap<String, Value>,
    /// Envoy ≥1.13: structured version.
    #[serde(default, alias = "userAgentBuildVersion")]
    pub user_agent_build_version: Option<BuildVersion>,
    /// Envoy ≤1.12 (v2 API): `sha/1.12.0-dev/Clean/RELEASE/BoringSSL`.
    #[serde(default, alias = "buildVersion")]
    pub build_version: Option<String>,
}

/// `config.core.v3.BuildVersion`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BuildVersion {
    /// Semantic version.
    #[serde(default)]
    pub version: Option<SemanticVersion>,
    /// `build.label`, `revision.status`, `build.type`, `ssl.version`, ...
    #[serde(default)]
    pub metadata: BTreeMap<String, Value>,
}

/// `type.v3.SemanticVersion`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SemanticVersion {
    /// Major.
    #[serde(default, alias = "majorNumber", deserialize_with = "lenient_u64")]
    pub major_number: Option<u64>,
    /// Minor.
    #[serde(default, alias = "minorNumber", deserialize_with = "lenient_u64")]
    pub minor_number: Option<u64>,
    /// Patch.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub patch: Option<u64>,
}

/// One line of the bootstrap summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootstrapField {
    /// What, e.g. `Istio Version`.
    pub field: String,
    /// Its value.
    pub value: String,
}

impl Tabular for BootstrapField {
    const KIND: &'static str = "BootstrapField";
    fn headers(_wide: bool) -> Vec<&'static str> {
        vec!["FIELD", "VALUE"]
    }
    fn row(&self, _wide: bool) -> Vec<Cell<'_>> {
        vec![Cell::plain(&self.field), Cell::plain(&self.value)]
    }
}

/// Node metadata worth a line, with its label.
const METADATA_FIELDS: &[(&str, &str)] = &[
    ("NAMESPACE", "Namespace"),
    ("NAME", "Pod"),
    ("SERVICE_ACCOUNT", "Service Account"),
    ("WORKLOAD_NAME", "Workload"),
    ("CLUSTER_ID", "Cluster ID"),
    ("MESH_ID", "Mesh ID"),
    ("INTERCEPTION_MODE", "Interception Mode"),
];

/// The summary: versions first (as istioctl prints them), then the node.
pub fn bootstrap_fields(dump: &BootstrapDump) -> Vec<BootstrapField> {
    let node = dump
        .bootstrap
        .as_ref()
        .and_then(|b| b.node.clone())
        .unwrap_or_default();
    let meta = |k: &str| match node.metadata.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    };
    let proxy_sha = meta("ISTIO_PROXY_SHA");
    let proxy_version = proxy_sha
        .split_once(':')
        .map(|(_, v)| v.to_string())
        .unwrap_or(proxy_sha);
    let mut fields = vec![
        ("Istio Version".to_string(), meta("ISTIO_VERSION")),
        ("Istio Proxy Version".into(), proxy_version),
        ("Envoy Version".into(), envoy_version(&node)),
        ("Node ID".into(), node.id.clone()),
        ("Node Cluster".into(), node.cluster.clone()),
    ];
    for (key, label) in METADATA_FIELDS {
        let mut v = meta(key);
        if v.is_empty() && *key == "NAME" {
            v = meta("POD_NAME");
        }
        if !v.is_empty() {
            fields.push((label.to_string(), v));
        }
    }
    fields
        .into_iter()
        .map(|(field, value)| BootstrapField { field, value })
        .collect()
}

/// `<major>.<minor>.<patch>[-label][/status][/type][/ssl]` as istioctl builds it; for Envoy ≤1.12
/// (no `user_agent_build_version`) the version part of `build_version`.
pub fn envoy_version(node: &Node) -> String {
    if let Some(b) = &node.user_agent_build_version {
        let v = b.version.clone().unwrap_or_default();
        let mut s = format!(
            "{}.{}.{}",
            v.major_number.unwrap_or(0),
            v.minor_number.unwrap_or(0),
            v.patch.unwrap_or(0)
        );
        let get = |k: &str| {
            b.metadata
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        if let Some(l) = get("build.label") {
            s.push('-');
            s.push_str(l);
        }
        for k in ["revision.status", "build.type", "ssl.version"] {
            if let Some(x) = get(k) {
                s.push('/');
                s.push_str(x);
            }
        }
        return s;
    }
    match node
        .build_version
        .as_deref()
        .and_then(|b| b.split_once('/'))
    {
        Some((_, version)) => version.to_string(),
        None => "0.0.0".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_current_and_legacy() {
        let d: BootstrapDump = serde_json::from_value(serde_json::json!({"bootstrap": {"node": {
            "metadata": {"ISTIO_PROXY_SHA": "istio-proxy:436f", "ISTIO_VERSION": "1.10.0"},
            "userAgentBuildVersion": {"version": {"majorNumber": 1, "minorNumber": 18, "patch": 3},
                "metadata": {"build.type": "RELEASE", "revision.status": "Clean", "ssl.version": "BoringSSL"}}
        }}}))
        .unwrap();
        let f = bootstrap_fields(&d);
        assert_eq!(f[0].value, "1.10.0");
        assert_eq!(f[1].value, "436f");
        assert_eq!(f[2].value, "1.18.3/Clean/RELEASE/BoringSSL");
        let legacy: Node = serde_json::from_value(serde_json::json!({
            "build_version": "08cec447/1.12.0-dev/Clean/RELEASE/BoringSSL"
        }))
        .unwrap();
        assert_eq!(envoy_version(&legacy), "1.12.0-dev/Clean/RELEASE/BoringSSL");
        assert_eq!(envoy_version(&Node::default()), "0.0.0");
    }

    use crate::dump::fixture;

    fn values(rel: &str) -> Vec<String> {
        bootstrap_fields(fixture::dump(rel).bootstrap().unwrap())
            .into_iter()
            .map(|f| f.value)
            .collect()
    }

    /// istioctl's `Key:   value` lines.
    fn golden_values(rel: &str) -> Vec<String> {
        fixture::istio_text(rel)
            .lines()
            .map(|l| l.split_once(':').unwrap().1.trim().to_string())
            .collect()
    }

    #[test]
    fn version_summary_matches_istioctl() {
        let want = golden_values("current/pc-bootstrap/versionsummary.txt");
        assert_eq!(
            values("current/pc-bootstrap/configdump.json")[..3],
            want[..]
        );
    }

    #[test]
    fn istio_1_4_versions_and_node() {
        let dir = "legacy-istio1.3-1.4-real-dumps";
        let want = golden_values(&format!(
            "{dir}/derived-current-istioctl-format/productpage-v1-c7765c886-v99jb.bootstrap_short.txt"
        ));
        for dump in [
            "productpage-v1-c7765c886-v99jb.json",
            "productpage-v1-c7765c886-v99jb.ORIGINAL-v2alpha.json",
        ] {
            let got = values(&format!("{dir}/{dump}"));
            assert_eq!(got[..2], want[..2]);
            // istioctl prints 0.0.0 (no user_agent_build_version); we read build_version.
            assert_eq!(got[2], "1.12.0-dev/Clean/RELEASE/BoringSSL");
        }
        let fields = bootstrap_fields(
            fixture::dump(&format!(
                "{dir}/productpage-v1-c7765c886-v99jb.ORIGINAL-v2alpha.json"
            ))
            .bootstrap()
            .unwrap(),
        );
        let text: Vec<String> = fields
            .iter()
            .map(|f| format!("{}={}", f.field, f.value))
            .collect();
        assert!(
            text.contains(&"Node Cluster=productpage.default".to_string()),
            "{text:?}"
        );
        assert!(text.contains(&"Namespace=default".to_string()), "{text:?}");
        assert!(
            text.contains(&"Pod=productpage-v1-c7765c886-v99jb".to_string()),
            "{text:?}"
        );
    }
}
