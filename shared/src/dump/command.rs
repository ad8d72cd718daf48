//! `kubectl envoy-dump`: fetch from a source (a saved file, `--admin-url`, or pods through
//! port-forwards), build the view, render it. Data goes to `out`; notes, warnings, progress and
//! per-pod errors to `err`.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Error;
use super::clusters::ClusterFilter;
use super::dashboard::dashboard;
use super::draw::render;
use super::endpoints::EndpointFilter;
use super::listeners::ListenerFilter;
use super::raw::raw;
use super::routes::RouteFilter;
use super::view::{ViewData, build, fetch, fetch_pod, from_file};
use crate::admin::{self, Endpoint};
use crate::cluster::{self, Cluster, ClusterOptions, ProxyPod, Target, TargetKind};
use crate::render::{RenderOptions, sanitize};
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
    pub(super) fn name(&self) -> &'static str {
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
#[allow(clippy::large_enum_variant)] // one per command, never stored in bulk
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

pub(super) fn compile(pattern: &str) -> Result<regex::Regex, Error> {
    regex::Regex::new(pattern).map_err(|source| Error::Regex {
        pattern: pattern.to_string(),
        source,
    })
}

pub(super) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Table views over one or many sources

/// The rows of each source: `(pod, data)`; `pod` is `None` for a file or an admin URL.
pub(super) type Parts = Vec<(Option<String>, ViewData)>;

pub(super) async fn tables(
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
pub(super) async fn resolve(
    cluster: &Cluster,
    target: &Target,
    err: &mut dyn Write,
) -> Result<(Vec<ProxyPod>, ExitStatus), crate::Error> {
    let resolved = cluster::resolve_pods(cluster, target).await?;
    let mut status = ExitStatus::Success;
    for s in &resolved.skipped {
        let reason = sanitize(&s.reason.to_string());
        if matches!(s.reason, cluster::Error::NoSidecar { .. }) {
            // Pods without a sidecar are normal under -A / -l: say so only when nothing is left.
            if resolved.pods.is_empty() {
                let _ = writeln!(err, "skipped: {reason}");
            } else {
                tracing::info!("skipped: {reason}");
            }
        } else {
            let _ = writeln!(err, "error: {reason}");
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
pub(super) fn report_pod_error(err: &mut dyn Write, pod: &str, e: &crate::Error) {
    let text = crate::error::block(e, &format!("pod {pod}: "), &|l| l.to_string());
    let _ = err.write_all(text.as_bytes());
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
}
