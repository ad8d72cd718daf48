//! The `mesh-sync` command: options in, table or comparison out, an exit status back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;

use super::Error;
use super::diff::{self, Normalised};
use super::fetch::{self, IstiodPod};
use super::model::{Syncz, istiod_from_file_name, parse_syncz};
use super::status::ProxyStatus;
use super::view::{describe_laggard, laggards, merge};
use crate::admin::{self, ConfigDumpQuery, Endpoint};
use crate::cluster::{self, Cluster, ClusterOptions, Target, TargetKind};
use crate::exit::ExitStatus;
use crate::render::{
    Envelope, OutputFormat, RenderOptions, sanitize, write_json, write_rows, write_yaml,
};

/// Everything `mesh-sync` needs, free of clap.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Cluster, `-n` (an explicit namespace filters the proxies), `-A`.
    pub cluster: ClusterOptions,
    /// `POD`: compare istiod's view of this proxy with its own config_dump.
    pub pod: Option<String>,
    /// `-c`: the proxy container.
    pub container: Option<String>,
    /// `--admin-port`.
    pub admin_port: Option<u16>,
    /// `--admin-url`: the proxy side of a comparison from a reachable admin endpoint.
    pub admin_url: Option<String>,
    /// `-f` (repeatable): saved syncz answers.
    pub files: Vec<PathBuf>,
    /// `--istiod-file`: istiod's side of a comparison.
    pub istiod_file: Option<PathBuf>,
    /// `--proxy-file`: the proxy's side of a comparison.
    pub proxy_file: Option<PathBuf>,
    /// `-i`: the control-plane namespace (else found by labels).
    pub istio_namespace: Option<String>,
    /// `--revision`.
    pub revision: Option<String>,
    /// Output.
    pub render: RenderOptions,
    /// `--check`: exit 1 when a proxy is not in sync.
    pub check: bool,
    /// `--wait`: poll until every proxy is in sync, at most this long.
    pub wait: Option<Duration>,
    /// Time between polls of `--wait`.
    pub poll_interval: Duration,
}

/// Run the command; data on `out`, notes and per-replica errors on `err`.
pub async fn run(
    opts: &Options,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitStatus, crate::Error> {
    if opts.pod.is_some() || opts.istiod_file.is_some() || opts.proxy_file.is_some() {
        return compare(opts, out, err).await;
    }
    if !opts.files.is_empty() {
        return offline(opts, out, err);
    }
    live(opts, out, err).await
}

/// The namespace to keep, when `-n` was given explicitly (and not `-A`).
fn namespace_filter(opts: &Options) -> Option<&str> {
    if opts.cluster.all_namespaces {
        None
    } else {
        opts.cluster.namespace.as_deref()
    }
}

fn offline(
    opts: &Options,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitStatus, crate::Error> {
    let files = &opts.files;
    let mut bytes = Vec::with_capacity(files.len());
    for b in in_parallel(files, |_, f| crate::input::read(f)) {
        bytes.push(b?);
    }
    // The rows borrow their strings from `bytes`: 10k proxies are not copied.
    let mut answers = Vec::new();
    for parsed in in_parallel(files, |i, f| {
        parse_syncz(f, &istiod_from_file_name(f), &bytes[i])
    }) {
        answers.extend(parsed?);
    }
    let rows = merge(&answers, namespace_filter(opts), Timestamp::now());
    let status = show(opts, &rows, out, err)?;
    Ok(status)
}

/// `f(i, &files[i])` for every file (one per istiod replica) on up to one thread per CPU; the
/// results in the order of `files`.
fn in_parallel<'f, T: Send>(
    files: &'f [PathBuf],
    f: impl Fn(usize, &'f PathBuf) -> T + Sync,
) -> Vec<T> {
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(files.len());
    if workers <= 1 {
        return files.iter().enumerate().map(|(i, p)| f(i, p)).collect();
    }
    let f = &f;
    let mut results: Vec<(usize, T)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                s.spawn(move || {
                    (w..files.len())
                        .step_by(workers)
                        .map(|i| (i, f(i, &files[i])))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Render the rows (or the "No resources found" note) and apply `--check`.
fn show(
    opts: &Options,
    rows: &[ProxyStatus<'_>],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitStatus, crate::Error> {
    if rows.is_empty() && opts.render.format.is_table() {
        let note = match namespace_filter(opts) {
            Some(ns) => format!("No resources found in {ns} namespace.\n"),
            None => "No resources found\n".to_string(),
        };
        note_to(err, &note);
    } else {
        write_rows(rows, &opts.render, out)?;
    }
    out.flush().map_err(crate::render::Error::Io)?;
    if opts.check && !laggards(rows).is_empty() {
        report_laggards(rows, err);
        return Ok(ExitStatus::Negative);
    }
    Ok(ExitStatus::Success)
}

fn report_laggards(rows: &[ProxyStatus<'_>], err: &mut dyn Write) {
    let lag = laggards(rows);
    let mut text = format!("{} of {} proxies not in sync:\n", lag.len(), rows.len());
    for p in lag {
        text.push_str(&format!("  {}\n", sanitize(&describe_laggard(p))));
    }
    note_to(err, &text);
}

fn note_to(err: &mut dyn Write, text: &str) {
    // stderr is best effort: a closed stderr must not turn into an error of the command.
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// Print a failure that does not stop the command: `error:` line, causes, hint.
pub fn report_failure(err: &mut dyn Write, e: &(dyn std::error::Error + 'static)) {
    note_to(err, &crate::error::block(e, "", &|l| l.to_string()));
}

/// Ask every replica for its syncz answer, concurrently; failures come back separately.
async fn fetch_all(
    cluster: &Cluster,
    istiods: &[IstiodPod],
    namespace: Option<&str>,
) -> (Vec<Syncz<'static>>, Vec<Error>) {
    let path = match namespace {
        Some(ns) => format!("debug/syncz?namespace={}", fetch::encode_query(ns)),
        None => "debug/syncz".to_string(),
    };
    let bar = crate::fanout::progress(istiods.len(), "asking istiod");
    let results = crate::fanout::run(istiods.to_vec(), istiods.len(), &bar, |i| {
        let path = path.clone();
        async move {
            match fetch::debug_get(cluster, &i, &path).await {
                Ok(bytes) => {
                    let label =
                        PathBuf::from(format!("the answer of istiod {} to /{path}", i.id()));
                    let parsed = parse_syncz(&label, &i.name, &bytes)?;
                    Ok(parsed.into_iter().map(Syncz::into_owned).collect())
                }
                // HTTP debug is off (ENABLE_DEBUG_ON_HTTP=false): ask over xDS as istioctl does.
                Err(e) if fetch::is_debug_off(&e) => {
                    tracing::info!("{e}; trying the xDS debug request");
                    Ok(vec![Syncz::xds(fetch::xds_syncz(cluster, &i).await?)])
                }
                Err(e) => Err(e),
            }
        }
    })
    .await;
    let mut answers = Vec::new();
    let mut failures = Vec::new();
    for (_, r) in results {
        match r {
            Ok(a) => answers.extend(a),
            Err(e) => failures.push(e),
        }
    }
    (answers, failures)
}

async fn live(
    opts: &Options,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitStatus, crate::Error> {
    let cluster = cluster::connect(&opts.cluster).await?;
    let istiods = fetch::find_istiods(
        &cluster,
        opts.istio_namespace.as_deref(),
        opts.revision.as_deref(),
    )
    .await?;
    tracing::info!(
        "istiod replicas: {}",
        istiods
            .iter()
            .map(IstiodPod::id)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let ns = namespace_filter(opts);
    let started = Instant::now();
    loop {
        let (answers, failures) = fetch_all(&cluster, &istiods, ns).await;
        let rows = merge(&answers, ns, Timestamp::now());
        let Some(timeout) = opts.wait else {
            for f in &failures {
                report_failure(err, f);
            }
            let status = show(opts, &rows, out, err)?;
            let failed = if failures.is_empty() {
                ExitStatus::Success
            } else {
                ExitStatus::Error
            };
            return Ok(status.merge(failed));
        };
        let done = failures.is_empty() && laggards(&rows).is_empty();
        if done || started.elapsed() >= timeout {
            for f in &failures {
                report_failure(err, f);
            }
            let plain = Options {
                check: false,
                ..opts.clone()
            };
            show(&plain, &rows, out, err)?;
            if done {
                return Ok(ExitStatus::Success);
            }
            note_to(
                err,
                &format!(
                    "timed out after {}s waiting for proxies to sync\n",
                    timeout.as_secs()
                ),
            );
            report_laggards(&rows, err);
            let failed = if failures.is_empty() {
                ExitStatus::Success
            } else {
                ExitStatus::Error
            };
            return Ok(ExitStatus::Negative.merge(failed));
        }
        tracing::info!(
            "{} of {} proxies not in sync, {} replica(s) failed; polling again",
            laggards(&rows).len(),
            rows.len(),
            failures.len()
        );
        let left = timeout.saturating_sub(started.elapsed());
        tokio::time::sleep(opts.poll_interval.min(left)).await;
    }
}

/// The proxy id (`<pod>.<namespace>`) of the POD argument.
fn pod_name(pod: &str) -> Result<String, cluster::Error> {
    match TargetKind::parse(Some(pod), None, false)? {
        TargetKind::Pod(name) => Ok(name),
        _ => Err(cluster::Error::BadTarget(pod.to_string())),
    }
}

fn normalise_file(path: &Path) -> Result<Normalised, crate::Error> {
    let bytes = crate::input::read(path)?;
    Ok(diff::normalise(path, &bytes)?)
}

async fn compare(
    opts: &Options,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitStatus, crate::Error> {
    let proxy_offline = opts.proxy_file.is_some() || opts.admin_url.is_some();
    if opts.istiod_file.is_some() && !proxy_offline && opts.pod.is_none() {
        return Err(Error::NoProxySide.into());
    }
    if opts.istiod_file.is_none() && opts.pod.is_none() {
        return Err(Error::NoProxyId.into());
    }
    let needs_cluster = opts.istiod_file.is_none() || !proxy_offline;
    let cluster = if needs_cluster {
        Some(cluster::connect(&opts.cluster).await?)
    } else {
        None
    };
    let proxy_id = match (&opts.pod, &cluster) {
        (Some(p), Some(c)) => Some(format!("{}.{}", pod_name(p)?, c.namespace)),
        (Some(p), None) => Some(p.clone()),
        (None, _) => None,
    };

    // The proxy's side.
    let (proxy_label, envoy) = if let Some(f) = &opts.proxy_file {
        (f.display().to_string(), normalise_file(f)?)
    } else {
        let endpoint = match (&opts.admin_url, &cluster, &opts.pod) {
            (Some(url), _, _) => Endpoint::Url(url.clone()),
            (None, Some(c), Some(p)) => {
                let target = Target {
                    kind: TargetKind::Pod(pod_name(p)?),
                    container: opts.container.clone(),
                    admin_port: opts.admin_port,
                };
                let resolved = cluster::resolve_pods(c, &target).await?;
                match resolved.pods.into_iter().next() {
                    Some(pod) => Endpoint::Pod(pod),
                    None => return Err(Error::NoProxySide.into()),
                }
            }
            _ => return Err(Error::NoProxySide.into()),
        };
        let timeout = cluster
            .as_ref()
            .and_then(|c| c.timeout)
            .or(opts.cluster.request_timeout);
        let target = endpoint.label();
        let dump = async {
            let mut client = admin::open(cluster.as_ref(), &endpoint, timeout).await?;
            client.config_dump(&ConfigDumpQuery::default()).await
        }
        .await
        .map_err(|source| Error::ProxyDump {
            target: target.clone(),
            source: Box::new(source),
        })?;
        let label = format!("the config_dump of {target}");
        let n = diff::normalise(Path::new(&label), &dump)?;
        (proxy_id.clone().unwrap_or(target), n)
    };

    // istiod's side.
    let (istiod_label, istiod) = if let Some(f) = &opts.istiod_file {
        (f.display().to_string(), normalise_file(f)?)
    } else {
        let (Some(c), Some(id)) = (&cluster, &proxy_id) else {
            return Err(Error::NoProxyId.into());
        };
        istiod_config_dump(c, opts, id, err).await?
    };

    let result = diff::compare(&istiod_label, &istiod, &proxy_label, &envoy);
    match opts.render.format {
        OutputFormat::Table | OutputFormat::Wide => {
            diff::write_text(&result, opts.render.color, out).map_err(crate::render::Error::Io)?;
        }
        OutputFormat::Json => {
            write_json(&Envelope::list("ProxyConfigComparison", &[&result]), out)?
        }
        OutputFormat::Yaml => {
            write_yaml(&Envelope::list("ProxyConfigComparison", &[&result]), out)?
        }
    }
    out.flush().map_err(crate::render::Error::Io)?;
    Ok(if result.matches() {
        ExitStatus::Success
    } else {
        ExitStatus::Negative
    })
}

/// Ask every replica for `config_dump?proxyID=`; the one holding the connection answers 200,
/// the others 404 (istio#49693), so the first 200 wins.
async fn istiod_config_dump(
    cluster: &Cluster,
    opts: &Options,
    proxy_id: &str,
    err: &mut dyn Write,
) -> Result<(String, Normalised), crate::Error> {
    let istiods = fetch::find_istiods(
        cluster,
        opts.istio_namespace.as_deref(),
        opts.revision.as_deref(),
    )
    .await?;
    let path = format!(
        "debug/config_dump?proxyID={}",
        fetch::encode_query(proxy_id)
    );
    let bar = crate::fanout::progress(istiods.len(), "asking istiod");
    let results = crate::fanout::run(istiods.clone(), istiods.len(), &bar, |i| {
        let path = path.clone();
        async move { fetch::debug_get(cluster, &i, &path).await }
    })
    .await;
    let mut not_connected = 0;
    let mut failures: Vec<Error> = Vec::new();
    for (i, r) in results {
        match r {
            Ok(bytes) => {
                for f in &failures {
                    report_failure(err, f);
                }
                note_to(
                    err,
                    &format!("comparing with istiod {} (holds {proxy_id})\n", i.id()),
                );
                let label = format!("the answer of istiod {} to /{path}", i.id());
                return Ok((i.name.clone(), diff::normalise(Path::new(&label), &bytes)?));
            }
            Err(e) if fetch::is_not_connected(&e) => not_connected += 1,
            Err(e) => failures.push(e),
        }
    }
    let mut failures = failures.into_iter();
    match failures.next() {
        Some(first) => {
            for f in failures {
                report_failure(err, &f);
            }
            Err(first.into())
        }
        None => Err(Error::NotConnected {
            proxy: proxy_id.to_string(),
            replicas: not_connected,
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures/istio")
            .join(rel)
    }

    async fn run_opts(opts: &Options) -> (ExitStatus, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let s = run(opts, &mut out, &mut err).await.unwrap();
        (
            s,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[tokio::test]
    async fn offline_check_reports_laggards() {
        let opts = Options {
            files: vec![fixture("v1.21/ps/derived-inputs/istiod2.syncz.json")],
            check: true,
            ..Default::default()
        };
        let (s, out, err) = run_opts(&opts).await;
        assert_eq!(s, ExitStatus::Negative);
        assert!(out.starts_with("NAME"), "{out}");
        assert_eq!(
            err,
            "1 of 1 proxies not in sync:\n  proxy2 (istiod istiod2): CDS STALE, EDS STALE\n"
        );
    }

    #[tokio::test]
    async fn offline_namespace_filter_with_nothing_left() {
        let opts = Options {
            files: vec![fixture("v1.21/ps/derived-inputs/istiod1.syncz.json")],
            cluster: ClusterOptions {
                namespace: Some("nope".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let (s, out, err) = run_opts(&opts).await;
        assert_eq!(s, ExitStatus::Success);
        assert_eq!(out, "");
        assert_eq!(err, "No resources found in nope namespace.\n");
    }

    #[tokio::test]
    async fn offline_comparison() {
        let opts = Options {
            istiod_file: Some(fixture("current/ps-diff/configdump.json")),
            proxy_file: Some(fixture("current/ps-diff/configdump_diff.json")),
            ..Default::default()
        };
        let (s, out, _) = run_opts(&opts).await;
        assert_eq!(s, ExitStatus::Negative);
        assert!(
            out.starts_with("Clusters Don't Match\n--- Istiod Clusters\n"),
            "{out}"
        );
        let opts = Options {
            proxy_file: opts.istiod_file.clone(),
            ..opts
        };
        let (s, out, _) = run_opts(&opts).await;
        assert_eq!(s, ExitStatus::Success);
        assert_eq!(
            out,
            "Clusters Match\nListeners Match\nRoutes Match (RDS last loaded at Mon, 04 Mar 2024 08:37:44 UTC)\n"
        );
    }

    #[tokio::test]
    async fn a_comparison_needs_both_sides() {
        let opts = Options {
            istiod_file: Some(fixture("current/ps-diff/configdump.json")),
            ..Default::default()
        };
        let e = run(&opts, &mut Vec::new(), &mut Vec::new())
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "nothing to compare istiod's config with");
    }

    #[test]
    fn report_failure_prints_chain_and_hint() {
        let e = crate::Error::from(Error::NotConnected {
            proxy: "a.b".into(),
            replicas: 2,
        });
        let mut err = Vec::new();
        report_failure(&mut err, &e);
        let s = String::from_utf8(err).unwrap();
        assert!(
            s.starts_with(
                "error: proxy a.b is not connected to any of the 2 istiod replica(s) asked\nhint: "
            ),
            "{s}"
        );
    }
}
