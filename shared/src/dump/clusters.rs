//! `clusters`: `SERVICE FQDN  PORT  SUBSET  DIRECTION  TYPE  DESTINATION RULE`, cell for cell as
//! `istioctl proxy-config cluster` prints it.

use serde::{Deserialize, Serialize};

use super::proto_json::{Metadata, lenient_string};
use crate::render::{Cell, Tabular};

/// `ClustersConfigDump` (v3 and v2alpha have the same fields we read).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClustersDump {
    /// Clusters from the bootstrap.
    #[serde(default, alias = "staticClusters")]
    pub static_clusters: Vec<ClusterEntry>,
    /// Clusters from CDS.
    #[serde(default, alias = "dynamicActiveClusters")]
    pub dynamic_active_clusters: Vec<ClusterEntry>,
    /// Clusters from CDS still warming.
    #[serde(default, alias = "dynamicWarmingClusters")]
    pub dynamic_warming_clusters: Vec<ClusterEntry>,
}

/// A static or dynamic cluster entry.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClusterEntry {
    /// The cluster.
    #[serde(default)]
    pub cluster: Option<Cluster>,
}

/// The fields of `config.cluster.v3.Cluster` the views read.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Cluster {
    /// Name, e.g. `outbound|9080|v1|reviews.default.svc.cluster.local`.
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: String,
    /// Discovery type (`EDS`, `STRICT_DNS`, ...); absent means `STATIC` (proto3 default).
    #[serde(default, rename = "type")]
    pub discovery_type: Option<String>,
    /// Istio's metadata (`filter_metadata.istio.config`).
    #[serde(default)]
    pub metadata: Option<Metadata>,
}

/// One row of the clusters table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRow {
    /// The cluster name as Envoy has it.
    pub name: String,
    /// FQDN from an Istio cluster name; the whole name for other clusters.
    pub service_fqdn: String,
    /// Port from an Istio cluster name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Subset from an Istio cluster name (empty = none).
    pub subset: String,
    /// `inbound`, `outbound`, `inbound-vip`, ... from an Istio cluster name.
    pub direction: String,
    /// Discovery type.
    #[serde(rename = "type")]
    pub cluster_type: String,
    /// The DestinationRule as `name.namespace`, `<unknown>`, or empty.
    pub destination_rule: String,
    /// Whether the name follows Istio's `direction|port|subset|host` grammar.
    #[serde(skip)]
    parsed: bool,
}

impl Tabular for ClusterRow {
    const KIND: &'static str = "Cluster";
    fn headers(_wide: bool) -> Vec<&'static str> {
        vec![
            "SERVICE FQDN",
            "PORT",
            "SUBSET",
            "DIRECTION",
            "TYPE",
            "DESTINATION RULE",
        ]
    }
    fn row(&self, _wide: bool) -> Vec<Cell<'_>> {
        if !self.parsed {
            return vec![
                Cell::plain(&self.name),
                Cell::plain("-"),
                Cell::plain("-"),
                Cell::plain("-"),
                Cell::plain(&self.cluster_type),
                Cell::plain(&self.destination_rule),
            ];
        }
        let subset = if self.subset.is_empty() {
            "-"
        } else {
            &self.subset
        };
        vec![
            Cell::plain(&self.service_fqdn),
            Cell::plain(self.port.unwrap_or(0).to_string()),
            Cell::plain(subset),
            Cell::plain(&self.direction),
            Cell::plain(&self.cluster_type),
            Cell::plain(&self.destination_rule),
        ]
    }
}

/// `--fqdn`, `--port`, `--subset`, `--direction`: substrings of the cluster name, as istioctl
/// matches them (`--port N` matches `|N|`).
#[derive(Debug, Clone, Default)]
pub struct ClusterFilter {
    /// Substring of the name.
    pub fqdn: Option<String>,
    /// `|N|` in the name.
    pub port: Option<u32>,
    /// Substring of the name.
    pub subset: Option<String>,
    /// Substring of the name.
    pub direction: Option<String>,
}

impl ClusterFilter {
    fn matches(&self, name: &str) -> bool {
        let sub = |f: &Option<String>| f.as_deref().is_none_or(|s| name.contains(s));
        sub(&self.fqdn)
            && sub(&self.subset)
            && sub(&self.direction)
            && self.port.is_none_or(|p| name.contains(&format!("|{p}|")))
    }
}

/// The parts of an Istio cluster name (`pilot/pkg/model/service.go` `ParseSubsetKey`):
/// `direction|port|subset|hostname`, or the DNS SRV form `outbound_.port_.subset_.hostname`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubsetKey {
    /// `inbound`, `outbound`, ...
    pub direction: String,
    /// The port (0 when not a number).
    pub port: u32,
    /// The subset.
    pub subset: String,
    /// The hostname (empty when the name has extra separators).
    pub hostname: String,
}

impl SubsetKey {
    /// Parse like istio HEAD does.
    pub fn parse(s: &str) -> Self {
        let sep = if s.starts_with("outbound_") || s.starts_with("inbound_") {
            "_."
        } else {
            "|"
        };
        let mut key = Self::default();
        let Some((dir, rest)) = s.split_once(sep) else {
            return key;
        };
        key.direction = dir.to_string();
        let Some((port, rest)) = rest.split_once(sep) else {
            return key;
        };
        key.port = port.parse().unwrap_or(0);
        let Some((subset, rest)) = rest.split_once(sep) else {
            return key;
        };
        key.subset = subset.to_string();
        if !rest.contains(sep) {
            key.hostname = rest.to_string();
        }
        key
    }
}

/// Istio's `metadata.filter_metadata.istio.config` as istioctl renders it: `name.namespace` for a
/// networking.istio.io path, `<unknown>` for other paths, empty when absent.
pub fn describe_config(metadata: Option<&Metadata>) -> String {
    let Some(path) = metadata.and_then(Metadata::istio_config) else {
        return String::new();
    };
    if path.starts_with("/apis/networking.istio.io/") {
        let pieces: Vec<&str> = path.split('/').collect();
        if pieces.len() == 8 {
            return format!("{}.{}", pieces[7], pieces[5]);
        }
        return String::new();
    }
    "<unknown>".into()
}

/// All rows: dynamic active clusters, then static ones, filtered and sorted by
/// (fqdn, subset, port, direction).
pub fn cluster_rows(dump: &ClustersDump, filter: &ClusterFilter) -> Vec<ClusterRow> {
    let mut rows: Vec<ClusterRow> = dump
        .dynamic_active_clusters
        .iter()
        .chain(&dump.static_clusters)
        .filter_map(|e| e.cluster.as_ref())
        .filter(|c| filter.matches(&c.name))
        .map(ClusterRow::from)
        .collect();
    rows.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
    rows
}

fn sort_key(r: &ClusterRow) -> (&str, &str, u32, &str) {
    if r.parsed {
        (
            &r.service_fqdn,
            &r.subset,
            r.port.unwrap_or(0),
            &r.direction,
        )
    } else {
        (&r.name, "", 0, "")
    }
}

impl From<&Cluster> for ClusterRow {
    fn from(c: &Cluster) -> Self {
        let cluster_type = c.discovery_type.clone().unwrap_or_else(|| "STATIC".into());
        let destination_rule = describe_config(c.metadata.as_ref());
        if c.name.split('|').count() > 3 {
            let k = SubsetKey::parse(&c.name);
            ClusterRow {
                name: c.name.clone(),
                service_fqdn: k.hostname,
                port: Some(k.port),
                subset: k.subset,
                direction: k.direction,
                cluster_type,
                destination_rule,
                parsed: true,
            }
        } else {
            ClusterRow {
                name: c.name.clone(),
                service_fqdn: c.name.clone(),
                port: None,
                subset: String::new(),
                direction: String::new(),
                cluster_type,
                destination_rule,
                parsed: false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(name: &str, ty: Option<&str>, config: Option<&str>) -> Cluster {
        let mut v = serde_json::json!({"name": name});
        if let Some(t) = ty {
            v["type"] = t.into();
        }
        if let Some(c) = config {
            v["metadata"] = serde_json::json!({"filter_metadata": {"istio": {"config": c}}});
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn subset_keys() {
        let k = SubsetKey::parse("outbound|9080|v1|reviews.default.svc.cluster.local");
        assert_eq!(
            (
                k.direction.as_str(),
                k.port,
                k.subset.as_str(),
                k.hostname.as_str()
            ),
            ("outbound", 9080, "v1", "reviews.default.svc.cluster.local")
        );
        let k = SubsetKey::parse("inbound|8080||");
        assert_eq!((k.port, k.hostname.as_str()), (8080, ""));
        let k = SubsetKey::parse("outbound_.9080_.v2_.reviews.default.svc.cluster.local");
        assert_eq!((k.port, k.subset.as_str()), (9080, "v2"));
        assert_eq!(SubsetKey::parse("a|1|b|c|d").hostname, "");
    }

    #[test]
    fn destination_rule_cells() {
        let dr = |p: &str| {
            describe_config(Some(
                &serde_json::from_value(
                    serde_json::json!({"filter_metadata": {"istio": {"config": p}}}),
                )
                .unwrap(),
            ))
        };
        assert_eq!(
            dr("/apis/networking.istio.io/v1alpha3/namespaces/default/destination-rule/reviews"),
            "reviews.default"
        );
        assert_eq!(
            dr("/apis/networking/v1alpha3/namespaces/default/destination-rule/reviews"),
            "<unknown>"
        );
        assert_eq!(dr("/apis/networking.istio.io/v1/x"), "");
        assert_eq!(describe_config(None), "");
    }

    #[test]
    fn rows_cells_sort_and_filters() {
        let dump = ClustersDump {
            dynamic_active_clusters: vec![
                ClusterEntry {
                    cluster: Some(cluster(
                        "outbound|9080|v2|reviews.default.svc.cluster.local",
                        Some("EDS"),
                        Some(
                            "/apis/networking.istio.io/v1/namespaces/default/destination-rule/reviews",
                        ),
                    )),
                },
                ClusterEntry {
                    cluster: Some(cluster(
                        "outbound|9080||reviews.default.svc.cluster.local",
                        Some("EDS"),
                        None,
                    )),
                },
            ],
            static_clusters: vec![ClusterEntry {
                cluster: Some(cluster("BlackHoleCluster", None, None)),
            }],
            ..Default::default()
        };
        let rows = cluster_rows(&dump, &ClusterFilter::default());
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
                vec!["BlackHoleCluster", "-", "-", "-", "STATIC", ""],
                vec![
                    "reviews.default.svc.cluster.local",
                    "9080",
                    "-",
                    "outbound",
                    "EDS",
                    ""
                ],
                vec![
                    "reviews.default.svc.cluster.local",
                    "9080",
                    "v2",
                    "outbound",
                    "EDS",
                    "reviews.default"
                ],
            ]
        );
        let f = ClusterFilter {
            subset: Some("v2".into()),
            port: Some(9080),
            ..Default::default()
        };
        assert_eq!(cluster_rows(&dump, &f).len(), 1);
        let f = ClusterFilter {
            port: Some(908),
            ..Default::default()
        };
        assert!(cluster_rows(&dump, &f).is_empty());
    }

    use crate::dump::fixture;

    fn rows_of(rel: &str, filter: &ClusterFilter) -> Vec<ClusterRow> {
        cluster_rows(fixture::dump(rel).clusters().unwrap(), filter)
    }

    #[test]
    fn legacy_2020_istiod_camel_case_dump_matches_istioctl() {
        let rel = "legacy-2020/pc-configdump/configdump.json";
        fixture::assert_table(
            &rows_of(rel, &ClusterFilter::default()),
            &fixture::istio_text("legacy-2020/pc-configdump/clustersummary.txt"),
        );
        let f = ClusterFilter {
            fqdn: Some("istio-policy.istio-system.svc.cluster.local".into()),
            port: Some(15004),
            ..Default::default()
        };
        fixture::assert_table(
            &rows_of(rel, &f),
            &fixture::istio_text("legacy-2020/pc-configdump/clustersummaryfiltered.txt"),
        );
    }

    #[test]
    fn istio_1_4_dumps_v3_and_v2alpha_match_the_derived_tables() {
        let dir = "legacy-istio1.3-1.4-real-dumps";
        let want = fixture::istio_text(&format!(
            "{dir}/derived-current-istioctl-format/productpage-v1-c7765c886-v99jb.clusters.txt"
        ));
        for dump in [
            "productpage-v1-c7765c886-v99jb.json",
            "productpage-v1-c7765c886-v99jb.ORIGINAL-v2alpha.json",
        ] {
            fixture::assert_table(
                &rows_of(&format!("{dir}/{dump}"), &ClusterFilter::default()),
                &want,
            );
        }
        fixture::assert_table(
            &rows_of(
                &format!("{dir}/istio-ingressgateway-5bf6c9887-vvvmj.json"),
                &ClusterFilter::default(),
            ),
            &fixture::istio_text(&format!(
                "{dir}/derived-current-istioctl-format/istio-ingressgateway-5bf6c9887-vvvmj.clusters.txt"
            )),
        );
    }

    #[test]
    fn waypoint_dump_matches_pc_all() {
        let rows = rows_of(
            "current/pc-all-waypoint/config_dump.json",
            &ClusterFilter::default(),
        );
        let text = fixture::istio_text("current/pc-all-waypoint/config_dump_summary.txt");
        let (cols, want) = fixture::only(
            fixture::golden(&fixture::section(&text, 1)),
            &["PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE"],
        );
        assert_eq!(fixture::cells(&rows, false, &cols), want);
    }
}
