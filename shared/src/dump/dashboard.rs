//! `dashboard`: a local port forwarded to a pod's Envoy admin UI until Ctrl-C.

use std::io::Write;

use super::Error;
use super::command::{DashboardOptions, Options, Source, resolve};
use crate::ExitStatus;
use crate::cluster;

// ---------------------------------------------------------------------------------------------
// Dashboard

pub(super) async fn dashboard(
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

pub(super) async fn open_browser(url: &str, err: &mut dyn Write) {
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
