//! `--follow`: stream the sidecar container's log (`GET pods/log?follow=true`) to our output,
//! optionally only the lines of the loggers that were changed.

use std::future::Future;
use std::io::Write;

use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::LogParams;
use tokio::sync::mpsc;

use super::Error;
use crate::cluster::Cluster;
use crate::render::sanitize;

/// One container log to follow.
#[derive(Debug, Clone)]
pub struct LogSource {
    /// Namespace.
    pub namespace: String,
    /// Pod.
    pub pod: String,
    /// Container (the sidecar).
    pub container: String,
}

/// True when an Envoy log line comes from one of `loggers`: `[rbac]` in Envoy's default format
/// (`[2024-05-01 10:00:00.000][15][debug][rbac] ...`), `envoy rbac` in Istio's
/// (`2024-05-01T10:00:00.000Z\tdebug\tenvoy rbac source/...`).
pub fn from_logger(line: &str, loggers: &[String]) -> bool {
    loggers.iter().any(|l| {
        line.contains(&format!("[{l}]"))
            || line.contains(&format!("\tenvoy {l} "))
            || line.contains(&format!("\tenvoy {l}\t"))
    })
}

enum Event {
    Opened(usize),
    Line(usize, String),
    Failed(usize, crate::Error),
    Ended,
}

/// Follow the logs of `sources` until `stop` resolves (`Some` of its output) or all streams end
/// (`None`). Lines are sanitized, filtered by `only` (logger names) if given, prefixed with
/// `[namespace/pod] ` when `prefix`, and flushed one by one. A stream that fails is reopened
/// (new lines only) a few times.
pub async fn follow<T, F: Future<Output = T>>(
    cluster: &Cluster,
    sources: &[LogSource],
    only: Option<&[String]>,
    prefix: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
    stop: F,
) -> crate::Result<Option<T>> {
    let (tx, mut rx) = mpsc::channel::<Event>(1024);
    let tasks: Vec<tokio::task::JoinHandle<()>> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| tokio::spawn(pump(cluster.clone(), s.clone(), i, tx.clone())))
        .collect();
    drop(tx);
    tokio::pin!(stop);
    let mut live = sources.len();
    let outcome = loop {
        if live == 0 {
            break Ok(None);
        }
        tokio::select! {
            biased;
            t = &mut stop => break Ok(Some(t)),
            ev = rx.recv() => match ev {
                None => break Ok(None),
                Some(Event::Line(i, line)) => {
                    if only.is_some_and(|l| !from_logger(&line, l)) {
                        continue;
                    }
                    let line = sanitize(&line);
                    let r = if prefix {
                        let s = &sources[i];
                        writeln!(out, "[{}/{}] {line}", s.namespace, s.pod)
                    } else {
                        writeln!(out, "{line}")
                    };
                    if let Err(e) = r.and_then(|_| out.flush()) {
                        break Err(crate::Error::Render(e.into()));
                    }
                }
                Some(Event::Opened(i)) => {
                    let s = &sources[i];
                    let _ = writeln!(err, "following the {} log of {}/{} (Ctrl-C to stop)", s.container, s.namespace, s.pod);
                }
                Some(Event::Failed(i, e)) => {
                    live -= 1;
                    let s = &sources[i];
                    let _ = writeln!(err, "warning: stopped following {}/{}: {}", s.namespace, s.pod, chain(&e));
                }
                Some(Event::Ended) => live -= 1,
            },
        }
    };
    for t in tasks {
        t.abort();
    }
    outcome
}

/// An error and its causes on one line.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    crate::error::one_line(e)
}

/// One pod's log into the channel; reopened (new lines only) after a read error, up to three
/// times in a row without a line in between.
async fn pump(cluster: Cluster, source: LogSource, i: usize, tx: mpsc::Sender<Event>) {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &source.namespace);
    let mut failures = 0u32;
    let mut announced = false;
    loop {
        let lp = LogParams {
            container: Some(source.container.clone()),
            follow: true,
            tail_lines: Some(0),
            ..LogParams::default()
        };
        let action = format!(
            "follow log of {}/{} container {}",
            source.namespace, source.pod, source.container
        );
        let stream = match cluster
            .call(action, || api.log_stream(&source.pod, &lp))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                let e = Error::Logs {
                    pod: format!("{}/{}", source.namespace, source.pod),
                    container: source.container.clone(),
                    source: Box::new(e),
                };
                let _ = tx.send(Event::Failed(i, e.into())).await;
                return;
            }
        };
        if !announced {
            announced = true;
            if tx.send(Event::Opened(i)).await.is_err() {
                return;
            }
        }
        let mut lines = stream.lines();
        let mut got_line = false;
        let read_error = loop {
            match lines.next().await {
                Some(Ok(line)) => {
                    got_line = true;
                    if tx.send(Event::Line(i, line)).await.is_err() {
                        return;
                    }
                }
                Some(Err(e)) => break e,
                None => {
                    let _ = tx.send(Event::Ended).await;
                    return;
                }
            }
        };
        failures = if got_line { 1 } else { failures + 1 };
        tracing::debug!(pod = %source.pod, error = %read_error, "log stream broke; reopening");
        if failures > 3 {
            let e = Error::LogRead {
                pod: format!("{}/{}", source.namespace, source.pod),
                container: source.container.clone(),
                source: read_error,
            };
            let _ = tx.send(Event::Failed(i, e.into())).await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_envoy_and_istio_log_formats() {
        let only = vec!["rbac".to_string()];
        assert!(from_logger(
            "[2024-05-01 10:00:00.000][15][debug][rbac] [source/extensions/filters/http/rbac/rbac_filter.cc:100] checking request",
            &only
        ));
        assert!(from_logger(
            "2024-05-01T10:00:00.000000Z\tdebug\tenvoy rbac external/envoy/source/x.cc:1\tchecking\tthread=15",
            &only
        ));
        assert!(!from_logger(
            "[2024-05-01 10:00:00.000][15][debug][http] [rbac] not the logger",
            &["jwt".to_string()]
        ));
        assert!(!from_logger("[2024][15][debug][rbac2] x", &only));
    }

    #[test]
    fn error_chain_on_one_line() {
        let e = Error::NotValidated {
            failed: 1,
            total: 2,
            what: "pods",
            source: Box::new(crate::Error::Loggers(Error::BadSpec("x".into()))),
        };
        assert_eq!(
            chain(&e),
            "1 of 2 pods could not be checked, so nothing was changed: invalid logger setting \"x\": expected LOGGER=LEVEL, e.g. rbac=debug"
        );
    }
}
