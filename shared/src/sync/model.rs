//! What istiod says about its proxies, in the two shapes it says it in:
//! the HTTP `/debug/syncz` array and the xDS `istio.io/debug/syncz` `DiscoveryResponse`.
//!
//! Only the fields the views use are declared; unknown fields are ignored so newer istiods parse.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::Error;

/// Type URLs of the five xDS types the table shows.
pub mod type_url {
    /// CDS.
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    /// LDS.
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    /// EDS.
    pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    /// RDS.
    pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    /// ECDS.
    pub const EXTENSION_CONFIG: &str =
        "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
}

/// One proxy of istiod's HTTP `GET /debug/syncz` (json tags of `SyncStatus` in
/// `pilot/pkg/xds/debug.go`; Istio 1.4 lacks `cluster_id`, `proxy_type` and the ECDS pair).
/// Values of `*_sent` / `*_acked` are nonces, not versions.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SyncStatus {
    /// `CLUSTER_ID` of the proxy.
    pub cluster_id: String,
    /// `<pod>.<namespace>`.
    pub proxy: String,
    /// `sidecar`, `router`, `waypoint`, `ztunnel`.
    pub proxy_type: String,
    /// Envoy build version (fallback for the VERSION column).
    pub proxy_version: String,
    /// `ISTIO_VERSION` of the proxy.
    pub istio_version: String,
    /// CDS nonce sent.
    pub cluster_sent: String,
    /// CDS nonce acked.
    pub cluster_acked: String,
    /// LDS nonce sent.
    pub listener_sent: String,
    /// LDS nonce acked.
    pub listener_acked: String,
    /// RDS nonce sent.
    pub route_sent: String,
    /// RDS nonce acked.
    pub route_acked: String,
    /// EDS nonce sent.
    pub endpoint_sent: String,
    /// EDS nonce acked.
    pub endpoint_acked: String,
    /// ECDS nonce sent.
    pub extensionconfig_sent: String,
    /// ECDS nonce acked.
    pub extensionconfig_acked: String,
    /// Per type URL (newer istiods), with send time and the last NACK.
    pub resources: BTreeMap<String, ResourceStatus>,
}

/// One type's entry in `SyncStatus.resources`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ResourceStatus {
    /// Nonce sent.
    pub sent: String,
    /// Nonce acked.
    pub acked: String,
    /// RFC 3339 time of the last send.
    #[serde(rename = "sentTime", alias = "sent_time")]
    pub sent_time: Option<String>,
    /// Error detail of the last NACK (cleared by the next ACK).
    #[serde(rename = "lastError", alias = "last_error")]
    pub last_error: Option<String>,
}

/// A `DiscoveryResponse` for type `istio.io/debug/syncz` (protojson, camelCase; snake_case accepted).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DiscoveryResponse {
    /// One `Any(ClientConfig)` per connected proxy.
    pub resources: Vec<ClientConfig>,
    /// `{"identifier": "<JSON with the istiod ID>"}`.
    #[serde(rename = "controlPlane", alias = "control_plane")]
    pub control_plane: Option<ControlPlane>,
}

/// `DiscoveryResponse.controlPlane`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ControlPlane {
    /// A JSON string: `{"Component":"istiod","ID":"<pod>","Info":{"version":...}}`.
    pub identifier: String,
}

/// The parsed `controlPlane.identifier`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct Identifier {
    #[serde(rename = "ID")]
    id: String,
}

impl DiscoveryResponse {
    /// The istiod pod name from `controlPlane.identifier` (empty when absent or not JSON).
    pub fn istiod_id(&self) -> String {
        self.control_plane
            .as_ref()
            .and_then(|c| serde_json::from_str::<Identifier>(&c.identifier).ok())
            .map(|i| i.id)
            .unwrap_or_default()
    }
}

/// `envoy.service.status.v3.ClientConfig`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClientConfig {
    /// The proxy.
    pub node: Node,
    /// One entry per watched type, sorted by type URL.
    #[serde(rename = "genericXdsConfigs", alias = "generic_xds_configs")]
    pub generic_xds_configs: Option<Vec<GenericXdsConfig>>,
    /// The deprecated per-type form.
    #[serde(rename = "xdsConfig", alias = "xds_config")]
    pub xds_config: Vec<PerXdsConfig>,
}

/// `envoy.config.core.v3.Node`: id and the metadata istiod reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Node {
    /// `<pod>.<namespace>`.
    pub id: String,
    /// `CLUSTER_ID`, `NAMESPACE`, `ISTIO_VERSION`, ... (a protobuf Struct).
    pub metadata: BTreeMap<String, Value>,
}

impl Node {
    /// A string metadata value, or "".
    pub fn meta(&self, key: &str) -> &str {
        self.metadata
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// `ClientConfig.GenericXdsConfig`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GenericXdsConfig {
    /// The xDS type URL.
    #[serde(rename = "typeUrl", alias = "type_url")]
    pub type_url: String,
    /// `SYNCED`, `NOT_SENT`, `STALE`, `ERROR`; absent = `UNKNOWN`.
    #[serde(rename = "configStatus", alias = "config_status")]
    pub config_status: Option<String>,
    /// RFC 3339 time of the last send.
    #[serde(rename = "lastUpdated", alias = "last_updated")]
    pub last_updated: Option<String>,
    /// The last NACK.
    #[serde(rename = "errorState", alias = "error_state")]
    pub error_state: Option<UpdateFailureState>,
}

/// `admin.v3.UpdateFailureState`: only the details are shown.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UpdateFailureState {
    /// The NACK message.
    pub details: Option<String>,
}

/// The deprecated `PerXdsConfig`: the type is the one config field that is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PerXdsConfig {
    /// `SYNCED`, `NOT_SENT`, `STALE`, `ERROR`.
    pub status: Option<String>,
    /// Set for LDS.
    #[serde(rename = "listenerConfig", alias = "listener_config")]
    pub listener_config: Option<Value>,
    /// Set for CDS.
    #[serde(rename = "clusterConfig", alias = "cluster_config")]
    pub cluster_config: Option<Value>,
    /// Set for RDS.
    #[serde(rename = "routeConfig", alias = "route_config")]
    pub route_config: Option<Value>,
    /// Set for EDS.
    #[serde(rename = "endpointConfig", alias = "endpoint_config")]
    pub endpoint_config: Option<Value>,
}

impl PerXdsConfig {
    /// The type URL this entry is about, if it is one of the four known ones.
    pub fn type_url(&self) -> Option<&'static str> {
        if self.listener_config.is_some() {
            Some(type_url::LISTENER)
        } else if self.cluster_config.is_some() {
            Some(type_url::CLUSTER)
        } else if self.route_config.is_some() {
            Some(type_url::ROUTE)
        } else if self.endpoint_config.is_some() {
            Some(type_url::ENDPOINT)
        } else {
            None
        }
    }
}

impl ClientConfig {
    /// Per-type statuses: `genericXdsConfigs`, else the deprecated `xdsConfig` restated.
    pub fn xds_configs(&self) -> Vec<GenericXdsConfig> {
        if let Some(g) = &self.generic_xds_configs {
            return g.clone();
        }
        self.xds_config
            .iter()
            .filter_map(|c| {
                Some(GenericXdsConfig {
                    type_url: c.type_url()?.to_string(),
                    config_status: c.status.clone(),
                    ..Default::default()
                })
            })
            .collect()
    }

    /// [`ClientConfig::xds_configs`], taken out of `self` instead of copied.
    pub fn take_xds_configs(&mut self) -> Vec<GenericXdsConfig> {
        if let Some(g) = self.generic_xds_configs.take() {
            return g;
        }
        std::mem::take(&mut self.xds_config)
            .into_iter()
            .filter_map(|c| {
                Some(GenericXdsConfig {
                    type_url: c.type_url()?.to_string(),
                    config_status: c.status,
                    ..Default::default()
                })
            })
            .collect()
    }
}

/// One saved or fetched syncz answer.
#[derive(Debug, Clone)]
pub enum Syncz {
    /// HTTP `/debug/syncz`: the array, and the istiod it came from.
    Http {
        /// The istiod pod (or, for a file, the file name up to its first '.').
        istiod: String,
        /// One entry per proxy.
        proxies: Vec<SyncStatus>,
    },
    /// xDS `istio.io/debug/syncz` (the istiod is named inside).
    Xds(DiscoveryResponse),
}

/// Parse a syncz answer, detecting its form: a JSON array is the HTTP form (`null` = no proxies),
/// a JSON object (or several concatenated, as `istioctl ps -o json` prints them) the xDS form,
/// anything else is tried as the YAML of an xDS `DiscoveryResponse` (`istioctl ps -o yaml`).
/// `istiod` names the HTTP source. Syntax errors carry the byte offset.
pub fn parse_syncz(path: &Path, istiod: &str, bytes: &[u8]) -> Result<Vec<Syncz>, Error> {
    const WHAT: &str = "istiod syncz JSON (/debug/syncz array or xDS DiscoveryResponse)";
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
    match first {
        None => Ok(vec![]),
        Some(b'[') | Some(b'n') => {
            let proxies: Option<Vec<SyncStatus>> = crate::input::parse_json(path, WHAT, bytes)?;
            Ok(vec![Syncz::Http {
                istiod: istiod.to_string(),
                proxies: proxies.unwrap_or_default(),
            }])
        }
        Some(b'{') => {
            let mut out = Vec::new();
            for doc in serde_json::Deserializer::from_slice(bytes).into_iter::<DiscoveryResponse>()
            {
                match doc {
                    Ok(r) => out.push(Syncz::Xds(r)),
                    Err(source) => {
                        let (line, column) = (source.line(), source.column());
                        return Err(crate::input::Error::Parse {
                            path: path.into(),
                            what: WHAT,
                            line,
                            column,
                            offset: crate::input::byte_offset(bytes, line, column),
                            source,
                        }
                        .into());
                    }
                }
            }
            Ok(out)
        }
        Some(_) => {
            let text = String::from_utf8_lossy(bytes);
            let r: DiscoveryResponse = serde_saphyr::from_str(&text).map_err(|source| {
                let (line, column) = source
                    .location()
                    .map(|l| (l.line() as usize, l.column() as usize))
                    .unwrap_or((1, 1));
                Error::Yaml {
                    path: path.into(),
                    line,
                    column,
                    offset: char_offset(&text, line, column),
                    source: Box::new(source),
                }
            })?;
            Ok(vec![Syncz::Xds(r)])
        }
    }
}

/// 0-based byte offset of a 1-based line / character column position in `text`.
fn char_offset(text: &str, line: usize, column: usize) -> usize {
    let start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    text[start.min(text.len())..]
        .char_indices()
        .nth(column.saturating_sub(1))
        .map_or(text.len(), |(i, _)| start + i)
}

/// The ISTIOD name of an HTTP syncz file: its file name up to the first '.'.
pub fn istiod_from_file_name(path: &Path) -> String {
    if path.as_os_str() == "-" {
        return "-".into();
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.split('.').next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(rel: &str) -> (std::path::PathBuf, Vec<u8>) {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures/istio")
            .join(rel);
        let b = std::fs::read(&p).unwrap();
        (p, b)
    }

    #[test]
    fn http_array_is_detected() {
        let (p, b) = fixture("derived/http-debug-syncz.modern.example.json");
        let s = parse_syncz(&p, "istiod-1", &b).unwrap();
        let [Syncz::Http { istiod, proxies }] = s.as_slice() else {
            panic!("{s:?}")
        };
        assert_eq!(istiod, "istiod-1");
        assert_eq!(proxies[0].proxy, "productpage-v1-6987489c74-wchxv.default");
        assert_eq!(proxies[0].proxy_type, "sidecar");
        let r = &proxies[0].resources[type_url::ROUTE];
        assert_eq!(r.sent_time.as_deref(), Some("2024-06-20T10:00:01Z"));
    }

    #[test]
    fn xds_response_is_detected() {
        let (p, b) = fixture("current/ps-xds/multiXdsStatusSinglePilot.json");
        let s = parse_syncz(&p, "ignored", &b).unwrap();
        let [Syncz::Xds(r)] = s.as_slice() else {
            panic!("{s:?}")
        };
        assert_eq!(r.istiod_id(), "istiod1");
        assert_eq!(r.resources.len(), 1);
        let c = &r.resources[0];
        assert_eq!(c.node.id, "proxy1");
        assert_eq!(c.node.meta("CLUSTER_ID"), "cluster1");
        assert_eq!(c.xds_configs().len(), 5);
    }

    #[test]
    fn xds_yaml_is_accepted() {
        let (p, b) = fixture("current/ps-xds/multiXdsStatusSingleNamespace.yaml");
        let s = parse_syncz(&p, "ignored", &b).unwrap();
        let [Syncz::Xds(r)] = s.as_slice() else {
            panic!("{s:?}")
        };
        assert_eq!(r.istiod_id(), "istiod1");
        assert_eq!(r.resources[0].node.meta("NAMESPACE"), "foo");
    }

    #[test]
    fn concatenated_responses_and_legacy_per_xds_config() {
        let text = br#"{"resources":[{"node":{"id":"a.ns"},"xdsConfig":[{"status":"SYNCED","clusterConfig":{}},{"status":"STALE","listenerConfig":{}}]}],
                        "controlPlane":{"identifier":"{\"ID\":\"istiod-a\"}"}}
                       {"resources":[],"controlPlane":{"identifier":"{\"ID\":\"istiod-b\"}"}}"#;
        let s = parse_syncz(Path::new("x.json"), "x", text).unwrap();
        assert_eq!(s.len(), 2);
        let Syncz::Xds(r) = &s[0] else { panic!() };
        let c = r.resources[0].xds_configs();
        assert_eq!(c[0].type_url, type_url::CLUSTER);
        assert_eq!(c[1].config_status.as_deref(), Some("STALE"));
    }

    #[test]
    fn null_and_empty_mean_no_proxies() {
        let s = parse_syncz(Path::new("i.json"), "i", b"null").unwrap();
        assert!(matches!(&s[0], Syncz::Http { proxies, .. } if proxies.is_empty()));
        assert!(
            parse_syncz(Path::new("i.json"), "i", b"  \n")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn syntax_errors_have_a_byte_offset() {
        let e = parse_syncz(Path::new("bad.json"), "bad", b"[{\"proxy\": }]").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("bad.json is not valid"), "{s}");
        assert!(s.contains("byte 11"), "{s}");
        let e = parse_syncz(Path::new("bad.json"), "bad", b"{\"resources\": [}").unwrap_err();
        assert!(e.to_string().contains("byte 15"), "{e}");
        // neither JSON nor YAML: the YAML parser's position
        let e = parse_syncz(Path::new("bin.json"), "bin", &[0xff, 0x00, 0x12]).unwrap_err();
        assert!(e.to_string().contains(", byte "), "{e}");
        let e = parse_syncz(Path::new("y.yaml"), "y", b"resources:\n  - a: [\n").unwrap_err();
        assert!(
            e.to_string().contains("y.yaml is not a syncz answer"),
            "{e}"
        );
        assert!(e.to_string().contains(", byte "), "{e}");
    }

    #[test]
    fn char_offsets() {
        assert_eq!(char_offset("ab\ncd", 2, 2), 4);
        assert_eq!(char_offset("ab", 1, 1), 0);
        assert_eq!(char_offset("é\nxy", 2, 2), 4);
        assert_eq!(char_offset("ab", 5, 5), 2);
    }

    #[test]
    fn istiod_name_of_a_file() {
        assert_eq!(
            istiod_from_file_name(Path::new("/tmp/x/istiod1.syncz.json")),
            "istiod1"
        );
        assert_eq!(istiod_from_file_name(Path::new("-")), "-");
    }
}
