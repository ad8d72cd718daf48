//! `kubectl jwks-trust check`: every JWT rule, its keys fetched with istiod's trust, istiod's
//! log lines about the URI, and the sidecars holding a placeholder or stale keys. The rows are
//! built in `report`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use super::command::{CommonOptions, error_line, istiod_trust, note, providers_of, scope_pods};
use super::fetch::{self, FetchResult, Trust};
use super::fix::{self, SOURCE_ANNOTATION};
use super::istiod;
use super::model::Jwks;
use super::policy::{self, JwtPolicy, KeySource, PolicyKind};
use super::trust::ProviderKeys;
use crate::admin::Endpoint;
use crate::cluster::ProxyPod;
use crate::exit::ExitStatus;
use crate::fanout;
use crate::render::write_rows;

use super::report::{RowContext, inline_source, sidecar_keys};
pub use super::report::{RuleCheck, SidecarKeys, SidecarState};

/// `kubectl jwks-trust check`.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Shared options.
    pub common: CommonOptions,
    /// Look at the sidecars the policies select (`--no-proxies` turns it off).
    pub proxies: bool,
    /// Read istiod's log (`--no-logs` turns it off).
    pub logs: bool,
    /// How many lines of istiod's log to read per pod.
    pub log_lines: i64,
}

/// What to fetch for a rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum FetchKey {
    Uri(String),
    Issuer(String),
}

/// Run `check`.
pub async fn check(
    opts: &CheckOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitStatus, crate::Error> {
    let c = &opts.common;
    let cluster = crate::cluster::connect(&c.cluster).await?;
    let scope = (!cluster.all_namespaces).then(|| cluster.namespace.clone());
    let root_ns = c.istio_namespace(&cluster).await?;
    let root = root_ns.as_str();

    let mut policies: Vec<JwtPolicy> = Vec::new();
    let selector = c.cluster.selector.as_deref();
    for kind in [
        PolicyKind::RequestAuthentication,
        PolicyKind::Policy,
        PolicyKind::MeshPolicy,
    ] {
        match policy::list(&cluster, kind, scope.as_deref(), selector, root).await {
            Ok(p) => policies.extend(p),
            // The legacy kinds are optional: a user who may not read them still gets the rest.
            Err(crate::Error::Cluster(e))
                if kind != PolicyKind::RequestAuthentication && e.status_code() == Some(403) =>
            {
                note(err, &format!("warning: {e}: {} skipped", kind.as_str()));
            }
            Err(e) => return Err(e),
        }
    }
    policies.retain(|p| !p.rules.is_empty());
    if policies.is_empty() {
        match &scope {
            Some(ns) => note(err, &format!("No JWT policies found in {ns} namespace.")),
            None => note(err, "No JWT policies found."),
        }
        return Ok(ExitStatus::Success);
    }

    let istiod = istiod_trust(&cluster, root, &c.ca_files).await?;
    if let Some(why) = &istiod.unreadable {
        note(
            err,
            &format!(
                "warning: cannot read istiod's /cacerts bundle ({why}); fetching with the system roots{} only",
                if c.ca_files.is_empty() {
                    ""
                } else {
                    " and --ca-file"
                }
            ),
        );
    }
    tracing::info!("trust: {}", istiod.trust.sources().join(", "));

    // 1. Fetch every distinct URI (and annotated sources of inline rules) once.
    let mut keys: BTreeSet<FetchKey> = BTreeSet::new();
    for p in &policies {
        let sources = p
            .annotations
            .get(SOURCE_ANNOTATION)
            .map(|s| fix::parse_sources(s))
            .unwrap_or_default();
        for r in &p.rules {
            match r.rule.source() {
                KeySource::Uri(u) => {
                    keys.insert(FetchKey::Uri(u));
                }
                KeySource::Discovery => {
                    keys.insert(FetchKey::Issuer(r.rule.issuer.clone()));
                }
                KeySource::Inline => {
                    if let Some(u) = inline_source(&sources, &r.rule.issuer, p) {
                        keys.insert(FetchKey::Uri(u));
                    }
                }
            }
        }
    }
    let bar = fanout::progress(keys.len(), "fetching keys");
    let trust = istiod.trust.clone();
    let fopts = c.fetch;
    let fetched = fanout::run(keys.into_iter().collect(), 8, &bar, |k: FetchKey| {
        let trust: Trust = trust.clone();
        async move {
            match &k {
                FetchKey::Uri(u) => fetch::fetch_jwks(u, &trust, fopts).await,
                FetchKey::Issuer(i) => fetch::fetch_jwks_for_issuer(i, &trust, fopts).await,
            }
        }
    })
    .await;
    let mut results: BTreeMap<FetchKey, FetchResult> = BTreeMap::new();
    for (k, r) in fetched {
        results.insert(k, r?);
    }

    // 2. istiod's log.
    let log = if opts.logs && !istiod.objects.is_empty() {
        match istiod::istiod_log(&cluster, root, &istiod.objects, opts.log_lines).await {
            Ok(l) => l,
            Err(e) => {
                note(
                    err,
                    &format!("warning: cannot read istiod's log: {}", error_line(&e)),
                );
                vec![]
            }
        }
    } else {
        vec![]
    };

    // 3. The sidecars.
    let mut pods_of: BTreeMap<(String, String, PolicyKind), Vec<String>> = BTreeMap::new();
    let mut providers: BTreeMap<String, Vec<ProviderKeys>> = BTreeMap::new();
    let mut pod_failed = false;
    if opts.proxies {
        let mut all: BTreeMap<String, ProxyPod> = BTreeMap::new();
        for p in &policies {
            match scope_pods(&cluster, p, c.container.as_deref(), c.admin_port).await {
                Ok(pods) => {
                    let ids = pods.iter().map(|x| x.id()).collect();
                    pods_of.insert((p.namespace.clone(), p.name.clone(), p.kind), ids);
                    for x in pods {
                        all.insert(x.id(), x);
                    }
                }
                Err(e) => {
                    note(
                        err,
                        &format!(
                            "warning: cannot list the pods of {}: {}",
                            p.id(),
                            error_line(&e)
                        ),
                    );
                }
            }
        }
        let bar = fanout::progress(all.len(), "reading sidecars");
        let timeout = cluster.timeout;
        let cl = &cluster;
        let got = fanout::run(
            all.into_values().collect(),
            fanout::DEFAULT_CONCURRENCY,
            &bar,
            |p: ProxyPod| async move { providers_of(Some(cl), &Endpoint::Pod(p), timeout).await },
        )
        .await;
        for (p, r) in got {
            match r {
                Ok(ps) => {
                    providers.insert(p.id(), ps);
                }
                Err(e) => {
                    pod_failed = true;
                    note(err, &format!("error: pod {}: {}", p.id(), error_line(&e)));
                }
            }
        }
    }

    // 4. Rows.
    let ctx = RowContext {
        istio_ns: root,
        istiod: &istiod,
        log: &log,
        ca_files: !c.ca_files.is_empty(),
    };
    let mut rows = Vec::new();
    for p in &policies {
        let sources = p
            .annotations
            .get(SOURCE_ANNOTATION)
            .map(|s| fix::parse_sources(s))
            .unwrap_or_default();
        let pods = pods_of
            .get(&(p.namespace.clone(), p.name.clone(), p.kind))
            .cloned()
            .unwrap_or_default();
        for r in &p.rules {
            let (result, inline_keys) = match r.rule.source() {
                KeySource::Uri(u) => (results.get(&FetchKey::Uri(u)), None),
                KeySource::Discovery => {
                    (results.get(&FetchKey::Issuer(r.rule.issuer.clone())), None)
                }
                KeySource::Inline => (
                    inline_source(&sources, &r.rule.issuer, p)
                        .and_then(|u| results.get(&FetchKey::Uri(u))),
                    r.rule.jwks.as_deref().map(|j| Jwks::parse(j.as_bytes())),
                ),
            };
            let sidecars: Vec<SidecarKeys> = pods
                .iter()
                .filter_map(|pod| {
                    providers.get(pod).map(|ps| {
                        sidecar_keys(pod, ps, &r.rule.issuer, result, inline_keys.as_ref())
                    })
                })
                .collect();
            rows.push(ctx.row(p, r.index, &r.rule, result, inline_keys, sidecars));
        }
    }
    // 5. jwksUris served inside the mesh: istiod's plain fetch meets the workloads' mTLS.
    let mut meshes: BTreeMap<(String, String), Option<super::mesh::InMesh>> = BTreeMap::new();
    for row in rows.iter_mut().filter(|r| r.jwks.contains("://")) {
        let key = (row.jwks.clone(), row.namespace.clone());
        if !meshes.contains_key(&key) {
            let m = super::mesh::in_mesh(&cluster, &row.jwks, &row.namespace, root).await;
            meshes.insert(key.clone(), m);
        }
        let Some(Some(m)) = meshes.get(&key) else {
            continue;
        };
        let by = m
            .decision
            .policy
            .as_deref()
            .map(|p| format!("PeerAuthentication {p}"))
            .unwrap_or_else(|| "the mesh default".into());
        if m.decision.mode == super::mesh::MtlsMode::Strict {
            row.status = "MTLS STRICT".into();
            row.problem = true;
            row.detail = format!(
                "served inside the mesh by service {} port {} (pod port {}); {by} requires mTLS there, and istiod fetches jwksUri without it",
                m.service, m.port, m.target_port
            );
            let mut fixes = m.fixes(root);
            fixes.append(&mut row.fixes);
            row.fixes = fixes;
        } else {
            row.detail = format!(
                "{}; served inside the mesh by service {} ({by}: plain fetches allowed)",
                row.detail, m.service
            );
        }
    }
    rows.sort_by(|a, b| {
        (&a.namespace, &a.policy, a.kind, a.rule).cmp(&(&b.namespace, &b.policy, b.kind, b.rule))
    });
    write_rows(&rows, &c.render, out)?;
    out.flush().map_err(crate::render::Error::Io)?;

    // 6. What we saw in istiod's log, which sidecars are affected, and the fixes.
    for r in rows.iter().filter(|r| r.problem) {
        let kind = r.kind.as_str();
        let id = if r.namespace.is_empty() {
            format!("{kind} {}", r.policy)
        } else {
            format!("{kind} {}/{}", r.namespace, r.policy)
        };
        let _ = writeln!(err);
        note(err, &format!("{id} ({}): {}", r.issuer, r.detail));
        for l in &r.istiod_log {
            note(err, &format!("  istiod: {l}"));
        }
        let bad: Vec<&SidecarKeys> = r.sidecars.iter().filter(|s| s.state.is_problem()).collect();
        for s in &bad {
            note(err, &format!("  sidecar {}: {}", s.pod, s.detail));
        }
        if !r.fixes.is_empty() {
            note(err, "  to fix:");
            for f in &r.fixes {
                note(err, &format!("    {f}"));
            }
        }
    }
    let problems = rows.iter().any(|r| r.problem);
    let status = if problems {
        ExitStatus::Negative
    } else {
        ExitStatus::Success
    };
    Ok(if pod_failed {
        status.merge(ExitStatus::Error)
    } else {
        status
    })
}
