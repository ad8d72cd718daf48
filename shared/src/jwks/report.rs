//! The rows of `check`, as pure functions: what each sidecar holds for a rule, the status and
//! detail of the rule, and the commands that would fix it.

use std::collections::BTreeMap;

use serde::Serialize;

use super::cert::CertInfo;
use super::command::IstiodTrust;
use super::fetch::{FetchResult, Outcome};
use super::istiod::{has_fetch_error, matching_log_lines};
use super::model::Jwks;
use super::policy::{JwtPolicy, KeySource, PolicyKind};
use super::trust::{HeldKeys, ProviderKeys, compare_keys};
use crate::render::{Cell, Tabular, Tone};

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
    /// Placeholder, stale or invalid keys: tokens are rejected.
    pub fn is_problem(self) -> bool {
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
    fn row(&self, wide: bool) -> Vec<Cell<'_>> {
        let tone = if self.problem {
            Tone::Bad
        } else if self.status == "OK" || self.status == "INLINE" {
            Tone::Good
        } else {
            Tone::Warn
        };
        let mut r = vec![
            Cell::or_none(&self.namespace),
            // kubectl's `kind/name`: a RequestAuthentication and a legacy Policy may share a name
            Cell::plain(format!(
                "{}/{}",
                self.kind.as_str().to_lowercase(),
                self.policy
            )),
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

pub(crate) fn inline_source(
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

pub(crate) fn sidecar_keys(
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

pub(crate) struct RowContext<'a> {
    pub(crate) istio_ns: &'a str,
    pub(crate) istiod: &'a IstiodTrust,
    pub(crate) log: &'a [String],
    pub(crate) ca_files: bool,
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

    pub(crate) fn row(
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

#[cfg(test)]
mod tests {
    use super::*;

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
