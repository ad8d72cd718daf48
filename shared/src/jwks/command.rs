//! `kubectl jwks-trust` subcommands: plain options (no clap), the pieces they share (istiod's
//! trust, the sidecars a policy selects, their jwt_authn providers), and `token`.
//! `check` is in `check.rs`; the writing subcommands are in `repair.rs`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use serde::Serialize;

use super::cacerts::{self, BundleSource};
use super::cert::rfc3339;
use super::fetch::{FetchOptions, Trust};
use super::istiod;
use super::model::Jwt;
use super::policy::{JwtPolicy, Scope, label_selector};
use super::provider::providers_in_config_dump;
use super::trust::{ProviderKeys, Rejection, diagnose_token};
use crate::admin::{self, ConfigDumpQuery, Endpoint};
use crate::cluster::{Cluster, ClusterOptions, ProxyPod, Target, TargetKind};
use crate::exit::ExitStatus;
use crate::render::{Cell, RenderOptions, Tabular, Tone, sanitize, write_rows};

pub use super::ca::{AddCaOptions, CaSource, RemoveCaOptions, add_ca, remove_ca};
pub use super::check::{CheckOptions, check};
pub use super::inline::{InlineOptions, RefreshOptions, inline, refresh};

pub use crate::cluster::control_plane::DEFAULT_ISTIO_NAMESPACE;

/// Options every subcommand that talks to the cluster shares.
#[derive(Debug, Clone)]
pub struct CommonOptions {
    /// Cluster access (-n/-A/--context …).
    pub cluster: ClusterOptions,
    /// Output.
    pub render: RenderOptions,
    /// `-i`: istiod's namespace (also Istio's root namespace); `None` = where istiod runs.
    pub istio_namespace: Option<String>,
    /// Fetch limits.
    pub fetch: FetchOptions,
    /// `--ca-file`: more CAs to trust.
    pub ca_files: Vec<PathBuf>,
    /// `-c`: the sidecar container.
    pub container: Option<String>,
    /// `--admin-port`.
    pub admin_port: Option<u16>,
}

/// Seconds since the epoch, now.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Write a note to stderr (sanitized; failures to write stderr are ignored).
pub(crate) fn note(err: &mut dyn Write, text: &str) {
    let _ = writeln!(err, "{}", sanitize(text));
}

/// What istiod trusts, as far as we could read it.
#[derive(Debug, Clone)]
pub struct IstiodTrust {
    /// System roots + extra.pem (+ --ca-file).
    pub trust: Trust,
    /// istiod Deployments found (`namespace/name`), with their bundle source.
    pub deployments: Vec<(String, Option<BundleSource>)>,
    /// The deployments themselves (for logs).
    pub objects: Vec<k8s_openapi::api::apps::v1::Deployment>,
    /// Why istiod's bundle could not be read, if it could not.
    pub unreadable: Option<String>,
}

/// Build the trust istiod has: system roots, the `extra.pem` its Deployment mounts at
/// `/cacerts` (read from the Secret or ConfigMap), and `--ca-file`s. Failing to read istiod
/// (RBAC) is not an error: the result says why and holds the rest.
pub async fn istiod_trust(
    cluster: &Cluster,
    istio_ns: &str,
    ca_files: &[PathBuf],
) -> Result<IstiodTrust, crate::Error> {
    let mut trust = Trust::system();
    for f in ca_files {
        let bytes = crate::input::read(f)?;
        let what = format!("--ca-file {}", f.display());
        super::cert::parse_pem_nonempty(&bytes, &what)?;
        trust.add_pem(&bytes, &what)?;
    }
    let mut out = IstiodTrust {
        trust,
        deployments: vec![],
        objects: vec![],
        unreadable: None,
    };
    let deployments = match istiod::find_istiod(cluster, istio_ns, None).await {
        Ok(d) => d,
        Err(e) => {
            out.unreadable = Some(error_line(&e));
            return Ok(out);
        }
    };
    for d in &deployments {
        let name = d.metadata.name.clone().unwrap_or_default();
        let v = serde_json::to_value(d).unwrap_or_default();
        let source = cacerts::mounted_bundle(&v).map(|(_, s)| s);
        if let Some(src) = &source {
            match istiod::read_bundle(cluster, istio_ns, src).await {
                Ok(Some(pem)) => {
                    let what = format!("extra.pem of {}", src.describe());
                    if let Err(e) = out.trust.add_pem(pem.as_bytes(), &what) {
                        out.unreadable = Some(error_line(&e.into()));
                    }
                }
                Ok(None) => {}
                Err(e) => out.unreadable = Some(error_line(&e)),
            }
        }
        out.deployments.push((format!("{istio_ns}/{name}"), source));
    }
    out.objects = deployments;
    Ok(out)
}

/// An error and its causes on one line.
pub(crate) fn error_line(e: &crate::Error) -> String {
    crate::error::one_line(e)
}

/// The pods with a sidecar that a policy selects.
pub async fn scope_pods(
    cluster: &Cluster,
    policy: &JwtPolicy,
    container: Option<&str>,
    admin_port: Option<u16>,
) -> Result<Vec<ProxyPod>, crate::Error> {
    let ns = policy.namespace.as_str();
    let mut pods: Vec<Pod> = Vec::new();
    match &policy.scope {
        Scope::Namespace => pods = list_pods(cluster, Some(ns), None).await?,
        Scope::Mesh => pods = list_pods(cluster, None, None).await?,
        Scope::Selector { labels, mesh_wide } => {
            let sel = label_selector(labels);
            pods = list_pods(cluster, (!mesh_wide).then_some(ns), Some(&sel)).await?;
        }
        Scope::Gateways { names } => {
            for n in names {
                let sel = format!("gateway.networking.k8s.io/gateway-name={n}");
                pods.extend(list_pods(cluster, Some(ns), Some(&sel)).await?);
            }
        }
        Scope::Services { names } => {
            let api: Api<Service> = Api::namespaced(cluster.client.clone(), ns);
            for n in names {
                let svc = cluster
                    .call(format!("get service {ns}/{n}"), || api.get_opt(n))
                    .await?;
                let sel = svc
                    .and_then(|s| s.spec)
                    .and_then(|s| s.selector)
                    .filter(|s| !s.is_empty());
                if let Some(sel) = sel {
                    pods.extend(list_pods(cluster, Some(ns), Some(&label_selector(&sel))).await?);
                }
            }
        }
    }
    let target = Target {
        kind: TargetKind::All,
        container: container.map(String::from),
        admin_port,
    };
    let mut out: Vec<ProxyPod> = pods
        .into_iter()
        .filter_map(|p| crate::cluster::proxy_pod(p, &target).ok())
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out.dedup_by(|a, b| a.namespace == b.namespace && a.name == b.name);
    Ok(out)
}

async fn list_pods(
    cluster: &Cluster,
    ns: Option<&str>,
    selector: Option<&str>,
) -> Result<Vec<Pod>, crate::Error> {
    Ok(crate::cluster::list_pods(cluster, ns, selector).await?)
}

/// The jwt_authn providers of one Envoy (pod or admin URL).
pub async fn providers_of(
    cluster: Option<&Cluster>,
    endpoint: &Endpoint,
    timeout: Option<Duration>,
) -> Result<Vec<ProviderKeys>, crate::Error> {
    let mut client = admin::open(cluster, endpoint, timeout).await?;
    let bytes = client.config_dump(&ConfigDumpQuery::default()).await?;
    let v: serde_json::Value = crate::input::parse_json(
        std::path::Path::new(&endpoint.label()),
        "Envoy config_dump JSON",
        &bytes,
    )?;
    Ok(providers_in_config_dump(&v))
}

// ---------------------------------------------------------------------------------------------
// token

/// Where `token` reads the sidecar's providers from.
#[derive(Debug, Clone)]
pub enum ProviderSource {
    /// No sidecar: decode and check the time claims only.
    None,
    /// `-f`: a saved config_dump.
    File(PathBuf),
    /// `--admin-url`.
    AdminUrl(String),
    /// `--pod`: through the cluster.
    Pod {
        /// Cluster access.
        cluster: ClusterOptions,
        /// The pod (NAME, pod/NAME, deploy/NAME).
        pod: String,
        /// `-c`.
        container: Option<String>,
        /// `--admin-port`.
        admin_port: Option<u16>,
    },
}

/// `kubectl jwks-trust token`.
#[derive(Clone)]
pub struct TokenOptions {
    /// The token (never logged).
    pub token: String,
    /// The sidecar's providers.
    pub source: ProviderSource,
    /// Output.
    pub render: RenderOptions,
    /// Now, seconds since the epoch.
    pub now: i64,
    /// Admin call timeout.
    pub timeout: Option<Duration>,
}

impl std::fmt::Debug for TokenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The bearer token is a credential: never in logs or debug output.
        f.debug_struct("TokenOptions")
            .field("token", &"<redacted>")
            .field("source", &self.source)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// The result of `token`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenReport {
    /// The JOSE header.
    pub header: super::model::JwtHeader,
    /// The claims.
    pub claims: super::model::Claims,
    /// Which sidecar was asked (pod, URL or file), if any.
    pub sidecar: Option<String>,
    /// Its providers.
    pub providers: Vec<ProviderKeys>,
    /// Why it is rejected (empty: accepted, signature not checked).
    pub rejections: Vec<Rejection>,
    /// `ACCEPTED`, `REJECTED`, or `DECODED` when no sidecar was asked and nothing is wrong.
    pub verdict: String,
    /// Now (RFC 3339), for the expiry column.
    #[serde(skip)]
    pub now: i64,
}

impl Tabular for TokenReport {
    const KIND: &'static str = "TokenDiagnosis";
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["ISSUER", "SUBJECT", "KID", "EXPIRES", "VERDICT", "REASON"];
        if wide {
            h.extend(["ALG", "AUDIENCE", "SIDECAR"]);
        }
        h
    }
    fn row(&self, wide: bool) -> Vec<Cell<'_>> {
        let expires = match self.claims.exp {
            Some(exp) => {
                let d = exp.saturating_sub(self.now);
                if d >= 0 {
                    format!("{} (in {})", rfc3339(exp), human_secs(d))
                } else {
                    format!("{} ({} ago)", rfc3339(exp), human_secs(d.saturating_neg()))
                }
            }
            None => String::new(),
        };
        let tone = match self.verdict.as_str() {
            "REJECTED" => Tone::Bad,
            "ACCEPTED" => Tone::Good,
            _ => Tone::Plain,
        };
        let reason = self
            .rejections
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        let mut r = vec![
            Cell::or_none(self.claims.iss.clone().unwrap_or_default()),
            Cell::or_none(self.claims.sub.clone().unwrap_or_default()),
            Cell::or_none(self.header.kid.clone().unwrap_or_default()),
            Cell::or_none(expires),
            Cell::toned(&self.verdict, tone),
            Cell::or_none(reason),
        ];
        if wide {
            r.push(Cell::or_none(self.header.alg.clone().unwrap_or_default()));
            r.push(Cell::or_none(self.claims.aud.to_vec().join(",")));
            r.push(Cell::or_none(self.sidecar.clone().unwrap_or_default()));
        }
        r
    }
}

/// `3m20s`-style.
pub fn human_secs(s: i64) -> String {
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Decode a token and say why the sidecar rejects it. Exit 1 when rejected.
pub async fn token(
    opts: &TokenOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitStatus, crate::Error> {
    let jwt = Jwt::decode(&opts.token)?;
    let (sidecar, providers) = match &opts.source {
        ProviderSource::None => (None, None),
        ProviderSource::File(path) => {
            let bytes = crate::input::read(path)?;
            let v: serde_json::Value =
                crate::input::parse_json(path, "Envoy config_dump JSON", &bytes)?;
            (
                Some(path.display().to_string()),
                Some(providers_in_config_dump(&v)),
            )
        }
        ProviderSource::AdminUrl(url) => (
            Some(url.clone()),
            Some(providers_of(None, &Endpoint::Url(url.clone()), opts.timeout).await?),
        ),
        ProviderSource::Pod {
            cluster,
            pod,
            container,
            admin_port,
        } => {
            let c = crate::cluster::connect(cluster).await?;
            let target = Target {
                kind: TargetKind::parse(Some(pod), None, false)?,
                container: container.clone(),
                admin_port: *admin_port,
            };
            let resolved = crate::cluster::resolve_pods(&c, &target).await?;
            let Some(p) = resolved.pods.into_iter().next() else {
                return Err(crate::cluster::Error::NoTarget.into());
            };
            let id = p.id();
            let ps = providers_of(Some(&c), &Endpoint::Pod(p), opts.timeout).await?;
            (Some(id), Some(ps))
        }
    };
    let asked = providers.is_some();
    let providers = providers.unwrap_or_default();
    let rejections = if asked {
        diagnose_token(&jwt, &providers, opts.now)
    } else {
        // Without a sidecar only the time claims can be judged.
        diagnose_token(&jwt, &[], opts.now)
            .into_iter()
            .filter(|r| matches!(r, Rejection::Expired { .. } | Rejection::NotYetValid { .. }))
            .collect()
    };
    let verdict = match (rejections.is_empty(), asked) {
        (false, _) => "REJECTED",
        (true, true) => "ACCEPTED",
        (true, false) => "DECODED",
    };
    if asked && providers.is_empty() {
        note(
            err,
            "note: the sidecar has no jwt_authn provider: no RequestAuthentication selects it",
        );
    }
    if !asked {
        note(
            err,
            "note: pass --pod POD, --admin-url URL or -f DUMP to check the keys the sidecar holds",
        );
    }
    if verdict == "ACCEPTED" {
        note(
            err,
            "note: issuer, key id, audience and time match; the signature itself was not checked",
        );
    }
    let report = TokenReport {
        header: jwt.header,
        claims: jwt.claims,
        sidecar,
        providers,
        rejections,
        verdict: verdict.into(),
        now: opts.now,
    };
    write_rows(std::slice::from_ref(&report), &opts.render, out)?;
    Ok(if verdict == "REJECTED" {
        ExitStatus::Negative
    } else {
        ExitStatus::Success
    })
}

impl CommonOptions {
    /// `-i`, else the namespace where the istiod/istio-pilot pods run, else `istio-system`.
    pub async fn istio_namespace(&self, cluster: &Cluster) -> Result<String, crate::Error> {
        Ok(
            crate::cluster::control_plane::istio_namespace(
                cluster,
                self.istio_namespace.as_deref(),
            )
            .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human_secs(5), "5s");
        assert_eq!(human_secs(200), "3m20s");
        assert_eq!(human_secs(7300), "2h1m");
        assert_eq!(human_secs(90_000), "1d1h");
    }

    #[test]
    fn expiry_cell_of_extreme_exp() {
        // Found by fuzzing (shared/fuzz, target jwt): `exp - now` and its negation overflowed.
        for exp in [i64::MIN, i64::MIN + 1, i64::MAX] {
            let jwt = Jwt::decode(&format!(
                "{}.{}.c2ln",
                crate::jwks::model::b64url_encode(br#"{"alg":"RS256"}"#),
                crate::jwks::model::b64url_encode(format!(r#"{{"exp":{exp}}}"#).as_bytes())
            ))
            .unwrap();
            let report = TokenReport {
                header: jwt.header,
                claims: jwt.claims,
                sidecar: None,
                providers: vec![],
                rejections: vec![],
                verdict: "DECODED".into(),
                now: 1_750_000_000,
            };
            let cells = report.row(true);
            assert!(!cells[3].text.is_empty(), "{exp}");
        }
    }
}
