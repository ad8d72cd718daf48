//! `kubectl envoy-dump`: fetch from a source (a saved file, `--admin-url`, or pods through
//! port-forwards), build the view, render it. Data goes to `out`; notes, warnings, progress and
//! per-pod errors to `err`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::Error;
use super::bootstrap::{BootstrapField, bootstrap_fields};
use super::clusters::{ClusterFilter, ClusterRow, cluster_rows};
use super::endpoints::{ClusterStatuses, EndpointFilter, EndpointRow, endpoint_rows};
use super::jwt::{JwtRow, jwt_rows, placeholder_warning};
use super::listeners::{ListenerFilter, ListenerRow, listener_rows};
use super::model::{ConfigDump, DecodeError, SectionKind};
use super::rbac::{RbacRow, rbac_rows};
use super::routes::{RouteFilter, RouteRow, route_rows};
use super::secrets::{SecretRow, SpiffeSecretRow, redact, secret_rows};
use super::stats::{StatRow, stat_rows};
use crate::admin::{self, AdminClient, ConfigDumpQuery, Endpoint};
use crate::cluster::{self, Cluster, ClusterOptions, ProxyPod, Target, TargetKind};
use crate::render::{
    API_VERSION, Envelope, OutputFormat, PodRow, RenderOptions, Tabular, sanitize, write_json,
    write_rows, write_yaml,
};
use crate::{ExitStatus, fanout};

/// Which view, with its filters.
#[derive(Debug, Clone)]
pub enum View {
    /// The whole `/config_dump`.
    Raw(RawOptions),
    /// `clusters`.
    Clusters(ClusterFilter),
    /// `listeners`.
    Listeners(ListenerFilter),
    /// `routes`.
    Routes(RouteFilter),
    /// `endpoints` (from `/clusters?format=json`).
    Endpoints(EndpointFilter),
    /// `secrets`.
    Secrets,
    /// `bootstrap`.
    Bootstrap,
    /// Every table.
    All,
    /// `jwt`.
    Jwt,
    /// `rbac`.
    Rbac,
    /// `stats --filter REGEX`.
    Stats {
        /// Regular expression on stat names.
        filter: Option<String>,
    },
    /// `dashboard`: a local port to the admin UI.
    Dashboard(DashboardOptions),
}

impl View {
    fn name(&self) -> &'static str {
        match self {
            View::Raw(_) => "config_dump",
            View::Clusters(_) => "clusters",
            View::Listeners(_) => "listeners",
            View::Routes(_) => "routes",
            View::Endpoints(_) => "endpoints",
            View::Secrets => "secrets",
            View::Bootstrap => "bootstrap",
            View::All => "all",
            View::Jwt => "jwt",
            View::Rbac => "rbac",
            View::Stats { .. } => "stats",
            View::Dashboard(_) => "dashboard",
        }
    }
}

/// Options of the raw dump.
#[derive(Debug, Clone, Default)]
pub struct RawOptions {
    /// `--include-eds`.
    pub include_eds: bool,
    /// `--resource` (passed to Envoy).
    pub resource: Option<String>,
    /// `--name-regex` (passed to Envoy).
    pub name_regex: Option<String>,
    /// `--output-dir`: one file per pod, `DIR/<namespace>/<pod>.json`.
    pub output_dir: Option<PathBuf>,
}

/// Options of `dashboard`.
#[derive(Debug, Clone, Default)]
pub struct DashboardOptions {
    /// Local port (0 = any free port).
    pub port: u16,
    /// Open a browser.
    pub browser: bool,
}

/// Where the data comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A saved file (`-` = stdin).
    File(PathBuf),
    /// An admin endpoint, `http://host:port`.
    AdminUrl(String),
    /// Pods in the cluster.
    Pods {
        /// Cluster access.
        cluster: ClusterOptions,
        /// Which pods.
        target: Target,
    },
}

impl Source {
    /// Pick the source from the shared flags: `-f`, `--admin-url`, or a target (a name, `-l`,
    /// `-A`); more than one is an error.
    pub fn from_flags(
        file: Option<PathBuf>,
        admin_url: Option<String>,
        target: Option<&str>,
        cluster: ClusterOptions,
        container: Option<String>,
        admin_port: Option<u16>,
    ) -> Result<Self, crate::Error> {
        let targeted = target.is_some() || cluster.selector.is_some();
        match (file, admin_url) {
            (Some(_), Some(_)) => Err(Error::ConflictingSources.into()),
            (Some(_), None) | (None, Some(_)) if targeted => Err(Error::ConflictingSources.into()),
            (Some(f), None) => Ok(Source::File(f)),
            (None, Some(u)) => Ok(Source::AdminUrl(u)),
            (None, None) => {
                let kind =
                    TargetKind::parse(target, cluster.selector.as_deref(), cluster.all_namespaces)?;
                Ok(Source::Pods {
                    cluster,
                    target: Target {
                        kind,
                        container,
                        admin_port,
                    },
                })
            }
        }
    }
}

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The view.
    pub view: View,
    /// The source.
    pub source: Source,
    /// Output format and colour.
    pub render: RenderOptions,
    /// Timeout of each call to a proxy.
    pub timeout: Option<Duration>,
}

/// Run the command.
pub async fn run(
    opts: &Options,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitStatus, crate::Error> {
    if let View::Stats {
        filter: Some(pattern),
    } = &opts.view
    {
        compile(pattern)?;
    }
    match &opts.view {
        View::Dashboard(d) => dashboard(opts, d, out, err).await,
        View::Raw(r) => raw(opts, r, out, err).await,
        _ => tables(opts, out, err).await,
    }
}

fn compile(pattern: &str) -> Result<regex::Regex, Error> {
    regex::Regex::new(pattern).map_err(|source| Error::Regex {
        pattern: pattern.to_string(),
        source,
    })
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Fetching

/// The bytes a view needs, from whichever source.
#[derive(Debug, Default)]
struct Fetched {
    dump: Option<Bytes>,
    clusters: Option<Bytes>,
    stats: Option<Bytes>,
}

/// The config_dump section a view reads (`None` for views that read no dump, or all of it).
fn section_of(view: &View) -> Option<SectionKind> {
    match view {
        View::Clusters(_) => Some(SectionKind::Clusters),
        View::Listeners(_) | View::Jwt | View::Rbac => Some(SectionKind::Listeners),
        View::Routes(_) => Some(SectionKind::Routes),
        View::Secrets => Some(SectionKind::Secrets),
        View::Bootstrap => Some(SectionKind::Bootstrap),
        _ => None,
    }
}

async fn fetch(client: &mut AdminClient, view: &View) -> Result<Fetched, crate::Error> {
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

fn from_file(view: &View, bytes: Vec<u8>) -> Fetched {
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

async fn fetch_pod(
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
enum ViewData {
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
struct AllData {
    bootstrap: Vec<BootstrapField>,
    clusters: Vec<ClusterRow>,
    listeners: Vec<ListenerRow>,
    routes: Vec<RouteRow>,
    secrets: Vec<SecretRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoints: Option<Vec<EndpointRow>>,
}

fn decode_error(origin: &str, e: DecodeError) -> Error {
    Error::Decode {
        origin: origin.to_string(),
        what: e.what,
        line: e.line,
        column: e.column,
        offset: e.offset,
        source: e.source,
    }
}

fn parse_dump(origin: &str, bytes: Option<&Bytes>) -> Result<ConfigDump, Error> {
    ConfigDump::from_slice(bytes.map(|b| &b[..]).unwrap_or(b"{}"))
        .map_err(|e| decode_error(origin, e))
}

fn parse_cluster_statuses(origin: &str, bytes: &[u8]) -> Result<ClusterStatuses, Error> {
    let doc: ClusterStatuses = serde_json::from_slice(bytes).map_err(|source| {
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

fn missing(origin: &str, kind: SectionKind) -> Error {
    Error::MissingSection {
        origin: origin.to_string(),
        section: kind.message(),
    }
}

/// Model → rows. Pure: `now` (seconds since the epoch) decides certificate validity.
fn build(view: &View, f: Fetched, origin: &str, now: i64) -> Result<ViewData, crate::Error> {
    if let View::Endpoints(filter) = view {
        let doc = parse_cluster_statuses(origin, f.clusters.as_deref().unwrap_or(b"{}"))?;
        return Ok(ViewData::Endpoints(endpoint_rows(&doc, filter)));
    }
    if let View::Stats { filter } = view {
        let re = filter.as_deref().map(compile).transpose()?;
        let text = String::from_utf8_lossy(f.stats.as_deref().unwrap_or_default());
        return Ok(ViewData::Stats(stat_rows(&text, re.as_ref())));
    }
    let dump = parse_dump(origin, f.dump.as_ref())?;
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

// ---------------------------------------------------------------------------------------------
// Table views over one or many sources

/// The rows of each source: `(pod, data)`; `pod` is `None` for a file or an admin URL.
type Parts = Vec<(Option<String>, ViewData)>;

async fn tables(
    opts: &Options,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitStatus, crate::Error> {
    let now = unix_now();
    let (parts, multi, status) = match &opts.source {
        Source::File(path) => {
            let bytes = crate::input::read(path)?;
            let data = build(
                &opts.view,
                from_file(&opts.view, bytes),
                &path.display().to_string(),
                now,
            )?;
            (vec![(None, data)], false, ExitStatus::Success)
        }
        Source::AdminUrl(url) => {
            let mut client = admin::open(None, &Endpoint::Url(url.clone()), opts.timeout).await?;
            let fetched = fetch(&mut client, &opts.view).await?;
            let data = build(&opts.view, fetched, url, now)?;
            (vec![(None, data)], false, ExitStatus::Success)
        }
        Source::Pods { cluster, target } => {
            let cluster = cluster::connect(cluster).await?;
            let (pods, mut status) = resolve(&cluster, target, err).await?;
            if pods.is_empty() {
                return Ok(status);
            }
            let multi = target.kind.is_multi();
            if !multi {
                let pod = pods.into_iter().next();
                let mut parts = Vec::new();
                if let Some(pod) = pod {
                    let data = fetch_pod(&cluster, &pod, &opts.view, opts.timeout, now).await?;
                    parts.push((Some(pod.id()), data));
                }
                (parts, false, status)
            } else {
                let bar = fanout::progress(pods.len(), "fetching");
                let results = fanout::run(pods, fanout::DEFAULT_CONCURRENCY, &bar, |pod| {
                    let (cluster, view) = (&cluster, &opts.view);
                    async move { fetch_pod(cluster, &pod, view, opts.timeout, now).await }
                })
                .await;
                let mut parts = Vec::new();
                for (pod, r) in results {
                    match r {
                        Ok(data) => parts.push((Some(pod.id()), data)),
                        Err(e) => {
                            report_pod_error(err, &pod.id(), &e);
                            status = status.merge(ExitStatus::Error);
                        }
                    }
                }
                (parts, true, status)
            }
        }
    };
    render(&opts.view, &opts.render, parts, multi, out, err)?;
    Ok(status)
}

/// Resolve pods and report the ones left out; the status is `Error` when a matched pod could
/// not be used for another reason than having no sidecar.
async fn resolve(
    cluster: &Cluster,
    target: &Target,
    err: &mut dyn Write,
) -> Result<(Vec<ProxyPod>, ExitStatus), crate::Error> {
    let resolved = cluster::resolve_pods(cluster, target).await?;
    let mut status = ExitStatus::Success;
    for s in &resolved.skipped {
        let no_sidecar = matches!(s.reason, cluster::Error::NoSidecar { .. });
        let label = if no_sidecar { "skipped" } else { "error" };
        let _ = writeln!(
            err,
            "{label}: pod {}: {}",
            s.pod,
            sanitize(&s.reason.to_string())
        );
        if !no_sidecar {
            status = ExitStatus::Error;
        }
    }
    if resolved.pods.is_empty() && resolved.skipped.is_empty() {
        let _ = if cluster.all_namespaces {
            writeln!(err, "No resources found")
        } else {
            writeln!(
                err,
                "No resources found in {} namespace.",
                cluster.namespace
            )
        };
    }
    Ok((resolved.pods, status))
}

/// `error: pod NS/NAME: <error>` with its causes and hint, as `exit::report` would print it.
fn report_pod_error(err: &mut dyn Write, pod: &str, e: &crate::Error) {
    let mut text = format!("error: pod {pod}: {}\n", sanitize(&e.to_string()));
    let mut last = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        let msg = c.to_string();
        if msg != last && !last.ends_with(&msg) {
            text.push_str(&format!("  caused by: {}\n", sanitize(&msg)));
        }
        last = msg;
        cur = c.source();
    }
    if let Some(h) = crate::error::hint_for(e) {
        text.push_str(&format!("hint: {}\n", sanitize(&h)));
    }
    let _ = err.write_all(text.as_bytes());
}

fn rows_of<T>(
    parts: Vec<(Option<String>, ViewData)>,
    mut take: impl FnMut(ViewData) -> Option<Vec<T>>,
) -> Vec<(Option<String>, Vec<T>)> {
    parts
        .into_iter()
        .filter_map(|(pod, data)| take(data).map(|rows| (pod, rows)))
        .collect()
}

/// Draw one table (or json/yaml list) over all sources; `POD` column when `multi`.
fn emit<T: Tabular + Serialize + Clone>(
    parts: Vec<(Option<String>, Vec<T>)>,
    multi: bool,
    opts: &RenderOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
    none_found: &str,
) -> Result<(), crate::Error> {
    let empty = parts.iter().all(|(_, rows)| rows.is_empty());
    if multi {
        let rows: Vec<PodRow<T>> = parts
            .into_iter()
            .flat_map(|(pod, rows)| {
                let pod = pod.unwrap_or_default();
                rows.into_iter().map(move |row| PodRow {
                    pod: pod.clone(),
                    row,
                })
            })
            .collect();
        write_rows(&rows, opts, out)?;
    } else {
        let rows: Vec<T> = parts.into_iter().flat_map(|(_, rows)| rows).collect();
        write_rows(&rows, opts, out)?;
    }
    if empty && opts.format.is_table() {
        let _ = writeln!(err, "{none_found}");
    }
    Ok(())
}

fn render(
    view: &View,
    ro: &RenderOptions,
    parts: Parts,
    multi: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), crate::Error> {
    match view {
        View::Clusters(_) => emit(
            rows_of(parts, |d| match d {
                ViewData::Clusters(r) => Some(r),
                _ => None,
            }),
            multi,
            ro,
            out,
            err,
            "No clusters found.",
        ),
        View::Listeners(_) => emit(
            rows_of(parts, |d| match d {
                ViewData::Listeners(r) => Some(r),
                _ => None,
            }),
            multi,
            ro,
            out,
            err,
            "No listeners found.",
        ),
        View::Routes(_) => emit(
            rows_of(parts, |d| match d {
                ViewData::Routes(r) => Some(r),
                _ => None,
            }),
            multi,
            ro,
            out,
            err,
            "No routes found.",
        ),
        View::Endpoints(_) => emit(
            rows_of(parts, |d| match d {
                ViewData::Endpoints(r) => Some(r),
                _ => None,
            }),
            multi,
            ro,
            out,
            err,
            "No endpoints found.",
        ),
        View::Secrets => {
            let parts = rows_of(parts, |d| match d {
                ViewData::Secrets(r) => Some(r),
                _ => None,
            });
            emit_secrets(parts, multi, ro, out, err)
        }
        View::Jwt => {
            let parts = rows_of(parts, |d| match d {
                ViewData::Jwt(r) => Some(r),
                _ => None,
            });
            warn_placeholders(&parts, err);
            emit(parts, multi, ro, out, err, "No JWT providers found.")
        }
        View::Rbac => emit(
            rows_of(parts, |d| match d {
                ViewData::Rbac(r) => Some(r),
                _ => None,
            }),
            multi,
            ro,
            out,
            err,
            "No RBAC policies found.",
        ),
        View::Stats { .. } => emit(
            rows_of(parts, |d| match d {
                ViewData::Stats(r) => Some(r),
                _ => None,
            }),
            multi,
            ro,
            out,
            err,
            "No stats found.",
        ),
        View::Bootstrap => render_bootstrap(parts, multi, ro, out, err),
        View::All => render_all(parts, multi, ro, out, err),
        View::Raw(_) | View::Dashboard(_) => Ok(()),
    }
}

fn emit_secrets(
    parts: Vec<(Option<String>, Vec<SecretRow>)>,
    multi: bool,
    ro: &RenderOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), crate::Error> {
    const NONE: &str = "No active or warming secrets found.";
    let all_have_domain = parts.iter().any(|(_, r)| !r.is_empty())
        && parts
            .iter()
            .flat_map(|(_, r)| r)
            .all(|r| r.trust_domain.is_some());
    if all_have_domain && ro.format == OutputFormat::Table {
        let parts = parts
            .into_iter()
            .map(|(p, rows)| (p, rows.into_iter().map(SpiffeSecretRow).collect()))
            .collect();
        emit::<SpiffeSecretRow>(parts, multi, ro, out, err, NONE)
    } else {
        emit(parts, multi, ro, out, err, NONE)
    }
}

fn warn_placeholders(parts: &[(Option<String>, Vec<JwtRow>)], err: &mut dyn Write) {
    let mut seen = std::collections::BTreeSet::new();
    for (pod, rows) in parts {
        let origin = pod
            .as_ref()
            .map(|p| format!("pod {p}: "))
            .unwrap_or_default();
        for row in rows {
            let key = (
                pod.clone(),
                row.issuer.clone(),
                row.jwks.clone(),
                row.provider.clone(),
            );
            if let Some(w) = placeholder_warning(&origin, row) {
                if seen.insert(key) {
                    let _ = writeln!(err, "warning: {w}");
                }
            }
        }
    }
}

fn render_bootstrap(
    parts: Parts,
    multi: bool,
    ro: &RenderOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), crate::Error> {
    let mut fields = Vec::new();
    let mut sections = Vec::new();
    for (pod, data) in parts {
        if let ViewData::Bootstrap { fields: f, section } = data {
            fields.push((pod.clone(), f));
            sections.push((pod, section));
        }
    }
    if ro.format.is_table() {
        return emit(fields, multi, ro, out, err, "No bootstrap found.");
    }
    let to_value =
        |raw: &RawValue| -> Value { serde_json::from_str(raw.get()).unwrap_or(Value::Null) };
    if multi {
        #[derive(Serialize)]
        struct Item {
            pod: String,
            bootstrap: Value,
        }
        let items: Vec<Item> = sections
            .iter()
            .map(|(pod, s)| Item {
                pod: pod.clone().unwrap_or_default(),
                bootstrap: to_value(s),
            })
            .collect();
        return structured(&Envelope::list("BootstrapConfigDump", &items), ro, out);
    }
    match sections.first() {
        Some((_, s)) => structured(&to_value(s), ro, out),
        None => Ok(()),
    }
}

fn structured<T: Serialize>(
    value: &T,
    ro: &RenderOptions,
    out: &mut dyn Write,
) -> Result<(), crate::Error> {
    if ro.format == OutputFormat::Yaml {
        write_yaml(value, out)?;
    } else {
        write_json(value, out)?;
    }
    Ok(())
}

fn render_all(
    parts: Parts,
    multi: bool,
    ro: &RenderOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), crate::Error> {
    let alls: Vec<(Option<String>, AllData)> = parts
        .into_iter()
        .filter_map(|(p, d)| match d {
            ViewData::All(a) => Some((p, *a)),
            _ => None,
        })
        .collect();
    if !ro.format.is_table() {
        #[derive(Serialize)]
        struct Single<'a> {
            #[serde(rename = "apiVersion")]
            api_version: &'static str,
            kind: &'static str,
            #[serde(flatten)]
            data: &'a AllData,
        }
        #[derive(Serialize)]
        struct Item<'a> {
            pod: String,
            #[serde(flatten)]
            data: &'a AllData,
        }
        if multi {
            let items: Vec<Item<'_>> = alls
                .iter()
                .map(|(p, d)| Item {
                    pod: p.clone().unwrap_or_default(),
                    data: d,
                })
                .collect();
            return structured(&Envelope::list("ProxyConfig", &items), ro, out);
        }
        return match alls.first() {
            Some((_, d)) => structured(
                &Single {
                    api_version: API_VERSION,
                    kind: "ProxyConfig",
                    data: d,
                },
                ro,
                out,
            ),
            None => Ok(()),
        };
    }
    fn collect<T>(
        alls: &[(Option<String>, AllData)],
        f: impl Fn(&AllData) -> Vec<T>,
    ) -> Vec<(Option<String>, Vec<T>)> {
        alls.iter().map(|(p, a)| (p.clone(), f(a))).collect()
    }
    // Each table into its own buffer; notes about empty tables are dropped.
    let mut chunks: Vec<Vec<u8>> = vec![Vec::new(); 6];
    let mut sink = Vec::new();
    emit(
        collect(&alls, |a| a.bootstrap.clone()),
        multi,
        ro,
        &mut chunks[0],
        &mut sink,
        "",
    )?;
    emit(
        collect(&alls, |a| a.clusters.clone()),
        multi,
        ro,
        &mut chunks[1],
        &mut sink,
        "",
    )?;
    emit(
        collect(&alls, |a| a.listeners.clone()),
        multi,
        ro,
        &mut chunks[2],
        &mut sink,
        "",
    )?;
    emit(
        collect(&alls, |a| a.routes.clone()),
        multi,
        ro,
        &mut chunks[3],
        &mut sink,
        "",
    )?;
    emit_secrets(
        collect(&alls, |a| a.secrets.clone()),
        multi,
        ro,
        &mut chunks[4],
        &mut sink,
    )?;
    if alls.iter().all(|(_, a)| a.endpoints.is_none()) {
        let _ = writeln!(
            err,
            "note: a config_dump file has no endpoint health; for it run: kubectl envoy-dump endpoints -f CLUSTERS.json"
        );
    } else {
        emit(
            collect(&alls, |a| a.endpoints.clone().unwrap_or_default()),
            multi,
            ro,
            &mut chunks[5],
            &mut sink,
            "",
        )?;
    }
    let text: Vec<Vec<u8>> = chunks.into_iter().filter(|c| !c.is_empty()).collect();
    out.write_all(&text.join(&b"\n"[..]))
        .map_err(crate::render::Error::Io)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Raw dump

async fn raw(
    opts: &Options,
    r: &RawOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitStatus, crate::Error> {
    let yaml = opts.render.format == OutputFormat::Yaml;
    let query = ConfigDumpQuery {
        resource: r.resource.clone(),
        mask: None,
        name_regex: r.name_regex.clone(),
        include_eds: r.include_eds,
    };
    match &opts.source {
        Source::File(path) => {
            if r.output_dir.is_some() {
                return Err(Error::OutputDirNeedsPods.into());
            }
            let bytes = crate::input::read(path)?;
            let value = parse_value(&path.display().to_string(), &bytes)?;
            write_value(value, yaml, out)?;
            Ok(ExitStatus::Success)
        }
        Source::AdminUrl(url) => {
            if r.output_dir.is_some() {
                return Err(Error::OutputDirNeedsPods.into());
            }
            let mut client = admin::open(None, &Endpoint::Url(url.clone()), opts.timeout).await?;
            dump_to(&mut client, &query, yaml, url, out).await?;
            Ok(ExitStatus::Success)
        }
        Source::Pods { cluster, target } => {
            let cluster = cluster::connect(cluster).await?;
            let (pods, mut status) = resolve(&cluster, target, err).await?;
            if pods.is_empty() {
                return Ok(status);
            }
            let Some(dir) = &r.output_dir else {
                if pods.len() > 1 {
                    return Err(Error::NeedsOutputDir { count: pods.len() }.into());
                }
                for pod in &pods {
                    let mut client =
                        admin::open(Some(&cluster), &Endpoint::Pod(pod.clone()), opts.timeout)
                            .await?;
                    dump_to(&mut client, &query, yaml, &format!("pod {}", pod.id()), out).await?;
                }
                return Ok(status);
            };
            let bar = fanout::progress(pods.len(), "saving");
            let results = fanout::run(pods, fanout::DEFAULT_CONCURRENCY, &bar, |pod| {
                let (cluster, query) = (&cluster, &query);
                async move { save(cluster, &pod, query, dir, yaml, opts.timeout).await }
            })
            .await;
            for (pod, r) in results {
                match r {
                    Ok((path, bytes)) => {
                        let _ = writeln!(err, "wrote {} ({bytes} bytes)", path.display());
                    }
                    Err(e) => {
                        report_pod_error(err, &pod.id(), &e);
                        status = status.merge(ExitStatus::Error);
                    }
                }
            }
            Ok(status)
        }
    }
}

fn parse_value(origin: &str, bytes: &[u8]) -> Result<Value, Error> {
    serde_json::from_slice(bytes).map_err(|source| {
        let (line, column) = (source.line(), source.column());
        Error::Decode {
            origin: origin.to_string(),
            what: "Envoy config_dump".into(),
            line,
            column,
            offset: crate::input::byte_offset(bytes, line, column),
            source,
        }
    })
}

fn write_value(mut value: Value, yaml: bool, out: &mut dyn Write) -> Result<(), crate::Error> {
    redact(&mut value);
    if yaml {
        write_yaml(&value, out)?;
    } else {
        write_json(&value, out)?;
    }
    Ok(())
}

/// JSON: stream Envoy's (already pretty) answer in constant memory; YAML: convert.
async fn dump_to(
    client: &mut AdminClient,
    query: &ConfigDumpQuery,
    yaml: bool,
    origin: &str,
    out: &mut dyn Write,
) -> Result<(), crate::Error> {
    if yaml {
        let bytes = client.config_dump(query).await?;
        return write_value(parse_value(origin, &bytes)?, true, out);
    }
    let mut last = b'\n';
    client
        .get_streaming(&query.path(), &mut |chunk| {
            if let Some(b) = chunk.last() {
                last = *b;
            }
            out.write_all(chunk)
        })
        .await?;
    if last != b'\n' {
        out.write_all(b"\n").map_err(crate::render::Error::Io)?;
    }
    out.flush().map_err(crate::render::Error::Io)?;
    Ok(())
}

/// Save one pod's dump to `DIR/<namespace>/<pod>.json` (written to a temporary name, renamed
/// when complete).
async fn save(
    cluster: &Cluster,
    pod: &ProxyPod,
    query: &ConfigDumpQuery,
    dir: &Path,
    yaml: bool,
    timeout: Option<Duration>,
) -> Result<(PathBuf, u64), crate::Error> {
    let ext = if yaml { "yaml" } else { "json" };
    let dir = dir.join(&pod.namespace);
    let path = dir.join(format!("{}.{ext}", pod.name));
    let tmp = dir.join(format!(".{}.{ext}.partial", pod.name));
    let write_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::WriteFile { path: p, source }
    };
    std::fs::create_dir_all(&dir).map_err(write_err(&dir))?;
    let result = async {
        let mut client = admin::open(Some(cluster), &Endpoint::Pod(pod.clone()), timeout).await?;
        let file = std::fs::File::create(&tmp).map_err(write_err(&tmp))?;
        let mut w = std::io::BufWriter::new(file);
        let origin = format!("pod {}", pod.id());
        if yaml {
            let bytes = client.config_dump(query).await?;
            let mut value = parse_value(&origin, &bytes)?;
            redact(&mut value);
            write_yaml(&value, &mut w)?;
        } else {
            client
                .get_streaming(&query.path(), &mut |chunk| w.write_all(chunk))
                .await?;
        }
        w.flush().map_err(write_err(&tmp))?;
        let file = w.into_inner().map_err(|e| Error::WriteFile {
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(write_err(&tmp))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok::<u64, crate::Error>(len)
    }
    .await;
    match result {
        Ok(len) => {
            std::fs::rename(&tmp, &path).map_err(write_err(&path))?;
            Ok((path, len))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Dashboard

async fn dashboard(
    opts: &Options,
    d: &DashboardOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitStatus, crate::Error> {
    let (cluster, target) = match &opts.source {
        Source::File(_) => return Err(Error::NeedsLiveProxy { view: "dashboard" }.into()),
        Source::AdminUrl(url) => {
            writeln!(out, "{url}").map_err(crate::render::Error::Io)?;
            out.flush().map_err(crate::render::Error::Io)?;
            if d.browser {
                open_browser(url, err).await;
            }
            return Ok(ExitStatus::Success);
        }
        Source::Pods { cluster, target } => (cluster, target),
    };
    let cluster = cluster::connect(cluster).await?;
    let (pods, status) = resolve(&cluster, target, err).await?;
    let Some(pod) = pods.first().cloned() else {
        return Ok(status);
    };
    if pods.len() > 1 {
        let _ = writeln!(
            err,
            "note: {} pods matched; using pod {}",
            pods.len(),
            pod.id()
        );
    }
    let address = format!("127.0.0.1:{}", d.port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|source| Error::Listen {
            address: address.clone(),
            source,
        })?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(d.port);
    let url = format!("http://127.0.0.1:{port}");
    writeln!(out, "{url}").map_err(crate::render::Error::Io)?;
    out.flush().map_err(crate::render::Error::Io)?;
    let _ = writeln!(
        err,
        "Forwarding {url} to the Envoy admin port {} of pod {}; press Ctrl-C to stop.",
        pod.admin_port,
        pod.id()
    );
    if d.browser {
        open_browser(&url, err).await;
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(ExitStatus::Success),
            Some(msg) = rx.recv() => {
                let _ = writeln!(err, "warning: {msg}");
            }
            accepted = listener.accept() => {
                let Ok((mut tcp, _)) = accepted else { continue };
                let (cluster, pod, tx) = (cluster.clone(), pod.clone(), tx.clone());
                tokio::spawn(async move {
                    match cluster::forward(&cluster, &pod.namespace, &pod.name, pod.admin_port).await {
                        Ok(mut fwd) => {
                            let _ = tokio::io::copy_bidirectional(&mut tcp, &mut fwd.stream).await;
                        }
                        Err(e) => {
                            let _ = tx.send(format!("port-forward to pod {} failed: {e}", pod.id()));
                        }
                    }
                });
            }
        }
    }
}

async fn open_browser(url: &str, err: &mut dyn Write) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let spawned = tokio::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match spawned {
        Ok(mut child) => {
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
        }
        Err(e) => {
            let _ = writeln!(
                err,
                "warning: cannot open a browser ({opener}: {e}); open {url} yourself"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_from_flags() {
        let co = ClusterOptions::default();
        let s = Source::from_flags(Some("d.json".into()), None, None, co.clone(), None, None);
        assert!(matches!(s, Ok(Source::File(_))));
        let s = Source::from_flags(
            Some("d.json".into()),
            None,
            Some("p"),
            co.clone(),
            None,
            None,
        );
        assert!(matches!(
            s,
            Err(crate::Error::Dump(Error::ConflictingSources))
        ));
        let s = Source::from_flags(
            None,
            Some("http://x:1".into()),
            None,
            co.clone(),
            None,
            None,
        );
        assert!(matches!(s, Ok(Source::AdminUrl(_))));
        let s = Source::from_flags(None, None, Some("deploy/x"), co.clone(), None, Some(15001));
        let Ok(Source::Pods { target, .. }) = s else {
            panic!("{s:?}")
        };
        assert_eq!(target.kind, TargetKind::Deployment("x".into()));
        assert_eq!(target.admin_port, Some(15001));
        assert!(Source::from_flags(None, None, None, co, None, None).is_err());
    }

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

    /// Every view, built and drawn from our captures of the real Envoy (README beside them).
    fn captured(view: View, format: OutputFormat) -> (String, String) {
        use crate::dump::fixture::capture;
        let fetched = Fetched {
            dump: Some(Bytes::from(capture("config_dump.json"))),
            clusters: Some(Bytes::from(capture("clusters.json"))),
            stats: Some(Bytes::from(capture("stats.txt"))),
        };
        // 2026-01-01: certificates are judged against a fixed clock.
        let data = build(&view, fetched, "capture", 1_767_225_600).unwrap();
        let ro = RenderOptions {
            format,
            color: false,
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        render(&view, &ro, vec![(None, data)], false, &mut out, &mut err).unwrap();
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn every_view_on_the_captured_envoy() {
        let mut text = String::new();
        for view in [
            View::Bootstrap,
            View::Clusters(ClusterFilter::default()),
            View::Listeners(ListenerFilter::default()),
            View::Routes(RouteFilter::default()),
            View::Endpoints(EndpointFilter::default()),
            View::Secrets,
            View::Jwt,
            View::Rbac,
            View::Stats {
                filter: Some("denied".into()),
            },
        ] {
            let (out, err) = captured(view.clone(), OutputFormat::Table);
            text.push_str(&format!("== {}\n{out}", view.name()));
            if !err.is_empty() {
                text.push_str(&format!("-- stderr\n{err}"));
            }
        }
        insta::assert_snapshot!(text);
    }

    #[test]
    fn all_view_on_the_captured_envoy() {
        let (out, _) = captured(View::All, OutputFormat::Table);
        insta::assert_snapshot!(out);
        let (json, _) = captured(View::All, OutputFormat::Json);
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["apiVersion"], API_VERSION);
        assert_eq!(v["kind"], "ProxyConfig");
        assert_eq!(v["clusters"].as_array().unwrap().len(), 5);
        assert!(v["endpoints"].as_array().is_some());
    }

    #[test]
    fn structured_output_is_a_typed_list() {
        let (json, _) = captured(View::Clusters(ClusterFilter::default()), OutputFormat::Json);
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["kind"], "ClusterList");
        let reviews = &v["items"].as_array().unwrap()[4];
        assert_eq!(reviews["serviceFqdn"], "reviews.default.svc.cluster.local");
        assert_eq!(reviews["port"], 9080);
        assert_eq!(reviews["destinationRule"], "reviews.default");
        let (yaml, _) = captured(View::Rbac, OutputFormat::Yaml);
        assert!(yaml.contains("kind: RbacPolicyList"), "{yaml}");
        let (bootstrap, _) = captured(View::Bootstrap, OutputFormat::Json);
        let v: Value = serde_json::from_str(&bootstrap).unwrap();
        assert_eq!(
            v["@type"], "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
            "bootstrap -o json is the section itself"
        );
    }
}
