//! `kubectl envoy-dump diff A B`: two proxies' configuration compared section by section —
//! two pods (two replicas that behave differently), a pod and a saved dump (before and after a
//! `kubectl apply`), or two saved dumps.
//!
//! The normalisation is the one of `istioctl proxy-status <pod>` (ISTIO.md §1.5), shared with
//! `mesh-sync POD` (`sync::diff` calls the functions of this module): resources sorted by name,
//! route configs' `virtual_hosts` sorted by name, `version_info` and `last_updated` stripped,
//! dynamic listeners compared by their `active_state` (draining state and name dropped), v2 type
//! URLs upgraded to v3, keys in protojson camelCase and sorted, 4-space JSON. On top of that,
//! enum fields at their proto3 zero value are dropped (`drop_enum_defaults`: `"type": "STATIC"`,
//! `"lbPolicy": "ROUND_ROBIN"`, ...), since a field at its zero value and an absent one are the
//! same configuration. Proxies also have static resources from the bootstrap, so `diff` compares
//! `static_*` next to the dynamic ones; secrets are compared by metadata only (name, status,
//! type, trust domain, and the serial number of CA certificates — a workload certificate's serial
//! and validity change with every pod and rotation), never key material.
//!
//! Each section is rendered as text and compared with a unified diff (context 7) labelled with
//! the two sources.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use owo_colors::OwoColorize;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Error;
use super::model::{ConfigDump, SectionKind};
use super::secrets::secret_rows;
use super::view::decode_error;
use crate::ExitStatus;
use crate::admin::{self, ConfigDumpQuery, Endpoint};
use crate::cluster::{self, Cluster, ClusterOptions, Target, TargetKind};
use crate::render::{API_VERSION, OutputFormat, RenderOptions, write_json, write_yaml};

type Object = Map<String, Value>;

// ---------------------------------------------------------------------------------------------
// Normalisation, shared with `mesh-sync POD`

/// Dynamic or static cluster entries (`{cluster, version_info, last_updated}`): versions and
/// times stripped, v2 types upgraded, sorted by cluster name.
pub(crate) fn cluster_entries(entries: Vec<Object>) -> Vec<Object> {
    let mut c: Vec<Object> = entries
        .into_iter()
        .map(|mut e| {
            strip_versions(&mut e);
            upgrade_type(&mut e, "cluster");
            e
        })
        .collect();
    c.sort_by_cached_key(|e| inner_name(e, "cluster"));
    c
}

/// Dynamic listener entries: only those with an `active_state`, `draining_state` and `name`
/// dropped, sorted by listener name.
pub(crate) fn dynamic_listener_entries(entries: Vec<Object>) -> Vec<Object> {
    let mut l: Vec<Object> = entries
        .into_iter()
        .filter_map(|mut e| {
            e.remove("draining_state");
            e.remove("drainingState");
            e.remove("name");
            let active = ["active_state", "activeState"]
                .into_iter()
                .find(|k| e.contains_key(*k))?;
            if let Some(Value::Object(a)) = e.get_mut(active) {
                strip_versions(a);
                upgrade_type(a, "listener");
            }
            Some(e)
        })
        .collect();
    l.sort_by_cached_key(|e| {
        let a = e.get("active_state").or_else(|| e.get("activeState"));
        a.and_then(Value::as_object)
            .map(|a| inner_name(a, "listener"))
            .unwrap_or_default()
    });
    l
}

/// Static listener entries (`{listener, last_updated}`), sorted by listener name.
pub(crate) fn static_listener_entries(entries: Vec<Object>) -> Vec<Object> {
    let mut l: Vec<Object> = entries
        .into_iter()
        .map(|mut e| {
            strip_versions(&mut e);
            upgrade_type(&mut e, "listener");
            e
        })
        .collect();
    l.sort_by_cached_key(|e| inner_name(e, "listener"));
    l
}

/// Route config entries (`{route_config, version_info, last_updated}`), with their
/// `virtual_hosts` sorted by name, sorted by route config name.
pub(crate) fn route_config_entries(entries: Vec<Object>) -> Vec<Object> {
    let mut r: Vec<Object> = entries
        .into_iter()
        .map(|mut e| {
            strip_versions(&mut e);
            let rc = if e.contains_key("route_config") {
                "route_config"
            } else {
                "routeConfig"
            };
            upgrade_type(&mut e, rc);
            if let Some(Value::Object(cfg)) = e.get_mut(rc) {
                let vh = if cfg.contains_key("virtual_hosts") {
                    "virtual_hosts"
                } else {
                    "virtualHosts"
                };
                if let Some(Value::Array(hosts)) = cfg.get_mut(vh) {
                    hosts.sort_by_cached_key(|h| {
                        h.get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string()
                    });
                }
            }
            e
        })
        .collect();
    r.sort_by_cached_key(|e| inner_name(e, "route_config").max(inner_name(e, "routeConfig")));
    r
}

/// `{"<key>": [...], ...}` in camelCase with sorted keys, enum defaults dropped, as 4-space JSON.
pub(crate) fn render_entries(parts: Vec<(&str, Vec<Object>)>) -> String {
    let mut top = Map::new();
    for (key, items) in parts {
        let items = Value::Array(items.into_iter().map(Value::Object).collect());
        top.insert(key.to_string(), items);
    }
    let mut v = camel_keys(Value::Object(top));
    drop_enum_defaults(&mut v);
    pretty(&v)
}

fn strip_versions(m: &mut Object) {
    for k in ["version_info", "versionInfo", "last_updated", "lastUpdated"] {
        m.remove(k);
    }
}

/// `name` of the resource under `field` (either case of the field name).
fn inner_name(m: &Object, field: &str) -> String {
    let camel = to_camel(field);
    m.get(field)
        .or_else(|| m.get(&camel))
        .and_then(|v| v.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// `envoy.api.v2.X` resource type URLs → their v3 names, so old and new dumps compare.
fn upgrade_type(m: &mut Object, field: &str) {
    let camel = to_camel(field);
    let key = if m.contains_key(field) {
        field.to_string()
    } else {
        camel
    };
    if let Some(Value::Object(r)) = m.get_mut(&key)
        && let Some(Value::String(t)) = r.get_mut("@type")
    {
        let v3 = match t.as_str() {
            "type.googleapis.com/envoy.api.v2.Cluster" => {
                Some("type.googleapis.com/envoy.config.cluster.v3.Cluster")
            }
            "type.googleapis.com/envoy.api.v2.Listener" => {
                Some("type.googleapis.com/envoy.config.listener.v3.Listener")
            }
            "type.googleapis.com/envoy.api.v2.RouteConfiguration" => {
                Some("type.googleapis.com/envoy.config.route.v3.RouteConfiguration")
            }
            _ => None,
        };
        if let Some(v3) = v3 {
            *t = v3.to_string();
        }
    }
}

/// `snake_case` proto field names → protojson `lowerCamelCase`. Keys that are not plain
/// lowercase identifiers (`@type`, `envoy.filters.http.router`, cluster names) stay as they are.
fn to_camel(key: &str) -> String {
    let plain = key
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && key.starts_with(|c: char| c.is_ascii_lowercase());
    if !plain || !key.contains('_') {
        return key.to_string();
    }
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Recursively rename keys to camelCase, with keys in sorted order.
fn camel_keys(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<String, Value> = m
                .into_iter()
                .map(|(k, v)| (to_camel(&k), camel_keys(v)))
                .collect();
            Value::Object(sorted.into_iter().collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(camel_keys).collect()),
        other => other,
    }
}

/// Enum fields at their proto3 zero value, by the message that holds them. proto3 enums have
/// no presence: `"type": "STATIC"` and no `type` are the same cluster, yet one serializer prints
/// the zero value and another omits it (istio#12958).
const ENUM_DEFAULTS: [(&str, &[(&str, &str)]); 3] = [
    (
        "cluster",
        &[
            ("type", "STATIC"),
            ("lbPolicy", "ROUND_ROBIN"),
            ("dnsLookupFamily", "AUTO"),
        ],
    ),
    ("listener", &[("trafficDirection", "UNSPECIFIED")]),
    ("socketAddress", &[("protocol", "TCP")]),
];

/// Drop [`ENUM_DEFAULTS`] from a camelCased tree: a `cluster` or `listener` resource (the value
/// of that key, with a matching `@type` when it has one) and every `socketAddress`.
fn drop_enum_defaults(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (holder, fields) in ENUM_DEFAULTS {
                let Some(Value::Object(inner)) = m.get_mut(holder) else {
                    continue;
                };
                let typed = inner.get("@type").and_then(Value::as_str);
                let resource = match holder {
                    "cluster" => typed.is_none_or(|t| t.ends_with(".Cluster")),
                    "listener" => typed.is_none_or(|t| t.ends_with(".Listener")),
                    _ => true,
                };
                if !resource {
                    continue;
                }
                for (field, zero) in fields {
                    if inner.get(*field).and_then(Value::as_str) == Some(zero) {
                        inner.remove(*field);
                    }
                }
            }
            for child in m.values_mut() {
                drop_enum_defaults(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(drop_enum_defaults),
        _ => {}
    }
}

/// JSON with 4-space indentation and a final newline.
fn pretty(v: &Value) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    // Serializing a Value into memory cannot fail.
    let _ = v.serialize(&mut ser);
    buf.push(b'\n');
    String::from_utf8_lossy(&buf).into_owned()
}

/// One compared section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SectionDiff {
    /// Both sides are equal after normalisation.
    #[serde(rename = "match")]
    pub matches: bool,
    /// The unified diff (`from` = `-`, `to` = `+`); empty when they match.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub diff: String,
}

/// Compare two normalised texts: a unified diff with 7 lines of context, as istioctl.
pub(crate) fn unified(a: &str, b: &str, from: &str, to: &str) -> SectionDiff {
    if a == b {
        return SectionDiff {
            matches: true,
            diff: String::new(),
        };
    }
    let diff = similar::TextDiff::from_lines(a, b)
        .unified_diff()
        .context_radius(7)
        .header(from, to)
        .to_string();
    SectionDiff {
        matches: false,
        diff,
    }
}

/// `<Title> Match<suffix>` or `<Title> Don't Match<suffix>` and the diff, coloured when asked.
pub(crate) fn write_verdict(
    out: &mut dyn Write,
    title: &str,
    suffix: &str,
    d: &SectionDiff,
    color: bool,
) -> std::io::Result<()> {
    let verdict = if d.matches { "Match" } else { "Don't Match" };
    let mut line = format!("{title} {verdict}{suffix}");
    if color {
        line = if d.matches {
            line.green().to_string()
        } else {
            line.red().to_string()
        };
    }
    writeln!(out, "{line}")?;
    for l in d.diff.lines() {
        if color && l.starts_with('-') && !l.starts_with("---") {
            writeln!(out, "{}", l.red())?;
        } else if color && l.starts_with('+') && !l.starts_with("+++") {
            writeln!(out, "{}", l.green())?;
        } else if color && l.starts_with("@@") {
            writeln!(out, "{}", l.cyan())?;
        } else {
            writeln!(out, "{l}")?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The command

/// A section `diff` compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiffSection {
    /// Static and dynamic active clusters.
    Clusters,
    /// Static listeners and the active state of dynamic ones.
    Listeners,
    /// Static and dynamic route configs.
    Routes,
    /// Secrets, by metadata.
    Secrets,
}

impl DiffSection {
    /// All of them, in output order.
    pub const ALL: [DiffSection; 4] = [
        DiffSection::Clusters,
        DiffSection::Listeners,
        DiffSection::Routes,
        DiffSection::Secrets,
    ];

    /// `Clusters`, ... as in `Clusters Match`.
    pub fn title(self) -> &'static str {
        match self {
            Self::Clusters => "Clusters",
            Self::Listeners => "Listeners",
            Self::Routes => "Routes",
            Self::Secrets => "Secrets",
        }
    }

    fn kind(self) -> SectionKind {
        match self {
            Self::Clusters => SectionKind::Clusters,
            Self::Listeners => SectionKind::Listeners,
            Self::Routes => SectionKind::Routes,
            Self::Secrets => SectionKind::Secrets,
        }
    }
}

/// One side of the comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    /// A pod: `NAME`, `pod/NAME`, or `deploy/NAME` with exactly one pod.
    Pod(String),
    /// A saved `/config_dump` (`-` = stdin).
    File(PathBuf),
    /// An admin endpoint, `http://host:port`.
    AdminUrl(String),
}

/// Everything `diff` needs.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    /// The two sides, in the order given: `-` lines come from the first, `+` from the second.
    pub sides: [Side; 2],
    /// The sections to compare (empty = all), shown in [`DiffSection::ALL`] order.
    pub sections: Vec<DiffSection>,
    /// Cluster access, for pods.
    pub cluster: ClusterOptions,
    /// `-c`.
    pub container: Option<String>,
    /// `--admin-port`.
    pub admin_port: Option<u16>,
    /// Output format and colour.
    pub render: RenderOptions,
    /// Timeout of each call to a proxy.
    pub timeout: Option<Duration>,
}

/// The result (the json/yaml value).
#[derive(Debug, Clone, Serialize)]
pub struct ConfigDiff {
    /// Always `meshdebug.io/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    /// Always `ConfigDiff`.
    pub kind: &'static str,
    /// The first source (`-` lines).
    pub from: String,
    /// The second source (`+` lines).
    pub to: String,
    /// Every compared section matches.
    #[serde(rename = "match")]
    pub matches: bool,
    /// One entry per compared section.
    pub sections: Vec<SectionResult>,
}

/// One section of a [`ConfigDiff`].
#[derive(Debug, Clone, Serialize)]
pub struct SectionResult {
    /// `clusters`, `listeners`, `routes` or `secrets`.
    pub section: DiffSection,
    /// Both sides are equal after normalisation.
    #[serde(rename = "match")]
    pub matches: bool,
    /// The unified diff; absent when they match.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub diff: String,
}

/// One side, normalised: the text of each section, and the sections its dump lacks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Normalised {
    /// Normalised text per section.
    pub sections: BTreeMap<DiffSection, String>,
    /// Requested sections the dump has no `*ConfigDump` for (compared as empty).
    pub missing: Vec<DiffSection>,
}

/// Run `diff`: fetch both sides (concurrently), normalise, compare, render. `Negative` (exit 1)
/// when a section differs.
pub async fn run(
    opts: &DiffOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitStatus, crate::Error> {
    let sections = wanted(&opts.sections);
    let cluster = if opts.sides.iter().any(|s| matches!(s, Side::Pod(_))) {
        Some(cluster::connect(&opts.cluster).await?)
    } else {
        None
    };
    let [a, b] = &opts.sides;
    let (a, b) = tokio::join!(
        load(a, cluster.as_ref(), opts),
        load(b, cluster.as_ref(), opts)
    );
    let ((from, a), (to, b)) = (a?, b?);
    let na = normalise(&from, &a, &sections)?;
    let nb = normalise(&to, &b, &sections)?;
    for (label, n) in [(&from, &na), (&to, &nb)] {
        for s in &n.missing {
            let _ = writeln!(
                err,
                "note: {label} has no {} section; compared as empty",
                s.kind().message()
            );
        }
    }
    let result = compare(&from, &na, &to, &nb);
    match opts.render.format {
        OutputFormat::Table | OutputFormat::Wide => {
            write_text(&result, opts.render.color, out).map_err(crate::render::Error::Io)?;
        }
        OutputFormat::Json => write_json(&result, out)?,
        OutputFormat::Yaml => write_yaml(&result, out)?,
    }
    out.flush().map_err(crate::render::Error::Io)?;
    Ok(if result.matches {
        ExitStatus::Success
    } else {
        ExitStatus::Negative
    })
}

/// The sections asked for, deduplicated, in output order; all when none.
fn wanted(asked: &[DiffSection]) -> Vec<DiffSection> {
    if asked.is_empty() {
        return DiffSection::ALL.to_vec();
    }
    let mut s = asked.to_vec();
    s.sort();
    s.dedup();
    s
}

/// The label and bytes of one side's `/config_dump`.
async fn load(
    side: &Side,
    cluster: Option<&Cluster>,
    opts: &DiffOptions,
) -> Result<(String, Vec<u8>), crate::Error> {
    match side {
        Side::File(path) => {
            let label = if path.as_os_str() == "-" {
                "stdin".to_string()
            } else {
                path.display().to_string()
            };
            Ok((label, crate::input::read(path)?))
        }
        Side::AdminUrl(url) => {
            let mut client = admin::open(None, &Endpoint::Url(url.clone()), opts.timeout).await?;
            let bytes = client.config_dump(&ConfigDumpQuery::default()).await?;
            Ok((url.clone(), bytes.to_vec()))
        }
        Side::Pod(name) => {
            let connected;
            let cluster = match cluster {
                Some(c) => c,
                None => {
                    connected = cluster::connect(&opts.cluster).await?;
                    &connected
                }
            };
            let target = Target {
                kind: TargetKind::parse(Some(name), None, false)?,
                container: opts.container.clone(),
                admin_port: opts.admin_port,
            };
            let mut resolved = cluster::resolve_pods(cluster, &target).await?;
            if resolved.pods.is_empty()
                && let Some(first) = resolved.skipped.into_iter().next()
            {
                return Err(first.reason.into());
            }
            if resolved.pods.len() != 1 {
                return Err(Error::NotOnePod {
                    target: name.clone(),
                    pods: resolved.pods.iter().map(|p| p.name.clone()).collect(),
                }
                .into());
            }
            let pod = resolved.pods.remove(0);
            let label = pod.id();
            let mut client = admin::open(Some(cluster), &Endpoint::Pod(pod), opts.timeout).await?;
            let bytes = client.config_dump(&ConfigDumpQuery::default()).await?;
            Ok((label, bytes.to_vec()))
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ClustersRaw {
    #[serde(alias = "staticClusters")]
    static_clusters: Vec<Object>,
    #[serde(alias = "dynamicActiveClusters")]
    dynamic_active_clusters: Vec<Object>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListenersRaw {
    #[serde(alias = "staticListeners")]
    static_listeners: Vec<Object>,
    #[serde(alias = "dynamicListeners")]
    dynamic_listeners: Vec<Object>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RoutesRaw {
    #[serde(alias = "staticRouteConfigs")]
    static_route_configs: Vec<Object>,
    #[serde(alias = "dynamicRouteConfigs")]
    dynamic_route_configs: Vec<Object>,
}

/// What `diff` shows of a secret: never key material, nothing that changes with each pod or
/// rotation (a workload certificate's serial number and validity).
#[derive(Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
struct SecretMeta {
    name: String,
    status: String,
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    cert_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    trust_domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_serial_number: Option<String>,
}

/// Parse one side's `/config_dump` and normalise the sections asked for.
pub fn normalise(
    origin: &str,
    bytes: &[u8],
    sections: &[DiffSection],
) -> Result<Normalised, Error> {
    let dump = ConfigDump::from_slice(bytes).map_err(|e| decode_error(origin, e))?;
    let mut n = Normalised::default();
    for &s in sections {
        let raw = dump.raw_section(s.kind()).map_or("{}", |r| r.get());
        if dump.raw_section(s.kind()).is_none() {
            n.missing.push(s);
        }
        // The typed parse above has read these sections already; positions are in the section.
        let bad = |e: serde_json::Error| {
            let (line, column) = (e.line(), e.column());
            Error::Decode {
                origin: origin.to_string(),
                what: s.kind().message().to_string(),
                line,
                column,
                offset: crate::input::byte_offset(raw.as_bytes(), line, column),
                source: e,
            }
        };
        let text = match s {
            DiffSection::Clusters => {
                let c: ClustersRaw = serde_json::from_str(raw).map_err(bad)?;
                render_entries(vec![
                    ("staticClusters", cluster_entries(c.static_clusters)),
                    (
                        "dynamicActiveClusters",
                        cluster_entries(c.dynamic_active_clusters),
                    ),
                ])
            }
            DiffSection::Listeners => {
                let l: ListenersRaw = serde_json::from_str(raw).map_err(bad)?;
                render_entries(vec![
                    (
                        "staticListeners",
                        static_listener_entries(l.static_listeners),
                    ),
                    (
                        "dynamicListeners",
                        dynamic_listener_entries(l.dynamic_listeners),
                    ),
                ])
            }
            DiffSection::Routes => {
                let r: RoutesRaw = serde_json::from_str(raw).map_err(bad)?;
                render_entries(vec![
                    (
                        "staticRouteConfigs",
                        route_config_entries(r.static_route_configs),
                    ),
                    (
                        "dynamicRouteConfigs",
                        route_config_entries(r.dynamic_route_configs),
                    ),
                ])
            }
            DiffSection::Secrets => secrets_text(&dump),
        };
        n.sections.insert(s, text);
    }
    Ok(n)
}

fn secrets_text(dump: &ConfigDump) -> String {
    let mut metas: Vec<SecretMeta> = dump
        .secrets()
        .map(|s| secret_rows(s, 0))
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            let cert = r.cert.unwrap_or_default();
            let ca = cert.cert_type == "CA";
            SecretMeta {
                name: r.resource_name,
                status: r.status,
                ca_serial_number: ca.then_some(cert.serial_number),
                cert_type: cert.cert_type,
                trust_domain: r.trust_domain,
            }
        })
        .collect();
    metas.sort();
    let mut top = Map::new();
    top.insert(
        "secrets".into(),
        serde_json::to_value(&metas).unwrap_or_default(),
    );
    pretty(&Value::Object(top))
}

/// Compare two normalised sides, section by section (the sections of `a`).
pub fn compare(from: &str, a: &Normalised, to: &str, b: &Normalised) -> ConfigDiff {
    let sections: Vec<SectionResult> = a
        .sections
        .iter()
        .map(|(&section, text)| {
            let other = b.sections.get(&section).map_or("", String::as_str);
            let d = unified(text, other, from, to);
            SectionResult {
                section,
                matches: d.matches,
                diff: d.diff,
            }
        })
        .collect();
    ConfigDiff {
        api_version: API_VERSION,
        kind: "ConfigDiff",
        from: from.to_string(),
        to: to.to_string(),
        matches: sections.iter().all(|s| s.matches),
        sections,
    }
}

/// `Clusters Match` / `Clusters Don't Match` plus the diff, per section, as `mesh-sync POD`.
pub fn write_text(d: &ConfigDiff, color: bool, out: &mut dyn Write) -> std::io::Result<()> {
    for s in &d.sections {
        let sd = SectionDiff {
            matches: s.matches,
            diff: s.diff.clone(),
        };
        write_verdict(out, s.section.title(), "", &sd, color)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fixture(rel: &str) -> Vec<u8> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures/istio")
            .join(rel);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn capture() -> Vec<u8> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/envoy-dump/config_dump.json");
        std::fs::read(p).unwrap()
    }

    fn norm(label: &str, bytes: &[u8]) -> Normalised {
        normalise(label, bytes, &DiffSection::ALL).unwrap()
    }

    fn text(d: &ConfigDiff) -> String {
        let mut out = Vec::new();
        write_text(d, false, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn sections_of(v: &mut Value) -> &mut Vec<Value> {
        v["configs"].as_array_mut().unwrap()
    }

    fn section<'a>(v: &'a mut Value, kind: &str) -> &'a mut Value {
        sections_of(v)
            .iter_mut()
            .find(|s| s["@type"].as_str().unwrap().ends_with(kind))
            .unwrap()
    }

    #[test]
    fn a_dump_matches_itself() {
        let a = norm("a", &capture());
        assert!(a.missing.is_empty(), "{:?}", a.missing);
        let d = compare("a", &a, "b", &a);
        assert!(d.matches);
        assert_eq!(
            text(&d),
            "Clusters Match\nListeners Match\nRoutes Match\nSecrets Match\n"
        );
    }

    #[test]
    fn order_versions_times_and_enum_defaults_are_not_differences() {
        let mut v: Value = serde_json::from_slice(&capture()).unwrap();
        let clusters = section(&mut v, "ClustersConfigDump");
        let list = clusters["static_clusters"].as_array_mut().unwrap();
        list.reverse();
        for c in list.iter_mut() {
            c["last_updated"] = "2030-01-01T00:00:00Z".into();
            if c["cluster"].get("type").is_none() {
                c["cluster"]["type"] = "STATIC".into();
            }
            if c["cluster"].get("lb_policy").is_none() {
                c["cluster"]["lb_policy"] = "ROUND_ROBIN".into();
            }
        }
        let listeners = section(&mut v, "ListenersConfigDump");
        listeners["static_listeners"]
            .as_array_mut()
            .unwrap()
            .reverse();
        let other = serde_json::to_vec(&v).unwrap();
        let d = compare("a", &norm("a", &capture()), "b", &norm("b", &other));
        assert!(d.matches, "{}", text(&d));
    }

    #[test]
    fn a_real_change_shows_in_its_section_only() {
        let mut v: Value = serde_json::from_slice(&capture()).unwrap();
        let clusters = section(&mut v, "ClustersConfigDump");
        clusters["static_clusters"][0]["cluster"]["connect_timeout"] = "9s".into();
        let other = serde_json::to_vec(&v).unwrap();
        let d = compare(
            "ns/pod-a",
            &norm("a", &capture()),
            "before.json",
            &norm("b", &other),
        );
        assert!(!d.matches);
        let t = text(&d);
        assert!(
            t.starts_with("Clusters Don't Match\n--- ns/pod-a\n+++ before.json\n@@"),
            "{t}"
        );
        assert!(t.contains("\n-                \"connectTimeout\": \"1s\",\n+                \"connectTimeout\": \"9s\",\n"), "{t}");
        assert!(
            t.ends_with("Listeners Match\nRoutes Match\nSecrets Match\n"),
            "{t}"
        );
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["kind"], "ConfigDiff");
        assert_eq!(json["match"], false);
        assert_eq!(json["sections"][0]["section"], "clusters");
        assert!(json["sections"][1].get("diff").is_none());
    }

    #[test]
    fn secrets_are_compared_by_metadata_only() {
        let bytes = fixture("current/pc-secret/istio/config_dump.json");
        let n = normalise("s", &bytes, &[DiffSection::Secrets]).unwrap();
        insta::assert_snapshot!(n.sections[&DiffSection::Secrets], @r#"
        {
            "secrets": [
                {
                    "caSerialNumber": "0193a543fe2b0d9cd4847675394dfc54",
                    "name": "ROOTCA",
                    "status": "ACTIVE",
                    "type": "CA"
                },
                {
                    "name": "configmap://some/thing",
                    "status": "WARMING"
                },
                {
                    "name": "default",
                    "status": "ACTIVE",
                    "trustDomain": "cluster.local",
                    "type": "Cert Chain"
                }
            ]
        }
        "#);
        assert_eq!(n.sections.len(), 1, "only the section asked for");
    }

    #[test]
    fn a_missing_section_is_noted_and_compared_as_empty() {
        let empty = normalise("e", br#"{"configs": []}"#, &[DiffSection::Routes]).unwrap();
        assert_eq!(empty.missing, vec![DiffSection::Routes]);
        let full = normalise("f", &capture(), &[DiffSection::Routes]).unwrap();
        assert!(full.missing.is_empty());
        let d = compare("e", &empty, "f", &full);
        assert_eq!(d.sections.len(), 1);
        assert!(!d.matches);
    }

    #[test]
    fn malformed_dump_is_a_decode_error() {
        let e = normalise("d.json", b"{\"configs\": [x]}", &DiffSection::ALL).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("d.json: Envoy config_dump is not valid"),
            "{e}"
        );
    }

    #[test]
    fn enum_defaults_only_at_their_messages() {
        let mut v = serde_json::json!({
            "cluster": {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
                        "type": "STATIC", "lbPolicy": "LEAST_REQUEST", "dnsLookupFamily": "AUTO",
                        "loadAssignment": {"endpoints": [{"lbEndpoints": [{"endpoint": {"address":
                            {"socketAddress": {"address": "1.2.3.4", "protocol": "TCP"}}}}]}]}},
            "listener": {"trafficDirection": "UNSPECIFIED",
                         "address": {"socketAddress": {"protocol": "UDP"}}},
            "other": {"type": "STATIC"}
        });
        drop_enum_defaults(&mut v);
        assert_eq!(
            v,
            serde_json::json!({
                "cluster": {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
                            "lbPolicy": "LEAST_REQUEST",
                            "loadAssignment": {"endpoints": [{"lbEndpoints": [{"endpoint": {"address":
                                {"socketAddress": {"address": "1.2.3.4"}}}}]}]}},
                "listener": {"address": {"socketAddress": {"protocol": "UDP"}}},
                "other": {"type": "STATIC"}
            })
        );
        let mut not_a_cluster = serde_json::json!({"cluster": {"@type": "type.googleapis.com/x.Other", "type": "STATIC"}});
        let before = not_a_cluster.clone();
        drop_enum_defaults(&mut not_a_cluster);
        assert_eq!(not_a_cluster, before);
    }

    #[test]
    fn a_side_must_be_one_pod() {
        use crate::error::Hint;
        let e = Error::NotOnePod {
            target: "deploy/reviews".into(),
            pods: vec!["reviews-1".into(), "reviews-2".into()],
        };
        assert_eq!(
            e.to_string(),
            "deploy/reviews matched 2 pods (reviews-1, reviews-2); diff compares one pod with one other"
        );
        assert_eq!(
            e.hint().unwrap(),
            "name the pods, e.g. kubectl envoy-dump diff reviews-1 reviews-2"
        );
    }

    #[test]
    fn sections_asked_for_are_deduplicated_in_output_order() {
        assert_eq!(wanted(&[]), DiffSection::ALL.to_vec());
        assert_eq!(
            wanted(&[
                DiffSection::Secrets,
                DiffSection::Clusters,
                DiffSection::Secrets
            ]),
            vec![DiffSection::Clusters, DiffSection::Secrets]
        );
    }

    #[test]
    fn colour_marks_verdicts_and_lines() {
        let d = SectionDiff {
            matches: false,
            diff: "--- a\n+++ b\n@@ -1 +1 @@\n-x\n+y\n".into(),
        };
        let mut out = Vec::new();
        write_verdict(&mut out, "Routes", " (x)", &d, true).unwrap();
        let t = String::from_utf8(out).unwrap();
        assert!(
            t.starts_with("\u{1b}[31mRoutes Don't Match (x)\u{1b}[39m\n--- a\n+++ b\n"),
            "{t:?}"
        );
    }
}
