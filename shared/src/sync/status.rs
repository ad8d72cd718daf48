//! Status rules: nonces (HTTP syncz) or `configStatus` (xDS syncz) → one state per xDS type.
//!
//! HTTP, as istioctl's `xdsStatus(sent, acked)`: nothing sent → `NOT SENT` (`IGNORED` for a
//! ztunnel); sent == acked → `SYNCED`; nothing acked → `STALE (Never Acknowledged)`; else `STALE`.
//! A NACK recorded in `resources[type].lastError` → `ERROR`, as istiod's own xDS rule does (1.23+).
//! xDS: `UNKNOWN`/absent → `IGNORED`, `NOT_SENT` → `NOT SENT`, else the enum name; a type missing
//! from a proxy's list → `IGNORED`.

use std::borrow::Cow;

use k8s_openapi::jiff;
use serde::Serialize;

use super::model::{ClientConfig, GenericXdsConfig, ResourceStatus, SyncStatus, type_url};
use crate::render::Tone;

/// The sync state of one xDS type of one proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyncState {
    /// What was sent was acknowledged.
    Synced,
    /// Nothing of this type was sent.
    NotSent,
    /// A newer push is not acknowledged yet.
    Stale,
    /// Pushed, never acknowledged.
    StaleNeverAcknowledged,
    /// The proxy rejected (NACKed) the last push.
    Error,
    /// The proxy does not watch this type.
    Ignored,
}

impl SyncState {
    /// The table text, as istioctl prints it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Synced => "SYNCED",
            Self::NotSent => "NOT SENT",
            Self::Stale => "STALE",
            Self::StaleNeverAcknowledged => "STALE (Never Acknowledged)",
            Self::Error => "ERROR",
            Self::Ignored => "IGNORED",
        }
    }

    /// The colour of the cell.
    pub fn tone(self) -> Tone {
        match self {
            Self::Synced => Tone::Good,
            Self::NotSent | Self::Ignored => Tone::Dim,
            Self::Stale | Self::StaleNeverAcknowledged => Tone::Warn,
            Self::Error => Tone::Bad,
        }
    }

    /// True when this type is not in sync: something pushed is unacknowledged or rejected.
    /// `NOT SENT` and `IGNORED` are not drift: there is nothing to acknowledge.
    pub fn is_drift(self) -> bool {
        matches!(
            self,
            Self::Stale | Self::StaleNeverAcknowledged | Self::Error
        )
    }

    /// The HTTP rule (see the module docs).
    pub fn from_nonces(sent: &str, acked: &str, last_error: Option<&str>, ztunnel: bool) -> Self {
        if last_error.is_some_and(|e| !e.is_empty()) {
            Self::Error
        } else if sent.is_empty() {
            if ztunnel {
                Self::Ignored
            } else {
                Self::NotSent
            }
        } else if sent == acked {
            Self::Synced
        } else if acked.is_empty() {
            Self::StaleNeverAcknowledged
        } else {
            Self::Stale
        }
    }

    /// The xDS rule: a `ConfigStatus` enum name (absent = `UNKNOWN`).
    pub fn from_config_status(status: Option<&str>) -> Self {
        match status {
            Some("SYNCED") => Self::Synced,
            Some("NOT_SENT") => Self::NotSent,
            Some("STALE") => Self::Stale,
            Some("ERROR") => Self::Error,
            _ => Self::Ignored,
        }
    }
}

impl std::fmt::Display for SyncState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// One type of one proxy: its state and what it was computed from. Strings borrow from the
/// syncz answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeStatus<'a> {
    /// The state.
    pub state: SyncState,
    /// Nonce sent (HTTP syncz only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent: Option<Cow<'a, str>>,
    /// Nonce acked (HTTP syncz only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked: Option<Cow<'a, str>>,
    /// RFC 3339 time of the last push, when istiod reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sent: Option<Cow<'a, str>>,
    /// The NACK message, when the proxy rejected the last push.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Cow<'a, str>>,
}

impl TypeStatus<'_> {
    fn ignored() -> Self {
        Self {
            state: SyncState::Ignored,
            sent: None,
            acked: None,
            last_sent: None,
            error: None,
        }
    }
}

/// The short names of the types in table order.
pub const TYPES: [&str; 5] = ["CDS", "LDS", "EDS", "RDS", "ECDS"];

/// One proxy as one istiod sees it: the typed result of `mesh-sync`. Strings borrow from the
/// syncz answer it was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyStatus<'a> {
    /// `<pod>.<namespace>` (the node id).
    pub name: Cow<'a, str>,
    /// The proxy's namespace.
    pub namespace: Cow<'a, str>,
    /// `CLUSTER_ID`.
    pub cluster: Cow<'a, str>,
    /// `sidecar`, `router`, `waypoint`, `ztunnel` (when istiod says).
    #[serde(skip_serializing_if = "str::is_empty")]
    pub proxy_type: Cow<'a, str>,
    /// The istiod replica holding the connection.
    pub istiod: Cow<'a, str>,
    /// The proxy's Istio version (`<envoy version>*` when only that is known).
    pub version: Cow<'a, str>,
    /// CDS.
    pub cds: TypeStatus<'a>,
    /// LDS.
    pub lds: TypeStatus<'a>,
    /// EDS.
    pub eds: TypeStatus<'a>,
    /// RDS.
    pub rds: TypeStatus<'a>,
    /// ECDS.
    pub ecds: TypeStatus<'a>,
    /// Age of the newest push (for `-o wide`), computed by the view from a given "now".
    #[serde(skip)]
    pub last_sent_age: Option<jiff::SignedDuration>,
}

impl<'a> ProxyStatus<'a> {
    /// The five types in table order with their short names.
    pub fn types(&self) -> [(&'static str, &TypeStatus<'a>); 5] {
        [
            ("CDS", &self.cds),
            ("LDS", &self.lds),
            ("EDS", &self.eds),
            ("RDS", &self.rds),
            ("ECDS", &self.ecds),
        ]
    }

    /// True when some type is STALE or ERROR.
    pub fn has_drift(&self) -> bool {
        self.types().iter().any(|(_, t)| t.state.is_drift())
    }

    /// The RFC 3339 time of the newest push over all types.
    pub fn last_sent(&self) -> Option<&str> {
        self.types()
            .into_iter()
            .filter_map(|(_, t)| t.last_sent.as_deref())
            .max_by_key(|s| parse_time(s))
    }
}

/// The namespace in a `<pod>.<namespace>` node id (namespaces have no dots).
pub fn namespace_of(proxy_id: &str) -> &str {
    proxy_id
        .rsplit_once('.')
        .map(|(_, ns)| ns)
        .unwrap_or_default()
}

/// A borrowed view of a string that lives at least as long as `'a`.
fn view(s: &str) -> Cow<'_, str> {
    Cow::Borrowed(s)
}

/// `Some` view of a non-empty string.
fn some(s: &str) -> Option<Cow<'_, str>> {
    (!s.is_empty()).then(|| view(s))
}

/// One type of an HTTP syncz entry: the flat `<type>_sent`/`<type>_acked` nonces, else those of
/// `resources[url]`, which also has the send time and the last NACK.
fn http_type<'a>(
    resource: Option<&'a ResourceStatus<'_>>,
    sent: &'a str,
    acked: &'a str,
    ztunnel: bool,
) -> TypeStatus<'a> {
    let (sent, acked) = match resource {
        Some(r) if sent.is_empty() && acked.is_empty() => (r.sent.as_ref(), r.acked.as_ref()),
        _ => (sent, acked),
    };
    let error = resource.and_then(|r| some(&r.last_error));
    TypeStatus {
        state: SyncState::from_nonces(sent, acked, error.as_deref(), ztunnel),
        sent: some(sent),
        acked: some(acked),
        last_sent: resource.and_then(|r| some(&r.sent_time)),
        error,
    }
}

impl<'a> ProxyStatus<'a> {
    /// One proxy of an HTTP `/debug/syncz` answer from `istiod`.
    pub fn from_http(s: &'a SyncStatus<'_>, istiod: &'a str) -> Self {
        let z = s.proxy_type == "ztunnel";
        let version = if !s.istio_version.is_empty() {
            view(&s.istio_version)
        } else if !s.proxy_version.is_empty() {
            Cow::Owned(format!("{}*", s.proxy_version))
        } else {
            Cow::Borrowed("")
        };
        let r = &s.resources;
        Self {
            namespace: Cow::Borrowed(namespace_of(&s.proxy)),
            name: view(&s.proxy),
            cluster: view(&s.cluster_id),
            proxy_type: view(&s.proxy_type),
            istiod: Cow::Borrowed(istiod),
            version,
            cds: http_type(r.cluster.as_ref(), &s.cluster_sent, &s.cluster_acked, z),
            lds: http_type(r.listener.as_ref(), &s.listener_sent, &s.listener_acked, z),
            eds: http_type(r.endpoint.as_ref(), &s.endpoint_sent, &s.endpoint_acked, z),
            rds: http_type(r.route.as_ref(), &s.route_sent, &s.route_acked, z),
            ecds: http_type(
                r.extension_config.as_ref(),
                &s.extensionconfig_sent,
                &s.extensionconfig_acked,
                z,
            ),
            last_sent_age: None,
        }
    }

    /// One `ClientConfig` of an xDS syncz answer from `istiod`.
    pub fn from_xds(c: &'a ClientConfig<'_>, istiod: &'a str) -> Self {
        let legacy;
        let configs: &[GenericXdsConfig<'a>] = match &c.generic_xds_configs {
            Some(g) => g,
            None => {
                legacy = c.xds_configs();
                &legacy
            }
        };
        let of = |url: &str| -> TypeStatus<'a> {
            configs
                .iter()
                .find(|g| g.type_url == url)
                .map_or_else(TypeStatus::ignored, xds_type)
        };
        let node = &c.node;
        let namespace = match node.meta("NAMESPACE") {
            "" => namespace_of(&node.id),
            ns => ns,
        };
        Self {
            namespace: Cow::Borrowed(namespace),
            cluster: Cow::Borrowed(node.meta("CLUSTER_ID")),
            proxy_type: Cow::Borrowed(""),
            istiod: Cow::Borrowed(istiod),
            version: Cow::Borrowed(node.meta("ISTIO_VERSION")),
            name: Cow::Borrowed(&node.id),
            cds: of(type_url::CLUSTER),
            lds: of(type_url::LISTENER),
            eds: of(type_url::ENDPOINT),
            rds: of(type_url::ROUTE),
            ecds: of(type_url::EXTENSION_CONFIG),
            last_sent_age: None,
        }
    }
}

fn xds_type<'a>(g: &GenericXdsConfig<'a>) -> TypeStatus<'a> {
    let non_empty = |t: &Cow<'a, str>| !t.is_empty();
    TypeStatus {
        state: SyncState::from_config_status(g.config_status.as_deref()),
        sent: None,
        acked: None,
        last_sent: g.last_updated.clone().filter(non_empty),
        error: g
            .error_state
            .as_ref()
            .and_then(|e| e.details.clone())
            .filter(non_empty),
    }
}

/// Parse an RFC 3339 time.
pub fn parse_time(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

/// kubectl's AGE format (`k8s.io/apimachinery/pkg/util/duration.HumanDuration`).
pub fn human_duration(d: jiff::SignedDuration) -> String {
    let secs = d.as_secs();
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;
    use SyncState::*;

    #[test]
    fn http_rules() {
        assert_eq!(SyncState::from_nonces("", "", None, false), NotSent);
        assert_eq!(SyncState::from_nonces("", "", None, true), Ignored);
        assert_eq!(SyncState::from_nonces("a", "a", None, false), Synced);
        assert_eq!(
            SyncState::from_nonces("a", "", None, false),
            StaleNeverAcknowledged
        );
        assert_eq!(SyncState::from_nonces("a", "b", None, false), Stale);
        assert_eq!(SyncState::from_nonces("a", "a", Some("bad"), false), Error);
        assert_eq!(SyncState::from_nonces("a", "a", Some(""), false), Synced);
        // a 1.4 istiod: only acked set (never possible in practice) is still NOT SENT
        assert_eq!(SyncState::from_nonces("", "x", None, false), NotSent);
    }

    #[test]
    fn xds_rules() {
        assert_eq!(SyncState::from_config_status(Some("SYNCED")), Synced);
        assert_eq!(SyncState::from_config_status(Some("NOT_SENT")), NotSent);
        assert_eq!(SyncState::from_config_status(Some("STALE")), Stale);
        assert_eq!(SyncState::from_config_status(Some("ERROR")), Error);
        assert_eq!(SyncState::from_config_status(Some("UNKNOWN")), Ignored);
        assert_eq!(SyncState::from_config_status(None), Ignored);
    }

    #[test]
    fn drift() {
        assert!(Stale.is_drift() && StaleNeverAcknowledged.is_drift() && Error.is_drift());
        assert!(!Synced.is_drift() && !NotSent.is_drift() && !Ignored.is_drift());
        assert_eq!(StaleNeverAcknowledged.label(), "STALE (Never Acknowledged)");
        assert_eq!(
            serde_json::to_string(&StaleNeverAcknowledged).unwrap(),
            "\"STALE_NEVER_ACKNOWLEDGED\""
        );
    }

    #[test]
    fn http_entry_uses_resources_and_version_fallback() {
        let s: SyncStatus = serde_json::from_str(
            r#"{"proxy":"a.ns1","proxy_version":"1.13.0","cluster_sent":"n1","cluster_acked":"n1",
                "resources":{"type.googleapis.com/envoy.config.listener.v3.Listener":
                    {"sent":"n2","acked":"n1","sentTime":"2024-06-20T10:00:00Z","lastError":"bad listener"}}}"#,
        )
        .unwrap();
        let p = ProxyStatus::from_http(&s, "istiod-x");
        assert_eq!(p.namespace, "ns1");
        assert_eq!(p.version, "1.13.0*");
        assert_eq!(p.cds.state, Synced);
        assert_eq!(p.lds.state, Error);
        assert_eq!(p.lds.error.as_deref(), Some("bad listener"));
        assert_eq!(p.lds.last_sent.as_deref(), Some("2024-06-20T10:00:00Z"));
        assert_eq!(p.rds.state, NotSent);
        assert!(p.has_drift());
        assert_eq!(p.last_sent(), Some("2024-06-20T10:00:00Z"));
    }

    #[test]
    fn xds_missing_type_is_ignored() {
        let c: ClientConfig = serde_json::from_str(
            r#"{"node":{"id":"p.ns","metadata":{"CLUSTER_ID":"c1","ISTIO_VERSION":"1.24"}},
                "genericXdsConfigs":[{"typeUrl":"type.googleapis.com/envoy.config.cluster.v3.Cluster","configStatus":"SYNCED",
                  "lastUpdated":"2024-01-01T00:00:00Z"},
                 {"typeUrl":"type.googleapis.com/envoy.config.listener.v3.Listener","configStatus":"ERROR",
                  "errorState":{"details":"nack"}}]}"#,
        )
        .unwrap();
        let p = ProxyStatus::from_xds(&c, "istiod-1");
        assert_eq!(p.namespace, "ns");
        assert_eq!(
            (p.cds.state, p.lds.state, p.eds.state),
            (Synced, Error, Ignored)
        );
        assert_eq!(p.lds.error.as_deref(), Some("nack"));
        assert_eq!(p.cds.last_sent.as_deref(), Some("2024-01-01T00:00:00Z"));
    }

    #[test]
    fn human_durations() {
        let d = |s: i64| human_duration(jiff::SignedDuration::from_secs(s));
        assert_eq!(d(-5), "<invalid>");
        assert_eq!(d(59), "59s");
        assert_eq!(d(119), "119s");
        assert_eq!(d(150), "2m30s");
        assert_eq!(d(600), "10m");
        assert_eq!(d(3 * 3600 + 60), "3h1m");
        assert_eq!(d(10 * 3600), "10h");
        assert_eq!(d(3 * 86400 + 3600), "3d1h");
        assert_eq!(d(30 * 86400), "30d");
        assert_eq!(d(3 * 365 * 86400), "3y");
    }
}
