//! `kubectl jwks-trust check`: every JWT rule, its keys fetched with istiod's trust, istiod's
//! log lines about the URI, and the sidecars holding a placeholder or stale keys.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, LogParams};
use serde::Serialize;

use super::cert::CertInfo;
use super::command::{
    CommonOptions, IstiodTrust, error_line, istiod_trust, note, providers_of, scope_pods,
};
use super::fetch::{self, FetchResult, Outcome, Trust};
use super::fix::{self, SOURCE_ANNOTATION};
use super::model::Jwks;
use super::policy::{self, JwtPolicy, KeySource, PolicyKind};
use super::trust::{HeldKeys, ProviderKeys, compare_keys};
use crate::admin::Endpoint;
use crate::cluster::{Cluster, ProxyPod};
use crate::exit::ExitStatus;
use crate::fanout;
use crate::render::{Cell, Tabular, Tone, write_rows};

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

/// What a sidecar holds for a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SidecarState {
    /// The keys the URI serves now (or the inline keys).
    Current,
    /// Keys we could not compare (the fetch failed).
    Unverified,
    /// Envoy fetches the keys itself.
    Remote,
    /// No provider for the issuer (not selected, or not synced yet).
    Missing,
    /// Keys from before a rotation.
    Stale,
    /// istiod's placeholder: its fetch failed.
    Placeholder,
    /// Keys that are not a JWKS.
    Invalid,
}

impl SidecarState {
    fn is_problem(self) -> bool {
        matches!(
            self,
            SidecarState::Stale | SidecarState::Placeholder | SidecarState::Invalid
        )
    }
    fn word(self) -> &'static str {
        match self {
            SidecarState::Current => "current",
            SidecarState::Unverified => "unverified",
            SidecarState::Remote => "remote",
            SidecarState::Missing => "without this issuer",
            SidecarState::Stale => "stale",
            SidecarState::Placeholder => "placeholder",
            SidecarState::Invalid => "invalid",
        }
    }
}

/// One sidecar's keys for a rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarKeys {
    /// `namespace/name`.
    pub pod: String,
    /// What it holds.
    pub state: SidecarState,
    /// Detail (which placeholder, which kids are missing).
    pub detail: String,
}

/// One row: a JWT rule and what we found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleCheck {
    /// Namespace of the policy.
    pub namespace: String,
    /// Policy name.
    pub policy: String,
    /// Policy kind.
    pub kind: PolicyKind,
    /// Rule index.
    pub rule: usize,
    /// Issuer.
    pub issuer: String,
    /// The JWKS URI (or `inline`).
    pub jwks: String,
    /// `OK`, `UNTRUSTED CA`, `INLINE`, …
    pub status: String,
    /// Why.
    pub detail: String,
    /// True when something needs fixing.
    pub problem: bool,
    /// The chain the server presented.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<CertInfo>,
    /// istiod's log lines about the URI.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub istiod_log: Vec<String>,
    /// The sidecars the policy selects.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sidecars: Vec<SidecarKeys>,
    /// Commands that would fix it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fixes: Vec<String>,
}

impl RuleCheck {
    fn sidecar_summary(&self) -> String {
        let mut counts: BTreeMap<SidecarState, usize> = BTreeMap::new();
        for s in &self.sidecars {
            *counts.entry(s.state).or_default() += 1;
        }
        counts
            .iter()
            .rev()
            .map(|(s, n)| format!("{n} {}", s.word()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Tabular for RuleCheck {
    const KIND: &'static str = "JwtRuleCheck";
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["NAMESPACE", "POLICY", "ISSUER", "JWKS", "STATUS", "DETAIL"];
        if wide {
            h.extend(["KIND", "RULE", "SIDECARS"]);
        }
        h
    }
    fn row(&self, wide: bool) -> Vec<Cell> {
        let tone = if self.problem {
            Tone::Bad
        } else if self.status == "OK" || self.status == "INLINE" {
            Tone::Good
        } else {
            Tone::Warn
        };
        let mut r = vec![
            Cell::or_none(&self.namespace),
            Cell::plain(&self.policy),
            Cell::or_none(&self.issuer),
            Cell::or_none(&self.jwks),
            Cell::toned(&self.status, tone),
            Cell::or_none(&self.detail),
        ];
        if wide {
            r.push(Cell::plain(self.kind.as_str()));
            r.push(Cell::plain(self.rule.to_string()));
            r.push(Cell::or_none(self.sidecar_summary()));
        }
        r
    }
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
    let root = c.istio_namespace.as_str();

    let mut policies: Vec<JwtPolicy> = Vec::new();
    for kind in [
        PolicyKind::RequestAuthentication,
        PolicyKind::Policy,
        PolicyKind::MeshPolicy,
    ] {
        policies.extend(policy::list(&cluster, kind, scope.as_deref(), root).await?);
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
        match istiod_log(&cluster, root, &istiod, opts.log_lines).await {
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
    rows.sort_by(|a, b| {
        (&a.namespace, &a.policy, a.kind, a.rule).cmp(&(&b.namespace, &b.policy, b.kind, b.rule))
    });
    write_rows(&rows, &c.render, out)?;
    out.flush().map_err(crate::render::Error::Io)?;

    // 5. What we saw in istiod's log, which sidecars are affected, and the fixes.
    for r in rows.iter().filter(|r| r.problem) {
        let id = if r.namespace.is_empty() {
            r.policy.clone()
        } else {
            format!("{}/{}", r.namespace, r.policy)
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

fn inline_source(
    sources: &BTreeMap<String, String>,
    issuer: &str,
    p: &JwtPolicy,
) -> Option<String> {
    if let Some(u) = sources.get(issuer) {
        return Some(u.clone());
    }
    let inline_rules = p
        .rules
        .iter()
        .filter(|r| r.rule.source() == KeySource::Inline)
        .count();
    if inline_rules == 1 {
        return sources.get("*").cloned();
    }
    None
}

fn sidecar_keys(
    pod: &str,
    providers: &[ProviderKeys],
    issuer: &str,
    fetched: Option<&FetchResult>,
    inline: Option<&Result<Jwks, serde_json::Error>>,
) -> SidecarKeys {
    let mine: Vec<&ProviderKeys> = providers.iter().filter(|p| p.issuer == issuer).collect();
    let reference: Option<&Jwks> = match inline {
        Some(Ok(j)) => Some(j),
        Some(Err(_)) => None,
        None => fetched.and_then(|f| f.jwks()),
    };
    let (state, detail) = match mine.first().map(|p| &p.keys) {
        None => (
            SidecarState::Missing,
            "no jwt_authn provider for this issuer".to_string(),
        ),
        Some(HeldKeys::Placeholder { placeholder }) => {
            (SidecarState::Placeholder, format!("holds {placeholder}"))
        }
        Some(HeldKeys::Keys { jwks }) => match reference {
            Some(r) => {
                let cmp = compare_keys(jwks, r);
                if cmp.is_stale() {
                    (
                        SidecarState::Stale,
                        format!(
                            "holds kid {} but {} now {} kid {}",
                            join_or_none(&jwks.kids()),
                            if inline.is_some() {
                                "the policy"
                            } else {
                                "the URI"
                            },
                            if inline.is_some() { "has" } else { "serves" },
                            cmp.missing.join(", ")
                        ),
                    )
                } else {
                    (
                        SidecarState::Current,
                        format!("holds kid {}", join_or_none(&jwks.kids())),
                    )
                }
            }
            None => (
                SidecarState::Unverified,
                format!("holds kid {}", join_or_none(&jwks.kids())),
            ),
        },
        Some(HeldKeys::Remote { uri }) => (SidecarState::Remote, format!("Envoy fetches {uri}")),
        Some(HeldKeys::Invalid | HeldKeys::Missing) => (
            SidecarState::Invalid,
            "holds keys that are not a JWKS".to_string(),
        ),
    };
    SidecarKeys {
        pod: pod.to_string(),
        state,
        detail,
    }
}

fn join_or_none(v: &[&str]) -> String {
    if v.is_empty() {
        "<none>".into()
    } else {
        v.join(", ")
    }
}

struct RowContext<'a> {
    istio_ns: &'a str,
    istiod: &'a IstiodTrust,
    log: &'a [String],
    ca_files: bool,
}

impl RowContext<'_> {
    fn restart(&self) -> String {
        let name = self
            .istiod
            .deployments
            .first()
            .and_then(|(id, _)| id.split('/').nth(1))
            .unwrap_or("istiod");
        format!(
            "kubectl rollout restart deployment/{name} -n {}",
            self.istio_ns
        )
    }

    fn row(
        &self,
        p: &JwtPolicy,
        index: usize,
        rule: &super::policy::JwtRule,
        result: Option<&FetchResult>,
        inline: Option<Result<Jwks, serde_json::Error>>,
        sidecars: Vec<SidecarKeys>,
    ) -> RuleCheck {
        let ns_flag = if p.namespace.is_empty() {
            String::new()
        } else {
            format!(" -n {}", p.namespace)
        };
        let mut fixes = Vec::new();
        let (jwks, status, mut detail, mut problem, chain) = match (&inline, result) {
            (Some(Ok(keys)), source) => {
                let mut detail = format!(
                    "{} key{} in the policy (kid {})",
                    keys.keys.len(),
                    if keys.keys.len() == 1 { "" } else { "s" },
                    join_or_none(&keys.kids())
                );
                let mut status = "INLINE".to_string();
                let mut problem = false;
                if let Some(src) = source {
                    match src.jwks() {
                        Some(now) => {
                            let cmp = compare_keys(keys, now);
                            if cmp.is_stale() || !cmp.retired.is_empty() {
                                status = "INLINE (STALE)".into();
                                problem = true;
                                detail = format!(
                                    "inline keys differ from {}: it now serves kid {}",
                                    src.uri,
                                    join_or_none(&now.kids())
                                );
                                fixes.push(format!("kubectl jwks-trust refresh{ns_flag}"));
                            } else {
                                detail.push_str(&format!("; same as {}", src.uri));
                            }
                        }
                        None => detail.push_str(&format!(
                            "; source {} not checked: {}",
                            src.uri,
                            src.outcome.status()
                        )),
                    }
                }
                ("inline".to_string(), status, detail, problem, vec![])
            }
            (Some(Err(e)), _) => (
                "inline".to_string(),
                "NOT A JWKS".to_string(),
                format!("the inline jwks does not parse: {e}"),
                true,
                vec![],
            ),
            (None, Some(r)) => (
                r.uri.clone(),
                r.outcome.status(),
                r.outcome.detail(),
                !r.outcome.is_ok(),
                r.chain.clone(),
            ),
            (None, None) => (
                rule.jwks_uri.clone().unwrap_or_default(),
                "UNKNOWN".to_string(),
                "not fetched".to_string(),
                false,
                vec![],
            ),
        };
        let uri = result.map(|r| r.uri.as_str()).unwrap_or("");
        let istiod_log: Vec<String> = if uri.is_empty() || inline.is_some() {
            vec![]
        } else {
            matching_log_lines(self.log, uri, &rule.issuer, 3)
        };
        // Fixes for the fetch.
        if let (None, Some(r)) = (&inline, result) {
            let inline_cmd = format!("kubectl jwks-trust inline {}{ns_flag}", p.name);
            match &r.outcome {
                Outcome::Ok { .. } => {}
                Outcome::UntrustedCa { issuer } => {
                    if let Some(origin) = origin_of(&r.uri) {
                        fixes.push(format!(
                            "kubectl jwks-trust add-ca --from-url {origin} -i {}   # give istiod the CA {issuer:?} (restarts istiod)",
                            self.istio_ns
                        ));
                    }
                    fixes.push(format!(
                        "{inline_cmd} --ca-file CA.pem   # or put the keys in the policy (CA.pem: the {issuer:?} certificate)"
                    ));
                }
                Outcome::Unreachable { .. } | Outcome::Timeout { .. } => {
                    fixes.push(format!(
                        "{inline_cmd} --jwks-file keys.json   # this machine cannot reach the URI; istiod may (see its log); keys.json: the keys, saved where the URI is reachable"
                    ));
                }
                _ => {
                    fixes.push(format!(
                        "{inline_cmd} --jwks-file keys.json   # until the server is fixed; keys.json: the keys, saved by other means"
                    ));
                }
            }
        }
        // Sidecars.
        let placeholders = sidecars
            .iter()
            .filter(|s| s.state == SidecarState::Placeholder)
            .count();
        let stale = sidecars
            .iter()
            .filter(|s| s.state == SidecarState::Stale)
            .count();
        let total = sidecars
            .iter()
            .filter(|s| s.state != SidecarState::Missing)
            .count();
        if placeholders > 0 {
            problem = true;
            let example = sidecars
                .iter()
                .find(|s| s.state == SidecarState::Placeholder)
                .map(|s| s.detail.trim_start_matches("holds ").to_string())
                .unwrap_or_default();
            detail.push_str(&format!("; {placeholders}/{total} sidecars hold {example}"));
        }
        if stale > 0 {
            problem = true;
            detail.push_str(&format!("; {stale}/{total} sidecars hold stale keys"));
        }
        let fetch_ok =
            result.is_some_and(|r| r.outcome.is_ok()) || inline.as_ref().is_some_and(|i| i.is_ok());
        if (placeholders > 0 || stale > 0 || has_fetch_error(&istiod_log))
            && fetch_ok
            && inline.is_none()
        {
            let bundle_hint =
                if self.istiod.deployments.iter().any(|(_, s)| s.is_some()) && !self.ca_files {
                    " (it reads /cacerts/extra.pem only at start)"
                } else {
                    ""
                };
            if has_fetch_error(&istiod_log) || placeholders > 0 {
                problem = true;
            }
            fixes.push(format!(
                "{}   # istiod re-fetches failed keys only after 1-60 min and refreshes every 20 min{bundle_hint}",
                self.restart()
            ));
        }
        if inline.is_some() && (placeholders > 0 || stale > 0) {
            fixes.push(
                "kubectl mesh-sync   # istiod has not pushed the policy's keys to these sidecars"
                    .into(),
            );
        }
        RuleCheck {
            namespace: p.namespace.clone(),
            policy: p.name.clone(),
            kind: p.kind,
            rule: index,
            issuer: rule.issuer.clone(),
            jwks,
            status,
            detail,
            problem,
            chain,
            istiod_log,
            sidecars,
            fixes,
        }
    }
}

fn has_fetch_error(lines: &[String]) -> bool {
    lines.iter().any(|l| {
        let l = l.to_ascii_lowercase();
        l.contains("failed") || l.contains("fake jwks") || l.contains("not a valid jwks")
    })
}

/// `https://host[:port]` of a URI.
fn origin_of(uri: &str) -> Option<String> {
    let u = reqwest::Url::parse(uri).ok()?;
    if u.scheme() != "https" {
        return None;
    }
    let host = u.host_str()?;
    Some(match u.port() {
        Some(p) => format!("https://{host}:{p}"),
        None => format!("https://{host}"),
    })
}

/// The message fragments of istiod's JWKS resolver log lines, all versions (ISTIO.md §4.2).
const LOG_FRAGMENTS: &[&str] = &[
    "failed to fetch",
    "failed to get",
    "failed to refresh",
    "not a valid jwks",
    "does not support fetch public key",
    "not yet fetched",
    "fake jwks",
    "public-only jwks",
    "failed to look up envoy cluster",
    "updated cached jwt public key",
];

/// The last `max` lines of istiod's log about `uri` (or, for discovery, the issuer).
pub fn matching_log_lines(log: &[String], uri: &str, issuer: &str, max: usize) -> Vec<String> {
    let hits: Vec<&String> = log
        .iter()
        .filter(|l| {
            (l.contains(uri) || (!issuer.is_empty() && l.contains(issuer)))
                && LOG_FRAGMENTS
                    .iter()
                    .any(|f| l.to_ascii_lowercase().contains(f))
        })
        .collect();
    let mut out: Vec<String> = Vec::new();
    for l in hits.iter().rev() {
        let t = l.trim().to_string();
        if !out.contains(&t) {
            out.push(t);
        }
        if out.len() == max {
            break;
        }
    }
    out.reverse();
    out
}

async fn istiod_log(
    cluster: &Cluster,
    ns: &str,
    istiod: &IstiodTrust,
    lines: i64,
) -> Result<Vec<String>, crate::Error> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let mut out = Vec::new();
    for d in &istiod.objects {
        let sel = d
            .spec
            .selector
            .match_labels
            .as_ref()
            .map(policy::label_selector)
            .unwrap_or_default();
        if sel.is_empty() {
            continue;
        }
        let pods = cluster
            .call(
                format!("list pods in {ns} -l {sel}"),
                api.list(&ListParams::default().labels(&sel)),
            )
            .await?;
        for p in pods.items {
            let name = p.metadata.name.clone().unwrap_or_default();
            let lp = LogParams {
                container: Some(fix::CONTAINER.into()),
                tail_lines: Some(lines),
                ..LogParams::default()
            };
            let text = cluster
                .call(
                    format!("get logs of pod {ns}/{name} -c discovery"),
                    api.logs(&name, &lp),
                )
                .await?;
            out.extend(text.lines().map(str::to_string));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_of_every_version_match() {
        let uri = "https://sso.example.com/certs";
        let log: Vec<String> = [
            "2020-01-01T00:00:00Z\terror\tmodel\tFailed to fetch public key from \"https://sso.example.com/certs\": Get https://sso.example.com/certs: x509: certificate signed by unknown authority",
            "2020-01-01T00:00:01Z\terror\tFailed to fetch jwt public key from \"https://sso.example.com/certs\": x",
            "2024-01-01T00:00:00Z\tinfo\tThe JWKS key is not yet fetched for issuer https://sso (https://sso.example.com/certs), using a fake JWKS for now",
            "2025-01-01T00:00:00Z\terror\tmodel\tFailed to fetch public key from jwks URI \"https://sso.example.com/certs\": Get \"https://sso.example.com/certs\": tls: failed to verify certificate: x509: certificate signed by unknown authority",
            "2025-01-01T00:00:00Z\tinfo\tads\tPush debounce stable",
            "2025-01-01T00:00:00Z\terror\tmodel\tFailed to fetch public key from jwks URI \"https://other/certs\": x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let m = matching_log_lines(&log, uri, "https://nomatch", 3);
        assert_eq!(m.len(), 3);
        assert!(m[2].contains("tls: failed to verify certificate"));
        assert!(m[1].contains("fake JWKS"));
        assert!(has_fetch_error(&m));
        assert!(matching_log_lines(&log, "https://nothing", "", 3).is_empty());
    }

    #[test]
    fn origins() {
        assert_eq!(
            origin_of(
                "https://keycloak.apps.example.com/auth/realms/olaf/protocol/openid-connect/certs"
            )
            .unwrap(),
            "https://keycloak.apps.example.com"
        );
        assert_eq!(
            origin_of("https://localhost:8443/x").unwrap(),
            "https://localhost:8443"
        );
        assert!(origin_of("http://x/y").is_none());
    }

    #[test]
    fn sidecar_states() {
        let jwks = |kid: &str, n: &str| Jwks {
            keys: vec![super::super::model::Jwk::Rsa(super::super::model::RsaKey {
                kid: Some(kid.into()),
                alg: None,
                use_: None,
                n: n.into(),
                e: "AQAB".into(),
            })],
        };
        let held = vec![ProviderKeys {
            name: "origins-0".into(),
            issuer: "i".into(),
            audiences: vec![],
            keys: HeldKeys::Keys {
                jwks: jwks("k1", "n1"),
            },
        }];
        let fetched = FetchResult {
            uri: "https://u".into(),
            outcome: Outcome::Ok {
                jwks: jwks("k2", "n2"),
                body: vec![],
            },
            chain: vec![],
            chain_der: vec![],
        };
        let s = sidecar_keys("ns/p", &held, "i", Some(&fetched), None);
        assert_eq!(s.state, SidecarState::Stale);
        assert_eq!(s.detail, "holds kid k1 but the URI now serves kid k2");
        let s = sidecar_keys("ns/p", &held, "other", Some(&fetched), None);
        assert_eq!(s.state, SidecarState::Missing);
        let s = sidecar_keys("ns/p", &held, "i", None, Some(&Ok(jwks("k1", "n1"))));
        assert_eq!(s.state, SidecarState::Current);
    }
}
