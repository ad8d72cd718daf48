//! `kubectl envoy-log`: list the loggers of one or many sidecars; change them after checking
//! every pod first; optionally follow the sidecar log, and restore the previous levels after a
//! while or on Ctrl-C/SIGTERM.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::Error;
use super::apply;
use super::follow::{self, LogSource, chain};
use super::model::{LoggerRow, Loggers, StartLevels};
use super::plan::{self, Change, Step, Unknown};
use super::restore::{self, Saved};
use super::wait::{self, Interrupts, Waited};
use crate::admin::{self, AdminClient, Endpoint};
use crate::cluster::{self, Cluster, ClusterOptions, Target, TargetKind};
use crate::exit::ExitStatus;
use crate::fanout;
use crate::render::{Cell, OutputFormat, PodRow, RenderOptions, Tabular, Tone, write_rows};

/// Everything `kubectl envoy-log` needs, free of clap.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Cluster, namespace, selector, timeout.
    pub cluster: ClusterOptions,
    /// `NAME`, `pod/NAME`, `deploy/NAME`.
    pub target: Option<String>,
    /// `-c`.
    pub container: Option<String>,
    /// `--admin-port`.
    pub admin_port: Option<u16>,
    /// `--admin-url`: one Envoy, no cluster.
    pub admin_url: Option<String>,
    /// `None` lists the loggers.
    pub change: Option<Change>,
    /// `--for`: restore the previous levels after this long.
    pub restore_after: Option<Duration>,
    /// `--follow`: stream the sidecar log after the change.
    pub follow: bool,
    /// `--only-changed`: only log lines of the changed loggers.
    pub only_changed: bool,
    /// `--max-concurrency`.
    pub concurrency: usize,
    /// Output format and colour.
    pub render: RenderOptions,
    /// Whether stderr is a terminal (countdown redraw).
    pub tty: bool,
}

/// One row of a multi-pod change: what each pod now has, or why it failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodResult {
    /// `namespace/name`.
    pub pod: String,
    /// `rbac=debug`, `level=debug`, or `FAILED: <reason>`.
    pub result: String,
    /// Whether the change was applied.
    pub ok: bool,
}

impl Tabular for PodResult {
    const KIND: &'static str = "LoggerChange";
    fn headers(_wide: bool) -> Vec<&'static str> {
        vec!["POD", "RESULT"]
    }
    fn row(&self, _wide: bool) -> Vec<Cell<'_>> {
        let tone = if self.ok { Tone::Plain } else { Tone::Bad };
        vec![Cell::plain(&self.pod), Cell::toned(&self.result, tone)]
    }
}

/// A proxy that answered the first `/logging`.
struct Proxy {
    endpoint: Endpoint,
    label: String,
    start: StartLevels,
    before: Loggers,
    steps: Vec<Step>,
    client: Mutex<AdminClient>,
}

/// The levels a proxy was started with (`warning` without a pod to read them from).
pub fn start_levels(endpoint: &Endpoint) -> StartLevels {
    match endpoint {
        Endpoint::Pod(p) => StartLevels::detect(&p.container_args(), &p.annotations()),
        Endpoint::Url(_) => StartLevels::default(),
    }
}

/// Run the command. stdout gets the tables (or the followed log), stderr notes and progress.
pub async fn run(
    opts: &Options,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> crate::Result<ExitStatus> {
    let Some((cluster, endpoints, multi)) = targets(opts, err).await? else {
        return Ok(ExitStatus::Success);
    };
    let cluster = cluster.as_ref();
    let timeout = opts.cluster.request_timeout;
    // Listen for Ctrl-C/SIGTERM before anything changes, so that a signal always restores (or,
    // during a change, stops it cleanly: see step 2).
    let mut interrupts = if opts.change.is_some() || opts.follow || opts.restore_after.is_some() {
        Some(Interrupts::listen()?)
    } else {
        None
    };

    let Some(change) = &opts.change else {
        if let (true, Some(cluster), Some(interrupts)) = (opts.follow, cluster, &mut interrupts) {
            let sources: Vec<LogSource> = endpoints.iter().filter_map(log_source).collect();
            let stop = interrupts.recv();
            return match follow::follow(cluster, &sources, None, multi, out, err, stop).await? {
                Some(()) => Err(crate::Error::Interrupted),
                None => Ok(ExitStatus::Success),
            };
        }
        return list(cluster, endpoints, multi, opts, out, err).await;
    };

    // 1. Read every proxy's loggers; any failure changes nothing anywhere.
    let total = endpoints.len();
    let bar = fanout::progress(total, "reading loggers");
    let probe = fanout::run(endpoints, opts.concurrency, &bar, |ep| async move {
        let mut c = admin::open(cluster, &ep, timeout).await?;
        let l = apply::list(&mut c).await?;
        Ok::<_, crate::Error>((c, l))
    });
    let probed = match interrupts.as_mut() {
        Some(i) => tokio::select! {
            r = probe => r,
            _ = i.recv() => {
                bar.finish_and_clear();
                let _ = writeln!(err, "interrupted: nothing was changed");
                return Err(crate::Error::Interrupted);
            }
        },
        None => probe.await,
    };
    let mut proxies = Vec::new();
    let mut failures = Vec::new();
    for (ep, r) in probed {
        match r {
            Ok((client, before)) => {
                let start = start_levels(&ep);
                let steps = plan::steps(change, &before, &start);
                proxies.push(Proxy {
                    label: ep.label(),
                    endpoint: ep,
                    start,
                    before,
                    steps,
                    client: Mutex::new(client),
                });
            }
            Err(e) => failures.push((ep.label(), e)),
        }
    }
    if !failures.is_empty() {
        if total == 1 {
            return Err(failures.remove(0).1);
        }
        for (label, e) in &failures {
            let _ = writeln!(err, "error: {label}: {}", chain(e));
        }
        let failed = failures.len();
        return Err(Error::NotValidated {
            failed,
            total,
            what: "pods",
            source: Box::new(failures.remove(0).1),
        }
        .into());
    }
    validate(change, &proxies, opts, err)?;
    if matches!(change, Change::Reset) {
        let default = StartLevels::default().level;
        if opts.admin_url.is_some() {
            let _ = writeln!(
                err,
                "note: no pod to read the start level from; resetting to {default} (Istio's default)"
            );
        }
        for p in proxies.iter().filter(|p| {
            opts.admin_url.is_none() && p.start.source == super::model::StartSource::Default
        }) {
            let _ = writeln!(
                err,
                "note: {} has no --proxyLogLevel arg or sidecar.istio.io/logLevel annotation; resetting to {default}",
                p.label
            );
        }
    }

    // 2. Apply everywhere. Ctrl-C here starts no more pods but lets the changes in flight
    // finish, so that every pod is known to be changed or not (`None`: not started).
    let bar = fanout::progress(proxies.len(), "applying");
    let ps = &proxies;
    let stop = AtomicBool::new(false);
    let stop = &stop;
    let apply_all = fanout::run(
        (0..proxies.len()).collect(),
        opts.concurrency,
        &bar,
        |i| async move {
            if stop.load(Ordering::SeqCst) {
                return None;
            }
            let p = &ps[i];
            let mut c = p.client.lock().await;
            Some(apply::apply(&mut c, &p.before, &p.steps).await)
        },
    );
    tokio::pin!(apply_all);
    let mut interrupted = false;
    let results = match interrupts.as_mut() {
        Some(i) => tokio::select! {
            r = &mut apply_all => r,
            _ = i.recv() => {
                stop.store(true, Ordering::SeqCst);
                interrupted = true;
                let _ = writeln!(err, "interrupted: finishing the changes in flight, starting no more");
                apply_all.await
            }
        },
        None => apply_all.await,
    };
    let mut changed = Vec::new();
    let mut status = ExitStatus::Success;
    // With --follow, stdout carries the log: the change table goes to stderr.
    let table_opts = RenderOptions {
        format: OutputFormat::Table,
        color: false,
    };
    let (render, sink): (&RenderOptions, &mut dyn Write) = if opts.follow {
        (&table_opts, &mut *err)
    } else {
        (&opts.render, &mut *out)
    };
    if multi {
        let mut rows = Vec::new();
        let mut not_started = Vec::new();
        for (i, r) in results {
            let p = &proxies[i];
            match r {
                Some(Ok(_)) => {
                    changed.push(i);
                    rows.push(PodResult {
                        pod: p.label.clone(),
                        result: describe(&p.steps),
                        ok: true,
                    });
                }
                Some(Err(e)) => rows.push(PodResult {
                    pod: p.label.clone(),
                    result: format!("FAILED: {}", chain(&e)),
                    ok: false,
                }),
                None => {
                    not_started.push(p.label.as_str());
                    rows.push(PodResult {
                        pod: p.label.clone(),
                        result: "not changed (interrupted)".into(),
                        ok: false,
                    });
                }
            }
        }
        write_rows(&rows, render, sink)?;
        if interrupted {
            let list = |v: Vec<&str>| {
                if v.is_empty() {
                    "none".to_string()
                } else {
                    v.join(", ")
                }
            };
            let failed: Vec<&str> = rows
                .iter()
                .filter(|r| !r.ok && !not_started.contains(&r.pod.as_str()))
                .map(|r| r.pod.as_str())
                .collect();
            let _ = writeln!(
                err,
                "interrupted: changed: {}{}; not changed: {}",
                list(changed.iter().map(|i| proxies[*i].label.as_str()).collect()),
                if failed.is_empty() {
                    String::new()
                } else {
                    format!("; failed: {}", failed.join(", "))
                },
                list(not_started)
            );
        } else if changed.len() < proxies.len() {
            status = ExitStatus::Error;
            let names = |ok: bool| {
                let v: Vec<&str> = rows
                    .iter()
                    .filter(|r| r.ok == ok)
                    .map(|r| r.pod.as_str())
                    .collect();
                if v.is_empty() {
                    "none".to_string()
                } else {
                    v.join(", ")
                }
            };
            let _ = writeln!(
                err,
                "error: {} of {} pods failed ({}); changed: {}",
                proxies.len() - changed.len(),
                proxies.len(),
                names(false),
                names(true)
            );
        }
    } else {
        for (i, r) in results {
            let Some(r) = r else {
                continue;
            };
            let after = r?;
            let p = &proxies[i];
            changed.push(i);
            let rows: Vec<LoggerRow> = plan::touched(change, &after)
                .iter()
                .filter_map(|n| after.get(n).map(|l| LoggerRow::new(n, l, &p.start)))
                .collect();
            write_rows(&rows, render, sink)?;
        }
    }
    out.flush().map_err(crate::render::Error::Io)?;

    // 3. Hold: follow and/or wait, then restore (at once after a Ctrl-C during the change).
    let Some(interrupts) = interrupts.as_mut() else {
        return Ok(status);
    };
    if changed.is_empty() {
        return if interrupted {
            if !multi {
                let _ = writeln!(err, "interrupted: nothing was changed");
            }
            Err(crate::Error::Interrupted)
        } else {
            Ok(status)
        };
    }
    if interrupted {
        if opts.restore_after.is_some() {
            restore::restore_all(
                cluster,
                saved_of(&proxies, &changed, change),
                opts.concurrency,
                opts.cluster.request_timeout,
                err,
            )
            .await?;
        }
        return Err(crate::Error::Interrupted);
    }
    let deadline = opts.restore_after.map(|d| Instant::now() + d);
    if let Some(d) = opts.restore_after {
        if !opts.tty || opts.follow {
            let _ = writeln!(
                err,
                "restoring in {}… (Ctrl-C restores now)",
                wait::format_duration(d)
            );
        }
    } else if !opts.follow {
        return Ok(status);
    }
    let _ = err.flush();
    let mut waited = None;
    if let (true, Some(cluster)) = (opts.follow, cluster) {
        let sources: Vec<LogSource> = changed
            .iter()
            .filter_map(|i| log_source(&proxies[*i].endpoint))
            .collect();
        let only = only_loggers(change, opts.only_changed);
        let stop = async {
            match deadline {
                Some(d) => tokio::select! {
                    _ = tokio::time::sleep_until(d) => Waited::Elapsed,
                    _ = interrupts.recv() => Waited::Interrupted,
                },
                None => {
                    interrupts.recv().await;
                    Waited::Interrupted
                }
            }
        };
        waited = follow::follow(cluster, &sources, only.as_deref(), multi, out, err, stop).await?;
    }
    let waited = match (waited, deadline) {
        (Some(w), _) => w,
        (None, Some(d)) => wait::countdown(d, interrupts, opts.tty && !opts.follow, err).await,
        (None, None) => return Ok(status),
    };
    if opts.restore_after.is_some() {
        restore::restore_all(
            cluster,
            saved_of(&proxies, &changed, change),
            opts.concurrency,
            opts.cluster.request_timeout,
            err,
        )
        .await?;
    }
    match waited {
        Waited::Interrupted => Err(crate::Error::Interrupted),
        Waited::Elapsed => Ok(status),
    }
}

/// What the changed proxies (indices into `proxies`) had before, for a restore.
fn saved_of<'a>(proxies: &'a [Proxy], changed: &[usize], change: &Change) -> Vec<Saved<'a>> {
    changed
        .iter()
        .map(|i| {
            let p = &proxies[*i];
            Saved {
                endpoint: &p.endpoint,
                label: &p.label,
                before: &p.before,
                touched: plan::touched(change, &p.before),
            }
        })
        .collect()
}

/// Resolve the target into endpoints; `None` when no pods matched (noted on stderr).
async fn targets(
    opts: &Options,
    err: &mut dyn Write,
) -> crate::Result<Option<(Option<Cluster>, Vec<Endpoint>, bool)>> {
    if let Some(url) = &opts.admin_url {
        return Ok(Some((None, vec![Endpoint::Url(url.clone())], false)));
    }
    let cluster = cluster::connect(&opts.cluster).await?;
    let kind = TargetKind::parse(
        opts.target.as_deref(),
        opts.cluster.selector.as_deref(),
        opts.cluster.all_namespaces,
    )?;
    let multi = kind.is_multi();
    let target = Target {
        kind,
        container: opts.container.clone(),
        admin_port: opts.admin_port,
    };
    let resolved = cluster::resolve_pods(&cluster, &target).await?;
    for s in &resolved.skipped {
        let _ = writeln!(err, "warning: skipping pod {}: {}", s.pod, s.reason);
    }
    if resolved.pods.is_empty() {
        if cluster.all_namespaces {
            let _ = writeln!(err, "No resources found");
        } else {
            let _ = writeln!(
                err,
                "No resources found in {} namespace.",
                cluster.namespace
            );
        }
        return Ok(None);
    }
    let eps = resolved.pods.into_iter().map(Endpoint::Pod).collect();
    Ok(Some((Some(cluster), eps, multi)))
}

/// List mode: one table (with a POD column for multi-pod targets); per-pod failures on stderr.
async fn list(
    cluster: Option<&Cluster>,
    endpoints: Vec<Endpoint>,
    multi: bool,
    opts: &Options,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> crate::Result<ExitStatus> {
    let timeout = opts.cluster.request_timeout;
    let bar = fanout::progress(endpoints.len(), "reading loggers");
    let probed = fanout::run(endpoints, opts.concurrency, &bar, |ep| async move {
        let mut c = admin::open(cluster, &ep, timeout).await?;
        apply::list(&mut c).await
    })
    .await;
    let mut single = Vec::new();
    let mut rows = Vec::new();
    let mut status = ExitStatus::Success;
    for (ep, r) in probed {
        match r {
            Ok(l) => {
                let start = start_levels(&ep);
                if multi {
                    let pod = ep.label();
                    rows.extend(l.rows(&start).into_iter().map(|row| PodRow {
                        pod: pod.clone(),
                        row,
                    }));
                } else {
                    single = l.rows(&start);
                }
            }
            Err(e) if !multi => return Err(e),
            Err(e) => {
                status = ExitStatus::Error;
                let _ = writeln!(err, "error: {}: {}", ep.label(), chain(&e));
            }
        }
    }
    if multi {
        write_rows(&rows, &opts.render, out)?;
    } else {
        write_rows(&single, &opts.render, out)?;
    }
    Ok(status)
}

/// Every named logger must exist on every pod; otherwise nothing is changed anywhere.
fn validate(
    change: &Change,
    proxies: &[Proxy],
    opts: &Options,
    err: &mut dyn Write,
) -> Result<(), Error> {
    let mut bad = Vec::new();
    let mut unknown: Vec<Unknown> = Vec::new();
    for p in proxies {
        let u = plan::unknown_loggers(change.named(), &p.before);
        if u.is_empty() {
            continue;
        }
        bad.push(p.label.clone());
        for x in u {
            if !unknown.iter().any(|y| y.name == x.name) {
                unknown.push(x);
            }
        }
    }
    if bad.is_empty() {
        return Ok(());
    }
    unknown.sort_by(|a, b| a.name.cmp(&b.name));
    if proxies.len() > 1 {
        let _ = writeln!(
            err,
            "note: nothing was changed on any of the {} pods",
            proxies.len()
        );
    }
    let target = match (&opts.admin_url, bad.len()) {
        (Some(url), _) => url.clone(),
        (None, 1) => format!("pod {}", bad[0]),
        (None, _) => format!("pods {}", bad.join(", ")),
    };
    Err(Error::UnknownLoggers { target, unknown })
}

/// `level=debug rbac=trace`.
fn describe(steps: &[Step]) -> String {
    steps
        .iter()
        .map(Step::describe)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The loggers whose lines `--only-changed` keeps; `None` (all lines) after `--level`/`--reset`.
fn only_loggers(change: &Change, only_changed: bool) -> Option<Vec<String>> {
    match change {
        Change::Set { all: None, loggers } if only_changed => {
            Some(loggers.keys().cloned().collect())
        }
        _ => None,
    }
}

fn log_source(ep: &Endpoint) -> Option<LogSource> {
    match ep {
        Endpoint::Pod(p) => Some(LogSource {
            namespace: p.namespace.clone(),
            pod: p.name.clone(),
            container: p.container.clone(),
        }),
        Endpoint::Url(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loggers::Level;

    #[test]
    fn multi_pod_result_table() {
        let rows = vec![
            PodResult {
                pod: "olaf/recommendation-v1-a".into(),
                result: "rbac=debug".into(),
                ok: true,
            },
            PodResult {
                pod: "olaf/recommendation-v2-b".into(),
                result: "FAILED: connection refused".into(),
                ok: false,
            },
        ];
        let mut out = Vec::new();
        write_rows(&rows, &RenderOptions::default(), &mut out).unwrap();
        insta::assert_snapshot!(String::from_utf8(out).unwrap(), @r"
        POD                        RESULT
        olaf/recommendation-v1-a   rbac=debug
        olaf/recommendation-v2-b   FAILED: connection refused
        ");
    }

    #[test]
    fn only_changed_keeps_named_loggers() {
        let c = Change::loggers(plan::parse_specs(&["rbac=debug"]).unwrap());
        assert_eq!(only_loggers(&c, true), Some(vec!["rbac".to_string()]));
        assert_eq!(only_loggers(&c, false), None);
        assert_eq!(only_loggers(&Change::all(Level::Debug), true), None);
    }
}
