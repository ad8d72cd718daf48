//! Fetching the bytes a view needs (from a proxy or a file) and building its rows from the
//! models: pure functions of the bytes and `now`.

use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use super::bootstrap::{BootstrapField, bootstrap_fields};
use super::clusters::{ClusterFilter, ClusterRow, cluster_rows};
use super::command::{View, compile};
use super::endpoints::{ClusterStatuses, EndpointFilter, EndpointRow, endpoint_rows};
use super::jwt::{JwtRow, jwt_rows};
use super::listeners::{ListenerFilter, ListenerRow, listener_rows};
use super::model::{ConfigDump, DecodeError, SectionKind};
use super::rbac::{RbacRow, rbac_rows};
use super::routes::{RouteFilter, RouteRow, route_rows};
use super::secrets::{SecretRow, secret_rows};
use super::stats::{StatRow, stat_rows};
use super::{Error, model};
use crate::admin::{self, AdminClient, ConfigDumpQuery, Endpoint};
use crate::cluster::{Cluster, ProxyPod};

// ---------------------------------------------------------------------------------------------
// Fetching

/// The bytes a view needs, from whichever source.
#[derive(Debug, Default)]
pub(super) struct Fetched {
    pub(super) dump: Option<Bytes>,
    pub(super) clusters: Option<Bytes>,
    pub(super) stats: Option<Bytes>,
}

/// The config_dump section a view reads (`None` for views that read no dump, or all of it).
pub(super) fn section_of(view: &View) -> Option<SectionKind> {
    match view {
        View::Clusters(_) => Some(SectionKind::Clusters),
        View::Listeners(_) | View::Jwt | View::Rbac => Some(SectionKind::Listeners),
        View::Routes(_) => Some(SectionKind::Routes),
        View::Secrets => Some(SectionKind::Secrets),
        View::Bootstrap => Some(SectionKind::Bootstrap),
        _ => None,
    }
}

pub(super) async fn fetch(client: &mut AdminClient, view: &View) -> Result<Fetched, crate::Error> {
    let mut f = Fetched::default();
    match view {
        View::Endpoints(_) => f.clusters = Some(client.clusters_json().await?),
        View::Stats { filter } => f.stats = Some(client.stats(filter.as_deref(), false).await?),
        View::All => {
            f.dump = Some(client.config_dump(&ConfigDumpQuery::default()).await?);
            f.clusters = Some(client.clusters_json().await?);
        }
        v => {
            let q = ConfigDumpQuery {
                mask: section_of(v).map(|s| s.mask().to_string()),
                ..Default::default()
            };
            f.dump = Some(client.config_dump(&q).await?);
        }
    }
    Ok(f)
}

pub(super) fn from_file(view: &View, bytes: Vec<u8>) -> Fetched {
    let bytes = Bytes::from(bytes);
    match view {
        View::Endpoints(_) => Fetched {
            clusters: Some(bytes),
            ..Default::default()
        },
        View::Stats { .. } => Fetched {
            stats: Some(bytes),
            ..Default::default()
        },
        _ => Fetched {
            dump: Some(bytes),
            ..Default::default()
        },
    }
}

pub(super) async fn fetch_pod(
    cluster: &Cluster,
    pod: &ProxyPod,
    view: &View,
    timeout: Option<Duration>,
    now: i64,
) -> Result<ViewData, crate::Error> {
    let mut client = admin::open(Some(cluster), &Endpoint::Pod(pod.clone()), timeout).await?;
    let fetched = fetch(&mut client, view).await?;
    build(view, fetched, &format!("pod {}", pod.id()), now)
}

// ---------------------------------------------------------------------------------------------
// Building the views

/// The rows of one source.
#[derive(Debug)]
pub(super) enum ViewData {
    Clusters(Vec<ClusterRow>),
    Listeners(Vec<ListenerRow>),
    Routes(Vec<RouteRow>),
    Endpoints(Vec<EndpointRow>),
    Secrets(Vec<SecretRow>),
    Bootstrap {
        fields: Vec<BootstrapField>,
        section: Box<RawValue>,
    },
    Jwt(Vec<JwtRow>),
    Rbac(Vec<RbacRow>),
    Stats(Vec<StatRow>),
    All(Box<AllData>),
}

/// Every table of one proxy (`all`).
#[derive(Debug, Default, Serialize)]
pub(super) struct AllData {
    pub(super) bootstrap: Vec<BootstrapField>,
    pub(super) clusters: Vec<ClusterRow>,
    pub(super) listeners: Vec<ListenerRow>,
    pub(super) routes: Vec<RouteRow>,
    pub(super) secrets: Vec<SecretRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) endpoints: Option<Vec<EndpointRow>>,
}

pub(super) fn decode_error(origin: &str, e: DecodeError) -> Error {
    Error::Decode {
        origin: origin.to_string(),
        what: e.what,
        line: e.line,
        column: e.column,
        offset: e.offset,
        source: e.source,
    }
}

/// The dump, with only the section `only` decoded (all known sections when `None`).
pub(super) fn parse_dump(
    origin: &str,
    bytes: Option<Bytes>,
    only: Option<SectionKind>,
) -> Result<ConfigDump, Error> {
    ConfigDump::from_bytes(bytes.unwrap_or(Bytes::from_static(b"{}")), only)
        .map_err(|e| decode_error(origin, e))
}

pub(super) fn parse_cluster_statuses(origin: &str, bytes: &[u8]) -> Result<ClusterStatuses, Error> {
    let parsed = match model::not_an_object(bytes) {
        Some(e) => Err(e),
        None => serde_json::from_slice::<ClusterStatuses>(bytes),
    };
    let doc = parsed.map_err(|source| {
        let (line, column) = (source.line(), source.column());
        Error::Decode {
            origin: origin.to_string(),
            what: "Envoy /clusters?format=json".into(),
            line,
            column,
            offset: crate::input::byte_offset(bytes, line, column),
            source,
        }
    })?;
    if doc.is_config_dump() {
        return Err(Error::NotClusterStatuses {
            origin: origin.to_string(),
        });
    }
    Ok(doc)
}

pub(super) fn missing(origin: &str, kind: SectionKind) -> Error {
    Error::MissingSection {
        origin: origin.to_string(),
        section: kind.message(),
    }
}

/// Model → rows. Pure: `now` (seconds since the epoch) decides certificate validity.
pub(super) fn build(
    view: &View,
    f: Fetched,
    origin: &str,
    now: i64,
) -> Result<ViewData, crate::Error> {
    if let View::Endpoints(filter) = view {
        let doc = parse_cluster_statuses(origin, f.clusters.as_deref().unwrap_or(b"{}"))?;
        return Ok(ViewData::Endpoints(endpoint_rows(&doc, filter)));
    }
    if let View::Stats { filter } = view {
        let re = filter.as_deref().map(compile).transpose()?;
        let text = String::from_utf8_lossy(f.stats.as_deref().unwrap_or_default());
        return Ok(ViewData::Stats(stat_rows(&text, re.as_ref())));
    }
    // The bootstrap view prints the section's own JSON too: keep it (the others need none).
    let only = section_of(view).filter(|k| *k != SectionKind::Bootstrap);
    let dump = parse_dump(origin, f.dump, only)?;
    let need = |kind: SectionKind| missing(origin, kind);
    Ok(match view {
        View::Clusters(filter) => ViewData::Clusters(cluster_rows(
            dump.clusters().ok_or_else(|| need(SectionKind::Clusters))?,
            filter,
        )),
        View::Listeners(filter) => ViewData::Listeners(listener_rows(
            dump.listeners()
                .ok_or_else(|| need(SectionKind::Listeners))?,
            filter,
        )),
        View::Routes(filter) => ViewData::Routes(route_rows(
            dump.routes().ok_or_else(|| need(SectionKind::Routes))?,
            filter,
        )),
        View::Secrets => ViewData::Secrets(secret_rows(
            dump.secrets().ok_or_else(|| need(SectionKind::Secrets))?,
            now,
        )),
        View::Bootstrap => ViewData::Bootstrap {
            fields: bootstrap_fields(
                dump.bootstrap()
                    .ok_or_else(|| need(SectionKind::Bootstrap))?,
            ),
            section: dump
                .raw_section(SectionKind::Bootstrap)
                .map(ToOwned::to_owned)
                .ok_or_else(|| need(SectionKind::Bootstrap))?,
        },
        View::Jwt => ViewData::Jwt(jwt_rows(
            dump.listeners()
                .ok_or_else(|| need(SectionKind::Listeners))?,
        )),
        View::Rbac => ViewData::Rbac(rbac_rows(
            dump.listeners()
                .ok_or_else(|| need(SectionKind::Listeners))?,
        )),
        View::All => {
            let endpoints = match &f.clusters {
                Some(b) => Some(endpoint_rows(
                    &parse_cluster_statuses(origin, b)?,
                    &EndpointFilter::default(),
                )),
                None => None,
            };
            ViewData::All(Box::new(AllData {
                bootstrap: dump.bootstrap().map(bootstrap_fields).unwrap_or_default(),
                clusters: dump
                    .clusters()
                    .map(|c| cluster_rows(c, &ClusterFilter::default()))
                    .unwrap_or_default(),
                listeners: dump
                    .listeners()
                    .map(|l| listener_rows(l, &ListenerFilter::default()))
                    .unwrap_or_default(),
                routes: dump
                    .routes()
                    .map(|r| route_rows(r, &RouteFilter::default()))
                    .unwrap_or_default(),
                secrets: dump
                    .secrets()
                    .map(|s| secret_rows(s, now))
                    .unwrap_or_default(),
                endpoints,
            }))
        }
        View::Endpoints(_) | View::Stats { .. } | View::Raw(_) | View::Dashboard(_) => {
            return Err(Error::NeedsLiveProxy { view: view.name() }.into());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_per_view() {
        assert_eq!(section_of(&View::Jwt), Some(SectionKind::Listeners));
        assert_eq!(section_of(&View::All), None);
        assert_eq!(
            SectionKind::Secrets.mask(),
            "dynamic_active_secrets,dynamic_warming_secrets"
        );
    }

    #[test]
    fn endpoints_reject_a_config_dump() {
        let e = build(
            &View::Endpoints(EndpointFilter::default()),
            Fetched {
                clusters: Some(Bytes::from_static(br#"{"configs": []}"#)),
                ..Default::default()
            },
            "f.json",
            0,
        )
        .unwrap_err();
        assert!(matches!(
            e,
            crate::Error::Dump(Error::NotClusterStatuses { .. })
        ));
    }

    #[test]
    fn missing_sections_are_errors() {
        let e = build(
            &View::Routes(RouteFilter::default()),
            Fetched {
                dump: Some(Bytes::from_static(br#"{"configs": []}"#)),
                ..Default::default()
            },
            "f.json",
            0,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "f.json has no RoutesConfigDump section");
    }
}
