//! The state of the ADS server: desired resources and knobs per node id, the live stream of
//! each connected proxy, and per stream and type what was sent, acked and rejected — the
//! bookkeeping istiod keeps in its `WatchedResource`s (`pkg/xds/server.go`).

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher as _, RandomState};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use anyhow::{Result, anyhow, bail};
use serde_json::Value;
use tokio::sync::{oneshot, watch};

use super::codec::{self, Encoded};
use super::grpc::{self, FrameSender};
use super::invalid;
use super::proto::{
    ClientConfig, ControlPlane, DiscoveryRequest, DiscoveryResponse, GenericXdsConfig, StatusNode,
    UpdateFailureState,
};
use super::{
    CLUSTER, ConfigStatus, ENDPOINT, LISTENER, ProxyResources, ProxyStatus, ROUTE, TYPES,
    TypeStatus,
};

pub struct Shared {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    control_plane_id: String,
    nonce_keys: RandomState,
}

#[derive(Default)]
struct State {
    nodes: BTreeMap<String, NodeState>,
    next_stream: u64,
    pushes: u64,
    /// Debug requests answered (numbers their nonces).
    debug_answers: u64,
}

#[derive(Default)]
struct NodeState {
    desired: Option<Desired>,
    held: BTreeSet<String>,
    invalid: BTreeSet<String>,
    conn: Option<Conn>,
}

struct Desired {
    json: ProxyResources,
    by_type: BTreeMap<&'static str, Vec<Encoded>>,
}

struct Conn {
    stream: u64,
    node: Value,
    connected_at: SystemTime,
    tx: FrameSender,
    /// Dropping it ends the stream's reader.
    _cancel: Option<oneshot::Sender<()>>,
    watches: BTreeMap<String, Watch>,
}

#[derive(Default)]
struct Watch {
    names: BTreeSet<String>,
    sent: Option<Sent>,
    acked_nonce: Option<String>,
    acked_version: Option<String>,
    acked_at: Option<SystemTime>,
    last_error: Option<String>,
    last_error_at: Option<SystemTime>,
}

struct Sent {
    nonce: String,
    version: String,
    at: SystemTime,
    resources: Vec<Encoded>,
    invalid: bool,
}

/// Wildcard types: every resource is sent; the others only the names Envoy asked for.
fn is_wildcard(type_url: &str) -> bool {
    type_url == CLUSTER || type_url == LISTENER
}

impl Shared {
    pub fn new(control_plane_id: String) -> Shared {
        Shared {
            state: Mutex::new(State::default()),
            changed: watch::Sender::new(0),
            control_plane_id,
            nonce_keys: RandomState::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn next_stream_id(&self) -> u64 {
        let mut st = self.lock();
        st.next_stream += 1;
        st.next_stream
    }

    /// The first request of a stream: decode its node and make this stream the node's
    /// connection (replacing an older one).
    pub fn open(
        &self,
        stream: u64,
        node: &[u8],
        tx: FrameSender,
        cancel: Option<oneshot::Sender<()>>,
    ) -> Result<String> {
        if node.is_empty() {
            bail!("the first DiscoveryRequest of a stream must carry the node");
        }
        let node = codec::to_json("envoy.config.core.v3.Node", node)?;
        let id = node
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| anyhow!("node without an id"))?;
        let id = id.to_owned();
        let conn = Conn {
            stream,
            node,
            connected_at: SystemTime::now(),
            tx,
            _cancel: cancel,
            watches: BTreeMap::new(),
        };
        self.lock().nodes.entry(id.clone()).or_default().conn = Some(conn);
        tracing::debug!(node = %id, stream, "xds: proxy connected");
        self.bump();
        Ok(id)
    }

    /// The stream ended (client went away or was cancelled).
    pub fn close(&self, stream: u64, node_id: &str) {
        let mut st = self.lock();
        if let Some(n) = st.nodes.get_mut(node_id)
            && n.conn.as_ref().is_some_and(|c| c.stream == stream)
        {
            n.conn = None;
            drop(st);
            tracing::debug!(node = %node_id, stream, "xds: proxy disconnected");
            self.bump();
        }
    }

    /// One DiscoveryRequest: a subscription, an ACK or a NACK (istiod's `shouldRespond`).
    pub fn handle(&self, stream: u64, node_id: &str, req: DiscoveryRequest) {
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(node) = st.nodes.get_mut(node_id) else {
            return;
        };
        let Some(conn) = node.conn.as_mut().filter(|c| c.stream == stream) else {
            return;
        };
        let names: BTreeSet<String> = req.resource_names.into_iter().collect();
        let type_url = req.type_url;
        let w = conn.watches.entry(type_url.clone()).or_default();
        let force = if req.response_nonce.is_empty() {
            // a new subscription (or a re-subscription after reconnecting): always answer
            w.names = names;
            true
        } else if w.sent.as_ref().map(|s| s.nonce.as_str()) != Some(req.response_nonce.as_str()) {
            // answers a response that was superseded: ignore
            return;
        } else if let Some(err) = req.error_detail {
            tracing::debug!(node = %node_id, %type_url, error = %err.message, "xds: NACK");
            w.last_error = Some(err.message);
            w.last_error_at = Some(SystemTime::now());
            drop(guard);
            self.bump();
            return;
        } else {
            w.acked_nonce = Some(req.response_nonce);
            w.acked_version = Some(req.version_info);
            w.acked_at = Some(SystemTime::now());
            w.last_error = None;
            w.last_error_at = None;
            w.names = names;
            false
        };
        self.push(&mut st.pushes, node, &type_url, force);
        drop(guard);
        self.bump();
    }

    /// Sends `type_url` to the node's connection if it is watched, not held, and the payload
    /// differs from the last one sent (or `force`).
    fn push(&self, pushes: &mut u64, node: &mut NodeState, type_url: &str, force: bool) {
        let NodeState {
            desired,
            held,
            invalid,
            conn,
        } = node;
        let (Some(desired), Some(conn)) = (desired.as_ref(), conn.as_mut()) else {
            return;
        };
        if held.contains(type_url) {
            return;
        }
        let Some(w) = conn.watches.get_mut(type_url) else {
            return;
        };
        let all = desired
            .by_type
            .get(type_url)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let wildcard = is_wildcard(type_url);
        let mut resources: Vec<Encoded> = all
            .iter()
            .filter(|e| wildcard || w.names.contains(&e.name))
            .cloned()
            .collect();
        if !wildcard && resources.is_empty() && (w.sent.is_none() || w.names.is_empty()) {
            return;
        }
        // an invalid config is pushed only over an accepted one, so the proxy has a config to keep
        let poison = invalid.contains(type_url) && w.acked_nonce.is_some();
        if poison {
            match invalid::make_invalid(type_url, resources.clone()) {
                Ok(r) => resources = r,
                Err(e) => tracing::warn!(%type_url, "xds: cannot build the invalid config: {e:#}"),
            }
        }
        if !force && w.sent.as_ref().is_some_and(|s| s.resources == resources) {
            return;
        }
        *pushes += 1;
        let now = SystemTime::now();
        let version = format!("{}/{}", rfc3339(now), pushes);
        let nonce = self.nonce(*pushes);
        let resp = DiscoveryResponse {
            version_info: version.clone(),
            resources: resources
                .iter()
                .map(|e| prost_types::Any {
                    type_url: type_url.to_owned(),
                    value: e.bytes.clone(),
                })
                .collect(),
            type_url: type_url.to_owned(),
            nonce: nonce.clone(),
            control_plane: Some(ControlPlane {
                identifier: self.control_plane_id.clone(),
            }),
        };
        let _ = conn.tx.send(grpc::message(&resp));
        tracing::debug!(%type_url, %version, %nonce, n = resources.len(), poison, "xds: push");
        w.sent = Some(Sent {
            nonce,
            version,
            at: now,
            resources,
            invalid: poison,
        });
    }

    /// A UUID-shaped nonce, unique per push.
    fn nonce(&self, n: u64) -> String {
        let a = self.nonce_keys.hash_one((n, 1u8));
        let b = self.nonce_keys.hash_one((n, 2u8));
        let hex = format!("{a:016x}{b:016x}");
        let variant = ["8", "9", "a", "b"][(b & 3) as usize];
        format!(
            "{}-{}-4{}-{variant}{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[13..16],
            &hex[17..20],
            &hex[20..32]
        )
    }

    fn with_node(&self, node_id: &str, f: impl FnOnce(&mut NodeState, &mut u64, &Shared)) {
        let mut guard = self.lock();
        let st = &mut *guard;
        let node = st.nodes.entry(node_id.to_owned()).or_default();
        f(node, &mut st.pushes, self);
        drop(guard);
        self.bump();
    }

    fn push_all(&self, node: &mut NodeState, pushes: &mut u64) {
        let watched: Vec<String> = node
            .conn
            .as_ref()
            .map(|c| c.watches.keys().cloned().collect())
            .unwrap_or_default();
        for t in watched {
            self.push(pushes, node, &t, false);
        }
    }

    pub fn set_resources(&self, node_id: &str, res: ProxyResources) -> Result<()> {
        let mut by_type = BTreeMap::new();
        for &t in TYPES {
            let mut seen = BTreeSet::new();
            let mut encoded = Vec::new();
            for r in res.by_type(t) {
                let e = codec::encode(t, r).map_err(|e| e.context(format!("proxy {node_id}")))?;
                if !seen.insert(e.name.clone()) {
                    let label = codec::describe(t).map_or(t, |d| d.0);
                    bail!("proxy {node_id}: two {label}s named {:?}", e.name);
                }
                encoded.push(e);
            }
            by_type.insert(t, encoded);
        }
        self.with_node(node_id, |node, pushes, this| {
            node.desired = Some(Desired { json: res, by_type });
            this.push_all(node, pushes);
        });
        Ok(())
    }

    /// istiod's view of a proxy's config: the desired resources, with the invalid variant of a
    /// type where one was pushed.
    pub fn resources(&self, node_id: &str) -> Option<ProxyResources> {
        let st = self.lock();
        let node = st.nodes.get(node_id)?;
        let mut res = node.desired.as_ref()?.json.clone();
        let Some(conn) = &node.conn else {
            return Some(res);
        };
        for (t, w) in &conn.watches {
            let Some(sent) = w.sent.as_ref().filter(|s| s.invalid) else {
                continue;
            };
            let list = match t.as_str() {
                CLUSTER => &mut res.clusters,
                LISTENER => &mut res.listeners,
                ROUTE => &mut res.routes,
                ENDPOINT => &mut res.endpoints,
                _ => continue,
            };
            for e in &sent.resources {
                let (_, snake, camel) = codec::describe(t).unwrap_or(("", "name", "name"));
                let same = |v: &Value| {
                    v.get(snake)
                        .or_else(|| v.get(camel))
                        .and_then(Value::as_str)
                        == Some(e.name.as_str())
                };
                match list.iter_mut().find(|v| same(v)) {
                    Some(v) => *v = e.json.clone(),
                    None => list.push(e.json.clone()),
                }
            }
        }
        Some(res)
    }

    pub fn status(&self) -> Vec<ProxyStatus> {
        let st = self.lock();
        st.nodes
            .iter()
            .filter_map(|(id, n)| {
                let c = n.conn.as_ref()?;
                let types = c
                    .watches
                    .iter()
                    .map(|(t, w)| TypeStatus {
                        type_url: t.clone(),
                        resource_names: w.names.iter().cloned().collect(),
                        sent_nonce: w.sent.as_ref().map(|s| s.nonce.clone()),
                        sent_version: w.sent.as_ref().map(|s| s.version.clone()),
                        sent_at: w.sent.as_ref().map(|s| s.at),
                        sent_names: w
                            .sent
                            .as_ref()
                            .map(|s| s.resources.iter().map(|e| e.name.clone()).collect())
                            .unwrap_or_default(),
                        acked_nonce: w.acked_nonce.clone(),
                        acked_version: w.acked_version.clone(),
                        acked_at: w.acked_at,
                        last_error: w.last_error.clone(),
                        last_error_at: w.last_error_at,
                        held: n.held.contains(t),
                        invalid: n.invalid.contains(t),
                    })
                    .collect();
                Some(ProxyStatus {
                    node_id: id.clone(),
                    node: c.node.clone(),
                    stream: c.stream,
                    connected_at: c.connected_at,
                    types,
                })
            })
            .collect()
    }

    pub fn hold_type(&self, node_id: &str, type_url: &str, hold: bool) {
        self.with_node(node_id, |node, pushes, this| {
            if hold {
                node.held.insert(type_url.to_owned());
            } else if node.held.remove(type_url) {
                this.push(pushes, node, type_url, false);
            }
        });
    }

    pub fn set_invalid(&self, node_id: &str, type_url: &str, invalid: bool) {
        self.with_node(node_id, |node, pushes, this| {
            let changed = if invalid {
                node.invalid.insert(type_url.to_owned())
            } else {
                node.invalid.remove(type_url)
            };
            if changed {
                this.push(pushes, node, type_url, false);
            }
        });
    }

    pub fn disconnect(&self, node_id: &str) {
        self.with_node(node_id, |node, _, _| {
            if let Some(c) = node.conn.take() {
                let _ = c.tx.send(grpc::trailers(
                    grpc::UNAVAILABLE,
                    "meshsim: disconnected by the test",
                ));
            }
        });
    }

    /// The answer to a debug request (`istio.io/debug/<type>`), as istiod's `StatusGen`:
    /// `syncz` lists every connected proxy as an `envoy.service.status.v3.ClientConfig`.
    pub fn debug_response(&self, type_url: &str) -> Result<DiscoveryResponse> {
        if type_url != SYNCZ {
            bail!("meshsim serves only the debug type {SYNCZ}, not {type_url:?}");
        }
        let resources = self
            .status()
            .iter()
            .map(|p| prost_types::Any {
                type_url: CLIENT_CONFIG.to_owned(),
                value: prost::Message::encode_to_vec(&client_config(p)),
            })
            .collect::<Vec<_>>();
        let n = {
            let mut st = self.lock();
            st.debug_answers += 1;
            st.debug_answers
        };
        let now = SystemTime::now();
        tracing::debug!(n = resources.len(), "xds: debug syncz");
        Ok(DiscoveryResponse {
            version_info: rfc3339(now),
            resources,
            type_url: CLIENT_CONFIG.to_owned(),
            nonce: self.nonce(n | 1 << 63),
            control_plane: Some(ControlPlane {
                identifier: self.control_plane_id.clone(),
            }),
        })
    }

    /// Ends every stream (server shutdown).
    pub fn shutdown(&self) {
        let mut st = self.lock();
        for n in st.nodes.values_mut() {
            if let Some(c) = n.conn.take() {
                let _ =
                    c.tx.send(grpc::trailers(grpc::UNAVAILABLE, "meshsim: server stopped"));
            }
        }
    }
}

/// The debug type istioctl ≥ 1.22 asks for (`istioctl ps`).
pub const SYNCZ: &str = "istio.io/debug/syncz";
/// The type of the resources of the syncz answer.
pub const CLIENT_CONFIG: &str = "type.googleapis.com/envoy.service.status.v3.ClientConfig";

/// istiod's `debugSyncz` entry of one proxy: proxy id and three metadata strings, and one
/// `GenericXdsConfig` per watched type (sorted by type URL).
fn client_config(p: &ProxyStatus) -> ClientConfig {
    let fields = ["CLUSTER_ID", "NAMESPACE", "ISTIO_VERSION"]
        .into_iter()
        .filter_map(|k| {
            let v = p.metadata(k)?;
            Some((
                k.to_owned(),
                prost_types::Value {
                    kind: Some(prost_types::value::Kind::StringValue(v.to_owned())),
                },
            ))
        })
        .collect();
    let mut types: Vec<&TypeStatus> = p.types.iter().collect();
    types.sort_by(|a, b| a.type_url.cmp(&b.type_url));
    ClientConfig {
        node: Some(StatusNode {
            // istiod's proxy ID: `<pod>.<ns>` of `sidecar~<ip>~<pod>.<ns>~<domain>`
            id: p.node_id.split('~').nth(2).unwrap_or(&p.node_id).to_owned(),
            metadata: Some(prost_types::Struct { fields }),
        }),
        generic_xds_configs: types
            .into_iter()
            .map(|t| GenericXdsConfig {
                type_url: t.type_url.clone(),
                last_updated: t.sent_at.map(prost_types::Timestamp::from),
                config_status: match t.config_status() {
                    ConfigStatus::Synced => 1,
                    ConfigStatus::NotSent => 2,
                    ConfigStatus::Stale => 3,
                    ConfigStatus::Error => 4,
                },
                error_state: t.last_error.as_ref().map(|e| UpdateFailureState {
                    last_update_attempt: t.last_error_at.map(prost_types::Timestamp::from),
                    details: e.clone(),
                }),
            })
            .collect(),
    }
}

/// `2006-01-02T15:04:05Z` in UTC (istiod's push versions start with one).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // civil-from-days (Howard Hinnant)
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(1_787_400_000)),
            "2026-08-22T12:00:00Z"
        );
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn client_config_lists_watched_types_with_their_status() {
        let t =
            |url: &str, sent: Option<&str>, acked: Option<&str>, err: Option<&str>| TypeStatus {
                type_url: url.to_owned(),
                resource_names: vec![],
                sent_nonce: sent.map(str::to_owned),
                sent_version: None,
                sent_at: sent.map(|_| SystemTime::UNIX_EPOCH + Duration::from_secs(5)),
                sent_names: vec![],
                acked_nonce: acked.map(str::to_owned),
                acked_version: None,
                acked_at: None,
                last_error: err.map(str::to_owned),
                last_error_at: None,
                held: false,
                invalid: false,
            };
        let p = ProxyStatus {
            node_id: "sidecar~10.0.0.1~web-1.demo~demo.svc.cluster.local".into(),
            node: serde_json::json!({"id": "web-1.demo", "metadata": {
                "CLUSTER_ID": "Kubernetes", "NAMESPACE": "demo", "ISTIO_VERSION": "1.24.2",
                "LABELS": {"app": "web"}}}),
            stream: 1,
            connected_at: SystemTime::UNIX_EPOCH,
            types: vec![
                t(ROUTE, None, None, None),
                t(CLUSTER, Some("a"), Some("a"), None),
                t(LISTENER, Some("b"), Some("a"), Some("bad")),
                t(ENDPOINT, Some("c"), None, None),
            ],
        };
        let c = client_config(&p);
        let node = c.node.unwrap();
        assert_eq!(node.id, "web-1.demo");
        let mut keys: Vec<_> = node.metadata.unwrap().fields.into_keys().collect();
        keys.sort();
        assert_eq!(keys, ["CLUSTER_ID", "ISTIO_VERSION", "NAMESPACE"]);
        let got: Vec<(&str, i32)> = c
            .generic_xds_configs
            .iter()
            .map(|g| (g.type_url.as_str(), g.config_status))
            .collect();
        assert_eq!(
            got,
            [(CLUSTER, 1), (ENDPOINT, 3), (LISTENER, 4), (ROUTE, 2)]
        );
        assert_eq!(c.generic_xds_configs[0].last_updated.unwrap().seconds, 5);
        assert_eq!(
            c.generic_xds_configs[2]
                .error_state
                .as_ref()
                .unwrap()
                .details,
            "bad"
        );
    }

    #[test]
    fn only_syncz_is_a_debug_type() {
        let s = Shared::new("cp".into());
        let r = s.debug_response(SYNCZ).unwrap();
        assert_eq!(r.type_url, CLIENT_CONFIG);
        assert!(r.resources.is_empty());
        assert_eq!(r.control_plane.unwrap().identifier, "cp");
        assert!(s.debug_response("istio.io/debug/config_dump").is_err());
    }

    #[test]
    fn nonces_are_uuid_shaped_and_distinct() {
        let s = Shared::new(String::new());
        let a = s.nonce(1);
        assert_eq!(a.len(), 36, "{a}");
        assert_eq!(&a[14..15], "4", "{a}");
        assert_ne!(a, s.nonce(2));
    }
}
