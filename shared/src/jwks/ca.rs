//! Fix 2 on the cluster: `add-ca` appends CAs to the bundle istiod reads at
//! `/cacerts/extra.pem` and mounts it in the `discovery` container; `remove-ca` undoes it.
//! Both confirm on a terminal (else need `--yes`), preview with `--dry-run`, and never print
//! the bundle.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use rustls::pki_types::CertificateDer;

use super::Error;
use super::cacerts::{self, BundleSource};
use super::cert::{self, CertInfo};
use super::command::{CommonOptions, note};
use super::fetch::{self, Trust};
use super::fix;
use super::istiod;
use crate::cluster::Cluster;
use crate::exit::ExitStatus;

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

impl Plan {
    /// `--dry-run`: the Deployment change as a diff on `out`, a note on `err`, nothing written.
    fn show_dry_run(
        &self,
        new_dep: &serde_json::Value,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<ExitStatus, crate::Error> {
        let label = format!("deployment.apps {}/{}", self.ns, self.deployment);
        out.write_all(fix::yaml_diff(&self.object, new_dep, &label).as_bytes())
            .map_err(crate::render::Error::Io)?;
        note(err, "dry run: nothing changed");
        Ok(ExitStatus::Success)
    }
}

async fn plan(
    cluster: &Cluster,
    c: &CommonOptions,
    deployment: Option<&str>,
) -> Result<Plan, crate::Error> {
    let ns = c.istio_namespace(cluster).await?;
    let d = istiod::one_istiod(cluster, &ns, deployment).await?;
    let name = d.metadata.name.clone().unwrap_or_default();
    let object = serde_json::to_value(&d).map_err(|source| Error::Encode {
        what: format!("deployment {ns}/{name}"),
        source,
    })?;
    let (target, ours) = match cacerts::mounted_bundle(&object) {
        Some((_, BundleSource::Other { description })) => {
            return Err(Error::ForeignMount {
                deployment: format!("{ns}/{name}"),
                source_desc: description,
            }
            .into());
        }
        Some((vol, src)) => (src, vol == cacerts::VOLUME_NAME),
        None => (
            BundleSource::Secret {
                name: cacerts::SECRET_NAME.into(),
                key: cacerts::BUNDLE_KEY.into(),
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
    if let Some(m) = cacerts::manager_of(object) {
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
    let existing = istiod::read_bundle(&cluster, &pl.ns, &pl.target).await?;
    let existed = existing.is_some();
    let current = existing.unwrap_or_default();
    let what = pl.target.describe();
    let change = cert::append_to_bundle(&current, &certs, &what)?;
    let (new_dep, dep_changed) = cacerts::add_cacerts(
        &pl.object,
        match &pl.target {
            BundleSource::Secret { name, .. } => name,
            _ => cacerts::SECRET_NAME,
        },
        &cacerts::bundle_hash(&change.bundle),
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
                if cacerts::mounted_bundle(&pl.object).is_none() {
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
        return pl.show_dry_run(&new_dep, out, err);
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
    // Nothing half-applied: make sure the Deployment can be updated before writing the bundle.
    istiod::preflight_update_deployment(&cluster, &pl.ns, &pl.deployment).await?;
    let to_add = certs.clone();
    let wrote = istiod::write_bundle(&cluster, &pl.ns, &pl.target, |cur| {
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
    let stored = istiod::read_bundle(&cluster, &pl.ns, &pl.target)
        .await?
        .unwrap_or_default();
    let hash = cacerts::bundle_hash(&stored);
    let secret = match &pl.target {
        BundleSource::Secret { name, .. } => name.clone(),
        _ => cacerts::SECRET_NAME.to_string(),
    };
    let patched = match istiod::update_deployment(&cluster, &pl.ns, &pl.deployment, |d| {
        let (n, changed) = cacerts::add_cacerts(d, &secret, &hash)?;
        Ok(changed.then_some(n))
    })
    .await
    {
        Ok(p) => p,
        Err(e) => {
            // Nothing half-applied: take back what this run added to the bundle.
            if wrote {
                let present = cert::parse_pem(current.as_bytes(), &what)?;
                let added: Vec<CertificateDer<'static>> = certs
                    .iter()
                    .filter(|c| !present.iter().any(|p| p.as_ref() == c.as_ref()))
                    .cloned()
                    .collect();
                let undo = Undo {
                    ns: &pl.ns,
                    target: &pl.target,
                    what: &what,
                    added: &added,
                    created: !existed && pl.ours,
                };
                match undo_bundle(&cluster, &undo).await {
                    Ok(()) => note(
                        err,
                        &format!(
                            "rolled back: the certificate(s) added to {what} were removed again; nothing is changed"
                        ),
                    ),
                    Err(re) => note(
                        err,
                        &format!(
                            "warning: {what} keeps the added certificate(s): taking them back failed too ({}); remove them with: kubectl jwks-trust remove-ca --cert FILE -n {}",
                            crate::render::sanitize(&re.to_string()),
                            pl.ns
                        ),
                    ),
                }
            }
            return Err(e);
        }
    };
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

/// What [`undo_bundle`] takes back.
struct Undo<'a> {
    ns: &'a str,
    target: &'a BundleSource,
    what: &'a str,
    /// The certificates this run added (not those that were there before).
    added: &'a [CertificateDer<'static>],
    /// The run created our Secret: delete it when nothing else is left in it.
    created: bool,
}

/// Remove the certificates this run added to the bundle (re-reading it with resourceVersion,
/// so a concurrent writer's certificates stay), and our Secret if this run created it.
async fn undo_bundle(cluster: &Cluster, u: &Undo<'_>) -> Result<(), crate::Error> {
    istiod::write_bundle(cluster, u.ns, u.target, |cur| {
        let ch = cert::remove_from_bundle(cur, u.added, u.what)?;
        Ok((!ch.is_noop()).then_some(ch.bundle))
    })
    .await?;
    if u.created
        && let BundleSource::Secret { name, .. } = u.target
    {
        let left = istiod::read_bundle(cluster, u.ns, u.target)
            .await?
            .unwrap_or_default();
        if cert::parse_pem(left.as_bytes(), u.what)?.is_empty() {
            istiod::delete_secret(cluster, u.ns, name).await?;
        }
    }
    Ok(())
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
    let mounted = cacerts::mounted_bundle(&pl.object).is_some();
    let current = istiod::read_bundle(&cluster, &pl.ns, &pl.target).await?;
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
        cacerts::remove_cacerts(&pl.object).0
    } else {
        let mut d = pl.object.clone();
        let b = new_bundle.clone().unwrap_or_default();
        cacerts::set_template_annotation(
            &mut d,
            cacerts::HASH_ANNOTATION,
            Some(&cacerts::bundle_hash(&b)),
        );
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
        return pl.show_dry_run(&new_dep, out, err);
    }
    confirm("Proceed?", opts.yes, opts.interactive, err, input)?;
    if remove_all {
        let patched = istiod::update_deployment(&cluster, &pl.ns, &pl.deployment, |d| {
            let (n, changed) = cacerts::remove_cacerts(d);
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
            && istiod::delete_secret(&cluster, &pl.ns, name).await?
        {
            note(err, &format!("secret/{name} deleted from {}", pl.ns));
        }
    } else if let (Some(path), Some(_)) = (&opts.cert, &new_bundle) {
        let bytes = crate::input::read(path)?;
        let certs = cert::parse_pem_nonempty(&bytes, &path.display().to_string())?;
        // Nothing half-applied: make sure the Deployment can be updated before changing the bundle.
        istiod::preflight_update_deployment(&cluster, &pl.ns, &pl.deployment).await?;
        istiod::write_bundle(&cluster, &pl.ns, &pl.target, |cur| {
            let ch = cert::remove_from_bundle(cur, &certs, &what)?;
            Ok((!ch.is_noop()).then_some(ch.bundle))
        })
        .await?;
        let stored = istiod::read_bundle(&cluster, &pl.ns, &pl.target)
            .await?
            .unwrap_or_default();
        let hash = cacerts::bundle_hash(&stored);
        let updated = istiod::update_deployment(&cluster, &pl.ns, &pl.deployment, |d| {
            let mut n = d.clone();
            cacerts::set_template_annotation(&mut n, cacerts::HASH_ANNOTATION, Some(&hash));
            Ok((n != *d).then_some(n))
        })
        .await;
        if let Err(e) = updated {
            // istiod would keep trusting the removed CA until some later restart: put back the
            // certificates that were there.
            let present = cert::parse_pem(current.as_deref().unwrap_or("").as_bytes(), &what)?;
            let removed: Vec<CertificateDer<'static>> = certs
                .iter()
                .filter(|c| present.iter().any(|p| p.as_ref() == c.as_ref()))
                .cloned()
                .collect();
            let restored = istiod::write_bundle(&cluster, &pl.ns, &pl.target, |cur| {
                let ch = cert::append_to_bundle(cur, &removed, &what)?;
                Ok((!ch.is_noop()).then_some(ch.bundle))
            })
            .await;
            match restored {
                Ok(_) => note(
                    err,
                    &format!(
                        "rolled back: the certificate(s) were put back into {what}; nothing is changed"
                    ),
                ),
                Err(re) => note(
                    err,
                    &format!(
                        "warning: {what} no longer has the certificate(s) but istiod was not restarted, and putting them back failed too ({}); restart it with: kubectl rollout restart {dep_label}",
                        crate::render::sanitize(&re.to_string())
                    ),
                ),
            }
            return Err(e);
        }
        note(err, &format!("{what} updated; {dep_label} is restarting"));
    }
    Ok(ExitStatus::Success)
}
