//! How a fetch ended ([`Outcome`], shown as the STATUS and DETAIL columns), the result of a
//! fetch with the chain the server presented, and the classification of TLS failures.

use rustls::CertificateError;
use rustls::pki_types::CertificateDer;
use serde::Serialize;

use super::Error;
use super::cert::CertInfo;
use super::model::Jwks;

/// How a fetch ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum Outcome {
    /// A JWKS was fetched.
    Ok {
        /// The keys.
        jwks: Jwks,
        /// The body as fetched.
        #[serde(skip)]
        body: Vec<u8>,
    },
    /// The chain does not end at a trusted CA.
    UntrustedCa {
        /// CN of the issuer at the top of the presented chain.
        issuer: String,
    },
    /// The certificate is not valid for the host.
    HostnameMismatch {
        /// The host of the URI.
        host: String,
        /// The names the certificate is valid for.
        names: Vec<String>,
    },
    /// A certificate of the chain is expired (or not yet valid).
    Expired {
        /// Subject CN of the certificate.
        subject: String,
        /// Its notAfter (or notBefore when not yet valid).
        not_after: String,
        /// True when it is not valid yet rather than expired.
        not_yet_valid: bool,
    },
    /// Another TLS failure.
    TlsError {
        /// What rustls said.
        reason: String,
    },
    /// A status other than 200.
    Http {
        /// The status code.
        code: u16,
    },
    /// The body is not a JWKS.
    NotAJwks {
        /// Why.
        reason: String,
    },
    /// The body is larger than the cap.
    TooLarge {
        /// The cap in bytes.
        limit: usize,
    },
    /// Too many redirects, or a loop.
    TooManyRedirects {
        /// The limit.
        limit: usize,
        /// A URL came back.
        looped: bool,
    },
    /// Connection refused, DNS failure, reset.
    Unreachable {
        /// Why.
        reason: String,
    },
    /// No answer within the timeout.
    Timeout {
        /// The timeout, ms.
        after_ms: u64,
    },
    /// The URI cannot be fetched at all.
    BadUri {
        /// Why.
        reason: String,
    },
}

impl Outcome {
    /// The STATUS column: `OK`, `UNTRUSTED CA`, `HTTP 404`, …
    pub fn status(&self) -> String {
        match self {
            Outcome::Ok { .. } => "OK".into(),
            Outcome::UntrustedCa { .. } => "UNTRUSTED CA".into(),
            Outcome::HostnameMismatch { .. } => "HOSTNAME MISMATCH".into(),
            Outcome::Expired {
                not_yet_valid: false,
                ..
            } => "EXPIRED".into(),
            Outcome::Expired { .. } => "NOT YET VALID".into(),
            Outcome::TlsError { .. } => "TLS ERROR".into(),
            Outcome::Http { code } => format!("HTTP {code}"),
            Outcome::NotAJwks { .. } => "NOT A JWKS".into(),
            Outcome::TooLarge { .. } => "TOO LARGE".into(),
            Outcome::TooManyRedirects { .. } => "TOO MANY REDIRECTS".into(),
            Outcome::Unreachable { .. } => "UNREACHABLE".into(),
            Outcome::Timeout { .. } => "TIMEOUT".into(),
            Outcome::BadUri { .. } => "BAD URI".into(),
        }
    }

    /// The DETAIL column.
    pub fn detail(&self) -> String {
        match self {
            Outcome::Ok { jwks, .. } => {
                let kids = jwks.kids();
                format!(
                    "{} key{}{}",
                    jwks.keys.len(),
                    if jwks.keys.len() == 1 { "" } else { "s" },
                    if kids.is_empty() {
                        String::new()
                    } else {
                        format!(" (kid {})", kids.join(", "))
                    }
                )
            }
            Outcome::UntrustedCa { issuer } => format!(
                "certificate signed by unknown authority: chain issued by {issuer:?}, not in the trusted roots"
            ),
            Outcome::HostnameMismatch { host, names } => format!(
                "certificate is valid for {}, not {host}",
                if names.is_empty() {
                    "no DNS name".to_string()
                } else {
                    names.join(", ")
                }
            ),
            Outcome::Expired {
                subject,
                not_after,
                not_yet_valid,
            } => {
                if *not_yet_valid {
                    format!("certificate {subject:?} is not valid before {not_after}")
                } else {
                    format!("certificate {subject:?} expired at {not_after}")
                }
            }
            Outcome::TlsError { reason } => reason.clone(),
            Outcome::Http { code } => format!("the server answered {code}"),
            Outcome::NotAJwks { reason } => reason.clone(),
            Outcome::TooLarge { limit } => format!("response larger than {} KiB", limit / 1024),
            Outcome::TooManyRedirects { limit, looped } => {
                if *looped {
                    format!("redirect loop (stopped after at most {limit} redirects)")
                } else {
                    format!("more than {limit} redirects")
                }
            }
            Outcome::Unreachable { reason } => reason.clone(),
            Outcome::Timeout { after_ms } => {
                format!("no answer within {}", human_ms(*after_ms))
            }
            Outcome::BadUri { reason } => reason.clone(),
        }
    }

    /// True for `OK`.
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok { .. })
    }

    /// True for failures a CA in the trust would fix.
    pub fn is_untrusted(&self) -> bool {
        matches!(self, Outcome::UntrustedCa { .. })
    }
}

fn human_ms(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A fetch: where, how it ended, and the chain the server presented (last handshake).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchResult {
    /// The URI fetched (the JWKS URI found by OIDC discovery, when discovery was used).
    pub uri: String,
    /// How it ended.
    pub outcome: Outcome,
    /// The presented certificate chain (empty for http or before TLS).
    pub chain: Vec<CertInfo>,
    /// The chain as DER (for add-ca).
    #[serde(skip)]
    pub chain_der: Vec<CertificateDer<'static>>,
}

impl FetchResult {
    /// The fetched body as an inline `jwks` string: compact JSON with every public member
    /// kept and private key material removed (see [`public_jwks`]).
    pub fn inline_jwks(&self) -> Option<String> {
        match &self.outcome {
            Outcome::Ok { body, .. } => public_jwks(body).ok().map(|(s, _)| s),
            _ => None,
        }
    }

    /// The keys, when the fetch worked.
    pub fn jwks(&self) -> Option<&Jwks> {
        match &self.outcome {
            Outcome::Ok { jwks, .. } => Some(jwks),
            _ => None,
        }
    }

    /// The fetch as an error (for commands that need the keys).
    pub fn into_error(self) -> Error {
        Error::Fetch {
            status: self.outcome.status(),
            detail: self.outcome.detail(),
            uri: self.uri,
        }
    }
}

/// Members of a JWK that are private key material (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A JWKS document as compact JSON without private key material, and the names of the members
/// removed (a JWKS URI should serve public keys only; istiod's own FakeJwks had a private key).
pub fn public_jwks(body: &[u8]) -> Result<(String, Vec<String>), serde_json::Error> {
    let mut v: serde_json::Value = serde_json::from_slice(body)?;
    let mut removed = Vec::new();
    if let Some(keys) = v.get_mut("keys").and_then(|k| k.as_array_mut()) {
        for k in keys.iter_mut().filter_map(|k| k.as_object_mut()) {
            for m in PRIVATE_MEMBERS {
                if k.remove(*m).is_some() && !removed.iter().any(|r| r == m) {
                    removed.push((*m).to_string());
                }
            }
        }
    }
    Ok((v.to_string(), removed))
}

/// Turn a failed certificate verification into an outcome, naming the chain's issuer.
pub(crate) fn classify_tls(
    err: &rustls::Error,
    chain: &[CertInfo],
    host: &str,
    now: i64,
) -> Outcome {
    let rustls::Error::InvalidCertificate(ce) = err else {
        return Outcome::TlsError {
            reason: err.to_string(),
        };
    };
    match ce {
        CertificateError::UnknownIssuer => Outcome::UntrustedCa {
            issuer: chain
                .last()
                .map(|c| c.issuer_cn.clone())
                .unwrap_or_else(|| "<no certificate>".into()),
        },
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            Outcome::HostnameMismatch {
                host: host.to_string(),
                names: chain.first().map(|c| c.names.clone()).unwrap_or_default(),
            }
        }
        CertificateError::Expired
        | CertificateError::ExpiredContext { .. }
        | CertificateError::NotValidYet
        | CertificateError::NotValidYetContext { .. } => {
            let not_yet_valid = matches!(
                ce,
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. }
            );
            let bad = chain.iter().find(|c| {
                if not_yet_valid {
                    c.not_before_unix > now
                } else {
                    c.not_after_unix < now
                }
            });
            Outcome::Expired {
                subject: bad.map(|c| c.subject_cn.clone()).unwrap_or_default(),
                not_after: bad
                    .map(|c| {
                        if not_yet_valid {
                            c.not_before.clone()
                        } else {
                            c.not_after.clone()
                        }
                    })
                    .unwrap_or_default(),
                not_yet_valid,
            }
        }
        other => Outcome::TlsError {
            reason: format!("invalid peer certificate: {other}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(Outcome::Http { code: 404 }.status(), "HTTP 404");
        assert_eq!(
            Outcome::UntrustedCa {
                issuer: "Olaf Private Root CA".into()
            }
            .detail(),
            "certificate signed by unknown authority: chain issued by \"Olaf Private Root CA\", not in the trusted roots"
        );
        assert_eq!(
            Outcome::Timeout { after_ms: 5000 }.detail(),
            "no answer within 5s"
        );
    }

    #[test]
    fn private_members_are_never_inlined() {
        let body = br#"{"keys":[{"kty":"RSA","kid":"a","n":"n","e":"AQAB","d":"SECRET","p":"x","x5c":["c"]}]}"#;
        let (s, removed) = public_jwks(body).unwrap();
        assert_eq!(
            s,
            r#"{"keys":[{"e":"AQAB","kid":"a","kty":"RSA","n":"n","x5c":["c"]}]}"#
        );
        assert_eq!(removed, vec!["d", "p"]);
    }

    #[test]
    fn tls_errors_are_classified() {
        let chain = vec![];
        assert!(matches!(
            classify_tls(
                &rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                &chain,
                "h",
                0
            ),
            Outcome::UntrustedCa { .. }
        ));
        assert!(matches!(
            classify_tls(
                &rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
                &chain,
                "h",
                0
            ),
            Outcome::HostnameMismatch { .. }
        ));
        assert!(matches!(
            classify_tls(
                &rustls::Error::InvalidCertificate(CertificateError::Expired),
                &chain,
                "h",
                0
            ),
            Outcome::Expired {
                not_yet_valid: false,
                ..
            }
        ));
        assert!(matches!(
            classify_tls(&rustls::Error::HandshakeNotComplete, &chain, "h", 0),
            Outcome::TlsError { .. }
        ));
    }
}
