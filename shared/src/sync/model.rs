//! What istiod says about its proxies, in the two shapes it says it in:
//! the HTTP `/debug/syncz` array and the xDS `istio.io/debug/syncz` `DiscoveryResponse`.
//!
//! Only the fields the views use are declared; unknown fields are ignored so newer istiods parse.

use std::borrow::Cow;
use std::path::Path;

use serde::Deserialize;
use serde::de::IgnoredAny;

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
/// Values of `*_sent` / `*_acked` are nonces, not versions. Strings borrow from the input
/// (10k proxies are not copied string by string); `null` reads as empty.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SyncStatus<'a> {
    /// `CLUSTER_ID` of the proxy.
    #[serde(borrow, deserialize_with = "text")]
    pub cluster_id: Cow<'a, str>,
    /// `<pod>.<namespace>`.
    #[serde(borrow, deserialize_with = "text")]
    pub proxy: Cow<'a, str>,
    /// `sidecar`, `router`, `waypoint`, `ztunnel`.
    #[serde(borrow, deserialize_with = "text")]
    pub proxy_type: Cow<'a, str>,
    /// Envoy build version (fallback for the VERSION column).
    #[serde(borrow, deserialize_with = "text")]
    pub proxy_version: Cow<'a, str>,
    /// `ISTIO_VERSION` of the proxy.
    #[serde(borrow, deserialize_with = "text")]
    pub istio_version: Cow<'a, str>,
    /// CDS nonce sent.
    #[serde(borrow, deserialize_with = "text")]
    pub cluster_sent: Cow<'a, str>,
    /// CDS nonce acked.
    #[serde(borrow, deserialize_with = "text")]
    pub cluster_acked: Cow<'a, str>,
    /// LDS nonce sent.
    #[serde(borrow, deserialize_with = "text")]
    pub listener_sent: Cow<'a, str>,
    /// LDS nonce acked.
    #[serde(borrow, deserialize_with = "text")]
    pub listener_acked: Cow<'a, str>,
    /// RDS nonce sent.
    #[serde(borrow, deserialize_with = "text")]
    pub route_sent: Cow<'a, str>,
    /// RDS nonce acked.
    #[serde(borrow, deserialize_with = "text")]
    pub route_acked: Cow<'a, str>,
    /// EDS nonce sent.
    #[serde(borrow, deserialize_with = "text")]
    pub endpoint_sent: Cow<'a, str>,
    /// EDS nonce acked.
    #[serde(borrow, deserialize_with = "text")]
    pub endpoint_acked: Cow<'a, str>,
    /// ECDS nonce sent.
    #[serde(borrow, deserialize_with = "text")]
    pub extensionconfig_sent: Cow<'a, str>,
    /// ECDS nonce acked.
    #[serde(borrow, deserialize_with = "text")]
    pub extensionconfig_acked: Cow<'a, str>,
    /// Per type URL (newer istiods), with send time and the last NACK.
    #[serde(borrow)]
    pub resources: Resources<'a>,
}

impl SyncStatus<'_> {
    /// A copy that owns its strings (for answers whose bytes do not outlive them).
    pub fn into_owned(self) -> SyncStatus<'static> {
        let o = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
        SyncStatus {
            cluster_id: o(self.cluster_id),
            proxy: o(self.proxy),
            proxy_type: o(self.proxy_type),
            proxy_version: o(self.proxy_version),
            istio_version: o(self.istio_version),
            cluster_sent: o(self.cluster_sent),
            cluster_acked: o(self.cluster_acked),
            listener_sent: o(self.listener_sent),
            listener_acked: o(self.listener_acked),
            route_sent: o(self.route_sent),
            route_acked: o(self.route_acked),
            endpoint_sent: o(self.endpoint_sent),
            endpoint_acked: o(self.endpoint_acked),
            extensionconfig_sent: o(self.extensionconfig_sent),
            extensionconfig_acked: o(self.extensionconfig_acked),
            resources: self.resources.into_owned(),
        }
    }
}

/// A JSON string borrowed from the input when it has no escapes.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// A string field that may be `null` (read as empty).
fn text<'de: 'a, 'a, D: serde::Deserializer<'de>>(d: D) -> Result<Cow<'a, str>, D::Error> {
    Ok(Option::<Text<'a>>::deserialize(d)?
        .map(|t| t.0)
        .unwrap_or_default())
}

/// An optional string field, borrowed from the input when it has no escapes.
fn optional_text<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    Ok(Option::<Text<'a>>::deserialize(d)?.map(|t| t.0))
}

/// `SyncStatus.resources`: the entries of the five types the table shows, by type URL; entries
/// of other types are skipped.
#[derive(Debug, Clone, Default)]
pub struct Resources<'a> {
    /// CDS.
    pub cluster: Option<ResourceStatus<'a>>,
    /// LDS.
    pub listener: Option<ResourceStatus<'a>>,
    /// EDS.
    pub endpoint: Option<ResourceStatus<'a>>,
    /// RDS.
    pub route: Option<ResourceStatus<'a>>,
    /// ECDS.
    pub extension_config: Option<ResourceStatus<'a>>,
}

impl<'a> Resources<'a> {
    fn slot(&mut self, url: &str) -> Option<&mut Option<ResourceStatus<'a>>> {
        match url {
            type_url::CLUSTER => Some(&mut self.cluster),
            type_url::LISTENER => Some(&mut self.listener),
            type_url::ENDPOINT => Some(&mut self.endpoint),
            type_url::ROUTE => Some(&mut self.route),
            type_url::EXTENSION_CONFIG => Some(&mut self.extension_config),
            _ => None,
        }
    }

    /// The entry of a type URL, if istiod sent one.
    pub fn get(&self, url: &str) -> Option<&ResourceStatus<'a>> {
        match url {
            type_url::CLUSTER => self.cluster.as_ref(),
            type_url::LISTENER => self.listener.as_ref(),
            type_url::ENDPOINT => self.endpoint.as_ref(),
            type_url::ROUTE => self.route.as_ref(),
            type_url::EXTENSION_CONFIG => self.extension_config.as_ref(),
            _ => None,
        }
    }

    /// A copy that owns its strings.
    pub fn into_owned(self) -> Resources<'static> {
        let o = |r: Option<ResourceStatus<'_>>| r.map(ResourceStatus::into_owned);
        Resources {
            cluster: o(self.cluster),
            listener: o(self.listener),
            endpoint: o(self.endpoint),
            route: o(self.route),
            extension_config: o(self.extension_config),
        }
    }
}

impl<'de: 'a, 'a> Entries<'de> for Resources<'a> {
    const EXPECTING: &'static str = "a map from xDS type URL to its sync status";
    fn from_map<M: serde::de::MapAccess<'de>>(mut map: M) -> Result<Self, M::Error> {
        let mut out = Resources::default();
        while let Some(Text(url)) = map.next_key::<Text<'de>>()? {
            match out.slot(&url) {
                Some(slot) => *slot = Some(map.next_value()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Resources<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_option(NullableMap::<Self>(std::marker::PhantomData))
    }
}

/// A JSON object read entry by entry into `Self` (see [`NullableMap`]).
trait Entries<'de>: Default {
    /// What the input should have been, for errors.
    const EXPECTING: &'static str;
    /// Read the entries.
    fn from_map<M: serde::de::MapAccess<'de>>(map: M) -> Result<Self, M::Error>;
}

/// Visits a map into `T`; `null` (or an absent value) gives `T::default()`.
struct NullableMap<T>(std::marker::PhantomData<T>);

impl<'de, T: Entries<'de>> serde::de::Visitor<'de> for NullableMap<T> {
    type Value = T;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(T::EXPECTING)
    }
    fn visit_none<E>(self) -> Result<T, E> {
        Ok(T::default())
    }
    fn visit_unit<E>(self) -> Result<T, E> {
        Ok(T::default())
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<M: serde::de::MapAccess<'de>>(self, map: M) -> Result<T, M::Error> {
        T::from_map(map)
    }
}

/// One type's entry in `SyncStatus.resources`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ResourceStatus<'a> {
    /// Nonce sent.
    #[serde(borrow, deserialize_with = "text")]
    pub sent: Cow<'a, str>,
    /// Nonce acked.
    #[serde(borrow, deserialize_with = "text")]
    pub acked: Cow<'a, str>,
    /// RFC 3339 time of the last send ("" when not known).
    #[serde(
        rename = "sentTime",
        alias = "sent_time",
        borrow,
        deserialize_with = "text"
    )]
    pub sent_time: Cow<'a, str>,
    /// Error detail of the last NACK (cleared by the next ACK; "" when none).
    #[serde(
        rename = "lastError",
        alias = "last_error",
        borrow,
        deserialize_with = "text"
    )]
    pub last_error: Cow<'a, str>,
}

impl ResourceStatus<'_> {
    /// A copy that owns its strings.
    pub fn into_owned(self) -> ResourceStatus<'static> {
        ResourceStatus {
            sent: Cow::Owned(self.sent.into_owned()),
            acked: Cow::Owned(self.acked.into_owned()),
            sent_time: Cow::Owned(self.sent_time.into_owned()),
            last_error: Cow::Owned(self.last_error.into_owned()),
        }
    }
}

/// A `DiscoveryResponse` for type `istio.io/debug/syncz` (protojson, camelCase; snake_case
/// accepted). Strings borrow from the input where they can.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DiscoveryResponse<'a> {
    /// One `Any(ClientConfig)` per connected proxy.
    #[serde(borrow)]
    pub resources: Vec<ClientConfig<'a>>,
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

impl DiscoveryResponse<'_> {
    /// The istiod pod name from `controlPlane.identifier` (empty when absent or not JSON).
    pub fn istiod_id(&self) -> String {
        self.control_plane
            .as_ref()
            .and_then(|c| serde_json::from_str::<Identifier>(&c.identifier).ok())
            .map(|i| i.id)
            .unwrap_or_default()
    }

    /// A copy that owns its strings.
    pub fn into_owned(self) -> DiscoveryResponse<'static> {
        DiscoveryResponse {
            resources: self
                .resources
                .into_iter()
                .map(ClientConfig::into_owned)
                .collect(),
            control_plane: self.control_plane,
        }
    }
}

/// `envoy.service.status.v3.ClientConfig`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClientConfig<'a> {
    /// The proxy.
    #[serde(borrow)]
    pub node: Node<'a>,
    /// One entry per watched type, sorted by type URL.
    #[serde(rename = "genericXdsConfigs", alias = "generic_xds_configs", borrow)]
    pub generic_xds_configs: Option<Vec<GenericXdsConfig<'a>>>,
    /// The deprecated per-type form.
    #[serde(rename = "xdsConfig", alias = "xds_config")]
    pub xds_config: Vec<PerXdsConfig>,
}

/// `envoy.config.core.v3.Node`: id and the metadata istiod reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Node<'a> {
    /// `<pod>.<namespace>`.
    #[serde(borrow, deserialize_with = "text")]
    pub id: Cow<'a, str>,
    /// The string entries of the metadata `Struct` (`CLUSTER_ID`, `NAMESPACE`,
    /// `ISTIO_VERSION`, ...); entries of other kinds are skipped.
    #[serde(borrow)]
    pub metadata: Metadata<'a>,
}

impl Node<'_> {
    /// A string metadata value, or "".
    pub fn meta(&self, key: &str) -> &str {
        self.metadata
            .0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
            .unwrap_or_default()
    }
}

/// The string entries of a node's metadata, in input order.
#[derive(Debug, Clone, Default)]
pub struct Metadata<'a>(pub Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de: 'a, 'a> Entries<'de> for Metadata<'a> {
    const EXPECTING: &'static str = "a metadata map";
    fn from_map<M: serde::de::MapAccess<'de>>(mut map: M) -> Result<Self, M::Error> {
        /// A metadata value: a string, or anything else (skipped).
        struct Entry<'a>(Option<Cow<'a, str>>);
        impl<'de: 'a, 'a> Deserialize<'de> for Entry<'a> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Value<'a>(std::marker::PhantomData<&'a ()>);
                impl<'de: 'a, 'a> serde::de::Visitor<'de> for Value<'a> {
                    type Value = Entry<'a>;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("a metadata value")
                    }
                    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                        Ok(Entry(Some(Cow::Borrowed(v))))
                    }
                    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                        Ok(Entry(Some(Cow::Owned(v.to_owned()))))
                    }
                    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                        Ok(Entry(Some(Cow::Owned(v))))
                    }
                    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                        Ok(Entry(None))
                    }
                    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                        Ok(Entry(None))
                    }
                    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                        Ok(Entry(None))
                    }
                    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                        Ok(Entry(None))
                    }
                    fn visit_unit<E>(self) -> Result<Self::Value, E> {
                        Ok(Entry(None))
                    }
                    fn visit_none<E>(self) -> Result<Self::Value, E> {
                        Ok(Entry(None))
                    }
                    fn visit_some<D: serde::Deserializer<'de>>(
                        self,
                        d: D,
                    ) -> Result<Self::Value, D::Error> {
                        d.deserialize_any(self)
                    }
                    fn visit_seq<A: serde::de::SeqAccess<'de>>(
                        self,
                        mut seq: A,
                    ) -> Result<Self::Value, A::Error> {
                        while seq.next_element::<IgnoredAny>()?.is_some() {}
                        Ok(Entry(None))
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<Self::Value, A::Error> {
                        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                        Ok(Entry(None))
                    }
                }
                d.deserialize_any(Value(std::marker::PhantomData))
            }
        }
        let mut out = Vec::new();
        while let Some(Text(k)) = map.next_key::<Text<'de>>()? {
            if let Entry(Some(v)) = map.next_value()? {
                out.push((k, v));
            }
        }
        Ok(Metadata(out))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Metadata<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_option(NullableMap::<Self>(std::marker::PhantomData))
    }
}

impl Metadata<'_> {
    /// A copy that owns its strings.
    pub fn into_owned(self) -> Metadata<'static> {
        Metadata(
            self.0
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), Cow::Owned(v.into_owned())))
                .collect(),
        )
    }
}

/// `ClientConfig.GenericXdsConfig`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GenericXdsConfig<'a> {
    /// The xDS type URL.
    #[serde(
        rename = "typeUrl",
        alias = "type_url",
        borrow,
        deserialize_with = "text"
    )]
    pub type_url: Cow<'a, str>,
    /// `SYNCED`, `NOT_SENT`, `STALE`, `ERROR`; absent = `UNKNOWN`.
    #[serde(
        rename = "configStatus",
        alias = "config_status",
        borrow,
        deserialize_with = "optional_text"
    )]
    pub config_status: Option<Cow<'a, str>>,
    /// RFC 3339 time of the last send.
    #[serde(
        rename = "lastUpdated",
        alias = "last_updated",
        borrow,
        deserialize_with = "optional_text"
    )]
    pub last_updated: Option<Cow<'a, str>>,
    /// The last NACK.
    #[serde(rename = "errorState", alias = "error_state", borrow)]
    pub error_state: Option<UpdateFailureState<'a>>,
}

/// `admin.v3.UpdateFailureState`: only the details are shown.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UpdateFailureState<'a> {
    /// The NACK message.
    #[serde(borrow, deserialize_with = "optional_text")]
    pub details: Option<Cow<'a, str>>,
}

/// The deprecated `PerXdsConfig`: the type is the one config field that is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PerXdsConfig {
    /// `SYNCED`, `NOT_SENT`, `STALE`, `ERROR`.
    pub status: Option<String>,
    /// Set for LDS.
    #[serde(rename = "listenerConfig", alias = "listener_config")]
    pub listener_config: Option<IgnoredAny>,
    /// Set for CDS.
    #[serde(rename = "clusterConfig", alias = "cluster_config")]
    pub cluster_config: Option<IgnoredAny>,
    /// Set for RDS.
    #[serde(rename = "routeConfig", alias = "route_config")]
    pub route_config: Option<IgnoredAny>,
    /// Set for EDS.
    #[serde(rename = "endpointConfig", alias = "endpoint_config")]
    pub endpoint_config: Option<IgnoredAny>,
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

impl<'a> ClientConfig<'a> {
    /// Per-type statuses: `genericXdsConfigs`, else the deprecated `xdsConfig` restated
    /// (borrowing its strings).
    pub fn xds_configs(&self) -> Vec<GenericXdsConfig<'_>> {
        if let Some(g) = &self.generic_xds_configs {
            return g.clone();
        }
        self.xds_config
            .iter()
            .filter_map(|c| {
                Some(GenericXdsConfig {
                    type_url: Cow::Borrowed(c.type_url()?),
                    config_status: c.status.as_deref().map(Cow::Borrowed),
                    ..Default::default()
                })
            })
            .collect()
    }

    /// A copy that owns its strings.
    pub fn into_owned(self) -> ClientConfig<'static> {
        let o = |c: Option<Cow<'_, str>>| c.map(|c| Cow::Owned(c.into_owned()));
        ClientConfig {
            node: Node {
                id: Cow::Owned(self.node.id.into_owned()),
                metadata: self.node.metadata.into_owned(),
            },
            generic_xds_configs: self.generic_xds_configs.map(|g| {
                g.into_iter()
                    .map(|g| GenericXdsConfig {
                        type_url: Cow::Owned(g.type_url.into_owned()),
                        config_status: o(g.config_status),
                        last_updated: o(g.last_updated),
                        error_state: g.error_state.map(|e| UpdateFailureState {
                            details: o(e.details),
                        }),
                    })
                    .collect()
            }),
            xds_config: self.xds_config,
        }
    }
}

/// One saved or fetched syncz answer.
#[derive(Debug, Clone)]
pub enum Syncz<'a> {
    /// HTTP `/debug/syncz`: the array, and the istiod it came from.
    Http {
        /// The istiod pod (or, for a file, the file name up to its first '.').
        istiod: String,
        /// One entry per proxy (borrowing from the bytes of the answer).
        proxies: Vec<SyncStatus<'a>>,
    },
    /// xDS `istio.io/debug/syncz`.
    Xds {
        /// The istiod pod, from `controlPlane.identifier`.
        istiod: String,
        /// The answer.
        response: DiscoveryResponse<'a>,
    },
}

impl Syncz<'_> {
    /// An xDS answer, naming its istiod from `controlPlane.identifier`.
    pub fn xds<'a>(response: DiscoveryResponse<'a>) -> Syncz<'a> {
        Syncz::Xds {
            istiod: response.istiod_id(),
            response,
        }
    }

    /// How many proxies the answer lists.
    pub fn len(&self) -> usize {
        match self {
            Syncz::Http { proxies, .. } => proxies.len(),
            Syncz::Xds { response, .. } => response.resources.len(),
        }
    }

    /// True when the answer lists no proxy.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy that owns its strings (for answers whose bytes do not outlive them).
    pub fn into_owned(self) -> Syncz<'static> {
        match self {
            Syncz::Http { istiod, proxies } => Syncz::Http {
                istiod,
                proxies: proxies.into_iter().map(SyncStatus::into_owned).collect(),
            },
            Syncz::Xds { istiod, response } => Syncz::Xds {
                istiod,
                response: response.into_owned(),
            },
        }
    }
}

/// Parse a syncz answer, detecting its form: a JSON array is the HTTP form (`null` = no proxies),
/// a JSON object (or several concatenated, as `istioctl ps -o json` prints them) the xDS form,
/// anything else is tried as the YAML of an xDS `DiscoveryResponse` (`istioctl ps -o yaml`).
/// `istiod` names the HTTP source. Syntax errors carry the byte offset.
pub fn parse_syncz<'a>(
    path: &Path,
    istiod: &str,
    bytes: &'a [u8],
) -> Result<Vec<Syncz<'a>>, Error> {
    const WHAT: &str = "istiod syncz JSON (/debug/syncz array or xDS DiscoveryResponse)";
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
    match first {
        None => Ok(vec![]),
        Some(b'[') | Some(b'n') => {
            let proxies: Option<Vec<SyncStatus<'a>>> = crate::input::parse_json(path, WHAT, bytes)?;
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
                    Ok(r) => out.push(Syncz::xds(r)),
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
            let r: DiscoveryResponse<'_> = serde_saphyr::from_str(&text).map_err(|source| {
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
            Ok(vec![Syncz::xds(r.into_owned())])
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
        let r = proxies[0].resources.get(type_url::ROUTE).unwrap();
        assert_eq!(r.sent_time, "2024-06-20T10:00:01Z");
    }

    #[test]
    fn xds_response_is_detected() {
        let (p, b) = fixture("current/ps-xds/multiXdsStatusSinglePilot.json");
        let s = parse_syncz(&p, "ignored", &b).unwrap();
        let [
            Syncz::Xds {
                istiod,
                response: r,
            },
        ] = s.as_slice()
        else {
            panic!("{s:?}")
        };
        assert_eq!(istiod, "istiod1");
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
        let [
            Syncz::Xds {
                istiod,
                response: r,
            },
        ] = s.as_slice()
        else {
            panic!("{s:?}")
        };
        assert_eq!(istiod, "istiod1");
        assert_eq!(r.resources[0].node.meta("NAMESPACE"), "foo");
    }

    #[test]
    fn concatenated_responses_and_legacy_per_xds_config() {
        let text = br#"{"resources":[{"node":{"id":"a.ns"},"xdsConfig":[{"status":"SYNCED","clusterConfig":{}},{"status":"STALE","listenerConfig":{}}]}],
                        "controlPlane":{"identifier":"{\"ID\":\"istiod-a\"}"}}
                       {"resources":[],"controlPlane":{"identifier":"{\"ID\":\"istiod-b\"}"}}"#;
        let s = parse_syncz(Path::new("x.json"), "x", text).unwrap();
        assert_eq!(s.len(), 2);
        let Syncz::Xds { response: r, .. } = &s[0] else {
            panic!()
        };
        let c = r.resources[0].xds_configs();
        assert_eq!(c[0].type_url, type_url::CLUSTER);
        assert_eq!(c[1].config_status.as_deref(), Some("STALE"));
    }

    #[test]
    fn borrowed_parse_tolerates_nulls_unknown_types_and_escapes() {
        let text = br#"[{"proxy":"a\u002eb.ns","cluster_id":null,"cluster_sent":"n0",
            "resources":{"type.googleapis.com/x.v1.Unknown":{"sent":"9"},
              "type.googleapis.com/envoy.config.route.v3.RouteConfiguration":
                {"sent":"n1","acked":null,"lastError":"bad \"route\""}}},
            {"proxy":"c.ns","resources":null}]"#;
        let s = parse_syncz(Path::new("i.json"), "i", text).unwrap();
        let [Syncz::Http { proxies, .. }] = s.as_slice() else {
            panic!("{s:?}")
        };
        assert_eq!(proxies[0].proxy, "a.b.ns");
        assert!(matches!(proxies[0].proxy, Cow::Owned(_)), "escaped: copied");
        assert!(matches!(proxies[0].cluster_sent, Cow::Borrowed("n0")));
        assert_eq!(proxies[0].cluster_id, "");
        let r = &proxies[0].resources;
        assert!(r.cluster.is_none() && r.listener.is_none());
        let route = r.get(type_url::ROUTE).unwrap();
        assert_eq!((&*route.sent, &*route.acked), ("n1", ""));
        assert_eq!(route.last_error, "bad \"route\"");
        assert!(proxies[1].resources.get(type_url::ROUTE).is_none());
        // owned copies are equal
        let owned = s[0].clone().into_owned();
        let Syncz::Http { proxies: o, .. } = &owned else {
            panic!()
        };
        assert_eq!(o[0].resources.get(type_url::ROUTE).unwrap().sent, "n1");
    }

    #[test]
    fn node_metadata_keeps_string_entries() {
        let text = br#"{"resources":[{"node":{"id":"p.ns","metadata":{"CLUSTER_ID":"c1",
            "LABELS":{"app":"x"},"N":5,"OK":true,"L":[1,"a"],"ISTIO_VERSION":"1.2","Z":null}}}]}"#;
        let s = parse_syncz(Path::new("x.json"), "x", text).unwrap();
        let Syncz::Xds { response, .. } = &s[0] else {
            panic!("{s:?}")
        };
        let node = &response.resources[0].node;
        assert_eq!(node.meta("CLUSTER_ID"), "c1");
        assert_eq!(node.meta("ISTIO_VERSION"), "1.2");
        for other in ["LABELS", "N", "OK", "L", "Z", "MISSING"] {
            assert_eq!(node.meta(other), "", "{other}");
        }
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
