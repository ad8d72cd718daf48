//! JWKS and JWT: models, fetching a `jwksUri` with the trust istiod has, placeholder-key
//! detection, policies (RequestAuthentication, legacy Policy) and their fixes.
//!
//! Pure: `model` (JWKS, JWT), `trust` (placeholders, kids, thumbprints, token verdicts),
//! `provider` (jwt_authn providers of a config_dump), `cert` (PEM, bundles), `fix` (inline a
//! policy rule), `cacerts` (istiod's /cacerts mount). I/O: `fetch` (HTTPS with a given trust),
//! `policy` (RequestAuthentication / legacy Policy), `istiod` (Deployment, bundle, log).
//! Subcommands: `command` (shared pieces, `token`), `check`, `inline` (+ `refresh`), `ca`.

pub mod ca;
pub mod cacerts;
pub mod cert;
pub mod check;
pub mod command;
pub mod fetch;
pub mod fix;
pub mod inline;
pub mod istiod;
pub mod mesh;
pub mod model;
pub mod outcome;
pub mod policy;
pub mod provider;
pub mod report;
pub mod trust;
pub mod verifier;

use std::path::PathBuf;

use crate::error::Hint;

pub use fetch::{FetchOptions, FetchResult, Outcome, Trust};
pub use model::{Jwk, Jwks, Jwt};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The token is not `header.payload.signature`.
    #[error("not a JWT: expected 3 dot-separated parts, found {parts}")]
    TokenFormat {
        /// How many parts it had.
        parts: usize,
    },
    /// A token part is not base64url.
    #[error("the JWT {part} is not base64url")]
    TokenBase64 {
        /// `header` or `payload`.
        part: &'static str,
    },
    /// A token part is not JSON.
    #[error("the JWT {part} is not a JSON object")]
    TokenJson {
        /// `header` or `payload`.
        part: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A PEM file or bundle has no certificate.
    #[error("{what} contains no PEM certificate")]
    NoCertificates {
        /// The file or object.
        what: String,
    },
    /// A certificate in a PEM bundle does not parse.
    #[error("{what} has an unreadable certificate")]
    BadCertificate {
        /// The file or object.
        what: String,
        /// Why.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The TLS client could not be set up.
    #[error("cannot set up TLS for {what}")]
    Tls {
        /// What for.
        what: String,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// The HTTP client could not be set up.
    #[error("cannot set up the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// A URL we cannot use.
    #[error("invalid URL {url:?}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// Fetching the keys failed (the status says why).
    #[error("fetching {uri} failed: {status}: {detail}")]
    Fetch {
        /// The URI.
        uri: String,
        /// `UNTRUSTED CA`, `TIMEOUT`, …
        status: String,
        /// Detail.
        detail: String,
    },
    /// Connecting to a server to capture its chain failed before TLS.
    #[error("cannot capture the certificate chain of {url}: {status}: {detail}")]
    Capture {
        /// The URL.
        url: String,
        /// `UNREACHABLE`, `TIMEOUT`, …
        status: String,
        /// Detail.
        detail: String,
    },
    /// A file with keys is not a JWKS.
    #[error("{} is not a JWKS", path.display())]
    JwksFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A policy object does not have the expected shape.
    #[error("{kind} {namespace}/{name} does not parse")]
    BadPolicy {
        /// Kind.
        kind: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// No policy with that name.
    #[error("no RequestAuthentication or Policy named {name} in namespace {namespace}")]
    PolicyNotFound {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// A policy of the named kind is absent.
    #[error("no {kind} named {name} in namespace {namespace}")]
    KindNotFound {
        /// `RequestAuthentication` or `Policy`.
        kind: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// A `POLICY` argument that is neither `NAME` nor `KIND/NAME`.
    #[error("{given:?} is not NAME or KIND/NAME with KIND requestauthentication or policy")]
    BadPolicyRef {
        /// What was given.
        given: String,
    },
    /// The policy has no rule to inline.
    #[error("{policy} has no JWT rule with a jwksUri{}", issuer.as_ref().map(|i| format!(" for issuer {i}")).unwrap_or_default())]
    NothingToInline {
        /// `kind namespace/name`.
        policy: String,
        /// `--issuer`, if given.
        issuer: Option<String>,
    },
    /// Several rules and no `--issuer` with `--jwks-file`.
    #[error(
        "{policy} has {count} JWT rules with a jwksUri; --jwks-file needs --issuer to pick one"
    )]
    AmbiguousRule {
        /// `kind namespace/name`.
        policy: String,
        /// How many.
        count: usize,
    },
    /// A write conflicted twice.
    #[error("{what} was changed by someone else while we updated it (conflict twice)")]
    Conflict {
        /// `kind namespace/name`.
        what: String,
    },
    /// A serialisation for output or for the apiserver failed.
    #[error("cannot encode {what}")]
    Encode {
        /// What.
        what: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// No istiod Deployment found.
    #[error(
        "no istiod/istio-pilot Deployment (with a container named discovery) in namespace {namespace}"
    )]
    NoIstiod {
        /// Where we looked.
        namespace: String,
    },
    /// Several istiod Deployments (revisions).
    #[error("several istiod Deployments in namespace {namespace}: {}", names.join(", "))]
    ManyIstiod {
        /// Where we looked.
        namespace: String,
        /// Their names.
        names: Vec<String>,
    },
    /// `/cacerts` is mounted from something we don't manage.
    #[error(
        "{deployment}: /cacerts is mounted from {source_desc}, which this command does not change"
    )]
    ForeignMount {
        /// `namespace/name`.
        deployment: String,
        /// e.g. `a projected volume`.
        source_desc: String,
    },
    /// A write needs confirmation and stdin is not a terminal.
    #[error("refusing to change the cluster without confirmation: stdin is not a terminal")]
    NeedsYes,
    /// The user said no.
    #[error("cancelled: nothing was changed")]
    Declined,
    /// Reading the answer failed.
    #[error("cannot read the answer from stdin")]
    Prompt(#[source] std::io::Error),
}

impl Hint for Error {
    fn hint(&self) -> Option<String> {
        match self {
            Error::TokenFormat { .. } | Error::TokenBase64 { .. } | Error::TokenJson { .. } => {
                Some("pass the raw token (the part after \"Bearer \"), or - to read it from stdin".into())
            }
            Error::NoCertificates { .. } | Error::BadCertificate { .. } => Some(
                "pass a PEM file with -----BEGIN CERTIFICATE----- blocks (e.g. from openssl s_client -showcerts)".into(),
            ),
            Error::Fetch { status, .. } if status == "UNTRUSTED CA" => Some(
                "pass the CA with --ca-file, or use --jwks-file with keys you saved yourself".into(),
            ),
            Error::Fetch { status, .. } if status == "TIMEOUT" => {
                Some("raise --fetch-timeout, or check the URI is reachable from here".into())
            }
            Error::Capture { .. } => Some("is HOST:PORT reachable from here? or pass --cert FILE".into()),
            Error::PolicyNotFound { .. } => Some(
                "list them: kubectl get requestauthentications.security.istio.io -A".into(),
            ),
            Error::KindNotFound { kind, namespace, .. } => Some(format!(
                "list them: kubectl get {} -n {namespace}",
                if kind == "Policy" {
                    "policies.authentication.istio.io"
                } else {
                    "requestauthentications.security.istio.io"
                }
            )),
            Error::BadPolicyRef { .. } => Some(
                "name it as kubectl does: NAME (every kind with that name), requestauthentication/NAME or policy/NAME".into(),
            ),
            Error::NothingToInline { .. } => Some(
                "inline works on rules with jwksUri; run kubectl jwks-trust check to see the rules".into(),
            ),
            Error::AmbiguousRule { .. } => Some("add --issuer ISSUER".into()),
            Error::Conflict { .. } => Some("run the command again".into()),
            Error::NoIstiod { .. } => {
                Some("pass -i/--istio-namespace with the control plane's namespace".into())
            }
            Error::ManyIstiod { .. } => Some("pick one with --deployment NAME".into()),
            Error::ForeignMount { .. } => Some(
                "add the CA to that source yourself, or set pilot.jwksResolverExtraRootCA in the install".into(),
            ),
            Error::NeedsYes => Some("review with --dry-run, then pass --yes".into()),
            _ => None,
        }
    }
}
