//! What R istiod replicas say about N proxies: proxy `i` is connected to replica `i % R`. Most
//! proxies are in sync; every 97th has a CDS push it has not acknowledged, every 251st NACKed
//! its last LDS push, every 13th does not watch ECDS.
//!
//! Two forms, as `kubectl mesh-sync -f` reads them: the HTTP `/debug/syncz` array (save it as
//! `<istiod pod>.syncz.json`: the file name names the replica), or the xDS
//! `istio.io/debug/syncz` `DiscoveryResponse` in protojson (names its replica inside).

use std::io::Write;

use anyhow::Result;
use serde_json::{Value, json};

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
const RDS: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
const ECDS: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
const SENT: &str = "2024-06-20T10:00:00Z";
const ISTIO_VERSION: &str = "1.24.2";

/// Which answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynczForm {
    /// HTTP `GET /debug/syncz`: a JSON array of `SyncStatus`.
    Http,
    /// xDS `istio.io/debug/syncz`: a `DiscoveryResponse` of `ClientConfig`s.
    Xds,
}

/// N proxies across R replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynczSpec {
    pub proxies: usize,
    pub replicas: usize,
}

impl SynczSpec {
    /// The pod name of replica `r`.
    pub fn istiod(&self, r: usize) -> String {
        format!("istiod-7f9c8d6b5-r{r}")
    }

    /// `<pod>.<namespace>` of proxy `i`.
    pub fn proxy(&self, i: usize) -> String {
        let app = [
            "reviews", "ratings", "details", "payments", "catalog", "search", "checkout",
        ][i % 7];
        format!(
            "{app}-v{}-{:x}-{:05x}.ns-{}",
            i % 3 + 1,
            mix(i as u64, 0) & 0xfff_ffff,
            mix(i as u64, 1) & 0xf_ffff,
            i % 40
        )
    }
}

/// What replica `replica` says, in `form`; returns the bytes written.
pub fn write_syncz(
    spec: &SynczSpec,
    replica: usize,
    form: SynczForm,
    out: &mut dyn Write,
) -> Result<u64> {
    let replicas = spec.replicas.max(1);
    let proxies = (replica..spec.proxies).step_by(replicas);
    let mut bytes = Vec::new();
    match form {
        SynczForm::Http => {
            let items: Vec<Value> = proxies.map(|i| http_status(spec, i)).collect();
            serde_json::to_writer_pretty(&mut bytes, &items)?;
        }
        SynczForm::Xds => {
            let istiod = spec.istiod(replica);
            let identifier = json!({"Component": "istiod", "ID": istiod,
                "Info": {"version": ISTIO_VERSION, "revision": "2a9c1a6e0f3b", "golang_version": "go1.23.4", "status": "Clean", "tag": ISTIO_VERSION}});
            let response = json!({
                "versionInfo": ISTIO_VERSION,
                "resources": proxies.map(|i| client_config(spec, i)).collect::<Vec<_>>(),
                "typeUrl": "istio.io/debug/syncz",
                "nonce": format!("{:016x}", mix(replica as u64, 9)),
                "controlPlane": {"identifier": identifier.to_string()},
            });
            serde_json::to_writer_pretty(&mut bytes, &response)?;
        }
    }
    bytes.push(b'\n');
    out.write_all(&bytes)?;
    Ok(bytes.len() as u64)
}

/// A deterministic 64-bit mix of (n, salt) (splitmix64).
fn mix(n: u64, salt: u64) -> u64 {
    let mut z = n
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(salt.wrapping_mul(0xbf58_476d_1ce4_e5b9))
        .wrapping_add(0x94d0_49bb_1331_11eb);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn nonce(i: usize, push: u64) -> String {
    let h = mix(i as u64, push);
    let l = mix(i as u64, push + 1000);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        (l >> 48) & 0xfff,
        l & 0xffff_ffff_ffff
    )
}

/// Per type: (type URL, HTTP field prefix, sent nonce, acked nonce, NACK text).
fn types(i: usize) -> Vec<(&'static str, &'static str, String, String, Option<String>)> {
    let mut out = Vec::new();
    for (n, (url, prefix)) in [
        (CDS, "cluster"),
        (LDS, "listener"),
        (RDS, "route"),
        (EDS, "endpoint"),
        (ECDS, "extensionconfig"),
    ]
    .into_iter()
    .enumerate()
    {
        if url == ECDS && i.is_multiple_of(13) {
            continue;
        }
        let sent = nonce(i, n as u64 * 2);
        let acked = if url == CDS && i % 97 == 5 {
            nonce(i, n as u64 * 2 + 1)
        } else {
            sent.clone()
        };
        let error = (url == LDS && i % 251 == 7).then(|| {
            "Error adding/updating listener(s) 0.0.0.0_8080: duplicate listener 0.0.0.0_8080 found"
                .to_owned()
        });
        out.push((url, prefix, sent, acked, error));
    }
    out
}

fn http_status(spec: &SynczSpec, i: usize) -> Value {
    let mut v = json!({
        "cluster_id": "Kubernetes",
        "proxy": spec.proxy(i),
        "proxy_type": "sidecar",
        "proxy_version": ISTIO_VERSION,
        "istio_version": ISTIO_VERSION,
    });
    let mut resources = serde_json::Map::new();
    for (url, prefix, sent, acked, error) in types(i) {
        v[format!("{prefix}_sent")] = json!(sent);
        v[format!("{prefix}_acked")] = json!(acked);
        let mut r = json!({"sent": sent, "acked": acked, "sentTime": SENT});
        if let Some(e) = error {
            r["lastError"] = json!(e);
        }
        resources.insert(url.to_owned(), r);
    }
    v["resources"] = Value::Object(resources);
    v
}

fn client_config(spec: &SynczSpec, i: usize) -> Value {
    let proxy = spec.proxy(i);
    let namespace = proxy.rsplit('.').next().unwrap_or_default().to_owned();
    let configs: Vec<Value> = {
        let mut t = types(i);
        t.sort_by_key(|x| x.0);
        t.into_iter()
            .map(|(url, _, sent, acked, error)| {
                let status = match (&error, sent == acked) {
                    (Some(_), _) => "ERROR",
                    (None, true) => "SYNCED",
                    (None, false) => "STALE",
                };
                let mut c = json!({"typeUrl": url, "configStatus": status, "lastUpdated": SENT});
                if let Some(e) = error {
                    c["errorState"] = json!({"lastUpdateAttempt": SENT, "details": e});
                }
                c
            })
            .collect()
    };
    json!({
        "@type": "type.googleapis.com/envoy.service.status.v3.ClientConfig",
        "node": {"id": proxy, "metadata": {
            "CLUSTER_ID": "Kubernetes", "NAMESPACE": namespace, "ISTIO_VERSION": ISTIO_VERSION}},
        "genericXdsConfigs": configs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_are_spread_over_replicas() {
        let spec = SynczSpec {
            proxies: 100,
            replicas: 3,
        };
        let mut buf = Vec::new();
        write_syncz(&spec, 1, SynczForm::Http, &mut buf).unwrap();
        let v: Value = serde_json::from_slice(&buf).unwrap();
        let items = v.as_array().unwrap();
        assert_eq!(items.len(), 33);
        assert_eq!(items[0]["proxy"], spec.proxy(1));
        let p5 = items.iter().find(|p| p["proxy"] == spec.proxy(7)).unwrap();
        assert!(p5["resources"][LDS]["lastError"].is_string());
        assert!(p5["resources"][ECDS].is_object());

        let mut buf = Vec::new();
        write_syncz(&spec, 2, SynczForm::Xds, &mut buf).unwrap();
        let v: Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["resources"].as_array().unwrap().len(), 33);
        let stale = v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["node"]["id"] == spec.proxy(5))
            .unwrap();
        assert_eq!(stale["genericXdsConfigs"][0]["configStatus"], "STALE");
        assert!(
            v["controlPlane"]["identifier"]
                .as_str()
                .unwrap()
                .contains("istiod-7f9c8d6b5-r2")
        );
        let names: std::collections::BTreeSet<String> = (0..1000).map(|i| spec.proxy(i)).collect();
        assert_eq!(names.len(), 1000);
    }
}
