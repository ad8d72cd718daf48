//! The writing subcommands: `inline`, `refresh` (fix 1) and `add-ca`, `remove-ca` (fix 2).
//! Every write is a read–modify–write with resourceVersion, previewable with `--dry-run`, and
//! reported on stderr. Secret contents are never printed.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use rustls::pki_types::CertificateDer;
use serde::Serialize;

use super::Error;
use super::cert::{self, CertInfo, rfc3339};
use super::command::{CommonOptions, error_line, istiod_trust, note, now_unix};
use super::fetch::{self, FetchResult, Trust};
use super::fix::{self, BundleSource, SOURCE_ANNOTATION};
use super::model::Jwks;
use super::policy::{self, JwtPolicy, KeySource, PolicyKind, RuleAt};
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

/// Where add-ca gets the certificates.
#[derive(Debug, Clone)]
pub enum CaSource {
    /// `--cert FILE`.
    File(PathBuf),
    /// `--from-url https://HOST[:PORT]`: the chain the server presents.
    Url(String),
}

/// `kubectl jwks-trust add-ca`.
#[derive(Debug, Clone)]
pub struct AddCaOptions {
    /// Shared options.
    pub common: CommonOptions,
    /// The certificates.
    pub source: CaSource,
    /// `--deployment`: which istiod (several revisions).
    pub deployment: Option<String>,
    /// Print the change, write nothing.
    pub dry_run: bool,
    /// `--yes`: no confirmation.
    pub yes: bool,
    /// stdin is a terminal (we may ask).
    pub interactive: bool,
}

/// `kubectl jwks-trust remove-ca`.
#[derive(Debug, Clone)]
pub struct RemoveCaOptions {
    /// Shared options.
    pub common: CommonOptions,
    /// `--cert FILE`: remove only these certificates.
    pub cert: Option<PathBuf>,
    /// `--deployment`.
    pub deployment: Option<String>,
    /// Print the change, write nothing.
    pub dry_run: bool,
    /// `--yes`.
    pub yes: bool,
    /// stdin is a terminal.
    pub interactive: bool,
}

async fn trust_for_fetch(
    cluster: &Cluster,
    c: &CommonOptions,
    err: &mut dyn Write,
) -> Result<Trust, crate::Error> {
    let t = istiod_trust(cluster, &c.istio_namespace, &c.ca_files).await?;
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
    let root = c.istio_namespace.as_str();
    let ns = cluster.namespace.clone();
    let p = policy::get(&cluster, &ns, &opts.policy, root).await?;
    let rules: Vec<RuleAt> = p
        .rules
        .iter()
        .filter(|r| r.rule.source() != KeySource::Inline)
        .filter(|r| opts.issuer.as_ref().is_none_or(|i| *i == r.rule.issuer))
        .cloned()
        .collect();
    if rules.is_empty() {
        return Err(Error::NothingToInline {
            policy: p.id(),
            issuer: opts.issuer.clone(),
        }
        .into());
    }
    let now = rfc3339(now_unix());
    // (rule index, inline JSON, source URI, description)
    let mut changes: Vec<(usize, String, String, String)> = Vec::new();
    if let Some(path) = &opts.jwks_file {
        if rules.len() > 1 {
            return Err(Error::AmbiguousRule {
                policy: p.id(),
                count: rules.len(),
            }
            .into());
        }
        let bytes = crate::input::read(path)?;
        let jwks = Jwks::parse(&bytes).map_err(|source| Error::JwksFile {
            path: path.clone(),
            source,
        })?;
        let text = serde_json::from_slice::<serde_json::Value>(&bytes)
            .map(|v| v.to_string())
            .map_err(|source| Error::JwksFile {
                path: path.clone(),
                source,
            })?;
        let r = &rules[0];
        let source = match r.rule.source() {
            KeySource::Uri(u) => u,
            _ => format!(
                "{}/.well-known/openid-configuration",
                r.rule.issuer.trim_end_matches('/')
            ),
        };
        changes.push((
            r.index,
            text,
            source,
            format!(
                "{} key(s) ({}) from {}",
                jwks.keys.len(),
                kids_text(&jwks),
                path.display()
            ),
        ));
    } else {
        let trust = trust_for_fetch(&cluster, c, err).await?;
        for r in &rules {
            let f = fetch_rule(r, &trust, c).await?;
            let Some(text) = f.inline_jwks() else {
                return Err(f.into_error().into());
            };
            let desc = match f.jwks() {
                Some(j) => format!("{} key(s) ({}) from {}", j.keys.len(), kids_text(j), f.uri),
                None => format!("keys from {}", f.uri),
            };
            changes.push((r.index, text, f.uri.clone(), desc));
        }
    }
    let apply = |pol: &JwtPolicy| -> Result<serde_json::Value, crate::Error> {
        let mut obj = pol.object.clone();
        for (i, text, src, _) in &changes {
            obj = fix::inline_rule(&obj, pol.kind, *i, text, src, &now)?;
        }
        Ok(obj)
    };
    let new = apply(&p)?;
    let label = format!("{} {}", p.kind.resource(), policy_ref(&p));
    if opts.dry_run {
        out.write_all(fix::yaml_diff(&p.object, &new, &label).as_bytes())
            .map_err(crate::render::Error::Io)?;
        note(err, &format!("dry run: {label} not changed"));
        return Ok(ExitStatus::Success);
    }
    write_policy(&cluster, &p, new, root, apply).await?;
    for (i, _, _, desc) in &changes {
        note(
            err,
            &format!("{label}: rule {i}: jwksUri replaced by {desc}"),
        );
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
    if p.kind != PolicyKind::RequestAuthentication {
        note(
            err,
            "note: inline jwks in the legacy Policy needs Istio ≥1.3 (1.1/1.2 ignore it)",
        );
    }
    Ok(ExitStatus::Success)
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
    fn row(&self, _wide: bool) -> Vec<Cell> {
        let tone = match self.result.as_str() {
            "UNCHANGED" => Tone::Plain,
            "UPDATED" | "WOULD UPDATE" => Tone::Good,
            _ => Tone::Bad,
        };
        vec![
            Cell::or_none(&self.namespace),
            Cell::plain(&self.policy),
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
    let root = c.istio_namespace.as_str();
    let scope = (!cluster.all_namespaces).then(|| cluster.namespace.clone());
    let mut policies = Vec::new();
    for kind in [PolicyKind::RequestAuthentication, PolicyKind::Policy] {
        policies.extend(policy::list(&cluster, kind, scope.as_deref(), root).await?);
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
                r.namespace == p.namespace && r.policy == p.name && r.result == "UPDATED"
            }) {
                r.result = "FAILED".into();
            }
        }
    }
    rows.sort_by(|a, b| {
        (&a.namespace, &a.policy, &a.issuer).cmp(&(&b.namespace, &b.policy, &b.issuer))
    });
    if opts.dry_run {
        out.write_all(diffs.as_bytes())
            .map_err(crate::render::Error::Io)?;
        for r in &rows {
            note(
                err,
                &format!(
                    "{}/{} {}: {} {}",
                    r.namespace, r.policy, r.issuer, r.result, r.detail
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

// ---------------------------------------------------------------------------------------------
// add-ca / remove-ca

fn show_chain(err: &mut dyn Write, chain: &[CertInfo]) {
    note(err, "Certificate chain");
    for (i, c) in chain.iter().enumerate() {
        note(err, &format!(" {i} s:{}", c.subject));
        note(err, &format!("   i:{}", c.issuer));
        note(
            err,
            &format!(
                "   v:NotBefore: {}; NotAfter: {}{}",
                c.not_before,
                c.not_after,
                if c.is_ca { "; CA" } else { "" }
            ),
        );
    }
}

fn confirm(
    question: &str,
    yes: bool,
    interactive: bool,
    err: &mut dyn Write,
    input: &mut dyn BufRead,
) -> Result<(), crate::Error> {
    if yes {
        return Ok(());
    }
    if !interactive {
        return Err(Error::NeedsYes.into());
    }
    let _ = write!(err, "{question} [y/N] ");
    let _ = err.flush();
    let mut line = String::new();
    input.read_line(&mut line).map_err(Error::Prompt)?;
    match line.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(Error::Declined.into()),
    }
}

struct Plan {
    ns: String,
    deployment: String,
    object: serde_json::Value,
    target: BundleSource,
    ours: bool,
}

async fn plan(
    cluster: &Cluster,
    c: &CommonOptions,
    deployment: Option<&str>,
) -> Result<Plan, crate::Error> {
    let ns = c.istio_namespace.clone();
    let d = fix::one_istiod(cluster, &ns, deployment).await?;
    let name = d.metadata.name.clone().unwrap_or_default();
    let object = serde_json::to_value(&d).map_err(|source| Error::Encode {
        what: format!("deployment {ns}/{name}"),
        source,
    })?;
    let (target, ours) = match fix::mounted_bundle(&object) {
        Some((_, BundleSource::Other { description })) => {
            return Err(Error::ForeignMount {
                deployment: format!("{ns}/{name}"),
                source_desc: description,
            }
            .into());
        }
        Some((vol, src)) => (src, vol == fix::VOLUME_NAME),
        None => (
            BundleSource::Secret {
                name: fix::SECRET_NAME.into(),
                key: fix::BUNDLE_KEY.into(),
            },
            true,
        ),
    };
    Ok(Plan {
        ns,
        deployment: name,
        object,
        target,
        ours,
    })
}

fn warn_manager(err: &mut dyn Write, object: &serde_json::Value) {
    if let Some(m) = fix::manager_of(object) {
        note(
            err,
            &format!(
                "warning: this Deployment is managed by {}: an update or reconcile may revert this change.",
                m.name()
            ),
        );
        note(
            err,
            &format!("  to make it permanent: {}", m.permanent_setting()),
        );
    }
}

/// Fix 2: give istiod the CA.
pub async fn add_ca(
    opts: &AddCaOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
    input: &mut dyn BufRead,
) -> Result<ExitStatus, crate::Error> {
    let c = &opts.common;
    let certs: Vec<CertificateDer<'static>> = match &opts.source {
        CaSource::File(path) => {
            let bytes = crate::input::read(path)?;
            let certs = cert::parse_pem_nonempty(&bytes, &path.display().to_string())?;
            let infos: Vec<CertInfo> = certs.iter().filter_map(|c| CertInfo::from_der(c)).collect();
            show_chain(err, &infos);
            certs
        }
        CaSource::Url(url) => {
            let r = fetch::capture_chain(url, &Trust::system(), c.fetch).await?;
            show_chain(err, &r.chain);
            if r.outcome.is_ok() {
                note(
                    err,
                    "note: this machine's system roots already trust this chain; istiod's (Go's system pool) probably does too",
                );
            } else {
                note(
                    err,
                    &format!(
                        "verification here: {}: {}",
                        r.outcome.status(),
                        r.outcome.detail()
                    ),
                );
            }
            let anchors = fetch::anchors_of(&r.chain_der);
            if anchors.len() == 1 && anchors[0] == r.chain_der[0] {
                note(
                    err,
                    "warning: the server presents no CA certificate: adding its own certificate, which must be re-added when it is renewed",
                );
            }
            anchors
        }
    };
    let cluster = crate::cluster::connect(&c.cluster).await?;
    let pl = plan(&cluster, c, opts.deployment.as_deref()).await?;
    let current = fix::read_bundle(&cluster, &pl.ns, &pl.target)
        .await?
        .unwrap_or_default();
    let what = pl.target.describe();
    let change = cert::append_to_bundle(&current, &certs, &what)?;
    let (new_dep, dep_changed) = fix::add_cacerts(
        &pl.object,
        match &pl.target {
            BundleSource::Secret { name, .. } => name,
            _ => fix::SECRET_NAME,
        },
        &fix::bundle_hash(&change.bundle),
    )?;
    for s in &change.skipped {
        note(err, &format!("already in {what}: {}", s.subject));
    }
    for a in &change.changed {
        note(
            err,
            &format!(
                "to add to {what}: {} (notAfter {}, sha256 {})",
                a.subject, a.not_after, a.sha256
            ),
        );
    }
    let dep_label = format!("deployment.apps/{} -n {}", pl.deployment, pl.ns);
    if change.is_noop() && !dep_changed {
        note(
            err,
            &format!(
                "nothing to do: the certificates are in {what}, mounted at /cacerts of {dep_label}"
            ),
        );
        return Ok(ExitStatus::Success);
    }
    if dep_changed {
        note(
            err,
            &format!(
                "to patch {dep_label}: {}istiod restarts, as it reads /cacerts/extra.pem only at start",
                if fix::mounted_bundle(&pl.object).is_none() {
                    format!("mount {what} at /cacerts in container discovery; ")
                } else {
                    String::new()
                }
            ),
        );
    }
    warn_manager(err, &pl.object);
    if !pl.ours {
        note(
            err,
            &format!("note: /cacerts already comes from {what}: appending to it"),
        );
    }
    if opts.dry_run {
        out.write_all(
            fix::yaml_diff(
                &pl.object,
                &new_dep,
                &format!("deployment.apps {}/{}", pl.ns, pl.deployment),
            )
            .as_bytes(),
        )
        .map_err(crate::render::Error::Io)?;
        note(err, "dry run: nothing changed");
        return Ok(ExitStatus::Success);
    }
    confirm(
        &format!(
            "Add {} certificate(s) to {what} and restart istiod?",
            change.changed.len()
        ),
        opts.yes,
        opts.interactive,
        err,
        input,
    )?;
    let to_add = certs.clone();
    let wrote = fix::write_bundle(&cluster, &pl.ns, &pl.target, |cur| {
        let ch = cert::append_to_bundle(cur, &to_add, &what)?;
        Ok((!ch.is_noop()).then_some(ch.bundle))
    })
    .await?;
    if wrote {
        note(
            err,
            &format!(
                "{what} in {}: {} certificate(s) added",
                pl.ns,
                change.changed.len()
            ),
        );
    }
    // Hash of what is now stored (re-read: a concurrent writer may have added more).
    let stored = fix::read_bundle(&cluster, &pl.ns, &pl.target)
        .await?
        .unwrap_or_default();
    let hash = fix::bundle_hash(&stored);
    let secret = match &pl.target {
        BundleSource::Secret { name, .. } => name.clone(),
        _ => fix::SECRET_NAME.to_string(),
    };
    let patched = fix::update_deployment(&cluster, &pl.ns, &pl.deployment, |d| {
        let (n, changed) = fix::add_cacerts(d, &secret, &hash)?;
        Ok(changed.then_some(n))
    })
    .await?;
    if patched {
        note(
            err,
            &format!(
                "{dep_label} patched: istiod is restarting to read the new bundle (kubectl rollout status {dep_label})"
            ),
        );
    }
    Ok(ExitStatus::Success)
}

/// Undo add-ca.
pub async fn remove_ca(
    opts: &RemoveCaOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
    input: &mut dyn BufRead,
) -> Result<ExitStatus, crate::Error> {
    let c = &opts.common;
    let cluster = crate::cluster::connect(&c.cluster).await?;
    let pl = plan(&cluster, c, opts.deployment.as_deref()).await?;
    let what = pl.target.describe();
    let dep_label = format!("deployment.apps/{} -n {}", pl.deployment, pl.ns);
    let mounted = fix::mounted_bundle(&pl.object).is_some();
    let current = fix::read_bundle(&cluster, &pl.ns, &pl.target).await?;
    // What to do with the bundle and with the Deployment.
    let (new_bundle, remove_all) = match &opts.cert {
        Some(path) => {
            let bytes = crate::input::read(path)?;
            let certs = cert::parse_pem_nonempty(&bytes, &path.display().to_string())?;
            let ch = cert::remove_from_bundle(current.as_deref().unwrap_or(""), &certs, &what)?;
            for s in &ch.skipped {
                note(err, &format!("not in {what}: {}", s.subject));
            }
            for s in &ch.changed {
                note(err, &format!("to remove from {what}: {}", s.subject));
            }
            if ch.is_noop() {
                note(err, "nothing to do");
                return Ok(ExitStatus::Success);
            }
            let empty = cert::parse_pem(ch.bundle.as_bytes(), &what)?.is_empty();
            (Some(ch.bundle), empty && pl.ours)
        }
        None => {
            if !pl.ours {
                return Err(Error::ForeignMount {
                    deployment: format!("{}/{}", pl.ns, pl.deployment),
                    source_desc: what,
                }
                .into());
            }
            (None, true)
        }
    };
    if remove_all && !mounted && current.is_none() {
        note(
            err,
            &format!("nothing to do: no {what} and nothing mounted at /cacerts of {dep_label}"),
        );
        return Ok(ExitStatus::Success);
    }
    let new_dep = if remove_all {
        fix::remove_cacerts(&pl.object).0
    } else {
        let mut d = pl.object.clone();
        let b = new_bundle.clone().unwrap_or_default();
        fix::set_template_annotation(&mut d, fix::HASH_ANNOTATION, Some(&fix::bundle_hash(&b)));
        d
    };
    if remove_all {
        note(
            err,
            &format!(
                "to remove the /cacerts mount from {dep_label} (istiod restarts) and delete {what}"
            ),
        );
    } else {
        note(
            err,
            &format!("to update {what} and restart istiod ({dep_label})"),
        );
    }
    warn_manager(err, &pl.object);
    if opts.dry_run {
        out.write_all(
            fix::yaml_diff(
                &pl.object,
                &new_dep,
                &format!("deployment.apps {}/{}", pl.ns, pl.deployment),
            )
            .as_bytes(),
        )
        .map_err(crate::render::Error::Io)?;
        note(err, "dry run: nothing changed");
        return Ok(ExitStatus::Success);
    }
    confirm("Proceed?", opts.yes, opts.interactive, err, input)?;
    if remove_all {
        let patched = fix::update_deployment(&cluster, &pl.ns, &pl.deployment, |d| {
            let (n, changed) = fix::remove_cacerts(d);
            Ok(changed.then_some(n))
        })
        .await?;
        if patched {
            note(
                err,
                &format!("{dep_label} patched: /cacerts mount removed, istiod is restarting"),
            );
        }
        if let BundleSource::Secret { name, .. } = &pl.target
            && fix::delete_secret(&cluster, &pl.ns, name).await?
        {
            note(err, &format!("secret/{name} deleted from {}", pl.ns));
        }
    } else if let (Some(path), Some(_)) = (&opts.cert, &new_bundle) {
        let bytes = crate::input::read(path)?;
        let certs = cert::parse_pem_nonempty(&bytes, &path.display().to_string())?;
        fix::write_bundle(&cluster, &pl.ns, &pl.target, |cur| {
            let ch = cert::remove_from_bundle(cur, &certs, &what)?;
            Ok((!ch.is_noop()).then_some(ch.bundle))
        })
        .await?;
        let stored = fix::read_bundle(&cluster, &pl.ns, &pl.target)
            .await?
            .unwrap_or_default();
        let hash = fix::bundle_hash(&stored);
        fix::update_deployment(&cluster, &pl.ns, &pl.deployment, |d| {
            let mut n = d.clone();
            fix::set_template_annotation(&mut n, fix::HASH_ANNOTATION, Some(&hash));
            Ok((n != *d).then_some(n))
        })
        .await?;
        note(err, &format!("{what} updated; {dep_label} is restarting"));
    }
    Ok(ExitStatus::Success)
}
