//! `endpoints`: `ENDPOINT  STATUS  OUTLIER CHECK  CLUSTER` from Envoy's
//! `GET /clusters?format=json`, cell for cell as `istioctl proxy-config endpoint` prints it.

use serde::{Deserialize, Serialize};

use super::listeners::{Pipe, SocketAddress};
use super::proto_json::{lenient_bool, lenient_string};
use crate::render::{Cell, Tabular, Tone};

/// `admin.v3.Clusters`: the `/clusters?format=json` document.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClusterStatuses {
    /// One entry per cluster.
    #[serde(default, alias = "clusterStatuses")]
    pub cluster_statuses: Vec<ClusterStatus>,
    /// Present when the document is a config_dump instead (a common mix-up).
    #[serde(default)]
    configs: Option<serde::de::IgnoredAny>,
}

impl ClusterStatuses {
    /// True when the document was a `/config_dump`, not `/clusters?format=json`.
    pub fn is_config_dump(&self) -> bool {
        self.configs.is_some()
    }
}

/// `admin.v3.ClusterStatus`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClusterStatus {
    /// Cluster name.
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: String,
    /// Its hosts.
    #[serde(default, alias = "hostStatuses")]
    pub host_statuses: Vec<HostStatus>,
}

/// `admin.v3.HostStatus`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HostStatus {
    /// Where the host is.
    #[serde(default)]
    pub address: Option<HostAddress>,
    /// Health.
    #[serde(default, alias = "healthStatus")]
    pub health_status: Option<HostHealthStatus>,
}

/// `config.core.v3.Address` as hosts use it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HostAddress {
    /// IP and port.
    #[serde(default, alias = "socketAddress")]
    pub socket_address: Option<SocketAddress>,
    /// Unix socket.
    #[serde(default)]
    pub pipe: Option<Pipe>,
    /// An internal listener.
    #[serde(default, alias = "envoyInternalAddress")]
    pub envoy_internal_address: Option<InternalAddress>,
}

/// `config.core.v3.EnvoyInternalAddress`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InternalAddress {
    /// The internal listener.
    #[serde(
        default,
        alias = "serverListenerName",
        deserialize_with = "lenient_string"
    )]
    pub server_listener_name: String,
    /// The endpoint id.
    #[serde(default, alias = "endpointId", deserialize_with = "lenient_string")]
    pub endpoint_id: String,
}

/// `admin.v3.HostHealthStatus`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HostHealthStatus {
    /// Ejected by outlier detection.
    #[serde(
        default,
        alias = "failedOutlierCheck",
        deserialize_with = "lenient_bool"
    )]
    pub failed_outlier_check: bool,
    /// EDS health: `HEALTHY`, `UNHEALTHY`, `DRAINING`, `TIMEOUT`, `DEGRADED`; absent = `UNKNOWN`.
    #[serde(default, alias = "edsHealthStatus")]
    pub eds_health_status: Option<String>,
}

/// One row of the endpoints table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointRow {
    /// `ip:port`, `unix://path`, `envoy://listener/id` or `unknown`.
    pub endpoint: String,
    /// The address part.
    pub address: String,
    /// The port (0 when not a socket).
    pub port: u32,
    /// EDS health status.
    pub status: String,
    /// `OK` or `FAILED`.
    pub outlier_check: String,
    /// The cluster.
    pub cluster: String,
}

impl Tabular for EndpointRow {
    const KIND: &'static str = "Endpoint";
    fn headers(_wide: bool) -> Vec<&'static str> {
        vec!["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"]
    }
    fn row(&self, _wide: bool) -> Vec<Cell<'_>> {
        let status_tone = match self.status.as_str() {
            "HEALTHY" => Tone::Good,
            "UNHEALTHY" | "TIMEOUT" => Tone::Bad,
            _ => Tone::Warn,
        };
        let outlier_tone = if self.outlier_check == "OK" {
            Tone::Plain
        } else {
            Tone::Bad
        };
        vec![
            Cell::plain(&self.endpoint),
            Cell::toned(&self.status, status_tone),
            Cell::toned(&self.outlier_check, outlier_tone),
            Cell::plain(&self.cluster),
        ]
    }
}

/// `--cluster`, `--address`, `--port`, `--status`.
#[derive(Debug, Clone, Default)]
pub struct EndpointFilter {
    /// Cluster name, ignoring case.
    pub cluster: Option<String>,
    /// Address, ignoring case.
    pub address: Option<String>,
    /// Port.
    pub port: Option<u32>,
    /// Status name, ignoring case.
    pub status: Option<String>,
}

impl EndpointFilter {
    fn matches(&self, r: &EndpointRow) -> bool {
        let eq =
            |f: &Option<String>, v: &str| f.as_deref().is_none_or(|f| f.eq_ignore_ascii_case(v));
        eq(&self.cluster, &r.cluster)
            && eq(&self.address, &r.address)
            && eq(&self.status, &r.status)
            && self.port.is_none_or(|p| p == r.port)
    }
}

/// All rows, filtered, sorted by (address, port, cluster).
pub fn endpoint_rows(doc: &ClusterStatuses, filter: &EndpointFilter) -> Vec<EndpointRow> {
    let mut rows: Vec<EndpointRow> = doc
        .cluster_statuses
        .iter()
        .flat_map(|c| c.host_statuses.iter().map(move |h| row(&c.name, h)))
        .filter(|r| filter.matches(r))
        .collect();
    rows.sort_by(|a, b| (&a.address, a.port, &a.cluster).cmp(&(&b.address, b.port, &b.cluster)));
    rows
}

fn row(cluster: &str, h: &HostStatus) -> EndpointRow {
    let (address, port) = match &h.address {
        Some(HostAddress {
            socket_address: Some(s),
            ..
        }) => (s.address.clone(), s.port_value.unwrap_or(0)),
        Some(HostAddress { pipe: Some(p), .. }) => (format!("unix://{}", p.path), 0),
        Some(HostAddress {
            envoy_internal_address: Some(i),
            ..
        }) => (
            format!("envoy://{}/{}", i.server_listener_name, i.endpoint_id),
            0,
        ),
        _ => ("unknown".into(), 0),
    };
    let endpoint = if port != 0 {
        format!("{address}:{port}")
    } else {
        address.clone()
    };
    let health = h.health_status.clone().unwrap_or_default();
    EndpointRow {
        endpoint,
        address,
        port,
        status: health.eds_health_status.unwrap_or_else(|| "UNKNOWN".into()),
        outlier_check: if health.failed_outlier_check {
            "FAILED"
        } else {
            "OK"
        }
        .into(),
        cluster: cluster.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_from_mixed_case_json() {
        let doc: ClusterStatuses = serde_json::from_value(serde_json::json!({
            "cluster_statuses": [
                {"name": "b", "hostStatuses": [
                    {"address": {"socketAddress": {"address": "10.0.0.2", "portValue": 80}},
                     "healthStatus": {"edsHealthStatus": "HEALTHY", "failedOutlierCheck": true}},
                    {"address": {"envoy_internal_address": {"server_listener_name": "connect_originate", "endpoint_id": "10.0.0.9:80"}},
                     "health_status": {}}
                ]},
                {"name": "a", "host_statuses": [
                    {"address": {"pipe": {"path": "/sock"}}, "health_status": {"eds_health_status": "DRAINING"}},
                    {"address": {"socket_address": {"address": "10.0.0.2", "port_value": 80}}}
                ]}
            ]
        }))
        .unwrap();
        let rows = endpoint_rows(&doc, &EndpointFilter::default());
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                r.row(false)
                    .into_iter()
                    .map(|c| c.text.into_owned())
                    .collect()
            })
            .collect();
        assert_eq!(
            cells,
            vec![
                vec!["10.0.0.2:80", "UNKNOWN", "OK", "a"],
                vec!["10.0.0.2:80", "HEALTHY", "FAILED", "b"],
                vec![
                    "envoy://connect_originate/10.0.0.9:80",
                    "UNKNOWN",
                    "OK",
                    "b"
                ],
                vec!["unix:///sock", "DRAINING", "OK", "a"],
            ]
        );
        let f = EndpointFilter {
            status: Some("healthy".into()),
            port: Some(80),
            ..Default::default()
        };
        assert_eq!(endpoint_rows(&doc, &f).len(), 1);
        let f = EndpointFilter {
            cluster: Some("A".into()),
            address: Some("unix:///sock".into()),
            ..Default::default()
        };
        assert_eq!(endpoint_rows(&doc, &f).len(), 1);
    }

    use crate::dump::fixture;

    #[test]
    fn legacy_2020_clusters_json_matches_istioctl() {
        let doc: ClusterStatuses = serde_json::from_slice(&fixture::istio(
            "legacy-2020/pc-endpoint-clusters/clusters.json",
        ))
        .unwrap();
        fixture::assert_table(
            &endpoint_rows(&doc, &EndpointFilter::default()),
            &fixture::istio_text("legacy-2020/pc-endpoint-clusters/clustersummary.txt"),
        );
        let f = EndpointFilter {
            cluster: Some("outbound|15014||istio-policy.istio-system.svc.cluster.local".into()),
            ..Default::default()
        };
        fixture::assert_table(
            &endpoint_rows(&doc, &f),
            &fixture::istio_text("legacy-2020/pc-endpoint-clusters/clustersummaryfiltered.txt"),
        );
        for f in [
            EndpointFilter {
                address: Some("172.17.0.14".into()),
                ..Default::default()
            },
            EndpointFilter {
                port: Some(15014),
                ..Default::default()
            },
            EndpointFilter {
                status: Some("unhealthy".into()),
                ..Default::default()
            },
        ] {
            let rows = endpoint_rows(&doc, &f);
            assert_eq!(rows.len(), 1, "{f:?}");
            assert_eq!(rows[0].endpoint, "172.17.0.14:15014");
        }
    }
}
