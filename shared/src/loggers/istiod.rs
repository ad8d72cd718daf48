//! `kubectl envoy-log --istiod`: istiod's logging scopes over ControlZ, on every replica
//! (istioctl changes only the first one).

use std::collections::BTreeMap;
use std::io::Write;

use k8s_openapi::api::core::v1::Pod;

use super::Error;
use super::controlz::{self, Scope, ScopeLevel, ScopeRow};
use super::follow::chain;
use crate::admin::{self, AdminClient, Endpoint};
use crate::cluster::{self, Cluster, ClusterOptions, control_plane};
use crate::exit::ExitStatus;
use crate::fanout;
use crate::render::{PodRow, RenderOptions, write_rows};

/// Labels of istiod pods (current, then pre-1.5 pilot).
pub use crate::cluster::control_plane::ISTIOD_SELECTORS;
/// The revision label.
pub use crate::cluster::control_plane::REVISION_LABEL;

/// Everything `kubectl envoy-log --istiod` needs, free of clap.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Cluster and timeout (`-n` is not used: see `istio_namespace`).
    pub cluster: ClusterOptions,
    /// `-i`: where istiod runs; `None` = wherever istiod pods are found.
    pub istio_namespace: Option<String>,
    /// `--revision`: only replicas with `istio.io/rev=REV`.
    pub revision: Option<String>,
    /// One istiod pod by name (`NAME` or `pod/NAME`).
    pub target: Option<String>,
    /// `--admin-url`: a ControlZ endpoint directly (existing port-forward), no cluster.
    pub admin_url: Option<String>,
    /// ControlZ port (9876).
    pub port: u16,
    /// Scopes to set; empty lists them.
    pub specs: BTreeMap<String, ScopeLevel>,
    /// `--max-concurrency`.
    pub concurrency: usize,
    /// Output format and colour.
    pub render: RenderOptions,
}

/// An istiod replica to talk to.
#[derive(Debug, Clone)]
enum Replica {
    Pod { namespace: String, name: String },
    Url(String),
}

impl Replica {
    fn label(&self) -> String {
        match self {
            Replica::Pod { namespace, name } => format!("{namespace}/{name}"),
            Replica::Url(u) => u.clone(),
        }
    }
}

/// Run the command: list scopes, or check every replica has the scopes and then set them on all.
pub async fn run(
    opts: &Options,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> crate::Result<ExitStatus> {
    let (cluster, replicas) = match &opts.admin_url {
        Some(u) => (None, vec![Replica::Url(u.clone())]),
        None => {
            let c = cluster::connect(&opts.cluster).await?;
            let r = find_replicas(&c, opts).await?;
            (Some(c), r)
        }
    };
    let cluster = cluster.as_ref();
    let total = replicas.len();
    let multi = total > 1;
    let bar = fanout::progress(total, "reading scopes");
    let probed = fanout::run(replicas, opts.concurrency, &bar, |r| async move {
        let mut c = open(cluster, &r, opts).await?;
        let scopes = controlz::list(&mut c)
            .await
            .map_err(|e| unreachable(e, &r, opts.port))?;
        Ok::<_, crate::Error>((c, scopes))
    })
    .await;

    if opts.specs.is_empty() {
        let mut status = ExitStatus::Success;
        let mut rows = Vec::new();
        for (r, res) in probed {
            match res {
                Ok((_, scopes)) => rows.extend(scopes.iter().map(|s| PodRow {
                    pod: r.label(),
                    row: ScopeRow::from(s),
                })),
                Err(e) if !multi => return Err(e),
                Err(e) => {
                    status = ExitStatus::Error;
                    let _ = writeln!(err, "error: {}: {}", r.label(), chain(&e));
                }
            }
        }
        write_scope_rows(rows, multi, &opts.render, out)?;
        return Ok(status);
    }

    // Validate on every replica before changing any.
    let mut ok = Vec::new();
    let mut failures = Vec::new();
    for (r, res) in probed {
        match res {
            Ok((c, scopes)) => ok.push((r, c, scopes)),
            Err(e) => failures.push((r.label(), e)),
        }
    }
    if !failures.is_empty() {
        if total == 1 {
            return Err(failures.remove(0).1);
        }
        for (label, e) in &failures {
            let _ = writeln!(err, "error: {label}: {}", chain(e));
        }
        return Err(Error::NotValidated {
            failed: failures.len(),
            total,
            what: "istiod replicas",
            source: Box::new(failures.remove(0).1),
        }
        .into());
    }
    for (r, _, scopes) in &ok {
        if let Err(e) = controlz::validate(&opts.specs, scopes, &r.label()) {
            if multi {
                let _ = writeln!(
                    err,
                    "note: nothing was changed on any of the {total} istiod replicas"
                );
            }
            return Err(e.into());
        }
    }

    // Apply on all, then read back.
    let mut status = ExitStatus::Success;
    let mut rows = Vec::new();
    let mut changed = Vec::new();
    let mut failed = Vec::new();
    for (r, mut c, scopes) in ok {
        let updates = controlz::updates(&opts.specs, &scopes);
        let res = async {
            controlz::set(&mut c, &updates).await?;
            controlz::list(&mut c).await
        }
        .await;
        match res {
            Ok(now) => {
                changed.push(r.label());
                rows.extend(now.iter().filter(|s| opts.specs.contains_key(&s.name)).map(
                    |s: &Scope| PodRow {
                        pod: r.label(),
                        row: ScopeRow::from(s),
                    },
                ));
            }
            Err(e) if !multi => return Err(e),
            Err(e) => {
                status = ExitStatus::Error;
                let _ = writeln!(err, "error: {}: {}", r.label(), chain(&e));
                failed.push(r.label());
            }
        }
    }
    write_scope_rows(rows, multi, &opts.render, out)?;
    if !failed.is_empty() {
        let _ = writeln!(
            err,
            "error: {} of {total} istiod replicas failed ({}); changed: {}",
            failed.len(),
            failed.join(", "),
            if changed.is_empty() {
                "none".to_string()
            } else {
                changed.join(", ")
            }
        );
    }
    Ok(status)
}

/// Transport failures of ControlZ get a ControlZ hint instead of the Envoy admin one.
fn unreachable(e: crate::Error, r: &Replica, port: u16) -> crate::Error {
    match e {
        crate::Error::Admin(
            source @ (admin::Error::Connect { .. }
            | admin::Error::Tunnel { .. }
            | admin::Error::Http { .. }
            | admin::Error::Lost { .. }),
        ) => Error::ControlZ {
            target: r.label(),
            port,
            source: Box::new(source),
        }
        .into(),
        other => other,
    }
}

fn write_scope_rows(
    rows: Vec<PodRow<ScopeRow>>,
    multi: bool,
    render: &RenderOptions,
    out: &mut dyn Write,
) -> Result<(), crate::render::Error> {
    if multi {
        write_rows(&rows, render, out)
    } else {
        let single: Vec<ScopeRow> = rows.into_iter().map(|r| r.row).collect();
        write_rows(&single, render, out)
    }
}

/// Connect to one replica's ControlZ.
async fn open(
    cluster: Option<&Cluster>,
    r: &Replica,
    opts: &Options,
) -> crate::Result<AdminClient> {
    let timeout = opts.cluster.request_timeout;
    match (r, cluster) {
        (Replica::Url(u), _) => admin::open(None, &Endpoint::Url(u.clone()), timeout)
            .await
            .map_err(|e| unreachable(e.into(), r, opts.port)),
        (Replica::Pod { namespace, name }, Some(c)) => {
            let fwd = cluster::forward(c, namespace, name, opts.port).await?;
            let client =
                AdminClient::over_stream(fwd.stream, format!("pod {namespace}/{name}"), timeout)
                    .await?;
            Ok(client.with_tunnel(fwd.tunnel, fwd.error))
        }
        (Replica::Pod { namespace, name }, None) => Err(admin::Error::Url {
            url: format!("pod {namespace}/{name}"),
        }
        .into()),
    }
}

/// The Running istiod pods: by `app=istiod` (else `istio=pilot`) in `-i` or any namespace,
/// filtered by revision and by name.
async fn find_replicas(cluster: &Cluster, opts: &Options) -> crate::Result<Vec<Replica>> {
    let pods =
        control_plane::find_istiod_pods(cluster, opts.istio_namespace.as_deref(), None).await?;
    let name = opts.target.as_deref().map(|t| {
        t.strip_prefix("pod/")
            .or(t.strip_prefix("pods/"))
            .unwrap_or(t)
    });
    Ok(select(
        pods,
        opts.revision.as_deref(),
        name,
        opts.istio_namespace.as_deref(),
    )?)
}

/// Running pods of the revision (pods without the label are `default`), and the named one.
fn select(
    pods: Vec<Pod>,
    revision: Option<&str>,
    name: Option<&str>,
    namespace: Option<&str>,
) -> Result<Vec<Replica>, Error> {
    let mut out: Vec<Replica> = pods
        .into_iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter(|p| {
            revision.is_none_or(|rev| {
                let have = p
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(REVISION_LABEL))
                    .map(String::as_str)
                    .unwrap_or("default");
                have == rev
            })
        })
        .map(|p| Replica::Pod {
            namespace: p.metadata.namespace.unwrap_or_default(),
            name: p.metadata.name.unwrap_or_default(),
        })
        .collect();
    out.sort_by_key(Replica::label);
    if let Some(n) = name {
        let found: Vec<String> = out.iter().map(Replica::label).collect();
        out.retain(|r| matches!(r, Replica::Pod { name, .. } if name == n));
        if out.is_empty() {
            return Err(Error::IstiodNotFound {
                name: n.to_string(),
                namespace: namespace.map(str::to_string),
                found,
            });
        }
    }
    if out.is_empty() {
        return Err(Error::NoIstiod {
            namespace: namespace.map(str::to_string),
            revision: revision.map(str::to_string),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(ns: &str, name: &str, rev: Option<&str>, phase: &str) -> Pod {
        let mut labels = json!({"app": "istiod"});
        if let Some(r) = rev {
            labels["istio.io/rev"] = json!(r);
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    fn labels(v: &[Replica]) -> Vec<String> {
        v.iter().map(Replica::label).collect()
    }

    #[test]
    fn every_running_replica_of_the_revision() {
        let pods = || {
            vec![
                pod("istio-system", "istiod-b", None, "Running"),
                pod("istio-system", "istiod-a", Some("default"), "Running"),
                pod("istio-system", "istiod-canary-x", Some("canary"), "Running"),
                pod("istio-system", "istiod-c", None, "Pending"),
            ]
        };
        assert_eq!(
            labels(&select(pods(), None, None, None).unwrap()),
            vec![
                "istio-system/istiod-a",
                "istio-system/istiod-b",
                "istio-system/istiod-canary-x"
            ]
        );
        assert_eq!(
            labels(&select(pods(), Some("default"), None, None).unwrap()),
            vec!["istio-system/istiod-a", "istio-system/istiod-b"]
        );
        assert_eq!(
            labels(&select(pods(), None, Some("istiod-b"), None).unwrap()),
            vec!["istio-system/istiod-b"]
        );
        let e = select(pods(), None, Some("nope"), Some("istio-system")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "istiod pod nope not found in namespace istio-system"
        );
        assert!(
            crate::Hint::hint(&e)
                .unwrap()
                .contains("istio-system/istiod-a")
        );
        let e = select(pods(), Some("v2"), None, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no running istiod pods found in any namespace with revision v2"
        );
    }
}
