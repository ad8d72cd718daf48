//! Fix 1 on the cluster: `inline` puts a rule's keys in the policy; `refresh` re-fetches them
//! for policies `inline` annotated and updates those whose keys changed. Every write is a
//! read–modify–write with resourceVersion (re-read and re-applied once on a conflict),
//! previewable with `--dry-run`, and reported on stderr.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use super::Error;
use super::cert::rfc3339;
use super::command::{CommonOptions, error_line, istiod_trust, note, now_unix};
use super::fetch::{self, FetchResult, Outcome, Trust};
use super::fix::{self, SOURCE_ANNOTATION};
use super::model::Jwks;
use super::policy::{self, JwtPolicy, KeySource, PolicyKind, PolicyRef, RuleAt};
use super::trust::compare_keys;
use crate::cluster::Cluster;
use crate::exit::ExitStatus;
use crate::render::{Cell, Tabular, Tone, write_rows};

/// `kubectl jwks-trust inline`.
#[derive(Debug, Clone)]
pub struct InlineOptions {
    /// Shared options.
    pub common: CommonOptions,
    /// The policy's name.
    pub policy: String,
    /// Only the rule of this issuer.
    pub issuer: Option<String>,
    /// `--jwks-file`: keys saved by other means (needs one rule).
    pub jwks_file: Option<PathBuf>,
    /// Print the diff, write nothing.
    pub dry_run: bool,
}

/// `kubectl jwks-trust refresh`.
#[derive(Debug, Clone)]
pub struct RefreshOptions {
    /// Shared options.
    pub common: CommonOptions,
    /// Print the diffs, write nothing.
    pub dry_run: bool,
}

async fn trust_for_fetch(
    cluster: &Cluster,
    c: &CommonOptions,
    err: &mut dyn Write,
) -> Result<Trust, crate::Error> {
    let t = istiod_trust(cluster, &c.istio_namespace(cluster).await?, &c.ca_files).await?;
    if let Some(why) = &t.unreadable {
        note(
            err,
            &format!("note: istiod's /cacerts bundle not used ({why})"),
        );
    }
    Ok(t.trust)
}

async fn fetch_rule(
    rule: &RuleAt,
    trust: &Trust,
    c: &CommonOptions,
) -> Result<FetchResult, crate::Error> {
    Ok(match rule.rule.source() {
        KeySource::Uri(u) => fetch::fetch_jwks(&u, trust, c.fetch).await?,
        KeySource::Discovery | KeySource::Inline => {
            fetch::fetch_jwks_for_issuer(&rule.rule.issuer, trust, c.fetch).await?
        }
    })
}

fn kids_text(j: &Jwks) -> String {
    let k = j.kids();
    if k.is_empty() {
        "no kid".into()
    } else {
        format!("kid {}", k.join(", "))
    }
}

/// Write a policy object: replace with resourceVersion; on a conflict re-read it, apply
/// `change` again and replace once more.
async fn write_policy<F>(
    cluster: &Cluster,
    policy: &JwtPolicy,
    first: serde_json::Value,
    root: &str,
    change: F,
) -> Result<(), crate::Error>
where
    F: Fn(&JwtPolicy) -> Result<serde_json::Value, crate::Error>,
{
    if policy::replace(cluster, policy, &first).await? {
        return Ok(());
    }
    tracing::info!("{}: conflict, re-reading", policy.id());
    let fresh = policy::get_kind(cluster, policy.kind, &policy.namespace, &policy.name, root)
        .await?
        .ok_or_else(|| Error::PolicyNotFound {
            namespace: policy.namespace.clone(),
            name: policy.name.clone(),
        })?;
    let again = change(&fresh)?;
    if policy::replace(cluster, &fresh, &again).await? {
        return Ok(());
    }
    Err(Error::Conflict { what: policy.id() }.into())
}

/// Fix 1: put the keys in the policy.
pub async fn inline(
    opts: &InlineOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitStatus, crate::Error> {
    let c = &opts.common;
    let cluster = crate::cluster::connect(&c.cluster).await?;
    let root_ns = c.istio_namespace(&cluster).await?;
    let root = root_ns.as_str();
    let ns = cluster.namespace.clone();
    let reference = PolicyRef::parse(&opts.policy)?;
    let found = policy::get_by_ref(&cluster, &ns, &reference, root).await?;
    // The rules to inline of each policy the name matches (a bare NAME matches every kind:
    // the RequestAuthentication and the legacy Policy of a migration share it).
    let mut targets: Vec<(JwtPolicy, Vec<RuleAt>)> = Vec::new();
    let mut untouched: Vec<String> = Vec::new();
    for p in found {
        let rules: Vec<RuleAt> = p
            .rules
            .iter()
            .filter(|r| r.rule.source() != KeySource::Inline)
            .filter(|r| opts.issuer.as_ref().is_none_or(|i| *i == r.rule.issuer))
            .cloned()
            .collect();
        if rules.is_empty() {
            untouched.push(p.id());
        } else {
            targets.push((p, rules));
        }
    }
    if targets.is_empty() {
        return Err(Error::NothingToInline {
            policy: untouched.join(", "),
            issuer: opts.issuer.clone(),
        }
        .into());
    }
    for id in &untouched {
        note(
            err,
            &format!("{id}: no JWT rule with a jwksUri to inline; left as it is"),
        );
    }
    let now = rfc3339(now_unix());
    // Keys by where they come from (a URI, or an issuer's discovery document), fetched once
    // for every policy that names them: (inline JSON, source URI, description).
    let mut keys: BTreeMap<String, (String, String, String)> = BTreeMap::new();
    if let Some(path) = &opts.jwks_file {
        for (p, rules) in &targets {
            if rules.len() > 1 {
                return Err(Error::AmbiguousRule {
                    policy: p.id(),
                    count: rules.len(),
                }
                .into());
            }
        }
        let bytes = crate::input::read(path)?;
        let jwks = Jwks::parse(&bytes).map_err(|source| Error::JwksFile {
            path: path.clone(),
            source,
        })?;
        let (text, removed) = fetch::public_jwks(&bytes).map_err(|source| Error::JwksFile {
            path: path.clone(),
            source,
        })?;
        warn_private(err, &path.display().to_string(), &removed);
        let desc = format!(
            "{} key(s) ({}) from {}",
            jwks.keys.len(),
            kids_text(&jwks),
            path.display()
        );
        for r in targets.iter().flat_map(|(_, rules)| rules) {
            let source = match r.rule.source() {
                KeySource::Uri(u) => u,
                _ => format!(
                    "{}/.well-known/openid-configuration",
                    r.rule.issuer.trim_end_matches('/')
                ),
            };
            keys.insert(key_of(r), (text.clone(), source, desc.clone()));
        }
    } else {
        let trust = trust_for_fetch(&cluster, c, err).await?;
        for r in targets.iter().flat_map(|(_, rules)| rules) {
            if keys.contains_key(&key_of(r)) {
                continue;
            }
            let f = fetch_rule(r, &trust, c).await?;
            let Some(text) = f.inline_jwks() else {
                return Err(f.into_error().into());
            };
            if let Outcome::Ok { body, .. } = &f.outcome {
                let removed = fetch::public_jwks(body).map(|(_, r)| r).unwrap_or_default();
                warn_private(err, &f.uri, &removed);
            }
            let desc = match f.jwks() {
                Some(j) => format!("{} key(s) ({}) from {}", j.keys.len(), kids_text(j), f.uri),
                None => format!("keys from {}", f.uri),
            };
            keys.insert(key_of(r), (text, f.uri.clone(), desc));
        }
    }
    for (p, rules) in &targets {
        // The change is found again by issuer and key source (not by position), so that a
        // re-read after a conflict applies it to the same rule even if others moved.
        let apply =
            |pol: &JwtPolicy| -> Result<serde_json::Value, crate::Error> {
                let mut obj = pol.object.clone();
                for r in rules {
                    let Some(at) = pol.rules.iter().find(|x| {
                        x.rule.issuer == r.rule.issuer && x.rule.source() == r.rule.source()
                    }) else {
                        return Err(Error::Conflict { what: pol.id() }.into());
                    };
                    if let Some((text, src, _)) = keys.get(&key_of(r)) {
                        obj = fix::inline_rule(&obj, pol.kind, at.index, text, src, &now)?;
                    }
                }
                Ok(obj)
            };
        let new = apply(p)?;
        let label = format!("{} {}", p.kind.resource(), policy_ref(p));
        if opts.dry_run {
            out.write_all(fix::yaml_diff(&p.object, &new, &label).as_bytes())
                .map_err(crate::render::Error::Io)?;
            note(err, &format!("dry run: {label} not changed"));
            continue;
        }
        write_policy(&cluster, p, new, root, apply).await?;
        for r in rules {
            if let Some((_, _, desc)) = keys.get(&key_of(r)) {
                note(
                    err,
                    &format!("{label}: rule {}: jwksUri replaced by {desc}", r.index),
                );
            }
        }
    }
    if opts.dry_run {
        return Ok(ExitStatus::Success);
    }
    note(
        err,
        &format!(
            "istiod now pushes these keys without fetching; after the issuer rotates its keys run: kubectl jwks-trust refresh{}",
            if ns.is_empty() {
                String::new()
            } else {
                format!(" -n {ns}")
            }
        ),
    );
    if targets
        .iter()
        .any(|(p, _)| p.kind != PolicyKind::RequestAuthentication)
    {
        note(
            err,
            "note: inline jwks in the legacy Policy needs Istio ≥1.3 (1.1/1.2 ignore it)",
        );
    }
    Ok(ExitStatus::Success)
}

/// Where a rule's keys come from, as a map key: its URI, else its issuer's discovery.
fn key_of(r: &RuleAt) -> String {
    match r.rule.source() {
        KeySource::Uri(u) => u,
        _ => format!("issuer {}", r.rule.issuer),
    }
}

fn warn_private(err: &mut dyn Write, source: &str, removed: &[String]) {
    if !removed.is_empty() {
        note(
            err,
            &format!(
                "warning: {source} serves private key material ({}): left out of the policy; a JWKS URI should serve public keys only",
                removed.join(", ")
            ),
        );
    }
}

fn policy_ref(p: &JwtPolicy) -> String {
    if p.namespace.is_empty() {
        p.name.clone()
    } else {
        format!("{}/{}", p.namespace, p.name)
    }
}

/// One row of `refresh`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshRow {
    /// Namespace.
    pub namespace: String,
    /// Kind of the policy.
    pub kind: PolicyKind,
    /// Policy.
    pub policy: String,
    /// Issuer.
    pub issuer: String,
    /// The source URI.
    pub source: String,
    /// `UNCHANGED`, `UPDATED`, `WOULD UPDATE`, or the fetch status.
    pub result: String,
    /// Detail.
    pub detail: String,
}

impl Tabular for RefreshRow {
    const KIND: &'static str = "JwksRefresh";
    fn headers(_wide: bool) -> Vec<&'static str> {
        vec![
            "NAMESPACE",
            "POLICY",
            "ISSUER",
            "SOURCE",
            "RESULT",
            "DETAIL",
        ]
    }
    fn row(&self, _wide: bool) -> Vec<Cell<'_>> {
        let tone = match self.result.as_str() {
            "UNCHANGED" => Tone::Plain,
            "UPDATED" | "WOULD UPDATE" => Tone::Good,
            _ => Tone::Bad,
        };
        vec![
            Cell::or_none(&self.namespace),
            // kubectl's `kind/name`, as in `check`: two kinds may share a name
            Cell::plain(format!(
                "{}/{}",
                self.kind.as_str().to_lowercase(),
                self.policy
            )),
            Cell::or_none(&self.issuer),
            Cell::or_none(&self.source),
            Cell::toned(&self.result, tone),
            Cell::or_none(&self.detail),
        ]
    }
}

/// Re-fetch the keys of policies `inline` annotated and update those whose keys changed.
pub async fn refresh(
    opts: &RefreshOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitStatus, crate::Error> {
    let c = &opts.common;
    let cluster = crate::cluster::connect(&c.cluster).await?;
    let root_ns = c.istio_namespace(&cluster).await?;
    let root = root_ns.as_str();
    let scope = (!cluster.all_namespaces).then(|| cluster.namespace.clone());
    let mut policies = Vec::new();
    for kind in [PolicyKind::RequestAuthentication, PolicyKind::Policy] {
        policies.extend(
            policy::list(
                &cluster,
                kind,
                scope.as_deref(),
                c.cluster.selector.as_deref(),
                root,
            )
            .await?,
        );
    }
    policies.retain(|p| p.annotations.contains_key(SOURCE_ANNOTATION));
    if policies.is_empty() {
        note(
            err,
            &format!(
                "No policies with inlined keys (annotation {SOURCE_ANNOTATION}) found{}.",
                scope
                    .map(|n| format!(" in {n} namespace"))
                    .unwrap_or_default()
            ),
        );
        return Ok(ExitStatus::Success);
    }
    let trust = trust_for_fetch(&cluster, c, err).await?;
    let now = rfc3339(now_unix());
    let mut rows = Vec::new();
    let mut failed = false;
    let mut diffs = String::new();
    for p in &policies {
        let sources = fix::parse_sources(&p.annotations[SOURCE_ANNOTATION]);
        let inline_rules: Vec<&RuleAt> = p
            .rules
            .iter()
            .filter(|r| r.rule.source() == KeySource::Inline)
            .collect();
        let mut changes: Vec<(usize, String, String)> = Vec::new();
        for (issuer, uri) in &sources {
            let rule = if issuer == "*" {
                (inline_rules.len() == 1).then(|| inline_rules[0])
            } else {
                inline_rules
                    .iter()
                    .copied()
                    .find(|r| r.rule.issuer == *issuer)
            };
            let mut row = RefreshRow {
                namespace: p.namespace.clone(),
                kind: p.kind,
                policy: p.name.clone(),
                issuer: rule
                    .map(|r| r.rule.issuer.clone())
                    .unwrap_or_else(|| issuer.clone()),
                source: uri.clone(),
                result: String::new(),
                detail: String::new(),
            };
            let Some(rule) = rule else {
                row.result = "NO RULE".into();
                row.detail = "no inline rule for this issuer (edited by hand?)".into();
                rows.push(row);
                continue;
            };
            let f = fetch::fetch_jwks(uri, &trust, c.fetch).await?;
            let (Some(new), Some(text)) = (f.jwks(), f.inline_jwks()) else {
                failed = true;
                row.result = f.outcome.status();
                row.detail = f.outcome.detail();
                rows.push(row);
                continue;
            };
            let old = rule
                .rule
                .jwks
                .as_deref()
                .and_then(|j| Jwks::parse(j.as_bytes()).ok());
            let same = old.as_ref().is_some_and(|o| {
                let cmp = compare_keys(o, new);
                !cmp.is_stale() && cmp.retired.is_empty()
            });
            if same {
                row.result = "UNCHANGED".into();
                row.detail = kids_text(new);
            } else {
                row.result = if opts.dry_run {
                    "WOULD UPDATE"
                } else {
                    "UPDATED"
                }
                .into();
                row.detail = format!(
                    "{} → {}",
                    old.as_ref()
                        .map(kids_text)
                        .unwrap_or_else(|| "unparsable keys".into()),
                    kids_text(new)
                );
                changes.push((rule.index, text, uri.clone()));
            }
            rows.push(row);
        }
        if changes.is_empty() {
            continue;
        }
        let apply = |pol: &JwtPolicy| -> Result<serde_json::Value, crate::Error> {
            let mut obj = pol.object.clone();
            for (i, text, src) in &changes {
                obj = fix::inline_rule(&obj, pol.kind, *i, text, src, &now)?;
            }
            Ok(obj)
        };
        let new = apply(p)?;
        if opts.dry_run {
            diffs.push_str(&fix::yaml_diff(
                &p.object,
                &new,
                &format!("{} {}", p.kind.resource(), policy_ref(p)),
            ));
            continue;
        }
        if let Err(e) = write_policy(&cluster, p, new, root, apply).await {
            failed = true;
            note(err, &format!("error: {}: {}", p.id(), error_line(&e)));
            for r in rows.iter_mut().filter(|r| {
                r.namespace == p.namespace
                    && r.kind == p.kind
                    && r.policy == p.name
                    && r.result == "UPDATED"
            }) {
                r.result = "FAILED".into();
            }
        }
    }
    rows.sort_by(|a, b| {
        (&a.namespace, &a.policy, a.kind, &a.issuer).cmp(&(
            &b.namespace,
            &b.policy,
            b.kind,
            &b.issuer,
        ))
    });
    if opts.dry_run {
        out.write_all(diffs.as_bytes())
            .map_err(crate::render::Error::Io)?;
        for r in &rows {
            note(
                err,
                &format!(
                    "{} {}/{} {}: {} {}",
                    r.kind.as_str(),
                    r.namespace,
                    r.policy,
                    r.issuer,
                    r.result,
                    r.detail
                ),
            );
        }
    } else {
        write_rows(&rows, &c.render, out)?;
    }
    Ok(if failed {
        ExitStatus::Error
    } else {
        ExitStatus::Success
    })
}
